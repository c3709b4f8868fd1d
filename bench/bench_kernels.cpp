// Google Benchmark of the scoring kernels (index/kernels/scan.h): score_range over a block of
// entries for 1 and 256 prepared queries, and score_list over scattered entries (the refine
// step of coarse search), for the scalar and the AVX2 tables, G x d in {8x16, 32x16}. The
// counter "t_per_entry" is the time per (query, entry) pair; FAISS's fvec_inner_products_ny
// over the same number of raw vectors is the flat-scan reference in the same binary.
//
//   build-bench/bench/bench_kernels --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <faiss/utils/distances.h>

#include "bench/driver_util.h"
#include "index/kernels/scan.h"
#include "index/storage.h"
#include "plugin/protect.h"
#include "plugin/synth.h"

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

    explicit Fixture(int groups) : params(Params::defaults(groups, 16)), store(params) {
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

Fixture& fixture(int groups) {
    static Fixture f8(8), f32(32);
    return groups == 8 ? f8 : f32;
}

const kernels::KernelTable* table(int which) {
    return which == 0 ? &kernels::scalar_kernels() : kernels::avx2_kernels();
}

// args: table (0 scalar, 1 avx2), G, batch
void BM_ScoreRange(benchmark::State& state) {
    const kernels::KernelTable* K = table(int(state.range(0)));
    if (!K) {
        state.SkipWithError("AVX2/FMA not available on this CPU");
        return;
    }
    Fixture& f = fixture(int(state.range(1)));
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

// args: table, G (one query, 512 scattered entries)
void BM_ScoreList(benchmark::State& state) {
    const kernels::KernelTable* K = table(int(state.range(0)));
    if (!K) {
        state.SkipWithError("AVX2/FMA not available on this CPU");
        return;
    }
    Fixture& f = fixture(int(state.range(1)));
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

void RangeArgs(benchmark::internal::Benchmark* b) {
    b->ArgNames({"avx2", "G", "batch"});
    for (int t : {0, 1})
        for (int g : {8, 32})
            for (int nq : {1, 256}) b->Args({t, g, nq});
}

void ListArgs(benchmark::internal::Benchmark* b) {
    b->ArgNames({"avx2", "G"});
    for (int t : {0, 1})
        for (int g : {8, 32}) b->Args({t, g});
}

}  // namespace

BENCHMARK(BM_ScoreRange)->Apply(RangeArgs)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ScoreList)->Apply(ListArgs)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FaissInnerProducts)->ArgName("G")->Arg(8)->Arg(32)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
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
