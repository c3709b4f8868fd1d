// Index files: one self-contained, versioned, checksummed file per IndexProtectedSlerp
// (DESIGN section 4). FAISS's own read_index/write_index cannot be extended from outside, so
// pslerp has its own container and nests the coarse index in it with faiss::write_index.
//
// Format version 1. Every integer and float is little-endian; bools and enums are one byte;
// a vector is a u64 element count followed by its elements.
//
//   offset  size  field
//   0       8     magic "PSLERPIX"
//   8       4     u32 format version (1)
//   12      4     u32 header length in bytes (32 in version 1; sections start there)
//   16      8     u64 file length in bytes, checksum included
//   24      4     u32 number of sections (5)
//   28      4     u32 reserved, 0
//   32      ...   sections, in this order, each: char[4] tag, u64 payload length, payload
//     "PARM" Params: i32 groups, i32 group_dim, f32 t, u8 t_minus_importance, u8 key_mode,
//            u8 drop, i32 drop_count, u8 drop_with_replacement, u8 mapping, i32 drop_min,
//            i32 drop_max, vec<f32> interval_bounds, vec<i32> interval_counts,
//            u8 intervals_by_median, u8 fill, u8 importance, vec<f32> importance_weights,
//            vec<f32> attention_wq, vec<f32> attention_wk, f32 attention_temperature,
//            u8 weighting
//     "CENT" Centering: vec<f32> mean (0 or D), vec<f32> rotation (0 or D*D, row-major)
//     "OPTS" u8 train_pca, i32 k_factor, i32 range_shortlist, u64 streams_used,
//            u8 has_seed, u64 seed (0 when unseeded), i64 ntotal (live entries, checked),
//            u8 coarse_embedding, vec<f32> coarse_shift (0 or coarse_d), f32 coarse_radius,
//            i64 next_id (the id add() gives next)
//     "STOR" EntryStorage: i32 groups, i32 group_dim, u8 shared_key (the kernels' layout),
//            u64 rows, then vec<f32> templates, vec<f32> keys, vec<u8> masks, vec<f32> ke,
//            vec<f32> kmk, vec<f32> weights, vec<i64> ids, vec<u8> removed, each of
//            rows * (per-row size of the layout) elements
//     "CRSE" u64 byte count (0 = no coarse index), then that many bytes of faiss::write_index
//   end-8   8     u64 checksum: pslerp's 64-bit hash (io_checksum) of every byte before it
//
// Guarantees:
// - Saving is atomic: a temporary file in the target's folder, fsync, rename, fsync of the
//   folder; on failure the temporary file is removed and an existing file is left intact.
// - Loading checks magic, version, length and checksum before parsing anything, then every
//   count against the layout and against the bytes present before allocating. Any problem
//   throws faiss::FaissException naming it (wrong magic, "file format version N is newer than
//   this pslerp (1)", truncated, checksum mismatch, inconsistent sizes); nothing is returned
//   half-loaded.
// - A loaded index answers every search as the saved one did and continues the same key
//   stream when seeded. Not saved: clamped_count() (counts since creation).
// - Compatibility: readers accept every version up to their own; a writer changing the layout
//   bumps the version. Little-endian hosts only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "index/IndexProtectedSlerp.h"

namespace pslerp {

/// Format version written by this build.
constexpr uint32_t kIndexFormatVersion = 1;

/// Writes `index` to `path` atomically (see above).
void write_index(const IndexProtectedSlerp& index, const std::string& path);
/// Reads an index written by write_index.
std::unique_ptr<IndexProtectedSlerp> read_index(const std::string& path);

/// The file's bytes, in memory.
std::vector<uint8_t> serialize_index(const IndexProtectedSlerp& index);
/// @param data  size bytes as produced by serialize_index or read from a file
std::unique_ptr<IndexProtectedSlerp> deserialize_index(const uint8_t* data, size_t size);

/// The 64-bit checksum of the format (four multiply-rotate lanes over 32-byte stripes, then an
/// avalanche). Exposed for tests that forge files with valid checksums.
uint64_t io_checksum(const uint8_t* data, size_t size);

}  // namespace pslerp
