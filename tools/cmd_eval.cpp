// pslerp eval: the evaluation suite (report/report.h) on identity-labelled features; writes
// DIR/report.md, the data as CSV/JSON, and PNG plots drawn by pslerp.plots.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/array_io.h"
#include "io/file.h"
#include "report/report.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp eval FEATURES --labels LABELS --out DIR [--params t=0.9,drop_count=2]\n"
        "                   [--preset slerpface] [--sweep \"t=0.5,0.7,0.9;drop_count=0,2,4\" | --sweep none]\n"
        "                   [--seed S] [--train FEATURES] [--max-pairs 1000000] [--bins 0] [--no-plots]\n"
        "Measures the protected system (IndexProtectedSlerp) against the unprotected one (cosine of\n"
        "centred, group-normalised features) on the same features: verification (EER, TAR at FAR\n"
        "1e-2/1e-3/1e-4), 1:N (rank-1, open-set DIR at FPIR 1% and 0.1%, rank-1 against gallery size),\n"
        "unlinkability (D_sys), renewability, inversion attacks from a stolen database, and a sweep.\n"
        "FEATURES: .npy or .fvecs rows (e.g. from pslerp extract or pslerp synth), or an image folder\n"
        "(identity = sub-folder; then --labels is not needed). LABELS: one label per row, as\n"
        "`pslerp extract --labels` writes them (identity<TAB>path), one integer or name per line, or\n"
        "an int64 .npy. The scheme: Params::defaults with groups of 16 (or one group when 16 does not\n"
        "divide D), then --preset, then --params (any factory option, and groups=G). --sweep changes one\n"
        "option per point (axes separated by ';'); default: t, drop_count, drop, groups, the slerpface\n"
        "preset. --train: features whose mean centres both systems (default: the evaluated ones).\n"
        "--bins: unlinkability histogram bins (0: 2 sqrt(rows), within 10..100).\n"
        "Keys come from the OS generator; --seed makes them reproducible (tests only).\n"
        "Writes DIR/report.md, report.json, roc.csv, scores.csv, unlinkability.csv, rank1_gallery.csv,\n"
        "sweep.csv and the PNGs (/usr/bin/python3 -m pslerp.plots DIR; when that fails report.md says why).\n";

