// SHA-256 digests (libsodium's crypto_hash_sha256; pslerp writes no crypto of its own): the
// model download's check (extractor) and the golden index files' identity (tests).
#pragma once

#include <cstddef>
#include <string>

namespace pslerp {

/// SHA-256 of n bytes at `data`, lowercase hex: what `sha256sum` prints.
std::string sha256_hex(const void* data, size_t n);
inline std::string sha256_hex(const std::string& bytes) { return sha256_hex(bytes.data(), bytes.size()); }

}  // namespace pslerp
