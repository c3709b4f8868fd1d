#include "index/IndexIVFProtectedSlerp.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <type_traits>
#include <typeinfo>

#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>

#include "index/storage.h"
#include "index/topk.h"

namespace pslerp {

namespace {

constexpr size_t kScanBlock = 256;   // codes scored per kernel call
constexpr size_t kQueryChunk = 256;  // queries per kernel call (batched search; kernels::score_block_into)

size_t code_size_of(const Params& p) {
    return kernels::code_layout(layout_of(p)).code_size;
}

// Scores one prepared query against the codes of one list with the kernels of
// index/kernels: the same closed form, in the same arithmetic, as the exhaustive index.
struct Scanner : faiss::InvertedListScanner {
    const ProtectedIndex& ix;
    std::atomic<int64_t>& clamped_total;
    std::vector<float> kq, t;
    mutable std::vector<float> scores;
    mutable int64_t clamped = 0;

    Scanner(const ProtectedIndex& index, std::atomic<int64_t>& clamped_counter, size_t code_bytes, bool store_pairs,
            const faiss::IDSelector* sel)
            : faiss::InvertedListScanner(store_pairs, sel),
              ix(index),
              clamped_total(clamped_counter),
              kq(index.layout.query_floats()),
              t(index.params.groups),
              scores(kScanBlock) {
        keep_max = true;  // inner-product scores: FAISS 1.7.3 does not set this from the metric
        code_size = code_bytes;
    }
    ~Scanner() override { clamped_total += clamped; }

    void set_query(const float* xn) override {
        probe_t(ix.params, xn, t.data());
        kernels::prepare_query(ix.layout, xn, t.data(), kq.data());
    }
    void set_list(idx_t list, float) override { list_no = list; }

    float distance_to_code(const uint8_t* code) const override {
        float s;
        clamped += kernels::kernels().score_range(kernels::code_entries(ix.layout, code), kq.data(), 1, 0, 1, &s, 1);
        return s;
    }

    // Scores the codes block by block, then hands each kept (score, id) to `keep`.
    template <typename Keep>
    void scan(size_t n, const uint8_t* codes, const idx_t* ids, Keep&& keep) const {
        const kernels::KernelTable& K = kernels::kernels();
        const kernels::Entries E = kernels::code_entries(ix.layout, codes);
        for (size_t j0 = 0; j0 < n; j0 += kScanBlock) {
            const size_t j1 = std::min(n, j0 + kScanBlock);
            clamped += K.score_range(E, kq.data(), 1, int64_t(j0), int64_t(j1), scores.data(), int64_t(kScanBlock));
            for (size_t j = j0; j < j1; ++j) {
                if (sel && !sel->is_member(ids[j])) continue;
                keep(scores[j - j0], store_pairs ? idx_t(faiss::lo_build(list_no, j)) : ids[j]);
            }
        }
    }

    size_t scan_codes(size_t n, const uint8_t* codes, const idx_t* ids, float* simi, idx_t* idxi,
                      size_t k) const override {
        size_t updates = 0;
        scan(n, codes, ids, [&](float s, idx_t id) {
            if (s > simi[0]) {
                faiss::minheap_replace_top(k, simi, idxi, s, id);
                ++updates;
            }
        });
        return updates;
    }

