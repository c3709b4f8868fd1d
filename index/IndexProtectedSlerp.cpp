#include "index/IndexProtectedSlerp.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <faiss/IVFlib.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/utils/Heap.h>

#include "plugin/protect.h"

namespace pslerp {

namespace {

using MinHeap = faiss::CMin<float, idx_t>;
constexpr float kNoScore = -std::numeric_limits<float>::infinity();
constexpr int64_t kRowBlock = 256;  // entries scored per kernel call
constexpr int64_t kQueryChunk = 32; // queries sharing each loaded entry

void throw_if_error(const absl::Status& s) {
    if (!s.ok()) FAISS_THROW_MSG("pslerp: " + std::string(s.message()));
}

// Keeps the k best (score, row) pairs per query in a min-heap.
struct TopK {
    idx_t k;
    float* vals;
    idx_t* rows;
    void init() {
        std::fill(vals, vals + k, kNoScore);
        std::fill(rows, rows + k, idx_t{-1});
    }
    void push(float s, idx_t row) {
        if (s > vals[0]) faiss::heap_replace_top<MinHeap>(k, vals, rows, s, row);
    }
    // Best first, rows turned into external ids, FAISS's -1 / -inf where fewer than k.
    void finish(const std::vector<int64_t>& ids) {
        faiss::heap_reorder<MinHeap>(k, vals, rows);
        for (idx_t j = 0; j < k; ++j) {
            if (rows[j] >= 0) {
                rows[j] = ids[rows[j]];
            } else {
                vals[j] = kNoScore;
            }
        }
    }
};

// Per-call options must be ours: FAISS's own (SearchParametersIVF, ...) go to the coarse index
// through SearchParametersProtectedSlerp::coarse_params, never silently ignored.
const SearchParametersProtectedSlerp* own_params(const faiss::SearchParameters* p, const char* what) {
    const auto* sp = dynamic_cast<const SearchParametersProtectedSlerp*>(p);
    FAISS_THROW_IF_NOT_FMT(!p || sp,
                           "pslerp: %s: parameters must be SearchParametersProtectedSlerp (put the coarse "
                           "index's own parameters in its coarse_params)",
                           what);
    return sp;
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
    const kernels::KernelTable& K = kernels::kernels();
    const kernels::Entries E = store.view();
    const size_t qf = store.layout.query_floats();
    const int64_t rows = store.rows();
    int64_t clamped = 0;
#pragma omp parallel num_threads(nt) reduction(+ : clamped)
    {
        const int tid = omp_get_thread_num();
        const int64_t begin = rows * tid / nt, end = rows * (tid + 1) / nt;
        std::vector<float> tile(kQueryChunk * kRowBlock);
        for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
            const int64_t r1 = std::min(end, r0 + kRowBlock);
            for (idx_t q0 = 0; q0 < n; q0 += kQueryChunk) {
                const idx_t nq = std::min<idx_t>(kQueryChunk, n - q0);
                clamped += K.score_range(E, kq + q0 * qf, nq, r0, r1, tile.data(), kRowBlock);
                visit(tid, q0, nq, r0, r1, tile.data());
            }
        }
    }
    return clamped;
}

// Shortlist size: `want` capped to the stored rows, at least 1.
idx_t shortlist_size(idx_t want, int64_t rows) {
    return std::max<idx_t>(1, std::min<idx_t>(want, std::max<idx_t>(rows, 1)));
}

// Exact scores of one coarse shortlist (kk rows from the coarse index, -1 padded): the live
// rows, once each and in storage order (friendlier to memory), into `live` and `scores`.
// Returns the clamped count.
int64_t rescore_shortlist(const EntryStorage& store, const float* kernel_query, const idx_t* shortlist, idx_t kk,
                          std::vector<int64_t>& live, std::vector<float>& scores) {
    live.clear();
    for (idx_t j = 0; j < kk; ++j) {
        const idx_t r = shortlist[j];
        if (r >= 0 && r < store.rows() && !store.removed[r]) live.push_back(r);
    }
    std::sort(live.begin(), live.end());
    live.erase(std::unique(live.begin(), live.end()), live.end());
    scores.resize(live.size());
    return kernels::kernels().score_list(store.view(), kernel_query, live.data(), int64_t(live.size()),
                                         scores.data());
}

}  // namespace

