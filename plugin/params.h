// Parameters of the protection scheme (docs/DESIGN.md section 1): grouping, slerp weight, keys, drop
// policy, fill, importance and how the per-group cosines are combined.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
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

/// Score normalisation per stored entry (docs/DESIGN.md section 3).
enum class Norm : uint8_t {
    kNone = 0,    ///< the combined cosine, in [-1, 1]
    /// Cohort z-score: at enrolment the entry is scored against a cohort of other identities;
    /// each group's cosine is standardised by its cohort mean and sd, and the combination by its
    /// cohort sd, so that a non-mated probe scores about 0 with sd 1 against every entry. Stored
    /// as rescaled combination weights and one offset per entry: the score stays affine in the
    /// group cosines.
    kCohort = 1,
};

/// Element type of the stored templates and keys (an index concern: protect() always gives
/// fp32). fp16 halves the bytes an entry costs; docs/DESIGN.md "Half-precision storage".
enum class Storage : uint8_t {
    kFp32 = 0,  ///< float
    kFp16 = 1,  ///< IEEE half; the per-group constants are then recomputed by the kernels
};

struct Params;

/// One field of Params as visit() presents it. Enum fields are spelled with their names
/// (enum_names) by set(), get(), describe() and the bindings; files store their values.
template <class T>
struct ParamField {
    using type = T;
    const char* name;    ///< attribute name (bindings, to_dict) and the file format's field name
    const char* option;  ///< its Params::set option name, or nullptr when set() cannot change it
    T Params::*member;
    const char* doc;     ///< one line for the bindings
};

/// The names of an enum's values, indexed by value (KeyMode, DropPolicy, DropMapping, Fill,
/// ImportanceKind, Weighting, Norm, Storage).
template <class E>
const std::vector<std::string>& enum_names();

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

    /// The default shape (128-D), used wherever a caller gives none (CLI, Python, factory).
    static constexpr int kDefaultGroups = 8;
    static constexpr int kDefaultGroupDim = 16;

    int groups = kDefaultGroups;        ///< G
    int group_dim = kDefaultGroupDim;   ///< d; the raw dimension is G * d
    float t = 0.9f;       ///< slerp weight toward the key, in [0, 1] (README "Operating point")
    /// t_g = t - w_g with w_g the sample's own importance (reference code); else t_g = t.
    bool t_minus_importance = false;
    KeyMode key_mode = KeyMode::kPerGroup;

    DropPolicy drop = DropPolicy::kRandom;
    int drop_count = 2;             ///< draws per group (kRandom), mean draws (kBudget)
    bool drop_with_replacement = false;  ///< draws may repeat a coordinate (reference code)
    DropMapping mapping = DropMapping::kFunction;
    int drop_min = 1;               ///< kFunction: draws for the most important group
    int drop_max = 8;               ///< kFunction: draws for the least important group
    /// kIntervals: a group whose importance ratio (w_g / median(w), or w_g * G when
    /// `intervals_by_median` is false) is below interval_bounds[i] draws interval_counts[i];
    /// at or above every bound it draws interval_counts.back(). counts has one more entry than
    /// bounds. The median is np.median's, as in the reference code: the mean of the two middle
    /// values for an even G.
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

    Norm norm = Norm::kCohort;
    /// kCohort: cohort vectors used per entry (the first this many of the index's cohort).
    int cohort_size = 256;
    /// Bounds of cohort_size.
    static constexpr int kMinCohort = 16;
    static constexpr int kMaxCohort = 1 << 16;

    Storage storage = Storage::kFp32;

    int dim() const { return groups * group_dim; }
    /// Floats of key material stored per entry.
    int key_dim() const { return key_mode == KeyMode::kShared ? group_dim : dim(); }

    /// Every field in range, whether the policy in use reads it or not: counts bounded (see
    /// the constants above) so that protect() does bounded work, every float finite, enums
    /// known, vectors of the sizes their policies need.
    absl::Status validate() const;

    /// pslerp's default operating point.
    static Params defaults(int groups = kDefaultGroups, int group_dim = kDefaultGroupDim);
    /// The public reference code's operating point (docs/DESIGN.md section 1).
    static Params slerpface(int groups = 49, int group_dim = 16);

    /// Applies one option `name=value` (factory strings, CLI): t, preset, drop, drop_count,
    /// mapping, key, fill, importance, weighting, replacement, drop_min, drop_max, temperature,
    /// norm, cohort, storage.
    absl::Status set(const std::string& name, const std::string& value);
    /// The string form of an enum option (key, drop, mapping, fill, importance, weighting, norm,
    /// storage), as
    /// set() parses it; empty for an unknown name.
    std::string get(const std::string& name) const;
    /// The options in use, as `name=value,...`, for `info`, repr and factory strings.
    std::string describe() const;

    /// Calls v(ParamField<T>{...}) for every field, in declaration order, which is the order
    /// of the file format's parameter section (index/index_io.h). The one list of the fields:
    /// files, set/get/describe, the factory and the bindings all go through it.
    template <class V>
    static void visit(V&& v);
};

