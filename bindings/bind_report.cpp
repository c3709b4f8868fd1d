// Python binding of the evaluation suite (report/report.h); pslerp/evaluate.py is the
// user-facing function.
#include <optional>
#include <string>

#include "bindings/py_util.h"
#include "report/report.h"

namespace pslerp {

void bind_report(py::module_& m) {
    py::class_<EvalReport>(m, "EvalReport", "The evaluation suite's figures (pslerp.evaluate returns them as a dict).")
            .def("to_json", [](const EvalReport& r) { return report_json(r); }, "Every figure as one JSON document.")
            .def(
                    "write_data",
                    [](const EvalReport& r, const std::string& dir) {
                        absl::Status st;
                        {
                            py::gil_scoped_release release;
                            st = write_report_data(r, dir);
                        }
                        check(st);
                    },
                    py::arg("dir"), "Writes report.json and the CSVs the plots read into dir (created if needed).")
            .def(
                    "write_markdown",
                    [](const EvalReport& r, const std::string& dir, const std::string& plots_note) {
                        absl::Status st;
                        {
                            py::gil_scoped_release release;
                            st = write_report_markdown(r, dir, plots_note);
                        }
                        check(st);
                    },
                    py::arg("dir"), py::arg("plots_note") = "",
                    "Writes dir/report.md; plots_note says why the plots are missing (empty: drawn).");
    m.def(
            "_evaluate",
            [](py::handle x, py::handle labels, const Params& base, const std::string& preset,
               const std::string& options, std::optional<std::string> sweep, std::optional<uint64_t> seed,
               py::handle train, int64_t max_nonmated_pairs, int bins, const std::string& command) {
                auto xa = checked<float>(x, "x", {-1, -1});
                auto la = checked<int64_t>(labels, "labels", {-1});
                EvalOptions o;
                o.params = base;
                if (!preset.empty()) check(apply_option(o.params, "preset", preset));
                check(apply_options(o.params, options));
                o.sweep = sweep ? unwrap(parse_sweep(*sweep, o.params)) : default_sweep(o.params);
                o.seed = seed;
                if (!train.is_none()) {
                    auto ta = checked<float>(train, "train", {-1, xa.shape(1)});
                    o.train.assign(data_of<float>(ta), data_of<float>(ta) + ta.size());
                }
                o.max_nonmated_pairs = max_nonmated_pairs;
                o.bins = bins;
                o.command = command;
                const std::vector<int64_t> l(data_of<int64_t>(la), data_of<int64_t>(la) + la.shape(0));
                absl::StatusOr<EvalReport> r;
                {
                    py::gil_scoped_release release;
                    r = evaluate(data_of<float>(xa), xa.shape(0), xa.shape(1), l, o);
                }
                return unwrap(std::move(r));
            },
            py::arg("x"), py::arg("labels"), py::arg("base"), py::arg("preset"), py::arg("options"), py::arg("sweep"),
            py::arg("seed"), py::arg("train"), py::arg("max_nonmated_pairs"), py::arg("bins"), py::arg("command"),
            "Runs the evaluation suite (use pslerp.evaluate).");
}

}  // namespace pslerp