    void scan_codes_range(size_t n, const uint8_t* codes, const idx_t* ids, float radius,
                          faiss::RangeQueryResult& result) const override {
        scan(n, codes, ids, [&](float s, idx_t id) {
            if (s >= radius) result.add(s, id);
        });
    }
};

// FAISS's global IVF statistics, added to one search at a time: searches run concurrently
// under the shared lock.
// Coarse assignment of queries, one call at a time: the quantizer's batched search runs an
// OpenBLAS sgemm, and concurrent sgemm calls from several caller threads are not safe in every
// OpenBLAS build (a concurrent-search test once saw answers differ from sequential ones; the
// cause was not isolated). Cheap beside the list scan.
void coarse_search(const faiss::Index& quantizer, idx_t n, const float* x, idx_t np, float* distances, idx_t* keys,
                   const faiss::SearchParameters* params) {
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    quantizer.search(n, x, np, distances, keys, params);
}

void add_stats(const faiss::IndexIVFStats& s) {
    static std::mutex m;
    std::lock_guard<std::mutex> guard(m);
    faiss::indexIVF_stats.add(s);
}

// Checked before faiss::IndexIVF's constructor reads it.
faiss::Index* checked_quantizer(faiss::Index* q, size_t nlist, const Params& p) {
    FAISS_THROW_IF_NOT_MSG(q, "pslerp: IVF: the quantizer is null");
    FAISS_THROW_IF_NOT_FMT(q->d == p.dim(), "pslerp: IVF: the quantizer has dimension %d, expected %d", int(q->d),
                           p.dim());
    FAISS_THROW_IF_NOT_MSG(q->metric_type == faiss::METRIC_L2, "pslerp: IVF: the quantizer must use the L2 metric");
    // The kinds index files can hold (index_io checks them on load): flat, or HNSW over flat.
    const bool flat = typeid(*q) == typeid(faiss::IndexFlatL2) || typeid(*q) == typeid(faiss::IndexFlat);
    FAISS_THROW_IF_NOT_MSG(flat || typeid(*q) == typeid(faiss::IndexHNSWFlat),
                           "pslerp: IVF: the quantizer must be a flat L2 index or an HNSW over one (IndexHNSWFlat)");
    FAISS_THROW_IF_NOT_FMT(nlist >= 1 && nlist <= (size_t(1) << 31), "pslerp: IVF: nlist must be in [1, 2^31], got %zu",
                           nlist);
    return q;
}

// One thread's scores of one list to visit(thread, query, score, id): the list's entry j0 + jj
// against query queries[q0 + qi] at s[jj * es + qi * qs], entries outside the selector skipped
// (at namespace scope: clang 14 does not compile a local class inside an OpenMP region).
template <typename Visit>
struct ListSink final : kernels::ScoreSink {
    Visit& visit;
    const faiss::IDSelector* sel;
    int tid;
    const idx_t* ids = nullptr;      ///< the list's ids
    const idx_t* queries = nullptr;  ///< the chunk's query numbers
    ListSink(Visit& v, const faiss::IDSelector* s, int t) : visit(v), sel(s), tid(t) {}
    void take(int64_t q0, int64_t nq, int64_t j0, int64_t nj, const float* s, int64_t es, int64_t qs) override {
        for (int64_t jj = 0; jj < nj; ++jj) {
            const idx_t id = ids[j0 + jj];
            if (sel && !sel->is_member(id)) continue;
            for (int64_t qi = 0; qi < nq; ++qi) visit(tid, queries[q0 + qi], s[jj * es + qi * qs], id);
        }
    }
};

}  // namespace

size_t default_nprobe(size_t nlist) {
    return std::min(nlist, std::max<size_t>(8, (nlist + 31) / 32));
}

IndexIVFProtectedSlerp::IndexIVFProtectedSlerp() : ProtectedIndex(Params()) {
    code_size = code_size_of(params);
    d = params.dim();
    metric_type = faiss::METRIC_INNER_PRODUCT;
}

IndexIVFProtectedSlerp::IndexIVFProtectedSlerp(std::unique_ptr<faiss::Index> q, size_t nl, const Params& p)
        : faiss::IndexIVF(checked_quantizer(q.get(), nl, p), p.dim(), nl, code_size_of(p),
                          faiss::METRIC_INNER_PRODUCT),
          ProtectedIndex(p) {
    q.release();
    own_fields = true;
    // An HNSW quantizer is filled with k-means centroids, as FAISS's own IVF<n>_HNSW<M> does.
    if (dynamic_cast<faiss::IndexHNSW*>(quantizer)) quantizer_trains_alone = 2;
    nprobe = default_nprobe(nl);
    set_direct_map_type(faiss::DirectMap::Hashtable);
}

IndexIVFProtectedSlerp::~IndexIVFProtectedSlerp() = default;

void IndexIVFProtectedSlerp::train(idx_t n, const float* x) {
    const auto lock = lock_exclusive();
    FAISS_THROW_IF_NOT_MSG(ntotal == 0, "pslerp: train: the index already holds entries; reset() first");
    FAISS_THROW_IF_NOT_FMT(n >= idx_t(nlist), "pslerp: train: %ld training features for %zu lists; give at least as "
                                              "many as lists (FAISS suggests 39 per list)",
                           long(n), nlist);
    Centering fitted = fit_centering(n, x);
    const Centering saved = centering;
    centering = std::move(fitted);
    try {
        const std::vector<float> xn = normalized_probes(n, x, "train: x");
        quantizer->reset();  // so that train_q1 trains again rather than keep old centroids
        train_q1(size_t(n), xn.data(), verbose, faiss::METRIC_L2);
    } catch (...) {
        centering = saved;
        throw;
    }
    cohort_from_training(n, x);
    is_trained = quantizer->is_trained && size_t(quantizer->ntotal) == nlist;
    FAISS_THROW_IF_NOT_MSG(is_trained, "pslerp: train: the quantizer did not end up with nlist centroids");
}

void IndexIVFProtectedSlerp::add(idx_t n, const float* x) {
    const auto lock = lock_exclusive();
    add_locked(n, x, nullptr);
}

void IndexIVFProtectedSlerp::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    FAISS_THROW_IF_NOT_MSG(n <= 0 || xids, "pslerp: add_with_ids: ids are null");
    const auto lock = lock_exclusive();
    add_locked(n, x, xids);
}

