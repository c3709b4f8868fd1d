// The evaluation suite's measurements (report/report.h); writing them out is report_io.cpp.
#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>
#include <stdexcept>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "index/IndexProtectedSlerp.h"
#include "plugin/protect.h"
#include "plugin/random.h"
#include "plugin/scheme.h"

namespace pslerp {

// ---------------------------------------------------------------- options and labels

absl::Status apply_option(Params& p, const std::string& option, const std::string& value) {
    if (option == "groups") {
        int g = 0;
        if (!absl::SimpleAtoi(value, &g) || g < 1) {
            return absl::InvalidArgumentError(absl::StrCat("option groups: expected a positive integer, got '", value, "'"));
        }
        const int dim = p.dim();
        if (dim % g != 0) {
            return absl::InvalidArgumentError(
                    absl::StrFormat("option groups: %d groups do not divide the dimension %d", g, dim));
        }
        p.groups = g;
        p.group_dim = dim / g;
        // Per-group vectors sized for the old G no longer fit: fall back to uniform ones.
        if (p.importance == ImportanceKind::kFixed && int(p.importance_weights.size()) != g) {
            return absl::InvalidArgumentError("option groups: fixed importance weights are sized for the old G");
        }
    } else if (absl::Status st = p.set(option, value); !st.ok()) {
        return st;
    }
    if (absl::Status st = p.validate(); !st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(option, "=", value, ": ", st.message()));
    }
    return absl::OkStatus();
}

absl::Status apply_options(Params& p, const std::string& text) {
    for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
        const size_t eq = item.find('=');
        if (eq == absl::string_view::npos || eq == 0) {
            return absl::InvalidArgumentError(absl::StrCat("expected name=value, got '", item, "'"));
        }
        if (absl::Status st = apply_option(p, std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
            !st.ok()) {
            return st;
        }
    }
    return absl::OkStatus();
}

absl::StatusOr<std::vector<SweepAxis>> parse_sweep(const std::string& text, const Params& base) {
    std::vector<SweepAxis> axes;
    for (absl::string_view part : absl::StrSplit(text, absl::ByAnyChar("; \t\n"), absl::SkipEmpty())) {
        const size_t eq = part.find('=');
        if (eq == absl::string_view::npos || eq == 0 || eq + 1 == part.size()) {
            return absl::InvalidArgumentError(
                    absl::StrCat("sweep: expected option=value,value,... (axes separated by ';'), got '", part, "'"));
        }
        SweepAxis axis;
        axis.option = std::string(part.substr(0, eq));
        for (absl::string_view v : absl::StrSplit(part.substr(eq + 1), ',')) {
            if (v.empty()) return absl::InvalidArgumentError(absl::StrCat("sweep: empty value in '", part, "'"));
            Params p = base;
            if (absl::Status st = apply_option(p, axis.option, std::string(v)); !st.ok()) {
                return absl::InvalidArgumentError(absl::StrCat("sweep: ", st.message()));
            }
            axis.values.emplace_back(v);
        }
        axes.push_back(std::move(axis));
    }
    return axes;
}

std::vector<SweepAxis> default_sweep(const Params& base) {
    std::vector<SweepAxis> axes = {{"t", {"0.5", "0.7", "0.8", "0.9", "0.95"}},
                                   {"drop_count", {"0", "2", "4", "6"}},
                                   {"drop", {"none", "random", "importance"}}};
    SweepAxis groups{"groups", {}};
    const int dim = base.dim();
    for (int g : {4, 8, 16, 32, 49, 64})
        if (dim % g == 0 && dim / g >= 4) groups.values.push_back(std::to_string(g));
    if (groups.values.size() > 1) axes.push_back(groups);
    axes.push_back({"preset", {"slerpface"}});
    for (const auto& extra : kExtraDefaultSweep) {
        SweepAxis axis{extra[0], absl::StrSplit(extra[1], ',')};
        bool takes = true;
        for (const std::string& v : axis.values) {
            Params p = base;
            takes = takes && apply_option(p, axis.option, v).ok();
        }
        if (takes) axes.push_back(axis);
    }
    // Keep only values the base scheme accepts (e.g. drop_count larger than the group).
    for (SweepAxis& a : axes) {
        std::vector<std::string> ok;
        for (const std::string& v : a.values) {
            Params p = base;
            if (apply_option(p, a.option, v).ok()) ok.push_back(v);
        }
        a.values = ok;
    }
    axes.erase(std::remove_if(axes.begin(), axes.end(), [](const SweepAxis& a) { return a.values.empty(); }),
               axes.end());
    return axes;
}

std::string describe_sweep(const std::vector<SweepAxis>& axes) {
    std::vector<std::string> parts;
    for (const SweepAxis& a : axes) parts.push_back(absl::StrCat(a.option, "=", absl::StrJoin(a.values, ",")));
    return absl::StrJoin(parts, ";");
}

