#include "index/IndexProtectedSlerp.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <typeinfo>

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>

#include "index/topk.h"
#include "plugin/protect.h"

namespace pslerp {

namespace {

constexpr int64_t kRowBlock = 1024;  // entries scored per kernel call
constexpr int64_t kQueryChunk = 256; // queries per kernel call (kernels::score_block)

// The exhaustive index takes a plain SearchParameters (its IDSelector); IVF parameters would
// be silently meaningless here, so they are refused.
const faiss::IDSelector* selector_of(const faiss::SearchParameters* p, const char* what) {
    FAISS_THROW_IF_NOT_FMT(!p || typeid(*p) == typeid(faiss::SearchParameters),
                           "pslerp: %s: the exhaustive index takes a plain faiss::SearchParameters (an IDSelector); "
                           "nprobe and other IVF parameters apply to IndexIVFProtectedSlerp",
                           what);
    return p ? p->sel : nullptr;
}

// Threads for a scan of `rows` entries: no more than there are row blocks.
int scan_threads(int64_t rows) {
    return std::max(1, std::min<int>(omp_get_max_threads(), int((rows + kRowBlock - 1) / kRowBlock)));
}

// Scores every stored row against n kernel queries, tile by tile: rows are split across nt
// threads, each tile (up to kQueryChunk queries x kRowBlock rows) goes to
// visit(thread, q0, nq, r0, r1, scores) with scores[qi * kRowBlock + (r - r0)].
template <typename Visit>
int64_t scan_tiles(const EntryStorage& store, const float* kq, idx_t n, int nt, Visit&& visit) {
    const kernels::Entries E = store.view();
    const size_t qf = store.layout.query_floats();
    const int64_t rows = store.rows();
    int64_t clamped = 0;
#pragma omp parallel num_threads(nt) reduction(+ : clamped)
    {
        const int tid = omp_get_thread_num();
        // Thread ranges start at whole row blocks, so that every split scores an entry in the
        // same kernel block (kernels::score_block: equal answers whatever the thread count).
        const int64_t begin = rows * tid / nt / kRowBlock * kRowBlock;
        const int64_t end = tid + 1 == nt ? rows : rows * (tid + 1) / nt / kRowBlock * kRowBlock;
        std::vector<float> tile(kQueryChunk * kRowBlock);
        for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
            const int64_t r1 = std::min(end, r0 + kRowBlock);
            for (idx_t q0 = 0; q0 < n; q0 += kQueryChunk) {
                const idx_t nq = std::min<idx_t>(kQueryChunk, n - q0);
                clamped += kernels::score_block(E, kq + q0 * qf, nq, r0, r1, tile.data(), kRowBlock);
                visit(tid, q0, nq, r0, r1, tile.data());
            }
        }
    }
    return clamped;
}

}  // namespace

IndexProtectedSlerp::IndexProtectedSlerp() : IndexProtectedSlerp(Params()) {}

IndexProtectedSlerp::IndexProtectedSlerp(const Params& p)
        : faiss::Index(p.dim(), faiss::METRIC_INNER_PRODUCT), ProtectedIndex(p), store(p) {
    is_trained = true;  // the centring is optional
}

IndexProtectedSlerp::~IndexProtectedSlerp() = default;

void IndexProtectedSlerp::train(idx_t n, const float* x) {
    const auto lock = lock_exclusive();
    FAISS_THROW_IF_NOT_MSG(store.rows() == 0, "pslerp: train: the index already holds entries; reset() first");
    centering = fit_centering(n, x);
    cohort_from_training(n, x);
}

void IndexProtectedSlerp::add(idx_t n, const float* x) {
    const auto lock = lock_exclusive();
    add_locked(n, x, nullptr);
}

void IndexProtectedSlerp::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    FAISS_THROW_IF_NOT_MSG(n <= 0 || xids, "pslerp: add_with_ids: ids are null");
    const auto lock = lock_exclusive();
    add_locked(n, x, xids);
}

void IndexProtectedSlerp::add_locked(idx_t n, const float* x, const idx_t* xids) {
    check_vectors(n, x, "add");
    if (n == 0) return;
    const std::vector<idx_t> next = xids ? std::vector<idx_t>() : next_ids(n);
    if (!xids) xids = next.data();
    check_new_ids(n, xids);
    const Protected pr = protect_new(n, x, "add: x");
    const int64_t r0 = store.rows();
    store.append(params, pr, xids);
    try {
        normalize_new(store.view_from(r0), n, store.weights.data() + r0 * layout.group_floats(),
                      store.offsets.data() + r0);
    } catch (...) {
        store.truncate(r0);  // all or nothing
        throw;
    }
    for (idx_t i = 0; i < n; ++i) id_to_row_.emplace(xids[i], r0 + i);
    note_added(n, xids);
    ntotal += n;
}

void IndexProtectedSlerp::search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                                 const faiss::SearchParameters* params_in) const {
    check_vectors(n, x, "search");
    FAISS_THROW_IF_NOT_FMT(k > 0, "pslerp: search: k must be > 0, got %ld", long(k));
    const faiss::IDSelector* sel = selector_of(params_in, "search");
    if (n == 0) return;
    const auto lock = lock_shared();
    exhaustive(n, prepare(n, x, "search: x"), k, distances, labels, sel);
}

