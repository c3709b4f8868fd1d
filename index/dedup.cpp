#include "index/dedup.h"

#include <numeric>

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>

namespace pslerp {

namespace {

int64_t find_root(std::vector<int64_t>& parent, int64_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

void unite(std::vector<int64_t>& parent, int64_t a, int64_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);  // the smallest index is the root
}

}  // namespace

int64_t DedupResult::duplicates_of_existing() const {
    int64_t c = 0;
    for (const auto& e : existing) c += !e.empty();
    return c;
}

int64_t DedupResult::clusters_with_several() const {
    std::vector<int64_t> size(cluster.size(), 0);
    for (int64_t c : cluster) ++size[c];
    return std::count_if(size.begin(), size.end(), [](int64_t s) { return s > 1; });
}

DedupResult deduplicate(faiss::Index& index, idx_t n, const float* x, const DedupOptions& opt) {
    FAISS_THROW_IF_NOT_FMT(n >= 0 && (n == 0 || x), "pslerp: dedup: bad batch (n = %ld)", long(n));
    FAISS_THROW_IF_NOT_MSG(std::isfinite(opt.threshold),
                           "pslerp: dedup: give a finite threshold, in the index's score units (cohort z-scores with "
                           "norm=cohort, cosines with norm=none)");
    ProtectedIndex& pi = protected_of(index);
    DedupResult res;
    res.existing.resize(n);
    res.cluster.resize(n);
    if (n == 0) return res;

    // One lock for the whole call. Enrolling holds it alone, so that no other add comes
    // between the gallery search and the enrolment (two calls enrolling the same new person
    // at once enrol it once), and the ids reported are the ids given.
    std::shared_lock<SharedMutex> reading;
    std::unique_lock<SharedMutex> writing;
    if (opt.enroll_unique) {
        writing = pi.lock_exclusive();
    } else {
        reading = pi.lock_shared();
    }

    // 1. Against the gallery.
    faiss::RangeSearchResult gal(n);
    pi.range_search_locked(n, x, opt.threshold, &gal, opt.search);
    for (idx_t i = 0; i < n; ++i) {
        for (size_t j = gal.lims[i]; j < gal.lims[i + 1]; ++j) res.existing[i].emplace_back(gal.labels[j], gal.distances[j]);
    }

    // 2. Within the batch: protect it into a scratch exhaustive index with the same parameters
    // and centring (the batch is small; exact) and link every pair that matches.
    IndexProtectedSlerp scratch(pi.params);
    scratch.centering = pi.centering;
    // The index's key source: a seeded (test, benchmark) index stays reproducible, without a
    // second warning; any other draws from the OS generator.
    static_cast<ProtectedIndex&>(scratch).rng_ = pi.rng_;
    scratch.add(n, x);  // ids 0..n-1 = batch positions
    faiss::RangeSearchResult within(n);
    scratch.range_search(n, x, opt.threshold, &within);
    std::vector<int64_t> parent(n);
    std::iota(parent.begin(), parent.end(), 0);
    for (idx_t i = 0; i < n; ++i) {
        for (size_t j = within.lims[i]; j < within.lims[i + 1]; ++j) unite(parent, i, within.labels[j]);
    }
    std::vector<uint8_t> cluster_has_existing(n, 0);
    for (idx_t i = 0; i < n; ++i) {
        res.cluster[i] = find_root(parent, i);
        if (!res.existing[i].empty()) cluster_has_existing[res.cluster[i]] = 1;
    }
    for (idx_t i = 0; i < n; ++i) {
        if (res.cluster[i] == i && !cluster_has_existing[i]) res.unique.push_back(i);
    }

    // 3. Enrol the representatives.
    if (opt.enroll_unique && !res.unique.empty()) {
        std::vector<float> xs(res.unique.size() * index.d);
        for (size_t u = 0; u < res.unique.size(); ++u) {
            std::copy_n(x + res.unique[u] * index.d, index.d, xs.data() + u * index.d);
        }
        if (opt.ids) {
            for (int64_t u : res.unique) res.enrolled_ids.push_back(opt.ids[u]);
        } else {
            // add() numbers from next_id(), in order; the lock keeps it so until the add.
            const idx_t first = pi.next_id();
            for (size_t u = 0; u < res.unique.size(); ++u) res.enrolled_ids.push_back(first + idx_t(u));
        }
        pi.add_locked(idx_t(res.unique.size()), xs.data(), res.enrolled_ids.data());
    }
    return res;
}

}  // namespace pslerp
