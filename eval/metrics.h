// Evaluation metrics of docs/DESIGN.md section 7: ROC computed exactly on the sorted scores, EER,
// TAR at fixed FAR with the number of impostor pairs behind it, LFW-style k-fold accuracy,
// unlinkability (Gomez-Barrero et al. 2018, ISO/IEC 24745), rank-1 identification, and pair
// building from labels. Scores are similarities: higher means more alike, and a pair is
// accepted when score >= threshold. Every function rejects empty or NaN input with an
// absl::Status.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pslerp {

/// The ROC at every distinct score value, thresholds descending; point 0 is threshold +inf
/// (nothing accepted), the last point accepts everything.
struct Roc {
    std::vector<double> thresholds;
    std::vector<int64_t> true_accepts;   ///< mated scores >= threshold
    std::vector<int64_t> false_accepts;  ///< non-mated scores >= threshold
    std::vector<double> tar, far;        ///< true_accepts / mated, false_accepts / nonmated
    int64_t mated = 0, nonmated = 0;
};

absl::StatusOr<Roc> roc_curve(absl::Span<const float> mated, absl::Span<const float> nonmated);

struct Eer {
    double eer = 0;        ///< FAR = FRR where the ROC, linearly interpolated between points, crosses
    double threshold = 0;  ///< interpolated the same way
};

absl::StatusOr<Eer> equal_error_rate(const Roc& roc);

struct TarAtFar {
    double target_far = 0;
    double tar = 0;        ///< the highest TAR whose false accepts do not exceed the allowance
    double far = 0;        ///< FAR actually reached there
    double threshold = 0;  ///< accept score >= threshold; +inf when only FAR 0 qualifies
    int64_t nonmated = 0;               ///< impostor pairs this FAR rests on
    int64_t allowed_false_accepts = 0;  ///< floor(target_far * nonmated)
    int64_t false_accepts = 0;          ///< impostor scores >= threshold
    /// false when nonmated * target_far < 1: the FAR cannot be told apart from 0.
    bool resolvable = false;
};

absl::StatusOr<TarAtFar> tar_at_far(const Roc& roc, double target_far);

struct VerificationReport {
    Roc roc;
    Eer eer;
    std::vector<TarAtFar> tar;  ///< one per requested FAR
};

absl::StatusOr<VerificationReport> verification_report(absl::Span<const float> mated,
                                                       absl::Span<const float> nonmated,
                                                       absl::Span<const double> fars = {1e-2, 1e-3,
                                                                                        1e-4});

/// Fraction of correct decisions at a fixed threshold.
absl::StatusOr<double> accuracy_at(absl::Span<const float> scores, absl::Span<const uint8_t> is_mated,
                                   double threshold);

struct FoldAccuracy {
    double mean = 0;
    double sd = 0;                   ///< population sd over folds (as the LFW scripts report)
    std::vector<int> fold_ids;       ///< distinct fold ids, ascending
    std::vector<double> accuracy;    ///< per fold, tested with `threshold`
    std::vector<double> threshold;   ///< per fold, chosen on the other folds
};

/// LFW-style k-fold accuracy: for each fold, the threshold that maximises accuracy on the other
/// folds (cuts at midpoints between consecutive distinct scores, ties to the highest
/// threshold), then accuracy on that fold. Needs at least two distinct fold ids.
/// @param scores    size n
/// @param is_mated  size n, 0 or 1
/// @param folds     size n, any int fold id
absl::StatusOr<FoldAccuracy> kfold_accuracy(absl::Span<const float> scores,
                                            absl::Span<const uint8_t> is_mated,
                                            absl::Span<const int> folds);

struct UnlinkabilityOptions {
    int bins = 100;
    /// Histogram range; when lo >= hi (the default) the range of all scores is used. Scores
    /// outside a given range fall into the edge bins.
    double lo = 0, hi = 0;
    /// Prior ratio P(mated) / P(non-mated) multiplying LR; 1 in the paper's evaluations.
    double omega = 1;
};

