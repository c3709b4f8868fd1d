// Protected vs unprotected figures on real face photos (the extractor's output on
// ../shared/data/faces): verification, template scores and exhaustive rank-1, unlinkability and
// renewability, the importance learner's synthetic check, and the extractor's throughput.
// bench/RESULTS.md (section 3) holds the figures and defines every measurement; this driver
// prints them as markdown tables. Built when the extractor is (LibTorch, dlib and libwebp found).
//
//   bench_faces [--data DIR] [--model-dir DIR] [--threads 1,2] [--batch B] [--repeat R]
//               [--seed S] [--draws K] [--bins B] [--figures LIST] [--params OPTIONS]
//
// --threads L   thread counts to measure throughput with, comma-separated (0: all cores;
//               default 1,2)
// --batch B     chips per forward pass (default 16)
// --repeat R    extraction runs per configuration; images/s is the median (default 3)
// --seed S      keys and masks from a seeded generator, draw r uses streams derived from
//               (S, r); 0 = fresh keys from the OS generator (default 1)
// --draws K     independent key/mask draws per protected figure: mean +- sd (default 5)
// --bins B      histogram bins of the unlinkability metric (default 20; also shown at 5 B)
// --figures L   the figures after the throughput table, comma-separated, from verification,
//               templates, unlinkability, synthetic (default: all four); "none": throughput only
// --params O    scheme options applied to every protected configuration of the suite's rows,
//               e.g. norm=none (report/report.h apply_options)
//
// Evaluation sets: dlib-johns (aligned chips; and re-detected + re-aligned), faceapi-bbt
// (detect + align, and as given crops with --aligned), and the union of johns chips with either
// bbt mode. Centring ("centred") subtracts the mean raw descriptor of the OTHER identity set
// (johns <-> bbt), so no evaluated identity contributes to it; the unions have no other set and
// use the mean of their own images (13 identities; stated in the output). Pairs: every
// unordered pair of distinct images; protected scores average both directions (probe i against
// the entry of j, and j against i).
//
// Every protected figure (verification rows, unlinkability, renewability) comes from the
// evaluation suite (report/report.h, `pslerp eval`): IndexProtectedSlerp scores, draw r of a
// row seeded with seed * 1000003 + r * 7919 + tag. This driver adds the extraction, the
// throughput table, the unprotected score variants (Euclidean, raw cosine, uncentred, learned
// weights), the template-score table with its leave-one-out rank-1, and the synthetic check of
// the importance learner.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/driver_util.h"
#include "eval/metrics.h"
#include "extractor/extractor.h"
#include "extractor/importance_learner.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "plugin/params.h"
#include "plugin/protect.h"
#include "plugin/scheme.h"
#include "report/report.h"
#include "util/timing.h"

namespace pslerp {
namespace {

constexpr int kG = 8, kd = 16, kD = 128;

struct Options {
    std::string params;  // options applied to every protected configuration (--params)
    int draws = 5;
    uint64_t seed = 1;
    int bins = 20;
};

struct EvalSet {
    std::string name;
    std::vector<float> raw;  // n * kD, the model's output
    std::vector<int64_t> labels;
    int64_t n = 0;
    std::vector<float> mean;            // centring vector (kD)
    std::string mean_from;              // where the mean comes from
    const EvalSet* learn_from = nullptr;  // the other identity set, for the importance learner
};

using bench::value_or_die;

void die_on_error(const absl::Status& s, const char* what) {
    if (s.ok()) return;
    std::fprintf(stderr, "error: %s: %s\n", what, std::string(s.message()).c_str());
    std::exit(1);
}

std::vector<float> mean_of(const std::vector<float>& x, int64_t n) {
    std::vector<float> m(kD, 0.f);
    for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < kD; ++k) m[k] += x[i * kD + k] / n;
    return m;
}

std::vector<float> centre(const std::vector<float>& x, int64_t n, const std::vector<float>& mean) {
    std::vector<float> y = x;
    if (mean.empty()) return y;
    for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < kD; ++k) y[i * kD + k] -= mean[k];
    return y;
}