absl::StatusOr<std::vector<int64_t>> parse_labels(const std::string& text, std::vector<std::string>* names) {
    std::vector<int64_t> out;
    std::map<std::string, int64_t> ids;
    std::vector<std::string> order;
    int64_t line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
        ++line_no;
        absl::string_view id = line.substr(0, line.find('\t'));
        id = absl::StripAsciiWhitespace(id);
        if (id.empty()) {
            if (absl::StripAsciiWhitespace(line).empty()) continue;  // blank line (the last one)
            return absl::InvalidArgumentError(absl::StrCat("labels: line ", line_no, " has no identity before the tab"));
        }
        auto [it, fresh] = ids.emplace(std::string(id), int64_t(order.size()));
        if (fresh) order.emplace_back(id);
        out.push_back(it->second);
    }
    if (names) *names = order;
    return out;
}

// ---------------------------------------------------------------- the measurements

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Pair scoring works in chunks of this many pairs (bounded scratch per thread).
constexpr int64_t kChunk = 4096;

struct Data {
    int64_t n = 0, dim = 0;
    std::vector<int64_t> labels;
    std::vector<float> xc;  ///< centred features
    /// Centred features the cohort model of score normalisation is fitted from (Norm::kCohort):
    /// the caller's training features, else the evaluated ones.
    std::vector<float> cohort;
    Pairs pairs;
    std::vector<int64_t> mated_pairs, nonmated_pairs;  ///< positions in `pairs`
    // 1:N split: gallery id g is row gallery_rows[g].
    std::vector<int64_t> gallery_rows, mated_rows, mated_gid, nonmated_rows;
    std::vector<int64_t> sizes;
    /// A random impostor row for each mated pair and direction (2 per mated pair: for the
    /// target `second` then `first`).
    std::vector<int64_t> impostor;
};

uint64_t split_seed(const EvalOptions& o) { return o.seed ? *o.seed : 0x5eed5eedULL; }

double dotg(const float* a, const float* b, int dim, int groups) {
    double s = 0;
    for (int k = 0; k < dim; ++k) s += double(a[k]) * b[k];
    return s / groups;
}