void IndexProtectedSlerp::exhaustive(idx_t n, const Prepared& q, idx_t k, float* distances, idx_t* labels,
                                     const faiss::IDSelector* sel) const {
    const int nt = scan_threads(store.rows());
    ThreadHeaps heaps(nt, n, k);
    clamped_ += scan_tiles(store, q.kq.data(), n, nt,
                           [&](int tid, idx_t q0, idx_t nq, int64_t r0, int64_t r1, const float* tile) {
                               for (idx_t qi = 0; qi < nq; ++qi) {
                                   TopK h = heaps.at(tid, q0 + qi);
                                   const float* s = tile + qi * kRowBlock;
                                   for (int64_t r = r0; r < r1; ++r) {
                                       if (store.removed[r] || (sel && !sel->is_member(store.ids[r]))) continue;
                                       h.push(s[r - r0], store.ids[r]);
                                   }
                               }
                           });
#pragma omp parallel for if (n > 1)
    for (idx_t i = 0; i < n; ++i) {
        heaps.merge(i, distances + i * k, labels + i * k);
    }
}

void IndexProtectedSlerp::range_search(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                                       const faiss::SearchParameters* params_in) const {
    const auto lock = lock_shared();
    range_search_locked(n, x, radius, result, params_in);
}

void IndexProtectedSlerp::range_search_locked(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                                              const faiss::SearchParameters* params_in) const {
    check_vectors(n, x, "range_search");
    FAISS_THROW_IF_NOT_MSG(result, "pslerp: range_search: result is null");
    FAISS_THROW_IF_NOT_MSG(std::isfinite(radius), "pslerp: range_search: threshold must be finite");
    const faiss::IDSelector* sel = selector_of(params_in, "range_search");
    const Prepared q = prepare(n, x, "range_search: x");
    const int nt = scan_threads(store.rows());
    ThreadHits hits(nt, n);
    clamped_ += scan_tiles(store, q.kq.data(), n, nt,
                           [&](int tid, idx_t q0, idx_t nq, int64_t r0, int64_t r1, const float* tile) {
                               for (idx_t qi = 0; qi < nq; ++qi) {
                                   for (int64_t r = r0; r < r1; ++r) {
                                       const float s = tile[qi * kRowBlock + (r - r0)];
                                       if (s < radius || store.removed[r]) continue;
                                       if (sel && !sel->is_member(store.ids[r])) continue;
                                       hits.add(tid, q0 + qi, s, store.ids[r]);
                                   }
                               }
                           });
    hits.write(result);  // best first, equal scores by id, as the IVF orders them
}

size_t IndexProtectedSlerp::remove_ids(const faiss::IDSelector& sel) {
    const auto lock = lock_exclusive();
    std::vector<idx_t> gone;
    for (const auto& [id, row] : id_to_row_) {
        if (sel.is_member(id)) gone.push_back(id);
    }
    for (idx_t id : gone) {
        store.removed[id_to_row_[id]] = 1;
        id_to_row_.erase(id);
    }
    ntotal -= idx_t(gone.size());
    // Reclaim space once tombstones are the majority.
    if (store.rows() >= 1024 && 2 * ntotal < store.rows()) compact_locked();
    return gone.size();
}

void IndexProtectedSlerp::reset() {
    const auto lock = lock_exclusive();
    store.clear();
    id_to_row_.clear();
    ntotal = 0;
    next_id_ = 0;
}

void IndexProtectedSlerp::reconstruct(idx_t, float*) const {
    FAISS_THROW_MSG("pslerp: reconstruct: protected entries cannot be decoded back to features");
}

int64_t IndexProtectedSlerp::score_ids(const float* kq, idx_t n, const idx_t* ids, float* out) const {
    std::vector<int64_t> rows(n);
    for (idx_t i = 0; i < n; ++i) {
        auto it = id_to_row_.find(ids[i]);
        FAISS_THROW_IF_NOT_FMT(it != id_to_row_.end(), "pslerp: verify: unknown id %ld", long(ids[i]));
        rows[i] = it->second;
    }
    return kernels::kernels().score_list(store.view(), kq, rows.data(), n, out);
}

void IndexProtectedSlerp::compact() {
    const auto lock = lock_exclusive();
    compact_locked();
}

void IndexProtectedSlerp::compact_locked() {
    store.compact();
    id_to_row_.clear();
    for (int64_t r = 0; r < store.rows(); ++r) id_to_row_.emplace(store.ids[r], r);
}

void IndexProtectedSlerp::rebuild_after_load(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id) {
    const auto lock = lock_exclusive();
    FAISS_THROW_IF_NOT_MSG(store.consistent(), "pslerp: inconsistent storage sizes");
    id_to_row_.clear();
    next_id_ = 0;
    ntotal = 0;
    for (int64_t r = 0; r < store.rows(); ++r) {
        next_id_ = std::max(next_id_, store.ids[r] + 1);
        if (store.removed[r]) continue;
        FAISS_THROW_IF_NOT_FMT(id_to_row_.emplace(store.ids[r], r).second, "pslerp: duplicate id %ld in storage",
                               long(store.ids[r]));
        ++ntotal;
    }
    restore_state_locked(streams_used, seed, next_id);
}

}  // namespace pslerp