// Per-group L2 normalisation of n vectors of G groups of d: the scheme's own (plugin/scheme.h).
std::vector<float> group_normalised(const std::vector<float>& x, int64_t n, int G, int d) {
    Params p;
    p.groups = G;
    p.group_dim = d;
    std::vector<float> y(x.size());
    die_on_error(normalize_groups(p, x.data(), n, y.data()), "normalize_groups");
    return y;
}

double dot(const float* a, const float* b, int n) {
    double s = 0;
    for (int k = 0; k < n; ++k) s += double(a[k]) * b[k];
    return s;
}

// Weighted mean of group cosines of two group-normalised vectors (w empty: uniform).
float group_score(const float* a, const float* b, int G, int d, const float* w) {
    double s = 0;
    for (int g = 0; g < G; ++g) s += (w ? w[g] : 1.0 / G) * dot(a + g * d, b + g * d, d);
    return float(s);
}

RandomSource key_source(const Options& o, int draw, int tag) {
    if (o.seed == 0) return RandomSource();
    return RandomSource(o.seed * 1000003ull + uint64_t(draw) * 7919ull + uint64_t(tag));
}

// ---------------------------------------------------------------- statistics and rows

struct Stat {
    std::vector<double> v;
    void add(double x) { v.push_back(x); }
    double mean() const {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? NAN : s / v.size();
    }
    double sd() const {
        if (v.size() < 2) return 0;
        const double m = mean();
        double s = 0;
        for (double x : v) s += (x - m) * (x - m);
        return std::sqrt(s / (v.size() - 1));
    }
    // "12.34%" for one value, "12.3 ± 0.8%" over draws.
    std::string pct() const {
        if (v.empty()) return "n/r";
        if (v.size() == 1) return absl::StrFormat("%.2f%%", 100 * v[0]);
        return absl::StrFormat("%.1f ± %.1f%%", 100 * mean(), 100 * sd());
    }
    std::string num(int prec = 3) const {
        if (v.empty()) return "-";
        if (v.size() == 1) return absl::StrFormat("%.*f", prec, v[0]);
        return absl::StrFormat("%.*f ± %.*f", prec, mean(), prec, sd());
    }
};

struct VerifRow {
    Stat eer, tar2, tar3;
    bool tar3_resolvable = true;
    int64_t mated = 0, nonmated = 0;
    void add(const std::vector<float>& mated_s, const std::vector<float>& nonmated_s) {
        const std::vector<double> fars = {1e-2, 1e-3};
        const VerificationReport r = value_or_die(verification_report(mated_s, nonmated_s, fars));
        eer.add(r.eer.eer);
        tar2.add(r.tar[0].tar);
        if (r.tar[1].resolvable)
            tar3.add(r.tar[1].tar);
        else
            tar3_resolvable = false;
        mated = int64_t(mated_s.size());
        nonmated = int64_t(nonmated_s.size());
    }
    void print(const std::string& what) const {
        std::printf("| %s | %s | %s | %s | %lld / %lld |\n", what.c_str(), eer.pct().c_str(), tar2.pct().c_str(),
                    tar3_resolvable ? tar3.pct().c_str() : "n/r", (long long)mated, (long long)nonmated);
    }
};

// ---------------------------------------------------------------- protected figures: the evaluation suite

// What the suite (report/report.h) measures for one protected configuration, over o.draws key
// draws: verification (pairs scored both ways and averaged), the template-cosine linkage of two
// enrolments, and renewal at the renewed system's FAR 1e-2 threshold.
struct SuiteRow {
    VerifRow verif;
    Stat d_other, d_same, thr, tar, ren_other, ren_same, ren_non;
    int64_t c_other = 0, c_same = 0, c_non = 0;
};

// The rows whose mean centres a set (the other identity set, or the union itself).
const std::vector<float>& centring_rows(const EvalSet& es) { return es.learn_from ? es.learn_from->raw : es.raw; }