/// Runs f(begin, end) over [0, m) in chunks on every thread; the first exception is rethrown.
template <class F>
void parallel_chunks(int64_t m, const F& f) {
    std::exception_ptr error;
    const int64_t chunks = (m + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < chunks; ++c) {
        try {
            f(c * kChunk, std::min(m, (c + 1) * kChunk));
        } catch (...) {
#pragma omp critical
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
}

/// Scores probe rows of `probes` against entries of `index`: out[k] = verify(probes[rows[k]], ids[k]).
std::vector<float> verify_rows(const IndexProtectedSlerp& index, const float* probes, int64_t dim,
                               const std::vector<int64_t>& rows, const std::vector<int64_t>& ids) {
    std::vector<float> out(rows.size());
    parallel_chunks(int64_t(rows.size()), [&](int64_t b, int64_t e) {
        std::vector<float> x(size_t(e - b) * dim);
        std::vector<idx_t> id(e - b);
        for (int64_t k = b; k < e; ++k) {
            std::copy_n(probes + rows[k] * dim, dim, x.data() + (k - b) * dim);
            id[k - b] = ids[k];
        }
        index.verify_batch(e - b, x.data(), id.data(), out.data() + b);
    });
    return out;
}

/// A protected enrolment of every sample (ids 0..n-1) and its entries read back.
struct Enrolment {
    std::unique_ptr<IndexProtectedSlerp> index;
    Protected pr;  ///< natural layout: templates, keys, masks, weights
};

/// Fits the index's cohort model as a deployment's train() would (index/cohort.h).
void fit_cohort_model(IndexProtectedSlerp& index, const Data& data) {
    const int64_t m = int64_t(data.cohort.size()) / data.dim;
    if (index.params.norm == Norm::kCohort && m >= min_cohort_fit(index.params)) {
        index.set_cohort(m, data.cohort.data());
    }
}

Enrolment enrol(const Params& p, const Data& data, const EvalOptions& o, uint64_t tag) {
    const float* x = data.xc.data();
    const int64_t n = data.n;
    Enrolment e;
    e.index = std::make_unique<IndexProtectedSlerp>(p);
    fit_cohort_model(*e.index, data);
    if (o.seed) e.index->set_seed(*o.seed * 1000003ULL + tag);
    std::vector<idx_t> ids(n);
    std::iota(ids.begin(), ids.end(), idx_t{0});
    e.index->add_with_ids(n, x, ids.data());
    if (e.index->store.rows() != n) {
        throw std::logic_error(absl::StrCat("enrol: ", e.index->store.rows(), " rows stored for ", n, " added"));
    }
    const int D = p.dim(), K = p.key_dim(), G = p.groups;
    e.pr.n = n;
    e.pr.templates.resize(size_t(n) * D);
    e.pr.keys.resize(size_t(n) * K);
    e.pr.masks.resize(size_t(n) * D);
    e.pr.weights.resize(size_t(n) * G);
    for (int64_t r = 0; r < n; ++r) {  // appended in order: row r holds id r
        e.index->store.template_row(p, r, &e.pr.templates[r * D]);
        e.index->store.key_row(p, r, &e.pr.keys[r * K]);
        e.index->store.mask_row(p, r, &e.pr.masks[r * D]);
        e.index->store.weight_row(p, r, &e.pr.weights[r * G]);
    }
    return e;
}

enum class Estimate { kTemplate, kKeyRemoved, kUnrotated };

/// What an attacker holding entry i (template, key, mask) makes of the raw feature, per group
/// unit-norm. kKeyRemoved: the template's component along the (kept part of the) key removed.
/// kUnrotated: the slerp undone along the great circle through the key (angle to the key
/// scaled by 1 / (1 - t), t - 1/G under t_minus_importance); exact when t = 0 and nothing is
/// dropped.
std::vector<float> estimates(const Params& p, const Protected& pr, Estimate kind) {
    const int G = p.groups, d = p.group_dim, D = p.dim(), K = p.key_dim();
    std::vector<float> out(pr.templates);
    if (kind == Estimate::kTemplate) return out;
    for (int64_t i = 0; i < pr.n; ++i) {
        for (int g = 0; g < G; ++g) {
            const float* T = &pr.templates[i * D + g * d];
            const float* k = &pr.keys[i * K + (p.key_mode == KeyMode::kShared ? 0 : g * d)];
            const uint8_t* m = &pr.masks[i * D + g * d];
            float* o = &out[i * D + g * d];
            double kk = 0, tt = 0, tk = 0;
            for (int j = 0; j < d; ++j)
                if (m[j]) kk += double(k[j]) * k[j], tt += double(T[j]) * T[j], tk += double(T[j]) * k[j];
            if (kk < 1e-20 || tt < 1e-20) continue;  // nothing to remove: keep the template
            const double kn = std::sqrt(kk), tn = std::sqrt(tt);
            const double c = std::clamp(tk / (kn * tn), -1.0, 1.0);  // cosine of template and key
            std::vector<double> r(d, 0.0);
            double rr = 0;
            for (int j = 0; j < d; ++j) {
                if (!m[j]) continue;
                r[j] = T[j] / tn - c * k[j] / kn;
                rr += r[j] * r[j];
            }
            if (rr < 1e-20) continue;  // template along the key: no direction left
            const double rn = std::sqrt(rr);
            double ck = 0, cr = 1;  // kKeyRemoved: the orthogonal part only
            // The attacker knows the scheme; with t_g = t - w_g it guesses uniform importance.
            const double t = p.t_minus_importance ? std::clamp(double(p.t) - 1.0 / G, 0.0, 1.0) : double(p.t);
            if (kind == Estimate::kUnrotated && 1 - t > 1e-6) {
                const double theta = std::min(std::acos(c) / (1 - t), M_PI);
                ck = std::cos(theta);
                cr = std::sin(theta);
            }
            for (int j = 0; j < d; ++j) o[j] = m[j] ? float(ck * k[j] / kn + cr * r[j] / rn) : 0.f;
        }
    }
    return out;
}

/// Mean group cosine of the estimates' groups (renormalised) with the true features xn.
double cosine_to_raw(const Params& p, const std::vector<float>& est, const std::vector<float>& xn, int64_t n) {
    const int G = p.groups, d = p.group_dim, D = p.dim();
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int g = 0; g < G; ++g) {
            double ee = 0, ex = 0;
            for (int j = 0; j < d; ++j) {
                const double e = est[i * D + g * d + j];
                ee += e * e;
                ex += e * xn[i * D + g * d + j];
            }
            if (ee > 0) s += ex / std::sqrt(ee);
        }
        sum += s / G;
    }
    return sum / n;
}

/// Groups renormalised (a zero group stays zero).
std::vector<float> renormalised(const Params& p, std::vector<float> x) {
    const int d = p.group_dim;
    for (size_t b = 0; b < x.size(); b += d) {
        double s = 0;
        for (int j = 0; j < d; ++j) s += double(x[b + j]) * x[b + j];
        if (s > 0)
            for (int j = 0; j < d; ++j) x[b + j] = float(x[b + j] / std::sqrt(s));
    }
    return x;
}

/// Cosine over the coordinates both masks keep, per group, averaged over the groups.
float masked_overlap(const Params& p, const float* a, const uint8_t* ma, const float* b, const uint8_t* mb) {
    const int G = p.groups, d = p.group_dim;
    double s = 0;
    for (int g = 0; g < G; ++g) {
        double ab = 0, aa = 0, bb = 0;
        for (int j = g * d; j < (g + 1) * d; ++j) {
            if (!ma[j] || !mb[j]) continue;
            ab += double(a[j]) * b[j];
            aa += double(a[j]) * a[j];
            bb += double(b[j]) * b[j];
        }
        if (aa > 0 && bb > 0) s += ab / std::sqrt(aa * bb);
    }
    return float(s / G);
}

