#include "index/cohort.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "index/ProtectedIndex.h"
#include "io/digest.h"
#include "plugin/random.h"

#include <memory>

namespace pslerp {

const char* cohort_source_name(CohortSource source) {
    switch (source) {
        case CohortSource::kBuiltIn: return "built-in";
        case CohortSource::kTrain: return "train";
        case CohortSource::kUser: return "user";
    }
    return "?";
}

std::string Cohort::describe() const {
    if (source == CohortSource::kBuiltIn) return absl::StrCat("built-in isotropic model, sha256 ", digest.substr(0, 16));
    return absl::StrCat(cohort_source_name(source), ", fitted from ", fitted_from, " vectors, sha256 ",
                        digest.substr(0, 16));
}

namespace {

void set_digest(const Params& p, Cohort& c) {
    std::string bytes = absl::StrCat("pslerp-cohort G=", p.groups, " d=", p.group_dim, ":");
    bytes.append(reinterpret_cast<const char*>(c.moments.data()), c.moments.size() * sizeof(float));
    c.digest = sha256_hex(bytes);
}

}  // namespace

Cohort builtin_cohort(const Params& p) {
    Cohort c;
    set_digest(p, c);
    return c;
}

Cohort fit_cohort(const Params& p, int64_t n, const float* xn, CohortSource source) {
    const int G = p.groups, d = p.group_dim, D = p.dim();
    const int64_t fewest = min_cohort_fit(p);
    if (n < fewest) {
        throw InvalidInputError(absl::StrCat("pslerp: cohort: ", n, " vectors; the score normalisation's model needs at "
                                             "least ", fewest, " (of people who are not enrolled)"));
    }
    std::vector<double> m(size_t(G) * d * d, 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const float* x = xn + i * D;
        for (int g = 0; g < G; ++g) {
            const float* xg = x + g * d;
            double* mg = m.data() + size_t(g) * d * d;
            for (int a = 0; a < d; ++a) {
                if (!std::isfinite(xg[a])) {
                    throw InvalidInputError(absl::StrCat("pslerp: cohort: vector ", i, " holds a NaN or infinite value"));
                }
                for (int b = 0; b < d; ++b) mg[a * d + b] += double(xg[a]) * xg[b];
            }
        }
    }
    Cohort c;
    c.source = source;
    c.fitted_from = n;
    c.moments.resize(m.size());
    for (size_t j = 0; j < m.size(); ++j) c.moments[j] = static_cast<float>(m[j] / double(n));
    set_digest(p, c);
    return c;
}

namespace {

/// Lower Cholesky factor of group g's matrix, with a small ridge so that a singular one (features
/// in a subspace) still factors; false when it is not positive semi-definite.
bool cholesky(const float* a, int d, std::vector<double>& L) {
    double trace = 0;
    for (int i = 0; i < d; ++i) trace += a[i * d + i];
    const double ridge = 1e-6 * std::max(trace / d, 1e-12);
    L.assign(size_t(d) * d, 0.0);
    for (int j = 0; j < d; ++j) {
        double diag = a[j * d + j] + ridge;
        for (int k = 0; k < j; ++k) diag -= L[j * d + k] * L[j * d + k];
        if (!(diag > 0)) return false;
        L[j * d + j] = std::sqrt(diag);
        for (int i = j + 1; i < d; ++i) {
            double v = a[i * d + j];
            for (int k = 0; k < j; ++k) v -= L[i * d + k] * L[j * d + k];
            L[i * d + j] = v / L[j * d + j];
        }
    }
    return true;
}

}  // namespace

void check_cohort(const Params& p, Cohort& c) {
    const int G = p.groups, d = p.group_dim;
    auto bad = [&](const std::string& why) { throw faiss::FaissException("pslerp: cohort model: " + why); };
    if (c.source == CohortSource::kBuiltIn) {
        if (!c.moments.empty() || c.fitted_from != 0) bad("the built-in model holds no matrices");
    } else {
        if (c.moments.size() != size_t(G) * d * d) {
            bad(absl::StrCat(c.moments.size(), " values, expected ", G, " matrices of ", d, "x", d));
        }
        if (c.fitted_from < min_cohort_fit(p)) {
            bad(absl::StrCat("fitted from ", c.fitted_from, " vectors, fewer than any fit takes"));
        }
        std::vector<double> L;
        for (int g = 0; g < G; ++g) {
            const float* a = c.moments.data() + size_t(g) * d * d;
            for (int i = 0; i < d; ++i) {
                for (int j = 0; j < d; ++j) {
                    if (!std::isfinite(a[i * d + j]) || std::abs(a[i * d + j]) > 1.0f || a[i * d + j] != a[j * d + i]) {
                        bad(absl::StrCat("group ", g, " is not a finite symmetric matrix of unit vectors' moments"));
                    }
                }
            }
            if (!cholesky(a, d, L)) bad(absl::StrCat("group ", g, " is not positive semi-definite"));
        }
    }
    set_digest(p, c);
}

std::vector<float> cohort_samples(const Params& p, const Cohort& c) {
    const int G = p.groups, d = p.group_dim, D = p.dim();
    const int64_t m = p.cohort_size;
    std::vector<double> factors;  // G lower factors
    if (!c.moments.empty()) {
        std::vector<double> L;
        for (int g = 0; g < G; ++g) {
            if (!cholesky(c.moments.data() + size_t(g) * d * d, d, L)) {
                throw faiss::FaissException(absl::StrCat("pslerp: cohort model: group ", g, " does not factor"));
            }
            factors.insert(factors.end(), L.begin(), L.end());
        }
    }
    std::vector<float> out(size_t(m) * D);
    const RandomSource source(kCohortSeed);
    std::vector<double> z(d);
    for (int64_t i = 0; i < m; ++i) {
        const std::unique_ptr<Rng> rng = source.stream(uint64_t(i));
        for (int g = 0; g < G; ++g) {
            for (int a = 0; a < d; ++a) z[a] = rng->normal();
            float* y = out.data() + i * D + g * d;
            for (int a = 0; a < d; ++a) {
                double v = z[a];
                if (!factors.empty()) {
                    const double* L = factors.data() + size_t(g) * d * d;
                    v = 0;
                    for (int b = 0; b <= a; ++b) v += L[a * d + b] * z[b];
                }
                y[a] = static_cast<float>(v);
            }
        }
    }
    return out;
}

void normalize_entries(const kernels::Entries& e, int64_t n, const float* queries, int64_t m, float* weights,
                       float* offsets) {
    const kernels::Layout& L = e.layout;
    const int G = L.groups;
    const size_t gf = L.group_floats();
    const kernels::GroupCosinesFn cosines = kernels::kernels().group_cosines;
#pragma omp parallel if (n > 8)
    {
        std::vector<float> c(size_t(m) * gf);
        std::vector<double> mu(G), sd(G);
#pragma omp for schedule(dynamic, 8)
        for (int64_t j = 0; j < n; ++j) {
            cosines(e, queries, m, j, c.data());
            float* w = weights + j * e.group_stride;
            for (int g = 0; g < G; ++g) {
                double s = 0, s2 = 0;
                for (int64_t i = 0; i < m; ++i) {
                    const double v = c[i * gf + g];
                    s += v;
                    s2 += v * v;
                }
                mu[g] = s / m;
                sd[g] = std::max(std::sqrt(std::max(s2 / m - mu[g] * mu[g], 0.0)), kMinCohortSd);
            }
            double w2 = 0;
            for (int g = 0; g < G; ++g) w2 += double(w[g]) * w[g];
            const double S = std::max(std::sqrt(w2), kMinCohortSd);
            double b = 0;
            for (int g = 0; g < G; ++g) {
                const double wn = w[g] / (sd[g] * S);
                w[g] = static_cast<float>(wn);
                b -= static_cast<double>(w[g]) * mu[g];
            }
            offsets[j * e.offset_stride] = static_cast<float>(b);
        }
    }
}

}  // namespace pslerp
