#include "index/IndexProtectedSlerp.h"

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <typeinfo>

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>

#include "index/topk.h"
#include "plugin/protect.h"

namespace pslerp {

namespace {

constexpr int64_t kRowBlock = 1024;  // threads split the rows at multiples of this
constexpr int64_t kQueryChunk = 256; // queries per kernel call (kernels::score_block_into)

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

// Row r is not a candidate: removed, or outside the search's selector.
bool excluded(const EntryStorage& store, const faiss::IDSelector* sel, int64_t r) {
    return store.removed[r] || (sel && !sel->is_member(store.ids[r]));
}

// One thread's scores to visit(thread, q0, nq, j0, nj, s, es, qs), queries counted from `chunk`
// (at namespace scope: clang 14 does not compile a local class inside an OpenMP region).
template <typename Visit>
struct RowSink final : kernels::ScoreSink {
    Visit& visit;
    int tid;
    idx_t chunk = 0;
    RowSink(Visit& v, int t) : visit(v), tid(t) {}
    void take(int64_t q0, int64_t nq, int64_t j0, int64_t nj, const float* s, int64_t es, int64_t qs) override {
        visit(tid, chunk + q0, nq, j0, nj, s, es, qs);
    }
};

// Scores every stored row against n kernel queries, kQueryChunk queries at a time: rows are
// split across nt threads, and each thread's scores arrive block by block at
// visit(thread, q0, nq, j0, nj, s, es, qs): query q0 + qi against row j0 + jj is
// s[jj * es + qi * qs] (kernels::ScoreSink).
template <typename Visit>
int64_t scan_rows(const EntryStorage& store, const float* kq, idx_t n, int nt, Visit&& visit) {
    const kernels::Entries E = store.view();
    const size_t qf = store.layout.query_floats();
    const int64_t rows = store.rows();
    int64_t clamped = 0;
#pragma omp parallel num_threads(nt) reduction(+ : clamped)
    {
        const int tid = omp_get_thread_num();
        // Thread ranges start at whole row blocks (the batched kernel scores an entry in the same
        // sgemm block whatever the range: equal answers whatever the thread count).
        const int64_t begin = rows * tid / nt / kRowBlock * kRowBlock;
        const int64_t end = tid + 1 == nt ? rows : rows * (tid + 1) / nt / kRowBlock * kRowBlock;
        RowSink<std::remove_reference_t<Visit>> sink(visit, tid);
        for (idx_t q0 = 0; q0 < n && begin < end; q0 += kQueryChunk) {
            sink.chunk = q0;
            clamped += kernels::score_block_into(E, kq + q0 * qf, std::min<idx_t>(kQueryChunk, n - q0), begin, end, sink);
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
    // Per thread and query, the worst score its heap holds: most scores are below it, and only
    // those at or above it go further (equal ones are decided by label).
    std::vector<float> worst(size_t(nt) * n, kNoScore);
    clamped_ += scan_rows(store, q.kq.data(), n, nt,
                          [&](int tid, idx_t q0, idx_t nq, int64_t j0, int64_t nj, const float* s, int64_t es,
                              int64_t qs) {
                              float* w = worst.data() + size_t(tid) * n + q0;
                              auto offer = [&](idx_t qi, float v, idx_t id) {
                                  TopK h = heaps.at(tid, q0 + qi);
                                  h.push(v, id);
                                  w[qi] = h.vals[0];
                              };
                              for (int64_t jj = 0; jj < nj; ++jj) {
                                  const int64_t r = j0 + jj;
                                  if (excluded(store, sel, r)) continue;
                                  const float* row = s + jj * es;
                                  idx_t qi = 0;
                                  if (qs == 1) {  // the batched kernel's rows: four queries per compare
                                      for (; qi + 4 <= nq; qi += 4) {
                                          int hit = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(row + qi), _mm_loadu_ps(w + qi)));
                                          for (; hit; hit &= hit - 1) {
                                              const int l = __builtin_ctz(unsigned(hit));
                                              offer(qi + l, row[qi + l], store.ids[r]);
                                          }
                                      }
                                  }
                                  for (; qi < nq; ++qi) {
                                      const float v = row[qi * qs];
                                      if (v >= w[qi]) offer(qi, v, store.ids[r]);
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
    clamped_ += scan_rows(store, q.kq.data(), n, nt,
                          [&](int tid, idx_t q0, idx_t nq, int64_t j0, int64_t nj, const float* s, int64_t es,
                              int64_t qs) {
                              for (int64_t jj = 0; jj < nj; ++jj) {
                                  const int64_t r = j0 + jj;
                                  if (excluded(store, sel, r)) continue;
                                  for (idx_t qi = 0; qi < nq; ++qi) {
                                      const float v = s[jj * es + qi * qs];
                                      if (v >= radius) hits.add(tid, q0 + qi, v, store.ids[r]);
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
