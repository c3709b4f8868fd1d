#include "tools/measure.h"

#include <algorithm>
#include <vector>

#include "tools/common.h"
#include "util/timing.h"

namespace pslerp::cli {

std::vector<Latency> measure_latencies(const std::vector<Timed>& indexes, const float* q, int64_t nq, int64_t k,
                                       int repeats) {
    const size_t m = indexes.size();
    std::vector<float> D(nq * k);
    std::vector<faiss::Index::idx_t> I(nq * k);
    std::vector<std::vector<double>> single(m), batch(m);
    auto timed = [&](const Timed& x, int64_t n, const float* queries) {
        const double t0 = now_seconds();
        x.index->search(n, queries, k, D.data(), I.data(), x.params);
        return now_seconds() - t0;
    };
    for (const Timed& x : indexes) timed(x, 1, q);  // warm-up
    // Single queries in runs of 10 per index (a run keeps what consecutive searches of one index
    // keep in cache, as a server would), the indexes taking turns run by run.
    const int64_t ns = std::min<int64_t>(nq, 50), kRun = 10;
    for (int64_t i0 = 0; i0 < ns; i0 += kRun) {
        for (size_t j = 0; j < m; ++j) {
            for (int64_t i = i0; i < std::min(ns, i0 + kRun); ++i) {
                single[j].push_back(timed(indexes[j], 1, q + i * indexes[j].index->d));
            }
        }
    }
    for (int r = 0; r < repeats; ++r) {
        for (size_t j = 0; j < m; ++j) batch[j].push_back(timed(indexes[j], nq, q) / double(nq));
    }
    std::vector<Latency> out(m);
    for (size_t j = 0; j < m; ++j) {
        out[j].single_ms = 1e3 * median(single[j]);
        out[j].batch_ms = 1e3 * median(batch[j]);
    }
    return out;
}

}  // namespace pslerp::cli
