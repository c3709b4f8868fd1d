// Parameters of the protection scheme (DESIGN section 1): grouping, slerp weight, keys, drop
// policy, fill, importance and how the per-group cosines are combined.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pslerp {

/// One random key per group, or one key shared by all groups of an entry.
enum class KeyMode : uint8_t { kPerGroup = 0, kShared = 1 };

/// Which coordinates of a rotated group are dropped.
enum class DropPolicy : uint8_t {
    kNone = 0,        ///< keep every coordinate
    kRandom = 1,      ///< `drop_count` draws per group
    kImportance = 2,  ///< more important groups drop fewer (see DropMapping)
};

/// How importance becomes a drop count per group (DropPolicy::kImportance).
enum class DropMapping : uint8_t {
    kFunction = 0,   ///< linear map of relative importance onto [drop_max, drop_min]
    kIntervals = 1,  ///< importance intervals, each with its count
    kBudget = 2,     ///< drop_count * G draws shared in proportion to 1 / importance
};

/// What dropped coordinates hold in the stored template.
enum class Fill : uint8_t { kZero = 0, kRandom = 1 };

/// Where the per-group importance of a sample comes from (weights >= 0, sum 1).
enum class ImportanceKind : uint8_t {
    kUniform = 0,        ///< 1/G each
    kFixed = 1,          ///< `importance_weights`, the same for every sample
    kSelfAttention = 2,  ///< attention over the sample's own groups
};

/// How the G per-group cosines are combined into one score.
enum class Weighting : uint8_t {
    kUniform = 0,     ///< mean of the cosines
    kImportance = 1,  ///< weighted by the enrolled importance (the reference code's choice)
};

struct Params {
    /// Largest raw dimension G * d.
    static constexpr int kMaxDim = 1 << 20;
    /// Draws with replacement are bounded by this many per coordinate of a group (d); without
    /// replacement by d - 1.
    static constexpr int kMaxDrawsPerCoordinate = 16;
    /// Largest number of importance intervals.
    static constexpr int kMaxIntervals = 256;
    /// Largest G for self-attention importance (a G x G matrix per sample).
    static constexpr int kMaxAttentionGroups = 1024;

    int groups = 8;       ///< G
    int group_dim = 16;   ///< d; the raw dimension is G * d
    float t = 0.7f;       ///< slerp weight toward the key, in [0, 1]
    /// t_g = t - w_g with w_g the sample's own importance (reference code); else t_g = t.
    bool t_minus_importance = false;
    KeyMode key_mode = KeyMode::kPerGroup;

    DropPolicy drop = DropPolicy::kRandom;
    int drop_count = 4;             ///< draws per group (kRandom), mean draws (kBudget)
    bool drop_with_replacement = false;  ///< draws may repeat a coordinate (reference code)
    DropMapping mapping = DropMapping::kFunction;
    int drop_min = 1;               ///< kFunction: draws for the most important group
    int drop_max = 8;               ///< kFunction: draws for the least important group
    /// kIntervals: a group whose importance ratio (w_g / median(w), or w_g * G when
    /// `intervals_by_median` is false) is below interval_bounds[i] draws interval_counts[i];
    /// above every bound it draws interval_counts.back(). counts has one more entry than bounds.
    std::vector<float> interval_bounds = {1.0f};
    std::vector<int> interval_counts = {6, 2};
    bool intervals_by_median = true;

    Fill fill = Fill::kZero;

    ImportanceKind importance = ImportanceKind::kUniform;
    std::vector<float> importance_weights;  ///< kFixed: G weights (normalised on use)
    std::vector<float> attention_wq;        ///< kSelfAttention: d*d query projection, empty = identity
    std::vector<float> attention_wk;        ///< kSelfAttention: d*d key projection, empty = identity
    float attention_temperature = 1.0f;     ///< logits are <Wq x_g, Wk x_h> / (sqrt(d) * temperature)

    Weighting weighting = Weighting::kUniform;

    int dim() const { return groups * group_dim; }
    /// Floats of key material stored per entry.
    int key_dim() const { return key_mode == KeyMode::kShared ? group_dim : dim(); }

    /// Every field in range, whether the policy in use reads it or not: counts bounded (see
    /// the constants above) so that protect() does bounded work, every float finite, enums
    /// known, vectors of the sizes their policies need.
    absl::Status validate() const;

    /// pslerp's default operating point.
    static Params defaults(int groups = 8, int group_dim = 16);
    /// The public reference code's operating point (DESIGN section 1).
    static Params slerpface(int groups = 49, int group_dim = 16);

    /// Applies one option `name=value` (factory strings, CLI): t, preset, drop, drop_count,
    /// mapping, key, fill, importance, weighting, replacement, drop_min, drop_max, temperature.
    absl::Status set(const std::string& name, const std::string& value);
    /// The string form of an enum option (key, drop, mapping, fill, importance, weighting), as
    /// set() parses it; empty for an unknown name.
    std::string get(const std::string& name) const;
    /// Options that differ from defaults(), as `name=value,...`, for `info` and factory strings.
    std::string describe() const;
};

}  // namespace pslerp
