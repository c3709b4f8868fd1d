// Unprotected verification figures and throughput of the extractor on the real face sets in
// ../shared/data/faces, and the importance learner on real and synthetic features.
//
//   pslerp_extract_eval [--data DIR] [--model-dir DIR] [--threads N] [--batch B] [--repeat R]
//
// Per set and mode: images/second (median of R runs, model load excluded), then all-vs-all
// pairs scored four ways: raw descriptor Euclidean distance (dlib's metric), raw cosine,
// 8x16 grouped cosine with uniform weights, and the same after centring with the mean
// descriptor of the other set (DESIGN section 1). EER and TAR at FAR 1e-2.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "extractor/extractor.h"
#include "extractor/grouping.h"
#include "extractor/importance_learner.h"
#include "extractor/verification.h"
#include "plugin/params.h"
#include "plugin/protect.h"

namespace pslerp {
namespace {

struct Set {
    std::string name;
    std::vector<float> raw;  // n * 128
    std::vector<int> labels;
    int64_t n = 0;
};

std::string Arg(int argc, char** argv, const std::string& name, const std::string& def) {
    for (int i = 1; i + 1 < argc; ++i)
        if (argv[i] == "--" + name) return argv[i + 1];
    return def;
}

void Report(const char* what, const PairScores& s) {
    std::printf("| %-36s | %6.2f%% | %6.2f%% | %zu / %zu |\n", what, 100 * EqualErrorRate(s.genuine, s.impostor),
                100 * TarAtFar(s.genuine, s.impostor, 1e-2), s.genuine.size(), s.impostor.size());
}

PairScores EuclideanScores(const Set& s, int D) {
    PairScores out;
    for (int64_t i = 0; i < s.n; ++i)
        for (int64_t j = i + 1; j < s.n; ++j) {
            double d2 = 0;
            for (int k = 0; k < D; ++k) {
                const double t = s.raw[i * D + k] - s.raw[j * D + k];
                d2 += t * t;
            }
            (s.labels[i] == s.labels[j] ? out.genuine : out.impostor).push_back(static_cast<float>(-std::sqrt(d2)));
        }
    return out;
}

std::vector<float> Centred(const Set& s, const std::vector<float>& mean, int G, int d) {
    std::vector<float> x = s.raw;
    const int D = G * d;
    for (int64_t i = 0; i < s.n; ++i)
        for (int k = 0; k < D; ++k) x[i * D + k] -= mean[k];
    NormalizeGroups(x.data(), s.n, G, d);
    return x;
}

std::vector<float> Mean(const Set& s, int D) {
    std::vector<float> m(D, 0.f);
    for (int64_t i = 0; i < s.n; ++i)
        for (int k = 0; k < D; ++k) m[k] += s.raw[i * D + k] / s.n;
    return m;
}

// Identities with a centre per group; group noise grows from informative to pure noise.
void Synthetic(int ids, int per_id, uint64_t seed, std::vector<float>* x, std::vector<int>* labels) {
    const int G = 8, d = 16;
    const float noise[G] = {1.0f, 1.0f, 1.2f, 1.5f, 2.0f, 3.0f, -1, -1};  // -1: no identity signal
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n01;
    for (int id = 0; id < ids; ++id) {
        std::vector<float> centre(G * d);
        for (auto& v : centre) v = n01(rng);
        for (int k = 0; k < per_id; ++k) {
            for (int g = 0; g < G; ++g)
                for (int j = 0; j < d; ++j)
                    x->push_back(noise[g] > 0 ? centre[g * d + j] + noise[g] * n01(rng) : n01(rng));
            labels->push_back(id);
        }
    }
}

// Protected verification (plugin/protect.h, pslerp's default operating point): every sample
// enrolled with its own key and mask, every other sample used as a raw probe against it.
PairScores ProtectedScores(const std::vector<float>& x, const std::vector<int>& labels, const std::vector<float>& weights) {
    const int64_t n = static_cast<int64_t>(labels.size());
    Params p = Params::defaults(8, 16);
    if (!weights.empty()) {
        p.importance = ImportanceKind::kFixed;
        p.importance_weights = weights;
        p.weighting = Weighting::kImportance;
    }
    PairScores out;
    auto prot = protect(p, x.data(), n, RandomSource(7));
    if (!prot.ok()) return out;
    auto scores = match_all(p, x.data(), n, prot->templates.data(), prot->keys.data(), prot->masks.data(),
                            prot->weights.data(), n);
    if (!scores.ok()) return out;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
            if (i != j) (labels[i] == labels[j] ? out.genuine : out.impostor).push_back((*scores)[i * n + j]);
    return out;
}

void CompareLearned(const char* what, const std::vector<float>& train, const std::vector<int>& train_labels,
                    const std::vector<float>& test, const std::vector<int>& test_labels) {
    const int G = 8, d = 16;
    const int64_t n_train = static_cast<int64_t>(train_labels.size()), n_test = static_cast<int64_t>(test_labels.size());
    ImportanceLearnerOptions opt;
    auto fixed = LearnImportance(train.data(), n_train, train_labels.data(), opt);
    opt.learn_attention = true;
    auto att = LearnImportance(train.data(), n_train, train_labels.data(), opt);
    if (!fixed.ok() || !att.ok()) {
        std::printf("%s: learner failed: %s\n", what, std::string((fixed.ok() ? att.status() : fixed.status()).message()).c_str());
        return;
    }
    const PairScores u = AllPairScores(test.data(), n_test, test_labels.data(), G, d, {});
    const PairScores w = AllPairScores(test.data(), n_test, test_labels.data(), G, d, fixed->weights);
    const std::vector<float> sw = AttentionImportance(test.data(), n_test, G, d, att->attention_wq, att->attention_wk);
    const PairScores a = AllPairScores(test.data(), n_test, test_labels.data(), G, d, {}, sw);
    std::printf("\n%s (weights learnt on the training part, scored on the test part)\n", what);
    std::printf("| importance                         |   EER   | TAR@FAR1e-2 | genuine / impostor pairs |\n|---|---|---|---|\n");
    Report("uniform", u);
    Report("learned fixed weights", w);
    Report("learned self-attention (Wq, Wk)", a);
    Report("protected (defaults), uniform", ProtectedScores(test, test_labels, {}));
    Report("protected (defaults), learned fixed", ProtectedScores(test, test_labels, fixed->weights));
    std::printf("learned weights:");
    for (float v : fixed->weights) std::printf(" %.3f", v);
    std::printf("   (train d' %.3f -> %.3f; attention d' %.3f -> %.3f)\n", fixed->initial_objective,
                fixed->final_objective, att->initial_objective, att->final_objective);
}

int Main(int argc, char** argv) {
    const std::string data = Arg(argc, argv, "data", "../shared/data/faces");
    const std::string model_dir = DefaultModelDir(Arg(argc, argv, "model-dir", ""));
    const int threads = std::atoi(Arg(argc, argv, "threads", "0").c_str());
    const int batch = std::atoi(Arg(argc, argv, "batch", "16").c_str());
    const int repeat = std::max(1, std::atoi(Arg(argc, argv, "repeat", "3").c_str()));
    const int G = 8, d = 16, D = 128;

    std::printf("pslerp_extract_eval: data %s, model %s, threads %d (hardware %u), batch %d, repeat %d\n", data.c_str(),
                model_dir.c_str(), threads, std::thread::hardware_concurrency(), batch, repeat);
    struct Mode {
        std::string set;
        bool aligned;
    };
    const std::vector<Mode> modes = {{"dlib-johns", true}, {"dlib-johns", false}, {"faceapi-bbt", true}, {"faceapi-bbt", false}};
    std::vector<Set> sets;
    for (const Mode& m : modes) {
        ExtractorOptions o;
        o.model_dir = model_dir;
        o.aligned = m.aligned;
        o.num_threads = threads;
        o.batch_size = batch;
        auto ex = Extractor::Create(o);
        if (!ex.ok()) {
            std::fprintf(stderr, "pslerp_extract_eval: %s\n", std::string(ex.status().message()).c_str());
            return 2;
        }
        auto images = ListImageFolder(data + "/" + m.set);
        if (!images.ok()) {
            std::fprintf(stderr, "pslerp_extract_eval: %s\n", std::string(images.status().message()).c_str());
            return 2;
        }
        std::vector<std::string> paths;
        for (const auto& im : *images) paths.push_back(im.path);
        const std::vector<int> labels = IdentityLabels(*images);
        std::vector<double> seconds;
        std::vector<ExtractResult> results;
        for (int r = 0; r < repeat; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            results = (*ex)->ExtractFiles(paths);
            seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(seconds.begin(), seconds.end());
        Set s;
        s.name = absl::StrFormat("%s (%s)", m.set, m.aligned ? "aligned chips" : "detect + align");
        int failed = 0;
        for (size_t i = 0; i < results.size(); ++i) {
            if (!results[i].ok()) {
                ++failed;
                continue;
            }
            s.raw.insert(s.raw.end(), results[i].raw.begin(), results[i].raw.end());
            s.labels.push_back(labels[i]);
        }
        s.n = static_cast<int64_t>(s.labels.size());
        std::printf("\n### %s: %zu images, %d without a face, %.1f images/s (median of %d, %.3f s)\n", s.name.c_str(),
                    paths.size(), failed, paths.size() / seconds[seconds.size() / 2], repeat, seconds[seconds.size() / 2]);
        sets.push_back(std::move(s));
    }

    std::printf("\n## Unprotected verification, all-vs-all pairs\n");
    for (size_t k = 0; k < sets.size(); ++k) {
        const Set& s = sets[k];
        const Set& other = sets[(k + 2) % sets.size()];  // the other identity set, same mode
        std::printf("\n%s\n| score                              |   EER   | TAR@FAR1e-2 | genuine / impostor pairs |\n|---|---|---|---|\n",
                    s.name.c_str());
        Report("raw 128-D Euclidean (dlib metric)", EuclideanScores(s, D));
        Report("raw 128-D cosine", AllPairScores(s.raw.data(), s.n, s.labels.data(), 1, D, {}));
        Report("8x16 groups, uniform", AllPairScores(s.raw.data(), s.n, s.labels.data(), G, d, {}));
        const std::vector<float> c = Centred(s, Mean(other, D), G, d);
        Report("8x16 groups, centred, uniform", AllPairScores(c.data(), s.n, s.labels.data(), G, d, {}));
    }

    std::printf("\n## Importance learner\n");
    // Real: learn on one identity set (centred with its own mean), test on the other (centred
    // with the training set's mean): no identity is shared between training and test.
    for (size_t k : {size_t{1}, size_t{3}}) {
        const Set& train = sets[k];
        const Set& test = sets[(k + 2) % sets.size()];
        const std::vector<float> mean = Mean(train, D);
        CompareLearned(absl::StrFormat("real: train %s -> test %s", train.name, test.name).c_str(),
                       Centred(train, mean, G, d), train.labels, Centred(test, mean, G, d), test.labels);
    }
    std::vector<float> xs, xt;
    std::vector<int> ls, lt;
    Synthetic(100, 5, 1, &xs, &ls);
    Synthetic(100, 5, 2, &xt, &lt);
    CompareLearned("synthetic: 8x16, 100 ids x 5 (train seed 1, test seed 2), groups 6-7 pure noise", xs, ls, xt, lt);
    return 0;
}

}  // namespace
}  // namespace pslerp

int main(int argc, char** argv) { return pslerp::Main(argc, argv); }
