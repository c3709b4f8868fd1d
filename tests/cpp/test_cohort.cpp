// Cohort score normalisation (index/cohort.h, Params::norm): the per-group cosine kernels, the
// normalised scores against the reference, the cohort's own score distribution, the cohort
// record in files and its rules, and the rank-1 gain it exists for.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/cohort.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "plugin/reference.h"
#include "plugin/synth.h"
#include "test_util.h"

namespace pslerp {
namespace {

using testing_util::random_features;

Params cohort_params(int G, int d, uint64_t = 0) {
    Params p = Params::defaults(G, d);
    p.norm = Norm::kCohort;
    p.cohort_size = 64;
    return p;
}

TEST(Cohort, GroupCosineKernelsAgreeWithTheReference) {
    for (const auto& [G, d, shared] : {std::tuple{8, 16, false}, std::tuple{11, 8, false}, std::tuple{5, 16, true}}) {
        Params p = cohort_params(G, d);
        p.norm = Norm::kNone;
        if (shared) p.key_mode = KeyMode::kShared;
        IndexProtectedSlerp index(p);
        index.set_seed(3);
        const auto x = random_features(7, p.dim(), 4);
        index.add(7, x.data());
        const int64_t nq = 5;
        const auto q = random_features(nq, p.dim(), 5);
        auto prep = prepare_probes(p, q.data(), nq);
        ASSERT_TRUE(prep.ok());
        const kernels::Layout& L = index.layout;
        std::vector<float> kq(nq * L.query_floats());
        for (int64_t i = 0; i < nq; ++i) {
            kernels::prepare_query(L, prep->xn.data() + i * p.dim(), prep->t.data() + i * G, kq.data() + i * L.query_floats());
        }
        std::vector<float> e(p.dim()), k(p.key_dim()), one(G);
        std::vector<uint8_t> m(p.dim());
        for (const kernels::KernelTable* K : {&kernels::scalar_kernels(), kernels::avx2_kernels()}) {
            if (!K) continue;
            for (int64_t j = 0; j < 7; ++j) {
                std::vector<float> c(nq * L.group_floats(), -9.f);
                K->group_cosines(index.store.view(), kq.data(), nq, j, c.data());
                index.store.template_row(p, j, e.data());
                index.store.key_row(p, j, k.data());
                index.store.mask_row(p, j, m.data());
                for (int64_t i = 0; i < nq; ++i) {
                    for (int g = 0; g < int(L.group_floats()); ++g) {
                        if (g >= G) {
                            EXPECT_EQ(c[i * L.group_floats() + g], 0.f) << K->name << " padded lane " << g;
                            continue;
                        }
                        std::fill(one.begin(), one.end(), 0.f);
                        one[g] = 1.f;  // the reference's score with all weight on group g is its cosine
                        const double ref = reference::match_one(p, q.data() + i * p.dim(), e.data(), k.data(), m.data(),
                                                                one.data());
                        EXPECT_NEAR(c[i * L.group_floats() + g], ref, 2e-5) << K->name << " G=" << G << " g=" << g;
                    }
                }
            }
        }
    }
}

TEST(Cohort, TheCohortScoresZeroMeanAgainstEveryEntryAndSearchMatchesTheReference) {
    const Params p = cohort_params(8, 16);
    IndexProtectedSlerp index(p);  // untrained: no centring, so the model's draws are probes as they are
    const auto others = random_features(200, p.dim(), 11);
    index.set_cohort(200, others.data());
    EXPECT_EQ(index.cohort().source, CohortSource::kUser);
    EXPECT_EQ(index.cohort().fitted_from, 200);
    index.set_seed(1);
    const int64_t n = 40;
    const auto x = random_features(n, p.dim(), 12);
    index.add(n, x.data());
    // The model's draws against each entry: mean 0 (up to float sums), sd about 1 (exactly 1 if
    // the groups' cosines were independent).
    const std::vector<float> cohort = cohort_samples(p, index.cohort());
    const int64_t m = p.cohort_size;
    ASSERT_EQ(cohort.size(), size_t(m) * p.dim());
    std::vector<float> s(m * n);
    std::vector<idx_t> labels(m * n);
    index.search(m, cohort.data(), n, s.data(), labels.data());
    std::vector<double> sum(n, 0), sum2(n, 0);
    for (int64_t i = 0; i < m * n; ++i) {
        sum[labels[i]] += s[i];
        sum2[labels[i]] += double(s[i]) * s[i];
    }
    for (int64_t j = 0; j < n; ++j) {
        const double mean = sum[j] / m, sd = std::sqrt(sum2[j] / m - mean * mean);
        EXPECT_NEAR(mean, 0.0, 1e-4) << "entry " << j;
        EXPECT_GT(sd, 0.5) << "entry " << j;
        EXPECT_LT(sd, 2.0) << "entry " << j;
    }
    // Scores: the reference's weighted cosine with the stored weights, plus the offset.
    const auto q = random_features(3, p.dim(), 13);
    const auto ref = testing_util::reference_scores(index, q, 3);  // ids are rows here
    for (int64_t j = 0; j < n; ++j) {
        for (int i = 0; i < 3; ++i) EXPECT_NEAR(index.verify(q.data() + i * p.dim(), j), ref[i * n + j], 1e-4);
    }
}

TEST(Cohort, TheModelIsDrawnTheSameWayEverywhereAndFitsOnlyEnoughVectors) {
    const Params p = cohort_params(8, 16);
    const Cohort iso = builtin_cohort(p);
    EXPECT_TRUE(iso.moments.empty());
    EXPECT_EQ(cohort_samples(p, iso), cohort_samples(p, builtin_cohort(p)));
    const auto x = random_features(100, p.dim(), 3);
    std::vector<float> xn(x.size());
    ASSERT_TRUE(normalize_groups(p, x.data(), 100, xn.data()).ok());
    const Cohort fitted = fit_cohort(p, 100, xn.data(), CohortSource::kTrain);
    EXPECT_EQ(fitted.moments.size(), size_t(8 * 16 * 16));
    EXPECT_NE(fitted.digest, iso.digest);
    // Each group's matrix is the mean outer product: its trace is 1 for unit groups.
    for (int g = 0; g < 8; ++g) {
        double trace = 0;
        for (int a = 0; a < 16; ++a) trace += fitted.moments[g * 256 + a * 16 + a];
        EXPECT_NEAR(trace, 1.0, 1e-5);
    }
    EXPECT_NE(cohort_samples(p, fitted), cohort_samples(p, iso));
    EXPECT_THROW(fit_cohort(p, 63, xn.data(), CohortSource::kTrain), InvalidInputError);
    // A model from a file is checked.
    Cohort forged = fitted;
    forged.moments[5] = std::nanf("");
    EXPECT_THROW(check_cohort(p, forged), faiss::FaissException);
    forged = fitted;
    for (int a = 0; a < 16; ++a) forged.moments[a * 16 + a] = -forged.moments[a * 16 + a];  // not PSD
    EXPECT_THROW(check_cohort(p, forged), faiss::FaissException);
    forged = fitted;
    forged.moments.pop_back();
    EXPECT_THROW(check_cohort(p, forged), faiss::FaissException);
}

TEST(Cohort, TheBuiltInModelIsTheDefaultAndFilesKeepTheModel) {
    for (const char* factory : {"PSlerp8x16(cohort=64)", "IVF4,PSlerp8x16(cohort=64)"}) {
        for (const bool trained : {false, true}) {
            auto a = index_factory(128, factory);
            auto& pa = protected_of(*a);
            const bool ivf = dynamic_cast<IndexIVFProtectedSlerp*>(a.get()) != nullptr;
            const auto train = random_features(200, 128, 31);
            if (trained || ivf) a->train(200, train.data());
            EXPECT_EQ(pa.cohort().source, trained || ivf ? CohortSource::kTrain : CohortSource::kBuiltIn) << factory;
            pa.set_seed(9);
            const auto x = random_features(20, 128, 32);
            a->add(10, x.data());
            const auto bytes = serialize_index_unsealed(*a);
            auto b = deserialize_index(bytes.data(), bytes.size());
            auto& pb = protected_of(*b);
            EXPECT_EQ(pb.cohort().digest, pa.cohort().digest) << factory;
            EXPECT_EQ(pb.cohort().moments, pa.cohort().moments) << factory;
            EXPECT_EQ(pb.params.norm, Norm::kCohort);
            // Entries added after loading are normalised exactly as in the index that was saved.
            pb.set_seed(9);
            a->add(10, x.data() + 10 * 128);
            b->add(10, x.data() + 10 * 128);
            EXPECT_EQ(serialize_index_unsealed(*a), serialize_index_unsealed(*b)) << factory;
        }
    }
}

TEST(Cohort, EntriesFixTheModel) {
    const Params p = cohort_params(8, 16);
    auto owner = index_factory(p.dim(), "IVF4,PSlerp8x16(cohort=64)");
    auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*owner);
    const auto train = random_features(200, p.dim(), 31);
    ivf.train(200, train.data());
    const auto x = random_features(20, p.dim(), 32);
    ivf.add(20, x.data());
    const auto other = random_features(200, p.dim(), 33);
    const std::string refused = error_of([&] { ivf.set_cohort(200, other.data()); });
    EXPECT_NE(refused.find("another cohort"), std::string::npos) << refused;
    ivf.set_cohort(200, train.data());  // the same model again: accepted
    EXPECT_EQ(ivf.ntotal, 20);
    // Merging indexes normalised against different models is refused, and changes nothing.
    auto owner2 = index_factory(p.dim(), "IVF4,PSlerp8x16(cohort=64)");
    auto& ivf2 = dynamic_cast<IndexIVFProtectedSlerp&>(*owner2);
    ivf2.train(200, train.data());
    ivf2.set_cohort(200, other.data());
    const auto y = random_features(5, p.dim(), 34);
    const std::vector<idx_t> ids = {100, 101, 102, 103, 104};
    ivf2.add_with_ids(5, y.data(), ids.data());
    const std::string merge = error_of([&] { ivf.merge_from(ivf2, 0); });
    EXPECT_NE(merge.find("different cohort models"), std::string::npos) << merge;
    EXPECT_EQ(ivf.ntotal, 20);
    EXPECT_EQ(ivf2.ntotal, 5);
    // An empty index takes the model of what it receives.
    auto owner3 = index_factory(p.dim(), "IVF4,PSlerp8x16(cohort=64)");
    auto& ivf3 = dynamic_cast<IndexIVFProtectedSlerp&>(*owner3);
    ivf3.train(200, train.data());
    ivf3.merge_from(ivf2, 0);
    EXPECT_EQ(ivf3.cohort().digest, ivf2.cohort().digest);
    // norm=none has no cohort to set; too few vectors fit no model.
    IndexProtectedSlerp plain(Params::slerpface(8, 16));
    EXPECT_NE(error_of([&] { plain.set_cohort(200, train.data()); }).find("norm is 'none'"), std::string::npos);
    IndexProtectedSlerp few(p);
    EXPECT_NE(error_of([&] { few.set_cohort(3, train.data()); }).find("at least"), std::string::npos);
}

// What the normalisation is for: at t = 0.9 on a synthetic gallery, rank-1 rises.
TEST(Cohort, RaisesRank1OnASyntheticGallery) {
    SynthConfig cfg;  // 8 x 16, isotropic identities at 128-D
    cfg.seed = 5;
    const int64_t gallery = 5000, mated = 600;
    auto split = synth_gallery(cfg, gallery, mated, 0);
    ASSERT_TRUE(split.ok());
    auto others = synth_identities(cfg, gallery + 1000, 256);
    ASSERT_TRUE(others.ok());
    double rank1[2];
    for (const Norm norm : {Norm::kNone, Norm::kCohort}) {
        Params p = Params::defaults(8, 16);
        p.t = 0.9f;
        p.norm = norm;
        IndexProtectedSlerp index(p);
        if (norm == Norm::kCohort) index.set_cohort(256, others->x.data());
        index.set_seed(7);
        index.add(gallery, split->gallery.x.data());
        std::vector<float> D(mated);
        std::vector<idx_t> I(mated);
        index.search(mated, split->probes.x.data(), 1, D.data(), I.data());
        int64_t hits = 0;
        for (int64_t i = 0; i < mated; ++i) hits += I[i] == split->probes.labels[i];
        rank1[int(norm)] = double(hits) / mated;
    }
    std::printf("rank-1 at t = 0.9, 5000 x 128: none %.3f, cohort %.3f\n", rank1[0], rank1[1]);
    EXPECT_GT(rank1[1], rank1[0] + 0.01);
}

}  // namespace
}  // namespace pslerp
