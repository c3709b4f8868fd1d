// IndexProtectedSlerp: the exhaustive FAISS index over protected face templates, and the
// oracle of the IVF (docs: README "Security", index/IndexIVFProtectedSlerp.h).
//
// add() takes raw features (dimension d = G * group_dim), centres them (when trained),
// protects them with fresh keys and drop masks (plugin/protect.h) and stores only the
// protected template, key, mask and per-group constants. search() scores raw probes against
// every entry with each entry's own key and mask through the closed-form kernels
// (index/kernels). Scores are inner products: higher is better; missing results are padded
// with label -1 and score -inf.
//
// Guarantees:
// - Thread safety: every method locks the index (index/ProtectedIndex.h): search,
//   range_search, verify* and contains run concurrently; train, add, add_with_ids,
//   remove_ids, reset, compact and set_seed hold the lock alone; neither side waits forever.
// - Exceptions: bad input throws faiss::FaissException with a message naming the problem
//   (dimension, k <= 0, unknown or duplicate id); NaN or infinite values and zero groups throw
//   its subclass InvalidInputError. A throwing call leaves the index as it was.
// - Raw features and keys are never logged. Keys come from the OS generator unless a test
//   calls set_seed() on this object (a loaded index records the file's seed but does not
//   reuse it).
// - Search parameters: a plain faiss::SearchParameters whose IDSelector restricts the search;
//   IVF parameters (nprobe) are refused.
// - Files: index/index_io.h writes one versioned, checksummed file; see there.
#pragma once

#include <optional>
#include <vector>

#include <faiss/Index.h>

#include "absl/container/flat_hash_map.h"
#include "index/ProtectedIndex.h"
#include "index/storage.h"

namespace pslerp {

struct IndexProtectedSlerp : faiss::Index, ProtectedIndex {
    /// Protected entries (templates, keys, masks, constants, ids, tombstones).
    EntryStorage store;

    IndexProtectedSlerp();
    /// @param p  scheme parameters; d = p.groups * p.group_dim
    explicit IndexProtectedSlerp(const Params& p);
    ~IndexProtectedSlerp() override;

    /// Learns the centring from representative raw features x (n * d). Only on an empty index.
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
    /// Every entry with score >= radius, best first per query (equal scores by id).
    void range_search(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                      const faiss::SearchParameters* params = nullptr) const override;
    /// Tombstones the selected ids; returns how many were removed. compact() reclaims space;
    /// it runs by itself once tombstones are the majority of >= 1024 rows.
    size_t remove_ids(const faiss::IDSelector& sel) override;
    void reset() override;
    /// Protected codes cannot be decoded: these refuse.
    void reconstruct(idx_t key, float* recons) const override;

    /// Drops removed rows.
    void compact();
    size_t bytes_per_entry() const override { return store.bytes_per_row(); }
    /// Restores state after loading storage from a file; checks consistency. next_id is raised
    /// to past the largest stored id if needed.
    void rebuild_after_load(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id = 0);

  protected:
    bool has_id(idx_t id) const override { return id_to_row_.contains(id); }
    void add_locked(idx_t n, const float* x, const idx_t* xids) override;
    void range_search_locked(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                             const faiss::SearchParameters* params) const override;
    int64_t score_ids(const float* kq, idx_t n, const idx_t* ids, float* out) const override;

  private:
    void compact_locked();
    void exhaustive(idx_t n, const Prepared& q, idx_t k, float* distances, idx_t* labels,
                    const faiss::IDSelector* sel) const;

    absl::flat_hash_map<idx_t, int64_t> id_to_row_;
};

}  // namespace pslerp
