#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <unordered_set>

#include "absl/strings/str_format.h"

namespace pslerp {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

absl::Status check_scores(absl::Span<const float> s, const char* what) {
    if (s.empty()) return absl::InvalidArgumentError(absl::StrFormat("no %s scores", what));
    for (size_t i = 0; i < s.size(); ++i) {
        if (std::isnan(s[i])) return absl::InvalidArgumentError(absl::StrFormat("%s score %d is NaN", what, i));
    }
    return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Roc> roc_curve(absl::Span<const float> mated, absl::Span<const float> nonmated) {
    if (absl::Status st = check_scores(mated, "mated"); !st.ok()) return st;
    if (absl::Status st = check_scores(nonmated, "non-mated"); !st.ok()) return st;
    std::vector<float> m(mated.begin(), mated.end()), n(nonmated.begin(), nonmated.end());
    std::sort(m.begin(), m.end(), std::greater<float>());
    std::sort(n.begin(), n.end(), std::greater<float>());
    Roc roc;
    roc.mated = static_cast<int64_t>(m.size());
    roc.nonmated = static_cast<int64_t>(n.size());
    roc.thresholds.push_back(kInf);
    roc.true_accepts.push_back(0);
    roc.false_accepts.push_back(0);
    size_t i = 0, j = 0;
    while (i < m.size() || j < n.size()) {
        // The next threshold is the largest score not yet accepted; take every score equal to it.
        const float t = (j >= n.size() || (i < m.size() && m[i] >= n[j])) ? m[i] : n[j];
        while (i < m.size() && m[i] == t) ++i;
        while (j < n.size() && n[j] == t) ++j;
        roc.thresholds.push_back(t);
        roc.true_accepts.push_back(static_cast<int64_t>(i));
        roc.false_accepts.push_back(static_cast<int64_t>(j));
    }
    roc.tar.resize(roc.thresholds.size());
    roc.far.resize(roc.thresholds.size());
    for (size_t k = 0; k < roc.thresholds.size(); ++k) {
        roc.tar[k] = static_cast<double>(roc.true_accepts[k]) / roc.mated;
        roc.far[k] = static_cast<double>(roc.false_accepts[k]) / roc.nonmated;
    }
    return roc;
}

absl::StatusOr<Eer> equal_error_rate(const Roc& roc) {
    if (roc.thresholds.size() < 2 || roc.far.size() != roc.thresholds.size() ||
        roc.tar.size() != roc.thresholds.size()) {
        return absl::InvalidArgumentError("equal_error_rate: empty or malformed ROC");
    }
    // FAR - FRR rises from -1 (threshold +inf) to +1 (everything accepted).
    auto diff = [&](size_t k) { return roc.far[k] - (1.0 - roc.tar[k]); };
    for (size_t k = 1; k < roc.thresholds.size(); ++k) {
        const double dk = diff(k);
        if (dk < 0) continue;
        if (dk == 0) return Eer{roc.far[k], roc.thresholds[k]};
        const double dp = diff(k - 1);
        const double a = -dp / (dk - dp);
        Eer e;
        e.eer = roc.far[k - 1] + a * (roc.far[k] - roc.far[k - 1]);
        e.threshold = k == 1 ? roc.thresholds[k]
                             : roc.thresholds[k - 1] + a * (roc.thresholds[k] - roc.thresholds[k - 1]);
        return e;
    }
    return absl::InternalError("equal_error_rate: the ROC never reaches FAR = 1");
}

absl::StatusOr<TarAtFar> tar_at_far(const Roc& roc, double target_far) {
    if (!(target_far >= 0 && target_far <= 1)) {
        return absl::InvalidArgumentError(absl::StrFormat("target FAR %g is not in [0, 1]", target_far));
    }
    if (roc.thresholds.empty() || roc.nonmated <= 0) return absl::InvalidArgumentError("tar_at_far: empty ROC");
    TarAtFar r;
    r.target_far = target_far;
    r.nonmated = roc.nonmated;
    // Counted, not compared as doubles, so FAR 1e-3 on 1000 impostors allows exactly one.
    r.allowed_false_accepts =
        static_cast<int64_t>(std::floor(target_far * static_cast<double>(roc.nonmated) * (1 + 1e-12)));
    r.resolvable = r.allowed_false_accepts >= 1;
    size_t best = 0;
    for (size_t k = 0; k < roc.thresholds.size(); ++k) {
        if (roc.false_accepts[k] > r.allowed_false_accepts) break;
        best = k;
    }
    r.tar = roc.tar[best];
    r.far = roc.far[best];
    r.threshold = roc.thresholds[best];
    r.false_accepts = roc.false_accepts[best];
    return r;
}

absl::StatusOr<VerificationReport> verification_report(absl::Span<const float> mated,
                                                       absl::Span<const float> nonmated,
                                                       absl::Span<const double> fars) {
    VerificationReport rep;
    absl::StatusOr<Roc> roc = roc_curve(mated, nonmated);
    if (!roc.ok()) return roc.status();
    rep.roc = std::move(*roc);
    absl::StatusOr<Eer> eer = equal_error_rate(rep.roc);
    if (!eer.ok()) return eer.status();
    rep.eer = *eer;
    for (double f : fars) {
        absl::StatusOr<TarAtFar> t = tar_at_far(rep.roc, f);
        if (!t.ok()) return t.status();
        rep.tar.push_back(*t);
    }
    return rep;
}

absl::StatusOr<double> accuracy_at(absl::Span<const float> scores, absl::Span<const uint8_t> is_mated,
                                   double threshold) {
    if (absl::Status st = check_scores(scores, "pair"); !st.ok()) return st;
    if (is_mated.size() != scores.size()) return absl::InvalidArgumentError("scores and is_mated differ in size");
    int64_t right = 0;
    for (size_t i = 0; i < scores.size(); ++i) right += (scores[i] >= threshold) == (is_mated[i] != 0);
    return static_cast<double>(right) / scores.size();
}

absl::StatusOr<FoldAccuracy> kfold_accuracy(absl::Span<const float> scores, absl::Span<const uint8_t> is_mated,
                                            absl::Span<const int> folds) {
    if (absl::Status st = check_scores(scores, "pair"); !st.ok()) return st;
    if (is_mated.size() != scores.size() || folds.size() != scores.size()) {
        return absl::InvalidArgumentError(absl::StrFormat("kfold_accuracy: sizes differ (scores %d, is_mated %d, folds %d)",
                                                          scores.size(), is_mated.size(), folds.size()));
    }
    FoldAccuracy out;
    out.fold_ids.assign(folds.begin(), folds.end());
    std::sort(out.fold_ids.begin(), out.fold_ids.end());
    out.fold_ids.erase(std::unique(out.fold_ids.begin(), out.fold_ids.end()), out.fold_ids.end());
    if (out.fold_ids.size() < 2) return absl::InvalidArgumentError("kfold_accuracy: need at least two folds");

    std::vector<size_t> order(scores.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });

    for (int fold : out.fold_ids) {
        // Training set = the other folds, already in descending score order.
        int64_t train_n = 0, train_nonmated = 0;
        for (size_t i : order) {
            if (folds[i] == fold) continue;
            ++train_n;
            train_nonmated += is_mated[i] == 0;
        }
        // Accepting the top c items: correct = mated among them + non-mated below them. Cuts
        // only between distinct scores; c = 0 is threshold +inf.
        int64_t c = 0, mated_above = 0, nonmated_above = 0;
        int64_t best_correct = train_nonmated;
        double best_threshold = kInf;
        double prev = kNaN;
        for (size_t k = 0; k <= order.size(); ++k) {
            const bool end = k == order.size();
            if (!end && folds[order[k]] == fold) continue;
            const double s = end ? -kInf : scores[order[k]];
            if (c > 0 && s != prev) {
                const int64_t correct = mated_above + (train_nonmated - nonmated_above);
                if (correct > best_correct) {
                    best_correct = correct;
                    best_threshold = end ? -kInf : 0.5 * (prev + s);
                }
            }
            if (end) break;
            ++c;
            (is_mated[order[k]] ? mated_above : nonmated_above) += 1;
            prev = s;
        }
        int64_t right = 0, n = 0;
        for (size_t i = 0; i < scores.size(); ++i) {
            if (folds[i] != fold) continue;
            ++n;
            right += (scores[i] >= best_threshold) == (is_mated[i] != 0);
        }
        out.threshold.push_back(best_threshold);
        out.accuracy.push_back(static_cast<double>(right) / n);
    }
    const double k = static_cast<double>(out.accuracy.size());
    out.mean = std::accumulate(out.accuracy.begin(), out.accuracy.end(), 0.0) / k;
    double var = 0;
    for (double a : out.accuracy) var += (a - out.mean) * (a - out.mean);
    out.sd = std::sqrt(var / k);
    return out;
}

absl::StatusOr<Unlinkability> unlinkability(absl::Span<const float> mated, absl::Span<const float> nonmated,
                                            const UnlinkabilityOptions& options) {
    if (absl::Status st = check_scores(mated, "mated"); !st.ok()) return st;
    if (absl::Status st = check_scores(nonmated, "non-mated"); !st.ok()) return st;
    if (options.bins < 1 || options.bins > (1 << 24)) return absl::InvalidArgumentError("bins must be in [1, 2^24]");
    if (!(options.omega > 0) || !std::isfinite(options.omega)) return absl::InvalidArgumentError("omega must be > 0");
    double lo = options.lo, hi = options.hi;
    if (!(lo < hi)) {
        lo = std::min(*std::min_element(mated.begin(), mated.end()), *std::min_element(nonmated.begin(), nonmated.end()));
        hi = std::max(*std::max_element(mated.begin(), mated.end()), *std::max_element(nonmated.begin(), nonmated.end()));
        if (!std::isfinite(lo) || !std::isfinite(hi)) return absl::InvalidArgumentError("scores must be finite");
        if (hi <= lo) hi = lo + 1;  // every score equal: one populated bin, D = 0
    }
    const int B = options.bins;
    const double width = (hi - lo) / B;
    auto bin = [&](float s) {
        const double b = std::floor((s - lo) / width);
        return static_cast<int>(std::clamp(b, 0.0, static_cast<double>(B - 1)));
    };
    std::vector<int64_t> hm(B, 0), hn(B, 0);
    for (float s : mated) ++hm[bin(s)];
    for (float s : nonmated) ++hn[bin(s)];

    Unlinkability u;
    u.bin_edges.resize(B + 1);
    for (int b = 0; b <= B; ++b) u.bin_edges[b] = lo + width * b;
    u.p_mated.resize(B);
    u.p_nonmated.resize(B);
    u.d_local.resize(B);
    const double nm = static_cast<double>(mated.size()), nn = static_cast<double>(nonmated.size());
    for (int b = 0; b < B; ++b) {
        u.p_mated[b] = hm[b] / (nm * width);
        u.p_nonmated[b] = hn[b] / (nn * width);
        double d = 0;
        if (hm[b] > 0 && hn[b] == 0) {
            d = 1;  // LR = infinity
        } else if (hm[b] > 0) {
            const double lr = options.omega * u.p_mated[b] / u.p_nonmated[b];
            d = lr > 1 ? 2 * lr / (1 + lr) - 1 : 0;
        }
        u.d_local[b] = d;
        u.d_sys += d * hm[b] / nm;  // = D(s) p_mated(s) ds over the bin
    }
    return u;
}

absl::StatusOr<Identification> identification_rates(absl::Span<const int64_t> top1, absl::Span<const int64_t> truth,
                                                    absl::Span<const float> top1_scores, double threshold) {
    if (truth.empty()) return absl::InvalidArgumentError("identification_rates: no probes");
    if (top1.size() != truth.size()) return absl::InvalidArgumentError("top1 and truth differ in size");
    const bool open_set = !top1_scores.empty();
    if (open_set && top1_scores.size() != truth.size()) {
        return absl::InvalidArgumentError("top1_scores and truth differ in size");
    }
    Identification r;
    r.threshold = threshold;
    int64_t right = 0, detected = 0, false_pos = 0;
    for (size_t i = 0; i < truth.size(); ++i) {
        const bool accepted = open_set && top1_scores[i] >= threshold;
        if (truth[i] >= 0) {
            ++r.mated_probes;
            right += top1[i] == truth[i];
            detected += top1[i] == truth[i] && accepted;
        } else {
            ++r.nonmated_probes;
            false_pos += accepted;
        }
    }
    r.rank1 = r.mated_probes ? static_cast<double>(right) / r.mated_probes : kNaN;
    r.dir = open_set && r.mated_probes ? static_cast<double>(detected) / r.mated_probes : kNaN;
    r.fpir = open_set && r.nonmated_probes ? static_cast<double>(false_pos) / r.nonmated_probes : kNaN;
    return r;
}

absl::StatusOr<OpenSetPoint> open_set_at_fpir(absl::Span<const uint8_t> mated_correct,
                                              absl::Span<const float> mated_best,
                                              absl::Span<const float> nonmated_best, double target_fpir) {
    if (!(target_fpir >= 0 && target_fpir <= 1)) {
        return absl::InvalidArgumentError(absl::StrFormat("target FPIR %g is not in [0, 1]", target_fpir));
    }
    if (mated_correct.size() != mated_best.size()) {
        return absl::InvalidArgumentError("open_set_at_fpir: mated_correct and mated_best differ in size");
    }
    if (absl::Status st = check_scores(nonmated_best, "non-mated search"); !st.ok()) return st;
    for (size_t i = 0; i < mated_best.size(); ++i) {
        if (std::isnan(mated_best[i])) {
            return absl::InvalidArgumentError(absl::StrFormat("mated search score %d is NaN", i));
        }
    }
    OpenSetPoint r;
    r.target_fpir = target_fpir;
    r.mated_searches = static_cast<int64_t>(mated_best.size());
    r.nonmated_searches = static_cast<int64_t>(nonmated_best.size());
    // Counted, as in tar_at_far, so FPIR 1e-3 over 1000 searches allows exactly one.
    r.allowed_false_positives = static_cast<int64_t>(
            std::floor(target_fpir * static_cast<double>(r.nonmated_searches) * (1 + 1e-12)));
    r.resolvable = r.allowed_false_positives >= 1;
    std::vector<float> s(nonmated_best.begin(), nonmated_best.end());
    std::sort(s.begin(), s.end(), std::greater<float>());
    const int64_t a = r.allowed_false_positives;
    if (a >= r.nonmated_searches) {
        r.threshold = -kInf;
    } else {
        // Just above the (a+1)-th best non-mated score: it and everything equal to it are
        // refused, so at most `a` pass.
        r.threshold = std::nextafter(s[static_cast<size_t>(a)], std::numeric_limits<float>::infinity());
    }
    for (float v : s) r.false_positives += v >= r.threshold;
    r.fpir = static_cast<double>(r.false_positives) / static_cast<double>(r.nonmated_searches);
    int64_t detected = 0;
    for (size_t i = 0; i < mated_best.size(); ++i) detected += mated_correct[i] != 0 && mated_best[i] >= r.threshold;
    r.dir = r.mated_searches ? static_cast<double>(detected) / static_cast<double>(r.mated_searches) : kNaN;
    return r;
}

absl::StatusOr<Pairs> all_pairs(absl::Span<const int64_t> labels, int64_t max_nonmated, uint64_t seed) {
    const int64_t n = static_cast<int64_t>(labels.size());
    if (n < 2) return absl::InvalidArgumentError("all_pairs: need at least two items");
    if (n > (int64_t{1} << 31)) return absl::InvalidArgumentError("all_pairs: too many items");
    constexpr int64_t kMaxEnumerated = int64_t{1} << 26;  // ~1 GiB of pairs
    auto mates = [&](int64_t i, int64_t j) { return labels[i] >= 0 && labels[i] == labels[j]; };

    // Mated pairs: group indices by label.
    Pairs p;
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return labels[a] < labels[b]; });
    int64_t mated = 0;
    for (int64_t s = 0; s < n;) {
        int64_t e = s;
        while (e < n && labels[order[e]] == labels[order[s]]) ++e;
        if (labels[order[s]] >= 0) {
            for (int64_t a = s; a < e; ++a) {
                for (int64_t b = a + 1; b < e; ++b) {
                    if (++mated > kMaxEnumerated) return absl::ResourceExhaustedError("all_pairs: too many mated pairs");
                    p.first.push_back(std::min(order[a], order[b]));
                    p.second.push_back(std::max(order[a], order[b]));
                    p.is_mated.push_back(1);
                }
            }
        }
        s = e;
    }
    const int64_t total_nonmated = n * (n - 1) / 2 - mated;
    const bool all = max_nonmated < 0 || max_nonmated >= total_nonmated;
    const int64_t want = all ? total_nonmated : max_nonmated;
    if (want > kMaxEnumerated) {
        return absl::ResourceExhaustedError(
            absl::StrFormat("all_pairs: %d non-mated pairs; pass max_nonmated to sample them", want));
    }
    std::mt19937_64 rng(seed);
    if (all || 2 * want > total_nonmated) {
        std::vector<std::pair<int64_t, int64_t>> nm;
        nm.reserve(total_nonmated);
        for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = i + 1; j < n; ++j) {
                if (!mates(i, j)) nm.emplace_back(i, j);
            }
        }
        if (!all) {
            for (int64_t k = 0; k < want; ++k) {
                std::uniform_int_distribution<int64_t> pick(k, total_nonmated - 1);
                std::swap(nm[k], nm[pick(rng)]);
            }
            nm.resize(want);
            std::sort(nm.begin(), nm.end());
        }
        for (const auto& [i, j] : nm) {
            p.first.push_back(i);
            p.second.push_back(j);
            p.is_mated.push_back(0);
        }
    } else {
        // Sparse sample: rejection against the mated and already drawn pairs.
        std::unordered_set<uint64_t> seen;
        seen.reserve(static_cast<size_t>(want) * 2);
        std::uniform_int_distribution<int64_t> pick(0, n - 1);
        std::vector<std::pair<int64_t, int64_t>> nm;
        nm.reserve(want);
        while (static_cast<int64_t>(nm.size()) < want) {
            int64_t i = pick(rng), j = pick(rng);
            if (i == j || mates(i, j)) continue;
            if (i > j) std::swap(i, j);
            if (!seen.insert(static_cast<uint64_t>(i) * static_cast<uint64_t>(n) + static_cast<uint64_t>(j)).second) {
                continue;
            }
            nm.emplace_back(i, j);
        }
        std::sort(nm.begin(), nm.end());
        for (const auto& [i, j] : nm) {
            p.first.push_back(i);
            p.second.push_back(j);
            p.is_mated.push_back(0);
        }
    }
    return p;
}

PairScores score_pairs(const Pairs& pairs, const std::function<float(int64_t, int64_t)>& score) {
    PairScores out;
    for (int64_t k = 0; k < pairs.size(); ++k) {
        const float s = score(pairs.first[k], pairs.second[k]);
        (pairs.is_mated[k] ? out.mated : out.nonmated).push_back(s);
    }
    return out;
}

std::vector<int> assign_folds(int64_t n, int k, uint64_t seed) {
    std::vector<int> folds(std::max<int64_t>(n, 0));
    if (k < 1) k = 1;
    for (int64_t i = 0; i < n; ++i) folds[i] = static_cast<int>(i % k);
    std::mt19937_64 rng(seed);
    std::shuffle(folds.begin(), folds.end(), rng);
    return folds;
}

}  // namespace pslerp
