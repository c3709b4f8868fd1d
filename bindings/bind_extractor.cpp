// pybind11 bindings of the face feature extractor (extractor/extractor.h) as pslerp.Extractor.
// Compiled only when the build has the pslerp_extractor target (LibTorch and dlib found);
// module.cpp calls bind_extractor() under PSLERP_WITH_EXTRACTOR; errors as in py_util.h.
#include <memory>
#include <string>
#include <vector>

#include "bindings/py_util.h"
#include "extractor/extractor.h"

namespace pslerp {

namespace {

/// (H, W, 3) uint8 C-contiguous numpy image -> RgbImage (copied).
RgbImage to_image(py::handle h, size_t i) {
    const std::string name = absl::StrCat("chips[", i, "]");
    if (!py::isinstance<py::array_t<uint8_t>>(h)) {
        throw py::value_error(name + ": expected a numpy uint8 array of shape (height, width, 3)");
    }
    auto a = py::reinterpret_borrow<py::array>(h);
    if (!py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(), py::dtype::of<uint8_t>().ptr()) ||
        a.ndim() != 3 || a.shape(2) != 3 || !(a.flags() & py::array::c_style)) {
        throw py::value_error(name + ": expected a C-contiguous uint8 array of shape (height, width, 3)");
    }
    RgbImage img;
    img.height = int(a.shape(0));
    img.width = int(a.shape(1));
    const auto* p = static_cast<const uint8_t*>(a.data());
    img.pixels.assign(p, p + a.size());
    return img;
}

}  // namespace

void bind_extractor(py::module_& m) {
    py::class_<ExtractResult>(m, "ExtractResult", "What happened to one image, with its features when ok.")
            .def_readonly("path", &ExtractResult::path)
            .def_property_readonly("outcome", [](const ExtractResult& r) { return face_outcome_name(r.outcome); },
                                   "'ok', 'several_faces', 'no_face', 'too_small', 'unreadable' or 'failed'.")
            .def_readonly("message", &ExtractResult::message, "Why, when not ok.")
            .def_readonly("num_faces", &ExtractResult::num_faces)
            .def_property_readonly("ok", &ExtractResult::ok, "Features are valid (one or several faces).")
            .def_property_readonly(
                    "raw",
                    [](const ExtractResult& r) -> py::object {
                        if (r.raw.empty()) return py::none();
                        return to_array(std::vector<float>(r.raw), {py::ssize_t(r.raw.size())});
                    },
                    "Raw model output (raw_dim,) float32, or None.")
            .def_property_readonly(
                    "features",
                    [](const ExtractResult& r) -> py::object {
                        if (r.features.empty()) return py::none();
                        return to_array(std::vector<float>(r.features), {py::ssize_t(r.features.size())});
                    },
                    "Grouped features (dim,) float32, or None.")
            .def("__repr__", [](const ExtractResult& r) {
                return absl::StrCat("pslerp.ExtractResult('", r.path, "', ", face_outcome_name(r.outcome), ")");
            });

    py::class_<Extractor, std::unique_ptr<Extractor>>(m, "Extractor", R"doc(
Face photos -> grouped features (decode, detect, align, embed, group): face-api's dlib
ResNet (128-D) by default, or a TorchScript model. Immutable after construction; its methods
may be called from several threads (the GIL is released). Errors raise RuntimeError /
ValueError; a bad image in extract_files never stops the batch.)doc")
            .def(py::init([](const std::string& model_dir, bool aligned, int groups, int group_dim,
                             bool normalize_groups, const std::string& torchscript_path, int input_size,
                             int batch_size, int num_threads, bool verify_checksum, int min_image_side,
                             int torch_threads, int detect_max_side) {
                     ExtractorOptions o;
                     o.model_dir = model_dir;
                     o.aligned = aligned;
                     o.groups = groups;
                     o.group_dim = group_dim;
                     o.normalize_groups = normalize_groups;
                     o.torchscript_path = torchscript_path;
                     o.input_size = input_size;
                     o.batch_size = batch_size;
                     o.num_threads = num_threads;
                     o.verify_checksum = verify_checksum;
                     o.min_image_side = min_image_side;
                     o.torch_threads = torch_threads;
                     o.align.detect_max_side = detect_max_side;
                     absl::StatusOr<std::unique_ptr<Extractor>> ex;
                     {
                         py::gil_scoped_release nogil;
                         ex = Extractor::create(o);
                     }
                     if (!ex.ok()) throw_status(ex.status());
                     return std::move(*ex);
                 }),
                 py::arg("model_dir") = "", py::kw_only(), py::arg("aligned") = false, py::arg("groups") = 8,
                 py::arg("group_dim") = 16, py::arg("normalize_groups") = true, py::arg("torchscript_path") = "",
                 py::arg("input_size") = 150, py::arg("batch_size") = 32, py::arg("num_threads") = 0,
                 py::arg("verify_checksum") = true, py::arg("min_image_side") = 40, py::arg("torch_threads") = 0,
                 py::arg("detect_max_side") = AlignOptions().detect_max_side)
            .def_property_readonly("dim", &Extractor::dim, "groups * group_dim")
            .def_property_readonly("groups", &Extractor::groups)
            .def_property_readonly("group_dim", &Extractor::group_dim)
            .def_property_readonly("raw_dim", &Extractor::raw_dim, "The model's output dimension.")
            .def("describe", &Extractor::model_description, "The model in words.")
            .def(
                    "extract_file",
                    [](const Extractor& ex, py::object path) {
                        const std::string p = py::str(py::module_::import("os").attr("fspath")(path));
                        absl::StatusOr<std::vector<float>> f;
                        {
                            py::gil_scoped_release nogil;
                            f = ex.extract_file(p);
                        }
                        if (!f.ok()) throw_status(f.status());
                        return to_array(std::vector<float>(*f), {py::ssize_t(f->size())});
                    },
                    py::arg("path"), "Features (dim,) float32 of the largest face in one image file.")
            .def(
                    "extract_files",
                    [](const Extractor& ex, const std::vector<py::object>& paths) {
                        std::vector<std::string> ps;
                        for (const auto& p : paths) ps.push_back(py::str(py::module_::import("os").attr("fspath")(p)));
                        py::gil_scoped_release nogil;
                        return ex.extract_files(ps);
                    },
                    py::arg("paths"), "One ExtractResult per path, in order.")
            .def(
                    "embed_chips",
                    [](const Extractor& ex, const py::list& chips) {
                        std::vector<RgbImage> imgs;
                        for (size_t i = 0; i < chips.size(); ++i) imgs.push_back(to_image(chips[i], i));
                        absl::StatusOr<std::vector<float>> f;
                        {
                            py::gil_scoped_release nogil;
                            f = ex.embed_chips(imgs);
                        }
                        if (!f.ok()) throw_status(f.status());
                        return to_array(std::vector<float>(*f), {py::ssize_t(imgs.size()), py::ssize_t(ex.raw_dim())});
                    },
                    py::arg("chips"),
                    "Raw descriptors (n, raw_dim) float32 of already-cropped face chips, each a (H, W, 3) uint8 "
                    "RGB array (padded to a square and resized; no detection).");
}

}  // namespace pslerp