struct Unlinkability {
    double d_sys = 0;  ///< 0 fully unlinkable .. 1 fully linkable
    std::vector<double> bin_edges;             ///< size bins + 1
    std::vector<double> p_mated, p_nonmated;   ///< densities per bin, size bins
    std::vector<double> d_local;               ///< D(s) per bin, size bins
};

/// Gomez-Barrero et al. 2018: LR(s) = omega * p_mated(s) / p_nonmated(s),
/// D(s) = 2 LR / (1 + LR) - 1 where LR > 1 else 0 (1 where p_nonmated is 0),
/// D_sys = integral of D(s) p_mated(s) ds, over histogram bins.
absl::StatusOr<Unlinkability> unlinkability(absl::Span<const float> mated,
                                            absl::Span<const float> nonmated,
                                            const UnlinkabilityOptions& options = {});

struct Identification {
    int64_t mated_probes = 0, nonmated_probes = 0;
    double rank1 = 0;  ///< closed-set: top-1 label right, over mated probes; NaN if none
    /// Open-set at `threshold` (only with scores): detection and identification rate over
    /// mated probes, false positive identification rate over non-mated probes; NaN if none.
    double threshold = 0;
    double dir = 0, fpir = 0;
};

/// @param top1   size n, the label of each probe's best match (anything for an empty result)
/// @param truth  size n, the probe's identity, or < 0 for a non-mated probe
/// @param top1_scores  empty, or size n: the best match's score, for dir / fpir
absl::StatusOr<Identification> identification_rates(absl::Span<const int64_t> top1,
                                                    absl::Span<const int64_t> truth,
                                                    absl::Span<const float> top1_scores = {},
                                                    double threshold = 0);

/// Open-set identification at a target FPIR, the threshold calibrated on non-mated searches:
/// the lowest threshold that at most floor(target_fpir * N) of the N non-mated searches' best
/// scores reach (accept score >= threshold), then DIR over the mated searches at it.
struct OpenSetPoint {
    double target_fpir = 0;
    double threshold = 0;    ///< just above the (allowed + 1)-th best non-mated score; -inf at FPIR 1
    double fpir = 0;         ///< reached on the non-mated searches
    double dir = 0;          ///< mated searches whose best match is right and scores >= threshold
    int64_t mated_searches = 0, nonmated_searches = 0;
    int64_t allowed_false_positives = 0;  ///< floor(target_fpir * nonmated_searches)
    int64_t false_positives = 0;          ///< non-mated best scores >= threshold
    /// false when nonmated_searches * target_fpir < 1: the FPIR cannot be told apart from 0.
    bool resolvable = false;
};

/// @param mated_correct  size m: 1 where mated search i's best match is its own identity
/// @param mated_best     size m: the best score of mated search i
/// @param nonmated_best  size N >= 1: the best score of each non-mated search (a probe whose
///                       identity is not enrolled)
/// @param target_fpir    in [0, 1]
absl::StatusOr<OpenSetPoint> open_set_at_fpir(absl::Span<const uint8_t> mated_correct,
                                              absl::Span<const float> mated_best,
                                              absl::Span<const float> nonmated_best, double target_fpir);

/// Index pairs (first < second) with their ground truth.
struct Pairs {
    std::vector<int64_t> first, second;
    std::vector<uint8_t> is_mated;
    int64_t size() const { return static_cast<int64_t>(first.size()); }
};

/// Every mated pair (same label; a label < 0 mates nothing), then the non-mated pairs: all of
/// them, or when max_nonmated >= 0 and there are more, a seeded uniform sample of that many
/// without replacement. Enumerating more than 2^26 pairs is refused: pass max_nonmated.
absl::StatusOr<Pairs> all_pairs(absl::Span<const int64_t> labels, int64_t max_nonmated = -1,
                                uint64_t seed = 0);

struct PairScores {
    std::vector<float> mated, nonmated;
};

/// Scores every pair with score(first, second) and splits by ground truth.
PairScores score_pairs(const Pairs& pairs, const std::function<float(int64_t, int64_t)>& score);

/// Balanced random fold ids 0..k-1 for n items (seeded).
std::vector<int> assign_folds(int64_t n, int k, uint64_t seed);

}  // namespace pslerp
