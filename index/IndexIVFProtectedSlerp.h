// IndexIVFProtectedSlerp: an IVF whose inverted lists hold only protected entries — the
// scalable search path over protected galleries.
//
// An entry's cell is chosen at enrolment from its centred, group-normalised raw feature by
// the quantizer (any FAISS index, trained by k-means in train(): IVF1024 = flat, IVF65536_HNSW32
// = HNSW over the centroids). The list then stores only the protected entry — template, keys,
// mask and per-group constants, one code of kernels::code_layout() — and its id. A query
// probes its nprobe nearest cells with its own centred, group-normalised feature and scores
// their members exactly with the closed-form kernels (the InvertedListScanner below). With
// nprobe = nlist it returns exactly what the exhaustive IndexProtectedSlerp returns.
//
// What a stored entry reveals beyond its protected template is its cell: the centroid is an
// average of training features and so correlates with the raw feature (measured in README
// "Security"). The raw feature itself is never stored. Codes are not decodable: sa_decode,
// reconstruct and friends refuse.
//
// Guarantees:
// - Thread safety: every method locks the index (index/ProtectedIndex.h): search,
//   range_search, verify*, contains, imbalance, encode_vectors, sa_encode and
//   search_preassigned run concurrently; train, add, add_with_ids, remove_ids, reset,
//   merge_from (both indexes), copy_subset_to (the target) and set_seed hold the lock alone;
//   neither side waits forever. search_preassigned and range_search_preassigned take probes
//   already centred and group-normalised; FAISS 1.7.3 does not make the latter virtual, so it
//   cannot lock: hold lock_shared() around it.
// - Exceptions: faiss::FaissException naming the problem (dimension, k <= 0, unknown or
//   duplicate id, untrained); NaN or infinite values and zero groups throw its subclass
//   InvalidInputError. A throwing call leaves the index as it was.
// - Search parameters: faiss::SearchParametersIVF (nprobe, max_codes, IDSelector).
// - Ids are external int64 ids, unique in the index (a hash-table direct map finds an entry
//   by id for verify and remove_ids).
#pragma once

#include <memory>
#include <vector>

#include <faiss/IndexIVF.h>

#include "index/ProtectedIndex.h"

namespace pslerp {

/// nprobe used when the caller gives none: about 3% of the lists (nlist / 32, at least 8). On
/// structured 512-D data (the benchmark's target) it keeps >= 0.98x the exhaustive rank-1;
/// on isotropic data, where identities have no neighbourhood structure for any IVF to use,
/// it does not (bench/RESULTS.md gives both).
size_t default_nprobe(size_t nlist);

struct IndexIVFProtectedSlerp : faiss::IndexIVF, ProtectedIndex {
    IndexIVFProtectedSlerp();
    /// @param quantizer  index of dimension p.dim() over the centroids, L2 metric; ownership
    ///                   is taken (own_fields)
    /// @param nlist      number of lists
    IndexIVFProtectedSlerp(std::unique_ptr<faiss::Index> quantizer, size_t nlist, const Params& p);
    ~IndexIVFProtectedSlerp() override;

    /// Learns the centring, then the quantizer's centroids by k-means on the centred,
    /// group-normalised features x (n * d). Train on representative features, preferably not
    /// the ones enrolled later: a centroid is an average of its training features.
    void train(idx_t n, const float* x) override;
    void add(idx_t n, const float* x) override;
    /// @param xids  n external ids; ids already present, or repeated in xids, are rejected
    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;
    /// Refuses: an entry's list comes from its centred feature, which add_with_ids computes.
    void add_core(idx_t n, const float* x, const idx_t* xids, const idx_t* precomputed_idx) override;
    /// @param x  n raw probes (n * d); params: SearchParametersIVF or null (nprobe of the index).
    /// Lists are scanned list by list for all the queries probing them, in parallel over lists
    /// (with max_codes set, FAISS's query-by-query scan instead).
    void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                const faiss::SearchParameters* params = nullptr) const override;
    /// Every entry of the probed lists with score >= radius, best first per query (equal
    /// scores by id).
    void range_search(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                      const faiss::SearchParameters* params = nullptr) const override;
    /// FAISS's scan of given lists, under the shared lock; x must be centred and
    /// group-normalised (search() does that).
    void search_preassigned(idx_t n, const float* x, idx_t k, const idx_t* assign, const float* centroid_dis,
                            float* distances, idx_t* labels, bool store_pairs,
                            const faiss::IVFSearchParameters* params = nullptr,
                            faiss::IndexIVFStats* stats = nullptr) const override;
    /// Removes the selected ids (any IDSelector); returns how many were removed.
    size_t remove_ids(const faiss::IDSelector& sel) override;
    void reset() override;