SuiteRow suite_row(const Params& p, const EvalSet& es, bool centred, const Options& o, int tag) {
    SuiteRow row;
    for (int r = 0; r < o.draws; ++r) {
        EvalOptions eo;
        eo.params = p;
        die_on_error(apply_options(eo.params, o.params), "--params");
        eo.centring = centred;
        if (centred) eo.train = centring_rows(es);
        if (o.seed != 0) eo.seed = o.seed * 1000003ull + uint64_t(r) * 7919ull + uint64_t(tag);
        eo.symmetric_pairs = true;
        eo.fars = {1e-2, 1e-3};
        eo.attack_far = 1e-2;
        eo.bins = o.bins;
        eo.command = "bench_faces";
        const EvalReport rep = value_or_die(evaluate(es.raw.data(), es.n, kD, es.labels, eo));
        const PointFigures& f = rep.base;
        row.verif.add(f.prot.mated, f.prot.nonmated);
        row.d_other.add(f.links[0].other.d_sys);
        row.d_same.add(f.links[0].same.d_sys);
        row.thr.add(f.prot.attack_threshold);
        row.tar.add(f.prot.report.tar[0].tar);
        row.ren_other.add(f.renew.new_probe_other.rate());
        row.ren_same.add(f.renew.new_probe_same.rate());
        row.ren_non.add(f.renew.new_probe_nonmated.rate());
        row.c_other = f.links[0].other_pairs;
        row.c_same = f.links[0].same_pairs;
        row.c_non = f.links[0].nonmated_pairs;
    }
    return row;
}

// ---------------------------------------------------------------- figure 1: verification

std::vector<float> learned_weights(const EvalSet& es) {
    if (!es.learn_from) return {};
    const EvalSet& tr = *es.learn_from;
    // Train on the other identity set, centred with its own mean (= this set's centring vector).
    const std::vector<float> xt = group_normalised(centre(tr.raw, tr.n, es.mean), tr.n, kG, kd);
    std::vector<int> lt(tr.labels.begin(), tr.labels.end());
    ImportanceLearnerOptions opt;
    auto w = learn_importance(xt.data(), tr.n, lt.data(), opt);
    die_on_error(w.status(), "learn_importance");
    return w->weights;
}

