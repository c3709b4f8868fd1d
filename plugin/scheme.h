// The scheme's math in one place (docs/DESIGN.md section 1): group normalisation, slerp rotation,
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

/// Draw counts per group for a sample with importance w (G counts). With kIntervals by median
/// the median is the reference code's (np.median): the middle value for odd G, the mean of the
/// two middle values for even G; a ratio equal to a bound falls in the interval above it.
void drop_counts(const Params& p, const float* w, int* counts);

/// A key: d standard normals divided by their norm.
void draw_key(int d, Rng& rng, float* key);

/// Draws `count` coordinates to drop from a group of d (distinct, or with replacement) and
/// writes the keep mask (1 = kept). At least one coordinate is always kept.
void draw_mask(int d, int count, bool with_replacement, Rng& rng, uint8_t* mask);

/// Combination weights of the G cosines for an entry of importance w.
void combination_weights(const Params& p, const float* w, float* out);

/// Feature centring learned by train(): y = F R (x - mean), R optional, F the secret frame (PCA rotation whose
/// components are dealt round-robin to the groups, so each group gets a share of the energy).
struct Centering {
    std::vector<float> mean;      ///< D, empty when untrained
    std::vector<float> rotation;  ///< D*D row-major, empty for none

    /// The per-gallery secret frame (index/index_io.h): a random orthogonal d x d matrix F_g per
    /// group, applied after the centring, y_g = F_g c_g. Empty for none. Set through
    /// index/index_io.h from its seed (io/seal.h derive_frame); only the seed is saved, and only
    /// in sealed files.
    std::vector<uint8_t> frame_seed;    ///< 32 bytes, or empty
    std::vector<float> frame_matrix;    ///< G * d * d, row-major per group, or empty
    int frame_group_dim = 0;

    bool trained() const { return !mean.empty(); }
    bool has_frame() const { return !frame_matrix.empty(); }
    /// Copies the frame (all three fields) of `other`; the mean and rotation are kept.
    void take_frame(const Centering& other);
    bool same_frame(const Centering& other) const { return frame_seed == other.frame_seed; }
    /// @param x  n * D inputs; @param out  n * D outputs (may alias x)
    void apply(const float* x, int64_t n, int dim, float* out) const;
    /// Learns the mean (and, with pca, the rotation) from n representative raw features.
    static absl::StatusOr<Centering> fit(const float* x, int64_t n, int dim, int groups, bool pca);
};

}  // namespace pslerp
