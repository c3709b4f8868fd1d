// The scheme's math in one place (DESIGN section 1): group normalisation, slerp rotation,
// importance, drop counts and masks, feature centring. protect.h builds on these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "plugin/params.h"
#include "plugin/random.h"

namespace pslerp {

/// Cosines below this are treated as antipodal: the slerp arc is undefined there. Enrolment
/// draws a new key; matching clamps the cosine to this value.
inline constexpr double kAntipodalCos = -0.99;  // within 8 degrees of antipodal
/// Below this angle slerp takes its limit a = 1 - t, b = t (the arc has collapsed onto x).
inline constexpr double kTinyAngle = 1e-7;

struct SlerpCoefficients {
    double a;      ///< weight of x: sin((1-t) theta) / sin(theta)
    double b;      ///< weight of the key: sin(t theta) / sin(theta)
    bool clamped;  ///< the cosine was below kAntipodalCos and was clamped
};

/// slerp(x, k, t) = a x + b k for unit x, k with cosine c; exact (libm), with both guards.
SlerpCoefficients slerp_coefficients(double c, double t);

/// L2-normalises each group of n vectors of dimension G*d. Fails, naming the vector and
/// group, on NaN/Inf or a group of zero norm. `out` may alias `x`.
absl::Status normalize_groups(const Params& p, const float* x, int64_t n, float* out);

/// Importance of the groups of one normalised sample (G weights, >= 0, sum 1).
void compute_importance(const Params& p, const float* xn, float* w);

/// Per-group slerp weights of a sample with importance w: t, or t - w_g (clamped to [0,1]).
void group_t(const Params& p, const float* w, float* t_g);

/// Draw counts per group for a sample with importance w (G counts).
void drop_counts(const Params& p, const float* w, int* counts);

/// A key: d standard normals divided by their norm.
void draw_key(int d, Rng& rng, float* key);

/// Draws `count` coordinates to drop from a group of d (distinct, or with replacement) and
/// writes the keep mask (1 = kept). At least one coordinate is always kept.
void draw_mask(int d, int count, bool with_replacement, Rng& rng, uint8_t* mask);

/// Combination weights of the G cosines for an entry of importance w.
void combination_weights(const Params& p, const float* w, float* out);

/// What the coarse stage of the index sees of an entry (DESIGN section 3).
enum class CoarseEmbedding : uint8_t {
    /// The protected template itself (dimension G*d), probed with the normalised raw probe.
    kTemplate = 0,
    /// The first-order Taylor expansion of the exact match score in the probe, around a probe
    /// uncorrelated with the entry: per group W_g (f_e M e_g + f_c k_g + f_mk M k_g) with
    /// coefficients from the entry's constants, plus one extra group whose first coordinate
    /// carries the constant term and whose second is left free for the index to equalise
    /// norms (dimension (G+1)*d). Its inner product with [probe groups, 1, 0...] tracks the
    /// exact score closely (correlation about 0.97 on random data against 0.62 for the
    /// template), so a short shortlist recovers the exact ranking.
    kLinear = 1,
    /// Opt-in, weaker protection: per group the part of the kept template orthogonal to the
    /// kept key, normalised and scaled by W_g (dimension G*d), probed with the normalised raw
    /// probe. It is close to the raw feature (cosine 0.95 with each group's kept coordinates
    /// on synthetic data, test_coarse), so the coarse stage keeps the raw neighbourhoods:
    /// mated entries are found nearly as often as by an unprotected index of the same kind
    /// (bench/RESULTS.md section 2), where the other embeddings, whose position follows the
    /// random keys, miss most of them on structured data. It does not find the entries that
    /// the keys push into the exact top k. The price: the coarse index alone then links and
    /// approximates identities. Anyone holding the whole index file can compute the same
    /// vectors from its templates, keys and masks (the stolen-token inversion, DESIGN section
    /// 7), but a coarse index copied, exported or sharded without the keys leaks what the
    /// protected templates alone do not, and renewing keys does not renew it. See README
    /// "Security".
    kIdentity = 2,
};

/// "linear" / "template" / "identity", and back.
const char* embedding_name(CoarseEmbedding mode);
absl::StatusOr<CoarseEmbedding> parse_embedding(const std::string& name);

/// Dimension of the coarse embedding.
int coarse_dim(const Params& p, CoarseEmbedding mode);

/// Coarse embedding of one protected entry in natural layout: template e (D), key (key_dim),
/// mask (D) and combination weights w (G). Writes coarse_dim floats.
void coarse_embedding(const Params& p, CoarseEmbedding mode, const float* e, const float* key,
                      const uint8_t* mask, const float* w, float* out);

/// Coarse query of one probe from its normalised groups xn (D). Writes coarse_dim floats.
void coarse_query(const Params& p, CoarseEmbedding mode, const float* xn, float* out);

/// Feature centring learned by train(): y = R (x - mean), R optional (PCA rotation whose
/// components are dealt round-robin to the groups, so each group gets a share of the energy).
struct Centering {
    std::vector<float> mean;      ///< D, empty when untrained
    std::vector<float> rotation;  ///< D*D row-major, empty for none

    bool trained() const { return !mean.empty(); }
    /// @param x  n * D inputs; @param out  n * D outputs (may alias x)
    void apply(const float* x, int64_t n, int dim, float* out) const;
    /// Learns the mean (and, with pca, the rotation) from n representative raw features.
    static absl::StatusOr<Centering> fit(const float* x, int64_t n, int dim, int groups, bool pca);
};

}  // namespace pslerp
