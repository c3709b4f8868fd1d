// Scoring kernels of IndexProtectedSlerp: the closed form of docs/DESIGN.md section 2, evaluated for
// many entries and queries without materialising the transformed probe and without libm
// calls in the loop. A scalar reference and an AVX2 version share this interface; the choice
// is made once, at first use, into a read-only table.
//
// Storage is group-interleaved: groups are taken eight at a time ("blocks") and coordinate i
// of the eight groups of a block is stored contiguously, so eight groups are scored in one
// SIMD register with no horizontal sums. Padded lanes hold zeros and weight 0.
//
// Precision: float sums, agreeing with the double reference to about 1e-7 per group. A group
// that keeps almost none of its rotated energy (|M r| -> 0, only with tiny d and heavy drop)
// is ill-conditioned in the closed form: its cosine is a ratio of two small numbers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pslerp::kernels {

inline constexpr int kLanes = 8;

/// Shapes of the interleaved layout for G groups of d.
struct Layout {
    int groups = 0;
    int group_dim = 0;
    bool shared_key = false;
    /// Templates and keys stored as IEEE half (Storage::kFp16); ke and kmk are then not stored
    /// but recomputed by the kernels from the rounded values.
    bool half = false;
    /// Templates are zero wherever a coordinate is dropped (Fill::kZero; check_entry refuses
    /// entries that are not): the kernels then read them without applying the mask.
    bool zero_fill = false;

    int blocks() const { return (groups + kLanes - 1) / kLanes; }
    /// floats per entry of the template (and of keys when per-group)
    size_t vec_floats() const { return static_cast<size_t>(blocks()) * group_dim * kLanes; }
    size_t key_floats() const { return shared_key ? static_cast<size_t>(group_dim) : vec_floats(); }
    /// mask bytes per entry: one byte per (block, coordinate), bit l = group 8*block + l
    size_t mask_bytes() const { return static_cast<size_t>(blocks()) * group_dim; }
    /// per-group constants per entry (padded to whole blocks)
    size_t group_floats() const { return static_cast<size_t>(blocks()) * kLanes; }
    /// floats of one prepared query: q and q*q interleaved, then t per group
    size_t query_floats() const { return 2 * vec_floats() + group_floats(); }
};

/// Read-only view of stored entries. Entry j of each array starts at j * its stride: the
/// flat index keeps one array per field (structure of arrays, strides = the field sizes of
/// Layout), an IVF list keeps whole entries one after another (one code per entry, every
/// stride = the code size; see code_layout()). With layout.half, templates_h and keys_h hold
/// the templates and keys, and templates, keys, ke and kmk are null.
struct Entries {
    Layout layout;
    const float* templates = nullptr;  ///< vec_floats per entry
    const float* keys = nullptr;       ///< key_floats per entry
    const uint8_t* masks = nullptr;    ///< mask_bytes per entry
    const float* ke = nullptr;         ///< <k_g, e_g>, group_floats per entry
    const float* kmk = nullptr;        ///< <k_g, M_g k_g>, group_floats per entry
    const float* weights = nullptr;    ///< combination weights, group_floats per entry
    const float* offsets = nullptr;    ///< one float per entry, added to its score (Norm::kCohort)
    size_t template_stride = 0;        ///< elements (floats, or halves) from one entry's template to the next
    size_t key_stride = 0;             ///< elements between keys
    size_t mask_stride = 0;            ///< bytes between masks
    size_t group_stride = 0;           ///< floats between per-group constants (ke, kmk, weights)
    size_t offset_stride = 0;          ///< floats between offsets
    const uint16_t* templates_h = nullptr;  ///< layout.half: vec_floats halves per entry
    const uint16_t* keys_h = nullptr;       ///< layout.half: key_floats halves per entry
};

/// One entry stored as a single code (IVF lists): template, keys, ke, kmk, weights, offset
/// (floats), then the mask bytes, padded to a multiple of 4 bytes so that the next code's
/// floats stay aligned to 4. With layout.half: template and keys as halves (each padded to a
/// whole number of floats), no ke and kmk (their offsets are then 0 and unused), weights,
/// offset, masks.
struct CodeLayout {
    size_t template_offset, key_offset, ke_offset, kmk_offset, weights_offset, score_offset;  ///< in floats (4 bytes)
    size_t mask_offset;                                                        ///< in bytes
    size_t code_size;                                                          ///< in bytes
};
CodeLayout code_layout(const Layout& L);
/// View of n codes laid out by code_layout() starting at `codes` (4-byte aligned).
Entries code_entries(const Layout& L, const uint8_t* codes);

