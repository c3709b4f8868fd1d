// pslerp enroll: raw features (or an image folder) in, protected index file out.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "io/file.h"
#include "tools/common.h"
#ifdef PSLERP_WITH_EXTRACTOR
#include "extractor/importance_learner.h"
#endif

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp enroll <features.npy|.fvecs|image folder> --out INDEX\n"
        "                     (--secret-file KEY | --secret-env NAME | --unsealed) [--factory PSlerp8x16]\n"
        "                     [--ids ids.npy] [--train train.npy | --train-on-enrolled | --no-train]\n"
        "                     [--cohort other-people.npy]\n"
        "                     [--batch 20000] [--aligned] [--model-dir DIR] [--seed S (tests only)]\n"
        "                     [--learn-importance [--labels labels.npy] [--attention]]\n"
        "Protects every feature with fresh keys and masks and writes one index file. Without --ids,\n"
        "ids are row numbers (for an image folder: rows in folder order, with the identity of each\n"
        "id written to INDEX.identities.tsv).\n"
        "--factory PSlerp8x16 is the exhaustive index (every entry scored per query);\n"
        "IVF1024,PSlerp8x16 an IVF index (a query scores the entries of its nprobe nearest lists),\n"
        "for large galleries; about 4 * sqrt(N) lists suit N entries.\n"
        "Training: --train gives representative features, preferably of OTHER people than the\n"
        "enrolled ones: an IVF index stores its k-means centroids, each an average of training\n"
        "features, in the file. An IVF index needs --train, or --train-on-enrolled to accept that its\n"
        "centroids average enrolled faces. The exhaustive index only learns the centring (a mean),\n"
        "from --train or else the enrolled features, unless --no-train.\n"
        "Scores are normalised per entry against a cohort model (norm=cohort, the default): the\n"
        "second moments of the training features, or of --cohort (features of at least 64 people who\n"
        "are not enrolled); never a feature, only that aggregate, is stored.\n"
        "--learn-importance fits per-group importance weights (or, with --attention, self-attention\n"
        "projections) on labelled features (an image folder's identities, or --labels) with LibTorch;\n"
        "they are stored in the index.\n"
        "The index file is sealed (encrypted and authenticated) under the secret of --secret-file\n"
        "(made by pslerp keygen) or of the environment variable --secret-env (64 hex digits), and a\n"
        "sealed gallery gets a secret frame (a random rotation per group, its seed only in the\n"
        "sealed file): without the secret, features estimated from its entries fail as probes\n"
        "(README \"Security\"). --unsealed writes a clear file instead: anyone who reads it gets\n"
        "the keys and templates.\n"
        "--scheduler tcp://host:8786: sharded on a Dask cluster (README; with --help, its options).\n";

