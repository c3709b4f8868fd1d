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

SlerpRatio::SlerpRatio(float t_) : t(t_) {
    // r = b'/a' by power-series division, a'_k = s_k (1-t)^(2k+1), b'_k = s_k t^(2k+1), s_k the
    // Taylor coefficients of sinc in x^2; then the fewest of 4, 8, 12 terms whose relative error
    // on a grid of u in [0, acos(kAntipodalCosF)^2] stays within 1e-6 (float coefficients,
    // evaluated in double; the closed form then moves by about as much).
    constexpr int kMax = 12;
    const double tt = t, a0 = 1.0 - tt;
    if (!(tt >= 0.0 && tt < 1.0)) return;
    double s[kMax], a[kMax], b[kMax], series[kMax];
    double fact = 1.0;
    for (int k = 0; k < kMax; ++k) {
        if (k > 0) fact *= double(2 * k) * double(2 * k + 1);
        s[k] = (k % 2 ? -1.0 : 1.0) / fact;
        a[k] = s[k] * std::pow(a0, 2 * k + 1);
        b[k] = s[k] * std::pow(tt, 2 * k + 1);
    }
    for (int k = 0; k < kMax; ++k) {
        double v = b[k];
        for (int i = 1; i <= k; ++i) v -= a[i] * series[k - i];
        series[k] = v / a[0];
    }
    const double u_max = std::pow(std::acos(double(kAntipodalCosF)), 2);
    for (int n = 4; n <= kMax; n += 4) {
        double worst = 0.0;
        for (int i = 0; i <= 512; ++i) {
            const double u = u_max * i / 512, th = std::sqrt(u);
            const double sa = th > 0 ? std::sin(a0 * th) / th : a0, sb = th > 0 ? std::sin(tt * th) / th : tt;
            const double exact = sb / sa;
            double p = 0.0;
            for (int k = n - 1; k >= 0; --k) p = p * u + double(float(series[k]));
            worst = std::max(worst, std::fabs(p - exact) / std::max(std::fabs(exact), 1e-30));
        }
        if (worst <= 1e-6) {
            for (int k = 0; k < kMax; ++k) r[k] = k < n ? float(series[k]) : 0.0f;
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
