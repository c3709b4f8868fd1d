// Cohort score normalisation (Params::norm == Norm::kCohort, docs/DESIGN.md section 3).
//
// Protected scores are biased per entry: the key an entry was rotated toward, and the
// coordinates it dropped, make every probe score a little higher or lower against it, and more
// or less spread out. At 1:N the entries that happen to score impostors high win searches they
// should lose. At enrolment each entry is therefore scored against a cohort of other
// identities' raw features, and group g's cosine is standardised by its cohort mean mu_g and
// standard deviation sd_g. The standardised cosines are combined with the entry's weights w_g,
// scaled by 1 / sqrt(sum_g w_g^2) so that a non-mated probe scores mean 0 and standard
// deviation about 1 against every entry (exactly 1 if the groups' cosines were independent):
//
//   score = sum_g w_g (c_g - mu_g) / (sd_g W) = sum_g w'_g c_g + b,
//   W = sqrt(sum_g w_g^2),  w'_g = w_g / (sd_g W),  b = -sum_g w'_g mu_g.
//
// (Standardising the combination by its own cohort deviation as well ranks worse: measured in
// bench/RESULTS.md section 4.)
//
// Only w' (in place of the combination weights) and b (one float) are stored per entry: the
// kernels keep their affine form.
//
// The cohort is a model, not people: m = Params::cohort_size vectors drawn with a fixed seed
// from a zero-mean Gaussian per group whose covariance is the second-moment matrix of the
// centred, group-normalised features the index was trained on (train(), or set_cohort()), or
// the identity (the built-in model, made from no data). Only the G second-moment matrices are
// kept in files, never a feature: an aggregate over at least kMinCohortFit people, like the
// centring mean (docs/DESIGN.md section 10 measures what they reveal). A loaded index draws
// the same vectors again and enrols exactly as the saved one did. (A Gaussian cohort ranks as
// well as the training features themselves: bench/RESULTS.md section 4.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "index/kernels/scan.h"
#include "plugin/params.h"

namespace pslerp {

/// Where an index's cohort model came from.
enum class CohortSource : uint8_t {
    kBuiltIn = 0,  ///< isotropic: identity second moments, from no data
    kTrain = 1,    ///< fitted by train() from its vectors
    kUser = 2,     ///< fitted by set_cohort()
};
const char* cohort_source_name(CohortSource source);

/// Standard deviations below this are raised to it (a group whose cosine hardly varies, e.g.
/// t = 1), which bounds w'_g by w_g / (kMinCohortSd W) (see kMaxCohortGain in index/storage.h).
inline constexpr double kMinCohortSd = 1e-2;
/// Fewest vectors a cohort model is fitted from (and at least 4 d: min_cohort_fit()).
inline constexpr int64_t kMinCohortFit = 64;
/// Fewest vectors fit_cohort() takes for this scheme: max(kMinCohortFit, 4 d).
inline int64_t min_cohort_fit(const Params& p) { return std::max<int64_t>(kMinCohortFit, 4 * int64_t(p.group_dim)); }
/// Seed of the cohort's draws (the same for every index: the model makes the difference).
inline constexpr uint64_t kCohortSeed = 0x636f686f7274ULL;  // "cohort"

struct Cohort {
    CohortSource source = CohortSource::kBuiltIn;
    int64_t fitted_from = 0;     ///< vectors the model was fitted from (0: built-in)
    /// G row-major d x d second-moment matrices of the centred, group-normalised features;
    /// empty for the built-in (identity) model.
    std::vector<float> moments;
    std::string digest;          ///< SHA-256 (hex) of the shape and the matrices

    /// "train, fitted from 5000 vectors, sha256 0123abcd..." for messages and `info`.
    std::string describe() const;
};

/// The built-in model: identity second moments (isotropic groups).
Cohort builtin_cohort(const Params& p);
/// Fits the model from n centred, group-normalised vectors xn (D = p.dim() each). Throws
/// InvalidInputError for fewer than max(kMinCohortFit, 4 d) vectors or values that are not
/// finite.
Cohort fit_cohort(const Params& p, int64_t n, const float* xn, CohortSource source);
/// Checks a model read from a file (sizes, finite, symmetric, positive semi-definite) and
/// sets its digest; throws faiss::FaissException naming the problem.
void check_cohort(const Params& p, Cohort& c);
/// The p.cohort_size vectors of the model (centred space, D each), the same for the same
/// model on every machine (pslerp's own seeded stream).
std::vector<float> cohort_samples(const Params& p, const Cohort& c);

/// Rewrites the combination weights and offsets of entries [0, n) of `e` as the formula above
/// gives, from their scores against m prepared cohort queries (kernels::prepare_query layout).
/// `e` must hold the plain combination weights and zero offsets (encode_entry's); weights and
/// offsets point at the same memory as e.weights and e.offsets, writable.
void normalize_entries(const kernels::Entries& e, int64_t n, const float* queries, int64_t m, float* weights,
                       float* offsets);

}  // namespace pslerp
