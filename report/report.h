// The evaluation suite (`pslerp eval`, `pslerp.evaluate`): what protection costs and what it
// buys, for any scheme, on the caller's own identity-labelled features.
//
// Two systems are measured on the same features, in the same report:
// - the protected one: IndexProtectedSlerp with the scheme's Params, scoring raw probes against
//   protected entries exactly as a deployment does (verify_batch, search);
// - the unprotected one: the mean of the G group cosines of centred, group-normalised raw
//   features (what the index compares before protection).
// Both see the same centred features: the centring is the mean of `train` when given, else of
// the evaluated features themselves (said in the report), or none when options.centring is off.
//
// Figures per scheme (docs: README "Evaluation"; eval/metrics.h computes every metric):
// - verification: EER and TAR at FAR 1e-2 / 1e-3 / 1e-4 over every mated pair and up to
//   max_nonmated_pairs sampled non-mated pairs; probe i scores against the entry of j;
// - 1:N: identities split into enrolled (one gallery entry each, the other samples are mated
//   searches) and unenrolled (non-mated searches); closed-set rank-1, open-set DIR at FPIR with
//   the threshold calibrated on the non-mated searches' best scores, rank-1 against gallery size;
// - unlinkability: D_sys between two enrolments of every sample under fresh keys (every
//   cross-database pair, both ways: A_i against B_j and A_j against B_i), for linking
//   attackers that use what is stored (template cosine; cosine over the coordinates both masks
//   keep; with stolen keys, the projection estimates of both sides);
// - irreversibility: from a stolen enrolment (template, key, mask), the projection attack
//   (key component removed; and undoing the slerp rotation) and the template alone, each used
//   as a probe against the person's other enrolment (protected system, at its FAR 1e-3
//   threshold) and against the person's other raw samples (unprotected, at its FAR 1e-3
//   threshold), beside a random impostor's acceptance at the same thresholds;
// - renewability: the old template against the re-enrolment under fresh keys (D_sys; the old
//   template as a probe; the genuine probe under the new key against the old template);
// - sweeps: the base scheme with one option changed per point (any Params::set option, and
//   `groups`, which keeps the dimension), each point with EER, TAR@1e-3, rank-1, D_sys and
//   the attacks' acceptance.
//
// Keys come from the OS generator unless options.seed is set (tests, reproducible figures).
// Errors: bad input (label count, fewer than two identities, no identity with two samples,
// NaN or infinite values, zero groups, a dimension the scheme does not fit) is an
// InvalidArgument status naming the problem.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eval/metrics.h"
#include "plugin/params.h"

