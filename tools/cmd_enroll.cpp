// pslerp enroll: raw features (or an image folder) in, protected index file out.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "tools/common.h"
#ifdef PSLERP_HAVE_EXTRACTOR
#include "extractor/importance_learner.h"
#endif

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp enroll <features.npy|.fvecs|image folder> --out INDEX [--factory PSlerp8x16]\n"
        "                     [--ids ids.npy] [--train train.npy | --no-train] [--batch 20000]\n"
        "                     [--aligned] [--model-dir DIR] [--seed S (tests only)]\n"
        "                     [--learn-importance [--labels labels.npy] [--attention]]\n"
        "Protects every feature with fresh keys and masks and writes one index file. Without --ids,\n"
        "ids are row numbers (for an image folder: rows in folder order, with the identity of each\n"
        "id written to INDEX.identities.tsv). The centring is learned from --train, or from the\n"
        "features themselves unless --no-train. --learn-importance fits per-group importance\n"
        "weights (or, with --attention, self-attention projections) on labelled features (an\n"
        "image folder's identities, or --labels) with LibTorch; they are stored in the index.\n";

absl::Status run(Args& args) {
    auto out = args.required("out");
    if (!out.ok()) return out.status();
    const std::string factory = args.str("factory", "PSlerp8x16");
    const std::string ids_path = args.str("ids", "");
    const std::string train_path = args.str("train", "");
    const bool no_train = args.flag("no-train");
    const bool learn = args.flag("learn-importance");
    const bool attention = args.flag("attention");
    const std::string labels_path = args.str("labels", "");
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
    if (index->coarse && index->coarse_embedding == CoarseEmbedding::kIdentity) {
        std::fprintf(stderr,
                     "pslerp enroll: WARNING embedding=identity: the coarse index holds an approximation of each "
                     "raw feature; protect the index file like raw features (README, Security)\n");
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
    if (learn) {
        std::vector<int64_t> labels = f->labels;
        if (!labels_path.empty()) {
            auto l = load_ids(labels_path, f->n);
            if (!l.ok()) return l.status();
            labels = *l;
        }
        if (labels.empty()) return absl::InvalidArgumentError("--learn-importance needs labels (an image folder or --labels)");
#ifdef PSLERP_HAVE_EXTRACTOR
        std::vector<float> xc(f->x.size());
        index->centering.apply(f->x.data(), f->n, int(f->dim), xc.data());
        std::vector<int> il(labels.begin(), labels.end());
        ImportanceLearnerOptions lo;
        lo.groups = index->params.groups;
        lo.group_dim = index->params.group_dim;
        lo.learn_attention = attention;
        auto learned = LearnImportance(xc.data(), f->n, il.data(), lo);
        if (!learned.ok()) return learned.status();
        Params& p = index->params;
        if (attention) {
            p.importance = ImportanceKind::kSelfAttention;
            p.attention_wq = learned->attention_wq;
            p.attention_wk = learned->attention_wk;
        } else {
            p.importance = ImportanceKind::kFixed;
            p.importance_weights = learned->weights;
        }
        p.weighting = Weighting::kImportance;
        if (auto s = p.validate(); !s.ok()) return s;
        std::fprintf(stderr, "learned importance: d' %.3f -> %.3f on %ld genuine / %ld impostor pairs\n",
                     learned->initial_objective, learned->final_objective, long(learned->genuine_pairs),
                     long(learned->impostor_pairs));
#else
        return absl::UnimplementedError("--learn-importance needs the extractor build (LibTorch)");
#endif
    }
    enroll_in_batches(*index, f->n, f->x.data(), ids.data(), *batch);
    const double t1 = now_seconds();
    write_index(*index, *out);
    if (!f->names.empty()) {
        if (auto s = write_identities(*out, ids, *f); !s.ok()) return s;
        std::printf("identities of the enrolled images: %s\n", identities_path(*out).c_str());
    }
    std::printf("enrolled %ld entries (%s) in %.2f s (%.0f /s); %zu bytes per entry + %.0f coarse; wrote %s\n",
                long(index->ntotal), factory.c_str(), t1 - t0, f->n / std::max(t1 - t0, 1e-9),
                index->storage_bytes_per_entry(), index->coarse_bytes_per_entry(), out->c_str());
    return absl::OkStatus();
}

}  // namespace

int cmd_enroll(const std::vector<std::string>& argv) {
    return run_command("enroll", argv, {"no-train", "aligned", "learn-importance", "attention"}, kUsage, run);
}

}  // namespace pslerp::cli
