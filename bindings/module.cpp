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
#include <faiss/impl/FaissException.h>

#include "bindings/py_util.h"
#include "index/ProtectedIndex.h"

#ifndef PSLERP_VERSION
#define PSLERP_VERSION "unknown"  // bindings/CMakeLists.txt passes the project version
#endif

namespace py = pybind11;

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
    pslerp::bind_report(m);
#ifdef PSLERP_WITH_EXTRACTOR
    pslerp::bind_extractor(m);
    m.attr("HAS_EXTRACTOR") = true;
#else
    m.attr("HAS_EXTRACTOR") = false;
#endif
}
