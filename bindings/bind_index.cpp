// Python bindings of the indexes (index/): both classes through one template, the factory,
// files and de-duplication. Thin: checks, GIL release, one C++ call (bindings/py_util.h).
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <memory>
#include <optional>

#include "bindings/py_util.h"
#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/dedup.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "plugin/params.h"

namespace pslerp {

namespace {

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

/// Saving takes the index's shared lock itself (index/index_io.h). Pickling writes the clear
/// format (refused for an index with a secret frame).
std::vector<uint8_t> serialized(const faiss::Index& index) {
    py::gil_scoped_release nogil;
    return serialize_index_unsealed(index);
}

/// secret=: None (empty) or exactly 32 bytes (bytes or bytearray); anything else ValueError.
Secret secret_arg(const py::object& secret) {
    if (secret.is_none()) return Secret();
    if (!py::isinstance<py::bytes>(secret) && !py::isinstance<py::bytearray>(secret)) {
        throw py::value_error(std::string("secret must be bytes of length 32 (pslerp.generate_secret()), got ") +
                              std::string(py::str(py::type::of(secret).attr("__name__"))));
    }
    const std::string b = py::isinstance<py::bytes>(secret) ? std::string(secret.cast<py::bytes>())
                                                            : std::string(secret.cast<py::bytearray>());
    auto s = Secret::from_bytes(b.data(), b.size());
    if (!s.ok()) throw py::value_error("secret must be bytes of length 32, got " + std::to_string(b.size()) + " bytes");
    return *s;
}

/// A write's secret and unsealed flag: exactly one of them.
Secret write_secret(const py::object& secret, bool unsealed, const char* what) {
    Secret s = secret_arg(secret);
    if (unsealed && !s.empty()) throw py::value_error(std::string(what) + ": give secret= or unsealed=True, not both");
    if (!unsealed && s.empty()) {
        throw py::value_error(std::string(what) +
                              ": a secret is required (secret=pslerp.generate_secret(), kept by the caller); "
                              "unsealed=True writes the clear format, which exposes keys and templates");
    }
    return s;
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

std::unique_ptr<faiss::Index> deserialized(const py::buffer& data, const Secret& secret = Secret()) {
    auto info = data.request();
    auto [ptr, size] = byte_span(info, "data");
    py::gil_scoped_release nogil;
    return deserialize_index(ptr, size, secret);
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
            "set_cohort",
            [](Index& i, py::handle x) {
                auto xa = queries(i, x, "x");
                py::gil_scoped_release nogil;
                i.set_cohort(xa.shape(0), data_of<float>(xa));
            },
            py::arg("x"),
            "Fits the cohort model of score normalisation (norm 'cohort') from raw features x (n, d) of people who "
            "are not enrolled (at least 64), instead of train()'s vectors or the built-in isotropic model. Only the "
            "model (per-group second moments) is kept, and saved. Once entries are enrolled only an equal model is "
            "accepted.");
    c.def_property_readonly(
            "cohort",
            [](const Index& i) {
                const auto lock = i.lock_shared();
                const Cohort& c = i.cohort();
                py::dict d;
                d["source"] = cohort_source_name(c.source);
                d["fitted_from"] = c.fitted_from;
                d["sha256"] = c.digest;
                return d;
            },
            "The cohort model in use: {'source': 'built-in' | 'train' | 'user', 'fitted_from': n, 'sha256': ...}.");
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
            py::arg("x"), py::arg("threshold"), py::arg("enroll") = false, py::arg("ids") = py::none(), kw...,
            ("De-duplicates a batch x (n, d) of raw features against the gallery (this index's range search) and "
             "within itself at a score threshold; with enroll=True adds one representative per new identity (under "
             "ids[i] when ids (n,) int64 is given). Returns a DedupResult." +
             options_doc)
                    .c_str());
    c.def(
            "clone",
            [](const Index& i) {
                py::gil_scoped_release nogil;
                const Secret once = generate_secret();  // sealed, so a secret frame is copied too
                const std::vector<uint8_t> b = serialize_index(i, once);
                return downcast<Index>(deserialize_index(b.data(), b.size(), once));
            },
            "A deep copy (through serialisation).");
    c.def(py::pickle([](const Index& i) { return to_bytes(serialized(i)); },
                     [](const py::bytes& b) { return downcast<Index>(deserialized(b)); }));
}

}  // namespace

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
            "generate_secret",
            [] {
                const Secret s = generate_secret();
                return py::bytes(reinterpret_cast<const char*>(s.bytes()), Secret::kBytes);
            },
            "A new 32-byte secret from the OS generator (bytes), for write_index / serialize_index.");
    m.def(
            "write_index",
            [](const faiss::Index& i, const py::object& path, const py::object& secret, bool unsealed) {
                const std::string p = fspath(path);
                const Secret s = write_secret(secret, unsealed, "write_index");
                py::gil_scoped_release nogil;
                if (unsealed) {
                    write_index_unsealed(i, p);
                } else {
                    write_index(i, p, s);
                }
            },
            py::arg("index"), py::arg("path"), py::kw_only(), py::arg("secret") = py::none(),
            py::arg("unsealed") = false,
            "Saves the index to one file, atomically, mode 0600: sealed under secret (32 bytes), or the clear "
            "format with unsealed=True.");
    m.def(
            "read_index",
            [](const py::object& path, const py::object& secret) {
                const std::string p = fspath(path);
                const Secret s = secret_arg(secret);
                std::unique_ptr<faiss::Index> index;
                {
                    py::gil_scoped_release nogil;
                    index = read_index(p, s);
                }
                return to_python(std::move(index));
            },
            py::arg("path"), py::kw_only(), py::arg("secret") = py::none(),
            "Loads an index saved by write_index (either class): a sealed file needs its secret; a clear one is "
            "opened only without a secret, with a warning.");
    m.def(
            "serialize_index",
            [](const faiss::Index& i, const py::object& secret, bool unsealed) {
                const Secret s = write_secret(secret, unsealed, "serialize_index");
                std::vector<uint8_t> b;
                {
                    py::gil_scoped_release nogil;
                    b = unsealed ? serialize_index_unsealed(i) : serialize_index(i, s);
                }
                const py::ssize_t n = b.size();
                return to_array(std::move(b), {n});
            },
            py::arg("index"), py::kw_only(), py::arg("secret") = py::none(), py::arg("unsealed") = false,
            "The index file's bytes as a numpy uint8 array (sealed under secret, or clear with unsealed=True).");
    m.def(
            "deserialize_index",
            [](const py::buffer& data, const py::object& secret) {
                const Secret s = secret_arg(secret);
                return to_python(deserialized(data, s));
            },
            py::arg("data"), py::kw_only(), py::arg("secret") = py::none(),
            "An index from serialize_index's output (numpy uint8, bytes, bytearray or memoryview).");
    m.def(
            "enable_secret_frame",
            [](faiss::Index& i) {
                py::gil_scoped_release nogil;
                enable_secret_frame(i);
            },
            py::arg("index"),
            "Gives an empty index (an IVF before train) a secret frame: a random rotation per group from a "
            "random seed kept only in sealed files. The scheme then works on rotated features (accuracy about "
            "unchanged); without the seed, features estimated from stolen templates, keys and masks fail as probes, "
            "though galleries can still be linked (README \"Security\").");
    m.def(
            "has_secret_frame", [](const faiss::Index& i) { return has_secret_frame(i); }, py::arg("index"),
            "Whether the index has a secret frame.");
}

}  // namespace pslerp
