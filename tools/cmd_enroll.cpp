// pslerp enroll: raw features (or an image folder) in, protected index file out.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp enroll <features.npy|.fvecs|image folder> --out INDEX [--factory PSlerp8x16]\n"
        "                     [--ids ids.npy] [--train train.npy | --no-train] [--batch 20000]\n"
        "                     [--aligned] [--model-dir DIR] [--seed S (tests only)]\n"
        "Protects every feature with fresh keys and masks and writes one index file. Without --ids,\n"
        "ids are row numbers (or, for an image folder, rows in folder order). The centring is\n"
        "learned from --train, or from the features themselves unless --no-train.\n";

absl::Status run(Args& args) {
    auto out = args.required("out");
    if (!out.ok()) return out.status();
    const std::string factory = args.str("factory", "PSlerp8x16");
    const std::string ids_path = args.str("ids", "");
    const std::string train_path = args.str("train", "");
    const bool no_train = args.flag("no-train");
    auto batch = args.integer("batch", 20000);
    auto seed = args.integer("seed", -1);
    if (!batch.ok()) return batch.status();
    if (!seed.ok()) return seed.status();
    if (args.positional().size() != 1) return absl::InvalidArgumentError("expected one input (features or folder)");
    auto f = load_features(args.positional()[0], args);
    if (!f.ok()) return f.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (*batch <= 0) return absl::InvalidArgumentError("--batch must be > 0");

    std::unique_ptr<IndexProtectedSlerp> index;
    try {
        index = index_factory(int(f->dim), factory);
    } catch (const std::exception& e) {
        return absl::InvalidArgumentError(e.what());
    }
    if (*seed >= 0) {
        std::fprintf(stderr, "pslerp enroll: WARNING --seed makes keys reproducible: for tests only\n");
        index->set_seed(uint64_t(*seed));
    }
    std::vector<int64_t> ids(f->n);
    if (!ids_path.empty()) {
        auto loaded = load_ids(ids_path, f->n);
        if (!loaded.ok()) return loaded.status();
        ids = *loaded;
    } else {
        for (int64_t i = 0; i < f->n; ++i) ids[i] = i;
    }
    const double t0 = now_seconds();
    if (!no_train) {
        Features tr;
        const Features* train = &*f;
        if (!train_path.empty()) {
            Args none({});
            auto t = load_features(train_path, none);
            if (!t.ok()) return t.status();
            if (t->dim != f->dim) return absl::InvalidArgumentError("--train features have another dimension");
            tr = std::move(*t);
            train = &tr;
        }
        const int64_t nt = std::min<int64_t>(train->n, 200000);
        std::fprintf(stderr, "training centring%s on %ld vectors\n", index->coarse ? " and coarse index" : "", long(nt));
        index->train(nt, train->x.data());
    } else if (!index->is_trained) {
        return absl::InvalidArgumentError("the coarse index needs training: drop --no-train or give --train");
    }
    enroll_in_batches(*index, f->n, f->x.data(), ids.data(), *batch);
    const double t1 = now_seconds();
    write_index(*index, *out);
    std::printf("enrolled %ld entries (%s) in %.2f s (%.0f /s); %zu bytes per entry + %.0f coarse; wrote %s\n",
                long(index->ntotal), factory.c_str(), t1 - t0, f->n / std::max(t1 - t0, 1e-9),
                index->storage_bytes_per_entry(), index->coarse_bytes_per_entry(), out->c_str());
    return absl::OkStatus();
}

}  // namespace

int cmd_enroll(const std::vector<std::string>& argv) {
    return run_command("enroll", argv, {"no-train", "aligned"}, kUsage, run);
}

}  // namespace pslerp::cli
