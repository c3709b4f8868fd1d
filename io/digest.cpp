#include "io/digest.h"

#include <sodium.h>

#include <stdexcept>

namespace pslerp {

std::string sha256_hex(const void* data, size_t n) {
    static const bool ready = sodium_init() >= 0;
    if (!ready) throw std::runtime_error("libsodium failed to initialise");
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, static_cast<const unsigned char*>(data), n);
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    return std::string(hex, 2 * crypto_hash_sha256_BYTES);
}

}  // namespace pslerp
