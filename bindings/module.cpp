// pybind11 module `pslerp._pslerp`: thin bindings of the scheme (plugin/), the indexes (index/)
// and the evaluation metrics (eval/metrics.h). Each function checks its arrays (numpy float32 /
// int64, C-contiguous, shape), releases the GIL, makes one C++ call and hands results back
// without copying where it can. Defaults and conveniences live in pslerp/__init__.py.
//
// Errors: a bad argument raises ValueError naming it ("x: expected float32, got float64").
// So do values the scheme cannot use — NaN or infinite values, a group of zero norm, too few
// training vectors — in every call: the scheme's functions return them as absl::Status
// InvalidArgument, the indexes throw them as pslerp::InvalidInputError (raised where the
// vectors are centred and normalised, so a group that centring makes zero is caught too).
// Other absl::Status errors and other faiss::FaissExceptions (unknown or duplicate id,
// untrained index, ...) raise RuntimeError.
//
// Threads: every index call releases the GIL before it takes the index's lock (its methods
// lock themselves; index/ProtectedIndex.h) and gives the lock back before it takes the GIL
// again, so Python threads never hold one while waiting for the other. Attributes that read
// or change index state (ntotal, nprobe, train_pca, ...) take the lock the same way.
//
// Seeds: generate_keys(seed=), protect(seed=) (pslerp/__init__.py) and Index.set_seed warn
// with a RuntimeWarning; set_seed also prints the C++ warning on stderr.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "eval/metrics.h"
#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/dedup.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "plugin/params.h"
#include "plugin/protect.h"
#include "plugin/random.h"
#include "plugin/synth.h"

#ifndef PSLERP_VERSION
#define PSLERP_VERSION "unknown"  // bindings/CMakeLists.txt passes the project version
#endif

namespace py = pybind11;

