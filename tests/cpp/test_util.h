// Helpers shared by the GoogleTest files.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace pslerp::testing_util {

/// n x dim standard normal features from a seeded generator.
inline std::vector<float> random_features(int64_t n, int dim, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> N;
    std::vector<float> x(n * dim);
    for (auto& v : x) v = N(g);
    return x;
}

}  // namespace pslerp::testing_util