void IndexIVFProtectedSlerp::add_core(idx_t, const float*, const idx_t*, const idx_t*) {
    FAISS_THROW_MSG("pslerp: add_core: an entry's list comes from its centred feature: use add or add_with_ids");
}

void IndexIVFProtectedSlerp::add_locked(idx_t n, const float* x, const idx_t* xids) {
    check_vectors(n, x, "add");
    if (n == 0) return;
    FAISS_THROW_IF_NOT_MSG(is_trained, "pslerp: add: the IVF index needs train() first (centring and centroids)");
    const std::vector<idx_t> next = xids ? std::vector<idx_t>() : next_ids(n);
    if (!xids) xids = next.data();
    check_new_ids(n, xids);
    std::vector<float> xn;
    const Protected pr = protect_new(n, x, "add: x", &xn);
    std::vector<idx_t> lists(n);
    quantizer->assign(n, xn.data(), lists.data());
    for (idx_t i = 0; i < n; ++i) {
        FAISS_THROW_IF_NOT_FMT(lists[i] >= 0 && size_t(lists[i]) < nlist,
                               "pslerp: add: the quantizer gave list %ld for entry %ld", long(lists[i]), long(i));
    }
    const std::vector<uint8_t> codes = encode_codes(pr);
    for (idx_t i = 0; i < n; ++i) {
        const size_t offset = invlists->add_entry(lists[i], xids[i], codes.data() + size_t(i) * code_size);
        direct_map.add_single_id(xids[i], lists[i], offset);
    }
    note_added(n, xids);
    ntotal += n;
}

void IndexIVFProtectedSlerp::encode_vectors(idx_t n, const float* x, const idx_t* list_nos, uint8_t* codes,
                                            bool include_listno) const {
    const auto lock = lock_shared();
    encode_vectors_locked(n, x, list_nos, codes, include_listno);
}

void IndexIVFProtectedSlerp::sa_encode(idx_t n, const float* x, uint8_t* bytes) const {
    const auto lock = lock_shared();
    check_vectors(n, x, "sa_encode");
    FAISS_THROW_IF_NOT_MSG(is_trained, "pslerp: sa_encode: the IVF index needs train() first");
    if (n == 0) return;
    const std::vector<float> xn = normalized_probes(n, x, "sa_encode: x");
    std::vector<idx_t> lists(n);
    quantizer->assign(n, xn.data(), lists.data());
    encode_vectors_locked(n, x, lists.data(), bytes, true);
}

void IndexIVFProtectedSlerp::encode_vectors_locked(idx_t n, const float* x, const idx_t* list_nos, uint8_t* codes,
                                                   bool include_listno) const {
    check_vectors(n, x, "encode_vectors");
    if (n == 0) return;
    const Protected pr = protect_new(n, x, "encode_vectors: x");
    const std::vector<uint8_t> encoded = encode_codes(pr);
    const size_t prefix = include_listno ? coarse_code_size() : 0;
    for (idx_t i = 0; i < n; ++i) {
        uint8_t* out = codes + size_t(i) * (code_size + prefix);
        if (include_listno) encode_listno(list_nos[i], out);
        std::copy_n(encoded.data() + size_t(i) * code_size, code_size, out + prefix);
    }
}

