// pslerp verify: 1:1 verification of probes against the ids they claim.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/array_io.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp verify --index INDEX <probes.npy|.fvecs|image folder> --ids claimed.npy\n"
        "                     --threshold T [--out scores.npy] [--aligned] [--model-dir DIR]\n"
        "                     [--secret-file KEY | --secret-env NAME]\n"
        "Scores probe i against the entry with id claimed[i]; accepts when score >= T.\n"
        "An item that cannot be scored (an unknown claimed id, a probe the index refuses) is\n"
        "reported on stderr as \"item i: <why>\", its score in --out is NaN, the other items are\n"
        "scored, and the exit code is 3.\n";

/// How many failed items are listed one by one on stderr.
constexpr int64_t kListedFailures = 100;

/// Scores probe rows[j] against ids[rows[j]] for every j into scores; a row that fails gets
/// its reason in failed. One batch call, or item by item when the batch throws.
void score_rows(const ProtectedIndex& pi, const Features& q, const std::vector<int64_t>& ids,
                const std::vector<int64_t>& rows, std::vector<float>& scores, std::vector<std::string>& failed) {
    const int64_t d = q.dim, m = int64_t(rows.size());
    std::vector<float> x(size_t(m) * size_t(d)), s(m);
    std::vector<idx_t> claimed(m);
    for (int64_t j = 0; j < m; ++j) {
        std::copy_n(q.x.data() + rows[j] * d, d, x.data() + j * d);
        claimed[j] = ids[rows[j]];
    }
    try {
        pi.verify_batch(m, x.data(), claimed.data(), s.data());
        for (int64_t j = 0; j < m; ++j) scores[rows[j]] = s[j];
        return;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception&) {
        // Some item is at fault: find which, one at a time.
    }
    for (int64_t j = 0; j < m; ++j) {
        try {
            scores[rows[j]] = pi.verify(x.data() + j * d, claimed[j]);
        } catch (const std::bad_alloc&) {
            throw;
        } catch (const std::exception& e) {
            failed[rows[j]] = clean_message(e.what());
        }
    }
}

absl::Status run(Args& args) {
    auto path = args.required("index");
    if (!path.ok()) return path.status();
    auto ids_path = args.required("ids");
    if (!ids_path.ok()) return ids_path.status();
    auto thr = args.required_number("threshold", -std::numeric_limits<double>::max(),
                                    std::numeric_limits<double>::max());
    if (!thr.ok()) return thr.status();
    const std::string out = args.str("out", "");
    const FeatureOptions fo = feature_options(args);
    auto sealing = secret_options(args, false);
    if (!sealing.ok()) return sealing.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (args.positional().size() != 1) return usage_error("expected one probe input");
    auto index = load_index(*path, sealing->secret);
    if (!index.ok()) return index.status();
    auto q = load_features(args.positional()[0], fo);
    if (!q.ok()) return q.status();
    auto ids = load_ids(*ids_path, q->n);
    if (!ids.ok()) return ids.status();
    if (q->dim != (*index)->d) {
        return absl::InvalidArgumentError(absl::StrFormat("probes have dimension %d, the index %d", q->dim, (*index)->d));
    }
    const ProtectedIndex& pi = protected_of(**index);
    std::vector<float> scores(q->n, std::numeric_limits<float>::quiet_NaN());
    std::vector<std::string> failed(q->n);
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < q->n; ++i) {
        if (pi.contains((*ids)[i])) {
            rows.push_back(i);
        } else {
            failed[i] = absl::StrCat("unknown id ", (*ids)[i]);
        }
    }
    score_rows(pi, *q, *ids, rows, scores, failed);
    int64_t accepted = 0, scored = 0, nfailed = 0;
    for (int64_t i = 0; i < q->n; ++i) {
        if (!failed[i].empty()) {
            if (nfailed++ < kListedFailures) {
                std::fprintf(stderr, "pslerp verify: item %ld: %s\n", long(i), failed[i].c_str());
            }
            continue;
        }
        ++scored;
        accepted += scores[i] >= *thr;
        if (q->n <= 20) {
            std::printf("probe %ld claims %ld: score %.4f -> %s\n", long(i), long((*ids)[i]), scores[i],
                        scores[i] >= *thr ? "accept" : "reject");
        }
    }
    if (nfailed > kListedFailures) {
        std::fprintf(stderr, "pslerp verify: ... and %ld more failed items\n", long(nfailed - kListedFailures));
    }
    std::printf("accepted %ld of %ld scored at threshold %.4f", long(accepted), long(scored), *thr);
    if (nfailed) std::printf("; %ld of %ld items failed", long(nfailed), long(q->n));
    std::printf("\n");
    if (!out.empty()) {
        if (auto s = write_npy_f32(out, scores.data(), q->n, -1); !s.ok()) return s;
    }
    if (nfailed) {
        return partial_failure(absl::StrCat(nfailed, " of ", q->n, " items could not be scored (listed above",
                                            out.empty() ? "" : "; NaN in --out", ")"));
    }
    return absl::OkStatus();
}

}  // namespace

int cmd_verify(const std::vector<std::string>& argv) {
    return run_command("verify", argv, {"aligned"}, kUsage, run);
}

}  // namespace pslerp::cli
