// A plain reference of protect and match: every step of docs/DESIGN.md section 1 written out in
// double precision, with no shared helpers beyond the parameters. Kept for tests: the fast
// paths (plugin/protect.cpp, index/kernels) are checked against it.
#pragma once

#include <cstdint>
#include <vector>

#include "plugin/params.h"

namespace pslerp::reference {

/// Template of one raw (centred) feature x (D) with the given keys (key_dim), masks (D) and
/// importance (G, used for t_g when the parameters ask for it). Returns D values.
std::vector<double> protect_one(const Params& p, const float* x, const float* keys, const uint8_t* masks,
                                const float* importance);

/// Score of raw probe q (D) against one entry; the probe's own importance is computed from q.
double match_one(const Params& p, const float* q, const float* tmpl, const float* keys, const uint8_t* masks,
                 const float* weights);

/// Importance of a raw feature, recomputed step by step (uniform, fixed or self-attention).
std::vector<double> importance(const Params& p, const float* x);

}  // namespace pslerp::reference
