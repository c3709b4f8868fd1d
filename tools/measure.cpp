#include "tools/measure.h"

#include <algorithm>
#include <vector>

#include "tools/common.h"
#include "util/timing.h"

namespace pslerp::cli {

Latency measure_latency(const faiss::Index& index, const float* q, int64_t nq, int64_t k, int repeats,
                        const faiss::SearchParameters* params) {
    Latency l;
    std::vector<float> D(nq * k);
    std::vector<faiss::Index::idx_t> I(nq * k);
    std::vector<double> single;
    const int64_t ns = std::min<int64_t>(nq, 50);
    index.search(1, q, k, D.data(), I.data(), params);  // warm-up
    for (int64_t i = 0; i < ns; ++i) {
        const double t0 = now_seconds();
        index.search(1, q + i * index.d, k, D.data(), I.data(), params);
        single.push_back(now_seconds() - t0);
    }
    std::vector<double> batch;
    for (int r = 0; r < repeats; ++r) {
        const double t0 = now_seconds();
        index.search(nq, q, k, D.data(), I.data(), params);
        batch.push_back((now_seconds() - t0) / nq);
    }
    l.single_ms = 1e3 * median(single);
    l.batch_ms = 1e3 * median(batch);
    return l;
}

}  // namespace pslerp::cli
