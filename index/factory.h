// Factory strings for the protected indexes, in the manner of faiss::index_factory.
//
//   [IVF<nlist>[_HNSW<M>],]PSlerp<G>x<d>[(option=value,...)]
//
// Without the IVF part: the exhaustive IndexProtectedSlerp (the oracle). With it:
// IndexIVFProtectedSlerp with nlist lists and a flat L2 quantizer, or an HNSW quantizer with M
// neighbours (for large nlist). G groups of d coordinates (the raw dimension is G * d); the
// options are those of Params::set (preset, t, t_minus_importance, key, drop, drop_count,
// mapping, drop_min, drop_max, replacement, fill, importance, weighting, temperature) plus the
// index options pca (true|false: learn a PCA rotation in train()) and, for the IVF, nprobe
// (lists probed by default; default_nprobe(nlist) otherwise). `preset` is applied first
// wherever it appears; the others in order.
//
// Examples: "PSlerp8x16", "IVF1024,PSlerp8x16", "IVF65536_HNSW32,PSlerp8x16(t=0.9)",
//           "PSlerp49x16(preset=slerpface)", "PSlerp8x16(t=0.8,drop=importance,mapping=budget)".
//
// The retired coarse stage ("PSlerp8x16,HNSW32", options k_factor / embedding) is refused with
// a message that says what replaced it. Errors: a malformed string throws
// faiss::FaissException saying what was expected.
#pragma once

#include <memory>
#include <string>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"

namespace pslerp {

/// @param d            raw dimension; must equal G * d of the description
/// @param description  factory string, see above
/// @return an IndexProtectedSlerp or an IndexIVFProtectedSlerp (protected_of() reaches their
///         common part)
std::unique_ptr<faiss::Index> index_factory(int d, const std::string& description);

/// A factory string for a pslerp index: its shape, the options that differ from
/// Params::defaults and the index defaults. Options that no factory option sets (interval
/// bounds, fixed importance weights, attention projections) are not part of it: see
/// Params::describe().
std::string describe_index(const faiss::Index& index);

}  // namespace pslerp
