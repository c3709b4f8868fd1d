// protect(): raw features -> protected templates with their keys and drop masks; match():
// a raw probe against protected entries, materialising the transformed probe as docs/DESIGN.md
// section 1 step 7 describes (the index uses the closed form of section 2 instead).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "plugin/params.h"
#include "plugin/random.h"

namespace pslerp {

/// Protected entries in natural (row-major) layout.
struct Protected {
    int64_t n = 0;
    std::vector<float> templates;   ///< n * D; each group unit-norm over its kept coordinates
    std::vector<float> keys;        ///< n * key_dim (G*d per group keys, d when shared)
    std::vector<uint8_t> masks;     ///< n * D, 1 = kept
    std::vector<float> weights;     ///< n * G combination weights (sum 1)
    std::vector<float> importance;  ///< n * G importance of the enrolled sample
    int64_t resampled_keys = 0;     ///< keys drawn again because a group was antipodal
};

/// What the caller fixes instead of drawing it; each pointer may be null.
struct ProtectInputs {
    const float* keys = nullptr;       ///< n * key_dim unit-norm keys
    const uint8_t* masks = nullptr;    ///< n * D keep masks (nonzero = kept)
    const float* importance = nullptr; ///< n * G importance (>= 0; normalised on use)
    uint64_t stream_offset = 0;        ///< first random stream used (seeded sources)
};

/// Protects n raw features (already centred; groups are normalised here).
/// With keys and masks given (and random fill off) the result depends on nothing else.
/// @param x  n * D raw features
absl::StatusOr<Protected> protect(const Params& p, const float* x, int64_t n, const RandomSource& rng,
                                  const ProtectInputs& in = {});

/// n keys (n * key_dim floats) as protect() draws them from streams stream_offset + i: with
/// a seeded source, protect() with the same seed stores exactly these keys.
std::vector<float> generate_keys(const Params& p, int64_t n, const RandomSource& rng, uint64_t stream_offset = 0);

/// A probe ready for matching: normalised groups and its per-group slerp weights.
struct Probe {
    std::vector<float> xn;  ///< n * D normalised groups
    std::vector<float> t;   ///< n * G slerp weights
};

/// Normalises n probes (already centred) and derives their slerp weights.
absl::StatusOr<Probe> prepare_probes(const Params& p, const float* x, int64_t n);
/// Slerp weights t (G) of one probe whose groups xn (D) are already normalised.
void probe_t(const Params& p, const float* xn, float* t);

/// Score of one prepared probe against one entry: sum_g w_g cos(transformed probe_g, e_g).
/// @param xn, t  one probe (D, G); tmpl (D), key (key_dim), mask (D), weights (G): one entry
/// @param clamped  if not null, incremented for every group whose cosine with the key was clamped
float match_one(const Params& p, const float* xn, const float* t, const float* tmpl, const float* key,
                const uint8_t* mask, const float* weights, int64_t* clamped = nullptr);

/// Scores probe i against entry i for i < n (pairs) — inputs as in match_one, n rows each.
absl::StatusOr<std::vector<float>> match_pairs(const Params& p, const float* q, int64_t n, const float* templates,
                                               const float* keys, const uint8_t* masks, const float* weights);

/// Scores every probe against every entry: nq x n matrix, row-major.
absl::StatusOr<std::vector<float>> match_all(const Params& p, const float* q, int64_t nq, const float* templates,
                                             const float* keys, const uint8_t* masks, const float* weights,
                                             int64_t n);

}  // namespace pslerp
