// IndexProtectedSlerp: a FAISS index over protected face templates (DESIGN section 3).
//
// add() takes raw features (dimension d = G * group_dim), centres them (when trained),
// protects them with fresh keys and drop masks (plugin/protect.h) and stores only the
// protected template, key, mask and per-group constants. search() scores raw probes with each
// candidate's own key and mask through the closed-form kernels (index/kernels), either over
// every entry (no coarse index) or over a shortlist of k * k_factor candidates that a coarse
// FAISS index built over the protected templates returns for the probe. Scores are inner
// products: higher is better; missing results are padded with label -1 and score -inf.
//
// Guarantees:
// - Thread safety: const methods (search, range_search, verify, ...) may run concurrently;
//   add, add_with_ids, remove_ids, train, reset, compact and set_seed need exclusive access.
// - Exceptions: bad input throws faiss::FaissException with a message naming the problem
//   (dimension, NaN, zero group, k <= 0, unknown or duplicate id); a throwing call leaves the
//   index as it was.
// - Raw features and keys are never logged. Keys come from the OS generator unless a test
//   calls set_seed().
// - Files: index/index_io.h writes one versioned, checksummed file; see there.
#pragma once

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <optional>
#include <vector>

#include <faiss/Index.h>

#include "absl/container/flat_hash_map.h"
#include "index/storage.h"
#include "plugin/params.h"
#include "plugin/random.h"
#include "plugin/scheme.h"

namespace pslerp {

using idx_t = faiss::Index::idx_t;

/// Per-call search options. Fields left at 0 take the index's defaults.
struct SearchParametersProtectedSlerp : faiss::SearchParameters {
    int k_factor = 0;    ///< shortlist size is k * k_factor (coarse search only)
    int nprobe = 0;      ///< IVF coarse index: lists probed
    int efSearch = 0;    ///< HNSW coarse index: candidate queue size (set on the object, see DESIGN)
    int range_shortlist = 0;  ///< range_search with a coarse index: candidates re-scored per query
    /// Passed to the coarse index as they are (overrides nprobe / efSearch given above).
    const faiss::SearchParameters* coarse_params = nullptr;
};

struct IndexProtectedSlerp : faiss::Index {
    /// Parameters of the protection scheme.
    Params params;
    /// Feature centring learned by train(); untrained = none.
    Centering centering;
    /// Learn a PCA rotation with the centring (train()).
    bool train_pca = false;
    /// What the coarse index holds of each entry (plugin/scheme.h): the linearised score
    /// (default), the protected template, or the opt-in identity embedding.
    CoarseEmbedding coarse_embedding = CoarseEmbedding::kLinear;
    /// Optional coarse index over the protected entries' embeddings (dimension coarse_d());
    /// nullptr = exhaustive. Its labels are storage rows.
    std::unique_ptr<faiss::Index> coarse;
    /// Linearised embedding only: mean embedding subtracted before the coarse index (changes
    /// every query's scores by the same amount, so not the ranking) ...
    std::vector<float> coarse_shift;
    /// ... and the radius R: the free coordinate gets sqrt(R^2 - |v|^2) so that every entry has
    /// norm R and inner-product search becomes nearest-neighbour search, which HNSW and IVF
    /// are built for. 0 until fitted (train(), or the first add()).
    float coarse_radius = 0.0f;
    /// Default shortlist factor of coarse search.
    int k_factor = 10;
    /// Default candidates per query of range_search with a coarse index.
    int range_shortlist = 1000;
    /// Protected entries (templates, keys, masks, constants, ids, tombstones).
    EntryStorage store;

    IndexProtectedSlerp();
    /// @param p       scheme parameters; d = p.groups * p.group_dim
    /// @param coarse  optional coarse index of dimension coarse_dim(p, embedding), empty,
    ///                inner-product metric (ownership taken)
    explicit IndexProtectedSlerp(const Params& p, std::unique_ptr<faiss::Index> coarse = nullptr,
                                 CoarseEmbedding embedding = CoarseEmbedding::kLinear);
    /// Dimension of the coarse index's vectors.
    int coarse_d() const { return coarse_dim(params, coarse_embedding); }
    /// Metric the coarse index must use: L2 for the linearised embedding (its entries all have
    /// norm coarse_radius, so L2 order is inner-product order), inner product for the template
    /// and identity embeddings.
    static faiss::MetricType coarse_metric(CoarseEmbedding embedding) {
        return embedding == CoarseEmbedding::kLinear ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
    }
    ~IndexProtectedSlerp() override;