std::vector<uint8_t> IndexIVFProtectedSlerp::encode_codes(const Protected& pr) const {
    const idx_t n = pr.n;
    // Floats: the buffer is float-aligned, and so is every code (code_size is a multiple of 4).
    std::vector<float> buf(size_t(n) * code_size / sizeof(float));
    uint8_t* codes = reinterpret_cast<uint8_t*>(buf.data());
#pragma omp parallel for if (n > 1024)
    for (idx_t i = 0; i < n; ++i) encode_code(params, layout, pr, i, codes + size_t(i) * code_size);
    const kernels::CodeLayout c = kernels::code_layout(layout);
    normalize_new(kernels::code_entries(layout, codes), n, buf.data() + c.weights_offset, buf.data() + c.score_offset);
    return std::vector<uint8_t>(codes, codes + size_t(n) * code_size);
}

const faiss::SearchParametersIVF* IndexIVFProtectedSlerp::ivf_params(const faiss::SearchParameters* p,
                                                                     const char* what) const {
    if (!p) return nullptr;
    const auto* ivf = dynamic_cast<const faiss::SearchParametersIVF*>(p);
    FAISS_THROW_IF_NOT_FMT(ivf, "pslerp: %s: the IVF index takes faiss::SearchParametersIVF (nprobe, max_codes, sel)",
                           what);
    FAISS_THROW_IF_NOT_FMT(ivf->nprobe >= 1, "pslerp: %s: nprobe must be >= 1", what);
    return ivf;
}

void IndexIVFProtectedSlerp::search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                                    const faiss::SearchParameters* params_in) const {
    check_vectors(n, x, "search");
    FAISS_THROW_IF_NOT_FMT(k > 0, "pslerp: search: k must be > 0, got %ld", long(k));
    const faiss::SearchParametersIVF* sp = ivf_params(params_in, "search");
    const auto lock = lock_shared();
    FAISS_THROW_IF_NOT_MSG(is_trained, "pslerp: search: the IVF index needs train() first");
    FAISS_THROW_IF_NOT_MSG(sp || nprobe >= 1, "pslerp: search: the index's nprobe must be >= 1");
    if (n == 0) return;
    const std::vector<float> xn = normalized_probes(n, x, "search: x");
    if (sp && sp->max_codes > 0) {
        search_by_query(n, xn.data(), k, distances, labels, sp);
        return;
    }
    search_lists(n, xn.data(), k, distances, labels, sp);
}

void IndexIVFProtectedSlerp::search_by_query(idx_t n, const float* xn, idx_t k, float* distances, idx_t* labels,
                                             const faiss::SearchParametersIVF* sp) const {
    // FAISS's IndexIVF::search, less its slicing (search_preassigned runs queries in
    // parallel), calling the base search_preassigned directly: the virtual one locks.
    const size_t np = std::min(nlist, sp ? sp->nprobe : nprobe);
    std::vector<idx_t> keys(size_t(n) * np);
    std::vector<float> coarse(size_t(n) * np);
    coarse_search(*quantizer, n, xn, idx_t(np), coarse.data(), keys.data(), sp ? sp->quantizer_params : nullptr);
    faiss::IndexIVFStats stats;
    faiss::IndexIVF::search_preassigned(n, xn, k, keys.data(), coarse.data(), distances, labels, false, sp, &stats);
    add_stats(stats);
    for (idx_t j = 0; j < n * k; ++j) {
        if (labels[j] < 0) distances[j] = kNoScore;  // FAISS pads with -FLT_MAX
    }
}

void IndexIVFProtectedSlerp::search_preassigned(idx_t n, const float* x, idx_t k, const idx_t* assign,
                                                const float* centroid_dis, float* distances, idx_t* labels,
                                                bool store_pairs, const faiss::IVFSearchParameters* params,
                                                faiss::IndexIVFStats* stats) const {
    const auto lock = lock_shared();
    faiss::IndexIVF::search_preassigned(n, x, k, assign, centroid_dis, distances, labels, store_pairs, params, stats);
}