Acceptance accept(const std::vector<float>& scores, double threshold) {
    Acceptance a;
    a.trials = int64_t(scores.size());
    for (float s : scores) a.accepted += s >= threshold;
    return a;
}

template <class T>
T value_or_throw(absl::StatusOr<T>&& s) {
    if (!s.ok()) throw std::invalid_argument(std::string(s.status().message()));
    return std::move(*s);
}

SystemVerification verification(const std::vector<float>& mated, const std::vector<float>& nonmated,
                                const EvalOptions& o) {
    SystemVerification v;
    v.report = value_or_throw(verification_report(mated, nonmated, o.fars));
    v.attack_threshold = value_or_throw(tar_at_far(v.report.roc, o.attack_far)).threshold;
    v.mated = mated;
    v.nonmated = nonmated;
    return v;
}

/// Open-set points and rank-1 from the best match of every search.
void search_figures(SearchFigures& f, const std::vector<int64_t>& top1, const std::vector<float>& top1_score,
                    const std::vector<int64_t>& truth, const std::vector<float>& nonmated_best, const EvalOptions& o) {
    f.mated_searches = int64_t(truth.size());
    f.nonmated_searches = int64_t(nonmated_best.size());
    std::vector<uint8_t> correct(truth.size());
    int64_t right = 0;
    for (size_t i = 0; i < truth.size(); ++i) right += correct[i] = top1[i] == truth[i];
    f.rank1 = truth.empty() ? kNaN : double(right) / double(truth.size());
    if (nonmated_best.empty()) return;
    for (double fpir : o.fpirs) f.open_set.push_back(value_or_throw(open_set_at_fpir(correct, top1_score, nonmated_best, fpir)));
}

/// Best gallery entry among gallery ids [0, size) for each probe row (unprotected scores: the
/// mean group cosine, an inner product of group-normalised features divided by G; FAISS's
/// exhaustive inner-product search).
void unprotected_top1(const Params& p, const std::vector<float>& xn, const Data& data, const std::vector<int64_t>& rows,
                      int64_t size, std::vector<int64_t>* top1, std::vector<float>* best) {
    const int D = p.dim();
    const int64_t m = int64_t(rows.size());
    top1->assign(m, -1);
    best->assign(m, 0.f);
    if (m == 0) return;
    faiss::IndexFlatIP flat(D);
    std::vector<float> g(size_t(size) * D), q(size_t(m) * D);
    for (int64_t k = 0; k < size; ++k) std::copy_n(&xn[data.gallery_rows[k] * D], D, &g[k * D]);
    for (int64_t k = 0; k < m; ++k) std::copy_n(&xn[rows[k] * D], D, &q[k * D]);
    flat.add(size, g.data());
    std::vector<faiss::Index::idx_t> labels(m);
    flat.search(m, q.data(), 1, best->data(), labels.data());
    for (int64_t k = 0; k < m; ++k) {
        (*top1)[k] = labels[k];
        (*best)[k] /= float(p.groups);
    }
}

/// Protected best match of probe rows among gallery ids [0, size).
void protected_top1(const IndexProtectedSlerp& gallery, const Data& data, const std::vector<int64_t>& rows, int64_t size,
                    std::vector<int64_t>* top1, std::vector<float>* best) {
    const int64_t m = int64_t(rows.size()), D = data.dim;
    top1->assign(m, -1);
    best->assign(m, 0.f);
    if (m == 0) return;
    std::vector<float> x(size_t(m) * D);
    for (int64_t k = 0; k < m; ++k) std::copy_n(&data.xc[rows[k] * D], D, &x[k * D]);
    std::vector<idx_t> labels(m);
    faiss::IDSelectorRange sel(0, size);
    faiss::SearchParameters sp;
    sp.sel = &sel;
    gallery.search(m, x.data(), 1, best->data(), labels.data(), size < gallery.ntotal ? &sp : nullptr);
    for (int64_t k = 0; k < m; ++k) (*top1)[k] = labels[k];
}