void verification_figures(const EvalSet& es, const Options& o) {
    auto pairs_or = all_pairs(es.labels);
    die_on_error(pairs_or.status(), "all_pairs");
    const Pairs& pairs = *pairs_or;
    const int64_t n = es.n;
    const std::vector<float> xc = centre(es.raw, n, es.mean);
    const std::vector<float> raw1 = group_normalised(es.raw, n, 1, kD), cen1 = group_normalised(xc, n, 1, kD);
    const std::vector<float> rawg = group_normalised(es.raw, n, kG, kd), ceng = group_normalised(xc, n, kG, kd);
    const std::vector<float> w = learned_weights(es);

    std::printf("\n### %s — %lld images\n\ncentring: %s\n\n", es.name.c_str(), (long long)n, es.mean_from.c_str());
    std::printf("| score | EER | TAR@FAR1e-2 | TAR@FAR1e-3 | mated / non-mated pairs |\n|---|---|---|---|---|\n");
    auto single = [&](const std::string& what, const std::function<float(int64_t, int64_t)>& f) {
        VerifRow row;
        const PairScores s = score_pairs(pairs, f);
        row.add(s.mated, s.nonmated);
        row.print(what);
    };
    single("unprotected: raw 128-D Euclidean (dlib metric), uncentred", [&](int64_t i, int64_t j) {
        double d2 = 0;
        for (int k = 0; k < kD; ++k) {
            const double t = es.raw[i * kD + k] - es.raw[j * kD + k];
            d2 += t * t;
        }
        return float(-std::sqrt(d2));
    });
    single("unprotected: raw 128-D cosine, uncentred", [&](int64_t i, int64_t j) { return float(dot(&raw1[i * kD], &raw1[j * kD], kD)); });
    single("unprotected: raw 128-D cosine, centred", [&](int64_t i, int64_t j) { return float(dot(&cen1[i * kD], &cen1[j * kD], kD)); });
    single("unprotected: 8x16 grouped, uncentred", [&](int64_t i, int64_t j) { return group_score(&rawg[i * kD], &rawg[j * kD], kG, kd, nullptr); });
    single("unprotected: 8x16 grouped, centred", [&](int64_t i, int64_t j) { return group_score(&ceng[i * kD], &ceng[j * kD], kG, kd, nullptr); });
    if (!w.empty())
        single("unprotected: 8x16 grouped, centred, learned weights",
               [&](int64_t i, int64_t j) { return group_score(&ceng[i * kD], &ceng[j * kD], kG, kd, w.data()); });

    const Params def = Params::defaults(kG, kd);
    suite_row(def, es, false, o, 11).verif.print("protected: defaults (t=0.7), uncentred");
    for (float t : {0.5f, 0.7f, 0.9f}) {
        Params p = def;
        p.t = t;
        suite_row(p, es, true, o, 12).verif.print(absl::StrFormat("protected: t=%.1f, centred%s", t, t == 0.7f ? " (defaults)" : ""));
    }
    suite_row(Params::slerpface(kG, kd), es, true, o, 13).verif.print("protected: slerpface preset (8x16), centred");
    if (!w.empty()) {
        Params p = def;
        p.importance = ImportanceKind::kFixed;
        p.importance_weights = w;
        p.weighting = Weighting::kImportance;
        suite_row(p, es, true, o, 14).verif.print("protected: defaults + learned importance (kFixed, kImportance), centred");
        std::printf("\nlearned weights (trained on %s):", es.learn_from->name.c_str());
        for (float v : w) std::printf(" %.3f", v);
        std::printf("\n");
    }
}

// ---------------------------------------------------------------- figure 2: template scores and centring

void template_scores(const EvalSet& es, const Options& o) {
    const int64_t n = es.n;
    const Params def = Params::defaults(kG, kd);
    std::printf("\n### %s — %lld images\n\n", es.name.c_str(), (long long)n);
    std::printf("Template score <probe_i (group-normalised), template_j> / G (what the template alone gives a probe), "
                "pooled over %d key draws:\n\n", o.draws);
    std::printf("| features | own image (i = j) | mated (i != j) | non-mated | mated - non-mated | counts own / mated / non-mated |\n|---|---|---|---|---|---|\n");
    for (bool centred : {false, true}) {
        const std::vector<float> x = centred ? centre(es.raw, n, es.mean) : es.raw;
        const std::vector<float> xn = group_normalised(x, n, kG, kd);
        Stat own, mated, non;
        for (int r = 0; r < o.draws; ++r) {
            auto pr = protect(def, x.data(), n, key_source(o, r, 21));
            die_on_error(pr.status(), "protect");
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < n; ++j) {
                    const double s = dot(&xn[i * kD], &pr->templates[j * kD], kD) / kG;
                    (i == j ? own : es.labels[i] == es.labels[j] ? mated : non).add(s);
                }
        }
        std::printf("| %s | %s | %s | %s | %.3f | %zu / %zu / %zu |\n", centred ? "centred" : "uncentred", own.num().c_str(),
                    mated.num().c_str(), non.num().c_str(), mated.mean() - non.mean(), own.v.size(), mated.v.size(),
                    non.v.size());
    }

    // Leave-one-out galleries: probe i searches an index holding every other image of the set.
    std::printf("\nRank-1 of exhaustive protected search (IndexProtectedSlerp, defaults), leave-one-out gallery of "
                "%lld entries, %lld probes x %d key draws:\n\n| centring | rank-1 mated |\n|---|---|\n",
                (long long)(n - 1), (long long)n, o.draws);
    for (bool centred : {false, true}) {
        Stat r1;
        for (int r = 0; r < o.draws; ++r) {
            for (int64_t i = 0; i < n; ++i) {
                auto idx = index_factory(kD, "PSlerp8x16");
                if (o.seed != 0) {
                    protected_of(*idx).set_seed(o.seed * 1000003ull + uint64_t(r) * 7919ull + 31 + uint64_t(i) * 104729ull);
                }
                if (centred) idx->train(es.learn_from ? es.learn_from->n : n,
                                        es.learn_from ? es.learn_from->raw.data() : es.raw.data());
                std::vector<float> g;
                std::vector<idx_t> ids;
                for (int64_t j = 0; j < n; ++j) {
                    if (j == i) continue;
                    g.insert(g.end(), es.raw.begin() + j * kD, es.raw.begin() + (j + 1) * kD);
                    ids.push_back(j);
                }
                idx->add_with_ids(n - 1, g.data(), ids.data());
                float ex_d;
                idx_t ex_l;
                idx->search(1, &es.raw[i * kD], 1, &ex_d, &ex_l);
                r1.add(es.labels[ex_l] == es.labels[i]);
            }
        }
        std::printf("| %s | %.1f%% |\n",
                    centred ? (es.learn_from ? "train() on the other set" : "train() on the union itself") : "none (untrained)",
                    100 * r1.mean());
    }
}

