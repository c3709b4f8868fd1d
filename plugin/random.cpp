#include "plugin/random.h"

#include <sys/random.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

namespace pslerp {

void os_random_bytes(void* out, size_t n) {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("pslerp: OS random generator failed: ") + std::strerror(errno));
        }
        p += got;
        n -= static_cast<size_t>(got);
    }
}

void warn_seeded(const char* what) {
    std::fprintf(stderr,
                 "pslerp: WARNING: %s: keys, masks and fills are now reproducible from the seed; for tests and "
                 "benchmarks only, never for real enrolments\n",
                 what);
}

double Rng::uniform() {
    return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

uint32_t Rng::below(uint32_t n) {
    // Lemire's multiply-shift with rejection: unbiased.
    uint64_t m = static_cast<uint64_t>(static_cast<uint32_t>(next_u64())) * n;
    uint32_t low = static_cast<uint32_t>(m);
    if (low < n) {
        const uint32_t threshold = static_cast<uint32_t>(-n) % n;
        while (low < threshold) {
            m = static_cast<uint64_t>(static_cast<uint32_t>(next_u64())) * n;
            low = static_cast<uint32_t>(m);
        }
    }
    return static_cast<uint32_t>(m >> 32);
}

double Rng::normal() {
    if (spare_normal_) {
        double v = *spare_normal_;
        spare_normal_.reset();
        return v;
    }
    // Marsaglia's polar method.
    double u, v, s;
    do {
        u = 2.0 * uniform() - 1.0;
        v = 2.0 * uniform() - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    spare_normal_ = v * f;
    return u * f;
}

namespace {

class OsRng final : public Rng {
  public:
    uint64_t next_u64() override {
        if (pos_ == kWords) {
            os_random_bytes(buf_, sizeof(buf_));
            pos_ = 0;
        }
        return buf_[pos_++];
    }
    ~OsRng() override {
        // Do not leave unused key material in freed memory.
        volatile uint64_t* p = buf_;
        for (size_t i = 0; i < kWords; ++i) p[i] = 0;
    }

  private:
    static constexpr size_t kWords = 256;
    uint64_t buf_[kWords];
    size_t pos_ = kWords;
};

class SeededRng final : public Rng {
  public:
    explicit SeededRng(uint64_t seed) : gen_(seed) {}
    uint64_t next_u64() override { return gen_(); }

  private:
    std::mt19937_64 gen_;
};

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

}  // namespace

std::unique_ptr<Rng> RandomSource::stream(uint64_t index) const {
    if (!seed_) return std::make_unique<OsRng>();
    return std::make_unique<SeededRng>(splitmix64(*seed_ ^ splitmix64(index)));
}

}  // namespace pslerp