template <class V>
void Params::visit(V&& v) {
    v(ParamField<int>{"groups", nullptr, &Params::groups, "G, the number of groups."});
    v(ParamField<int>{"group_dim", nullptr, &Params::group_dim,
                      "d, the dimension of a group; the raw dimension is G * d."});
    v(ParamField<float>{"t", "t", &Params::t, "Slerp weight toward the key, in [0, 1]."});
    v(ParamField<bool>{"t_minus_importance", "t_minus_importance", &Params::t_minus_importance,
                       "Per-group t_g = t - w_g with the sample's own importance (reference code)."});
    v(ParamField<KeyMode>{"key_mode", "key", &Params::key_mode,
                          "'group' (one key per group) or 'shared' (one key for all groups of an entry)."});
    v(ParamField<DropPolicy>{"drop", "drop", &Params::drop, "Drop policy: 'none', 'random' or 'importance'."});
    v(ParamField<int>{"drop_count", "drop_count", &Params::drop_count,
                      "Draws per group ('random'), mean draws ('budget')."});
    v(ParamField<bool>{"drop_with_replacement", "replacement", &Params::drop_with_replacement,
                       "Draws may repeat a coordinate (reference code)."});
    v(ParamField<DropMapping>{"mapping", "mapping", &Params::mapping,
                              "How importance becomes drop counts: 'function', 'intervals' or 'budget'."});
    v(ParamField<int>{"drop_min", "drop_min", &Params::drop_min,
                      "'function' mapping: draws for the most important group."});
    v(ParamField<int>{"drop_max", "drop_max", &Params::drop_max,
                      "'function' mapping: draws for the least important group."});
    v(ParamField<std::vector<float>>{"interval_bounds", nullptr, &Params::interval_bounds,
                                     "'intervals' mapping: importance-ratio bounds."});
    v(ParamField<std::vector<int>>{"interval_counts", nullptr, &Params::interval_counts,
                                   "'intervals' mapping: draws per interval (one more than the bounds)."});
    v(ParamField<bool>{"intervals_by_median", nullptr, &Params::intervals_by_median,
                       "'intervals' mapping: ratio w_g / median(w) (True; numpy's median) or w_g * G (False)."});
    v(ParamField<Fill>{"fill", "fill", &Params::fill, "Dropped coordinates hold 'zero' or 'random'."});
    v(ParamField<ImportanceKind>{"importance", "importance", &Params::importance,
                                 "Importance provider: 'uniform', 'fixed' (importance_weights) or 'attention'."});
    v(ParamField<std::vector<float>>{"importance_weights", nullptr, &Params::importance_weights,
                                     "'fixed' importance: G weights."});
    v(ParamField<std::vector<float>>{"attention_wq", nullptr, &Params::attention_wq,
                                     "'attention': d*d query projection, empty = identity."});
    v(ParamField<std::vector<float>>{"attention_wk", nullptr, &Params::attention_wk,
                                     "'attention': d*d key projection, empty = identity."});
    v(ParamField<float>{"attention_temperature", "temperature", &Params::attention_temperature,
                        "'attention': softmax temperature."});
    v(ParamField<Weighting>{"weighting", "weighting", &Params::weighting,
                            "How the G cosines are combined: 'uniform' (mean) or 'importance' (enrolled importance)."});
    // Format version 3 and later (index/index_io.h).
    v(ParamField<Norm>{"norm", "norm", &Params::norm,
                       "Score normalisation per entry: 'cohort' (z-score against a cohort of other identities) or 'none'."});
    v(ParamField<int>{"cohort_size", "cohort", &Params::cohort_size,
                      "'cohort' norm: cohort vectors each entry is scored against at enrolment."});
    // Format version 4 and later.
    v(ParamField<Storage>{"storage", "storage", &Params::storage,
                          "Stored templates and keys: 'fp32' or 'fp16' (half the bytes; scores within 1e-3)."});
}

}  // namespace pslerp
