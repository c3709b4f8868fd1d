// Splitting a descriptor into G groups of d and normalising each group, the form the
// protection scheme works on (DESIGN section 1).
#pragma once

#include <cstdint>

namespace pslerp {

/// L2-normalises each of the `groups` groups of `group_dim` floats of n vectors in place.
/// A group of zero norm stays zero.
/// @param x  n * groups * group_dim floats
void NormalizeGroups(float* x, int64_t n, int groups, int group_dim);

/// Cosine per group between two grouped vectors (each group normalised on the fly).
/// @param a, b     groups * group_dim floats each
/// @param cosines  groups floats out
void GroupCosines(const float* a, const float* b, int groups, int group_dim, float* cosines);

}  // namespace pslerp