    /// Learns the centring from representative raw features x (n * d), then trains the coarse
    /// index (if any) on their protected templates. Only on an empty index.
    void train(idx_t n, const float* x) override;
    /// Adds n raw features with ids following the largest id so far.
    void add(idx_t n, const float* x) override;
    /// @param xids  n external ids; ids already present, or repeated in xids, are rejected
    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;
    /// @param x          n raw probes, size n * d
    /// @param distances  n * k scores, best first
    /// @param labels     n * k external ids
    void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                const faiss::SearchParameters* params = nullptr) const override;
    /// Every entry with score >= radius.
    void range_search(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                      const faiss::SearchParameters* params = nullptr) const override;
    /// Tombstones the selected ids; returns how many were removed. compact() reclaims space;
    /// it runs by itself once tombstones are the majority of >= 1024 rows (rebuilding the
    /// coarse index from the stored entries).
    size_t remove_ids(const faiss::IDSelector& sel) override;
    void reset() override;

    /// 1:1 score of raw probe x (d floats) against the entry with external id `id`.
    float verify(const float* x, idx_t id) const;
    /// 1:1 against one identity enrolled several times: the best score of probe x (d floats)
    /// over the entries ids[0..n_ids).
    float verify_identity(const float* x, idx_t n_ids, const idx_t* ids) const;
    /// Scores probe i against entry ids[i] (n probes).
    void verify_batch(idx_t n, const float* x, const idx_t* ids, float* scores) const;
    /// Exhaustive (exact) search whatever the coarse index: the oracle of coarse search.
    void search_exhaustive(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels) const;

    /// Drops removed rows and rebuilds the coarse index from the stored templates.
    void compact();
    /// Makes keys, masks and fills reproducible (tests and benchmarks only).
    void set_seed(uint64_t seed);
    /// True if an entry with this external id is present.
    bool contains(idx_t id) const { return id_to_row_.contains(id); }
    /// Bytes per entry of the protected storage (without the coarse index).
    size_t storage_bytes_per_entry() const { return store.bytes_per_row(); }
    /// Bytes per entry of the coarse index (its serialised size / entries), 0 without one.
    double coarse_bytes_per_entry() const;
    /// Probe-key cosines clamped as antipodal since creation (DESIGN section 1 step 3).
    int64_t clamped_count() const { return clamped_.load(); }
    /// Random streams consumed so far (part of the saved state for seeded sources).
    uint64_t streams_used() const { return streams_used_; }
    /// Id that add() gives next (after the largest id ever added, removed ones included).
    idx_t next_id() const { return next_id_; }
    /// Restores state after loading storage from a file; checks consistency. next_id is raised
    /// to past the largest stored id if needed.
    void rebuild_after_load(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id = 0);
    std::optional<uint64_t> seed() const { return seed_; }

  private:
    struct Prepared;
    Prepared prepare(idx_t n, const float* x) const;
    void check_vectors(idx_t n, const float* x, const char* what) const;
    void exhaustive(idx_t n, const Prepared& q, idx_t k, float* distances, idx_t* labels) const;
    void search_coarse(idx_t n, const Prepared& q, idx_t k, float* distances, idx_t* labels,
                       const SearchParametersProtectedSlerp* sp) const;
    void coarse_shortlist(idx_t n, const Prepared& q, idx_t kk, std::vector<idx_t>& rows,
                          const SearchParametersProtectedSlerp* sp) const;
    void rebuild_coarse();
    /// Storage rows of n external ids; throws on an unknown id.
    std::vector<int64_t> rows_of(idx_t n, const idx_t* ids) const;
    /// Embeddings of protected entries moved into the coarse index's space (fits the shift and
    /// radius on the first call).
    std::vector<float> coarse_vectors(const Protected& pr);
    void to_coarse_space(int64_t n, float* v) const;

    RandomSource rng_;
    std::optional<uint64_t> seed_;
    uint64_t streams_used_ = 0;
    idx_t next_id_ = 0;
    absl::flat_hash_map<idx_t, int64_t> id_to_row_;
    mutable std::atomic<int64_t> clamped_{0};
    mutable std::shared_mutex coarse_mutex_;  // searches that change HNSW efSearch are exclusive
};

}  // namespace pslerp