struct IndexProtectedSlerp::Prepared {
    std::vector<float> xn;  // n * d centred, group-normalised probes
    std::vector<float> kq;  // n * query_floats kernel queries
    std::vector<float> cq;  // n * coarse_d coarse queries (only with a coarse index)
};

namespace {

// Coarse embeddings of protected entries in natural layout.
std::vector<float> embeddings(const Params& p, CoarseEmbedding mode, const Protected& pr) {
    const int cd = coarse_dim(p, mode), D = p.dim(), G = p.groups, KD = p.key_dim();
    std::vector<float> out(pr.n * cd);
#pragma omp parallel for if (pr.n > 1024)
    for (int64_t i = 0; i < pr.n; ++i) {
        coarse_embedding(p, mode, pr.templates.data() + i * D, pr.keys.data() + i * KD, pr.masks.data() + i * D,
                         pr.weights.data() + i * G, out.data() + i * cd);
    }
    return out;
}

}  // namespace

IndexProtectedSlerp::IndexProtectedSlerp() : IndexProtectedSlerp(Params()) {}

IndexProtectedSlerp::IndexProtectedSlerp(const Params& p, std::unique_ptr<faiss::Index> coarse_index,
                                         CoarseEmbedding embedding)
        : faiss::Index(p.dim(), faiss::METRIC_INNER_PRODUCT),
          params(p),
          coarse_embedding(embedding),
          coarse(std::move(coarse_index)),
          store(p) {
    throw_if_error(p.validate());
    if (coarse) {
        FAISS_THROW_IF_NOT_FMT(coarse->d == coarse_d(), "pslerp: coarse index has dimension %d, expected %d",
                               int(coarse->d), coarse_d());
        FAISS_THROW_IF_NOT_MSG(coarse->ntotal == 0, "pslerp: the coarse index must be empty");
        FAISS_THROW_IF_NOT_FMT(coarse->metric_type == coarse_metric(embedding),
                               "pslerp: the coarse index must use the %s metric for this embedding",
                               embedding == CoarseEmbedding::kLinear ? "L2" : "inner-product");
    }
    is_trained = !coarse || coarse->is_trained;
}

IndexProtectedSlerp::~IndexProtectedSlerp() = default;

void IndexProtectedSlerp::check_vectors(idx_t n, const float* x, const char* what) const {
    FAISS_THROW_IF_NOT_FMT(n >= 0, "pslerp: %s: n must be >= 0, got %ld", what, long(n));
    FAISS_THROW_IF_NOT_FMT(n == 0 || x != nullptr, "pslerp: %s: null input with n = %ld", what, long(n));
}

IndexProtectedSlerp::Prepared IndexProtectedSlerp::prepare(idx_t n, const float* x) const {
    Prepared q;
    std::vector<float> xc(n * d);
    centering.apply(x, n, d, xc.data());
    auto probe = prepare_probes(params, xc.data(), n);
    throw_if_error(probe.status());
    q.xn = std::move(probe->xn);
    const size_t qf = store.layout.query_floats();
    q.kq.resize(n * qf);
    const int cd = coarse_d();
    if (coarse) q.cq.resize(n * cd);
#pragma omp parallel for if (n > 256)
    for (idx_t i = 0; i < n; ++i) {
        kernels::prepare_query(store.layout, q.xn.data() + i * d, probe->t.data() + i * params.groups,
                               q.kq.data() + i * qf);
        if (coarse) coarse_query(params, coarse_embedding, q.xn.data() + i * d, q.cq.data() + i * cd);
    }
    return q;
}