IndexIVFProtectedSlerp::ListPlan IndexIVFProtectedSlerp::plan_lists(idx_t n, const float* xn,
                                                                     const faiss::SearchParametersIVF* sp) const {
    const size_t np = std::min(nlist, sp ? sp->nprobe : nprobe);
    std::vector<idx_t> keys(size_t(n) * np);
    {
        std::vector<float> coarse(size_t(n) * np);
        coarse_search(*quantizer, n, xn, idx_t(np), coarse.data(), keys.data(), sp ? sp->quantizer_params : nullptr);
    }
    // The queries of each list, contiguous (CSR), so that a list's codes are loaded once for
    // all of them, kQueryChunk at a time, as the exhaustive index shares each loaded entry.
    ListPlan plan;
    plan.queries = n;
    plan.start.assign(nlist + 1, 0);
    for (idx_t key : keys) {
        if (key >= 0) ++plan.start[size_t(key) + 1];
    }
    std::partial_sum(plan.start.begin(), plan.start.end(), plan.start.begin());
    plan.members.resize(plan.start[nlist]);
    {
        std::vector<size_t> fill(plan.start.begin(), plan.start.end() - 1);
        for (size_t j = 0; j < keys.size(); ++j) {
            if (keys[j] >= 0) plan.members[fill[size_t(keys[j])]++] = idx_t(j / np);
        }
    }
    for (size_t l = 0; l < nlist; ++l) {
        if (plan.start[l + 1] > plan.start[l] && invlists->list_size(l) > 0) plan.busy.push_back(l);
    }
    plan.threads = std::max(1, std::min<int>(omp_get_max_threads(), int(plan.busy.size())));
    return plan;
}

template <typename Visit>
void IndexIVFProtectedSlerp::scan_lists(const ListPlan& plan, const float* xn, const faiss::IDSelector* sel,
                                        Visit&& visit) const {
    const size_t qf = layout.query_floats();
    int64_t clamped = 0;
#pragma omp parallel num_threads(plan.threads) reduction(+ : clamped)
    {
        const int tid = omp_get_thread_num();
        std::vector<float> kq(kQueryChunk * qf), t(params.groups);
        ListSink<std::remove_reference_t<Visit>> sink(visit, sel, tid);
#pragma omp for schedule(dynamic)
        for (size_t b = 0; b < plan.busy.size(); ++b) {
            const size_t l = plan.busy[b], size = invlists->list_size(l);
            faiss::InvertedLists::ScopedCodes codes(invlists, l);
            faiss::InvertedLists::ScopedIds ids(invlists, l);
            const kernels::Entries E = kernels::code_entries(layout, codes.get());
            sink.ids = ids.get();
            for (size_t m0 = plan.start[l]; m0 < plan.start[l + 1]; m0 += kQueryChunk) {
                const size_t nq = std::min<size_t>(kQueryChunk, plan.start[l + 1] - m0);
                for (size_t qi = 0; qi < nq; ++qi) {
                    const float* q = xn + plan.members[m0 + qi] * d;
                    probe_t(params, q, t.data());
                    kernels::prepare_query(layout, q, t.data(), kq.data() + qi * qf);
                }
                sink.queries = plan.members.data() + m0;
                clamped += kernels::score_block_into(E, kq.data(), int64_t(nq), 0, int64_t(size), sink);
            }
        }
    }
    clamped_ += clamped;
    // FAISS's IVF statistics, as its own search keeps them (lists visited, codes scored).
    faiss::IndexIVFStats stats;
    for (size_t l : plan.busy) stats.ndis += (plan.start[l + 1] - plan.start[l]) * invlists->list_size(l);
    stats.nq = size_t(plan.queries);
    stats.nlist = plan.start[nlist];
    add_stats(stats);
}

void IndexIVFProtectedSlerp::search_lists(idx_t n, const float* xn, idx_t k, float* distances, idx_t* labels,
                                          const faiss::SearchParametersIVF* sp) const {
    const ListPlan plan = plan_lists(n, xn, sp);
    ThreadHeaps heaps(plan.threads, n, k);
    scan_lists(plan, xn, sp ? sp->sel : nullptr,
               [&](int tid, idx_t query, float score, idx_t id) { heaps.at(tid, query).push(score, id); });
#pragma omp parallel for if (n > 1)
    for (idx_t i = 0; i < n; ++i) heaps.merge(i, distances + i * k, labels + i * k);
}

