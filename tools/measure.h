// Latency of protected search beside FAISS on the same queries, as medians of repeats.
#pragma once

#include <faiss/Index.h>

namespace pslerp::cli {

struct Latency {
    double single_ms = 0;  ///< median time of one single-query search
    double batch_ms = 0;   ///< median time per query within batches
};

/// Times `index` on nq queries: single queries (up to 50 of them, median) and one batch of all
/// nq (median over `repeats`).
Latency measure_latency(const faiss::Index& index, const float* q, int64_t nq, int64_t k, int repeats,
                        const faiss::SearchParameters* params = nullptr);

}  // namespace pslerp::cli
