#include "index/factory.h"

#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <typeinfo>
#include <utility>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"

namespace pslerp {

namespace {

constexpr const char* kExpected =
        "expected PSlerp<G>x<d>[(option=value,...)][,coarse] such as PSlerp8x16,HNSW32 or "
        "PSlerp49x16(preset=slerpface),IVF256,Flat";
constexpr const char* kCoarseExamples = "such as HNSW32, IVF256,Flat, IVF1024,PQ16 or IVF256,SQ8";
constexpr int kDefaultKFactor = 10;
constexpr int kDefaultRangeShortlist = 1000;

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

std::string describe_coarse(const faiss::Index& c) {
    const std::type_info& t = typeid(c);
    if (t == typeid(faiss::IndexFlat) || t == typeid(faiss::IndexFlatIP)) return "Flat";
    if (t == typeid(faiss::IndexHNSWFlat)) return absl::StrCat("HNSW", hnsw_m(static_cast<const faiss::IndexHNSW&>(c)));
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&c)) {
        const std::string head = absl::StrCat("IVF", ivf->nlist, describe_quantizer(ivf->quantizer), ",");
        if (t == typeid(faiss::IndexIVFFlat)) return head + "Flat";
        if (t == typeid(faiss::IndexIVFPQ)) {
            auto& ivfpq = static_cast<const faiss::IndexIVFPQ&>(c);
            // "np": no polysemous training, which only matters before training.
            return absl::StrCat(head, "PQ", ivfpq.pq.M, ivfpq.pq.nbits != 8 ? absl::StrCat("x", ivfpq.pq.nbits) : "",
                                !ivfpq.is_trained && !ivfpq.do_polysemous_training ? "np" : "");
        }
        if (t == typeid(faiss::IndexIVFScalarQuantizer)) {
            switch (static_cast<const faiss::IndexIVFScalarQuantizer&>(c).sq.qtype) {
                case faiss::ScalarQuantizer::QT_8bit: return head + "SQ8";
                case faiss::ScalarQuantizer::QT_4bit: return head + "SQ4";
                case faiss::ScalarQuantizer::QT_6bit: return head + "SQ6";
                case faiss::ScalarQuantizer::QT_fp16: return head + "SQfp16";
                default: break;
            }
        }
    }
    return absl::StrCat("<", type_name(c), ">");
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
    return a.interval_bounds == b.interval_bounds && a.interval_counts == b.interval_counts &&
           a.intervals_by_median == b.intervals_by_median && a.importance_weights == b.importance_weights &&
           a.attention_wq == b.attention_wq && a.attention_wk == b.attention_wk;
}

}  // namespace

std::unique_ptr<IndexProtectedSlerp> index_factory(int d, const std::string& description) {
    const std::string prefix = "PSlerp";
    if (description.compare(0, prefix.size(), prefix) != 0) fail(description, kExpected);
    size_t pos = prefix.size();
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
    std::string coarse_spec;
    if (pos < description.size()) {
        if (description[pos] != ',' || pos + 1 == description.size()) {
            fail(description, absl::StrCat("unexpected '", description.substr(pos), "': ", kExpected));
        }
        coarse_spec = description.substr(pos + 1);
    }

    Params p = Params::defaults(groups, group_dim);
    int presets = 0;
    for (const Option& o : options) {
        if (o.name != "preset") continue;
        if (++presets > 1) fail(description, "option preset given twice");
        if (auto s = p.set(o.name, o.value); !s.ok()) fail(description, std::string(s.message()));
    }
    int k_factor = kDefaultKFactor, range_shortlist = kDefaultRangeShortlist;
    bool pca = false;
    CoarseEmbedding embedding = CoarseEmbedding::kLinear;
    for (const Option& o : options) {
        if (o.name == "preset") continue;
        if (o.name == "k_factor") {
            k_factor = parse_positive(description, o);
        } else if (o.name == "range_shortlist") {
            range_shortlist = parse_positive(description, o);
        } else if (o.name == "pca") {
            if (!absl::SimpleAtob(o.value, &pca)) {
                fail(description, absl::StrCat("option pca: expected true|false, got '", o.value, "'"));
            }
        } else if (o.name == "embedding") {
            auto e = parse_embedding(o.value);
            if (!e.ok()) fail(description, absl::StrCat("option ", e.status().message()));
            embedding = *e;
        } else if (auto s = p.set(o.name, o.value); !s.ok()) {
            fail(description, absl::StrCat(s.message(), " (index options: k_factor, range_shortlist, pca, embedding)"));
        }
    }
    if (auto s = p.validate(); !s.ok()) fail(description, absl::StrCat("invalid parameters: ", s.message()));

    std::unique_ptr<faiss::Index> coarse;
    const int cd = coarse_dim(p, embedding);
    if (!coarse_spec.empty()) {
        try {
            coarse.reset(faiss::index_factory(cd, coarse_spec.c_str(), IndexProtectedSlerp::coarse_metric(embedding)));
        } catch (const std::exception& e) {
            fail(description, absl::StrCat("coarse part '", coarse_spec, "' is not a FAISS factory string ",
                                           kCoarseExamples, " (", e.what(), ")"));
        }
        if (coarse->ntotal != 0 || coarse->d != cd) {
            fail(description, absl::StrCat("coarse part '", coarse_spec, "' does not give an empty index of dimension ", cd));
        }
    }
    auto index = std::make_unique<IndexProtectedSlerp>(p, std::move(coarse), embedding);
    index->k_factor = k_factor;
    index->range_shortlist = range_shortlist;
    index->train_pca = pca;
    return index;
}

std::string describe_index(const IndexProtectedSlerp& index) {
    const Params& p = index.params;
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
    if (index.k_factor != kDefaultKFactor) options.push_back(absl::StrCat("k_factor=", index.k_factor));
    if (index.range_shortlist != kDefaultRangeShortlist) {
        options.push_back(absl::StrCat("range_shortlist=", index.range_shortlist));
    }
    if (index.train_pca) options.push_back("pca=true");
    if (index.coarse_embedding != CoarseEmbedding::kLinear) {
        options.push_back(std::string("embedding=") + embedding_name(index.coarse_embedding));
    }
    std::string s = absl::StrCat("PSlerp", p.groups, "x", p.group_dim);
    if (!options.empty()) absl::StrAppend(&s, "(", absl::StrJoin(options, ","), ")");
    if (index.coarse) absl::StrAppend(&s, ",", describe_coarse(*index.coarse));
    return s;
}

}  // namespace pslerp