void IndexIVFProtectedSlerp::range_search(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                                          const faiss::SearchParameters* params_in) const {
    const auto lock = lock_shared();
    range_search_locked(n, x, radius, result, params_in);
}

void IndexIVFProtectedSlerp::range_search_locked(idx_t n, const float* x, float radius,
                                                 faiss::RangeSearchResult* result,
                                                 const faiss::SearchParameters* params_in) const {
    check_vectors(n, x, "range_search");
    FAISS_THROW_IF_NOT_MSG(result, "pslerp: range_search: result is null");
    FAISS_THROW_IF_NOT_MSG(std::isfinite(radius), "pslerp: range_search: threshold must be finite");
    const faiss::SearchParametersIVF* sp = ivf_params(params_in, "range_search");
    FAISS_THROW_IF_NOT_MSG(is_trained, "pslerp: range_search: the IVF index needs train() first");
    FAISS_THROW_IF_NOT_MSG(sp || nprobe >= 1, "pslerp: range_search: the index's nprobe must be >= 1");
    if (n == 0) {
        result->do_allocation();
        return;
    }
    const std::vector<float> xn = normalized_probes(n, x, "range_search: x");
    if (sp && sp->max_codes > 0) {
        // FAISS's IndexIVF::range_search (honours max_codes), statistics under their own lock.
        const size_t np = std::min(nlist, sp->nprobe);
        std::vector<idx_t> keys(size_t(n) * np);
        std::vector<float> coarse(size_t(n) * np);
        coarse_search(*quantizer, n, xn.data(), idx_t(np), coarse.data(), keys.data(), sp->quantizer_params);
        faiss::IndexIVFStats stats;
        range_search_preassigned(n, xn.data(), radius, keys.data(), coarse.data(), result, false, sp, &stats);
        add_stats(stats);
        std::vector<std::pair<float, idx_t>> hits;
        for (idx_t i = 0; i < n; ++i) {
            const size_t b = result->lims[i], e = result->lims[i + 1];
            hits.clear();
            for (size_t j = b; j < e; ++j) hits.emplace_back(result->distances[j], result->labels[j]);
            std::sort(hits.begin(), hits.end(), best_first);
            for (size_t j = b; j < e; ++j) std::tie(result->distances[j], result->labels[j]) = hits[j - b];
        }
        return;
    }
    // Batched, list by list as search() does; hits kept per thread, merged per query.
    const ListPlan plan = plan_lists(n, xn.data(), sp);
    ThreadHits hits(plan.threads, n);
    scan_lists(plan, xn.data(), sp ? sp->sel : nullptr, [&](int tid, idx_t query, float score, idx_t id) {
        if (score >= radius) hits.add(tid, query, score, id);
    });
    hits.write(result);  // best first, equal scores by id
}

size_t IndexIVFProtectedSlerp::remove_ids(const faiss::IDSelector& sel) {
    const auto lock = lock_exclusive();
    // FAISS's hash-table direct map removes only an IDSelectorArray: list the members first.
    std::vector<idx_t> gone;
    for (const auto& [id, lo] : direct_map.hashtable) {
        if (sel.is_member(id)) gone.push_back(id);
    }
    if (gone.empty()) return 0;
    const faiss::IDSelectorArray members(gone.size(), gone.data());
    return faiss::IndexIVF::remove_ids(members);
}

void IndexIVFProtectedSlerp::reset() {
    const auto lock = lock_exclusive();
    faiss::IndexIVF::reset();
    next_id_ = 0;
}

faiss::InvertedListScanner* IndexIVFProtectedSlerp::get_InvertedListScanner(bool store_pairs,
                                                                            const faiss::IDSelector* sel) const {
    return new Scanner(*this, clamped_, code_size, store_pairs, sel);
}

void IndexIVFProtectedSlerp::reconstruct(idx_t, float*) const {
    FAISS_THROW_MSG("pslerp: reconstruct: protected entries cannot be decoded back to features");
}

void IndexIVFProtectedSlerp::reconstruct_n(idx_t, idx_t, float*) const {
    FAISS_THROW_MSG("pslerp: reconstruct: protected entries cannot be decoded back to features");
}