namespace pslerp {

/// One axis of a sweep: each value gives a point, the base scheme with this option set to it.
struct SweepAxis {
    std::string option;               ///< a Params::set option (t, drop, preset, ...) or "groups"
    std::vector<std::string> values;  ///< as Params::set parses them
};

/// "t=0.5,0.7,0.9;drop_count=0,2,4": axes separated by ';' or white space, values by ','.
/// Checks every value against `base` (through apply_option), so a typo fails before any work.
absl::StatusOr<std::vector<SweepAxis>> parse_sweep(const std::string& text, const Params& base);
/// The sweep used when the caller gives none: t, drop_count, drop, groups (the divisors of
/// the dimension giving groups of at least 4), the slerpface preset, and every further option
/// whose name is in kExtraDefaultSweep and that this build's Params::set takes.
std::vector<SweepAxis> default_sweep(const Params& base);
/// "t=0.5,0.7;drop=none,random".
std::string describe_sweep(const std::vector<SweepAxis>& axes);
/// Sets one option on p: "groups" changes G and d keeping G * d (an error when G does not divide
/// it), anything else goes through Params::set. Validates the result.
absl::Status apply_option(Params& p, const std::string& option, const std::string& value);

/// Applies "name=value,name=value" (e.g. "t=0.9,drop_count=2,groups=4") in order through
/// apply_option.
absl::Status apply_options(Params& p, const std::string& text);

/// Labels from text, one per line, as `pslerp extract --labels` writes them ("identity<TAB>path")
/// or one integer or name per line; identical text is one identity. Returns dense ids in order
/// of first appearance; names (if not null) receives the text of each id.
absl::StatusOr<std::vector<int64_t>> parse_labels(const std::string& text, std::vector<std::string>* names = nullptr);

struct EvalOptions {
    Params params = Params::defaults();  ///< the base scheme (its G * d must be the dimension)
    std::vector<SweepAxis> sweep;        ///< empty: no sweep (see default_sweep)
    std::optional<uint64_t> seed;        ///< keys and masks reproducible from it (tests only)
    /// Centring features (rows of the same dimension); empty: the evaluated features' mean.
    std::vector<float> train;
    /// false: no centring at all (the features as given; `train` is ignored).
    bool centring = true;
    int64_t max_nonmated_pairs = 1000000;  ///< sampled (seeded) when there are more
    /// Histogram bins of the unlinkability metric; 0: 2 sqrt(n) within [10, 100] (finer bins
    /// bias D_sys upwards when there are few mated scores). The report holds the count used.
    int bins = 0;
    double nonmated_identity_fraction = 0.2;  ///< identities kept out of the 1:N gallery
    std::vector<double> fars = {1e-2, 1e-3, 1e-4};
    std::vector<double> fpirs = {1e-2, 1e-3};
    double attack_far = 1e-3;  ///< the operating point the attacks are accepted at
    /// Protected pair score = mean of both directions (probe i vs entry j and j vs i), as
    /// bench_faces does; default one direction (probe i against entry j, i < j).
    bool symmetric_pairs = false;
    /// Gallery sizes for rank-1 against gallery size: empty = about 6 sizes doubling up to the
    /// whole gallery.
    std::vector<int64_t> gallery_sizes;
    std::string command;  ///< the command line or call, for the report
};

/// One system's verification.
struct SystemVerification {
    VerificationReport report;
    std::vector<float> mated, nonmated;  ///< the pair scores (histograms)
    double attack_threshold = 0;         ///< accept >= this: FAR options.attack_far
};

struct SearchFigures {
    int64_t gallery = 0, mated_searches = 0, nonmated_searches = 0;
    double rank1 = std::numeric_limits<double>::quiet_NaN();  ///< NaN without mated searches
    std::vector<OpenSetPoint> open_set;                       ///< one per options.fpirs
    std::vector<int64_t> sizes, size_searches;                ///< rank-1 against gallery size
    std::vector<double> size_rank1;
};

struct LinkFigures {
    std::string attacker;  ///< what it compares
    std::string uses;      ///< what it needs from the stolen databases
    Unlinkability same;    ///< the same sample enrolled twice, against non-mated pairs
    Unlinkability other;   ///< different samples of the same person, against non-mated pairs
    int64_t same_pairs = 0, other_pairs = 0, nonmated_pairs = 0;
    /// The estimator's floor at these counts: D_sys of non-mated scores against non-mated scores
    /// (a seeded random split, the first part as large as the mated set). What an unlinkable
    /// system measures here; below it a D_sys tells nothing.
    double floor_same = 0, floor_other = 0;
};

struct Acceptance {
    int64_t trials = 0, accepted = 0;
    double rate() const { return trials ? double(accepted) / double(trials) : std::numeric_limits<double>::quiet_NaN(); }
};

struct AttackFigures {
    std::string attack;
    double cosine_to_raw = 0;    ///< mean over samples of the mean group cosine to the true feature
    Acceptance protected_same;   ///< against the re-enrolment of the same sample
    Acceptance protected_other;  ///< against the enrolments of the person's other samples
    Acceptance unprotected_other;  ///< cosine with the person's other raw samples
};

struct RenewFigures {
    double d_sys_same = 0;                            ///< old vs new template, template cosine
    Acceptance old_template_same, old_template_other;  ///< old template as a probe of the renewed system
    /// The genuine probe transformed with the new key and mask, against the old template.
    Acceptance new_probe_same, new_probe_other, new_probe_nonmated;
};

/// Every figure of one scheme.
struct PointFigures {
    std::string label;  ///< "base", or "option=value" for a sweep point
    Params params;
    SystemVerification prot, unprot;
    SearchFigures search_prot, search_unprot;
    std::vector<LinkFigures> links;
    /// Reference: D_sys of the unprotected scores (other samples against non-mated pairs),
    /// what a leak of unprotected templates would link.
    double unprotected_d_sys = 0;
    std::vector<AttackFigures> attacks;
    Acceptance impostor_prot, impostor_unprot;  ///< random impostors at the same thresholds
    RenewFigures renew;
    int64_t clamped = 0;  ///< probe-key cosines clamped as antipodal by the index
};

struct EvalReport {
    EvalOptions options;  ///< train emptied
    int64_t n = 0, dim = 0, identities = 0, train_rows = 0;
    std::string centring;  ///< where the centring comes from
    PointFigures base;
    std::vector<PointFigures> sweep;
    std::string version;  ///< pslerp version and commit, when known
};

/// Runs the suite on n features x (n * dim floats) with labels (n identity ids, >= 0).
absl::StatusOr<EvalReport> evaluate(const float* x, int64_t n, int64_t dim, const std::vector<int64_t>& labels,
                                    const EvalOptions& options);

/// Everything the report holds as one JSON document.
std::string report_json(const EvalReport& r);
/// Creates `dir` (if needed) and writes report.json and the CSVs the plots read: roc_*.csv,
/// scores_*.csv, unlinkability.csv, rank1_gallery.csv, sweep.csv.
absl::Status write_report_data(const EvalReport& r, const std::string& dir);
/// Writes dir/report.md; `plots_note` empty when the plots were drawn, else why not.
absl::Status write_report_markdown(const EvalReport& r, const std::string& dir, const std::string& plots_note);

/// Runs `/usr/bin/python3 -m pslerp.plots DIR` (the package from $PYTHONPATH, else next to
/// the program: the build tree's python/ or the install's site folder). Error: why not drawn.
absl::Status draw_plots(const std::string& dir);

/// Options that join the default sweep when this build's Params::set takes them.
inline constexpr const char* kExtraDefaultSweep[][2] = {{"norm", "none,cohort"}};

}  // namespace pslerp
