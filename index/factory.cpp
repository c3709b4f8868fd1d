#include "index/factory.h"

#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <typeinfo>
#include <utility>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/FaissException.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"

namespace pslerp {

namespace {

constexpr const char* kExpected =
        "expected [IVF<nlist>[_HNSW<M>],]PSlerp<G>x<d>[(option=value,...)] such as PSlerp8x16, IVF1024,PSlerp8x16 "
        "or IVF65536_HNSW32,PSlerp8x16(t=0.9)";

[[noreturn]] void fail(const std::string& description, const std::string& why) {
    throw faiss::FaissException(absl::StrCat("pslerp: factory string '", description, "': ", why));
}

/// Reads a positive decimal integer at s[*pos], advancing *pos; false if none or too large.
bool read_count(const std::string& s, size_t* pos, int* out) {
    const size_t start = *pos;
    int64_t v = 0;
    while (*pos < s.size() && s[*pos] >= '0' && s[*pos] <= '9') {
        v = v * 10 + (s[*pos] - '0');
        if (v > (1 << 20)) return false;
        ++*pos;
    }
    *out = static_cast<int>(v);
    return *pos > start && v > 0;
}

struct Option {
    std::string name, value;
};

std::vector<Option> parse_options(const std::string& description, const std::string& body) {
    std::vector<Option> options;
    for (absl::string_view token : absl::StrSplit(body, ',')) {
        token = absl::StripAsciiWhitespace(token);
        const size_t eq = token.find('=');
        if (token.empty() || eq == absl::string_view::npos || eq == 0 || eq + 1 == token.size()) {
            fail(description, absl::StrCat("option '", token, "': expected name=value inside the parentheses, ",
                                           "e.g. (t=0.8,drop=importance)"));
        }
        options.push_back({std::string(absl::StripAsciiWhitespace(token.substr(0, eq))),
                           std::string(absl::StripAsciiWhitespace(token.substr(eq + 1)))});
    }
    return options;
}

int parse_positive(const std::string& description, const Option& o) {
    int v = 0;
    if (!absl::SimpleAtoi(o.value, &v) || v < 1) {
        fail(description, absl::StrCat("option ", o.name, ": expected a positive integer, got '", o.value, "'"));
    }
    return v;
}

std::string type_name(const faiss::Index& index) {
    const char* mangled = typeid(index).name();
    int status = 0;
    char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : mangled;
    std::free(demangled);
    return name;
}

int hnsw_m(const faiss::IndexHNSW& index) {
    return index.hnsw.cum_nneighbor_per_level.size() > 2 ? index.hnsw.nb_neighbors(1) : index.hnsw.nb_neighbors(0) / 2;
}

std::string describe_quantizer(const faiss::Index* q) {
    if (q == nullptr || typeid(*q) == typeid(faiss::IndexFlat) || typeid(*q) == typeid(faiss::IndexFlatIP) ||
        typeid(*q) == typeid(faiss::IndexFlatL2)) {
        return "";
    }
    if (typeid(*q) == typeid(faiss::IndexHNSWFlat)) {
        return absl::StrCat("_HNSW", hnsw_m(static_cast<const faiss::IndexHNSW&>(*q)));
    }
    return absl::StrCat("_<", type_name(*q), ">");
}

/// name -> value of a Params::describe() string, in order.
std::vector<Option> describe_tokens(const Params& p) {
    std::vector<Option> out;
    for (absl::string_view token : absl::StrSplit(p.describe(), ',', absl::SkipEmpty())) {
        const size_t eq = token.find('=');
        if (eq == absl::string_view::npos) continue;
        out.push_back({std::string(token.substr(0, eq)), std::string(token.substr(eq + 1))});
    }
    return out;
}

/// The factory options that turn `base` into `p` (only options Params::set understands).
std::vector<std::string> option_diff(const Params& base, const Params& p) {
    std::map<std::string, std::string> base_values;
    for (const Option& o : describe_tokens(base)) base_values[o.name] = o.value;
    std::vector<std::string> out;
    for (const Option& o : describe_tokens(p)) {
        auto it = base_values.find(o.name);
        if (it != base_values.end() && it->second == o.value) continue;
        Params scratch = p;
        if (!scratch.set(o.name, o.value).ok()) continue;
        out.push_back(absl::StrCat(o.name, "=", o.value));
    }
    return out;
}

/// Fields that no factory option sets: a preset is only a fair base if these agree.
bool same_unsettable(const Params& a, const Params& b) {
    bool same = true;
    Params::visit([&](auto f) {
        if (f.option == nullptr) same = same && a.*f.member == b.*f.member;
    });
    return same;
}

/// Reads "IVF<nlist>[_HNSW<M>]," at the start of `description`; returns the quantizer part
/// ("" or "_HNSW32") in *quantizer and the position after the comma, or 0 without an IVF part.
size_t parse_ivf_prefix(const std::string& description, int* nlist, int* hnsw_m) {
    const std::string ivf = "IVF";
    if (description.compare(0, ivf.size(), ivf) != 0) return 0;
    size_t pos = ivf.size();
    if (!read_count(description, &pos, nlist)) fail(description, absl::StrCat("bad list count after 'IVF': ", kExpected));
    *hnsw_m = 0;
    const std::string hnsw = "_HNSW";
    if (description.compare(pos, hnsw.size(), hnsw) == 0) {
        pos += hnsw.size();
        if (!read_count(description, &pos, hnsw_m) || *hnsw_m < 2) {
            fail(description, absl::StrCat("bad HNSW neighbour count after '_HNSW': ", kExpected));
        }
    }
    if (pos >= description.size() || description[pos] != ',') {
        fail(description, absl::StrCat("unexpected '", description.substr(pos), "' after the IVF part: ", kExpected));
    }
    return pos + 1;
}

}  // namespace

std::unique_ptr<faiss::Index> index_factory(int d, const std::string& description) {
    int nlist = 0, hnsw_m = 0;
    size_t pos = parse_ivf_prefix(description, &nlist, &hnsw_m);
    const std::string prefix = "PSlerp";
    if (description.compare(pos, prefix.size(), prefix) != 0) fail(description, kExpected);
    pos += prefix.size();
    int groups = 0, group_dim = 0;
    bool shape_ok = read_count(description, &pos, &groups) && pos < description.size() && description[pos] == 'x';
    if (shape_ok) {
        ++pos;
        shape_ok = read_count(description, &pos, &group_dim);
    }
    if (!shape_ok) fail(description, absl::StrCat("bad shape after 'PSlerp': ", kExpected));
    if (static_cast<int64_t>(groups) * group_dim != d) {
        fail(description, absl::StrCat("the data dimension is ", d, " but PSlerp", groups, "x", group_dim, " means ",
                                       groups, " groups x ", group_dim, " = ", int64_t(groups) * group_dim));
    }

    std::vector<Option> options;
    if (pos < description.size() && description[pos] == '(') {
        const size_t close = description.find(')', pos);
        if (close == std::string::npos) fail(description, absl::StrCat("missing ')' after the options: ", kExpected));
        options = parse_options(description, description.substr(pos + 1, close - pos - 1));
        pos = close + 1;
    }
    if (pos < description.size()) {
        if (description[pos] == ',') {
            fail(description, absl::StrCat("a coarse stage after PSlerp ('", description.substr(pos + 1),
                                           "') is retired: its embeddings were close to the raw features or lost "
                                           "the mated entries. Put the IVF first, e.g. IVF1024,PSlerp",
                                           groups, "x", group_dim));
        }
        fail(description, absl::StrCat("unexpected '", description.substr(pos), "': ", kExpected));
    }

    Params p = Params::defaults(groups, group_dim);
    int presets = 0;
    for (const Option& o : options) {
        if (o.name != "preset") continue;
        if (++presets > 1) fail(description, "option preset given twice");
        if (auto s = p.set(o.name, o.value); !s.ok()) fail(description, std::string(s.message()));
    }
    bool pca = false;
    int nprobe = 0;
    for (const Option& o : options) {
        if (o.name == "preset") continue;
        if (o.name == "pca") {
            if (!absl::SimpleAtob(o.value, &pca)) {
                fail(description, absl::StrCat("option pca: expected true|false, got '", o.value, "'"));
            }
        } else if (o.name == "nprobe") {
            if (nlist == 0) fail(description, "option nprobe: only an IVF index probes lists (IVF1024,PSlerp...)");
            nprobe = parse_positive(description, o);
        } else if (o.name == "k_factor" || o.name == "range_shortlist" || o.name == "embedding") {
            fail(description, absl::StrCat("option ", o.name, " belonged to the retired coarse stage; use an IVF ",
                                           "index (IVF1024,PSlerp", groups, "x", group_dim, ") and its nprobe"));
        } else if (auto s = p.set(o.name, o.value); !s.ok()) {
            fail(description, absl::StrCat(s.message(), " (index options: pca, nprobe)"));
        }
    }
    if (auto s = p.validate(); !s.ok()) fail(description, absl::StrCat("invalid parameters: ", s.message()));

    if (nlist == 0) {
        auto index = std::make_unique<IndexProtectedSlerp>(p);
        index->train_pca = pca;
        return index;
    }
    std::unique_ptr<faiss::Index> quantizer;
    if (hnsw_m > 0) {
        quantizer = std::make_unique<faiss::IndexHNSWFlat>(d, hnsw_m, faiss::METRIC_L2);
    } else {
        quantizer = std::make_unique<faiss::IndexFlatL2>(d);
    }
    auto index = std::make_unique<IndexIVFProtectedSlerp>(std::move(quantizer), size_t(nlist), p);
    index->train_pca = pca;
    if (nprobe > nlist) fail(description, absl::StrCat("option nprobe: ", nprobe, " is more than the ", nlist, " lists"));
    if (nprobe > 0) index->nprobe = size_t(nprobe);
    return index;
}

std::string describe_index(const faiss::Index& index) {
    const ProtectedIndex& pi = protected_of(index);
    const Params& p = pi.params;
    const Params defaults = Params::defaults(p.groups, p.group_dim);
    const Params slerpface = Params::slerpface(p.groups, p.group_dim);
    std::vector<std::string> options = option_diff(defaults, p);
    if (same_unsettable(slerpface, p) && !same_unsettable(defaults, p)) {
        options = option_diff(slerpface, p);
        options.insert(options.begin(), "preset=slerpface");
    } else if (same_unsettable(slerpface, p)) {
        std::vector<std::string> from_preset = option_diff(slerpface, p);
        if (from_preset.size() + 1 < options.size()) {
            options = std::move(from_preset);
            options.insert(options.begin(), "preset=slerpface");
        }
    }
    if (pi.train_pca) options.push_back("pca=true");
    std::string head;
    if (auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(&index)) {
        head = absl::StrCat("IVF", ivf->nlist, describe_quantizer(ivf->quantizer), ",");
        if (ivf->nprobe != default_nprobe(ivf->nlist)) options.push_back(absl::StrCat("nprobe=", ivf->nprobe));
    }
    std::string s = absl::StrCat(head, "PSlerp", p.groups, "x", p.group_dim);
    if (!options.empty()) absl::StrAppend(&s, "(", absl::StrJoin(options, ","), ")");
    return s;
}

}  // namespace pslerp