// ---------------------------------------------------------------- figure 3: unlinkability, renewability

double dsys(const std::vector<float>& mated, const std::vector<float>& non, int bins) {
    UnlinkabilityOptions uo;
    uo.bins = bins;
    auto u = unlinkability(mated, non, uo);
    die_on_error(u.status(), "unlinkability");
    return u->d_sys;
}

void unlinkability_figures(const EvalSet& es, const Options& o) {
    const int64_t n = es.n;
    const std::vector<float> xc = centre(es.raw, n, es.mean);
    std::printf("\n### %s — %lld images\n\n", es.name.c_str(), (long long)n);
    // Reference: the unprotected features themselves (what a leak of raw templates links).
    {
        const std::vector<float> ceng = group_normalised(xc, n, kG, kd);
        std::vector<float> m, nm;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = i + 1; j < n; ++j)
                (es.labels[i] == es.labels[j] ? m : nm).push_back(group_score(&ceng[i * kD], &ceng[j * kD], kG, kd, nullptr));
        std::printf("Reference, unprotected centred 8x16 features compared directly: D_sys %.3f (%d bins; %zu mated / %zu non-mated pairs)\n\n",
                    dsys(m, nm, o.bins), o.bins, m.size(), nm.size());
    }
    std::printf("D_sys columns: %d bins, template-cosine attacker (report/report.h). Renewal columns: share of "
                "(new-key probe, old template) comparisons accepted at the renewed system's FAR1e-2 threshold.\n\n",
                o.bins);
    std::printf("| t | D_sys, other image of the subject | D_sys, same image | counts (other / same / non-mated) | "
                "FAR1e-2 threshold | TAR there | old template matched by new-key probe: other image | "
                "same image | non-mated |\n|---|---|---|---|---|---|---|---|---|\n");
    for (float t : {0.5f, 0.7f, 0.9f}) {
        Params p = Params::defaults(kG, kd);
        p.t = t;
        const SuiteRow r = suite_row(p, es, true, o, 41);
        std::printf("| %.1f | %s | %s | %lld / %lld / %lld | %s | %s | %s | %s | %s |\n", t, r.d_other.num().c_str(),
                    r.d_same.num().c_str(), (long long)r.c_other, (long long)r.c_same, (long long)r.c_non,
                    r.thr.num().c_str(), r.tar.pct().c_str(), r.ren_other.pct().c_str(), r.ren_same.pct().c_str(),
                    r.ren_non.pct().c_str());
    }
}

// ---------------------------------------------------------------- synthetic importance check