void IndexIVFProtectedSlerp::reconstruct_from_offset(int64_t, int64_t, float*) const {
    FAISS_THROW_MSG("pslerp: reconstruct: protected entries cannot be decoded back to features");
}

void IndexIVFProtectedSlerp::sa_decode(idx_t, const uint8_t*, float*) const {
    FAISS_THROW_MSG("pslerp: sa_decode: protected codes cannot be decoded back to features");
}

void IndexIVFProtectedSlerp::update_vectors(int, const idx_t*, const float*) {
    FAISS_THROW_MSG("pslerp: update_vectors: remove the ids and add them again (fresh keys)");
}

bool IndexIVFProtectedSlerp::has_id(idx_t id) const {
    return direct_map.hashtable.count(id) != 0;
}

int64_t IndexIVFProtectedSlerp::score_ids(const float* kq, idx_t n, const idx_t* ids, float* out) const {
    const kernels::KernelTable& K = kernels::kernels();
    int64_t clamped = 0;
    for (idx_t i = 0; i < n; ++i) {
        auto it = direct_map.hashtable.find(ids[i]);
        FAISS_THROW_IF_NOT_FMT(it != direct_map.hashtable.end(), "pslerp: verify: unknown id %ld", long(ids[i]));
        const idx_t list = faiss::lo_listno(it->second), offset = faiss::lo_offset(it->second);
        faiss::InvertedLists::ScopedCodes code(invlists, list, offset);
        clamped += K.score_range(kernels::code_entries(layout, code.get()), kq, 1, 0, 1, out + i, 1);
    }
    return clamped;
}

void IndexIVFProtectedSlerp::check_compatible(const IndexIVFProtectedSlerp& other) const {
    FAISS_THROW_IF_NOT_MSG(other.d == d && other.nlist == nlist && other.code_size == code_size,
                           "pslerp: merge: the indexes differ in dimension, nlist or code size");
    FAISS_THROW_IF_NOT_MSG(other.params.describe() == params.describe() && other.layout.shared_key == layout.shared_key,
                           "pslerp: merge: the indexes use different scheme parameters");
    FAISS_THROW_IF_NOT_MSG(other.centering.mean == centering.mean && other.centering.rotation == centering.rotation,
                           "pslerp: merge: the indexes use different centrings (train one, then copy it)");
    FAISS_THROW_IF_NOT_MSG(other.centering.same_frame(centering), "pslerp: merge: the indexes have different secret frames");
    FAISS_THROW_IF_NOT_MSG(other.quantizer->ntotal == quantizer->ntotal, "pslerp: merge: the quantizers differ");
    std::vector<float> a(d), b(d);
    for (idx_t c = 0; c < quantizer->ntotal; ++c) {
        quantizer->reconstruct(c, a.data());
        other.quantizer->reconstruct(c, b.data());
        FAISS_THROW_IF_NOT_MSG(a == b, "pslerp: merge: the indexes have different centroids (train one, then copy it)");
    }
}

void IndexIVFProtectedSlerp::merge_from(faiss::Index& other_index, idx_t add_id) {
    auto* other = dynamic_cast<IndexIVFProtectedSlerp*>(&other_index);
    FAISS_THROW_IF_NOT_MSG(other, "pslerp: merge: the other index is not an IndexIVFProtectedSlerp");
    FAISS_THROW_IF_NOT_MSG(other != this, "pslerp: merge: cannot merge an index into itself");
    FAISS_THROW_IF_NOT_MSG(add_id == 0, "pslerp: merge: ids are kept as they are (add_id must be 0)");
    // Both locks at once: a.merge_from(b) and b.merge_from(a) in two threads cannot deadlock.
    auto mine = lock_exclusive(std::defer_lock);
    auto theirs = other->lock_exclusive(std::defer_lock);
    std::lock(mine, theirs);
    check_compatible(*other);
    join_cohort(*other, "merge");
    for (const auto& [id, lo] : other->direct_map.hashtable) {
        FAISS_THROW_IF_NOT_FMT(!has_id(id), "pslerp: merge: id %ld is in both indexes", long(id));
    }
    for (size_t list = 0; list < nlist; ++list) {
        const size_t n = other->invlists->list_size(list);
        faiss::InvertedLists::ScopedCodes codes(other->invlists, list);
        faiss::InvertedLists::ScopedIds ids(other->invlists, list);
        for (size_t j = 0; j < n; ++j) {
            const size_t offset = invlists->add_entry(list, ids[j], codes.get() + j * code_size);
            direct_map.add_single_id(ids[j], list, offset);
            next_id_ = std::max(next_id_, ids[j] + 1);
        }
    }
    ntotal += other->ntotal;
    other->faiss::IndexIVF::reset();
}

