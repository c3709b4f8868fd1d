#include "index/ProtectedIndex.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <faiss/impl/FaissAssert.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "index/storage.h"

namespace pslerp {

namespace {

// The scheme's statuses in the index's exceptions: a value the scheme cannot use
// (InvalidArgument, OutOfRange) is an InvalidInputError, anything else a FaissException.
void throw_if_error(const absl::Status& s, const char* what) {
    if (s.ok()) return;
    const std::string msg = "pslerp: " + std::string(what) + ": " + std::string(s.message());
    if (s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kOutOfRange) {
        throw InvalidInputError(msg);
    }
    FAISS_THROW_MSG(msg);
}

}  // namespace

// ---------------------------------------------------------------- SharedMutex

void SharedMutex::lock() {
    std::unique_lock<std::mutex> l(m_);
    ++waiting_writers_;
    writers_cv_.wait(l, [this] { return !writing_ && active_readers_ == 0; });
    --waiting_writers_;
    writing_ = true;
}

bool SharedMutex::try_lock() {
    std::lock_guard<std::mutex> l(m_);
    if (writing_ || active_readers_ > 0) return false;
    writing_ = true;
    return true;
}

void SharedMutex::unlock() {
    std::lock_guard<std::mutex> l(m_);
    writing_ = false;
    if (waiting_readers_ > 0) {
        // The readers that queued behind this writer go first, all together; a waiting writer
        // is woken when the last of them leaves.
        active_readers_ += waiting_readers_;
        waiting_readers_ = 0;
        ++admissions_;
        readers_cv_.notify_all();
    } else if (waiting_writers_ > 0) {
        writers_cv_.notify_one();
    }
}

void SharedMutex::lock_shared() {
    std::unique_lock<std::mutex> l(m_);
    if (!writing_ && waiting_writers_ == 0) {
        ++active_readers_;
        return;
    }
    // Behind a writer: wait until a finishing writer admits this reader (it counts us in).
    ++waiting_readers_;
    const uint64_t batch = admissions_;
    readers_cv_.wait(l, [this, batch] { return admissions_ != batch; });
}

bool SharedMutex::try_lock_shared() {
    std::lock_guard<std::mutex> l(m_);
    if (writing_ || waiting_writers_ > 0) return false;
    ++active_readers_;
    return true;
}

void SharedMutex::unlock_shared() {
    std::lock_guard<std::mutex> l(m_);
    if (--active_readers_ == 0 && waiting_writers_ > 0) writers_cv_.notify_one();
}

// ---------------------------------------------------------------- ProtectedIndex

ProtectedIndex::ProtectedIndex(const Params& p) : params(p) {
    throw_if_error(p.validate(), "params");
    cohort_ = builtin_cohort(p);
    layout = layout_of(p);
}

ProtectedIndex::~ProtectedIndex() = default;

faiss::Index& ProtectedIndex::index() {
    return *dynamic_cast<faiss::Index*>(this);
}

const faiss::Index& ProtectedIndex::index() const {
    return *dynamic_cast<const faiss::Index*>(this);
}

void ProtectedIndex::check_vectors(idx_t n, const float* x, const char* what) const {
    FAISS_THROW_IF_NOT_FMT(n >= 0, "pslerp: %s: n must be >= 0, got %ld", what, long(n));
    FAISS_THROW_IF_NOT_FMT(n == 0 || x != nullptr, "pslerp: %s: null input with n = %ld", what, long(n));
}

void ProtectedIndex::check_new_ids(idx_t n, const idx_t* xids) const {
    FAISS_THROW_IF_NOT_MSG(n == 0 || xids, "pslerp: add_with_ids: ids are null");
    absl::flat_hash_set<idx_t> batch;
    batch.reserve(n);
    for (idx_t i = 0; i < n; ++i) {
        FAISS_THROW_IF_NOT_FMT(xids[i] >= 0 && xids[i] < std::numeric_limits<idx_t>::max(),
                               "pslerp: add: id %ld is out of range [0, 2^63 - 1)", long(xids[i]));
        FAISS_THROW_IF_NOT_FMT(!has_id(xids[i]), "pslerp: add: id %ld is already in the index", long(xids[i]));
        FAISS_THROW_IF_NOT_FMT(batch.insert(xids[i]).second, "pslerp: add: id %ld appears twice in the batch",
                               long(xids[i]));
    }
}

void ProtectedIndex::check_known(idx_t n, const idx_t* ids, const char* what) const {
    for (idx_t i = 0; i < n; ++i) {
        FAISS_THROW_IF_NOT_FMT(has_id(ids[i]), "pslerp: %s: unknown id %ld", what, long(ids[i]));
    }
}

std::vector<idx_t> ProtectedIndex::next_ids(idx_t n) const {
    FAISS_THROW_IF_NOT_FMT(n <= std::numeric_limits<idx_t>::max() - 1 - next_id_,
                           "pslerp: add: %ld more ids after %ld would overflow int64 ids", long(n), long(next_id_));
    std::vector<idx_t> ids(std::max<idx_t>(n, 0));
    std::iota(ids.begin(), ids.end(), next_id_);
    return ids;
}

std::vector<float> ProtectedIndex::normalized_probes(idx_t n, const float* x, const char* what) const {
    const int D = params.dim();
    std::vector<float> xn(n * D);
    centering.apply(x, n, D, xn.data());
    throw_if_error(normalize_groups(params, xn.data(), n, xn.data()), what);
    return xn;
}

ProtectedIndex::Prepared ProtectedIndex::prepare(idx_t n, const float* x, const char* what) const {
    const int D = params.dim();
    std::vector<float> xc(n * D);
    centering.apply(x, n, D, xc.data());
    auto probe = prepare_probes(params, xc.data(), n);
    throw_if_error(probe.status(), what);
    Prepared q;
    q.xn = std::move(probe->xn);
    const size_t qf = layout.query_floats();
    q.kq.resize(n * qf);
#pragma omp parallel for if (n > 256)
    for (idx_t i = 0; i < n; ++i) {
        kernels::prepare_query(layout, q.xn.data() + i * D, probe->t.data() + i * params.groups, q.kq.data() + i * qf);
    }
    return q;
}

Centering ProtectedIndex::fit_centering(idx_t n, const float* x) const {
    check_vectors(n, x, "train");
    auto c = Centering::fit(x, n, params.dim(), params.groups, train_pca);
    throw_if_error(c.status(), "train: x");
    c->take_frame(centering);  // the secret frame is the gallery's, not learned
    return *std::move(c);
}

Protected ProtectedIndex::protect_new(idx_t n, const float* x, const char* what, std::vector<float>* xn) const {
    const int D = params.dim();
    std::vector<float> xc(n * D);
    centering.apply(x, n, D, xc.data());
    if (xn) {
        xn->resize(n * D);
        throw_if_error(normalize_groups(params, xc.data(), n, xn->data()), what);
    }
    ProtectInputs in;
    // Streams are reserved before use, so concurrent const callers (encode_vectors) never share one.
    in.stream_offset = streams_used_.fetch_add(static_cast<uint64_t>(n));
    auto pr = protect(params, xc.data(), n, rng_, in);
    if (!pr.ok()) {
        streams_used_.fetch_sub(static_cast<uint64_t>(n));
        throw_if_error(pr.status(), what);
    }
    return *std::move(pr);
}

void ProtectedIndex::set_cohort(idx_t n, const float* x) {
    check_vectors(n, x, "set_cohort");
    FAISS_THROW_IF_NOT_MSG(params.norm == Norm::kCohort,
                           "pslerp: set_cohort: this index's norm is 'none' and uses no cohort (create it with norm=cohort)");
    const auto lock = lock_exclusive();
    Cohort c = fit_cohort(params, n, normalized_probes(n, x, "set_cohort: x").data(), CohortSource::kUser);
    if (index().ntotal > 0 && c.digest != cohort_.digest) {
        throw faiss::FaissException(absl::StrCat("pslerp: set_cohort: the ", index().ntotal,
                                                 " entries of this index were normalised against another cohort (",
                                                 cohort_.describe(), "); reset() first to change it"));
    }
    cohort_ = std::move(c);
    if (index().ntotal == 0) pending_cohort_.assign(x, x + n * params.dim());
}

void ProtectedIndex::restore_cohort(Cohort model) {
    check_cohort(params, model);
    const auto lock = lock_exclusive();
    cohort_ = std::move(model);
}

void ProtectedIndex::cohort_from_training(idx_t n, const float* x) {
    if (params.norm != Norm::kCohort) return;
    if (cohort_.source == CohortSource::kUser) {
        if (pending_cohort_.empty()) return;  // (restored from a file: already in this centring)
        const idx_t m = idx_t(pending_cohort_.size() / params.dim());
        cohort_ = fit_cohort(params, m, normalized_probes(m, pending_cohort_.data(), "set_cohort: x").data(),
                             CohortSource::kUser);
        return;
    }
    if (n < min_cohort_fit(params)) return;  // keeps the built-in model
    cohort_ = fit_cohort(params, n, normalized_probes(n, x, "train: x").data(), CohortSource::kTrain);
}

void ProtectedIndex::join_cohort(const ProtectedIndex& from, const char* what) {
    if (params.norm != Norm::kCohort || from.index().ntotal == 0) return;
    if (index().ntotal == 0) {
        cohort_ = from.cohort_;
        return;
    }
    FAISS_THROW_IF_NOT_FMT(cohort_.digest == from.cohort_.digest,
                           "pslerp: %s: the indexes' entries were normalised against different cohort models (%s; %s): "
                           "their scores are not comparable",
                           what, cohort_.describe().c_str(), from.cohort_.describe().c_str());
}

void ProtectedIndex::note_added(idx_t n, const idx_t* xids) {
    for (idx_t i = 0; i < n; ++i) next_id_ = std::max(next_id_, xids[i] + 1);
    if (n > 0) std::vector<float>().swap(pending_cohort_);  // the model is fixed now
}

void ProtectedIndex::normalize_new(const kernels::Entries& e, int64_t n, float* weights, float* offsets) const {
    if (params.norm != Norm::kCohort || n == 0) return;
    // The model's vectors are already centred: prepared like probes, without the centring.
    const std::vector<float> xs = cohort_samples(params, cohort_);
    const int64_t m = params.cohort_size;
    auto probe = prepare_probes(params, xs.data(), m);
    throw_if_error(probe.status(), "cohort");
    const size_t qf = layout.query_floats();
    std::vector<float> kq(size_t(m) * qf);
    for (int64_t i = 0; i < m; ++i) {
        kernels::prepare_query(layout, probe->xn.data() + i * params.dim(), probe->t.data() + i * params.groups,
                               kq.data() + i * qf);
    }
    normalize_entries(e, n, kq.data(), m, weights, offsets);
}


bool ProtectedIndex::contains(idx_t id) const {
    const auto lock = lock_shared();
    return has_id(id);
}

float ProtectedIndex::verify(const float* x, idx_t id) const {
    float s;
    const auto lock = lock_shared();
    verify_batch_locked(1, x, &id, &s);
    return s;
}

void ProtectedIndex::verify_batch(idx_t n, const float* x, const idx_t* ids, float* scores) const {
    const auto lock = lock_shared();
    verify_batch_locked(n, x, ids, scores);
}

void ProtectedIndex::verify_batch_locked(idx_t n, const float* x, const idx_t* ids, float* scores) const {
    check_vectors(n, x, "verify");
    FAISS_THROW_IF_NOT_MSG(n == 0 || (ids && scores), "pslerp: verify: null ids or scores");
    check_known(n, ids, "verify");
    if (n == 0) return;
    const Prepared q = prepare(n, x, "verify: x");
    const size_t qf = layout.query_floats();
    int64_t clamped = 0;
    for (idx_t i = 0; i < n; ++i) clamped += score_ids(q.kq.data() + i * qf, 1, ids + i, scores + i);
    clamped_ += clamped;
}

float ProtectedIndex::verify_identity(const float* x, idx_t n_ids, const idx_t* ids) const {
    check_vectors(1, x, "verify");
    FAISS_THROW_IF_NOT_MSG(n_ids > 0 && ids, "pslerp: verify: an identity needs at least one id");
    const auto lock = lock_shared();
    check_known(n_ids, ids, "verify");
    const Prepared q = prepare(1, x, "verify: x");
    std::vector<float> scores(n_ids);
    clamped_ += score_ids(q.kq.data(), n_ids, ids, scores.data());
    return *std::max_element(scores.begin(), scores.end());
}

void ProtectedIndex::set_seed(uint64_t seed) {
    warn_seeded("set_seed");
    const auto lock = lock_exclusive();
    rng_ = RandomSource(seed);
    seed_ = seed;
}

void ProtectedIndex::restore_state(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id) {
    const auto lock = lock_exclusive();
    restore_state_locked(streams_used, seed, next_id);
}

void ProtectedIndex::restore_state_locked(uint64_t streams_used, std::optional<uint64_t> seed, idx_t next_id) {
    streams_used_ = streams_used;
    next_id_ = std::max<idx_t>(next_id, next_id_);
    // The file's seed is kept on record (seed(), saved again), never put back in force: keys
    // drawn after loading come from the OS generator unless the caller calls set_seed again.
    seed_ = seed;
    rng_ = RandomSource();
}

ProtectedIndex* as_protected(faiss::Index* index) {
    return dynamic_cast<ProtectedIndex*>(index);
}

const ProtectedIndex* as_protected(const faiss::Index* index) {
    return dynamic_cast<const ProtectedIndex*>(index);
}

ProtectedIndex& protected_of(faiss::Index& index) {
    ProtectedIndex* p = as_protected(&index);
    FAISS_THROW_IF_NOT_MSG(p, "pslerp: not a pslerp index (IndexProtectedSlerp or IndexIVFProtectedSlerp)");
    return *p;
}

const ProtectedIndex& protected_of(const faiss::Index& index) {
    const ProtectedIndex* p = as_protected(&index);
    FAISS_THROW_IF_NOT_MSG(p, "pslerp: not a pslerp index (IndexProtectedSlerp or IndexIVFProtectedSlerp)");
    return *p;
}

}  // namespace pslerp
