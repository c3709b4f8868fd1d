// pslerp search: 1:N identification of probes against an index file.
#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "io/array_io.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp search --index INDEX <probes.npy|.fvecs|image folder> [-k 10]\n"
        "                     [--nprobe N] [--labels truth.npy] [--out PREFIX] [--aligned]\n"
        "                     [--model-dir DIR] [--secret-file KEY | --secret-env NAME]\n"
        "-k: results per probe, 1 to 1048576 (beyond the index's entries, ids are -1).\n"
        "Writes PREFIX_scores.npy (n x k float32) and PREFIX_ids.npy (n x k int64) with --out;\n"
        "with --labels (gallery id per probe, -1 for none) prints rank-1 identification.\n"
        "--nprobe (IVF index only): lists scanned per query, instead of the index's own nprobe;\n"
        "more is slower and finds more; nlist scans every list (exact).\n"
        "--scheduler tcp://host:8786: sharded on a Dask cluster (README; with --help, its options).\n";

absl::Status run(Args& args) {
    auto path = args.required("index");
    if (!path.ok()) return path.status();
    auto k = args.integer("k", 10, 1, kMaxK);
    if (!k.ok()) return k.status();
    auto sp = search_options(args);
    if (!sp.ok()) return sp.status();
    const std::string labels_path = args.str("labels", "");
    const std::string out = args.str("out", "");
    const FeatureOptions fo = feature_options(args);
    auto sealing = secret_options(args, false);
    if (!sealing.ok()) return sealing.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (args.positional().size() != 1) return usage_error("expected one probe input");
    auto index = load_index(*path, sealing->secret);
    if (!index.ok()) return index.status();
    if (auto s = sp->bind(**index); !s.ok()) return s;
    auto q = load_features(args.positional()[0], fo);
    if (!q.ok()) return q.status();
    if (q->dim != (*index)->d) {
        return absl::InvalidArgumentError(absl::StrFormat("probes have dimension %d, the index %d", q->dim, (*index)->d));
    }
    if (auto s = check_buffer("search results (probes x k)", {q->n, *k}, sizeof(float) + sizeof(idx_t)); !s.ok()) {
        return s;
    }
    std::vector<float> D(size_t(q->n) * size_t(*k));
    std::vector<idx_t> I(size_t(q->n) * size_t(*k));
    const double t0 = now_seconds();
    try {
        (*index)->search(q->n, q->x.data(), *k, D.data(), I.data(), sp->params());
    } catch (const std::exception& e) {
        return from_exception(e);
    }
    const double t1 = now_seconds();
    std::printf("searched %ld probes against %ld entries (%s): %.3f s (%.1f queries/s)\n", long(q->n),
                long((*index)->ntotal), sp->describe(**index).c_str(), t1 - t0, q->n / std::max(t1 - t0, 1e-9));
    if (!labels_path.empty()) {
        auto truth = load_ids(labels_path, q->n);
        if (!truth.ok()) return truth.status();
        int64_t mated = 0, hit = 0;
        for (int64_t i = 0; i < q->n; ++i) {
            if ((*truth)[i] < 0) continue;
            ++mated;
            hit += I[i * *k] == (*truth)[i];
        }
        if (mated) std::printf("rank-1 identification: %.4f (%ld of %ld mated probes)\n", double(hit) / mated, long(hit), long(mated));
    } else if (!q->names.empty()) {
        // Image folder probes against an index enrolled from an image folder: compare identities.
        auto enrolled = read_identities(*path);
        if (!enrolled.ok()) return enrolled.status();
        int64_t mated = 0, hit = 0;
        for (int64_t i = 0; i < q->n && !enrolled->empty(); ++i) {
            const std::string& who = q->names[q->labels[i]];
            ++mated;
            auto it = enrolled->find(I[i * *k]);
            hit += it != enrolled->end() && it->second == who;
        }
        if (mated) {
            std::printf("rank-1 identification by identity name: %.4f (%ld of %ld probes)\n", double(hit) / mated,
                        long(hit), long(mated));
        }
    }
    if (!out.empty()) {
        // Both targets checked first, so that a bad one does not leave the other written.
        for (const char* suffix : {"_scores.npy", "_ids.npy"}) {
            if (auto s = check_output_target(out + suffix); !s.ok()) return s;
        }
        if (auto s = write_npy_f32(out + "_scores.npy", D.data(), q->n, *k); !s.ok()) return s;
        if (auto s = write_npy_i64(out + "_ids.npy", I.data(), q->n, *k); !s.ok()) return s;
        std::printf("wrote %s_scores.npy and %s_ids.npy\n", out.c_str(), out.c_str());
    } else {
        for (int64_t i = 0; i < std::min<int64_t>(q->n, 5); ++i) {
            std::printf("probe %ld:", long(i));
            for (int64_t j = 0; j < std::min<int64_t>(*k, 5); ++j) {
                if (I[i * *k + j] >= 0) std::printf("  %ld (%.4f)", long(I[i * *k + j]), D[i * *k + j]);
            }
            std::printf("\n");
        }
    }
    return absl::OkStatus();
}

}  // namespace

int cmd_search(const std::vector<std::string>& argv) {
    if (auto rc = run_on_dask_if_asked("search", argv)) return *rc;  // sharded on Dask
    return run_command("search", argv, {"aligned"}, kUsage, run);
}

}  // namespace pslerp::cli