/// Score of a query against an entry: sum over groups of weights[g] * cosine[g] (groups of
/// weight 0 skipped), plus the entry's offset.

/// Scores entries [j0, j1) against nq prepared queries.
/// @param queries  nq * layout.query_floats() floats
/// @param out      out[qi * ld + (j - j0)]
/// @return number of (query, group) pairs whose key cosine was clamped as antipodal
using ScoreRangeFn = int64_t (*)(const Entries& e, const float* queries, int64_t nq, int64_t j0, int64_t j1,
                                 float* out, int64_t ld);
/// Scores one prepared query against the entries at positions pos[0..n).
using ScoreListFn = int64_t (*)(const Entries& e, const float* query, const int64_t* pos, int64_t n, float* out);

/// The per-group cosines of nq prepared queries against entry j, unweighted (cohort statistics
/// at enrolment): out[qi * group_floats + g], padded lanes 0. Returns the clamped count.
using GroupCosinesFn = int64_t (*)(const Entries& e, const float* queries, int64_t nq, int64_t j, float* out);

/// Receives scores as a kernel finishes them (score_block_into): query q0 + qi against entry
/// j0 + jj is s[jj * entry_stride + qi * query_stride], for qi in [0, nq) and jj in [0, n),
/// offsets included. The batched kernel hands over each sgemm block entry-major (query_stride
/// 1), straight from its working memory: no score matrix is written or read back.
class ScoreSink {
public:
    virtual void take(int64_t q0, int64_t nq, int64_t j0, int64_t n, const float* s, int64_t entry_stride,
                      int64_t query_stride) = 0;

protected:
    ~ScoreSink() = default;
};
/// Scores entries [j0, j1) against nq prepared queries into `sink`; returns the clamped count.
using ScoreIntoFn = int64_t (*)(const Entries& e, const float* queries, int64_t nq, int64_t j0, int64_t j1,
                                ScoreSink& sink);

struct KernelTable {
    const char* name;
    ScoreRangeFn score_range;
    ScoreListFn score_list;
    GroupCosinesFn group_cosines;
    ScoreIntoFn score_into = nullptr;  ///< the batched tables only
};

/// Whether the environment caps the instruction set at `level` (PSLERP_SIMD=scalar or avx2).
bool simd_capped_at(const char* level);

/// The table chosen for this CPU (AVX2+FMA when present; PSLERP_SIMD=scalar forces scalar).
const KernelTable& kernels();
const KernelTable& scalar_kernels();
/// nullptr when the CPU lacks AVX2/FMA.
const KernelTable* avx2_kernels();
/// The AVX2 table with score_range taken by the batched kernel (batch_avx2.cpp, any number of
/// queries), its closed form eight queries per register; nullptr when the CPU lacks AVX2/FMA.
const KernelTable* batch_avx2_kernels();
/// The batched kernel for this CPU: batch_avx2_kernels() with its closed form sixteen queries
/// per register where the CPU has AVX-512F (batch_avx512.cpp) and PSLERP_SIMD is not "avx2";
/// nullptr when the CPU lacks AVX2/FMA. score_block() chooses between it and kernels().
const KernelTable* batch_kernels();
/// Name of the instruction sets in use ("avx2, batches avx512", "avx2" or "scalar"), for
/// benchmarks and `info`.
const char* simd_level();

/// Writes one prepared query from a probe's normalised groups xn (G*d) and slerp weights t (G).
void prepare_query(const Layout& layout, const float* xn, const float* t, float* out);

/// Entry j's template and key as fp32 in the interleaved layout (vec_floats() and
/// key_floats() floats), whatever the storage type (the batch kernel reads entries this way).
void unpack_row(const Entries& e, int64_t j, float* templ, float* key);

/// Fewest queries for which score_block() takes the batched (GEMM) path.
inline constexpr int64_t kBatchMinQueries = 32;

/// Scores entries [j0, j1) against nq prepared queries, with ScoreRangeFn's contract. At least
/// kBatchMinQueries queries on an AVX2 CPU go through the batched kernel (batch_avx2.cpp:
/// per-group sgemm of queries against keys and templates, then the closed form with sparse
/// corrections for the dropped coordinates); fewer, or PSLERP_SIMD=scalar, go to
/// kernels().score_range. Every path equals the scalar kernel to within 1e-5 in fp32.
int64_t score_block(const Entries& e, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                    int64_t ld);

/// score_block()'s choice of kernel, with the scores handed to `sink` block by block instead of
/// written to a matrix (the searches: each score is looked at once, where it is made).
int64_t score_block_into(const Entries& e, const float* queries, int64_t nq, int64_t j0, int64_t j1,
                         ScoreSink& sink);

}  // namespace pslerp::kernels
