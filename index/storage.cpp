#include "index/storage.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/strings/str_format.h"

namespace pslerp {

namespace {

size_t interleaved(const kernels::Layout& L, int g, int i) {
    return (static_cast<size_t>(g / kernels::kLanes) * L.group_dim + i) * kernels::kLanes + g % kernels::kLanes;
}

}  // namespace

void encode_entry(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, float* te, float* tk,
                  uint8_t* tm, float* ke, float* kmk, float* w, float* offset) {
    const int G = p.groups, d = p.group_dim, D = p.dim(), KD = p.key_dim();
    const float* e = pr.templates.data() + i * D;
    const float* k = pr.keys.data() + i * KD;
    const uint8_t* m = pr.masks.data() + i * D;
    std::fill(te, te + L.vec_floats(), 0.0f);
    std::fill(tk, tk + L.key_floats(), 0.0f);
    std::fill(tm, tm + L.mask_bytes(), uint8_t{0});
    std::fill(ke, ke + L.group_floats(), 0.0f);
    std::fill(kmk, kmk + L.group_floats(), 1.0f);
    std::fill(w, w + L.group_floats(), 0.0f);
    *offset = 0.0f;
    if (L.shared_key) std::copy(k, k + d, tk);
    for (int g = 0; g < G; ++g) {
        const float* kg = L.shared_key ? k : k + g * d;
        double sum_ke = 0, sum_kmk = 0;
        for (int j = 0; j < d; ++j) {
            const size_t o = interleaved(L, g, j);
            te[o] = e[g * d + j];
            if (!L.shared_key) tk[o] = kg[j];
            if (m[g * d + j]) {
                tm[(g / kernels::kLanes) * d + j] |= static_cast<uint8_t>(1u << (g % kernels::kLanes));
                sum_ke += static_cast<double>(kg[j]) * e[g * d + j];
                sum_kmk += static_cast<double>(kg[j]) * kg[j];
            }
        }
        ke[g] = static_cast<float>(sum_ke);
        kmk[g] = static_cast<float>(sum_kmk);
        w[g] = pr.weights[i * G + g];
    }
}

void encode_code(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, uint8_t* code) {
    const kernels::CodeLayout c = kernels::code_layout(L);
    std::fill(code, code + c.code_size, uint8_t{0});
    float* f = reinterpret_cast<float*>(code);
    encode_entry(p, L, pr, i, f + c.template_offset, f + c.key_offset, code + c.mask_offset, f + c.ke_offset,
                 f + c.kmk_offset, f + c.weights_offset, f + c.score_offset);
}

absl::Status check_entry(const Params& p, const kernels::Entries& e, int64_t j) {
    // Tolerances: values are float, their sums double; a stored entry matches exactly, these
    // leave room for another summation order.
    constexpr double kNormTol = 1e-3, kDotTol = 1e-4, kWeightTol = 1e-3;
    const kernels::Layout& L = e.layout;
    const int G = L.groups, d = L.group_dim, lanes = kernels::kLanes;
    const float* te = e.templates + j * e.template_stride;
    const float* tk = e.keys + j * e.key_stride;
    const uint8_t* tm = e.masks + j * e.mask_stride;
    const float* ke = e.ke + j * e.group_stride;
    const float* kmk = e.kmk + j * e.group_stride;
    const float* w = e.weights + j * e.group_stride;
    const float offset = e.offsets[j * e.offset_stride];
    const bool cohort = p.norm == Norm::kCohort;
    auto invalid = [](const std::string& why) { return absl::InvalidArgumentError(why); };
    double weight_sum = 0;
    for (int g = 0; g < L.blocks() * lanes; ++g) {
        const int b = g / lanes, l = g % lanes;
        const bool padded = g >= G;
        double kept_tt = 0, kk = 0, sum_ke = 0, sum_kmk = 0;
        int kept = 0, dropped_nonzero = -1;
        for (int i = 0; i < d; ++i) {
            const size_t o = (static_cast<size_t>(b) * d + i) * lanes + l;
            const double t = te[o];
            const double k = L.shared_key ? tk[i] : tk[o];
            const bool m = (tm[b * d + i] >> l) & 1;
            if (!std::isfinite(t)) return invalid(absl::StrFormat("template: group %d coordinate %d is %g", g, i, t));
            if (!std::isfinite(k)) return invalid(absl::StrFormat("key: group %d coordinate %d is %g", g, i, k));
            if (padded) {
                if (t != 0) return invalid(absl::StrFormat("template: padded lane %d holds %g, expected 0", g, t));
                if (!L.shared_key && k != 0) {
                    return invalid(absl::StrFormat("key: padded lane %d holds %g, expected 0", g, k));
                }
                if (m) return invalid(absl::StrFormat("mask: bit for group %d, beyond the %d groups", g, G));
                continue;
            }
            kk += k * k;
            if (m) {
                ++kept;
                kept_tt += t * t;
                sum_ke += k * t;
                sum_kmk += k * k;
            } else if (t != 0 && dropped_nonzero < 0) {
                dropped_nonzero = i;
            }
        }
        if (padded) {
            if (ke[g] != 0 || kmk[g] != 1 || w[g] != 0) {
                return invalid(absl::StrFormat("ke, kmk or weights: padded lane %d holds %g, %g, %g, expected 0, 1, 0",
                                               g, ke[g], kmk[g], w[g]));
            }
            continue;
        }
        if (kept == 0) return invalid(absl::StrFormat("mask: group %d keeps no coordinate", g));
        if (p.fill == Fill::kZero && dropped_nonzero >= 0) {
            return invalid(absl::StrFormat("template: group %d coordinate %d is dropped but not zero (fill is zero)", g,
                                           dropped_nonzero));
        }
        if ((!L.shared_key || g == 0) && !(std::abs(std::sqrt(kk) - 1.0) <= kNormTol)) {
            return invalid(absl::StrFormat("key: group %d has norm %g, expected 1", g, std::sqrt(kk)));
        }
        const double norm = std::sqrt(kept_tt);
        if (norm != 0 && !(std::abs(norm - 1.0) <= kNormTol)) {
            return invalid(
                    absl::StrFormat("template: group %d has norm %g over its kept coordinates, expected 1", g, norm));
        }
        if (!(std::abs(ke[g] - sum_ke) <= kDotTol)) {
            return invalid(absl::StrFormat("ke (<k, M e>) of group %d is %g, the entry gives %g", g, ke[g], sum_ke));
        }
        if (!(std::abs(kmk[g] - sum_kmk) <= kDotTol)) {
            return invalid(absl::StrFormat("kmk (<k, M k>) of group %d is %g, the entry gives %g", g, kmk[g], sum_kmk));
        }
        const double max_weight = cohort ? kMaxCohortGain : 1.0 + kWeightTol;
        if (!(w[g] >= 0.0f && w[g] <= max_weight)) {
            return invalid(absl::StrFormat("weights: group %d has %g, outside [0, %g]", g, w[g], max_weight));
        }
        weight_sum += w[g];
    }
    if (cohort) {
        if (!(weight_sum > 0 && weight_sum <= kMaxCohortGain)) {
            return invalid(absl::StrFormat("cohort-normalised weights sum to %g, outside (0, %g]", weight_sum,
                                           kMaxCohortGain));
        }
        if (!(std::abs(double(offset)) <= weight_sum * (1.0 + kWeightTol))) {
            return invalid(absl::StrFormat("offset %g exceeds the weights' sum %g", offset, weight_sum));
        }
        return absl::OkStatus();
    }
    if (!(std::abs(weight_sum - 1.0) <= kWeightTol)) {
        return invalid(absl::StrFormat("weights sum to %g, expected 1", weight_sum));
    }
    if (offset != 0.0f) return invalid(absl::StrFormat("offset is %g, expected 0 (norm is none)", offset));
    return absl::OkStatus();
}

std::pair<int64_t, absl::Status> first_bad_entry(const Params& p, const kernels::Entries& e, int64_t n) {
    std::atomic<int64_t> first{n};
#pragma omp parallel for schedule(static) if (n > 1024)
    for (int64_t j = 0; j < n; ++j) {
        if (j >= first.load(std::memory_order_relaxed) || check_entry(p, e, j).ok()) continue;
        for (int64_t seen = first.load(); j < seen && !first.compare_exchange_weak(seen, j);) {
        }
    }
    const int64_t j = first.load();
    return {j, j < n ? check_entry(p, e, j) : absl::OkStatus()};
}

EntryStorage::EntryStorage(const Params& p) {
    layout.groups = p.groups;
    layout.group_dim = p.group_dim;
    layout.shared_key = p.key_mode == KeyMode::kShared;
}

void EntryStorage::append(const Params& p, const Protected& pr, const int64_t* new_ids) {
    const kernels::Layout& L = layout;
    const int64_t r0 = rows(), n = pr.n;
    templates.resize((r0 + n) * L.vec_floats(), 0.0f);
    keys.resize((r0 + n) * L.key_floats(), 0.0f);
    masks.resize((r0 + n) * L.mask_bytes(), 0);
    ke.resize((r0 + n) * L.group_floats(), 0.0f);
    kmk.resize((r0 + n) * L.group_floats(), 1.0f);
    weights.resize((r0 + n) * L.group_floats(), 0.0f);
    offsets.resize(r0 + n, 0.0f);
    ids.insert(ids.end(), new_ids, new_ids + n);
    removed.resize(r0 + n, 0);
#pragma omp parallel for if (n > 1024)
    for (int64_t i = 0; i < n; ++i) {
        const int64_t r = r0 + i;
        encode_entry(p, L, pr, i, templates.data() + r * L.vec_floats(), keys.data() + r * L.key_floats(),
                     masks.data() + r * L.mask_bytes(), ke.data() + r * L.group_floats(),
                     kmk.data() + r * L.group_floats(), weights.data() + r * L.group_floats(),
                     offsets.data() + r);
    }
}

void EntryStorage::template_row(const Params& p, int64_t r, float* out) const {
    const float* te = templates.data() + r * layout.vec_floats();
    for (int g = 0; g < p.groups; ++g) {
        for (int j = 0; j < p.group_dim; ++j) out[g * p.group_dim + j] = te[interleaved(layout, g, j)];
    }
}

void EntryStorage::key_row(const Params& p, int64_t r, float* out) const {
    const float* tk = keys.data() + r * layout.key_floats();
    if (layout.shared_key) {
        std::copy(tk, tk + p.group_dim, out);
        return;
    }
    for (int g = 0; g < p.groups; ++g) {
        for (int j = 0; j < p.group_dim; ++j) out[g * p.group_dim + j] = tk[interleaved(layout, g, j)];
    }
}

void EntryStorage::mask_row(const Params& p, int64_t r, uint8_t* out) const {
    const uint8_t* tm = masks.data() + r * layout.mask_bytes();
    for (int g = 0; g < p.groups; ++g) {
        for (int j = 0; j < p.group_dim; ++j) {
            out[g * p.group_dim + j] = (tm[(g / kernels::kLanes) * p.group_dim + j] >> (g % kernels::kLanes)) & 1;
        }
    }
}

void EntryStorage::weight_row(const Params& p, int64_t r, float* out) const {
    std::copy_n(weights.data() + r * layout.group_floats(), p.groups, out);
}

std::vector<int64_t> EntryStorage::compact() {
    std::vector<int64_t> kept;
    const kernels::Layout& L = layout;
    auto move_row = [](auto& v, size_t width, int64_t from, int64_t to) {
        std::copy_n(v.begin() + from * width, width, v.begin() + to * width);
    };
    for (int64_t r = 0; r < rows(); ++r) {
        if (removed[r]) continue;
        const int64_t to = static_cast<int64_t>(kept.size());
        if (to != r) {
            move_row(templates, L.vec_floats(), r, to);
            move_row(keys, L.key_floats(), r, to);
            move_row(masks, L.mask_bytes(), r, to);
            move_row(ke, L.group_floats(), r, to);
            move_row(kmk, L.group_floats(), r, to);
            move_row(weights, L.group_floats(), r, to);
            offsets[to] = offsets[r];
            ids[to] = ids[r];
        }
        kept.push_back(r);
    }
    const int64_t n = static_cast<int64_t>(kept.size());
    templates.resize(n * L.vec_floats());
    keys.resize(n * L.key_floats());
    masks.resize(n * L.mask_bytes());
    ke.resize(n * L.group_floats());
    kmk.resize(n * L.group_floats());
    weights.resize(n * L.group_floats());
    offsets.resize(n);
    ids.resize(n);
    removed.assign(n, 0);
    return kept;
}

void EntryStorage::truncate(int64_t r) {
    const kernels::Layout& L = layout;
    templates.resize(r * L.vec_floats());
    keys.resize(r * L.key_floats());
    masks.resize(r * L.mask_bytes());
    ke.resize(r * L.group_floats());
    kmk.resize(r * L.group_floats());
    weights.resize(r * L.group_floats());
    offsets.resize(r);
    ids.resize(r);
    removed.resize(r);
}

void EntryStorage::clear() {
    templates.clear();
    keys.clear();
    masks.clear();
    ke.clear();
    kmk.clear();
    weights.clear();
    offsets.clear();
    ids.clear();
    removed.clear();
}

size_t EntryStorage::bytes_per_row() const {
    const kernels::Layout& L = layout;
    return sizeof(float) * (L.vec_floats() + L.key_floats() + 3 * L.group_floats() + 1) + L.mask_bytes() +
           sizeof(int64_t) + 1;
}

bool EntryStorage::consistent() const {
    const size_t n = ids.size();
    const kernels::Layout& L = layout;
    return templates.size() == n * L.vec_floats() && keys.size() == n * L.key_floats() &&
           masks.size() == n * L.mask_bytes() && ke.size() == n * L.group_floats() &&
           kmk.size() == n * L.group_floats() && weights.size() == n * L.group_floats() && offsets.size() == n &&
           removed.size() == n;
}

}  // namespace pslerp
