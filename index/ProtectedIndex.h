// What both protected FAISS indexes share — the exhaustive IndexProtectedSlerp and the IVF
// IndexIVFProtectedSlerp: the scheme's parameters, the feature centring, the key stream,
// probe preparation for the closed-form kernels, id checks, the 1:1 calls and the lock.
//
// It is a mixin beside faiss::Index (IndexIVFProtectedSlerp must derive from faiss::IndexIVF),
// so code that holds a faiss::Index reaches it with as_protected().
//
// Thread safety (both indexes): every public method takes the index's own reader-writer lock,
// so any mix of calls from any threads is safe.
// - Reading calls share it and run concurrently: search, range_search, verify, verify_batch,
//   verify_identity, contains, imbalance, encode_vectors / sa_encode, search_preassigned, and
//   saving (index/index_io.h).
// - Changing calls hold it alone: train, add, add_with_ids, remove_ids, reset, compact,
//   merge_from (both indexes), copy_subset_to (the target; the source is read), set_seed,
//   restore_state, rebuild_after_load, deduplicate with enrolment (search and enrolment under
//   one lock, so that no other add slips between them).
// - Neither side waits forever: the lock is phase-fair (SharedMutex below). A writer waits only
//   for the readers already inside; readers that arrive meanwhile go in together right after
//   it. No call holds the lock while waiting on anything but its own work (saving holds the
//   shared lock until the file is written). Two-index calls take both locks at once
//   (std::lock), so opposite merges cannot deadlock.
// - Not locked: the public fields (params, centering, train_pca, the IVF's nprobe, quantizer,
//   invlists, ...), faiss::Index::ntotal and the accessors seed(), seeded_stream(),
//   streams_used(), next_id(). Change fields while no one else uses the index or under
//   lock_exclusive(); read ntotal and the accessors under lock_shared() when writers may run.
//   FAISS's non-virtual IndexIVF helpers (range_search_preassigned, add_sa_codes,
//   replace_invlists, set_direct_map_type) cannot lock: hold the lock around them.
// - The lock is not recursive: a thread holding it must not call a locking method of the
//   same index.
//
// Exceptions: input values the scheme cannot use — a NaN or infinite value, a group of zero
// norm (after centring), too few training vectors — throw InvalidInputError, a
// faiss::FaissException (Python: ValueError). Other problems throw faiss::FaissException.
//
// Seeds: keys, masks and fills come from the OS generator. set_seed() makes them reproducible
// for tests and benchmarks, and says so on stderr. A file records the seed, and a loaded
// index reports it (seed()), but draws the keys of later adds from the OS generator:
// reproducibility does not outlive the object that was seeded unless the caller seeds again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include <faiss/Index.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>

#include "index/cohort.h"
#include "index/kernels/scan.h"
#include "plugin/params.h"
#include "plugin/protect.h"
#include "plugin/random.h"
#include "plugin/scheme.h"

namespace pslerp {

using idx_t = faiss::Index::idx_t;

struct DedupResult;
struct DedupOptions;

/// Input values that the scheme cannot use (NaN or infinite values, a zero-norm group, too few
/// training vectors). A faiss::FaissException, so FAISS callers catch it as before; the Python
/// bindings raise ValueError for it.
struct InvalidInputError : faiss::FaissException {
    explicit InvalidInputError(const std::string& msg) : faiss::FaissException(msg) {}
};

/// A reader-writer lock where neither side waits forever (phase-fair). A writer waits for the
/// readers inside when it arrives, not for readers arriving after it: those queue, and the
/// writer lets all of them in at once when it is done, before the next writer. (glibc's
/// std::shared_mutex prefers readers: a steady stream of overlapping searches would keep an
/// add() waiting without end.) Lockable and SharedLockable, for std::unique_lock,
/// std::shared_lock and std::lock.
class SharedMutex {
  public:
    void lock();
    bool try_lock();
    void unlock();
    void lock_shared();
    bool try_lock_shared();
    void unlock_shared();

  private:
    std::mutex m_;
    std::condition_variable readers_cv_, writers_cv_;
    int64_t active_readers_ = 0;   ///< readers inside, or admitted and about to wake
    int64_t waiting_readers_ = 0;  ///< readers queued behind a writer
    int64_t waiting_writers_ = 0;
    bool writing_ = false;
    uint64_t admissions_ = 0;  ///< batches of queued readers let in by a finishing writer
};

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
    bool contains(idx_t id) const;
    /// Bytes stored per entry (protected entry and id).
    virtual size_t bytes_per_entry() const = 0;

