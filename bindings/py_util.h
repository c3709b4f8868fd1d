// What every file of the pybind11 module shares: absl::Status -> Python exceptions, numpy
// argument checks that name the argument ("x: expected float32, got float64"), zero-copy results,
// and the bind_* entry points, one file per area:
//   bind_scheme.cpp     Params, protect/match and keys, the synthetic generator
//   bind_eval.cpp       the metrics of eval/metrics.h
//   bind_index.cpp      IndexProtectedSlerp, IndexIVFProtectedSlerp, factory, files, dedup
//   bind_report.cpp     the evaluation suite (report/report.h)
//   bind_extractor.cpp  the face feature extractor (only when the build has it)
// Errors: InvalidArgument and OutOfRange statuses raise ValueError, any other RuntimeError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pslerp {

namespace py = pybind11;

void bind_params(py::module_& m);
void bind_scheme(py::module_& m);
void bind_synth(py::module_& m);
void bind_eval(py::module_& m);
void bind_index(py::module_& m);
void bind_report(py::module_& m);
#ifdef PSLERP_WITH_EXTRACTOR
void bind_extractor(py::module_& m);
#endif

// ---------------------------------------------------------------- errors

[[noreturn]] inline void throw_status(const absl::Status& s) {
    const std::string msg(s.message());
    if (s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kOutOfRange) {
        throw py::value_error(msg);
    }
    throw std::runtime_error(msg);
}

inline void check(const absl::Status& s) {
    if (!s.ok()) throw_status(s);
}

template <typename T>
T unwrap(absl::StatusOr<T>&& s) {
    if (!s.ok()) throw_status(s.status());
    return std::move(*s);
}

// ---------------------------------------------------------------- array checks

inline std::string shape_str(const py::array& a) {
    std::vector<std::string> dims;
    for (py::ssize_t i = 0; i < a.ndim(); ++i) dims.push_back(std::to_string(a.shape(i)));
    return "(" + absl::StrJoin(dims, ", ") + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
const char* dtype_name() {
    if constexpr (std::is_same_v<T, float>) return "float32";
    if constexpr (std::is_same_v<T, int64_t>) return "int64";
    if constexpr (std::is_same_v<T, uint8_t>) return "uint8";
    return "?";
}

template <typename T>
bool has_dtype(const py::array& a) {
    return py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(), py::dtype::of<T>().ptr());
}

/// A numpy array checked for dtype T, C order, ndim and the dimensions given (-1 = any).
template <typename T>
py::array checked(py::handle h, const char* name, std::vector<py::ssize_t> shape) {
    if (!py::isinstance<py::array>(h)) {
        throw py::value_error(absl::StrCat(name, ": expected a numpy array of ", dtype_name<T>(), ", got ",
                                           std::string(py::str(h.get_type().attr("__name__")))));
    }
    auto a = py::reinterpret_borrow<py::array>(h);
    if (!has_dtype<T>(a)) {
        throw py::value_error(absl::StrCat(name, ": expected ", dtype_name<T>(), ", got ",
                                           std::string(py::str(a.dtype()))));
    }
    bool ok = a.ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
    if (!ok) {
        std::vector<std::string> want;
        const char* letters = "nmkl";
        for (size_t i = 0; i < shape.size(); ++i) {
            want.push_back(shape[i] >= 0 ? std::to_string(shape[i]) : std::string(1, letters[i % 4]));
        }
        throw py::value_error(absl::StrCat(name, ": expected shape (", absl::StrJoin(want, ", "),
                                           shape.size() == 1 ? ",)" : ")", ", got ", shape_str(a)));
    }
    if (!(a.flags() & py::array::c_style)) {
        throw py::value_error(absl::StrCat(name, ": expected a C-contiguous array (use numpy.ascontiguousarray)"));
    }
    return a;
}

template <typename T>
const T* data_of(const py::array& a) {
    return static_cast<const T*>(a.data());
}

/// Masks are numpy bool (True = kept) or uint8 (nonzero = kept), both one byte per value.
inline py::array checked_mask(py::handle h, const char* name, std::vector<py::ssize_t> shape) {
    if (py::isinstance<py::array>(h) && has_dtype<bool>(py::reinterpret_borrow<py::array>(h))) {
        auto a = py::reinterpret_borrow<py::array>(h);
        auto as_u8 = a.attr("view")(py::dtype::of<uint8_t>());
        return checked<uint8_t>(as_u8, name, std::move(shape));
    }
    try {
        return checked<uint8_t>(h, name, std::move(shape));
    } catch (const py::value_error& e) {
        throw py::value_error(std::string(e.what()) + " (masks may also be bool)");
    }
}

/// A numpy array that owns `v` (no copy).
template <typename T>
py::array_t<T> to_array(std::vector<T>&& v, const std::vector<py::ssize_t>& shape) {
    if (v.empty()) return py::array_t<T>(shape);
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, heap->data(), owner);
}

/// 0/1 bytes as a numpy bool array (no copy).
inline py::array to_bool_array(std::vector<uint8_t>&& v, const std::vector<py::ssize_t>& shape) {
    return to_array(std::move(v), shape).attr("view")(py::dtype::of<bool>());
}

inline py::bytes to_bytes(const std::vector<uint8_t>& v) {
    return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

/// Bytes-like input (bytes, bytearray, memoryview, numpy uint8/int8) as one contiguous span.
inline std::pair<const uint8_t*, size_t> byte_span(const py::buffer_info& info, const char* name) {
    if (info.itemsize != 1 || info.ndim > 1 || (info.ndim == 1 && info.strides[0] != 1)) {
        throw py::value_error(absl::StrCat(name, ": expected bytes or a contiguous 1-D uint8 array"));
    }
    return {static_cast<const uint8_t*>(info.ptr), size_t(info.size)};
}

inline std::string fspath(const py::object& path) {
    return py::str(py::module_::import("os").attr("fspath")(path));
}


/// A 1-D numpy copy of `v`.
template <typename T>
py::array_t<T> copy_array(const std::vector<T>& v) {
    return to_array(std::vector<T>(v), {py::ssize_t(v.size())});
}

}  // namespace pslerp