PointFigures run_point(const Data& data, const Params& p, const std::string& label, const EvalOptions& o,
                       uint64_t point, bool with_sizes) {
    PointFigures f;
    f.label = label;
    f.params = p;
    const int64_t n = data.n;
    const int D = p.dim(), G = p.groups;
    const Pairs& pairs = data.pairs;

    // Unprotected features: centred, group-normalised.
    std::vector<float> xn(data.xc.size());
    if (absl::Status st = normalize_groups(p, data.xc.data(), n, xn.data()); !st.ok()) {
        throw std::invalid_argument(absl::StrCat("features: ", st.message()));
    }

    // Two enrolments of every sample under fresh keys: A is the system, B the other one.
    const Enrolment A = enrol(p, data, o, point * 16 + 1);
    const Enrolment B = enrol(p, data, o, point * 16 + 2);

    // ---- verification
    {
        std::vector<int64_t> probe(pairs.first), entry(pairs.second);
        std::vector<float> s = verify_rows(*A.index, data.xc.data(), D, probe, entry);
        if (o.symmetric_pairs) {
            const std::vector<float> back = verify_rows(*A.index, data.xc.data(), D, entry, probe);
            for (size_t k = 0; k < s.size(); ++k) s[k] = 0.5f * (s[k] + back[k]);
        }
        std::vector<float> pm, pn, um, un;
        for (int64_t k = 0; k < pairs.size(); ++k) {
            const float u = float(dotg(&xn[pairs.first[k] * D], &xn[pairs.second[k] * D], D, G));
            (pairs.is_mated[k] ? pm : pn).push_back(s[k]);
            (pairs.is_mated[k] ? um : un).push_back(u);
        }
        f.prot = verification(pm, pn, o);
        f.unprot = verification(um, un, o);
        UnlinkabilityOptions uo;
        uo.bins = o.bins;
        f.unprotected_d_sys = value_or_throw(unlinkability(um, un, uo)).d_sys;
    }
    const double thr_p = f.prot.attack_threshold, thr_u = f.unprot.attack_threshold;

    // ---- 1:N
    {
        const int64_t g = int64_t(data.gallery_rows.size());
        IndexProtectedSlerp gallery(p);
        fit_cohort_model(gallery, data);
        if (o.seed) gallery.set_seed(*o.seed * 1000003ULL + point * 16 + 3);
        std::vector<float> gx(size_t(g) * D);
        std::vector<idx_t> gids(g);
        for (int64_t k = 0; k < g; ++k) {
            std::copy_n(&data.xc[data.gallery_rows[k] * D], D, &gx[k * D]);
            gids[k] = k;
        }
        gallery.add_with_ids(g, gx.data(), gids.data());
        std::vector<int64_t> top1;
        std::vector<float> best, nonmated_best;
        for (bool prot : {true, false}) {
            SearchFigures& sf = prot ? f.search_prot : f.search_unprot;
            sf.gallery = g;
            std::vector<int64_t> unused;
            if (prot) {
                protected_top1(gallery, data, data.nonmated_rows, g, &unused, &nonmated_best);
                protected_top1(gallery, data, data.mated_rows, g, &top1, &best);
            } else {
                unprotected_top1(p, xn, data, data.nonmated_rows, g, &unused, &nonmated_best);
                unprotected_top1(p, xn, data, data.mated_rows, g, &top1, &best);
            }
            search_figures(sf, top1, best, data.mated_gid, nonmated_best, o);
            if (!with_sizes) continue;
            for (int64_t size : data.sizes) {
                std::vector<int64_t> rows, truth;
                for (size_t k = 0; k < data.mated_rows.size(); ++k)
                    if (data.mated_gid[k] < size) rows.push_back(data.mated_rows[k]), truth.push_back(data.mated_gid[k]);
                if (rows.empty()) continue;
                if (prot) protected_top1(gallery, data, rows, size, &top1, &best);
                else unprotected_top1(p, xn, data, rows, size, &top1, &best);
                int64_t right = 0;
                for (size_t k = 0; k < rows.size(); ++k) right += top1[k] == truth[k];
                sf.sizes.push_back(size);
                sf.size_searches.push_back(int64_t(rows.size()));
                sf.size_rank1.push_back(double(right) / double(rows.size()));
            }
        }
        f.clamped += gallery.clamped_count();
    }

    // ---- unlinkability: A_i against B_j
    const std::vector<float> invA = estimates(p, A.pr, Estimate::kUnrotated);
    const std::vector<float> invB = estimates(p, B.pr, Estimate::kUnrotated);
    {
        struct Attacker {
            const char* name;
            const char* uses;
            std::function<float(int64_t, int64_t)> score;
        };
        const std::vector<Attacker> attackers = {
                {"template cosine", "the two stored templates",
                 [&](int64_t i, int64_t j) { return float(dotg(&A.pr.templates[i * D], &B.pr.templates[j * D], D, G)); }},
                {"cosine over coordinates both masks keep", "templates and masks",
                 [&](int64_t i, int64_t j) {
                     return masked_overlap(p, &A.pr.templates[i * D], &A.pr.masks[i * D], &B.pr.templates[j * D],
                                           &B.pr.masks[j * D]);
                 }},
                {"projection estimates (stolen keys)", "templates, keys and masks of both databases",
                 [&](int64_t i, int64_t j) { return float(dotg(&invA[i * D], &invB[j * D], D, G)); }},
        };
        for (const Attacker& a : attackers) {
            LinkFigures l;
            l.attacker = a.name;
            l.uses = a.uses;
            // Every cross-database pair both ways: A_i against B_j and A_j against B_i.
            std::vector<float> same(n), other(2 * data.mated_pairs.size()), non(2 * data.nonmated_pairs.size());
#pragma omp parallel for
            for (int64_t i = 0; i < n; ++i) same[i] = a.score(i, i);
#pragma omp parallel for
            for (int64_t k = 0; k < int64_t(data.mated_pairs.size()); ++k) {
                const int64_t i = pairs.first[data.mated_pairs[k]], j = pairs.second[data.mated_pairs[k]];
                other[2 * k] = a.score(i, j);
                other[2 * k + 1] = a.score(j, i);
            }
#pragma omp parallel for
            for (int64_t k = 0; k < int64_t(data.nonmated_pairs.size()); ++k) {
                const int64_t i = pairs.first[data.nonmated_pairs[k]], j = pairs.second[data.nonmated_pairs[k]];
                non[2 * k] = a.score(i, j);
                non[2 * k + 1] = a.score(j, i);
            }
            UnlinkabilityOptions uo;
            uo.bins = o.bins;
            l.same = value_or_throw(unlinkability(same, non, uo));
            l.other = value_or_throw(unlinkability(other, non, uo));
            // The floor: non-mated against non-mated, split at random (seeded).
            auto floor_of = [&](size_t m) {
                std::vector<float> shuffled = non;
                std::mt19937_64 g(split_seed(o) ^ 0xf1002ULL ^ m);
                std::shuffle(shuffled.begin(), shuffled.end(), g);
                if (m == 0 || m + 1 >= shuffled.size()) return 0.0;
                const std::vector<float> a(shuffled.begin(), shuffled.begin() + m), b(shuffled.begin() + m, shuffled.end());
                return value_or_throw(unlinkability(a, b, uo)).d_sys;
            };
            l.floor_same = floor_of(same.size());
            l.floor_other = floor_of(other.size());
            l.same_pairs = n;
            l.other_pairs = int64_t(other.size());
            l.nonmated_pairs = int64_t(non.size());
            f.links.push_back(std::move(l));
        }
    }

    // ---- irreversibility: estimates from the stolen enrolment A, used as probes against B
    // (the person's other enrolment) and against the raw samples.
    std::vector<int64_t> self(n), other_probe, other_entry;
    std::iota(self.begin(), self.end(), int64_t{0});
    for (int64_t k : data.mated_pairs) {
        other_probe.push_back(pairs.first[k]), other_entry.push_back(pairs.second[k]);
        other_probe.push_back(pairs.second[k]), other_entry.push_back(pairs.first[k]);
    }
    struct Attack {
        const char* name;
        Estimate kind;
    };
    for (const Attack& at : {Attack{"stolen template, no key (the template as a probe)", Estimate::kTemplate},
                             Attack{"stolen token: key component removed", Estimate::kKeyRemoved},
                             Attack{"stolen token: slerp undone (projection onto the key's great circle)",
                                    Estimate::kUnrotated}}) {
        AttackFigures af;
        af.attack = at.name;
        const std::vector<float> est = at.kind == Estimate::kUnrotated ? invA : estimates(p, A.pr, at.kind);
        af.cosine_to_raw = cosine_to_raw(p, est, xn, n);
        af.protected_same = accept(verify_rows(*B.index, est.data(), D, self, self), thr_p);
        af.protected_other = accept(verify_rows(*B.index, est.data(), D, other_probe, other_entry), thr_p);
        const std::vector<float> en = renormalised(p, est);
        std::vector<float> u(other_probe.size());
#pragma omp parallel for
        for (int64_t k = 0; k < int64_t(u.size()); ++k)
            u[k] = float(dotg(&en[other_probe[k] * D], &xn[other_entry[k] * D], D, G));
        af.unprotected_other = accept(u, thr_u);
        f.attacks.push_back(af);
    }
    {
        // A random impostor's raw sample against the same targets.
        std::vector<int64_t> imp(data.impostor.begin(), data.impostor.begin() + other_entry.size());
        f.impostor_prot = accept(verify_rows(*B.index, data.xc.data(), D, imp, other_entry), thr_p);
        std::vector<float> u(imp.size());
        for (size_t k = 0; k < imp.size(); ++k) u[k] = float(dotg(&xn[imp[k] * D], &xn[other_entry[k] * D], D, G));
        f.impostor_unprot = accept(u, thr_u);
    }

    // ---- renewability: A is the old enrolment, B the renewed one.
    f.renew.d_sys_same = f.links[0].same.d_sys;
    f.renew.old_template_same = f.attacks[0].protected_same;
    f.renew.old_template_other = f.attacks[0].protected_other;
    {
        // score(old template) = score(new template) + sum_g w_g [cos(P_g, old_g) - cos(P_g, new_g)]
        // for the probe P transformed with the new key and mask: the renewed system's own score
        // (its normalisation included) plus the difference match_one() gives with its weights.
        const Probe probe = value_or_throw(prepare_probes(p, data.xc.data(), n));
        const int K = p.key_dim();
        auto delta = [&](int64_t j, int64_t i) {  // genuine probe j, new key of i
            const float old_t = match_one(p, &probe.xn[j * D], &probe.t[j * G], &A.pr.templates[i * D],
                                          &B.pr.keys[i * K], &B.pr.masks[i * D], &B.pr.weights[i * G]);
            const float new_t = match_one(p, &probe.xn[j * D], &probe.t[j * G], &B.pr.templates[i * D],
                                          &B.pr.keys[i * K], &B.pr.masks[i * D], &B.pr.weights[i * G]);
            return old_t - new_t;
        };
        std::vector<int64_t> non_probe, non_entry;
        for (int64_t k : data.nonmated_pairs) non_probe.push_back(pairs.first[k]), non_entry.push_back(pairs.second[k]);
        auto old_scores = [&](const std::vector<int64_t>& probes, const std::vector<int64_t>& entries) {
            std::vector<float> s = verify_rows(*B.index, data.xc.data(), D, probes, entries);
#pragma omp parallel for
            for (int64_t k = 0; k < int64_t(s.size()); ++k) s[k] += delta(probes[k], entries[k]);
            return s;
        };
        f.renew.new_probe_same = accept(old_scores(self, self), thr_p);
        f.renew.new_probe_other = accept(old_scores(other_probe, other_entry), thr_p);
        f.renew.new_probe_nonmated = accept(old_scores(non_probe, non_entry), thr_p);
    }
    f.clamped += A.index->clamped_count() + B.index->clamped_count();
    return f;
}