void IndexProtectedSlerp::train(idx_t n, const float* x) {
    check_vectors(n, x, "train");
    FAISS_THROW_IF_NOT_MSG(store.rows() == 0, "pslerp: train: the index already holds entries; reset() first");
    auto c = Centering::fit(x, n, d, params.groups, train_pca);
    throw_if_error(c.status());
    Centering fitted = *std::move(c);
    if (coarse && !coarse->is_trained) {
        std::vector<float> xc(n * d);
        fitted.apply(x, n, d, xc.data());
        ProtectInputs in;
        in.stream_offset = streams_used_;
        auto pr = protect(params, xc.data(), n, rng_, in);
        throw_if_error(pr.status());
        coarse->train(n, coarse_vectors(*pr).data());
        streams_used_ += static_cast<uint64_t>(n);
    }
    centering = std::move(fitted);
    is_trained = !coarse || coarse->is_trained;
}

void IndexProtectedSlerp::add(idx_t n, const float* x) {
    std::vector<idx_t> ids(n);
    std::iota(ids.begin(), ids.end(), next_id_);
    add_with_ids(n, x, ids.data());
}

void IndexProtectedSlerp::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    check_vectors(n, x, "add");
    if (n == 0) return;
    FAISS_THROW_IF_NOT_MSG(xids, "pslerp: add_with_ids: ids are null");
    FAISS_THROW_IF_NOT_MSG(is_trained, "pslerp: add: the coarse index needs train() first");
    absl::flat_hash_map<idx_t, idx_t> batch;
    for (idx_t i = 0; i < n; ++i) {
        FAISS_THROW_IF_NOT_FMT(xids[i] >= 0, "pslerp: add: id %ld is negative", long(xids[i]));
        FAISS_THROW_IF_NOT_FMT(!id_to_row_.contains(xids[i]), "pslerp: add: id %ld is already in the index",
                               long(xids[i]));
        FAISS_THROW_IF_NOT_FMT(batch.emplace(xids[i], i).second, "pslerp: add: id %ld appears twice in the batch",
                               long(xids[i]));
    }
    std::vector<float> xc(n * d);
    centering.apply(x, n, d, xc.data());
    ProtectInputs in;
    in.stream_offset = streams_used_;
    auto pr = protect(params, xc.data(), n, rng_, in);
    throw_if_error(pr.status());
    if (coarse) {
        FAISS_THROW_IF_NOT_MSG(coarse->ntotal == store.rows(), "pslerp: coarse index out of step with storage");
        coarse->add(n, coarse_vectors(*pr).data());
    }
    const int64_t r0 = store.rows();
    store.append(params, *pr, xids);
    for (idx_t i = 0; i < n; ++i) {
        id_to_row_.emplace(xids[i], r0 + i);
        next_id_ = std::max(next_id_, xids[i] + 1);
    }
    streams_used_ += static_cast<uint64_t>(n);
    ntotal += n;
}

void IndexProtectedSlerp::search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                                 const faiss::SearchParameters* params_in) const {
    check_vectors(n, x, "search");
    FAISS_THROW_IF_NOT_FMT(k > 0, "pslerp: search: k must be > 0, got %ld", long(k));
    const auto* sp = own_params(params_in, "search");
    if (n == 0) return;
    const Prepared q = prepare(n, x);
    if (!coarse) {
        exhaustive(n, q, k, distances, labels);
        return;
    }
    search_coarse(n, q, k, distances, labels, sp);
}

void IndexProtectedSlerp::search_exhaustive(idx_t n, const float* x, idx_t k, float* distances,
                                            idx_t* labels) const {
    check_vectors(n, x, "search");
    FAISS_THROW_IF_NOT_FMT(k > 0, "pslerp: search: k must be > 0, got %ld", long(k));
    if (n == 0) return;
    exhaustive(n, prepare(n, x), k, distances, labels);
}

