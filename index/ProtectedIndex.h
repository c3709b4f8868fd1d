// What both protected FAISS indexes share — the exhaustive IndexProtectedSlerp and the IVF
// IndexIVFProtectedSlerp: the scheme's parameters, the feature centring, the key stream,
// probe preparation for the closed-form kernels, id checks and the 1:1 calls.
//
// It is a mixin beside faiss::Index (IndexIVFProtectedSlerp must derive from faiss::IndexIVF),
// so code that holds a faiss::Index reaches it with as_protected().
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include <faiss/Index.h>

#include "index/kernels/scan.h"
#include "plugin/params.h"
#include "plugin/protect.h"
#include "plugin/random.h"
#include "plugin/scheme.h"

namespace pslerp {

using idx_t = faiss::Index::idx_t;

class ProtectedIndex {
  public:
    /// Parameters of the protection scheme.
    Params params;
    /// Feature centring learned by train(); untrained = none.
    Centering centering;
    /// Learn a PCA rotation with the centring (train()).
    bool train_pca = false;
    /// The kernels' layout of one entry (from params).
    kernels::Layout layout;

    explicit ProtectedIndex(const Params& p);
    virtual ~ProtectedIndex();

    /// The faiss::Index this is part of.
    faiss::Index& index();
    const faiss::Index& index() const;

    /// 1:1 score of raw probe x (d floats) against the entry with external id `id`.
    float verify(const float* x, idx_t id) const;
    /// Scores probe i against entry ids[i] (n probes, x is n * d floats).
    void verify_batch(idx_t n, const float* x, const idx_t* ids, float* scores) const;
    /// 1:1 against one identity enrolled several times: the best score of probe x (d floats)
    /// over the entries ids[0..n_ids).
    float verify_identity(const float* x, idx_t n_ids, const idx_t* ids) const;

    /// True if an entry with this external id is present.
    virtual bool contains(idx_t id) const = 0;
    /// Bytes stored per entry (protected entry and id).
    virtual size_t bytes_per_entry() const = 0;

    /// Makes keys, masks and fills reproducible (tests and benchmarks only).
    void set_seed(uint64_t seed);
    std::optional<uint64_t> seed() const { return seed_; }
    /// Random streams consumed so far (part of the saved state for seeded sources).
    uint64_t streams_used() const { return streams_used_.load(); }
    /// Id that add() gives next (after the largest id ever added, removed ones included).
    idx_t next_id() const { return next_id_; }
    /// Probe-key cosines clamped as antipodal since creation.
    int64_t clamped_count() const { return clamped_.load(); }
    /// Restores the key stream and id counter after loading a file.
    void restore_state(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id);

  protected:
    /// Probes ready for the kernels.
    struct Prepared {
        std::vector<float> xn;  ///< n * d centred, group-normalised probes
        std::vector<float> kq;  ///< n * layout.query_floats() kernel queries
    };
    /// Centres and normalises n raw probes (throws on NaN/Inf or a zero group).
    std::vector<float> normalized_probes(idx_t n, const float* x) const;
    Prepared prepare(idx_t n, const float* x) const;
    /// Checks n and x of a call named `what`.
    void check_vectors(idx_t n, const float* x, const char* what) const;
    /// Checks ids to add: not negative, not present, not repeated in the batch.
    void check_new_ids(idx_t n, const idx_t* xids) const;
    /// Learns the centring from n raw features (kept only once the caller commits it).
    Centering fit_centering(idx_t n, const float* x) const;
    /// Centres and protects n raw features with fresh keys from the stream. With xn, also
    /// returns the centred, group-normalised features (for the IVF's assignment).
    Protected protect_new(idx_t n, const float* x, std::vector<float>* xn = nullptr) const;
    /// Records that ids were added (next_id).
    void note_added(idx_t n, const idx_t* xids);
    /// Kernel scores of one prepared query against the entries with ids[0..n); throws on an
    /// unknown id. Returns the clamped count.
    virtual int64_t score_ids(const float* kq, idx_t n, const idx_t* ids, float* out) const = 0;
    /// Throws naming the first unknown id.
    void check_known(idx_t n, const idx_t* ids, const char* what) const;

    mutable std::atomic<int64_t> clamped_{0};
    idx_t next_id_ = 0;

  private:
    RandomSource rng_;
    std::optional<uint64_t> seed_;
    mutable std::atomic<uint64_t> streams_used_{0};
};

/// The protected side of a pslerp index; nullptr when `index` is not one.
ProtectedIndex* as_protected(faiss::Index* index);
const ProtectedIndex* as_protected(const faiss::Index* index);
/// The same, throwing faiss::FaissException when `index` is not a pslerp index.
ProtectedIndex& protected_of(faiss::Index& index);
const ProtectedIndex& protected_of(const faiss::Index& index);

}  // namespace pslerp
