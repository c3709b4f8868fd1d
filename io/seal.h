// Sealing: a file's bytes encrypted and authenticated under a caller's 32-byte secret, with
// libsodium (pslerp writes no crypto of its own). Index files are sealed through this
// (index/index_io.h documents what is inside).
//
// Envelope version 1. Integers little-endian.
//
//   offset  size  field
//   0       8     magic "PSLERPSE"
//   8       4     u32 envelope version (1)
//   12      4     u32 header length (64; chunks start there)
//   16      8     u64 payload length in bytes (the clear payload)
//   24      4     u32 chunk length (payload bytes per chunk, 1 MiB when written here)
//   28      4     u32 flags: bit 0 = sealed (always set in version 1), others 0
//   32      24    crypto_secretstream_xchacha20poly1305 header (its random 192-bit nonce)
//   56      8     reserved, 0
//   64      ...   ceil(payload / chunk) chunks (one when the payload is empty), each the chunk's
//                 payload bytes encrypted plus 17 bytes (crypto_secretstream ABYTES); the last
//                 one is tagged FINAL, none before it. Every chunk takes the 64 header bytes as
//                 associated data.
//
// Keys. The stream key is crypto_kdf_derive_from_key(id 1, context "PSLRSEAL", secret): the
// secret itself is never used as a key, so further uses get their own subkeys. libsodium's
// crypto_kdf (BLAKE2b keyed by the secret, with a subkey id and a context) is used rather than
// HKDF because Debian's libsodium 1.0.18 has no crypto_kdf_hkdf_*; the secret is already a
// uniform 32-byte key, which is the case crypto_kdf is made for (HKDF's extract step is there
// for keys that are not uniform). Each file gets a fresh random stream nonce, so one secret
// seals any number of files.
//
// Guarantees: any change to any byte (header, chunk, order, length) is refused; a sealed file
// says it is sealed (is_sealed, peek) without the secret; opening distinguishes "no secret
// given", "truncated" (the file is shorter than its header says) and "wrong secret or file
// modified" (AEAD cannot tell those apart). Memory: one chunk (SealedReader), or the payload
// plus one chunk (open_sealed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/file.h"

namespace pslerp {

/// A 32-byte secret (a key-encryption key). Wiped on destruction; never printed: it has no
/// stream operator and its bytes are reachable only through bytes().
class Secret {
  public:
    static constexpr size_t kBytes = 32;

    Secret();  ///< all zero, empty() until filled
    Secret(const Secret& other);
    Secret& operator=(const Secret& other);
    ~Secret();

    /// From exactly 32 bytes; InvalidArgument otherwise.
    static absl::StatusOr<Secret> from_bytes(const void* data, size_t size);
    /// From 64 hex digits (either case), surrounding white space ignored: the format of secret
    /// files and of the environment variables.
    static absl::StatusOr<Secret> from_hex(const std::string& text);
    /// From a secret file (what `pslerp keygen` writes): a regular file, not readable or
    /// writable by group or others (a clear error otherwise), holding from_hex's format.
    static absl::StatusOr<Secret> from_file(const std::string& path);
    /// From the environment variable `name` (from_hex's format); NotFound when it is unset.
    static absl::StatusOr<Secret> from_env(const std::string& name);

    bool empty() const { return !set_; }
    const uint8_t* bytes() const { return bytes_; }
    /// 64 lowercase hex digits: only for writing a secret file.
    std::string to_hex() const;

  private:
    uint8_t bytes_[kBytes];
    bool set_ = false;
};

/// A new secret from the OS generator (randombytes_buf).
Secret generate_secret();

/// Writes `secret` to a new file at `path` (mode 0600, atomically); refuses an existing file
/// unless `overwrite`.
absl::Status write_secret_file(const std::string& path, const Secret& secret, bool overwrite);

/// Whether `src` starts with the sealed envelope's magic (no secret needed).
bool is_sealed(const ByteSource& src);

/// What the clear header says, without the secret.
struct SealInfo {
    uint32_t version = 0;
    uint64_t payload_bytes = 0;
    uint32_t chunk_bytes = 0;
    uint64_t expected_file_bytes = 0;  ///< what a complete file of this header measures
};
/// The header of a sealed source, checked for consistency (not authenticity: that needs the
/// secret). InvalidArgument naming the problem.
absl::StatusOr<SealInfo> peek_sealed(const ByteSource& src);

/// Seals a payload of known length as it is written: the header, then each chunk as soon as it
/// is full, handed to `emit` in file order. Memory: one chunk. write() more than the announced
/// length, or finish() short of it, fails (InvalidArgument).
class SealWriter {
  public:
    using Emit = std::function<absl::Status(const uint8_t* bytes, size_t n)>;
    /// @param chunk_bytes  payload bytes per chunk (tests use small ones)
    SealWriter(const Secret& secret, uint64_t payload_bytes, Emit emit, uint32_t chunk_bytes = 1u << 20);
    SealWriter(const SealWriter&) = delete;
    SealWriter& operator=(const SealWriter&) = delete;
    ~SealWriter();
    absl::Status write(const void* bytes, size_t n);
    /// Emits the last chunk (tagged FINAL); the writer is spent afterwards.
    absl::Status finish();

