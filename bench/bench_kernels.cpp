// Google Benchmark of the scoring kernels (index/kernels/scan.h): score_range over a block of
// entries for 1 to 256 prepared queries, and score_list over scattered entries (the refine
// step of coarse search), for the scalar, the AVX2 and the batched (AVX2 + sgemm) tables, G x d
// in {8x16, 32x16}, fp32 and fp16 storage. The counter "t_per_entry" is the time per (query,
// entry) pair. References in the same binary, over the same number of raw vectors: FAISS's
// fvec_inner_products_ny (single query) and knn_inner_product (256 queries: sgemm and heaps).
//
//   build-bench/bench/bench_kernels --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include <faiss/utils/distances.h>

#include "bench/driver_util.h"
#include "index/kernels/scan.h"
#include "index/storage.h"
#include "plugin/protect.h"
#include "plugin/synth.h"
#include "util/threads.h"

using namespace pslerp;

namespace {

constexpr int64_t kEntries = 4096;  // a block of entries; 4.5 MB (8x16) / 18 MB (32x16) of storage
constexpr uint64_t kSeed = 42;

// Protected entries and prepared queries for one shape, built once per shape.
struct Fixture {
    Params params;
    EntryStorage store;
    std::vector<float> queries;  // 256 prepared queries
    std::vector<float> raw;      // raw gallery (flat reference)
    std::vector<int64_t> scattered;

    static Params params_of(int groups, bool half) {
        Params p = Params::defaults(groups, 16);
        p.storage = half ? Storage::kFp16 : Storage::kFp32;
        return p;
    }

