#include "index/kernels/scan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "index/kernels/batch_pass.h"
#include "index/kernels/coeffs.h"
#include "index/kernels/half.h"

namespace pslerp::kernels {

bool simd_capped_at(const char* level) {
    const char* force = std::getenv("PSLERP_SIMD");
    return force && std::strcmp(force, level) == 0;
}

const KernelTable& kernels() {
    static const KernelTable& chosen = [&]() -> const KernelTable& {
        if (simd_capped_at("scalar")) return scalar_kernels();
        if (const KernelTable* t = avx2_kernels()) return *t;
        return scalar_kernels();
    }();
    return chosen;
}

CodeLayout code_layout(const Layout& L) {
    CodeLayout c{};
    c.template_offset = 0;
    if (L.half) {
        // halves, each array padded to whole floats
        c.key_offset = (L.vec_floats() + 1) / 2;
        c.weights_offset = c.key_offset + (L.key_floats() + 1) / 2;
    } else {
        c.key_offset = L.vec_floats();
        c.ke_offset = c.key_offset + L.key_floats();
        c.kmk_offset = c.ke_offset + L.group_floats();
        c.weights_offset = c.kmk_offset + L.group_floats();
    }
    c.score_offset = c.weights_offset + L.group_floats();
    c.mask_offset = (c.score_offset + 1) * sizeof(float);
    c.code_size = (c.mask_offset + L.mask_bytes() + 3) / 4 * 4;
    return c;
}

Entries code_entries(const Layout& L, const uint8_t* codes) {
    const CodeLayout c = code_layout(L);
    const float* f = reinterpret_cast<const float*>(codes);
    const size_t stride = c.code_size / sizeof(float);
    Entries e;
    e.layout = L;
    if (L.half) {
        e.templates_h = reinterpret_cast<const uint16_t*>(f + c.template_offset);
        e.keys_h = reinterpret_cast<const uint16_t*>(f + c.key_offset);
        e.template_stride = e.key_stride = c.code_size / sizeof(uint16_t);
    } else {
        e.templates = f + c.template_offset;
        e.keys = f + c.key_offset;
        e.ke = f + c.ke_offset;
        e.kmk = f + c.kmk_offset;
        e.template_stride = e.key_stride = stride;
    }
    e.weights = f + c.weights_offset;
    e.offsets = f + c.score_offset;
    e.masks = codes + c.mask_offset;
    e.group_stride = e.offset_stride = stride;
    e.mask_stride = c.code_size;
    return e;
}

void unpack_row(const Entries& e, int64_t j, float* templ, float* key) {
    const Layout& L = e.layout;
    if (L.half) {
        const uint16_t* th = e.templates_h + j * e.template_stride;
        const uint16_t* kh = e.keys_h + j * e.key_stride;
        for (size_t i = 0; i < L.vec_floats(); ++i) templ[i] = half_to_float(th[i]);
        for (size_t i = 0; i < L.key_floats(); ++i) key[i] = half_to_float(kh[i]);
        return;
    }
    std::memcpy(templ, e.templates + j * e.template_stride, L.vec_floats() * sizeof(float));
    std::memcpy(key, e.keys + j * e.key_stride, L.key_floats() * sizeof(float));
}

// score_block()'s and score_block_into()'s choice: the batched table for kBatchMinQueries or
// more queries (unless PSLERP_SIMD=scalar), else kernels().
static const KernelTable& block_kernels(int64_t nq) {
    const KernelTable& chosen = kernels();
    return nq >= kBatchMinQueries && &chosen != &scalar_kernels() ? *batch_kernels() : chosen;
}

int64_t score_block(const Entries& e, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                    int64_t ld) {
    return block_kernels(nq).score_range(e, queries, nq, j0, j1, out, ld);
}

int64_t score_block_into(const Entries& e, const float* queries, int64_t nq, int64_t j0, int64_t j1,
                         ScoreSink& sink) {
    const KernelTable& chosen = block_kernels(nq);
    if (chosen.score_into) return chosen.score_into(e, queries, nq, j0, j1, sink);
    // The per-entry kernels write a matrix: blocks of kBlock entries through a per-thread tile.
    constexpr int64_t kBlock = 1024;
    thread_local std::vector<float> tile;
    tile.resize(size_t(nq) * kBlock);
    int64_t clamped = 0;
    for (int64_t b0 = j0; b0 < j1; b0 += kBlock) {
        const int64_t b1 = std::min(j1, b0 + kBlock);
        clamped += chosen.score_range(e, queries, nq, b0, b1, tile.data(), kBlock);
        sink.take(0, nq, b0, b1 - b0, tile.data(), 1, kBlock);
    }
    return clamped;
}

// AVX-512F with the OS saving its registers (GCC's and clang's __builtin_cpu_supports check
// XGETBV), in this file compiled for the baseline: the AVX-512 file runs nothing before this.
static bool cpu_has_avx512f() { return __builtin_cpu_supports("avx512f"); }

const RatioPasses* avx512_ratio_passes() {
    static const RatioPasses* passes = cpu_has_avx512f() ? avx512_ratio_passes_unchecked() : nullptr;
    return passes;
}

const char* simd_level() {
    const KernelTable& chosen = kernels();
    if (&chosen == &scalar_kernels()) return chosen.name;
    return batch_kernels() != batch_avx2_kernels() ? "avx2, batches avx512" : chosen.name;
}

void prepare_query(const Layout& L, const float* xn, const float* t, float* out) {
    const int d = L.group_dim;
    float* q = out;
    float* q2 = out + L.vec_floats();
    float* tt = out + 2 * L.vec_floats();
    std::memset(out, 0, L.query_floats() * sizeof(float));
    for (int g = 0; g < L.groups; ++g) {
        const int b = g / kLanes, l = g % kLanes;
        for (int i = 0; i < d; ++i) {
            const size_t o = (static_cast<size_t>(b) * d + i) * kLanes + l;
            q[o] = xn[g * d + i];
            q2[o] = xn[g * d + i] * xn[g * d + i];
        }
        tt[g] = t[g];
    }
}

namespace {

// The exact ratio sin(t theta) / sin((1-t) theta) at theta = acos(c), in double.
double exact_ratio(double t, double c) {
    const double th = std::acos(std::min(std::max(c, -1.0), 1.0));
    return th > 0.0 ? std::sin(t * th) / std::sin((1.0 - t) * th) : t / (1.0 - t);
}

}  // namespace

SlerpRatio::SlerpRatio(float t_) : t(t_) {
    // r(c) = b'/a' as a polynomial in s = sqrt(1 + c). In s, r has no singularity on the clamped
    // range s in [sqrt(1 + kAntipodalCosF), sqrt(2)] (the branch point of acos at c = -1 is s = 0,
    // where r is analytic in s; the nearest singularity is at s = -sqrt(2)), so a short
    // polynomial fits it. Per number of terms n (4, 8, 12): interpolate at n Chebyshev nodes of
    // that range (near-minimax), expand to powers of s in double, round to float, and keep the
    // fewest terms whose relative error, evaluated in float as the kernels do, stays within
    // 1e-6 on a grid of c in [kAntipodalCosF, 1].
    constexpr int kMax = 12;
    const double tt = t;
    if (!(tt >= 0.0 && tt < 1.0)) return;
    const double s0 = std::sqrt(1.0 + double(kAntipodalCosF)), s1 = std::sqrt(2.0);
    const double mid = 0.5 * (s1 + s0), half = 0.5 * (s1 - s0);
    for (int n = 4; n <= kMax; n += 4) {
        // Chebyshev coefficients in x = (s - mid) / half.
        double ch[kMax] = {};
        for (int k = 0; k < n; ++k) {
            const double a = std::acos(-1.0) * (k + 0.5) / n, x = std::cos(a), s = mid + half * x;
            const double f = exact_ratio(tt, s * s - 1.0);
            for (int j = 0; j < n; ++j) ch[j] += 2.0 / n * f * std::cos(j * a);
        }
        ch[0] *= 0.5;
        // Clenshaw over polynomials in s: b_j = ch_j + 2 x(s) b_{j+1} - b_{j+2}, x(s) = (s - mid) / half;
        // the sum is ch_0 + x b_1 - b_2.
        double b1[kMax + 1] = {}, b2[kMax + 1] = {};
        auto times_x = [&](const double* p, double* out) {  // out = x(s) * p (degrees < kMax)
            for (int i = kMax; i >= 0; --i) out[i] = ((i > 0 ? p[i - 1] : 0.0) - mid * p[i]) / half;
        };
        for (int j = n - 1; j >= 1; --j) {
            double xb[kMax + 1], bj[kMax + 1];
            times_x(b1, xb);
            for (int i = 0; i <= kMax; ++i) bj[i] = 2.0 * xb[i] - b2[i] + (i == 0 ? ch[j] : 0.0);
            std::copy(b1, b1 + kMax + 1, b2);
            std::copy(bj, bj + kMax + 1, b1);
        }
        double xb[kMax + 1], poly[kMax + 1];
        times_x(b1, xb);
        for (int i = 0; i <= kMax; ++i) poly[i] = xb[i] - b2[i] + (i == 0 ? ch[0] : 0.0);
        float coef[kMax] = {};
        for (int i = 0; i < n; ++i) coef[i] = float(poly[i]);
        double worst = 0.0;
        for (int i = 0; i <= 4096; ++i) {
            const float c = kAntipodalCosF + (1.0f - kAntipodalCosF) * float(i) / 4096.0f;
            const float s = std::sqrt(1.0f + c);
            float p = coef[n - 1];
            for (int k = n - 2; k >= 0; --k) p = std::fma(p, s, coef[k]);
            const double exact = exact_ratio(tt, double(c));
            worst = std::max(worst, std::fabs(double(p) - exact) / std::max(std::fabs(exact), 1e-30));
        }
        if (worst <= 1e-6) {
            std::copy(coef, coef + kMax, r);
            terms = n;
            ok = true;
            return;
        }
    }
}

SlerpRatio cached_slerp_ratio(float t) {
    // A search has one t, or one per group; t that follows the probe never gets here.
    thread_local std::vector<SlerpRatio> cache;
    for (const SlerpRatio& r : cache) {
        if (r.t == t) return r;
    }
    if (cache.size() >= 64) cache.clear();
    cache.emplace_back(t);
    return cache.back();
}

}  // namespace pslerp::kernels
