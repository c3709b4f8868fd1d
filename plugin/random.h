// Randomness for keys, drop masks and fill values. Keys come from the operating system's
// cryptographically secure generator (getrandom); a seeded generator exists only for tests and
// benchmarks that ask for reproducible output.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

namespace pslerp {

/// A stream of random 64-bit words and the distributions the scheme draws from.
/// Not thread-safe: use one stream per thread (see RandomSource::stream).
class Rng {
  public:
    virtual ~Rng() = default;
    virtual uint64_t next_u64() = 0;

    /// Uniform in [0, 1).
    double uniform();
    /// Uniform integer in [0, n), without modulo bias.
    uint32_t below(uint32_t n);
    /// Standard normal.
    double normal();

  private:
    std::optional<double> spare_normal_;
};

/// Hands out independent streams. With no seed every stream reads the OS generator; with a
/// seed, stream i is a deterministic function of (seed, i), so results do not depend on the
/// number of threads that drew them.
class RandomSource {
  public:
    /// The OS generator (the only choice outside tests and benchmarks).
    RandomSource() = default;
    /// A reproducible source; never use for real enrolments. Quiet: code that takes a seed
    /// from a user for keys says so with warn_seeded().
    explicit RandomSource(uint64_t seed) : seed_(seed) {}

    std::unique_ptr<Rng> stream(uint64_t index) const;
    bool seeded() const { return seed_.has_value(); }

  private:
    std::optional<uint64_t> seed_;
};

/// Fills `n` bytes from the OS generator; throws std::runtime_error if it fails.
void os_random_bytes(void* out, size_t n);

/// One line on stderr saying that `what` (e.g. "set_seed") makes keys reproducible and is for
/// tests and benchmarks only. The seed itself is not printed.
void warn_seeded(const char* what);

}  // namespace pslerp