// Identities with a centre per group; group noise grows from informative to pure noise.
void synthetic_identities(int ids, int per_id, uint64_t seed, std::vector<float>* x, std::vector<int64_t>* labels) {
    const float noise[kG] = {1.0f, 1.0f, 1.2f, 1.5f, 2.0f, 3.0f, -1, -1};  // -1: no identity signal
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n01;
    for (int id = 0; id < ids; ++id) {
        std::vector<float> centre(kD);
        for (auto& v : centre) v = n01(rng);
        for (int k = 0; k < per_id; ++k) {
            for (int g = 0; g < kG; ++g)
                for (int j = 0; j < kd; ++j)
                    x->push_back(noise[g] > 0 ? centre[g * kd + j] + noise[g] * n01(rng) : n01(rng));
            labels->push_back(id);
        }
    }
}

void synthetic_importance(const Options& o) {
    std::vector<float> xs, xt;
    std::vector<int64_t> ls, lt;
    synthetic_identities(100, 5, 1, &xs, &ls);
    synthetic_identities(100, 5, 2, &xt, &lt);
    const int64_t ns = int64_t(ls.size()), nt = int64_t(lt.size());
    std::vector<int> ls32(ls.begin(), ls.end());
    ImportanceLearnerOptions opt;
    auto fixed = learn_importance(xs.data(), ns, ls32.data(), opt);
    die_on_error(fixed.status(), "learn_importance");
    auto pairs = all_pairs(lt);
    die_on_error(pairs.status(), "all_pairs");
    const std::vector<float> xn = group_normalised(xt, nt, kG, kd);
    EvalSet es;
    es.n = nt;
    es.labels = lt;
    es.raw = xt;
    std::printf("\n## Importance learner on synthetic 8x16 features (100 ids x 5, train seed 1, test seed 2, groups 6-7 pure noise)\n\n");
    std::printf("| score | EER | TAR@FAR1e-2 | TAR@FAR1e-3 | mated / non-mated pairs |\n|---|---|---|---|---|\n");
    for (bool learned : {false, true}) {
        VerifRow row;
        const PairScores s = score_pairs(*pairs, [&](int64_t i, int64_t j) {
            return group_score(&xn[i * kD], &xn[j * kD], kG, kd, learned ? fixed->weights.data() : nullptr);
        });
        row.add(s.mated, s.nonmated);
        row.print(learned ? "unprotected, learned weights" : "unprotected, uniform");
    }
    Params p = Params::defaults(kG, kd);
    suite_row(p, es, false, o, 51).verif.print("protected defaults, uniform");
    p.importance = ImportanceKind::kFixed;
    p.importance_weights = fixed->weights;
    p.weighting = Weighting::kImportance;
    suite_row(p, es, false, o, 52).verif.print("protected defaults, learned importance");
    std::printf("\nlearned weights:");
    for (float v : fixed->weights) std::printf(" %.3f", v);
    std::printf("   (train d' %.3f -> %.3f)\n", fixed->initial_objective, fixed->final_objective);
}

// ---------------------------------------------------------------- extraction and throughput

struct Extracted {
    std::vector<float> raw;
    std::vector<int64_t> labels;
    int64_t images = 0, failed = 0;
};