absl::Status run(Args& args) {
    auto out = args.required("out");
    if (!out.ok()) return out.status();
    const std::string factory = args.str("factory", "PSlerp8x16");
    const std::string ids_path = args.str("ids", "");
    const std::string train_path = args.str("train", "");
    const std::string cohort_path = args.str("cohort", "");
    const bool no_train = args.flag("no-train");
    const bool train_on_enrolled = args.flag("train-on-enrolled");
    const bool learn = args.flag("learn-importance");
    const bool attention = args.flag("attention");
    const std::string labels_path = args.str("labels", "");
    auto batch = args.integer("batch", 20000, 1, int64_t{1} << 30);
    if (!batch.ok()) return batch.status();
    auto seed = args.integer("seed", -1, 0, std::numeric_limits<int64_t>::max());
    if (!seed.ok()) return seed.status();
    const FeatureOptions fo = feature_options(args);
    auto sealing = secret_options(args, true);
    if (!sealing.ok()) return sealing.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (args.positional().size() != 1) return usage_error("expected one input (features or folder)");
    if (auto s = check_output_target(*out); !s.ok()) return s;
    if (int(!train_path.empty()) + int(no_train) + int(train_on_enrolled) > 1) {
        return usage_error("give at most one of --train, --train-on-enrolled, --no-train");
    }
    if (!labels_path.empty() && !learn) return usage_error("--labels applies with --learn-importance only");
    if (attention && !learn) return usage_error("--attention applies with --learn-importance only");
    auto f = load_features(args.positional()[0], fo);
    if (!f.ok()) return f.status();

    auto index = make_index(f->dim, factory);
    if (!index.ok()) return index.status();
    ProtectedIndex& pi = protected_of(**index);
    const faiss::IndexIVF* ivf = as_ivf(**index);
    if (ivf && no_train) {
        return usage_error("an IVF index cannot skip training (its lists need centroids): "
                           "give --train FILE instead of --no-train");
    }
    if (ivf && train_path.empty() && !train_on_enrolled) {
        return usage_error(absl::StrCat(
                "an IVF index needs training: give --train FILE with representative features of other people than "
                "the enrolled ones (the ",
                ivf->nlist, " k-means centroids are stored in the index file, each an average of its training "
                "features), or --train-on-enrolled to train on the enrolled features themselves (less private)"));
    }
    if (*seed >= 0) {
        pi.set_seed(uint64_t(*seed));
    }
    if (!cohort_path.empty()) {
        auto c = load_features(cohort_path, fo);
        if (!c.ok()) return c.status();
        if (c->dim != f->dim) {
            return absl::InvalidArgumentError(
                    absl::StrFormat("--cohort features have dimension %d, the enrolled ones %d", c->dim, f->dim));
        }
        try {
            pi.set_cohort(c->n, c->x.data());  // fitted again under the centring that training learns
        } catch (const std::exception& e) {
            return from_exception(e);
        }
    }
    // A sealed gallery gets its own secret frame (self-attention importance reads coordinates
    // within a group, which the frame would permute: such a gallery goes without one).
    if (!sealing->unsealed && !(learn && attention)) {
        try {
            enable_secret_frame(**index);
        } catch (const std::exception& e) {
            return from_exception(e);
        }
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
            auto t = load_features(train_path, fo);
            if (!t.ok()) return t.status();
            if (t->dim != f->dim) {
                return absl::InvalidArgumentError(
                        absl::StrFormat("--train features have dimension %d, the enrolled ones %d", t->dim, f->dim));
            }
            tr = std::move(*t);
            train = &tr;
        }
        std::error_code ec;
        const bool on_enrolled =
                train == &*f || std::filesystem::equivalent(train_path, args.positional()[0], ec);
        std::fprintf(stderr, "training %s on %ld %s features\n", ivf ? "centring and centroids" : "centring",
                     long(train->n), on_enrolled ? "enrolled" : "--train");
        if (auto s = train_index(**index, train->n, train->x.data()); !s.ok()) return s;
        if (ivf && on_enrolled) {
            std::fprintf(stderr,
                         "pslerp enroll: WARNING the IVF was trained on the enrolled features: its %zu centroids, "
                         "stored in the index file, average enrolled faces (about %ld each), which is less private "
                         "than centroids of other people's features (--train)\n",
                         ivf->nlist, long(train->n / int64_t(ivf->nlist)));
        }
    }
    if (learn) {
        std::vector<int64_t> labels = f->labels;
        if (!labels_path.empty()) {
            auto l = load_ids(labels_path, f->n);
            if (!l.ok()) return l.status();
            labels = *l;
        }
        if (labels.empty()) return usage_error("--learn-importance needs labels (an image folder or --labels)");
#ifdef PSLERP_WITH_EXTRACTOR
        std::vector<float> xc(f->x.size());
        pi.centering.apply(f->x.data(), f->n, int(f->dim), xc.data());
        std::vector<int> il(labels.begin(), labels.end());
        ImportanceLearnerOptions lo;
        lo.groups = pi.params.groups;
        lo.group_dim = pi.params.group_dim;
        lo.learn_attention = attention;
        auto learned = learn_importance(xc.data(), f->n, il.data(), lo);
        if (!learned.ok()) return learned.status();
        Params& p = pi.params;
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
    if (auto s = enroll_in_batches(**index, f->n, f->x.data(), ids.data(), *batch); !s.ok()) return s;
    const double t1 = now_seconds();
    if (auto s = save_index(**index, *out, *sealing); !s.ok()) return s;
    if (!f->names.empty()) {
        if (auto s = write_identities(*out, ids, *f); !s.ok()) return s;
        std::printf("identities of the enrolled images: %s\n", identities_path(*out).c_str());
    }
    std::printf("enrolled %ld entries (%s) in %.2f s (%.0f /s, training included); %zu bytes per entry",
                long((*index)->ntotal), describe_index(**index).c_str(), t1 - t0, f->n / std::max(t1 - t0, 1e-9),
                pi.bytes_per_entry());
    if (auto* ix = dynamic_cast<const IndexIVFProtectedSlerp*>(ivf)) {
        std::printf(", %zu lists (imbalance %.2f, nprobe %zu)", ix->nlist, ix->imbalance(), ix->nprobe);
    }
    std::printf("; wrote %s\n", out->c_str());
    return absl::OkStatus();
}

}  // namespace

int cmd_enroll(const std::vector<std::string>& argv) {
    if (auto rc = run_on_dask_if_asked("enroll", argv)) return *rc;  // sharded on Dask
    return run_command("enroll", argv,
                       {"no-train", "train-on-enrolled", "aligned", "learn-importance", "attention", "unsealed"},
                       kUsage, run);
}

}  // namespace pslerp::cli