namespace pslerp {

#ifdef PSLERP_WITH_EXTRACTOR
void bind_extractor(py::module_& m);  // extractor_bindings.cpp
#endif

namespace {

// ---------------------------------------------------------------- errors

[[noreturn]] void throw_status(const absl::Status& s) {
    const std::string msg(s.message());
    if (s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kOutOfRange) {
        throw py::value_error(msg);
    }
    throw std::runtime_error(msg);
}

void check(const absl::Status& s) {
    if (!s.ok()) throw_status(s);
}

template <typename T>
T unwrap(absl::StatusOr<T>&& s) {
    if (!s.ok()) throw_status(s.status());
    return std::move(*s);
}

// ---------------------------------------------------------------- array checks

std::string shape_str(const py::array& a) {
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
py::array checked_mask(py::handle h, const char* name, std::vector<py::ssize_t> shape) {
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
py::array to_bool_array(std::vector<uint8_t>&& v, const std::vector<py::ssize_t>& shape) {
    return to_array(std::move(v), shape).attr("view")(py::dtype::of<bool>());
}

py::bytes to_bytes(const std::vector<uint8_t>& v) {
    return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

/// Bytes-like input (bytes, bytearray, memoryview, numpy uint8/int8) as one contiguous span.
std::pair<const uint8_t*, size_t> byte_span(const py::buffer_info& info, const char* name) {
    if (info.itemsize != 1 || info.ndim > 1 || (info.ndim == 1 && info.strides[0] != 1)) {
        throw py::value_error(absl::StrCat(name, ": expected bytes or a contiguous 1-D uint8 array"));
    }
    return {static_cast<const uint8_t*>(info.ptr), size_t(info.size)};
}

std::string fspath(const py::object& path) {
    return py::str(py::module_::import("os").attr("fspath")(path));
}

// ---------------------------------------------------------------- options

/// A string option of Params: read with Params::get, written through Params::set.
void string_option(py::class_<Params>& c, const char* attr, const char* option, const char* doc) {
    c.def_property(
            attr, [option](const Params& p) { return p.get(option); },
            [option](Params& p, const std::string& v) { check(p.set(option, v)); }, doc);
}

/// Applies keyword arguments to a bound object through its attributes.
void set_attributes(py::object& obj, const py::kwargs& kw, const char* what) {
    for (auto [key, value] : kw) {
        const std::string k = py::str(key);
        if (k.rfind("_", 0) == 0 || !py::hasattr(obj, key)) {
            throw py::type_error(absl::StrCat(what, ": unexpected keyword argument '", k, "'"));
        }
        py::setattr(obj, key, value);
    }
}

py::dict params_to_dict(const Params& p) {
    py::object o = py::cast(p);
    py::dict d;
    for (const char* f : {"groups", "group_dim", "t", "t_minus_importance", "key_mode", "drop", "drop_count",
                          "drop_with_replacement", "mapping", "drop_min", "drop_max", "interval_bounds",
                          "interval_counts", "intervals_by_median", "fill", "importance", "importance_weights",
                          "attention_wq", "attention_wk", "attention_temperature", "weighting"}) {
        d[f] = o.attr(f);
    }
    return d;
}

Params params_from_kwargs(Params base, const py::kwargs& kw) {
    py::object o = py::cast(std::move(base));
    // Shape first: presets and per-group options depend on it.
    py::kwargs rest;
    for (auto [key, value] : kw) {
        const std::string k = py::str(key);
        if (k == "groups" || k == "group_dim") py::setattr(o, key, value);
        else rest[key] = value;
    }
    set_attributes(o, rest, "Params");
    Params p = o.cast<Params>();
    check(p.validate());
    return p;
}

// ---------------------------------------------------------------- keys

/// (n, G, d) keys in the C++ layout: n*G*d as they are (per-group), n*d from group 0 (shared,
/// after checking that every group repeats it).
struct KeyInput {
    py::array array;
    std::vector<float> shared;
    const float* data = nullptr;
};

KeyInput key_input(py::handle h, const Params& p, py::ssize_t n) {
    KeyInput k;
    k.array = checked<float>(h, "keys", {n, p.groups, p.group_dim});
    k.data = data_of<float>(k.array);
    if (p.key_mode == KeyMode::kShared) {
        const int G = p.groups, d = p.group_dim;
        k.shared.resize(size_t(n) * d);
        for (py::ssize_t i = 0; i < n; ++i) {
            const float* row = k.data + i * G * d;
            for (int g = 1; g < G; ++g) {
                if (std::memcmp(row, row + g * d, d * sizeof(float)) != 0) {
                    throw py::value_error(absl::StrCat("keys: key_mode 'shared' needs the same key in every group; entry ",
                                                       i, " group ", g, " differs from group 0"));
                }
            }
            std::copy(row, row + d, k.shared.data() + i * d);
        }
        k.data = k.shared.data();
    }
    return k;
}

/// C++ key layout (n * key_dim) back to (n, G, d).
py::array_t<float> keys_out(const Params& p, std::vector<float>&& keys, py::ssize_t n) {
    const int G = p.groups, d = p.group_dim;
    if (p.key_mode == KeyMode::kPerGroup) return to_array(std::move(keys), {n, G, d});
    std::vector<float> full(size_t(n) * G * d);
    for (py::ssize_t i = 0; i < n; ++i) {
        for (int g = 0; g < G; ++g) std::copy_n(keys.data() + i * d, d, full.data() + (i * G + g) * d);
    }
    return to_array(std::move(full), {n, G, d});
}

RandomSource random_source(std::optional<uint64_t> seed) {
    return seed ? RandomSource(*seed) : RandomSource();
}

// ---------------------------------------------------------------- index helpers

using SearchParametersPtr = std::unique_ptr<faiss::SearchParameters>;

/// The exhaustive index's searches take no per-call options.
SearchParametersPtr exhaustive_options() {
    return nullptr;
}

/// The IVF's per-call option: nprobe given -> a SearchParametersIVF; None -> the index's nprobe.
SearchParametersPtr ivf_options(std::optional<int64_t> nprobe) {
    if (!nprobe) return nullptr;
    if (*nprobe < 1) throw py::value_error(absl::StrCat("nprobe: must be >= 1, got ", *nprobe));
    auto sp = std::make_unique<faiss::SearchParametersIVF>();
    sp->nprobe = size_t(*nprobe);
    return sp;
}

/// FAISS's hash-table direct map (the IVF) removes only through an IDSelectorArray; the
/// exhaustive index asks every stored id, which an IDSelectorBatch answers in constant time.
size_t remove_ids_of(IndexProtectedSlerp& index, idx_t n, const idx_t* ids) {
    faiss::IDSelectorBatch sel(n, ids);
    return index.remove_ids(sel);
}

size_t remove_ids_of(IndexIVFProtectedSlerp& index, idx_t n, const idx_t* ids) {
    faiss::IDSelectorArray sel(n, ids);
    return index.remove_ids(sel);
}

/// `index` as a `T`; throws when it is another kind of pslerp index.
template <class T>
std::unique_ptr<T> downcast(std::unique_ptr<faiss::Index> index) {
    auto* t = dynamic_cast<T*>(index.get());
    if (!t) throw std::runtime_error("pslerp: the data holds another kind of pslerp index");
    index.release();
    return std::unique_ptr<T>(t);
}

/// A built or loaded index as the Python object of its class.
py::object to_python(std::unique_ptr<faiss::Index> index) {
    if (dynamic_cast<IndexIVFProtectedSlerp*>(index.get())) {
        return py::cast(downcast<IndexIVFProtectedSlerp>(std::move(index)));
    }
    return py::cast(downcast<IndexProtectedSlerp>(std::move(index)));
}

/// Saving takes the index's shared lock itself (index/index_io.h).
std::vector<uint8_t> serialized(const faiss::Index& index) {
    py::gil_scoped_release nogil;
    return serialize_index(index);
}

/// f() under the index's shared lock, the GIL released meanwhile (a writer may hold the lock
/// for a while). f returns a C++ value: Python objects need the GIL.
template <class Index, class F>
auto read_locked(const Index& index, F&& f) {
    py::gil_scoped_release nogil;
    const auto lock = index.lock_shared();
    return f();
}

/// f() under the index's exclusive lock, the GIL released meanwhile.
template <class Index, class F>
void write_locked(Index& index, F&& f) {
    py::gil_scoped_release nogil;
    const auto lock = index.lock_exclusive();
    f();
}

constexpr const char* kSeedWarning =
        "pslerp: a seed makes keys, masks and fills reproducible: for tests and benchmarks only, never for real "
        "enrolments";

std::unique_ptr<faiss::Index> deserialized(const py::buffer& data) {
    auto info = data.request();
    auto [ptr, size] = byte_span(info, "data");
    py::gil_scoped_release nogil;
    return deserialize_index(ptr, size);
}

/// The IVF's quantizer from None (flat L2), a faiss factory string ("HNSW32"), serialised FAISS
/// bytes, or a python3-faiss index (serialised by pslerp._faiss_serialize, which checks the
/// FAISS version). The constructor checks its metric; the dimension is checked here because
/// faiss::IndexIVF's constructor would fail first with a less helpful message.
std::unique_ptr<faiss::Index> quantizer_from(const py::object& q, int d) {
    std::unique_ptr<faiss::Index> out;
    if (q.is_none()) {
        out = std::make_unique<faiss::IndexFlatL2>(d);
    } else if (py::isinstance<py::str>(q)) {
        const std::string desc = q.cast<std::string>();
        py::gil_scoped_release nogil;
        out.reset(faiss::index_factory(d, desc.c_str(), faiss::METRIC_L2));
    } else {
        py::object bytes = q;
        if (!py::isinstance<py::bytes>(q) && !py::isinstance<py::bytearray>(q) && !py::isinstance<py::memoryview>(q) &&
            !py::isinstance<py::array>(q)) {
            bytes = py::module_::import("pslerp").attr("_faiss_serialize")(q);
        }
        auto info = py::reinterpret_borrow<py::buffer>(bytes).request();
        auto [data, size] = byte_span(info, "quantizer");
        py::gil_scoped_release nogil;
        out = deserialize_quantizer(data, size);  // checked as index files are: no trust in the bytes
    }
    if (out->d != d) {
        throw py::value_error(absl::StrCat("quantizer: expected dimension ", d, " (params.dim), got ", out->d));
    }
    return out;
}

py::array queries(const faiss::Index& index, py::handle x, const char* name) {
    return checked<float>(x, name, {-1, index.d});
}

py::object range_result(faiss::RangeSearchResult& res, py::ssize_t n) {
    std::vector<int64_t> lims(res.lims, res.lims + n + 1);
    const py::ssize_t total = lims.back();
    py::array_t<float> D(total);
    py::array_t<int64_t> I(total);
    if (total > 0) {
        std::copy_n(res.distances, total, D.mutable_data());
        std::copy_n(res.labels, total, I.mutable_data());
    }
    return py::make_tuple(to_array(std::move(lims), {n + 1}), D, I);
}

// ---------------------------------------------------------------- eval helpers

absl::Span<const float> scores(py::handle h, const char* name) {
    auto a = checked<float>(h, name, {-1});
    return absl::Span<const float>(data_of<float>(a), a.shape(0));  // `h` keeps the buffer alive
}

template <typename T>
py::array_t<T> copy_array(const std::vector<T>& v) {
    return to_array(std::vector<T>(v), {py::ssize_t(v.size())});
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

// ---------------------------------------------------------------- bindings

void bind_params(py::module_& m) {
    py::class_<Params> c(m, "Params", R"doc(
Parameters of the protection scheme (DESIGN section 1).

``Params(groups=8, group_dim=16, t=None, key_mode=None, drop=None, fill=None, **options)``
starts from pslerp's defaults for that shape and sets every option given by keyword (any
attribute below). String options: key_mode "group" | "shared"; drop "none" | "random" |
"importance"; mapping "function" | "intervals" | "budget"; fill "zero" | "random";
importance "uniform" | "fixed" | "attention"; weighting "uniform" | "importance".
The result is validated (ValueError). List attributes return copies: assign a new list to
change them.)doc");
    c.def(py::init([](int groups, int group_dim, py::object t, py::object key_mode, py::object drop, py::object fill,
                      py::kwargs kw) {
              if (!t.is_none()) kw["t"] = t;
              if (!key_mode.is_none()) kw["key_mode"] = key_mode;
              if (!drop.is_none()) kw["drop"] = drop;
              if (!fill.is_none()) kw["fill"] = fill;
              return params_from_kwargs(Params::defaults(groups, group_dim), kw);
          }),
          py::arg("groups") = 8, py::arg("group_dim") = 16, py::arg("t") = py::none(),
          py::arg("key_mode") = py::none(), py::arg("drop") = py::none(), py::arg("fill") = py::none());
    c.def_static(
            "slerpface",
            [](int groups, int group_dim, py::kwargs kw) { return params_from_kwargs(Params::slerpface(groups, group_dim), kw); },
            py::arg("groups") = 49, py::arg("group_dim") = 16,
            "The public reference code's operating point (t=0.9 minus importance, importance drop by intervals "
            "12/4 with replacement, attention importance, importance weighting); keywords override options.");
    c.def_static(
            "defaults", [](int groups, int group_dim) { return Params::defaults(groups, group_dim); },
            py::arg("groups") = 8, py::arg("group_dim") = 16, "pslerp's default operating point for this shape.");
    c.def_readwrite("groups", &Params::groups, "G, the number of groups.");
    c.def_readwrite("group_dim", &Params::group_dim, "d, the dimension of a group; the raw dimension is G * d.");
    c.def_readwrite("t", &Params::t, "Slerp weight toward the key, in [0, 1].");
    c.def_readwrite("t_minus_importance", &Params::t_minus_importance,
                    "Per-group t_g = t - w_g with the sample's own importance (reference code).");
    string_option(c, "key_mode", "key", "'group' (one key per group) or 'shared' (one key for all groups of an entry).");
    string_option(c, "drop", "drop", "Drop policy: 'none', 'random' or 'importance'.");
    c.def_readwrite("drop_count", &Params::drop_count, "Draws per group ('random'), mean draws ('budget').");
    c.def_readwrite("drop_with_replacement", &Params::drop_with_replacement,
                    "Draws may repeat a coordinate (reference code).");
    string_option(c, "mapping", "mapping", "How importance becomes drop counts: 'function', 'intervals' or 'budget'.");
    c.def_readwrite("drop_min", &Params::drop_min, "'function' mapping: draws for the most important group.");
    c.def_readwrite("drop_max", &Params::drop_max, "'function' mapping: draws for the least important group.");
    c.def_readwrite("interval_bounds", &Params::interval_bounds, "'intervals' mapping: importance-ratio bounds.");
    c.def_readwrite("interval_counts", &Params::interval_counts,
                    "'intervals' mapping: draws per interval (one more than the bounds).");
    c.def_readwrite("intervals_by_median", &Params::intervals_by_median,
                    "'intervals' mapping: ratio w_g / median(w) (True) or w_g * G (False).");
    string_option(c, "fill", "fill", "Dropped coordinates hold 'zero' or 'random'.");
    string_option(c, "importance", "importance", "Importance provider: 'uniform', 'fixed' (importance_weights) or 'attention'.");
    c.def_readwrite("importance_weights", &Params::importance_weights, "'fixed' importance: G weights.");
    c.def_readwrite("attention_wq", &Params::attention_wq, "'attention': d*d query projection, empty = identity.");
    c.def_readwrite("attention_wk", &Params::attention_wk, "'attention': d*d key projection, empty = identity.");
    c.def_readwrite("attention_temperature", &Params::attention_temperature, "'attention': softmax temperature.");
    string_option(c, "weighting", "weighting", "How the G cosines are combined: 'uniform' (mean) or 'importance' (enrolled importance).");
    c.def_property_readonly("dim", &Params::dim, "Raw dimension G * d.");
    c.def_property_readonly("key_dim", &Params::key_dim, "Floats of key material per entry.");
    c.def("validate", [](const Params& p) { check(p.validate()); }, "Raises ValueError if inconsistent.");
    c.def("set", [](Params& p, const std::string& name, const std::string& value) { check(p.set(name, value)); },
          py::arg("name"), py::arg("value"), "Applies one factory-string option `name=value`.");
    c.def("describe", &Params::describe, "Options as `name=value,...` (factory-string syntax).");
    c.def("to_dict", &params_to_dict, "Every option as a dict (Params(**d) rebuilds it).");
    c.def("copy", [](const Params& p) { return p; }, "A copy.");
    c.def("__copy__", [](const Params& p) { return p; });
    c.def("__deepcopy__", [](const Params& p, py::object) { return p; }, py::arg("memo"));
    c.def("__eq__", [](const Params& a, py::object b) {
        return py::isinstance<Params>(b) && params_to_dict(a).equal(params_to_dict(b.cast<Params>()));
    });
    c.attr("__hash__") = py::none();
    c.def("__repr__", [](const Params& p) {
        return absl::StrCat("pslerp.Params(groups=", p.groups, ", group_dim=", p.group_dim, ", ", p.describe(), ")");
    });
    c.def(py::pickle([](const Params& p) { return params_to_dict(p); },
                     [](const py::dict& d) { return params_from_kwargs(Params(), py::kwargs(d)); }));
}

void bind_scheme(py::module_& m) {
    m.def(
            "generate_keys",
            [](int64_t n, const Params& p, std::optional<uint64_t> seed) {
                if (n < 0) throw py::value_error(absl::StrCat("n: must be >= 0, got ", n));
                check(p.validate());
                std::vector<float> keys;
                {
                    py::gil_scoped_release nogil;
                    keys = generate_keys(p, n, random_source(seed));
                }
                return keys_out(p, std::move(keys), n);
            },
            py::arg("n"), py::arg("params"), py::arg("seed") = py::none(),
            "(n, G, d) float32 unit-norm keys (see pslerp.generate_keys).");

    m.def(
            "protect",
            [](py::handle x, const Params& p, py::handle keys, py::handle masks, py::handle weights,
               std::optional<uint64_t> seed) {
                check(p.validate());
                auto xa = checked<float>(x, "x", {-1, p.dim()});
                const py::ssize_t n = xa.shape(0);
                ProtectInputs in;
                KeyInput k;
                py::array ma, wa;
                if (!keys.is_none()) {
                    k = key_input(keys, p, n);
                    in.keys = k.data;
                }
                if (!masks.is_none()) {
                    ma = checked_mask(masks, "masks", {n, p.groups, p.group_dim});
                    in.masks = data_of<uint8_t>(ma);
                }
                if (!weights.is_none()) {
                    wa = checked<float>(weights, "weights", {n, p.groups});
                    in.importance = data_of<float>(wa);
                }
                absl::StatusOr<Protected> pr;
                {
                    py::gil_scoped_release nogil;
                    pr = protect(p, data_of<float>(xa), n, random_source(seed), in);
                }
                Protected out = unwrap(std::move(pr));
                return py::make_tuple(to_array(std::move(out.templates), {n, p.dim()}),
                                      keys_out(p, std::move(out.keys), n),
                                      to_bool_array(std::move(out.masks), {n, p.groups, p.group_dim}),
                                      to_array(std::move(out.weights), {n, p.groups}));
            },
            py::arg("x"), py::arg("params"), py::arg("keys") = py::none(), py::arg("masks") = py::none(),
            py::arg("weights") = py::none(), py::arg("seed") = py::none(),
            "(templates, keys, masks, weights) (see pslerp.protect).");

    auto entries = [](const Params& p, py::handle templates, py::handle keys, py::handle masks, py::handle weights,
                      py::ssize_t n) {
        struct {
            py::array t, m, w;
            KeyInput k;
        } e;
        e.t = checked<float>(templates, "templates", {n, p.dim()});
        n = e.t.shape(0);
        e.k = key_input(keys, p, n);
        e.m = checked_mask(masks, "masks", {n, p.groups, p.group_dim});
        if (weights.is_none()) throw py::value_error("weights: required here (pslerp.match supplies defaults)");
        e.w = checked<float>(weights, "weights", {n, p.groups});
        return e;
    };

    m.def(
            "match",
            [entries](py::handle q, py::handle templates, py::handle keys, py::handle masks, const Params& p,
                      py::handle weights) {
                check(p.validate());
                auto qa = checked<float>(q, "q", {-1, p.dim()});
                const py::ssize_t n = qa.shape(0);
                auto e = entries(p, templates, keys, masks, weights, n);
                absl::StatusOr<std::vector<float>> s;
                {
                    py::gil_scoped_release nogil;
                    s = match_pairs(p, data_of<float>(qa), n, data_of<float>(e.t), e.k.data, data_of<uint8_t>(e.m),
                                    data_of<float>(e.w));
                }
                return to_array(unwrap(std::move(s)), {n});
            },
            py::arg("q"), py::arg("templates"), py::arg("keys"), py::arg("masks"), py::arg("params"),
            py::arg("weights"), "(n,) scores of probe i against entry i (see pslerp.match).");

    m.def(
            "match_all",
            [entries](py::handle q, py::handle templates, py::handle keys, py::handle masks, const Params& p,
                      py::handle weights) {
                check(p.validate());
                auto qa = checked<float>(q, "q", {-1, p.dim()});
                const py::ssize_t nq = qa.shape(0);
                auto e = entries(p, templates, keys, masks, weights, -1);
                const py::ssize_t n = e.t.shape(0);
                absl::StatusOr<std::vector<float>> s;
                {
                    py::gil_scoped_release nogil;
                    s = match_all(p, data_of<float>(qa), nq, data_of<float>(e.t), e.k.data, data_of<uint8_t>(e.m),
                                  data_of<float>(e.w), n);
                }
                return to_array(unwrap(std::move(s)), {nq, n});
            },
            py::arg("q"), py::arg("templates"), py::arg("keys"), py::arg("masks"), py::arg("params"),
            py::arg("weights"), "(nq, n) scores of every probe against every entry (see pslerp.match_all).");

}

void bind_synth(py::module_& m) {
    py::class_<SynthConfig> c(m, "SynthConfig", R"doc(
Configuration of the synthetic generator (plugin/synth.h): identities as random unit centres
per group, samples around them with ArcFace-like calibrated noise. ``SynthConfig(**fields)``;
``norm`` is "groups" | "whole" | "none".)doc");
    c.def(py::init([](py::kwargs kw) {
        py::object o = py::cast(SynthConfig());
        set_attributes(o, kw, "SynthConfig");
        SynthConfig cfg = o.cast<SynthConfig>();
        check(cfg.validate());
        return cfg;
    }));
    c.def_readwrite("groups", &SynthConfig::groups);
    c.def_readwrite("group_dim", &SynthConfig::group_dim);
    c.def_readwrite("identities", &SynthConfig::identities);
    c.def_readwrite("samples_per_identity", &SynthConfig::samples_per_identity);
    c.def_readwrite("noise", &SynthConfig::noise);
    c.def_readwrite("quality_spread", &SynthConfig::quality_spread);
    c.def_readwrite("group_noise_spread", &SynthConfig::group_noise_spread);
    c.def_readwrite("noisy_group_fraction", &SynthConfig::noisy_group_fraction);
    c.def_readwrite("noisy_group_scale", &SynthConfig::noisy_group_scale);
    c.def_readwrite("centre_decay", &SynthConfig::centre_decay);
    c.def_readwrite("nonmated_sd", &SynthConfig::nonmated_sd);
    c.def_readwrite("offset_norm", &SynthConfig::offset_norm);
    c.def_readwrite("seed", &SynthConfig::seed);
    c.def_property(
            "norm",
            [](const SynthConfig& s) {
                return s.norm == SynthNorm::kGroups ? "groups" : s.norm == SynthNorm::kWhole ? "whole" : "none";
            },
            [](SynthConfig& s, const std::string& v) {
                if (v == "groups") s.norm = SynthNorm::kGroups;
                else if (v == "whole") s.norm = SynthNorm::kWhole;
                else if (v == "none") s.norm = SynthNorm::kNone;
                else throw py::value_error("norm: expected 'groups', 'whole' or 'none', got '" + v + "'");
            });
    c.def_property_readonly("dim", &SynthConfig::dim);

    m.def(
            "synth_samples",
            [](const SynthConfig& cfg) {
                absl::StatusOr<SynthSet> s;
                {
                    py::gil_scoped_release nogil;
                    s = synth_samples(cfg);
                }
                SynthSet set = unwrap(std::move(s));
                return py::make_tuple(to_array(std::move(set.x), {set.n, set.dim}),
                                      to_array(std::move(set.labels), {set.n}));
            },
            py::arg("config"), "(x (n, D) float32, labels (n,) int64); row i*spi + s is sample s of identity i.");
    m.def(
            "synth_gallery",
            [](const SynthConfig& cfg, int64_t gallery_size, int64_t mated, int64_t nonmated) {
                absl::StatusOr<SynthSplit> s;
                {
                    py::gil_scoped_release nogil;
                    s = synth_gallery(cfg, gallery_size, mated, nonmated);
                }
                SynthSplit sp = unwrap(std::move(s));
                return py::make_tuple(to_array(std::move(sp.gallery.x), {sp.gallery.n, sp.gallery.dim}),
                                      to_array(std::move(sp.gallery.labels), {sp.gallery.n}),
                                      to_array(std::move(sp.probes.x), {sp.probes.n, sp.probes.dim}),
                                      to_array(std::move(sp.probes.labels), {sp.probes.n}));
            },
            py::arg("config"), py::arg("gallery_size"), py::arg("mated_probes"), py::arg("nonmated_probes"),
            "(gallery_x, gallery_labels, probe_x, probe_labels); mated probes first, non-mated ones have label -1.");
}

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

template <class Index>
using IndexClass = py::class_<Index, faiss::Index, std::unique_ptr<Index>>;

/// Binds what both index classes share, once. Only their per-call search options differ:
/// `options` makes FAISS search parameters from the extra arguments of search, range_search and
/// deduplicate (its parameters Opt...: none for the exhaustive index, nprobe for the IVF), `kw`
/// are those arguments' pybind11 annotations and `options_doc` their documentation.
template <class Index, class... Opt, class... Kw>
void bind_protected(IndexClass<Index>& c, SearchParametersPtr (*options)(Opt...), const std::string& options_doc,
                    const Kw&... kw) {
    const std::string name = py::str(c.attr("__name__"));
    c.def_property_readonly("d", [](const Index& i) { return i.d; }, "Raw dimension G * d.");
    c.def_property_readonly(
            "ntotal", [](const Index& i) { return read_locked(i, [&] { return i.ntotal; }); }, "Live entries.");
    c.def("__len__", [](const Index& i) { return read_locked(i, [&] { return i.ntotal; }); });
    c.def_property_readonly(
            "is_trained", [](const Index& i) { return read_locked(i, [&] { return i.is_trained; }); },
            "False while train() is needed (an IVF index before train()).");
    c.def_property_readonly("params", [](const Index& i) { return i.params; }, "A copy of the scheme parameters.");
    c.def_property_readonly("bytes_per_entry", [](const Index& i) { return i.bytes_per_entry(); },
                            "Bytes stored per entry (protected entry and id).");
    c.def_property_readonly("clamped_count", [](const Index& i) { return i.clamped_count(); },
                            "Probe-key cosines clamped as antipodal since creation.");
    c.def_property_readonly(
            "is_centered", [](const Index& i) { return read_locked(i, [&] { return i.centering.trained(); }); },
            "True once train() learned a centring.");
    c.def_property(
            "train_pca", [](const Index& i) { return read_locked(i, [&] { return i.train_pca; }); },
            [](Index& i, bool v) { write_locked(i, [&] { i.train_pca = v; }); },
            "train() also learns a PCA rotation (factory option pca=true).");
    c.def_property_readonly(
            "seed", [](const Index& i) { return read_locked(i, [&] { return i.seed(); }); },
            "The seed recorded for this index: given to set_seed, or read from the file it was loaded from "
            "(entries added under it have reproducible keys); None if never seeded.");
    c.def_property_readonly(
            "seeded_stream", [](const Index& i) { return read_locked(i, [&] { return i.seeded_stream(); }); },
            "True while later adds draw keys from the seed: set_seed was called on this object. False after "
            "loading, even a seeded file (keys then come from the OS generator).");
    c.def_property_readonly(
            "next_id", [](const Index& i) { return read_locked(i, [&] { return i.next_id(); }); },
            "The id add() gives next (after the largest id ever added).");
    c.def(
            "describe", [](const Index& i) { return read_locked(i, [&] { return describe_index(i); }); },
            "A factory string for this index.");
    c.def("__repr__", [name](const Index& i) {
        const auto [desc, n] = read_locked(i, [&] { return std::make_pair(describe_index(i), i.ntotal); });
        return absl::StrCat("pslerp.", name, "('", desc, "', ntotal=", n, ")");
    });

    c.def(
            "train",
            [](Index& i, py::handle x) {
                auto xa = queries(i, x, "x");
                if (xa.shape(0) == 0) throw py::value_error("x: train needs at least one vector");
                py::gil_scoped_release nogil;
                i.train(xa.shape(0), data_of<float>(xa));
            },
            py::arg("x"), "Learns the centring (and the IVF's centroids) from representative raw features x (n, d).");
    c.def(
            "add",
            [](Index& i, py::handle x) {
                auto xa = queries(i, x, "x");
                py::gil_scoped_release nogil;
                i.add(xa.shape(0), data_of<float>(xa));
            },
            py::arg("x"), "Protects and adds raw features x (n, d); ids follow the largest id so far.");
    c.def(
            "add_with_ids",
            [](Index& i, py::handle x, py::handle ids) {
                auto xa = queries(i, x, "x");
                auto ia = checked<int64_t>(ids, "ids", {xa.shape(0)});
                py::gil_scoped_release nogil;
                i.add_with_ids(xa.shape(0), data_of<float>(xa), data_of<int64_t>(ia));
            },
            py::arg("x"), py::arg("ids"),
            "Adds raw features x (n, d) under external ids (n,) int64 (>= 0, new and distinct).");
    c.def(
            "search",
            [options](const Index& i, py::handle x, int64_t k, Opt... opt) {
                auto xa = queries(i, x, "x");
                if (k <= 0) throw py::value_error(absl::StrCat("k: must be > 0, got ", k));
                const SearchParametersPtr sp = options(opt...);
                const py::ssize_t n = xa.shape(0);
                py::array_t<float> D({n, py::ssize_t(k)});
                py::array_t<int64_t> I({n, py::ssize_t(k)});
                float* dp = D.mutable_data();
                int64_t* ip = I.mutable_data();
                {
                    py::gil_scoped_release nogil;
                    i.search(n, data_of<float>(xa), k, dp, ip, sp.get());
                }
                return py::make_tuple(D, I);
            },
            py::arg("x"), py::arg("k"), kw...,
            ("k best entries for each raw probe x (n, d): (D (n, k) float32 scores, best first, I (n, k) int64 "
             "ids); missing results have id -1 and score -inf." +
             options_doc)
                    .c_str());
    c.def(
            "range_search",
            [options](const Index& i, py::handle x, float thresh, Opt... opt) {
                auto xa = queries(i, x, "x");
                if (!std::isfinite(thresh)) throw py::value_error("thresh: must be finite");
                const SearchParametersPtr sp = options(opt...);
                const py::ssize_t n = xa.shape(0);
                faiss::RangeSearchResult res(n);
                {
                    py::gil_scoped_release nogil;
                    i.range_search(n, data_of<float>(xa), thresh, &res, sp.get());
                }
                return range_result(res, n);
            },
            py::arg("x"), py::arg("thresh"), kw...,
            ("Every entry scoring >= thresh for each raw probe x (n, d): (lims (n+1,) int64, D float32, I int64); "
             "probe i's results are D[lims[i]:lims[i+1]], best first." +
             options_doc)
                    .c_str());
    c.def(
            "remove_ids",
            [](Index& i, py::handle ids) {
                auto ia = checked<int64_t>(ids, "ids", {-1});
                py::gil_scoped_release nogil;
                return remove_ids_of(i, ia.shape(0), data_of<int64_t>(ia));
            },
            py::arg("ids"), "Removes the entries with these ids ((n,) int64); returns how many were present.");
    c.def("reset", &Index::reset, py::call_guard<py::gil_scoped_release>(),
          "Removes every entry (keeps the training).");

    auto verify_batch = [](const Index& i, py::handle x, py::handle ids) {
        auto xa = queries(i, x, "x");
        auto ia = checked<int64_t>(ids, "ids", {xa.shape(0)});
        py::array_t<float> out(xa.shape(0));
        float* op = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            i.verify_batch(xa.shape(0), data_of<float>(xa), data_of<int64_t>(ia), op);
        }
        return out;
    };
    c.def("verify_batch", verify_batch, py::arg("x"), py::arg("ids"),
          "(n,) float32 scores of probe x[i] (x (n, d)) against the entry with id ids[i] ((n,) int64).");
    c.def(
            "verify",
            [verify_batch](const Index& i, py::handle x, py::handle id) -> py::object {
                if (!py::isinstance<py::array>(x) || py::reinterpret_borrow<py::array>(x).ndim() != 1) {
                    return verify_batch(i, x, id);
                }
                auto xa = checked<float>(x, "x", {i.d});
                if (!py::isinstance<py::int_>(id) && !py::isinstance(id, py::module_::import("numpy").attr("integer"))) {
                    throw py::value_error("id: expected an int for a single probe");
                }
                const idx_t one = id.cast<idx_t>();
                float s;
                {
                    py::gil_scoped_release nogil;
                    s = i.verify(data_of<float>(xa), one);
                }
                return py::float_(s);
            },
            py::arg("x"), py::arg("id"),
            "1:1 score. x (d,) with an int id -> float; x (n, d) with ids (n,) int64 -> (n,) float32 scores of "
            "probe i against entry ids[i] (as verify_batch). Unknown ids raise RuntimeError.");
    c.def(
            "verify_identity",
            [](const Index& i, py::handle x, py::handle ids) {
                auto xa = checked<float>(x, "x", {i.d});
                auto ia = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids);
                if (!ia || ia.ndim() != 1 || ia.shape(0) == 0) {
                    throw py::value_error("ids: expected a non-empty 1-D sequence of int64 ids");
                }
                py::gil_scoped_release nogil;
                return i.verify_identity(data_of<float>(xa), ia.shape(0), ia.data());
            },
            py::arg("x"), py::arg("ids"),
            "1:1 against one identity enrolled several times: the best score of probe x (d,) over the entries "
            "with these ids.");
    c.def("contains", [](const Index& i, idx_t id) { return i.contains(id); }, py::arg("id"),
          py::call_guard<py::gil_scoped_release>(), "True if an entry with this id is present.");
    c.def(
            "set_seed",
            [](Index& i, uint64_t seed) {
                if (PyErr_WarnEx(PyExc_RuntimeWarning, kSeedWarning, 1) < 0) throw py::error_already_set();
                py::gil_scoped_release nogil;
                i.set_seed(seed);
            },
            py::arg("seed"),
            "Makes keys, masks and fills of later adds reproducible (RuntimeWarning). Tests and benchmarks only: "
            "never for real enrolments. A saved index records the seed, but a loaded one draws keys from the OS "
            "generator until set_seed is called again (which continues the saved stream).");
    c.def(
            "deduplicate",
            [options](Index& i, py::handle x, float threshold, bool enroll, py::handle ids, Opt... opt) {
                auto xa = queries(i, x, "x");
                if (!std::isfinite(threshold)) throw py::value_error("threshold: must be finite");
                const SearchParametersPtr sp = options(opt...);
                DedupOptions o;
                o.threshold = threshold;
                o.enroll_unique = enroll;
                o.search = sp.get();
                py::array ia;
                if (!ids.is_none()) {
                    ia = checked<int64_t>(ids, "ids", {xa.shape(0)});
                    o.ids = data_of<int64_t>(ia);
                }
                py::gil_scoped_release nogil;
                return deduplicate(i, xa.shape(0), data_of<float>(xa), o);
            },
            py::arg("x"), py::arg("threshold") = 0.9f, py::arg("enroll") = false, py::arg("ids") = py::none(), kw...,
            ("De-duplicates a batch x (n, d) of raw features against the gallery (this index's range search) and "
             "within itself at a score threshold; with enroll=True adds one representative per new identity (under "
             "ids[i] when ids (n,) int64 is given). Returns a DedupResult." +
             options_doc)
                    .c_str());
    c.def(
            "clone",
            [](const Index& i) {
                py::gil_scoped_release nogil;
                const std::vector<uint8_t> b = serialize_index(i);
                return downcast<Index>(deserialize_index(b.data(), b.size()));
            },
            "A deep copy (through serialisation).");
    c.def(py::pickle([](const Index& i) { return to_bytes(serialized(i)); },
                     [](const py::bytes& b) { return downcast<Index>(deserialized(b)); }));
}

void bind_index(py::module_& m) {
    py::class_<DedupResult>(m, "DedupResult", "Outcome of deduplicate().")
            .def_property_readonly(
                    "existing", [](const DedupResult& r) { return r.existing; },
                    "Per batch item: [(id, score), ...] gallery entries scoring >= threshold, best first.")
            .def_property_readonly(
                    "cluster", [](const DedupResult& r) { return copy_array(r.cluster); },
                    "Per batch item: its cluster within the batch (the smallest batch index in it).")
            .def_property_readonly(
                    "unique", [](const DedupResult& r) { return copy_array(r.unique); },
                    "Batch items that are new (no gallery match; first of a cluster matching no gallery entry).")
            .def_property_readonly(
                    "enrolled_ids", [](const DedupResult& r) { return copy_array(r.enrolled_ids); },
                    "Ids given to the unique items when enrolled (empty otherwise).")
            .def_property_readonly("duplicates_of_existing", &DedupResult::duplicates_of_existing,
                                   "Batch items matching at least one gallery entry.")
            .def_property_readonly("clusters_with_several", &DedupResult::clusters_with_several,
                                   "Clusters of two or more batch items.")
            .def("__repr__", [](const DedupResult& r) {
                return absl::StrCat("pslerp.DedupResult(n=", r.cluster.size(), ", unique=", r.unique.size(),
                                    ", duplicates_of_existing=", r.duplicates_of_existing(),
                                    ", clusters_with_several=", r.clusters_with_several(), ")");
            });

    // faiss::Index belongs to another library: registered for this module only, so that no
    // other pybind11 module's binding of it can clash with this one.
    py::class_<faiss::Index>(m, "Index", py::module_local(), R"doc(
Base class of the pslerp indexes (a faiss::Index): IndexProtectedSlerp (exhaustive, exact) and
IndexIVFProtectedSlerp (IVF). Not constructible; use index_factory or the subclasses.)doc");

    IndexClass<IndexProtectedSlerp> flat(m, "IndexProtectedSlerp", R"doc(
The exhaustive FAISS-style index over protected face templates: every search scores every
entry exactly (the oracle of IndexIVFProtectedSlerp).

``IndexProtectedSlerp(params=Params())``, or ``index_factory(d, "PSlerp8x16")``. train() is
optional: it learns a feature centring.

Inputs are numpy float32 C-contiguous (n, d) arrays of raw features, ids int64. Scores are
similarities (higher is better); missing results have label -1 and score -inf. NaN or
infinite values and zero groups raise ValueError; unknown or duplicate ids RuntimeError.

Thread safety: any method may be called from any Python thread; the GIL is released and the
index locks itself. search, range_search, verify*, contains and saving (write_index,
serialize_index, pickling) run concurrently; add, add_with_ids, remove_ids, train, reset,
compact, set_seed and deduplicate(enroll=True) wait for them and run alone. Neither waits
forever: a write waits only for the searches already running.)doc");
    flat.def(py::init([](const Params& p) { return std::make_unique<IndexProtectedSlerp>(p); }),
             py::arg("params") = Params());
    bind_protected(flat, &exhaustive_options, "");
    flat.def("compact", &IndexProtectedSlerp::compact, py::call_guard<py::gil_scoped_release>(),
             "Reclaims the space of removed entries.");

    IndexClass<IndexIVFProtectedSlerp> ivf(m, "IndexIVFProtectedSlerp", R"doc(
An IVF index whose inverted lists hold only protected entries: the scalable search path.

``IndexIVFProtectedSlerp(params, nlist, quantizer=None)``, or
``index_factory(d, "IVF1024,PSlerp8x16")``. ``quantizer`` is None (flat L2 over the
centroids), a faiss factory string such as "HNSW32" (L2, dimension params.dim), serialised
FAISS bytes, or a python3-faiss index (copied through serialisation; the faiss module's
version must be pslerp.FAISS_VERSION). train() (at least nlist representative features,
preferably not the enrolled ones) learns the centring and the centroids; it is needed before
add and search.

A search probes the ``nprobe`` lists nearest to the probe (default default_nprobe(nlist),
about 3% of the lists) and scores their entries exactly; with nprobe = nlist it returns what
the exhaustive index returns. Each stored entry also reveals its list (README "Security").
Inputs, errors and thread safety as IndexProtectedSlerp; merge_from locks both indexes (in
either order without deadlock), setting nprobe waits for running searches.)doc");
    ivf.def(py::init([](const Params& p, size_t nlist, const py::object& quantizer) {
                auto q = quantizer_from(quantizer, p.dim());
                return std::make_unique<IndexIVFProtectedSlerp>(std::move(q), nlist, p);
            }),
            py::arg("params"), py::arg("nlist"), py::arg("quantizer") = py::none());
    bind_protected(ivf, &ivf_options,
                   " nprobe: lists probed for this call (>= 1; default: index.nprobe).", py::kw_only(),
                   py::arg("nprobe") = py::none());
    ivf.def_property_readonly("nlist", [](const IndexIVFProtectedSlerp& i) { return i.nlist; }, "Number of lists.");
    ivf.def_property(
            "nprobe", [](const IndexIVFProtectedSlerp& i) { return read_locked(i, [&] { return i.nprobe; }); },
            [](IndexIVFProtectedSlerp& i, int64_t nprobe) {
                if (nprobe < 1) throw py::value_error(absl::StrCat("nprobe: must be >= 1, got ", nprobe));
                write_locked(i, [&] { i.nprobe = size_t(nprobe); });
            },
            "Lists probed by default (values above nlist probe every list).");
    ivf.def("imbalance", &IndexIVFProtectedSlerp::imbalance, py::call_guard<py::gil_scoped_release>(),
            "FAISS's imbalance factor of the list sizes: nlist * sum(size^2) / ntotal^2 (1 = balanced).");
    ivf.def(
            "merge_from",
            [](IndexIVFProtectedSlerp& i, IndexIVFProtectedSlerp& other) { i.merge_from(other, 0); },
            py::arg("other"), py::call_guard<py::gil_scoped_release>(),
            "Moves every entry of `other` (same parameters, centring and centroids: e.g. a copy of this index "
            "made before adding) into this index, keeping ids; `other` ends empty. Ids must not collide.");

    m.def("default_nprobe", &default_nprobe, py::arg("nlist"),
          "The nprobe an IVF index of nlist lists uses unless told otherwise (about 3% of the lists, at least 8).");
    m.def(
            "index_factory",
            [](int d, const std::string& description) {
                std::unique_ptr<faiss::Index> index;
                {
                    py::gil_scoped_release nogil;
                    index = index_factory(d, description);
                }
                return to_python(std::move(index));
            },
            py::arg("d"), py::arg("description"),
            R"doc(A pslerp index from a factory string: "PSlerp8x16" (exhaustive IndexProtectedSlerp),
"IVF1024,PSlerp8x16" or "IVF65536_HNSW32,PSlerp8x16(t=0.9,nprobe=64)" (IndexIVFProtectedSlerp).
d must equal G * group_dim.)doc");
    m.def(
            "write_index",
            [](const faiss::Index& i, const py::object& path) {
                const std::string p = fspath(path);
                py::gil_scoped_release nogil;
                write_index(i, p);
            },
            py::arg("index"), py::arg("path"), "Saves the index to one file, atomically.");
    m.def(
            "read_index",
            [](const py::object& path) {
                const std::string p = fspath(path);
                std::unique_ptr<faiss::Index> index;
                {
                    py::gil_scoped_release nogil;
                    index = read_index(p);
                }
                return to_python(std::move(index));
            },
            py::arg("path"), "Loads an index saved by write_index (either class).");
    m.def(
            "serialize_index",
            [](const faiss::Index& i) {
                std::vector<uint8_t> b = serialized(i);
                const py::ssize_t n = b.size();
                return to_array(std::move(b), {n});
            },
            py::arg("index"), "The index file's bytes as a numpy uint8 array.");
    m.def(
            "deserialize_index", [](const py::buffer& data) { return to_python(deserialized(data)); }, py::arg("data"),
            "An index from serialize_index's output (numpy uint8, bytes, bytearray or memoryview).");
}

}  // namespace

}  // namespace pslerp

PYBIND11_MODULE(_pslerp, m) {
    m.doc() = "pslerp's C++ core (thin bindings; import pslerp instead).";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const faiss::FaissException& e) {
            // "Error in <function> at <file>:<line>: pslerp: <message>" -> "pslerp: <message>"
            const std::string what = e.what();
            const auto at = what.find("pslerp: ");
            const bool bad_value = dynamic_cast<const pslerp::InvalidInputError*>(&e) != nullptr;
            PyObject* type = bad_value ? PyExc_ValueError : PyExc_RuntimeError;
            PyErr_SetString(type, (at == std::string::npos ? what : what.substr(at)).c_str());
        }
    });
    m.attr("__version__") = PSLERP_VERSION;
    m.attr("FAISS_VERSION") =
            absl::StrCat(FAISS_VERSION_MAJOR, ".", FAISS_VERSION_MINOR, ".", FAISS_VERSION_PATCH);
    pslerp::bind_params(m);
    pslerp::bind_scheme(m);
    pslerp::bind_synth(m);
    pslerp::bind_eval(m);
    pslerp::bind_index(m);
#ifdef PSLERP_WITH_EXTRACTOR
    pslerp::bind_extractor(m);
    m.attr("HAS_EXTRACTOR") = true;
#else
    m.attr("HAS_EXTRACTOR") = false;
#endif
}