    Fixture(int groups, bool half) : params(params_of(groups, half)), store(params) {
        SynthConfig cfg;
        cfg.groups = groups;
        cfg.group_dim = 16;
        cfg.seed = kSeed;
        auto data = synth_gallery(cfg, kEntries, 256, 0);
        if (!data.ok()) throw std::runtime_error(std::string(data.status().message()));
        raw = data->gallery.x;
        auto pr = protect(params, raw.data(), kEntries, RandomSource(kSeed));
        if (!pr.ok()) throw std::runtime_error(std::string(pr.status().message()));
        std::vector<int64_t> ids(kEntries);
        std::iota(ids.begin(), ids.end(), 0);
        store.append(params, *pr, ids.data());
        auto probes = prepare_probes(params, data->probes.x.data(), 256);
        if (!probes.ok()) throw std::runtime_error(std::string(probes.status().message()));
        const size_t qf = store.layout.query_floats();
        queries.resize(256 * qf);
        for (int q = 0; q < 256; ++q) {
            kernels::prepare_query(store.layout, probes->xn.data() + size_t(q) * params.dim(),
                                   probes->t.data() + size_t(q) * groups, queries.data() + q * qf);
        }
        scattered.resize(kEntries);
        std::iota(scattered.begin(), scattered.end(), 0);
        std::shuffle(scattered.begin(), scattered.end(), std::mt19937_64(kSeed));
        scattered.resize(512);  // a refine shortlist, sorted by storage row as the index does
        std::sort(scattered.begin(), scattered.end());
    }
};

// Built at first use: 8x16 or 32x16, fp32 or fp16 storage.
Fixture& fixture(int groups, bool half = false) {
    static std::map<std::pair<int, bool>, std::unique_ptr<Fixture>> built;
    auto& f = built[{groups, half}];
    if (!f) f = std::make_unique<Fixture>(groups, half);
    return *f;
}

// 0 scalar, 1 avx2, 2 batched (sgemm; closed form AVX-512 where the CPU has it), 3 batched with
// the AVX2 closed form.
const kernels::KernelTable* table(int which) {
    switch (which) {
        case 0: return &kernels::scalar_kernels();
        case 1: return kernels::avx2_kernels();
        case 2: return kernels::batch_kernels();
        default: return kernels::batch_avx2_kernels();
    }
}

// args: table (table()), G, batch, fp16 storage
void BM_ScoreRange(benchmark::State& state) {
    const kernels::KernelTable* K = table(int(state.range(0)));
    if (!K) {
        state.SkipWithError("AVX2/FMA not available on this CPU");
        return;
    }
    Fixture& f = fixture(int(state.range(1)), state.range(3) != 0);
    const int64_t nq = state.range(2);
    const kernels::Entries E = f.store.view();
    std::vector<float> out(nq * kEntries);
    for (auto _ : state) {
        K->score_range(E, f.queries.data(), nq, 0, kEntries, out.data(), kEntries);
        benchmark::DoNotOptimize(out.data());
    }
    const double pairs = double(nq) * kEntries;
    state.SetItemsProcessed(int64_t(state.iterations() * pairs));
    state.counters["t_per_entry"] =
            benchmark::Counter(pairs * state.iterations(), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.SetLabel(K->name);
}

// args: table, G, fp16 storage (one query, 512 scattered entries)
void BM_ScoreList(benchmark::State& state) {
    const kernels::KernelTable* K = table(int(state.range(0)));
    if (!K) {
        state.SkipWithError("AVX2/FMA not available on this CPU");
        return;
    }
    Fixture& f = fixture(int(state.range(1)), state.range(2) != 0);
    const kernels::Entries E = f.store.view();
    std::vector<float> out(f.scattered.size());
    for (auto _ : state) {
        K->score_list(E, f.queries.data(), f.scattered.data(), int64_t(f.scattered.size()), out.data());
        benchmark::DoNotOptimize(out.data());
    }
    const double pairs = double(f.scattered.size());
    state.SetItemsProcessed(int64_t(state.iterations() * pairs));
    state.counters["t_per_entry"] =
            benchmark::Counter(pairs * state.iterations(), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.SetLabel(K->name);
}

// Flat inner-product scan of the raw vectors (FAISS), batch 1: the reference per entry.
void BM_FaissInnerProducts(benchmark::State& state) {
    Fixture& f = fixture(int(state.range(0)));
    const int D = f.params.dim();
    std::vector<float> out(kEntries);
    for (auto _ : state) {
        faiss::fvec_inner_products_ny(out.data(), f.raw.data(), f.raw.data(), D, kEntries);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(int64_t(state.iterations() * kEntries));
    state.counters["t_per_entry"] = benchmark::Counter(double(kEntries) * state.iterations(),
                                                        benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// FAISS's batched flat search over the same raw block (sgemm, then top-10 heaps), 256 queries:
// the reference for the batched kernel, per (query, entry) pair.
void BM_FaissBatch(benchmark::State& state) {
    Fixture& f = fixture(int(state.range(0)));
    const int D = f.params.dim();
    const size_t nq = 256, k = 10;
    std::vector<float> dis(nq * k);
    std::vector<int64_t> ids(nq * k);
    for (auto _ : state) {
        faiss::float_minheap_array_t res = {nq, k, ids.data(), dis.data()};
        faiss::knn_inner_product(f.raw.data(), f.raw.data(), D, nq, kEntries, &res);
        benchmark::DoNotOptimize(dis.data());
    }
    const double pairs = double(nq) * kEntries;
    state.SetItemsProcessed(int64_t(state.iterations() * pairs));
    state.counters["t_per_entry"] =
            benchmark::Counter(pairs * state.iterations(), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void RangeArgs(benchmark::internal::Benchmark* b) {
    b->ArgNames({"kernel", "G", "batch", "fp16"});
    for (int half : {0, 1})
        for (int t : {0, 1, 2, 3})
            for (int g : {8, 32})
                for (int nq : {1, 8, 32, 256}) {
                    if (t == 0 && nq != 1 && nq != 256) continue;  // the oracle: ends only
                    if (t == 2 && nq == 1) continue;              // score_block never sends one query there
                    if (t == 3 && nq != 256) continue;
                    if (half && nq != 1 && nq != 256) continue;
                    b->Args({t, g, nq, half});
                }
}

void ListArgs(benchmark::internal::Benchmark* b) {
    b->ArgNames({"kernel", "G", "fp16"});
    for (int half : {0, 1})
        for (int t : {0, 1})
            for (int g : {8, 32}) b->Args({t, g, half});
}

}  // namespace

BENCHMARK(BM_ScoreRange)->Apply(RangeArgs)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ScoreList)->Apply(ListArgs)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FaissInnerProducts)->ArgName("G")->Arg(8)->Arg(32)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FaissBatch)->ArgName("G")->Arg(8)->Arg(32)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
    // OpenBLAS's pool as many threads as OpenMP's (OMP_NUM_THREADS): FAISS's batched search is one
    // sgemm, which would otherwise run on every core against pslerp's one.
    set_threads(omp_get_max_threads());
    benchmark::AddCustomContext("simd_level", kernels::simd_level());
    benchmark::AddCustomContext("git_commit", bench::git_commit());
    benchmark::AddCustomContext("data_seed", std::to_string(kSeed));
    benchmark::AddCustomContext("entries_per_block", std::to_string(kEntries));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
