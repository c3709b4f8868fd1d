// IEEE 754 binary16 ("half") conversions, portable: the stored form of Storage::kFp16 and the
// scalar kernel's reading of it. The AVX2 kernel reads halves with F16C (_mm256_cvtph_ps),
// which gives the same floats: every half is exactly a float.
#pragma once

#include <cstdint>
#include <cstring>

namespace pslerp::kernels {

/// The float a half stands for (exact; Inf and NaN stay so).
inline float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        // zero or subnormal: mantissa * 2^-24, exact in float
        float f = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
        std::memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

/// The nearest half to f, ties to even (as F16C's _MM_FROUND_TO_NEAREST_INT); beyond the half
/// range +-Inf, NaN stays NaN.
inline uint16_t float_to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00u;   // NaN
    if (x >= 0x477ff000u) return sign | 0x7c00u;  // at least 65520: rounds to Inf
    auto round = [](uint32_t value, uint32_t dropped_bits, uint32_t kept) {
        const uint32_t rest = value & ((1u << dropped_bits) - 1), halfway = 1u << (dropped_bits - 1);
        return kept + (rest > halfway || (rest == halfway && (kept & 1u)));
    };
    if (x < 0x38800000u) {                  // below 2^-14: a subnormal half or zero
        if (x < 0x33000000u) return sign;  // at most 2^-25: rounds to zero
        const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;  // f = m * 2^(e - 150) = (m >> shift) * 2^-24
        return sign | static_cast<uint16_t>(round(m, shift, m >> shift));
    }
    // Normal: rebias the exponent (127 -> 15) and keep 10 of the 23 mantissa bits; a carry out
    // of the mantissa moves into the exponent, as it should.
    return sign | static_cast<uint16_t>(round(x, 13, (x - (112u << 23)) >> 13));
}

}  // namespace pslerp::kernels
