// Top-k bookkeeping shared by the exhaustive index and the IVF's batched search: per-thread
// min-heaps of (score, label) that are merged per query at the end. Scores are similarities
// (higher is better); missing results are label -1, score -inf, as FAISS pads them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <faiss/Index.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/utils/Heap.h>

namespace pslerp {

inline constexpr float kNoScore = -std::numeric_limits<float>::infinity();

/// FAISS's min-heap order with ties turned round: of two equal scores the larger label is the
/// worse, so it sits on top and is replaced first. A result then keeps the smaller labels of a
/// tie and lists them in ascending order, as range search does (best_first), so search(k) is a
/// prefix of the range search's list and both index kinds agree.
struct WorstOnTop : faiss::CMin<float, faiss::Index::idx_t> {
    static bool cmp2(float a1, float b1, faiss::Index::idx_t a2, faiss::Index::idx_t b2) {
        return a1 < b1 || (a1 == b1 && a2 > b2);
    }
};

/// The k best (score, label) pairs of one query, in a min-heap over caller-owned arrays.
struct TopK {
    using Heap = WorstOnTop;
    faiss::Index::idx_t k;
    float* vals;
    faiss::Index::idx_t* labels;

    void init() {
        std::fill(vals, vals + k, kNoScore);
        std::fill(labels, labels + k, faiss::Index::idx_t{-1});
    }
    /// Keeps the k best by (score, label): equal scores are decided by label (the smaller
    /// wins), so the result does not depend on the order in which threads push.
    void push(float s, faiss::Index::idx_t label) {
        if (Heap::cmp2(vals[0], s, labels[0], label)) faiss::heap_replace_top<Heap>(k, vals, labels, s, label);
    }
    /// Best first; -1 / -inf where fewer than k.
    void finish() {
        faiss::heap_reorder<Heap>(k, vals, labels);
        for (faiss::Index::idx_t j = 0; j < k; ++j) {
            if (labels[j] < 0) vals[j] = kNoScore;
        }
    }
};

/// One heap per (thread, query): nt * n heaps of k over one allocation.
struct ThreadHeaps {
    faiss::Index::idx_t n, k;
    int nt;
    std::vector<float> vals;
    std::vector<faiss::Index::idx_t> labels;

    ThreadHeaps(int threads, faiss::Index::idx_t queries, faiss::Index::idx_t kk)
            : n(queries), k(kk), nt(threads), vals(size_t(threads) * queries * kk, kNoScore),
              labels(size_t(threads) * queries * kk, -1) {}
    TopK at(int thread, faiss::Index::idx_t q) {
        const size_t o = (size_t(thread) * n + q) * k;
        return {k, vals.data() + o, labels.data() + o};
    }
    /// Query q's best k over every thread into distances / out_labels (k each), best first.
    void merge(faiss::Index::idx_t q, float* distances, faiss::Index::idx_t* out_labels) const {
        TopK h{k, distances, out_labels};
        h.init();
        for (int t = 0; t < nt; ++t) {
            const size_t o = (size_t(t) * n + q) * k;
            for (faiss::Index::idx_t j = 0; j < k; ++j) {
                if (labels[o + j] >= 0) h.push(vals[o + j], labels[o + j]);
            }
        }
        h.finish();
    }
};

/// Range-search order: best first, equal scores by label.
inline bool best_first(const std::pair<float, faiss::Index::idx_t>& u, const std::pair<float, faiss::Index::idx_t>& v) {
    return u.first != v.first ? u.first > v.first : u.second < v.second;
}

/// Range-search hits per (thread, query), written to a RangeSearchResult at the end: each
/// query's hits from every thread, best first.
struct ThreadHits {
    using Hit = std::pair<float, faiss::Index::idx_t>;
    std::vector<std::vector<std::vector<Hit>>> part;  ///< [thread][query]

    ThreadHits(int threads, faiss::Index::idx_t n) : part(threads, std::vector<std::vector<Hit>>(n)) {}
    void add(int thread, faiss::Index::idx_t q, float score, faiss::Index::idx_t label) {
        part[thread][q].emplace_back(score, label);
    }
    void write(faiss::RangeSearchResult* result) const {
        const size_t n = part.empty() ? 0 : part[0].size();
        for (size_t i = 0; i < n; ++i) {
            size_t count = 0;
            for (const auto& p : part) count += p[i].size();
            result->lims[i] = count;  // do_allocation() turns counts into offsets
        }
        result->do_allocation();
        std::vector<Hit> hits;
        for (size_t i = 0; i < n; ++i) {
            hits.clear();
            for (const auto& p : part) hits.insert(hits.end(), p[i].begin(), p[i].end());
            std::sort(hits.begin(), hits.end(), best_first);
            size_t o = result->lims[i];
            for (const auto& [score, label] : hits) {
                result->distances[o] = score;
                result->labels[o++] = label;
            }
        }
    }
};

}  // namespace pslerp
