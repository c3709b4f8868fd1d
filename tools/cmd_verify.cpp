// pslerp verify: 1:1 verification of probes against the ids they claim.
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "index/array_io.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp verify --index INDEX <probes.npy|.fvecs|image folder> --ids claimed.npy\n"
        "                     --threshold T [--out scores.npy] [--aligned] [--model-dir DIR]\n"
        "Scores probe i against the entry with id claimed[i]; accepts when score >= T.\n";

absl::Status run(Args& args) {
    auto path = args.required("index");
    auto ids_path = args.required("ids");
    auto thr = args.number("threshold", std::nan(""));
    for (const auto& s : {path.status(), ids_path.status(), thr.status()}) {
        if (!s.ok()) return s;
    }
    if (std::isnan(*thr)) return absl::InvalidArgumentError("missing required option --threshold");
    const std::string out = args.str("out", "");
    if (args.positional().size() != 1) return absl::InvalidArgumentError("expected one probe input");
    auto q = load_features(args.positional()[0], args);
    if (!q.ok()) return q.status();
    if (auto s = args.finish(); !s.ok()) return s;
    auto ids = load_ids(*ids_path, q->n);
    if (!ids.ok()) return ids.status();
    auto index = load_index(*path);
    if (!index.ok()) return index.status();
    if (q->dim != (*index)->d) {
        return absl::InvalidArgumentError(absl::StrFormat("probes have dimension %d, the index %d", q->dim, (*index)->d));
    }
    std::vector<float> scores(q->n);
    try {
        protected_of(**index).verify_batch(q->n, q->x.data(), ids->data(), scores.data());
    } catch (const std::exception& e) {
        return from_exception(e);
    }
    int64_t accepted = 0;
    for (int64_t i = 0; i < q->n; ++i) {
        accepted += scores[i] >= *thr;
        if (q->n <= 20) {
            std::printf("probe %ld claims %ld: score %.4f -> %s\n", long(i), long((*ids)[i]), scores[i],
                        scores[i] >= *thr ? "accept" : "reject");
        }
    }
    std::printf("accepted %ld of %ld at threshold %.4f\n", long(accepted), long(q->n), *thr);
    if (!out.empty()) return write_npy_f32(out, scores.data(), q->n, -1);
    return absl::OkStatus();
}

}  // namespace

int cmd_verify(const std::vector<std::string>& argv) {
    return run_command("verify", argv, {"aligned"}, kUsage, run);
}

}  // namespace pslerp::cli
