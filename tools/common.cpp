#include "tools/common.h"

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <limits>
#include <new>

#include <unistd.h>

#include <faiss/impl/FaissException.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "io/array_io.h"
#include "index/factory.h"
#include "index/index_io.h"
#ifdef PSLERP_WITH_EXTRACTOR
#include "extractor/extractor.h"
#include "extractor/image_folder.h"
#endif

namespace pslerp::cli {

absl::Status enroll_in_batches(faiss::Index& index, int64_t n, const float* x, const int64_t* ids, int64_t batch) {
    Progress bar("enrolling", n);
    try {
        for (int64_t i0 = 0; i0 < n; i0 += batch) {
            const int64_t nb = std::min(batch, n - i0);
            if (ids) {
                index.add_with_ids(nb, x + i0 * index.d, ids + i0);
            } else {
                index.add(nb, x + i0 * index.d);
            }
            bar.update(i0 + nb);
        }
    } catch (const std::exception& e) {
        return from_exception(e);
    }
    bar.finish();
    return absl::OkStatus();
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
    std::error_code ec;
    const std::string path = identities_path(index_path);
    if (!std::filesystem::exists(path, ec)) return out;
    // stat() does not open: a FIFO or device is refused before open() could block on it.
    if (!std::filesystem::is_regular_file(path, ec)) {
        return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
    }
    std::ifstream in(path);
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

FeatureOptions feature_options(Args& args) {
    FeatureOptions o;
    o.aligned = args.flag("aligned");
    o.model_dir = args.str("model-dir", "");
    return o;
}

absl::StatusOr<Features> load_features(const std::string& path, const FeatureOptions& options) {
    const bool aligned = options.aligned;
    const std::string& model_dir = options.model_dir;
    Features f;
    if (std::filesystem::is_directory(path)) {
#ifdef PSLERP_WITH_EXTRACTOR
        auto images = list_image_folder(path);
        if (!images.ok()) return images.status();
        if (images->empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no images found"));
        ExtractorOptions opt;
        opt.model_dir = model_dir;
        opt.aligned = aligned;
        auto ex = Extractor::create(opt);
        if (!ex.ok()) return ex.status();
        std::vector<std::string> paths;
        for (const auto& im : *images) paths.push_back(im.path);
        Progress bar("extracting", int64_t(paths.size()));
        auto results = (*ex)->extract_files(paths, [&](int64_t done, int64_t) { bar.update(done); });
        bar.finish();
        const auto labels = identity_labels(*images);
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
    auto m = read_matrix(path, /*allow_convert=*/true);
    if (!m.ok()) return m.status();
    f.x = std::move(m->data);
    f.n = m->rows;
    f.dim = m->cols;
    return f;
}

absl::Status out_of_memory() {
    return absl::ResourceExhaustedError("out of memory: the inputs and options need more memory than is available "
                                        "(fewer probes, a smaller -k or a smaller gallery need less)");
}

absl::Status from_exception(const std::exception& e, absl::StatusCode code) {
    if (dynamic_cast<const std::bad_alloc*>(&e)) return out_of_memory();
    return absl::Status(code, e.what());
}

absl::Status check_buffer(const std::string& what, std::initializer_list<int64_t> factors, int64_t element_bytes) {
    int64_t bytes = element_bytes;
    bool overflow = element_bytes < 0;
    for (int64_t f : factors) overflow |= f < 0 || __builtin_mul_overflow(bytes, f, &bytes);
    const int64_t pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    int64_t memory = 0;
    const bool known = pages > 0 && page > 0 && !__builtin_mul_overflow(pages, page, &memory);
    auto size_of = [&] {
        std::vector<std::string> parts;
        for (int64_t f : factors) parts.push_back(absl::StrCat(f));
        return absl::StrCat(absl::StrJoin(parts, " x "), " x ", element_bytes, " bytes");
    };
    if (overflow) return absl::ResourceExhaustedError(absl::StrCat(what, ": ", size_of(), " overflows"));
    if (known && bytes > memory) {
        return absl::ResourceExhaustedError(absl::StrFormat("%s: %s = %.1f GiB, more than the %.1f GiB of memory",
                                                            what, size_of(), double(bytes) / (1 << 30),
                                                            double(memory) / (1 << 30)));
    }
    return absl::OkStatus();
}

absl::StatusOr<SecretOptions> secret_options(Args& args, bool writes, const std::string& prefix) {
    const std::string file_flag = prefix + "secret-file", env_flag = prefix + "secret-env";
    const std::string file = args.str(file_flag, ""), env = args.str(env_flag, "");
    SecretOptions o;
    if (writes) o.unsealed = args.flag("unsealed");
    if (!file.empty() && !env.empty()) return usage_error(absl::StrCat("give --", file_flag, " or --", env_flag, ", not both"));
    if (!file.empty() || !env.empty()) {
        auto s = file.empty() ? Secret::from_env(env) : Secret::from_file(file);
        if (!s.ok()) return s.status();
        o.secret = *std::move(s);
    }
    if (writes && o.unsealed && !o.secret.empty()) {
        return usage_error(absl::StrCat("give --", file_flag, " / --", env_flag, " or --unsealed, not both"));
    }
    if (writes && !o.unsealed && o.secret.empty()) {
        return usage_error(absl::StrCat(
                "writing an index file needs its secret: --", file_flag, " PATH (from pslerp keygen) or --", env_flag,
                " NAME; or --unsealed to write a clear file (its keys and templates readable by whoever gets it)"));
    }
    return o;
}

absl::StatusOr<std::unique_ptr<faiss::Index>> load_index(const std::string& path, const Secret& secret) {
    try {
        return read_index(path, secret);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

absl::Status save_index(const faiss::Index& index, const std::string& path, const SecretOptions& options) {
    try {
        if (options.unsealed) {
            write_index_unsealed(index, path);
        } else {
            write_index(index, path, options.secret);
        }
    } catch (const std::bad_alloc&) {
        return out_of_memory();
    } catch (const std::exception& e) {
        return from_exception(e, absl::StatusCode::kInternal);
    }
    return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<faiss::Index>> make_index(int64_t d, const std::string& factory) {
    try {
        return index_factory(int(d), factory);
    } catch (const std::bad_alloc&) {
        return out_of_memory();
    } catch (const std::exception& e) {
        // The factory string comes from the command line.
        return usage_error(clean_message(e.what()));
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
        return usage_error(absl::StrCat("--nprobe applies to an IVF index only; this index (", describe_index(index),
                                        ") is exhaustive: every entry is scored (the factory string IVF1024,",
                                        describe_index(index), " makes an IVF index)"));
    }
    if (nprobe > int64_t(ix->nlist)) {
        return usage_error(absl::StrCat("--nprobe ", nprobe, " exceeds the index's ", ix->nlist, " lists (--nprobe ",
                                        ix->nlist, " scans them all: exact)"));
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
    auto np = args.integer("nprobe", 0, 1, std::numeric_limits<int64_t>::max());
    if (!np.ok()) return np.status();
    SearchOptions o;
    o.nprobe = *np;
    return o;
}

absl::StatusOr<SynthSet> synth_identities_checked(const SynthConfig& config, int64_t first, int64_t n) {
    if (n < 0) return absl::InvalidArgumentError("synth_identities: negative count");
    if (absl::Status st = check_buffer("synthetic features", {n, config.dim()}, sizeof(float)); !st.ok()) return st;
    return pslerp::synth_identities(config, first, n);
}

absl::StatusOr<std::vector<int64_t>> load_ids(const std::string& path, int64_t expected) {
    auto ids = read_labels(path, /*allow_convert=*/true);
    if (!ids.ok()) return ids.status();
    if (int64_t(ids->size()) != expected) {
        return absl::InvalidArgumentError(
                absl::StrCat(path, ": ", ids->size(), " ids for ", expected, " features"));
    }
    return ids;
}

}  // namespace pslerp::cli