int run_faces(int argc, char** argv) {
    bench::Flags f(argc, argv,
                   "bench_faces: protected vs unprotected verification, template scores, unlinkability and the "
                   "extractor's throughput on the face photos of --data (bench/RESULTS.md section 3)");
    const std::string data = f.str("data", "../shared/data/faces");
    const std::string model_dir = default_model_dir(f.str("model-dir", ""));
    const std::vector<int64_t> thread_list = f.integers("threads", "1,2");
    const int64_t batch = f.integer("batch", 16);
    const int64_t repeat = f.integer("repeat", 3);
    Options o;
    o.seed = uint64_t(f.integer("seed", 1));
    o.params = f.str("params", "");
    const int64_t draws = f.integer("draws", 5);
    const int64_t bins = f.integer("bins", 20);
    const std::vector<std::string> figure_list =
            f.strings("figures", "verification,templates,unlinkability,synthetic", ',');
    if (!f.finish()) return 0;
    const std::set<std::string> known = {"verification", "templates", "unlinkability", "synthetic", "none"};
    const std::set<std::string> figures(figure_list.begin(), figure_list.end());
    std::string usage;
    for (const std::string& name : figures)
        if (!known.count(name))
            usage = "--figures: unknown figure '" + name + "' (verification, templates, unlinkability, synthetic, none)";
    for (int64_t t : thread_list)
        if (t < 0 || t > 4096) usage = "--threads: thread counts must be in 0..4096 (0: all cores)";
    if (batch < 1 || batch > 4096) usage = "--batch must be in 1..4096";
    if (repeat < 1 || repeat > 1000) usage = "--repeat must be in 1..1000";
    if (draws < 1 || draws > 1000) usage = "--draws must be in 1..1000";
    if (bins < 2 || bins > 100000) usage = "--bins must be in 2..100000";
    if (Params check = Params::defaults(kG, kd); !apply_options(check, o.params).ok())
        usage = "--params: " + std::string(apply_options(check, o.params).message());
    if (!usage.empty()) {
        std::fprintf(stderr, "error: %s (see --help)\n", usage.c_str());
        return kExitUsage;
    }
    o.draws = int(draws);
    o.bins = int(bins);

    bench::Provenance prov(f.command(), o.seed);
    prov.print();
    std::printf("bench_faces: data %s, model %s, batch %d, repeat %d, hardware threads %u, "
                "seed %llu%s, %d key draws, %d unlinkability bins, --params '%s'\n", data.c_str(), model_dir.c_str(), int(batch),
                int(repeat), std::thread::hardware_concurrency(), (unsigned long long)o.seed,
                o.seed == 0 ? " (OS keys)" : "", o.draws, o.bins, o.params.c_str());

    // ---- extraction: every set in both modes, throughput at every thread count.
    struct Mode {
        std::string set;
        bool aligned;
    };
    const std::vector<Mode> modes = {{"dlib-johns", true}, {"dlib-johns", false}, {"faceapi-bbt", true}, {"faceapi-bbt", false}};
    std::vector<Extracted> ext(modes.size());
    std::printf("\n## Throughput (images/s, median of %d runs, model load excluded, batch %d)\n\n", int(repeat),
                int(batch));
    std::printf("| set | mode | images | no face / failed | threads | images/s | runs (s) |\n|---|---|---|---|---|---|---|\n");
    for (size_t m = 0; m < modes.size(); ++m) {
        auto images = list_image_folder(data + "/" + modes[m].set);
        die_on_error(images.status(), "list_image_folder");
        std::vector<std::string> paths;
        for (const auto& im : *images) paths.push_back(im.path);
        const std::vector<int> labels = identity_labels(*images);
        for (int64_t th64 : thread_list) {
            const int th = int(th64);
            ExtractorOptions eo;
            eo.model_dir = model_dir;
            eo.aligned = modes[m].aligned;
            eo.num_threads = th;
            eo.batch_size = int(batch);
            auto ex = Extractor::create(eo);
            die_on_error(ex.status(), "Extractor::create");
            std::vector<double> seconds;
            std::vector<ExtractResult> results;
            for (int r = 0; r < repeat; ++r) {
                const double t0 = now_seconds();
                results = (*ex)->extract_files(paths);
                seconds.push_back(now_seconds() - t0);
            }
            std::string runs;
            for (double s : seconds) runs += absl::StrFormat("%s%.2f", runs.empty() ? "" : " ", s);
            Extracted e;
            e.images = int64_t(paths.size());
            for (size_t i = 0; i < results.size(); ++i) {
                if (!results[i].ok()) {
                    ++e.failed;
                    continue;
                }
                e.raw.insert(e.raw.end(), results[i].raw.begin(), results[i].raw.end());
                e.labels.push_back(labels[i]);
            }
            std::printf("| %s | %s | %lld | %lld | %d | %.1f | %s |\n", modes[m].set.c_str(),
                        modes[m].aligned ? "aligned chips (--aligned)" : "detect + align", (long long)e.images,
                        (long long)e.failed, th, double(paths.size()) / median(seconds), runs.c_str());
            std::fflush(stdout);
            ext[m] = std::move(e);
        }
    }

    if (figures.count("none") || figures.empty()) return 0;

    // ---- evaluation sets.
    auto make = [](const std::string& name, const Extracted& e) {
        EvalSet s;
        s.name = name;
        s.raw = e.raw;
        s.labels = e.labels;
        s.n = int64_t(e.labels.size());
        return s;
    };
    EvalSet johns = make("dlib-johns (aligned chips)", ext[0]);
    EvalSet johnsD = make("dlib-johns (re-detected + re-aligned)", ext[1]);
    EvalSet bbtA = make("faceapi-bbt (as given crops, --aligned)", ext[2]);
    EvalSet bbtD = make("faceapi-bbt (detect + align)", ext[3]);
    const std::vector<float> mJ = mean_of(johns.raw, johns.n), mB = mean_of(bbtD.raw, bbtD.n);
    for (EvalSet* s : {&johns, &johnsD}) {
        s->mean = mB;
        s->mean_from = "mean of faceapi-bbt (detect + align), the other identity set";
        s->learn_from = &bbtD;
    }
    for (EvalSet* s : {&bbtA, &bbtD}) {
        s->mean = mJ;
        s->mean_from = "mean of dlib-johns (aligned chips), the other identity set";
        s->learn_from = &johns;
    }
    auto join = [&](const std::string& name, const EvalSet& a, const EvalSet& b) {
        EvalSet u;
        u.name = name;
        u.raw = a.raw;
        u.raw.insert(u.raw.end(), b.raw.begin(), b.raw.end());
        const int64_t off = *std::max_element(a.labels.begin(), a.labels.end()) + 1;
        u.labels = a.labels;
        for (int64_t l : b.labels) u.labels.push_back(l + off);
        u.n = a.n + b.n;
        u.mean = mean_of(u.raw, u.n);
        u.mean_from = "mean of the union's own images (no other set: in-sample, 13 identities)";
        return u;
    };
    const EvalSet unionD = join("union: johns chips + bbt detect+align", johns, bbtD);
    const EvalSet unionA = join("union: johns chips + bbt --aligned", johns, bbtA);
    const std::vector<const EvalSet*> sets = {&johns, &johnsD, &bbtD, &bbtA, &unionD, &unionA};
    {
        double dm = 0, nj = 0, nb = 0;
        for (int k = 0; k < kD; ++k) dm += (mJ[k] - mB[k]) * (mJ[k] - mB[k]), nj += mJ[k] * mJ[k], nb += mB[k] * mB[k];
        std::printf("\nmean descriptor norm: dlib-johns %.3f, faceapi-bbt (detect + align) %.3f; distance between the two means %.3f\n",
                    std::sqrt(nj), std::sqrt(nb), std::sqrt(dm));
    }

    if (figures.count("verification")) {
        std::printf("\n## 1. Verification, all-vs-all pairs (protected: mean ± sd over %d key draws)\n", o.draws);
        for (const EvalSet* s : sets) verification_figures(*s, o);
    }
    if (figures.count("templates")) {
        std::printf("\n## 2. Template scores, centring and exhaustive rank-1 (protected defaults, t=0.7)\n");
        for (const EvalSet* s : sets) template_scores(*s, o);
    }
    if (figures.count("unlinkability")) {
        std::printf("\n## 3. Unlinkability and renewability (defaults at each t, centred; mean ± sd over %d draws)\n",
                    o.draws);
        for (const EvalSet* s : sets) unlinkability_figures(*s, o);
    }
    if (figures.count("synthetic")) synthetic_importance(o);
    return 0;
}

}  // namespace
}  // namespace pslerp

int main(int argc, char** argv) try {
    return pslerp::run_faces(argc, argv);
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_faces: %s\n", e.what());
    return 1;
}