void IndexIVFProtectedSlerp::copy_subset_to(faiss::IndexIVF& other_index, int subset_type, idx_t a1,
                                            idx_t a2) const {
    auto* other = dynamic_cast<IndexIVFProtectedSlerp*>(&other_index);
    FAISS_THROW_IF_NOT_MSG(other, "pslerp: copy_subset_to: the other index is not an IndexIVFProtectedSlerp");
    FAISS_THROW_IF_NOT_MSG(other != this, "pslerp: copy_subset_to: cannot copy an index into itself");
    // Checked before the target is touched: FAISS throws only once the target's map is off.
    FAISS_THROW_IF_NOT_FMT(subset_type == 0 || subset_type == 1 || subset_type == 2,
                           "pslerp: copy_subset_to: subset type %d is not one of 0, 1, 2", subset_type);
    FAISS_THROW_IF_NOT_MSG(subset_type != 1 || a1 > 0, "pslerp: copy_subset_to: subset type 1 needs a1 > 0");
    // This index is read, the target written: both locks at once, as in merge_from.
    auto mine = lock_shared(std::defer_lock);
    auto theirs = other->lock_exclusive(std::defer_lock);
    std::lock(mine, theirs);
    check_compatible(*other);
    if (subset_type == 2 && ntotal == 0) return;  // FAISS would divide by ntotal
    other->join_cohort(*this, "copy_subset_to");
    // FAISS copies without a direct map; rebuild it after, refusing ids the target holds.
    for (const auto& [id, lo] : direct_map.hashtable) {
        FAISS_THROW_IF_NOT_FMT(!other->has_id(id), "pslerp: copy_subset_to: id %ld is already in the target",
                               long(id));
    }
    other->direct_map.set_type(faiss::DirectMap::NoMap, other->invlists, other->ntotal);
    faiss::IndexIVF::copy_subset_to(*other, subset_type, a1, a2);
    other->direct_map.set_type(faiss::DirectMap::Hashtable, other->invlists, other->ntotal);
    for (const auto& [id, lo] : other->direct_map.hashtable) other->next_id_ = std::max(other->next_id_, id + 1);
}

double IndexIVFProtectedSlerp::imbalance() const {
    const auto lock = lock_shared();
    if (ntotal == 0) return 0.0;
    double sum2 = 0;
    for (size_t list = 0; list < nlist; ++list) {
        const double s = double(invlists->list_size(list));
        sum2 += s * s;
    }
    // FAISS's imbalance factor: nlist * sum(size^2) / ntotal^2 (1 when balanced).
    return sum2 * double(nlist) / (double(ntotal) * double(ntotal));
}

void IndexIVFProtectedSlerp::rebuild_after_load(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id) {
    const auto lock = lock_exclusive();
    size_t total = 0;
    for (size_t list = 0; list < nlist; ++list) total += invlists->list_size(list);
    direct_map.set_type(faiss::DirectMap::NoMap, invlists, 0);
    direct_map.set_type(faiss::DirectMap::Hashtable, invlists, total);
    idx_t largest = -1;
    FAISS_THROW_IF_NOT_FMT(direct_map.hashtable.size() == total, "pslerp: the lists hold %zu entries but only %zu "
                                                                 "distinct ids",
                           total, direct_map.hashtable.size());
    for (const auto& [id, lo] : direct_map.hashtable) {
        FAISS_THROW_IF_NOT_FMT(id >= 0, "pslerp: negative id %ld in the lists", long(id));
        largest = std::max(largest, id);
    }
    ntotal = idx_t(total);
    next_id_ = largest + 1;
    restore_state_locked(streams_used, seed, next_id);
}

}  // namespace pslerp
