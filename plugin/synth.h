// Synthetic identity-labelled face features, calibrated to ArcFace-like embeddings, for tests,
// benchmarks and the `pslerp synth` command. Not key material: the generator is seeded and
// deterministic.
//
// Model (per group g of d dims, D = G * d):
//   centre    c_g  = normalise(B_g (s ⊙ z)),  z ~ N(0, I_d), s_j ∝ decay^j, B_g a random
//                    orthonormal basis per group. decay < 1 makes identities vary mostly in a
//                    few directions, which widens the non-mated score distribution the way real
//                    descriptors do (isotropic centres give non-mated sd 1/sqrt(D), too narrow
//                    at 512-D).
//   sample    x_g  = c_g + noise * m_g * q * n / sqrt(d),  n ~ N(0, I_d): m_g is the group's
//                    noise multiplier (log-normal spread, and a fraction of groups multiplied by
//                    noisy_group_scale), q a per-sample quality factor, log-normal, shared by
//                    the sample's groups (it is what spreads the mated scores).
//   output         SynthNorm::kGroups (default): every group normalised to 1/sqrt(G), so the
//                    whole vector is unit-norm and its cosine is the mean of the group cosines;
//                    kWhole: only the whole vector normalised; kNone: left as drawn.
//                    Then `offset_norm * u` is added (u a fixed random unit vector), without
//                    normalising again: uncentred features as real descriptors are.
//
// A sample depends only on (seed, identity, sample index) and the structure (bases, group
// multipliers, offset) only on the seed, so results do not depend on the thread count and a
// gallery is a prefix of a bigger one.
//
// Calibration with the defaults, whole-vector cosine, 20k mated and 20k non-mated pairs,
// seed 1 (tests/cpp/test_synth.cpp checks bands around these):
//   512-D (32 x 16): mated 0.645 +- 0.122, non-mated 0.000 +- 0.073 (centre decay auto 0.64)
//   128-D ( 8 x 16): mated 0.648 +- 0.124, non-mated 0.001 +- 0.089 (auto: isotropic; 0.07 is
//                    below the 1/sqrt(128) = 0.088 floor)
//   Over seeds 1-5 and 42 the mated mean ranges 0.635-0.668 (the group multipliers are drawn
//   from the seed). ArcFace reference: mated ~0.65 +- 0.12, non-mated ~0 +- 0.07, thresholds
//   0.30-0.36: at 512-D under 0.1% of non-mated pairs reach 0.30, over 95% of mated reach 0.36.
//   1:N at 128-D, 100k gallery, flat inner product: rank-1 0.98; the best non-mated score per
//   probe averages 0.38 (max 0.46 over 1000 probes).
//   offset_norm = 3 (the real 128-D model's common component, 1.32, is about 3x its
//   per-person part): non-mated whole-vector cosine about 0.90, as 1.32^2 / 1.39^2 predicts.
// Speed: 1M x 128 in about 1.5 s on 2 cores.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace pslerp {

/// How a synthetic sample is normalised before the offset is added.
enum class SynthNorm { kGroups, kWhole, kNone };

struct SynthConfig {
    int groups = 8;      ///< G
    int group_dim = 16;  ///< d; D = G * d
    int64_t identities = 1000;
    int samples_per_identity = 2;
    /// Noise norm relative to the (unit) group centre, before group and quality factors.
    float noise = 0.52f;
    /// Standard deviation of log q, the per-sample quality factor (spreads mated scores).
    float quality_spread = 0.45f;
    /// Standard deviation of log m_g, the per-group noise multiplier.
    float group_noise_spread = 0.15f;
    /// Fraction of the groups (rounded) whose noise is multiplied by noisy_group_scale.
    float noisy_group_fraction = 0.25f;
    float noisy_group_scale = 2.5f;
    /// Anisotropy of identity centres within a group, in (0, 1]; 1 is isotropic.
    /// 0 = auto: chosen so that the predicted non-mated sd of whole vectors is nonmated_sd,
    /// or isotropic where D is too small for that target.
    float centre_decay = 0.f;
    float nonmated_sd = 0.07f;
    /// Norm of the common offset added to every feature (0: centred features).
    float offset_norm = 0.f;
    SynthNorm norm = SynthNorm::kGroups;
    uint64_t seed = 42;

    int dim() const { return groups * group_dim; }
    absl::Status validate() const;
};

/// The structure drawn from a config's seed, shared by every identity.
struct SynthModel {
    int groups = 0, group_dim = 0;
    float centre_decay = 1.f;          ///< resolved (never 0)
    std::vector<float> group_noise;    ///< noise * m_g per group, size G
    std::vector<uint8_t> noisy_group;  ///< 1 for the groups given noisy_group_scale, size G
    std::vector<float> bases;          ///< G row-major d x d orthonormal bases
    std::vector<float> centre_scale;   ///< s_j, size d, sum of squares 1
    std::vector<float> offset;         ///< offset_norm * u, size D (zeros if no offset)
};

struct SynthSet {
    std::vector<float> x;         ///< size n * dim, row-major
    std::vector<int64_t> labels;  ///< size n
    int64_t n = 0;
    int dim = 0;
};

struct SynthSplit {
    /// One enrolment per identity 0..gallery_size-1 (sample 0), labels = identity.
    SynthSet gallery;
    /// Mated probes first: sample 1 + j / gallery_size of a seeded choice of gallery
    /// identities (distinct while mated <= gallery_size), label = that identity. Then
    /// non-mated probes: probe j is sample 0 of identity gallery_size + j, label -1.
    SynthSet probes;
    int64_t mated = 0, nonmated = 0;
};

/// Resolves the structure for `config` (validates it first).
absl::StatusOr<SynthModel> synth_model(const SynthConfig& config);

/// config.identities x config.samples_per_identity samples; row i * spi + s is sample s of
/// identity i, labels = identity.
absl::StatusOr<SynthSet> synth_samples(const SynthConfig& config);

/// A gallery and probes (see SynthSplit); config.identities and samples_per_identity are
/// ignored.
absl::StatusOr<SynthSplit> synth_gallery(const SynthConfig& config, int64_t gallery_size,
                                         int64_t mated_probes, int64_t nonmated_probes);

/// Sample 0 of identities first .. first + n - 1: other people from the same population as a
/// gallery (training sets for centring and IVF quantizers, calibration probes). Labels are
/// the identities.
absl::StatusOr<SynthSet> synth_identities(const SynthConfig& config, int64_t first, int64_t n);

/// Sample `sample` of `identity` under `model` and `config`, written to out (size D). The
/// building block of the two functions above; exposed for tests and streaming writers.
void synth_one(const SynthConfig& config, const SynthModel& model, int64_t identity,
               int64_t sample, float* out);

}  // namespace pslerp
