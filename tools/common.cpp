#include "tools/common.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <faiss/impl/FaissException.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "index/array_io.h"
#include "index/factory.h"
#include "index/index_io.h"
#ifdef PSLERP_HAVE_EXTRACTOR
#include "extractor/extractor.h"
#include "extractor/image_folder.h"
#endif

namespace pslerp::cli {

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void enroll_in_batches(faiss::Index& index, int64_t n, const float* x, const int64_t* ids, int64_t batch) {
    Progress bar("enrolling", n);
    for (int64_t i0 = 0; i0 < n; i0 += batch) {
        const int64_t nb = std::min(batch, n - i0);
        if (ids) {
            index.add_with_ids(nb, x + i0 * index.d, ids + i0);
        } else {
            index.add(nb, x + i0 * index.d);
        }
        bar.update(i0 + nb);
    }
    bar.finish();
}

std::string identities_path(const std::string& index_path) {
    return index_path + ".identities.tsv";
}

absl::Status write_identities(const std::string& index_path, const std::vector<int64_t>& ids, const Features& f) {
    std::string text;
    for (int64_t i = 0; i < f.n; ++i) absl::StrAppend(&text, ids[i], "\t", f.names[f.labels[i]], "\n");
    return atomic_write_file(identities_path(index_path), text);
}

absl::StatusOr<std::map<int64_t, std::string>> read_identities(const std::string& index_path) {
    std::map<int64_t, std::string> out;
    std::ifstream in(identities_path(index_path));
    if (!in) return out;
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        const size_t tab = line.find('\t');
        int64_t id;
        if (tab == std::string::npos || !absl::SimpleAtoi(line.substr(0, tab), &id)) {
            return absl::InvalidArgumentError(absl::StrCat(identities_path(index_path), ":", lineno, ": expected id<TAB>identity"));
        }
        out[id] = line.substr(tab + 1);
    }
    return out;
}

