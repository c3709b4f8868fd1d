// Uses the installed pslerp package: builds an exhaustive protected index by name, enrols
// random features, and checks that each enrolled feature finds its own entry first, before and
// after a round trip through an index file, and that eval agrees (rank-1 = 1). Exits 1 on any
// failure.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <faiss/Index.h>

#include "eval/metrics.h"
#include "index/factory.h"
#include "index/index_io.h"

namespace {

std::vector<float> gaussian(int64_t n, int d, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(n) * d);
    for (float& v : x) v = normal(gen);
    return x;
}

// Searches the first nq enrolled features; returns the number whose best match is not their own
// entry (ids are 0..n-1 in order of addition) and writes the top-1 labels.
int64_t misses(const faiss::Index& index, const std::vector<float>& x, int64_t nq,
               std::vector<int64_t>& top1) {
    const int64_t k = 3;
    std::vector<float> distances(nq * k);
    std::vector<faiss::Index::idx_t> labels(nq * k);
    index.search(nq, x.data(), k, distances.data(), labels.data());
    top1.assign(nq, -1);
    int64_t wrong = 0;
    for (int64_t i = 0; i < nq; ++i) {
        top1[i] = labels[i * k];
        if (top1[i] != i) {
            std::fprintf(stderr, "query %lld: best match %lld (score %g)\n", static_cast<long long>(i),
                         static_cast<long long>(top1[i]), distances[i * k]);
            ++wrong;
        }
    }
    return wrong;
}

}  // namespace

int main() try {
    const int d = 64;  // 4 groups of 16
    const int64_t nt = 200, n = 50, nq = 10;
    std::unique_ptr<faiss::Index> index = pslerp::index_factory(d, "PSlerp4x16");
    pslerp::protected_of(*index).set_seed(1);
    const auto xt = gaussian(nt, d, 1);
    index->train(nt, xt.data());
    const auto x = gaussian(n, d, 2);
    index->add(n, x.data());
    if (index->ntotal != n) {
        std::fprintf(stderr, "ntotal %lld, expected %lld\n", static_cast<long long>(index->ntotal),
                     static_cast<long long>(n));
        return 1;
    }

    std::vector<int64_t> top1;
    int64_t wrong = misses(*index, x, nq, top1);

    const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                       ("pslerp_consumer_" + std::to_string(::getpid()) + ".pslerp");
    const pslerp::Secret secret = pslerp::generate_secret();
    pslerp::write_index(*index, path.string(), secret);
    std::unique_ptr<faiss::Index> loaded = pslerp::read_index(path.string(), secret);
    std::filesystem::remove(path);
    std::vector<int64_t> loaded_top1;
    wrong += misses(*loaded, x, nq, loaded_top1);

    std::vector<int64_t> truth(nq);
    for (int64_t i = 0; i < nq; ++i) truth[i] = i;
    const auto rates = pslerp::identification_rates(loaded_top1, truth);
    if (!rates.ok()) {
        std::fprintf(stderr, "identification_rates: %s\n", std::string(rates.status().message()).c_str());
        return 1;
    }
    if (wrong != 0 || rates->rank1 != 1.0) {
        std::fprintf(stderr, "FAILED: %lld of %lld queries missed their own entry; rank-1 %g\n",
                     static_cast<long long>(wrong), static_cast<long long>(2 * nq), rates->rank1);
        return 1;
    }
    std::printf("pslerp consumer OK: %s, %lld entries, each query found itself first\n",
                pslerp::describe_index(*index).c_str(), static_cast<long long>(index->ntotal));
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}