  private:
    absl::Status push(bool last);

    Emit emit_;
    uint64_t payload_bytes_, written_ = 0;
    uint32_t chunk_bytes_;
    std::vector<uint8_t> header_, plain_, cipher_;
    void* state_ = nullptr;  ///< crypto_secretstream state (opaque here)
    absl::Status status_;
    bool finished_ = false;
};

/// Seals `payload` (size bytes) under `secret`, appending the file's bytes to `out`.
void seal_bytes(const Secret& secret, const uint8_t* payload, size_t size, std::vector<uint8_t>* out,
                uint32_t chunk_bytes = 1u << 20);

/// A sealed source read in order: the payload's bytes are decrypted chunk by chunk as they are
/// read, each chunk authenticated before any of its bytes is returned. Reads must not go back
/// to an earlier chunk (FailedPrecondition); memory is one chunk. Errors as open_sealed's.
/// Not for concurrent use.
class SealedReader : public ByteSource {
  public:
    /// Checks the header (open_sealed's checks, all but the chunks') and the secret; `src` must
    /// outlive the reader.
    static absl::StatusOr<std::unique_ptr<SealedReader>> open(const ByteSource& src, const Secret& secret);
    ~SealedReader() override;
    /// The payload's length.
    uint64_t size() const override { return info_.payload_bytes; }
    absl::Status read_at(uint64_t offset, void* out, uint64_t n) const override;
    /// Decrypts the chunks not read yet and checks that the last one ends the stream: call
    /// after the last read, before trusting that the payload was whole.
    absl::Status finish() const;

  private:
    SealedReader(const ByteSource& src, const SealInfo& info);
    absl::Status next_chunk() const;  ///< decrypts chunk `chunk_ + 1` into plain_

    const ByteSource* src_;
    SealInfo info_;
    uint8_t header_[64];
    uint64_t chunks_ = 0;
    mutable void* state_ = nullptr;    ///< crypto_secretstream state (opaque here)
    mutable int64_t chunk_ = -1;       ///< the chunk in plain_, -1 before the first
    mutable std::vector<uint8_t> plain_, cipher_;
    mutable absl::Status failed_;      ///< the first failure, repeated afterwards
};

/// Opens a sealed source: the payload, or
/// - FailedPrecondition "<name>: the file is sealed and no secret was given ..." when `secret` is empty,
/// - InvalidArgument "truncated sealed file ..." (or another header problem),
/// - PermissionDenied "... wrong secret or file modified" when authentication fails.
absl::StatusOr<std::vector<uint8_t>> open_sealed(const ByteSource& src, const Secret& secret);

/// The per-gallery secret frame (index/index_io.h): a Haar-random orthogonal group_dim x
/// group_dim matrix F_g per group, derived from a 32-byte `seed` with crypto_kdf (context
/// "PSLRFRAM", one subkey per group) and libsodium's deterministic generator (standard normals by
/// Box-Muller, QR by modified Gram-Schmidt in double). Returns groups * group_dim * group_dim
/// floats, row-major per group: y_g = F_g x_g. Throws std::invalid_argument past the limits below
/// (callers check them first and give their own error).
constexpr int kMaxFrameGroupDim = 1024;
constexpr int64_t kMaxFrameFloats = int64_t(1) << 24;  ///< groups * group_dim^2: 64 MB, seconds to derive
std::vector<float> derive_frame(const uint8_t* seed, int groups, int group_dim);

}  // namespace pslerp
