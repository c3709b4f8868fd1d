// Python bindings of the protection scheme (plugin/): Params, keys, protect / match, the
// synthetic generator. Thin: checks, GIL release, one C++ call (bindings/py_util.h).
#include <cmath>
#include <cstring>
#include <optional>

#include "bindings/py_util.h"
#include "plugin/params.h"
#include "plugin/protect.h"
#include "plugin/random.h"
#include "plugin/synth.h"

namespace pslerp {

namespace {

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
    Params::visit([&](auto f) { d[f.name] = o.attr(f.name); });
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

}  // namespace

void bind_params(py::module_& m) {
    py::class_<Params> c(m, "Params", R"doc(
Parameters of the protection scheme (docs/DESIGN.md section 1).

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
          py::arg("groups") = Params::kDefaultGroups, py::arg("group_dim") = Params::kDefaultGroupDim, py::arg("t") = py::none(),
          py::arg("key_mode") = py::none(), py::arg("drop") = py::none(), py::arg("fill") = py::none());
    c.def_static(
            "slerpface",
            [](int groups, int group_dim, py::kwargs kw) { return params_from_kwargs(Params::slerpface(groups, group_dim), kw); },
            py::arg("groups") = 49, py::arg("group_dim") = Params::kDefaultGroupDim,
            "The public reference code's operating point (t=0.9 minus importance, importance drop by intervals "
            "12/4 with replacement, attention importance, importance weighting); keywords override options.");
    c.def_static(
            "defaults", [](int groups, int group_dim) { return Params::defaults(groups, group_dim); },
            py::arg("groups") = Params::kDefaultGroups, py::arg("group_dim") = Params::kDefaultGroupDim, "pslerp's default operating point for this shape.");
    // Every field (plugin/params.h Params::visit): enums as their names, read with get() and
    // written through set(); the others as plain attributes.
    Params::visit([&](auto f) {
        using T = typename decltype(f)::type;
        if constexpr (std::is_enum_v<T>) {
            string_option(c, f.name, f.option, f.doc);
        } else {
            c.def_readwrite(f.name, f.member, f.doc);
        }
    });
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

}  // namespace pslerp
