// pslerp dedup: which new enrolments duplicate the gallery or each other.
#include <cstdio>
#include <limits>
#include <sstream>

#include "absl/strings/str_format.h"
#include "index/dedup.h"
#include "index/index_io.h"
#include "io/file.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp dedup --index INDEX <batch.npy|.fvecs|image folder> --threshold T\n"
        "                    [--enroll [--ids ids.npy] [--save NEW_INDEX]] [--report report.csv]\n"
        "                    [--nprobe N] [--aligned] [--model-dir DIR]\n"
        "                    [--secret-file KEY | --secret-env NAME] [--unsealed]\n"
        "Reports batch items matching a gallery entry (score >= T) and clusters of items matching\n"
        "each other. --enroll adds one representative of each new identity and saves the index\n"
        "(to --save, else back to INDEX, atomically). On an IVF index the gallery side is a range\n"
        "search of the --nprobe nearest lists (default: the index's own nprobe); a duplicate in an\n"
        "unprobed list is missed, so raise --nprobe for a stricter check. Clusters within the batch\n"
        "are found under fresh keys: near the threshold they can differ from one run to the next;\n"
        "gallery matches are repeatable.\n"
        "A sealed INDEX needs its secret (--secret-file or --secret-env); --enroll saves it sealed\n"
        "under the same secret. A clear INDEX opens without one (with a warning), and --enroll then\n"
        "needs --unsealed to save it clear again.\n";

absl::Status run(Args& args) {
    auto path = args.required("index");
    if (!path.ok()) return path.status();
    auto thr = args.required_number("threshold", -std::numeric_limits<double>::max(),
                                    std::numeric_limits<double>::max());
    if (!thr.ok()) return thr.status();
    const bool enroll = args.flag("enroll");
    const std::string ids_path = args.str("ids", "");
    const std::string save = args.str("save", *path);
    const std::string report = args.str("report", "");
    auto sp = search_options(args);
    if (!sp.ok()) return sp.status();
    const FeatureOptions fo = feature_options(args);
    auto sealing = secret_options(args, enroll);
    if (!sealing.ok()) return sealing.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (args.positional().size() != 1) return usage_error("expected one batch input");
    if (!enroll && (args.has("ids") || args.has("save"))) {
        return usage_error("--ids and --save apply with --enroll only");
    }
    auto index = load_index(*path, sealing->secret);
    if (!index.ok()) return index.status();
    if (auto s = sp->bind(**index); !s.ok()) return s;
    auto b = load_features(args.positional()[0], fo);
    if (!b.ok()) return b.status();
    if (b->dim != (*index)->d) {
        return absl::InvalidArgumentError(absl::StrFormat("batch has dimension %d, the index %d", b->dim, (*index)->d));
    }
    std::vector<int64_t> ids;
    if (!ids_path.empty()) {
        auto l = load_ids(ids_path, b->n);
        if (!l.ok()) return l.status();
        ids = *l;
    }
    DedupOptions opt;
    opt.threshold = float(*thr);
    opt.enroll_unique = enroll;
    opt.ids = ids.empty() ? nullptr : ids.data();
    opt.search = sp->params();
    const double t0 = now_seconds();
    DedupResult r;
    try {
        r = deduplicate(**index, b->n, b->x.data(), opt);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
    const double t1 = now_seconds();
    std::printf("batch of %ld against %ld entries (%s) in %.2f s: %ld match the gallery, %ld clusters within the "
                "batch, %zu new\n",
                long(b->n), long((*index)->ntotal - int64_t(r.enrolled_ids.size())), sp->describe(**index).c_str(),
                t1 - t0, long(r.duplicates_of_existing()), long(r.clusters_with_several()), r.unique.size());
    if (!report.empty()) {
        std::ostringstream f;
        f << "item,cluster,gallery_id,score\n";
        for (int64_t i = 0; i < b->n; ++i) {
            if (r.existing[i].empty()) {
                f << i << "," << r.cluster[i] << ",,\n";
            } else {
                for (const auto& [id, s] : r.existing[i]) f << i << "," << r.cluster[i] << "," << id << "," << s << "\n";
            }
        }
        if (auto s = atomic_write_file(report, f.str()); !s.ok()) return s;
    }
    if (enroll) {
        if (auto s = save_index(**index, save, *sealing); !s.ok()) return s;
        std::printf("enrolled %zu new entries; wrote %s\n", r.enrolled_ids.size(), save.c_str());
    }
    return absl::OkStatus();
}

}  // namespace

int cmd_dedup(const std::vector<std::string>& argv) {
    return run_command("dedup", argv, {"enroll", "aligned", "unsealed"}, kUsage, run);
}

}  // namespace pslerp::cli