void IndexProtectedSlerp::exhaustive(idx_t n, const Prepared& q, idx_t k, float* distances, idx_t* labels) const {
    const int nt = scan_threads(store.rows());
    std::vector<float> hv(size_t(nt) * n * k);
    std::vector<idx_t> hr(size_t(nt) * n * k);
    std::vector<TopK> heaps(size_t(nt) * n);
    for (size_t h = 0; h < heaps.size(); ++h) {
        heaps[h] = {k, hv.data() + h * k, hr.data() + h * k};
        heaps[h].init();
    }
    clamped_ += scan_tiles(store, q.kq.data(), n, nt,
                           [&](int tid, idx_t q0, idx_t nq, int64_t r0, int64_t r1, const float* tile) {
                               for (idx_t qi = 0; qi < nq; ++qi) {
                                   TopK& h = heaps[size_t(tid) * n + q0 + qi];
                                   const float* s = tile + qi * kRowBlock;
                                   for (int64_t r = r0; r < r1; ++r) {
                                       if (!store.removed[r]) h.push(s[r - r0], r);
                                   }
                               }
                           });
#pragma omp parallel for if (n > 1)
    for (idx_t i = 0; i < n; ++i) {
        TopK h{k, distances + i * k, labels + i * k};
        h.init();
        for (int t = 0; t < nt; ++t) {
            const size_t o = (size_t(t) * n + i) * k;
            for (idx_t j = 0; j < k; ++j) {
                if (hr[o + j] >= 0) h.push(hv[o + j], hr[o + j]);
            }
        }
        h.finish(store.ids);
    }
}

void IndexProtectedSlerp::coarse_shortlist(idx_t n, const Prepared& q, idx_t kk, std::vector<idx_t>& rows,
                                           const SearchParametersProtectedSlerp* sp) const {
    std::vector<float> cd(n * kk);
    rows.assign(n * kk, -1);
    const faiss::SearchParameters* cp = sp ? sp->coarse_params : nullptr;
    faiss::SearchParametersIVF ivf;
    faiss::Index* inner = coarse.get();
    if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(inner)) inner = pt->index;
    if (!cp && sp && sp->nprobe > 0) {
        FAISS_THROW_IF_NOT_MSG(faiss::ivflib::try_extract_index_ivf(coarse.get()),
                               "pslerp: search: nprobe given but the coarse index is not IVF");
        ivf.nprobe = sp->nprobe;
        cp = &ivf;
    }
    auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(inner);
    FAISS_THROW_IF_NOT_MSG(!(sp && sp->efSearch > 0) || hnsw,
                           "pslerp: search: efSearch given but the coarse index is not HNSW");
    if (hnsw) {
        // FAISS 1.7.3 ignores SearchParametersHNSW::efSearch for the candidate queue and does
        // not widen it to k: set it on the object for this call (never below the shortlist),
        // exclusive against other searches; calls that keep it share the lock.
        std::shared_lock<std::shared_mutex> shared(coarse_mutex_);
        const int saved = hnsw->hnsw.efSearch;
        const int want = std::max<int>(sp && sp->efSearch > 0 ? sp->efSearch : saved, int(kk));
        if (want == saved) {
            coarse->search(n, q.cq.data(), kk, cd.data(), rows.data(), cp);
            return;
        }
        shared.unlock();
        std::unique_lock<std::shared_mutex> exclusive(coarse_mutex_);
        hnsw->hnsw.efSearch = want;
        try {
            coarse->search(n, q.cq.data(), kk, cd.data(), rows.data(), cp);
        } catch (...) {
            hnsw->hnsw.efSearch = saved;
            throw;
        }
        hnsw->hnsw.efSearch = saved;
        return;
    }
    coarse->search(n, q.cq.data(), kk, cd.data(), rows.data(), cp);
}

