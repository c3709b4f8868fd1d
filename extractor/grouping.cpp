#include "extractor/grouping.h"

#include <cmath>

namespace pslerp {

void NormalizeGroups(float* x, int64_t n, int groups, int group_dim) {
    for (int64_t i = 0; i < n * groups; ++i) {
        float* g = x + i * group_dim;
        double norm2 = 0;
        for (int j = 0; j < group_dim; ++j) norm2 += static_cast<double>(g[j]) * g[j];
        if (norm2 <= 0) continue;
        const float inv = static_cast<float>(1.0 / std::sqrt(norm2));
        for (int j = 0; j < group_dim; ++j) g[j] *= inv;
    }
}

void GroupCosines(const float* a, const float* b, int groups, int group_dim, float* cosines) {
    for (int g = 0; g < groups; ++g) {
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < group_dim; ++j) {
            const double x = a[g * group_dim + j], y = b[g * group_dim + j];
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        cosines[g] = aa > 0 && bb > 0 ? static_cast<float>(ab / std::sqrt(aa * bb)) : 0.f;
    }
}

}  // namespace pslerp
