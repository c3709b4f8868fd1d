// Factory strings for IndexProtectedSlerp, in the manner of faiss::index_factory.
//
//   PSlerp<G>x<d>[(option=value,...)][,<coarse>]
//
// G groups of d coordinates (the raw dimension is G * d); the options are those of
// Params::set (preset, t, t_minus_importance, key, drop, drop_count, mapping, drop_min,
// drop_max, replacement, fill, importance, weighting, temperature) plus the index options
// k_factor, range_shortlist, pca (true|false: learn a PCA rotation in train()) and embedding
// (linear|template|identity: what the coarse index holds, see CoarseEmbedding; identity is an
// opt-in that weakens protection for mated recall, see README "Security"). `preset` is applied
// first wherever it appears; the others in order. <coarse> is any faiss::index_factory string
// (HNSW32, IVF256,Flat, IVF1024,PQ16, IVF256,SQ8, ...) built at the coarse embedding's
// dimension and metric (IndexProtectedSlerp::coarse_metric); without it the search is
// exhaustive.
//
// Examples: "PSlerp8x16", "PSlerp8x16,HNSW32", "PSlerp49x16(preset=slerpface),HNSW32",
//           "PSlerp8x16(t=0.8,drop=importance,mapping=budget,key=shared,fill=random)".
//
// Errors: a malformed string throws faiss::FaissException saying what was expected.
#pragma once

#include <memory>
#include <string>

#include "index/IndexProtectedSlerp.h"

namespace pslerp {

/// @param d            raw dimension; must equal G * d of the description
/// @param description  factory string, see above
std::unique_ptr<IndexProtectedSlerp> index_factory(int d, const std::string& description);

/// A factory string for `index`: its shape, the options that differ from Params::defaults and
/// the index defaults, and the coarse index (FAISS types the factory can build; others are
/// named as <ClassName>). Options that no factory option sets (interval bounds, fixed
/// importance weights, attention projections) are not part of it: see Params::describe().
std::string describe_index(const IndexProtectedSlerp& index);

}  // namespace pslerp