absl::StatusOr<std::vector<int64_t>> load_labels(const std::string& path) {
    if (absl::EndsWith(path, ".npy") || absl::EndsWith(path, ".ivecs")) return read_labels(path, true);
    absl::StatusOr<std::string> text = read_whole_file(path, uint64_t{1} << 31);
    if (!text.ok()) return text.status();
    absl::StatusOr<std::vector<int64_t>> labels = parse_labels(*text);
    if (!labels.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", labels.status().message()));
    return labels;
}

absl::Status run(Args& args, const std::vector<std::string>& argv) {
    auto out = args.required("out");
    if (!out.ok()) return out.status();
    const std::string labels_path = args.str("labels");
    const std::string params_text = args.str("params");
    const std::string preset = args.str("preset");
    const bool has_sweep = args.has("sweep");
    const std::string sweep_text = args.str("sweep");
    const std::string train_path = args.str("train");
    const bool no_plots = args.flag("no-plots");
    auto seed = args.integer("seed", -1, 0, INT64_MAX);
    auto max_pairs = args.integer("max-pairs", 1000000, 1, int64_t{1} << 26);
    auto bins = args.integer("bins", 0, 0, 100000);
    const FeatureOptions fo = feature_options(args);
    for (const absl::Status& st : {seed.status(), max_pairs.status(), bins.status()})
        if (!st.ok()) return st;
    if (absl::Status st = args.finish(); !st.ok()) return st;
    if (args.positional().size() != 1) return usage_error("expected one FEATURES input");

    absl::StatusOr<Features> f = load_features(args.positional()[0], fo);
    if (!f.ok()) return f.status();
    std::vector<int64_t> labels = f->labels;
    if (!labels_path.empty()) {
        absl::StatusOr<std::vector<int64_t>> l = load_labels(labels_path);
        if (!l.ok()) return l.status();
        labels = *std::move(l);
    } else if (labels.empty()) {
        return usage_error("--labels is required for array features (an image folder brings its own)");
    }
    if (int64_t(labels.size()) != f->n) {
        return absl::InvalidArgumentError(absl::StrCat(labels_path, " has ", labels.size(), " labels for ", f->n,
                                                       " feature rows: give one label per row"));
    }

    EvalOptions o;
    const int64_t D = f->dim;
    o.params = D % Params::kDefaultGroupDim == 0 ? Params::defaults(int(D / Params::kDefaultGroupDim))
                                                 : Params::defaults(1, int(D));
    if (!preset.empty()) {
        if (absl::Status st = apply_option(o.params, "preset", preset); !st.ok()) return usage_error(st.message());
    }
    if (absl::Status st = apply_options(o.params, params_text); !st.ok()) {
        return usage_error(absl::StrCat("--params: ", st.message()));
    }
    if (!has_sweep) {
        o.sweep = default_sweep(o.params);
    } else if (sweep_text != "none") {
        absl::StatusOr<std::vector<SweepAxis>> sw = parse_sweep(sweep_text, o.params);
        if (!sw.ok()) return usage_error(absl::StrCat("--", sw.status().message()));  // "--sweep: ..."
        o.sweep = *std::move(sw);
    }
    if (*seed >= 0) {
        o.seed = uint64_t(*seed);
        warn_seeded("pslerp eval --seed");
    }
    if (!train_path.empty()) {
        absl::StatusOr<Matrix> t = read_matrix(train_path, true);
        if (!t.ok()) return t.status();
        if (t->cols != D) {
            return absl::InvalidArgumentError(absl::StrCat("--train has dimension ", t->cols, ", the features ", D));
        }
        o.train = std::move(t->data);
    }
    o.max_nonmated_pairs = *max_pairs;
    o.bins = int(*bins);
    o.command = "pslerp eval";
    for (const std::string& a : argv) {
        const bool plain = a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+@") ==
                           std::string::npos;
        absl::StrAppend(&o.command, " ", plain ? a : absl::StrCat("'", a, "'"));
    }

    absl::StatusOr<EvalReport> r = evaluate(f->x.data(), f->n, D, labels, o);
    if (!r.ok()) return r.status();
    if (absl::Status st = write_report_data(*r, *out); !st.ok()) return st;
    std::string note = "--no-plots";
    if (!no_plots) {
        const absl::Status st = draw_plots(*out);
        note = st.ok() ? "" : std::string(st.message());
        if (!st.ok()) std::fprintf(stderr, "pslerp eval: plots not drawn: %s\n", note.c_str());
    }
    if (absl::Status st = write_report_markdown(*r, *out, note); !st.ok()) return st;

    const PointFigures& b = r->base;
    std::printf("eval: %lld rows, %lld identities, scheme %dx%d %s\n", (long long)r->n, (long long)r->identities,
                b.params.groups, b.params.group_dim, b.params.describe().c_str());
    std::printf("verification EER: protected %.2f%%, unprotected %.2f%% (%lld mated / %lld non-mated pairs)\n",
                100 * b.prot.report.eer.eer, 100 * b.unprot.report.eer.eer, (long long)b.prot.report.roc.mated,
                (long long)b.prot.report.roc.nonmated);
    std::printf("1:N rank-1: protected %.2f%%, unprotected %.2f%% (gallery %lld, %lld searches)\n",
                100 * b.search_prot.rank1, 100 * b.search_unprot.rank1, (long long)b.search_prot.gallery,
                (long long)b.search_prot.mated_searches);
    std::printf("unlinkability D_sys (template cosine): same sample %.3f, other samples %.3f\n", b.links[0].same.d_sys,
                b.links[0].other.d_sys);
    std::printf("sweep: %zu points; report: %s/report.md\n", r->sweep.size(), out->c_str());
    return absl::OkStatus();
}

}  // namespace

int cmd_eval(const std::vector<std::string>& argv) {
    return run_command("eval", argv, {"aligned", "no-plots"}, kUsage, [&](Args& args) { return run(args, argv); });
}

}  // namespace pslerp::cli
