// Python bindings of the metrics (eval/metrics.h).
#include "bindings/py_util.h"
#include "eval/metrics.h"

namespace pslerp {

namespace {

// ---------------------------------------------------------------- eval helpers

absl::Span<const float> scores(py::handle h, const char* name) {
    auto a = checked<float>(h, name, {-1});
    return absl::Span<const float>(data_of<float>(a), a.shape(0));  // `h` keeps the buffer alive
}

py::dict tar_dict(const TarAtFar& t) {
    py::dict d;
    d["target_far"] = t.target_far;
    d["tar"] = t.tar;
    d["far"] = t.far;
    d["threshold"] = t.threshold;
    d["nonmated"] = t.nonmated;
    d["allowed_false_accepts"] = t.allowed_false_accepts;
    d["false_accepts"] = t.false_accepts;
    d["resolvable"] = t.resolvable;
    return d;
}

}  // namespace

void bind_eval(py::module_& m) {
    m.def(
            "roc_curve",
            [](py::handle mated, py::handle nonmated) {
                auto roc = unwrap(roc_curve(scores(mated, "mated"), scores(nonmated, "nonmated")));
                py::dict d;
                d["thresholds"] = copy_array(roc.thresholds);
                d["tar"] = copy_array(roc.tar);
                d["far"] = copy_array(roc.far);
                d["true_accepts"] = copy_array(roc.true_accepts);
                d["false_accepts"] = copy_array(roc.false_accepts);
                d["mated"] = roc.mated;
                d["nonmated"] = roc.nonmated;
                return d;
            },
            py::arg("mated"), py::arg("nonmated"),
            "Exact ROC at every distinct score (thresholds descending; accept score >= threshold) as a dict of "
            "arrays: thresholds, tar, far, true_accepts, false_accepts, plus the counts mated, nonmated.");
    m.def(
            "equal_error_rate",
            [](py::handle mated, py::handle nonmated) {
                auto roc = unwrap(roc_curve(scores(mated, "mated"), scores(nonmated, "nonmated")));
                auto e = unwrap(equal_error_rate(roc));
                return py::make_tuple(e.eer, e.threshold);
            },
            py::arg("mated"), py::arg("nonmated"), "(eer, threshold) interpolated on the exact ROC.");
    m.def(
            "tar_at_far",
            [](py::handle mated, py::handle nonmated, double far) {
                auto roc = unwrap(roc_curve(scores(mated, "mated"), scores(nonmated, "nonmated")));
                return tar_dict(unwrap(tar_at_far(roc, far)));
            },
            py::arg("mated"), py::arg("nonmated"), py::arg("far"),
            "TAR at a target FAR as a dict: tar, far, threshold, nonmated, allowed_false_accepts, false_accepts, "
            "resolvable (False when nonmated * far < 1).");
    m.def(
            "unlinkability",
            [](py::handle mated, py::handle nonmated, int bins, double lo, double hi, double omega) {
                UnlinkabilityOptions o;
                o.bins = bins;
                o.lo = lo;
                o.hi = hi;
                o.omega = omega;
                auto u = unwrap(unlinkability(scores(mated, "mated"), scores(nonmated, "nonmated"), o));
                py::dict d;
                d["d_sys"] = u.d_sys;
                d["bin_edges"] = copy_array(u.bin_edges);
                d["p_mated"] = copy_array(u.p_mated);
                d["p_nonmated"] = copy_array(u.p_nonmated);
                d["d_local"] = copy_array(u.d_local);
                return d;
            },
            py::arg("mated"), py::arg("nonmated"), py::arg("bins") = 100, py::arg("lo") = 0.0, py::arg("hi") = 0.0,
            py::arg("omega") = 1.0,
            "Gomez-Barrero et al. 2018 unlinkability: dict with d_sys (0 unlinkable .. 1 linkable), bin_edges, "
            "p_mated, p_nonmated, d_local. lo >= hi uses the range of all scores.");
}

}  // namespace pslerp