    /// Protects n raw features (centred here) with fresh keys into codes; list_nos are not
    /// used except to prefix them when include_listno.
    void encode_vectors(idx_t n, const float* x, const idx_t* list_nos, uint8_t* codes,
                        bool include_listno = false) const override;
    /// Codes with their list numbers, the lists chosen as add() chooses them (from the centred,
    /// group-normalised features).
    void sa_encode(idx_t n, const float* x, uint8_t* bytes) const override;
    /// Scans lists with the closed-form kernels; the query given to set_query must be
    /// centred and group-normalised (search() does that).
    faiss::InvertedListScanner* get_InvertedListScanner(bool store_pairs = false,
                                                        const faiss::IDSelector* sel = nullptr) const override;

    /// Protected codes cannot be decoded or replaced from outside: these refuse.
    void reconstruct(idx_t key, float* recons) const override;
    void reconstruct_n(idx_t i0, idx_t ni, float* recons) const override;
    void reconstruct_from_offset(int64_t list_no, int64_t offset, float* recons) const override;
    void sa_decode(idx_t n, const uint8_t* bytes, float* x) const override;
    void update_vectors(int nv, const idx_t* idx, const float* v) override;

    /// Moves every entry of `other` (same parameters, centring and centroids) into this index;
    /// ids are kept (add_id must be 0) and must not collide.
    void merge_from(faiss::Index& other, idx_t add_id) override;
    /// Copies a subset of the entries to `other` (FAISS subset types 0, 1, 2); its ids must not
    /// collide with other's.
    void copy_subset_to(faiss::IndexIVF& other, int subset_type, idx_t a1, idx_t a2) const override;

    size_t bytes_per_entry() const override { return code_size + sizeof(idx_t); }
    /// FAISS's imbalance factor of the list sizes: nlist * sum(size^2) / ntotal^2 (1 = balanced).
    double imbalance() const;
    /// Rebuilds the direct map after loading lists; checks ids are unique.
    void rebuild_after_load(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id);

  protected:
    bool has_id(idx_t id) const override;
    void add_locked(idx_t n, const float* x, const idx_t* xids) override;
    void range_search_locked(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                             const faiss::SearchParameters* params) const override;
    int64_t score_ids(const float* kq, idx_t n, const idx_t* ids, float* out) const override;

  private:
    /// pr's entries as n codes (normalised as Params::norm asks), one after another.
    std::vector<uint8_t> encode_codes(const Protected& pr) const;
    void encode_vectors_locked(idx_t n, const float* x, const idx_t* list_nos, uint8_t* codes,
                               bool include_listno) const;
    /// FAISS's query-by-query search of centred, group-normalised probes xn (honours max_codes).
    void search_by_query(idx_t n, const float* xn, idx_t k, float* distances, idx_t* labels,
                         const faiss::SearchParametersIVF* sp) const;
    /// Which queries probe which list (CSR over lists), and the lists worth scanning.
    struct ListPlan {
        std::vector<size_t> start;   ///< nlist + 1 offsets into members
        std::vector<idx_t> members;  ///< query numbers, list by list
        std::vector<size_t> busy;    ///< lists with queries and entries
        int threads = 1;
        idx_t queries = 0;
    };
    ListPlan plan_lists(idx_t n, const float* xn, const faiss::SearchParametersIVF* sp) const;
    /// Scores each planned list's codes for all the queries that probe it (up to 32 per kernel
    /// call: each code is loaded once for them), lists in parallel; calls
    /// visit(thread, query, score, id) for every pair the selector lets through.
    template <typename Visit>
    void scan_lists(const ListPlan& plan, const float* xn, const faiss::IDSelector* sel, Visit&& visit) const;
    /// Batched search of centred, group-normalised probes xn through scan_lists.
    void search_lists(idx_t n, const float* xn, idx_t k, float* distances, idx_t* labels,
                      const faiss::SearchParametersIVF* sp) const;
    const faiss::SearchParametersIVF* ivf_params(const faiss::SearchParameters* p, const char* what) const;
    void check_compatible(const IndexIVFProtectedSlerp& other) const;
};

}  // namespace pslerp