void IndexProtectedSlerp::search_coarse(idx_t n, const Prepared& q, idx_t k, float* distances, idx_t* labels,
                                        const SearchParametersProtectedSlerp* sp) const {
    const int kf = sp && sp->k_factor > 0 ? sp->k_factor : k_factor;
    const idx_t kk = shortlist_size(k * kf, store.rows());
    std::vector<idx_t> rows;
    coarse_shortlist(n, q, kk, rows, sp);
    const size_t qf = store.layout.query_floats();
    int64_t clamped = 0;
#pragma omp parallel for if (n > 1) reduction(+ : clamped)
    for (idx_t i = 0; i < n; ++i) {
        std::vector<int64_t> live;
        std::vector<float> scores;
        clamped += rescore_shortlist(store, q.kq.data() + i * qf, rows.data() + i * kk, kk, live, scores);
        TopK h{k, distances + i * k, labels + i * k};
        h.init();
        for (size_t j = 0; j < live.size(); ++j) h.push(scores[j], live[j]);
        h.finish(store.ids);
    }
    clamped_ += clamped;
}

void IndexProtectedSlerp::range_search(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                                       const faiss::SearchParameters* params_in) const {
    check_vectors(n, x, "range_search");
    FAISS_THROW_IF_NOT_MSG(result, "pslerp: range_search: result is null");
    FAISS_THROW_IF_NOT_MSG(std::isfinite(radius), "pslerp: range_search: threshold must be finite");
    const auto* sp = own_params(params_in, "range_search");
    const Prepared q = prepare(n, x);
    const size_t qf = store.layout.query_floats();
    std::vector<std::vector<std::pair<float, idx_t>>> hits(n);
    int64_t clamped = 0;
    if (!coarse) {
        const int nt = scan_threads(store.rows());
        std::vector<std::vector<std::vector<std::pair<float, idx_t>>>> part(nt, hits);
        clamped += scan_tiles(store, q.kq.data(), n, nt,
                              [&](int tid, idx_t q0, idx_t nq, int64_t r0, int64_t r1, const float* tile) {
                                  for (idx_t qi = 0; qi < nq; ++qi) {
                                      for (int64_t r = r0; r < r1; ++r) {
                                          const float s = tile[qi * kRowBlock + (r - r0)];
                                          if (!store.removed[r] && s >= radius) part[tid][q0 + qi].emplace_back(s, r);
                                      }
                                  }
                              });
        for (auto& p : part) {
            for (idx_t i = 0; i < n; ++i) hits[i].insert(hits[i].end(), p[i].begin(), p[i].end());
        }
    } else {
        // The coarse index has no exact threshold (HNSW has no range search at all): take a
        // wide shortlist and keep what the exact score puts over the threshold.
        const int rs = sp && sp->range_shortlist > 0 ? sp->range_shortlist : range_shortlist;
        const idx_t kk = shortlist_size(rs, store.rows());
        std::vector<idx_t> rows;
        if (n > 0) coarse_shortlist(n, q, kk, rows, sp);
#pragma omp parallel for if (n > 1) reduction(+ : clamped)
        for (idx_t i = 0; i < n; ++i) {
            std::vector<int64_t> live;
            std::vector<float> scores;
            clamped += rescore_shortlist(store, q.kq.data() + i * qf, rows.data() + i * kk, kk, live, scores);
            for (size_t j = 0; j < live.size(); ++j) {
                if (scores[j] >= radius) hits[i].emplace_back(scores[j], live[j]);
            }
        }
    }
    clamped_ += clamped;
    for (idx_t i = 0; i < n; ++i) {
        std::sort(hits[i].begin(), hits[i].end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        result->lims[i] = hits[i].size();  // do_allocation() turns counts into offsets
    }
    result->do_allocation();
    for (idx_t i = 0; i < n; ++i) {
        size_t o = result->lims[i];
        for (const auto& [s, r] : hits[i]) {
            result->distances[o] = s;
            result->labels[o++] = store.ids[r];
        }
    }
}

size_t IndexProtectedSlerp::remove_ids(const faiss::IDSelector& sel) {
    std::vector<idx_t> gone;
    for (const auto& [id, row] : id_to_row_) {
        if (sel.is_member(id)) gone.push_back(id);
    }
    for (idx_t id : gone) {
        store.removed[id_to_row_[id]] = 1;
        id_to_row_.erase(id);
    }
    ntotal -= idx_t(gone.size());
    // Reclaim space once tombstones are the majority (rebuilds the coarse index).
    if (store.rows() >= 1024 && 2 * ntotal < store.rows()) compact();
    return gone.size();
}

void IndexProtectedSlerp::reset() {
    store.clear();
    id_to_row_.clear();
    if (coarse) coarse->reset();
    ntotal = 0;
    next_id_ = 0;
}

std::vector<int64_t> IndexProtectedSlerp::rows_of(idx_t n, const idx_t* ids) const {
    std::vector<int64_t> rows(n);
    for (idx_t i = 0; i < n; ++i) {
        auto it = id_to_row_.find(ids[i]);
        FAISS_THROW_IF_NOT_FMT(it != id_to_row_.end(), "pslerp: verify: unknown id %ld", long(ids[i]));
        rows[i] = it->second;
    }
    return rows;
}

float IndexProtectedSlerp::verify(const float* x, idx_t id) const {
    float s;
    verify_batch(1, x, &id, &s);
    return s;
}

void IndexProtectedSlerp::verify_batch(idx_t n, const float* x, const idx_t* ids, float* scores) const {
    check_vectors(n, x, "verify");
    FAISS_THROW_IF_NOT_MSG(n == 0 || (ids && scores), "pslerp: verify: null ids or scores");
    const std::vector<int64_t> rows = rows_of(n, ids);
    if (n == 0) return;
    const Prepared q = prepare(n, x);
    const size_t qf = store.layout.query_floats();
    int64_t clamped = 0;
    for (idx_t i = 0; i < n; ++i) {
        clamped += kernels::kernels().score_list(store.view(), q.kq.data() + i * qf, &rows[i], 1, scores + i);
    }
    clamped_ += clamped;
}

float IndexProtectedSlerp::verify_identity(const float* x, idx_t n_ids, const idx_t* ids) const {
    check_vectors(1, x, "verify");
    FAISS_THROW_IF_NOT_MSG(n_ids > 0 && ids, "pslerp: verify: an identity needs at least one id");
    const std::vector<int64_t> rows = rows_of(n_ids, ids);
    const Prepared q = prepare(1, x);
    std::vector<float> scores(n_ids);
    clamped_ += kernels::kernels().score_list(store.view(), q.kq.data(), rows.data(), n_ids, scores.data());
    return *std::max_element(scores.begin(), scores.end());
}

void IndexProtectedSlerp::rebuild_coarse() {
    if (!coarse) return;
    coarse->reset();
    constexpr int64_t kChunk = 4096;
    const int cd = coarse_d();
    std::vector<float> buf(kChunk * cd);
#pragma omp parallel
    {
        std::vector<float> e(d), k(params.key_dim()), w(params.groups);
        std::vector<uint8_t> m(d);
        for (int64_t r0 = 0; r0 < store.rows(); r0 += kChunk) {
            const int64_t r1 = std::min(store.rows(), r0 + kChunk);
#pragma omp for
            for (int64_t r = r0; r < r1; ++r) {
                store.template_row(params, r, e.data());
                store.key_row(params, r, k.data());
                store.mask_row(params, r, m.data());
                store.weight_row(params, r, w.data());
                pslerp::coarse_embedding(params, coarse_embedding, e.data(), k.data(), m.data(), w.data(),
                                 buf.data() + (r - r0) * cd);
            }
#pragma omp single
            {
                to_coarse_space(r1 - r0, buf.data());
                coarse->add(r1 - r0, buf.data());
            }
        }
    }
}

std::vector<float> IndexProtectedSlerp::coarse_vectors(const Protected& pr) {
    std::vector<float> v = embeddings(params, coarse_embedding, pr);
    if (coarse_embedding == CoarseEmbedding::kLinear && coarse_radius == 0.0f && pr.n > 0) {
        // First fit (train(), or the first add()). The mean is only worth subtracting when it is
        // estimated from enough entries; from a handful it would shrink the radius to nothing
        // and every later entry would fall outside it.
        constexpr int64_t kMinForShift = 256;
        const int cd = coarse_d();
        coarse_shift.assign(cd, 0.0f);
        if (pr.n >= kMinForShift) {
            std::vector<double> mean(cd, 0.0);
            for (int64_t i = 0; i < pr.n; ++i) {
                for (int j = 0; j < cd; ++j) mean[j] += v[i * cd + j];
            }
            for (int j = 0; j < cd; ++j) coarse_shift[j] = static_cast<float>(mean[j] / double(pr.n));
        }
        double r2 = 0;
        for (int64_t i = 0; i < pr.n; ++i) {
            double s = 0;
            for (int j = 0; j < cd; ++j) s += std::pow(double(v[i * cd + j]) - coarse_shift[j], 2);
            r2 = std::max(r2, s);
        }
        // Head room for later entries (more without a shift: fewer samples); an entry beyond it
        // keeps its own norm, a slight distortion of the order for that entry only.
        const double room = pr.n >= kMinForShift ? 1.25 : 2.0;
        coarse_radius = static_cast<float>(room * std::sqrt(r2) + 1e-6);
    }
    to_coarse_space(pr.n, v.data());
    return v;
}

void IndexProtectedSlerp::to_coarse_space(int64_t n, float* v) const {
    if (coarse_embedding != CoarseEmbedding::kLinear) return;
    const int cd = coarse_d(), free_coord = params.dim() + 1;
    const double r2 = double(coarse_radius) * coarse_radius;
#pragma omp parallel for if (n > 4096)
    for (int64_t i = 0; i < n; ++i) {
        float* x = v + i * cd;
        double s = 0;
        for (int j = 0; j < cd; ++j) {
            x[j] -= coarse_shift[j];
            s += double(x[j]) * x[j];
        }
        x[free_coord] = static_cast<float>(std::sqrt(std::max(r2 - s, 0.0)));
    }
}

void IndexProtectedSlerp::compact() {
    store.compact();
    id_to_row_.clear();
    for (int64_t r = 0; r < store.rows(); ++r) id_to_row_.emplace(store.ids[r], r);
    rebuild_coarse();
}

void IndexProtectedSlerp::set_seed(uint64_t seed) {
    rng_ = RandomSource(seed);
    seed_ = seed;
}

double IndexProtectedSlerp::coarse_bytes_per_entry() const {
    if (!coarse || ntotal == 0) return 0.0;
    faiss::VectorIOWriter w;
    faiss::write_index(coarse.get(), &w);
    return double(w.data.size()) / double(store.rows());
}

void IndexProtectedSlerp::rebuild_after_load(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id) {
    FAISS_THROW_IF_NOT_MSG(store.consistent(), "pslerp: inconsistent storage sizes");
    id_to_row_.clear();
    next_id_ = std::max<idx_t>(next_id, 0);
    ntotal = 0;
    for (int64_t r = 0; r < store.rows(); ++r) {
        next_id_ = std::max(next_id_, store.ids[r] + 1);
        if (store.removed[r]) continue;
        FAISS_THROW_IF_NOT_FMT(id_to_row_.emplace(store.ids[r], r).second, "pslerp: duplicate id %ld in storage",
                               long(store.ids[r]));
        ++ntotal;
    }
    if (coarse) {
        FAISS_THROW_IF_NOT_MSG(coarse->d == coarse_d() && coarse->ntotal == store.rows(),
                               "pslerp: coarse index does not match the stored entries");
    }
    streams_used_ = streams_used;
    if (seed) {
        set_seed(*seed);
    } else {
        rng_ = RandomSource();
        seed_.reset();
    }
    is_trained = !coarse || coarse->is_trained;
}

}  // namespace pslerp