absl::StatusOr<Data> prepare(const float* x, int64_t n, int64_t dim, const std::vector<int64_t>& labels,
                             const EvalOptions& o, std::string* centring) {
    if (n < 2) return absl::InvalidArgumentError(absl::StrCat("need at least two features, got ", n));
    if (dim < 1 || dim > Params::kMaxDim) return absl::InvalidArgumentError(absl::StrCat("bad dimension ", dim));
    if (int64_t(labels.size()) != n) {
        return absl::InvalidArgumentError(
                absl::StrFormat("%d labels for %d features: give one label per feature row", labels.size(), n));
    }
    if (o.params.dim() != dim) {
        return absl::InvalidArgumentError(absl::StrFormat(
                "the features have dimension %d, the scheme %dx%d = %d (set groups / group_dim to fit)", dim,
                o.params.groups, o.params.group_dim, o.params.dim()));
    }
    if (absl::Status st = o.params.validate(); !st.ok()) return st;
    for (int64_t i = 0; i < n * dim; ++i) {
        if (!std::isfinite(x[i])) {
            return absl::InvalidArgumentError(
                    absl::StrFormat("feature %d has a NaN or infinite value (column %d)", i / dim, i % dim));
        }
    }
    std::map<int64_t, std::vector<int64_t>> rows_of;
    for (int64_t i = 0; i < n; ++i) {
        if (labels[i] < 0) return absl::InvalidArgumentError(absl::StrCat("label ", i, " is negative"));
        rows_of[labels[i]].push_back(i);
    }
    if (rows_of.size() < 2) {
        return absl::InvalidArgumentError("every feature has the same label: need at least two identities");
    }
    bool some_pair = false;
    for (const auto& [id, rows] : rows_of) some_pair = some_pair || rows.size() >= 2;
    if (!some_pair) {
        return absl::InvalidArgumentError("no identity has two samples: mated comparisons need at least one that does");
    }
    if (!(o.nonmated_identity_fraction > 0 && o.nonmated_identity_fraction < 1)) {
        return absl::InvalidArgumentError("nonmated_identity_fraction must be in (0, 1)");
    }
    if (o.bins != 0 && (o.bins < 2 || o.bins > 100000)) return absl::InvalidArgumentError("bins must be 0 (auto) or in [2, 100000]");

    Data data;
    data.n = n;
    data.dim = dim;
    data.labels = labels;
    // Centring (mean only): from the training features when given, else in-sample.
    const bool own = o.train.empty();
    if (o.centring && !own && o.train.size() % size_t(dim) != 0) {
        return absl::InvalidArgumentError("train: its size is not a multiple of the dimension");
    }
    const int64_t nt = own ? n : int64_t(o.train.size()) / dim;
    data.xc.assign(x, x + n * dim);
    if (o.centring) {
        absl::StatusOr<Centering> c = Centering::fit(own ? x : o.train.data(), nt, int(dim), o.params.groups, false);
        if (!c.ok()) return c.status();
        *centring = own ? absl::StrCat("mean of the ", n, " evaluated features (in-sample)")
                        : absl::StrCat("mean of ", nt, " training features given by the caller");
        c->apply(x, n, int(dim), data.xc.data());
        if (!own) {
            data.cohort.resize(o.train.size());
            c->apply(o.train.data(), nt, int(dim), data.cohort.data());
        }
    } else {
        *centring = "none (the features as given)";
    }

    if (data.cohort.empty()) data.cohort = data.xc;
    if (o.params.norm == Norm::kCohort) {
        absl::StrAppend(centring, "; score normalisation's cohort model fitted from the ",
                        own ? "evaluated features" : "training features");
    }
    const uint64_t seed = split_seed(o);
    absl::StatusOr<Pairs> pairs = all_pairs(labels, o.max_nonmated_pairs, seed);
    if (!pairs.ok()) return pairs.status();
    data.pairs = *std::move(pairs);
    for (int64_t k = 0; k < data.pairs.size(); ++k)
        (data.pairs.is_mated[k] ? data.mated_pairs : data.nonmated_pairs).push_back(k);

    // 1:N split: identities in a seeded order; the first ones are not enrolled.
    std::vector<int64_t> ids;
    for (const auto& [id, rows] : rows_of) ids.push_back(id);
    std::mt19937_64 rng(seed ^ 0x1d1d1d1dULL);
    std::shuffle(ids.begin(), ids.end(), rng);
    const int64_t held = std::clamp<int64_t>(std::llround(o.nonmated_identity_fraction * ids.size()), 1,
                                             int64_t(ids.size()) - 1);
    for (size_t k = 0; k < ids.size(); ++k) {
        const std::vector<int64_t>& rows = rows_of[ids[k]];
        if (int64_t(k) < held) {
            data.nonmated_rows.insert(data.nonmated_rows.end(), rows.begin(), rows.end());
            continue;
        }
        const int64_t gid = int64_t(data.gallery_rows.size());
        data.gallery_rows.push_back(rows[0]);
        for (size_t r = 1; r < rows.size(); ++r) data.mated_rows.push_back(rows[r]), data.mated_gid.push_back(gid);
    }
    const int64_t g = int64_t(data.gallery_rows.size());
    data.sizes = o.gallery_sizes;
    if (data.sizes.empty()) {
        for (int64_t s = g; s >= 8 && data.sizes.size() < 6; s /= 2) data.sizes.push_back(s);
        if (data.sizes.empty()) data.sizes.push_back(g);
        std::reverse(data.sizes.begin(), data.sizes.end());
    }
    for (int64_t s : data.sizes) {
        if (s < 1 || s > g) {
            return absl::InvalidArgumentError(absl::StrFormat("gallery size %d is not in [1, %d] (enrolled identities)", s, g));
        }
    }
    // Random impostors for the attack baselines: one per mated pair and direction.
    std::uniform_int_distribution<int64_t> pick(0, n - 1);
    for (int64_t k : data.mated_pairs) {
        for (int64_t target : {data.pairs.second[k], data.pairs.first[k]}) {
            int64_t r;
            do r = pick(rng);
            while (labels[r] == labels[target]);
            data.impostor.push_back(r);
        }
    }
    return data;
}

}  // namespace

