// Index files: one self-contained, versioned, checksummed file per pslerp index (exhaustive
// IndexProtectedSlerp or IndexIVFProtectedSlerp). FAISS's own read_index/write_index cannot be
// extended from outside, so pslerp has its own container and nests the IVF quantizer in it
// with faiss::write_index.
//
// Format version 2. Every integer and float is little-endian; bools and enums are one byte;
// a vector is a u64 element count followed by its elements.
//
//   offset  size  field
//   0       8     magic "PSLERPIX"
//   8       4     u32 format version (2)
//   12      4     u32 header length in bytes (32; sections start there)
//   16      8     u64 file length in bytes, checksum included
//   24      4     u32 number of sections (4 exhaustive, 5 IVF)
//   28      4     u32 reserved, 0
//   32      ...   sections, in this order, each: char[4] tag, u64 payload length, payload
//     "PARM" Params: every field in Params::visit order (plugin/params.h), each as i32 (int),
//            f32 (float), u8 (bool, enum), vec<i32> or vec<f32> (lists); in version 2:
//            groups, group_dim, t, t_minus_importance, key_mode, drop, drop_count,
//            drop_with_replacement, mapping, drop_min, drop_max, interval_bounds,
//            interval_counts, intervals_by_median, fill, importance, importance_weights,
//            attention_wq, attention_wk, attention_temperature, weighting; version 3 adds
//            norm and cohort_size, version 4 storage (older files: fp32). A field added to
//            Params, or moved, is a new format version.
//     "CENT" Centering: vec<f32> mean (0 or D), vec<f32> rotation (0 or D*D, row-major)
//     "OPTS" u8 kind (0 exhaustive, 1 IVF), u8 train_pca, u64 streams_used, u8 has_seed,
//            u64 seed (0 when unseeded), i64 ntotal (live entries, checked), i64 next_id;
//            IVF only: u64 nlist, u64 nprobe
//   exhaustive:
//     "STOR" EntryStorage: i32 groups, i32 group_dim, u8 shared_key (the kernels' layout),
//            u64 rows, then vec<f32> templates, vec<f32> keys, vec<u8> masks, vec<f32> ke,
//            vec<f32> kmk, vec<f32> weights, vec<i64> ids, vec<u8> removed, each of
//            rows * (per-row size of the layout) elements (version 3: vec<f32> offsets after
//            the weights). With storage fp16 (version 4): templates and keys are vec<u16>
//            halves, and ke and kmk are absent (the kernels recompute them)
//   IVF:
//     "QUAN" vec<u8>: the quantizer as faiss::write_index writes it (nlist centroids, L2)
//     "LIST" u64 nlist, u64 code_size, then per list: u64 n, i64 ids[n], u8 codes[n * code_size]
//            (codes in kernels::code_layout(), which has the halves' layout for fp16)
//   end-8   8     u64 checksum: pslerp's 64-bit hash (io_checksum) of every byte before it
//
// Version 1 (exhaustive only, with the retired coarse stage: OPTS also held k_factor,
// range_shortlist and the coarse embedding; a fifth section "CRSE" held the coarse index) still
// opens, as an exhaustive index; a file that had a coarse index gets a warning on stderr and
// loses it.
//
// Guarantees:
// - Saving is atomic: a temporary file in the target's folder, fsync, rename, fsync of the
//   folder; on failure the temporary file is removed and an existing file is left intact.
// - Loading checks magic, version, length and checksum before parsing anything, then every
//   count against the layout and against the bytes present before allocating. Any problem
//   throws faiss::FaissException naming it (wrong magic, "file format version N is newer than
//   this pslerp (2)", truncated, checksum mismatch, inconsistent sizes); nothing is returned
//   half-loaded.
// - The checksum only detects accidents: a forged file can carry a valid one, so everything is
//   also validated for what it is. Parameters by Params::validate(); every stored entry (STOR
//   rows and LIST codes) by check_entry() (finite, unit-norm keys and templates, ke and kmk
//   consistent, weights >= 0 summing to 1, masks keeping a coordinate per group, padding zero)
//   and its id (in [0, 2^63 - 1)); the centring (finite, rotation rows of unit norm). The
//   nested quantizer must be an IndexFlatL2 ("IxF2") or an IndexHNSWFlat ("IHNf") over one:
//   its bytes are walked before faiss::read_index sees them (every count FAISS allocates for
//   is checked against the bytes present, since FAISS itself allocates up to 2^40 elements
//   from a count and leaks on errors), and an HNSW graph is checked after loading (levels,
//   offsets, every neighbour in [-1, ntotal) and on its level, entry point on the top level,
//   bounded search widths).
// - read_index reads only regular files: a FIFO or a device is refused without blocking. The
//   file is read (pread), never mapped: one truncated while it loads gives an error, never
//   SIGBUS. Memory: the index itself plus one list (IVF) or the quantizer's bytes at a time.
// - A loaded index answers every search as the saved one did. It records the seed of a seeded
//   index and the stream position; seeded again (set_seed) with that seed it continues the
//   same key stream. Not saved: clamped_count() (counts since creation).
// - Compatibility: readers accept every version up to their own; a writer changing the layout
//   bumps the version. Little-endian hosts only.
//
// Sealed files (io/seal.h documents the envelope: a clear 64-byte header, then the payload in
// crypto_secretstream_xchacha20poly1305 chunks of 1 MiB, each authenticated with the header as
// associated data). What write_index(index, path, secret) seals is, in full:
//
//   char[4] "FRAM", u8 has_frame (0 or 1), u8[32] frame seed (zero without a frame),
//   then the whole clear index file above (magic, header, sections, checksum).
//
// So every byte is encrypted and authenticated: templates, keys, masks, per-entry constants,
// centring, IVF centroids, and the frame seed, which exists nowhere else (an index with a frame
// cannot be written unsealed). Only the envelope's header is readable without the secret, which
// is how `pslerp info` tells a sealed file. After authentication the payload is parsed with
// every check of the clear format: the secret's holder is trusted not to forge, but a bug in a
// writer still gives an error rather than a crash. Load decrypts the file chunk by chunk as it
// parses it, each chunk authenticated before any of its bytes is used (memory: one chunk beyond
// the index; the inner checksum is not recomputed, authentication covers it), and checks at the
// end that the stream was whole; search is unaffected. Writing builds the payload in memory
// (a second copy of the index) and seals it.
//
// The secret frame: a Haar-random orthogonal matrix per group of d coordinates (io/seal.h
// derive_frame, from a random 32-byte seed per gallery; the matrices are re-derived at load and
// never written), applied after the centring to every enrolled feature and every probe
// (plugin/scheme.h Centering). The scheme then works on rotated features: the coordinate drop
// acts in the rotated basis, so scores are not those of the same index without a frame, but
// exactly those of the scheme without a frame given F x and F q (tests/cpp/test_seal.cpp). The
// per-group cosine geometry is kept; accuracy can move a little, since the drop now removes
// mixtures of the centred coordinates rather than single ones. A rotation, unlike a coordinate
// permutation, leaves no coordinate magnitudes to compare across galleries: without the seed,
// the features recovered from stolen templates, keys and masks are in an unknown rotated frame
// and fail as probes, but two galleries still link along their principal axes, which any
// orthogonal frame keeps (bench/RESULTS.md section 4, bench_seal). Self-attention importance,
// which reads coordinates within a group, is refused with a frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "io/seal.h"

