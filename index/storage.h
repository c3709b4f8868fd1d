// Structure-of-arrays storage of protected entries in the kernels' interleaved layout: one
// row per entry, rows never move except in compact().
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "index/kernels/scan.h"
#include "plugin/params.h"
#include "plugin/protect.h"

namespace pslerp {

/// The kernels' layout of one entry under p (shape, key mode, storage type).
kernels::Layout layout_of(const Params& p);

/// Writes entry i of `pr` in the kernels' interleaved layout: template te, keys tk, mask bits
/// tm, the per-group constants ke, kmk and weights w (sizes from the layout; padded lanes are
/// zero, kmk 1) and the score offset (0; Norm::kCohort sets weights and offset afterwards, see
/// index/cohort.h).
void encode_entry(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, float* te, float* tk,
                  uint8_t* tm, float* ke, float* kmk, float* w, float* offset);
/// The same with the template and keys rounded to half (Storage::kFp16; no ke and kmk).
void encode_entry_half(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, uint16_t* te,
                       uint16_t* tk, uint8_t* tm, float* w, float* offset);
/// The same entry as one code of kernels::code_layout(L).code_size bytes (IVF lists), in fp32
/// or half as L.half says; the code must be 4-byte aligned.
void encode_code(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, uint8_t* code);

/// Checks entry j of `e` against what encode_entry() writes, so that nothing read from outside
/// (a file, another index) can make scores leave [-1, 1] or a search misbehave:
/// - every value finite (half storage: no Inf or NaN half);
/// - templates of unit norm over each group's kept coordinates (or zero), and zero where a
///   coordinate is dropped when p.fill is kZero;
/// - keys of unit norm per group (once when shared); norms within 1e-3, which covers half
///   rounding (at most 2^-11 relative);
/// - ke and kmk, when stored (fp32), equal to <k_g, M e_g> and <k_g, M k_g> recomputed from them
///   (so |ke| <= 1 and kmk in [0, 1]);
/// - combination weights >= 0 summing to 1 (combination_weights() gives 1/G or the
///   normalised importance) and offset 0; with Norm::kCohort, weights >= 0 whose sum is at
///   most kMaxCohortGain (the cohort's rescaling) and |offset| at most their sum, so that
///   every score stays within [-kMaxCohortGain, kMaxCohortGain] (a forged entry cannot reach
///   beyond; only a sealed file (issue 11) tells a forged entry from an enrolled one);
/// - masks keeping at least one coordinate of each group;
/// - padded lanes as encode_entry() leaves them: zero, kmk 1, no mask bit.
/// The message names the field and the group.
absl::Status check_entry(const Params& p, const kernels::Entries& e, int64_t j);
/// The first of entries [0, n) that check_entry() refuses, with its status; (n, OK) when every
/// entry passes. Entries are checked in parallel.
std::pair<int64_t, absl::Status> first_bad_entry(const Params& p, const kernels::Entries& e, int64_t n);

/// Bound of the cohort-normalised combination weights' sum (index/cohort.h floors the standard
/// deviations it divides by, which keeps legitimate entries far below it).
inline constexpr double kMaxCohortGain = 1e4;

/// Entries of one index. With layout.half (Storage::kFp16) templates_h and keys_h replace
/// templates and keys, and ke and kmk are empty (the kernels recompute them).
struct EntryStorage {
    kernels::Layout layout;
    std::vector<float> templates;  ///< rows * vec_floats, interleaved
    std::vector<float> keys;       ///< rows * key_floats
    std::vector<uint16_t> templates_h;  ///< layout.half: rows * vec_floats halves
    std::vector<uint16_t> keys_h;       ///< layout.half: rows * key_floats halves
    std::vector<uint8_t> masks;    ///< rows * mask_bytes (bit per coordinate)
    std::vector<float> ke;         ///< rows * group_floats: <k_g, M e_g>
    std::vector<float> kmk;        ///< rows * group_floats: <k_g, M k_g> (1 in padded lanes)
    std::vector<float> weights;    ///< rows * group_floats: combination weights (0 in padded lanes)
    std::vector<float> offsets;    ///< rows: score offset (Norm::kCohort; 0 otherwise)
    std::vector<int64_t> ids;      ///< external id per row
    std::vector<uint8_t> removed;  ///< tombstone per row

    explicit EntryStorage(const Params& p = Params());

    int64_t rows() const { return static_cast<int64_t>(ids.size()); }
    /// Appends protected entries (natural layout) with their ids.
    void append(const Params& p, const Protected& pr, const int64_t* new_ids);
    /// Natural-layout template of row r (D floats).
    void template_row(const Params& p, int64_t r, float* out) const;
    /// Natural-layout key (key_dim floats) and keep mask (D bytes) of row r.
    void key_row(const Params& p, int64_t r, float* out) const;
    void mask_row(const Params& p, int64_t r, uint8_t* out) const;
    /// Combination weights of row r (G floats).
    void weight_row(const Params& p, int64_t r, float* out) const;
    /// Keeps only rows that are not removed, in order; returns the old row of each new row.
    std::vector<int64_t> compact();
    void clear();
    /// Drops rows [r, rows()) (an append undone).
    void truncate(int64_t r);
    /// Bytes of all per-row arrays for one row (id and tombstone included).
    size_t bytes_per_row() const;
    /// Consistency of array sizes (after loading a file).
    bool consistent() const;

    /// The entries from row r0 on (entry j of the view is row r0 + j).
    kernels::Entries view_from(int64_t r0) const;
    kernels::Entries view() const { return view_from(0); }

private:
    /// Calls f(array, elements per row) for every per-row array; arrays the storage type does
    /// not use get 0 per row.
    template <class Self, class F>
    static void each_array(Self& s, F&& f);
};

}  // namespace pslerp
