// De-duplication of enrolments: which features of a new batch match an entry already in the
// index (score >= threshold: the index's own range search, so an IVF index scales it to
// millions of entries) and which match each other within the batch (clusters, found
// exhaustively). Optionally enrols one representative of each new identity.
//
// Within the batch, items are protected under fresh keys and matched against each other, so a
// pair's score depends on the keys drawn: two different people near the threshold may cluster
// in one run and not in the next (at 0.85 on 128-D synthetic data, scores of unrelated pairs
// moved by up to 0.2 between draws; at 0.95 clusters were identical over 300 draws). Gallery
// matches use the stored entries' keys and are repeatable.
//
// Thread safety: a call holds the index's lock throughout, shared when only searching,
// exclusive when enrolling (the gallery search and the enrolment are then one step).
#pragma once

#include <limits>
#include <vector>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"

namespace pslerp {

struct DedupResult {
    /// Per batch item: gallery entries scoring >= threshold, best first (id, score).
    std::vector<std::vector<std::pair<idx_t, float>>> existing;
    /// Per batch item: its cluster within the batch (the smallest batch index in it).
    std::vector<int64_t> cluster;
    /// Batch items that are new: no gallery match, and first of their cluster, whose other
    /// members match no gallery entry either.
    std::vector<int64_t> unique;
    /// Ids given to the unique items when they were enrolled (empty if not enrolled).
    std::vector<idx_t> enrolled_ids;
    int64_t duplicates_of_existing() const;
    int64_t clusters_with_several() const;
};

struct DedupOptions {
    /// Scores >= threshold are duplicates; no default, since it is in the index's own units
    /// (cohort z-scores with Params::norm = cohort, the default; cosines with norm = none).
    float threshold = std::numeric_limits<float>::quiet_NaN();
    /// Enrol the unique items (with `ids` when given, else the index's next ids).
    bool enroll_unique = false;
    const idx_t* ids = nullptr;
    /// Search options of the gallery search (SearchParametersIVF for nprobe on an IVF index).
    const faiss::SearchParameters* search = nullptr;
};

/// @param index  an IndexProtectedSlerp or IndexIVFProtectedSlerp
/// @param x      n raw features, size n * index.d
DedupResult deduplicate(faiss::Index& index, idx_t n, const float* x, const DedupOptions& opt);

}  // namespace pslerp