namespace pslerp {

/// Format version written by this build.
constexpr uint32_t kIndexFormatVersion = 4;

/// Writes `index` (an IndexProtectedSlerp or IndexIVFProtectedSlerp) to `path` atomically,
/// sealed under `secret` (non-empty; see "Sealed files" above).
void write_index(const faiss::Index& index, const std::string& path, const Secret& secret);
/// Writes the clear format: only when asked for (anyone who reads the file gets the keys and
/// templates; edits to it are not detected). Refused for an index with a secret frame.
void write_index_unsealed(const faiss::Index& index, const std::string& path);
/// Reads an index written by write_index or write_index_unsealed: an IndexProtectedSlerp or an
/// IndexIVFProtectedSlerp. A sealed file needs its secret; an unsealed one is opened only
/// without a secret (with a warning on stderr), so a forged clear file cannot stand in for a
/// sealed one where the caller has a secret.
std::unique_ptr<faiss::Index> read_index(const std::string& path, const Secret& secret = Secret());

/// The file's bytes, in memory, sealed under `secret`.
std::vector<uint8_t> serialize_index(const faiss::Index& index, const Secret& secret);
/// The clear format, in memory (as write_index_unsealed).
std::vector<uint8_t> serialize_index_unsealed(const faiss::Index& index);
/// @param data  size bytes as produced by serialize_index* or read from a file
std::unique_ptr<faiss::Index> deserialize_index(const uint8_t* data, size_t size, const Secret& secret = Secret());

/// What `pslerp info` can say of a file without its secret.
struct IndexFileSummary {
    bool sealed = false;
    uint32_t version = 0;        ///< envelope version (sealed) or format version (clear)
    uint64_t payload_bytes = 0;  ///< sealed: the encrypted payload's length
};
/// Magic and header of an index file, checked for consistency only. Throws like read_index.
IndexFileSummary peek_index_file(const std::string& path);

/// Gives an empty index (no entries; an IVF not yet trained) a secret frame with a seed from
/// the OS generator. Throws when it has entries or is trained IVF, or already has a frame.
void enable_secret_frame(faiss::Index& index);
/// The same with a given 32-byte seed: for tests only.
void set_secret_frame(faiss::Index& index, const uint8_t* seed);
/// Whether the index has a secret frame.
bool has_secret_frame(const faiss::Index& index);

/// A FAISS IVF quantizer as faiss::write_index writes it, with the checks read_index applies to
/// the QUAN section: an IndexFlatL2 or IndexHNSWFlat over an IndexFlatL2, of dimension d (any
/// up to 2^20 when d <= 0), its counts bounded by `size` before FAISS allocates, its HNSW graph
/// and centroids validated. For quantizers received from outside (the Python bindings).
std::unique_ptr<faiss::Index> deserialize_quantizer(const uint8_t* data, size_t size, int64_t d = 0);

/// The 64-bit checksum of the format (four multiply-rotate lanes over 32-byte stripes, then an
/// avalanche). Exposed for tests that forge files with valid checksums.
uint64_t io_checksum(const uint8_t* data, size_t size);

}  // namespace pslerp