absl::StatusOr<Features> load_features(const std::string& path, Args& args) {
    const bool aligned = args.flag("aligned");
    const std::string model_dir = args.str("model-dir", "");
    Features f;
    if (std::filesystem::is_directory(path)) {
#ifdef PSLERP_HAVE_EXTRACTOR
        auto images = ListImageFolder(path);
        if (!images.ok()) return images.status();
        if (images->empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no images found"));
        ExtractorOptions opt;
        opt.model_dir = model_dir;
        opt.aligned = aligned;
        auto ex = Extractor::Create(opt);
        if (!ex.ok()) return ex.status();
        std::vector<std::string> paths;
        for (const auto& im : *images) paths.push_back(im.path);
        Progress bar("extracting", int64_t(paths.size()));
        auto results = (*ex)->ExtractFiles(paths, [&](int64_t done, int64_t) { bar.update(done); });
        bar.finish();
        const auto labels = IdentityLabels(*images);
        f.dim = (*ex)->dim();
        std::map<int64_t, std::string> names;
        int64_t skipped = 0;
        for (size_t i = 0; i < results.size(); ++i) {
            if (!results[i].ok()) {
                ++skipped;
                std::fprintf(stderr, "pslerp: skipped %s: %s\n", results[i].path.c_str(), results[i].message.c_str());
                continue;
            }
            f.x.insert(f.x.end(), results[i].features.begin(), results[i].features.end());
            f.labels.push_back(labels[i]);
            names[labels[i]] = (*images)[i].identity;
            ++f.n;
        }
        for (const auto& [l, name] : names) {
            if (f.names.size() <= size_t(l)) f.names.resize(l + 1);
            f.names[l] = name;
        }
        if (f.n == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no usable face in any image"));
        return f;
#else
        (void)aligned;
        (void)model_dir;
        return absl::InvalidArgumentError(
                absl::StrCat(path, " is a folder: image input needs the extractor (build with LibTorch and dlib)"));
#endif
    }
    auto m = read_matrix(path);
    if (!m.ok()) return m.status();
    f.x = std::move(m->data);
    f.n = m->rows;
    f.dim = m->cols;
    return f;
}

absl::Status from_exception(const std::exception& e, absl::StatusCode code) {
    std::string m = e.what();
    const std::string prefix = "pslerp: ";
    if (const size_t at = m.find(prefix); at != std::string::npos) m = m.substr(at + prefix.size());
    return absl::Status(code, m);
}

absl::StatusOr<std::unique_ptr<faiss::Index>> load_index(const std::string& path) {
    try {
        return read_index(path);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

absl::StatusOr<std::unique_ptr<faiss::Index>> make_index(int64_t d, const std::string& factory) {
    try {
        return index_factory(int(d), factory);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

const faiss::IndexIVF* as_ivf(const faiss::Index& index) {
    return dynamic_cast<const faiss::IndexIVF*>(&index);
}

absl::Status train_index(faiss::Index& index, int64_t n, const float* x) {
    const faiss::IndexIVF* ivf = as_ivf(index);
    if (ivf && n < int64_t(ivf->nlist)) {
        return absl::InvalidArgumentError(absl::StrCat("an IVF index with ", ivf->nlist, " lists needs at least ",
                                                       ivf->nlist, " training features (FAISS suggests 39 per list), got ",
                                                       n, "; give more or use fewer lists"));
    }
    // k-means samples 256 points per centroid at most; the centring needs far fewer.
    const int64_t cap = std::max<int64_t>(200000, ivf ? 256 * int64_t(ivf->nlist) : 0);
    std::vector<float> subset;
    if (n > cap) {
        const int64_t d = index.d;
        subset.resize(size_t(cap) * d);
        for (int64_t i = 0; i < cap; ++i) std::copy_n(x + (i * n / cap) * d, d, subset.data() + i * d);
        x = subset.data();
        n = cap;
    }
    try {
        index.train(n, x);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
    return absl::OkStatus();
}

absl::Status SearchOptions::bind(const faiss::Index& index) {
    if (nprobe == 0) return absl::OkStatus();
    const faiss::IndexIVF* ix = as_ivf(index);
    if (!ix) {
        return absl::InvalidArgumentError(
                absl::StrCat("--nprobe applies to an IVF index only; this index (", describe_index(index),
                             ") is exhaustive: every entry is scored (the factory string IVF1024,",
                             describe_index(index), " makes an IVF index)"));
    }
    if (nprobe > int64_t(ix->nlist)) {
        return absl::InvalidArgumentError(absl::StrCat("--nprobe ", nprobe, " exceeds the index's ", ix->nlist,
                                                       " lists (--nprobe ", ix->nlist, " scans them all: exact)"));
    }
    ivf.nprobe = size_t(nprobe);
    return absl::OkStatus();
}

std::string SearchOptions::describe(const faiss::Index& index) const {
    const faiss::IndexIVF* ix = as_ivf(index);
    if (!ix) return "exhaustive";
    const size_t np = nprobe > 0 ? size_t(nprobe) : ix->nprobe;
    return absl::StrCat("nprobe ", np, " of ", ix->nlist, " lists", np == ix->nlist ? ", exact" : "");
}

absl::StatusOr<SearchOptions> search_options(Args& args) {
    if (absl::Status s = args.check_retired(); !s.ok()) return s;
    auto np = args.integer("nprobe", 0);
    if (!np.ok()) return np.status();
    if (*np < 0 || (*np == 0 && !args.str("nprobe", "").empty())) {
        return absl::InvalidArgumentError("--nprobe must be >= 1 (lists scanned per query)");
    }
    SearchOptions o;
    o.nprobe = *np;
    return o;
}

absl::StatusOr<SynthSet> synth_identities(const SynthConfig& config, int64_t first, int64_t n) {
    auto model = synth_model(config);
    if (!model.ok()) return model.status();
    if (first < 0 || n < 0) return absl::InvalidArgumentError("synth_identities: negative identity or count");
    SynthSet s;
    s.dim = config.dim();
    s.n = n;
    s.x.resize(size_t(n) * s.dim);
    s.labels.resize(n);
#pragma omp parallel for schedule(dynamic, 64) if (n > 1)
    for (int64_t i = 0; i < n; ++i) {
        synth_one(config, *model, first + i, 0, s.x.data() + size_t(i) * s.dim);
        s.labels[i] = first + i;
    }
    return s;
}

absl::StatusOr<std::vector<int64_t>> load_ids(const std::string& path, int64_t expected) {
    auto ids = read_labels(path);
    if (!ids.ok()) return ids.status();
    if (int64_t(ids->size()) != expected) {
        return absl::InvalidArgumentError(
                absl::StrCat(path, ": ", ids->size(), " ids for ", expected, " features"));
    }
    return ids;
}

}  // namespace pslerp::cli
