#include "index/kernels/scan.h"

#include <cstdlib>
#include <cstring>

namespace pslerp::kernels {

const KernelTable& kernels() {
    static const KernelTable& chosen = [&]() -> const KernelTable& {
        const char* force = std::getenv("PSLERP_SIMD");
        if (force && std::strcmp(force, "scalar") == 0) return scalar_kernels();
        if (const KernelTable* t = avx2_kernels()) return *t;
        return scalar_kernels();
    }();
    return chosen;
}

const char* simd_level() {
    return kernels().name;
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

}  // namespace pslerp::kernels
