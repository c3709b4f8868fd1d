// Writes the fuzzers' seed corpus, small valid inputs of every kind, under <dir>:
//   <dir>/seeds/index   index files: exhaustive (several parameter sets, empty and with
//                       removed entries) and IVF (flat and HNSW quantizers, trained, untrained)
//   <dir>/seeds/npy     .npy files: float32 1-D and 2-D, float64, int64, int32, a 2.0 header
//   <dir>/seeds/sealed  sealed index files under fuzz_sealed's fixed secret (with and without a
//                       frame, one-chunk and many-chunk)
// and creates the (initially empty) working corpora <dir>/corpus/{index,npy,sealed} and
// <dir>/artifacts. Usage: fuzz_seeds <dir>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <faiss/impl/IDSelector.h>

#include "io/array_io.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "io/file.h"
#include "io/seal.h"

namespace {

bool make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return true;
    std::fprintf(stderr, "fuzz_seeds: cannot create %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
}

std::vector<float> features(int64_t n, int d, float phase) {
    std::vector<float> x(n * d);
    for (int64_t i = 0; i < n * d; ++i) x[i] = std::sin(0.37f * float(i) + phase) + 0.1f * float(i % 5);
    return x;
}

struct IndexSeed {
    const char* name;
    const char* factory;
    int d;
    int64_t train, add;
};

void write_index_seed(const std::string& dir, const IndexSeed& s) {
    auto index = pslerp::index_factory(s.d, s.factory);
    pslerp::protected_of(*index).set_seed(1);
    if (s.train > 0) {
        const auto t = features(s.train, s.d, 0.5f);
        index->train(s.train, t.data());
    }
    if (s.add > 0) {
        const auto x = features(s.add, s.d, 1.0f);
        index->add(s.add, x.data());
        const faiss::Index::idx_t gone = 1;
        faiss::IDSelectorBatch sel(1, &gone);
        index->remove_ids(sel);
    }
    pslerp::write_index_unsealed(*index, dir + "/" + s.name + ".pslerp");
}

/// Sealed seeds under the secret of fuzz_sealed.cpp (32 bytes 0x5a); small chunks make some
/// files many-chunk.
bool write_sealed_seeds(const std::string& dir) {
    const uint8_t raw[32] = {0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                             0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                             0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a};
    const pslerp::Secret secret = *pslerp::Secret::from_bytes(raw, sizeof raw);
    for (const bool frame : {false, true}) {
        auto index = pslerp::index_factory(16, "PSlerp2x8");
        pslerp::protected_of(*index).set_seed(1);
        if (frame) pslerp::enable_secret_frame(*index);
        const auto x = features(4, 16, 1.0f);
        index->add(4, x.data());
        const std::vector<uint8_t> bytes = pslerp::serialize_index(*index, secret);
        for (const uint32_t chunk : {0u, 97u}) {
            std::vector<uint8_t> out = bytes;
            if (chunk > 0) {
                // Re-seal the same payload in small chunks.
                const pslerp::MemoryBytes src(bytes.data(), bytes.size());
                const auto payload = pslerp::open_sealed(src, secret);
                if (!payload.ok()) return false;
                out.clear();
                pslerp::seal_bytes(secret, payload->data(), payload->size(), &out, chunk);
            }
            const std::string path = dir + "/" + (frame ? "frame" : "plain") + (chunk ? "_chunks" : "") + ".pslerp";
            if (!pslerp::atomic_write_file(path, std::string(out.begin(), out.end())).ok()) return false;
        }
    }
    return true;
}

std::string npy(const std::string& descr, const std::string& shape, const std::string& payload, int major = 1) {
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    const size_t pre = major == 1 ? 10 : 12;
    dict.append((64 - (pre + dict.size() + 1) % 64) % 64, ' ');
    dict.push_back('\n');
    std::string out("\x93NUMPY", 6);
    out.push_back(char(major));
    out.push_back('\0');
    for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out.push_back(char((dict.size() >> (8 * i)) & 0xff));
    return out + dict + payload;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: fuzz_seeds <dir>\n");
        return 2;
    }
    const std::string root = argv[1];
    for (const std::string& d : {root, root + "/seeds", root + "/seeds/index", root + "/seeds/npy",
                                 root + "/seeds/sealed", root + "/corpus", root + "/corpus/index", root + "/corpus/npy",
                                 root + "/corpus/sealed", root + "/artifacts"}) {
        if (!make_dir(d)) return 1;
    }
    try {
        const IndexSeed seeds[] = {
                {"flat_empty", "PSlerp2x8", 16, 0, 0},
                {"flat", "PSlerp2x8", 16, 0, 5},
                {"flat_trained_pca", "PSlerp2x8(pca=true)", 16, 20, 4},
                {"flat_slerpface", "PSlerp3x4(preset=slerpface)", 12, 0, 4},
                {"flat_shared_budget", "PSlerp9x3(key=shared,drop=importance,mapping=budget,drop_count=1,fill=random)",
                 27, 0, 3},
                {"ivf_untrained", "IVF4,PSlerp2x8", 16, 0, 0},
                {"ivf", "IVF4,PSlerp2x8", 16, 40, 8},
                {"ivf_hnsw", "IVF8_HNSW2,PSlerp2x8", 16, 40, 6},
        };
        for (const IndexSeed& s : seeds) write_index_seed(root + "/seeds/index", s);
        if (!write_sealed_seeds(root + "/seeds/sealed")) {
            std::fprintf(stderr, "fuzz_seeds: cannot write the sealed seeds\n");
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
        return 1;
    }
    const std::string npy_dir = root + "/seeds/npy/";
    const std::vector<float> f = {0.5f, -1.0f, 2.0f, 3.5f, 0.0f, 1e-3f};
    const std::vector<double> f8 = {1.5, -2.25, 3.0, 1e-3};
    const std::vector<int64_t> i8 = {4, -1, 7};
    const std::vector<int32_t> i4 = {7, -8};
    const std::pair<const char*, std::string> files[] = {
            {"f4_2d.npy", npy("<f4", "(2, 3)", bytes_of(f))},
            {"f4_1d.npy", npy("<f4", "(6,)", bytes_of(f))},
            {"f4_empty.npy", npy("<f4", "(0, 4)", "")},
            {"f8_v2.npy", npy("<f8", "(2, 2)", bytes_of(f8), 2)},
            {"i8.npy", npy("<i8", "(3,)", bytes_of(i8))},
            {"i4_2d.npy", npy("<i4", "(1, 2)", bytes_of(i4))},
    };
    for (const auto& [name, bytes] : files) {
        if (absl::Status st = pslerp::atomic_write_file(npy_dir + name, bytes); !st.ok()) {
            std::fprintf(stderr, "fuzz_seeds: %s\n", std::string(st.message()).c_str());
            return 1;
        }
    }
    return 0;
}