    /// Makes keys, masks and fills of later adds reproducible (tests and benchmarks only):
    /// prints a warning on stderr at every call. The stream continues from streams_used(), so
    /// seeding a loaded index again continues the saved stream.
    void set_seed(uint64_t seed);
    /// The seed recorded for this index: the last given to set_seed, or read from the file it
    /// was loaded from; the keys of entries added under it are reproducible from it. Saved
    /// with the index (pslerp info shows it).
    std::optional<uint64_t> seed() const { return seed_; }
    /// True while later adds draw from the seeded stream: set_seed was called on this object.
    /// False after loading, even a seeded file (keys then come from the OS generator).
    bool seeded_stream() const { return rng_.seeded(); }
    /// Random streams consumed so far (part of the saved state for seeded sources).
    uint64_t streams_used() const { return streams_used_.load(); }
    /// Id that add() gives next (after the largest id ever added, removed ones included).
    idx_t next_id() const { return next_id_; }
    /// Probe-key cosines clamped as antipodal since creation.
    int64_t clamped_count() const { return clamped_.load(); }
    /// The cohort model of score normalisation (Params::norm, index/cohort.h): the built-in
    /// isotropic one until train() fits one from its vectors or set_cohort() from the
    /// caller's (fitted in the centred space: a train() after set_cohort() fits the caller's
    /// vectors again under the new centring; they are held in memory until the first add, never
    /// saved). Once entries are normalised it is fixed: set_cohort() then accepts only a model
    /// equal to it. Saved with the index.
    /// @param x  n * d raw vectors of people who are not enrolled (centred here like probes)
    void set_cohort(idx_t n, const float* x);
    /// The model in use (source, size, digest, matrices). Not locked, like seed(): read it under
    /// lock_shared() when writers may run.
    const Cohort& cohort() const { return cohort_; }
    /// Restores a loaded file's model (checked by check_cohort()).
    void restore_cohort(Cohort model);

    /// Restores the stream position, the recorded seed and the id counter after loading a
    /// file. Later keys come from the OS generator whatever `seed` is: call set_seed again to
    /// continue a seeded stream.
    void restore_state(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id);

    /// The index's lock (see the thread-safety notes above): readers share it, writers hold it
    /// alone. The deferred forms are for std::lock over several indexes.
    std::shared_lock<SharedMutex> lock_shared() const { return std::shared_lock<SharedMutex>(mutex_); }
    std::unique_lock<SharedMutex> lock_exclusive() const { return std::unique_lock<SharedMutex>(mutex_); }
    std::shared_lock<SharedMutex> lock_shared(std::defer_lock_t d) const {
        return std::shared_lock<SharedMutex>(mutex_, d);
    }
    std::unique_lock<SharedMutex> lock_exclusive(std::defer_lock_t d) const {
        return std::unique_lock<SharedMutex>(mutex_, d);
    }

  protected:
    // What the public methods do once they hold the lock; the caller holds it (shared for the
    // const ones, exclusive for the others). Locking methods never call locking methods.

    /// True if an entry with this external id is present.
    virtual bool has_id(idx_t id) const = 0;
    /// Adds n raw features under ids xids, or under the next ids (from next_id()) when xids is
    /// null.
    virtual void add_locked(idx_t n, const float* x, const idx_t* xids) = 0;
    virtual void range_search_locked(idx_t n, const float* x, float radius, faiss::RangeSearchResult* result,
                                     const faiss::SearchParameters* params) const = 0;
    void verify_batch_locked(idx_t n, const float* x, const idx_t* ids, float* scores) const;
    void restore_state_locked(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id);

    /// Probes ready for the kernels.
    struct Prepared {
        std::vector<float> xn;  ///< n * d centred, group-normalised probes
        std::vector<float> kq;  ///< n * layout.query_floats() kernel queries
    };
    /// Centres and normalises n raw probes of a call named `what` (throws InvalidInputError on
    /// NaN/Inf or a zero group).
    std::vector<float> normalized_probes(idx_t n, const float* x, const char* what) const;
    Prepared prepare(idx_t n, const float* x, const char* what) const;
    /// Checks n and x of a call named `what`.
    void check_vectors(idx_t n, const float* x, const char* what) const;
    /// Checks ids to add: not negative, not present, not repeated in the batch.
    void check_new_ids(idx_t n, const idx_t* xids) const;
    /// The n ids add() gives next.
    std::vector<idx_t> next_ids(idx_t n) const;
    /// Learns the centring from n raw features (kept only once the caller commits it).
    Centering fit_centering(idx_t n, const float* x) const;
    /// Centres and protects n raw features with fresh keys from the stream. With xn, also
    /// returns the centred, group-normalised features (for the IVF's assignment).
    Protected protect_new(idx_t n, const float* x, const char* what, std::vector<float>* xn = nullptr) const;
    /// Records that ids were added (next_id).
    void note_added(idx_t n, const idx_t* xids);
    /// Applies the score normalisation of Params::norm to n freshly encoded entries of `e`
    /// (weights and offsets: their writable arrays, see normalize_entries). Nothing for
    /// Norm::kNone.
    void normalize_new(const kernels::Entries& e, int64_t n, float* weights, float* offsets) const;
    /// train()'s share, once the centring is set: the cohort model from the training vectors,
    /// unless set_cohort() gave one or there are too few.
    void cohort_from_training(idx_t n, const float* x);
    /// Before entries of `from` move into this index (merges, copies): throws unless both
    /// normalise against the same cohort; an empty index takes the cohort of `from`.
    void join_cohort(const ProtectedIndex& from, const char* what);
    /// Kernel scores of one prepared query against the entries with ids[0..n); throws on an
    /// unknown id. Returns the clamped count.
    virtual int64_t score_ids(const float* kq, idx_t n, const idx_t* ids, float* out) const = 0;
    /// Throws naming the first unknown id.
    void check_known(idx_t n, const idx_t* ids, const char* what) const;

    mutable std::atomic<int64_t> clamped_{0};
    idx_t next_id_ = 0;

  private:
    // Searches the gallery and enrols under one lock, and gives its scratch index this
    // index's key source without a second warning.
    friend DedupResult deduplicate(faiss::Index& index, idx_t n, const float* x, const DedupOptions& opt);

    mutable SharedMutex mutex_;
    Cohort cohort_;
    std::vector<float> pending_cohort_;  ///< set_cohort()'s vectors until the first add (for train())
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