absl::StatusOr<EvalReport> evaluate(const float* x, int64_t n, int64_t dim, const std::vector<int64_t>& labels,
                                    const EvalOptions& options) {
    EvalReport r;
    r.options = options;
    r.options.train.clear();
    r.n = n;
    r.dim = dim;
    r.train_rows = dim > 0 ? int64_t(options.train.size()) / dim : 0;
    r.version = PSLERP_REPORT_VERSION;
    try {
        absl::StatusOr<Data> data = prepare(x, n, dim, labels, options, &r.centring);
        if (!data.ok()) return data.status();
        if (r.options.bins == 0) r.options.bins = int(std::clamp<double>(std::round(2 * std::sqrt(double(n))), 10, 100));
        const EvalOptions& o = r.options;
        std::vector<int64_t> distinct(labels);
        std::sort(distinct.begin(), distinct.end());
        r.identities = std::unique(distinct.begin(), distinct.end()) - distinct.begin();

        r.base = run_point(*data, o.params, "base", o, 0, true);
        const std::string base_desc = absl::StrCat(options.params.groups, "x", options.params.group_dim, ":",
                                                   options.params.describe());
        uint64_t point = 1;
        for (const SweepAxis& axis : options.sweep) {
            for (const std::string& v : axis.values) {
                Params p = options.params;
                if (absl::Status st = apply_option(p, axis.option, v); !st.ok()) return st;
                const std::string label = absl::StrCat(axis.option, "=", v);
                if (absl::StrCat(p.groups, "x", p.group_dim, ":", p.describe()) == base_desc) {
                    PointFigures same = r.base;  // the base scheme again: not measured twice
                    same.label = label;
                    r.sweep.push_back(std::move(same));
                    continue;
                }
                r.sweep.push_back(run_point(*data, p, label, o, point++, false));
            }
        }
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError("evaluate: out of memory (fewer features or max_nonmated_pairs)");
    } catch (const std::exception& e) {
        std::string what = e.what();
        const size_t at = what.find("pslerp: ");
        if (at != std::string::npos) what = what.substr(at + 8);
        return absl::InvalidArgumentError(absl::StrCat("evaluate: ", what));
    }
    return r;
}

}  // namespace pslerp
