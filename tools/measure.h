// Latency of protected search beside FAISS on the same queries, as medians of repeats.
#pragma once

#include <vector>

#include <faiss/Index.h>

namespace pslerp::cli {

struct Latency {
    double single_ms = 0;  ///< median time of one single-query search
    double batch_ms = 0;   ///< median time per query within batches
};

/// An index to time, with its search parameters (may be null).
struct Timed {
    const faiss::Index* index;
    const faiss::SearchParameters* params = nullptr;
};

/// Times each index on nq queries: single queries (up to 50 of them, median) and one batch of
/// all nq (median over `repeats`). The indexes take turns (single queries in runs of ten, batches
/// repeat by repeat), so that a slow spell of the machine falls on all of them alike.
std::vector<Latency> measure_latencies(const std::vector<Timed>& indexes, const float* q, int64_t nq, int64_t k,
                                       int repeats);

}  // namespace pslerp::cli
