// Factory strings: every documented form builds the right index kind with its options applied,
// malformed strings (and the retired coarse stage) say what was expected, describe_index
// gives back a string that rebuilds the same index, and an index built by name, filled, saved
// and loaded again keeps its parameters and answers every search as before.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>

#include "index/factory.h"
#include "index/index_io.h"
#include "test_util.h"

namespace pslerp {
namespace {

enum class Kind { kFlat, kIVFFlatQuantizer, kIVFHNSWQuantizer };

struct FactoryCase {
    const char* description;
    int d;
    Kind kind;
    size_t nlist;
};

void expect_kind(const faiss::Index& index, Kind want, size_t nlist) {
    auto* flat = dynamic_cast<const IndexProtectedSlerp*>(&index);
    auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(&index);
    if (want == Kind::kFlat) {
        EXPECT_NE(flat, nullptr);
        EXPECT_EQ(ivf, nullptr);
        return;
    }
    ASSERT_NE(ivf, nullptr);
    EXPECT_EQ(ivf->nlist, nlist);
    EXPECT_EQ(ivf->metric_type, faiss::METRIC_INNER_PRODUCT);
    EXPECT_EQ(ivf->quantizer->metric_type, faiss::METRIC_L2);
    EXPECT_EQ(ivf->quantizer->d, index.d);
    EXPECT_FALSE(ivf->is_trained);
    if (want == Kind::kIVFHNSWQuantizer) {
        EXPECT_NE(dynamic_cast<const faiss::IndexHNSWFlat*>(ivf->quantizer), nullptr);
    } else {
        EXPECT_NE(dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer), nullptr);
    }
}

class FactoryExamples : public ::testing::TestWithParam<FactoryCase> {};

TEST_P(FactoryExamples, BuildsTheKindAndDescribesItBack) {
    const FactoryCase& fc = GetParam();
    auto index = index_factory(fc.d, fc.description);
    ASSERT_NE(index, nullptr);
    EXPECT_EQ(index->d, fc.d);
    EXPECT_EQ(index->ntotal, 0);
    expect_kind(*index, fc.kind, fc.nlist);

    // describe_index -> index_factory -> describe_index is a fixed point with the same state.
    const std::string described = describe_index(*index);
    auto again = index_factory(fc.d, described);
    EXPECT_EQ(describe_index(*again), described);
    const ProtectedIndex& a = protected_of(*index);
    const ProtectedIndex& b = protected_of(*again);
    EXPECT_EQ(b.params.describe(), a.params.describe());
    EXPECT_EQ(b.params.interval_counts, a.params.interval_counts);
    EXPECT_EQ(b.train_pca, a.train_pca);
    expect_kind(*again, fc.kind, fc.nlist);
    if (auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(index.get())) {
        EXPECT_EQ(dynamic_cast<const IndexIVFProtectedSlerp&>(*again).nprobe, ivf->nprobe);
    }
}

INSTANTIATE_TEST_SUITE_P(
        Strings, FactoryExamples,
        ::testing::Values(FactoryCase{"PSlerp8x16", 128, Kind::kFlat, 0},
                          FactoryCase{"IVF256,PSlerp8x16", 128, Kind::kIVFFlatQuantizer, 256},
                          FactoryCase{"IVF1024,PSlerp8x16(t=0.8)", 128, Kind::kIVFFlatQuantizer, 1024},
                          FactoryCase{"IVF4096_HNSW32,PSlerp8x16(nprobe=64)", 128, Kind::kIVFHNSWQuantizer, 4096},
                          FactoryCase{"IVF64,PSlerp49x16(preset=slerpface)", 784, Kind::kIVFFlatQuantizer, 64},
                          FactoryCase{"PSlerp8x16(t=0.8,drop=importance,mapping=budget,key=shared,fill=random)", 128,
                                      Kind::kFlat, 0},
                          FactoryCase{"IVF8,PSlerp6x10(key=shared)", 60, Kind::kIVFFlatQuantizer, 8},
                          FactoryCase{"PSlerp3x7(pca=true)", 21, Kind::kFlat, 0}));

TEST(Factory, DescribesTheExamplesAsWritten) {
    for (const char* s : {"PSlerp8x16", "IVF256,PSlerp8x16", "IVF1024,PSlerp8x16(t=0.8)", "IVF4096_HNSW32,PSlerp8x16",
                          "IVF64,PSlerp8x16(pca=true,nprobe=3)", "PSlerp8x16(norm=none)", "PSlerp8x16(cohort=64)"}) {
        EXPECT_EQ(describe_index(*index_factory(128, s)), s);
    }
    EXPECT_EQ(describe_index(*index_factory(784, "IVF64,PSlerp49x16(preset=slerpface)")),
              "IVF64,PSlerp49x16(preset=slerpface)");
}

TEST(Factory, AppliesOptions) {
    auto index = index_factory(128, "PSlerp8x16(t=0.8,drop=importance,mapping=budget,key=shared,fill=random)");
    const Params& p = protected_of(*index).params;
    EXPECT_EQ(p.groups, 8);
    EXPECT_EQ(p.group_dim, 16);
    EXPECT_FLOAT_EQ(p.t, 0.8f);
    EXPECT_EQ(p.drop, DropPolicy::kImportance);
    EXPECT_EQ(p.mapping, DropMapping::kBudget);
    EXPECT_EQ(p.key_mode, KeyMode::kShared);
    EXPECT_EQ(p.fill, Fill::kRandom);
    EXPECT_TRUE(dynamic_cast<IndexProtectedSlerp&>(*index).store.layout.shared_key);
}

TEST(Factory, IvfOptionsAndDefaultNprobe) {
    auto a = index_factory(128, "IVF1024,PSlerp8x16(pca=true,nprobe=7)");
    auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*a);
    EXPECT_EQ(ivf.nprobe, 7u);
    EXPECT_TRUE(ivf.train_pca);
    auto b = index_factory(128, "IVF1024,PSlerp8x16");
    EXPECT_EQ(dynamic_cast<IndexIVFProtectedSlerp&>(*b).nprobe, default_nprobe(1024));
    // The default is never FAISS's nprobe = 1, and never more than the lists.
    EXPECT_GE(default_nprobe(1024), 8u);
    EXPECT_EQ(default_nprobe(4), 4u);
    EXPECT_EQ(default_nprobe(1), 1u);
}

TEST(Factory, PresetFirstWhereverItIs) {
    const Params slerpface = Params::slerpface(49, 16);
    auto a = index_factory(784, "PSlerp49x16(preset=slerpface)");
    EXPECT_EQ(protected_of(*a).params.describe(), slerpface.describe());
    EXPECT_EQ(protected_of(*a).params.interval_counts, slerpface.interval_counts);
    // An option before the preset still wins over the preset's value.
    auto b = index_factory(784, "PSlerp49x16(t=0.5,preset=slerpface)");
    const Params& p = protected_of(*b).params;
    EXPECT_FLOAT_EQ(p.t, 0.5f);
    EXPECT_EQ(p.drop, DropPolicy::kImportance);
    EXPECT_EQ(p.weighting, Weighting::kImportance);
    EXPECT_EQ(describe_index(*b), "PSlerp49x16(preset=slerpface,t=0.5)");
}

std::vector<float> gaussian(int64_t n, int d, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> x(n * d);
    for (float& v : x) v = normal(rng) + 0.5f;  // off-centre, so that centring matters
    return x;
}

/// Every field of Params (Params::visit), compared one by one.
void expect_same_params(const Params& a, const Params& b) {
    Params::visit([&](auto f) { EXPECT_EQ(a.*f.member, b.*f.member) << f.name; });
}

struct FileCase {
    const char* description;
    int d;
};

class FactoryFiles : public ::testing::TestWithParam<FileCase> {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("pslerp_test_factory_" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path dir_;
};

TEST_P(FactoryFiles, BuiltByNameSavedAndLoadedAnswersAlike) {
    const FileCase& fc = GetParam();
    auto index = index_factory(fc.d, fc.description);
    ProtectedIndex& built = protected_of(*index);
    built.set_seed(7);
    const int64_t nt = 400, n = 60, nq = 20;
    const auto xt = gaussian(nt, fc.d, 1);
    index->train(nt, xt.data());
    ASSERT_TRUE(index->is_trained);
    const auto x = gaussian(n, fc.d, 2);
    index->add(n, x.data());
    ASSERT_EQ(index->ntotal, n);

    const std::string path = (dir_ / "index.pslerp").string();
    write_index_unsealed(*index, path);
    auto loaded = read_index(path);
    ASSERT_NE(loaded, nullptr);
    const ProtectedIndex& back = protected_of(*loaded);
    EXPECT_EQ(typeid(*loaded), typeid(*index));
    EXPECT_EQ(loaded->d, index->d);
    EXPECT_EQ(loaded->ntotal, n);
    EXPECT_EQ(describe_index(*loaded), describe_index(*index));
    expect_same_params(back.params, built.params);
    EXPECT_EQ(back.train_pca, built.train_pca);
    EXPECT_EQ(back.centering.mean, built.centering.mean);
    EXPECT_EQ(back.centering.rotation, built.centering.rotation);

    // Queries: the enrolled features themselves, then fresh ones.
    std::vector<float> q(x.begin(), x.begin() + (nq / 2) * fc.d);
    const auto fresh = gaussian(nq - nq / 2, fc.d, 3);
    q.insert(q.end(), fresh.begin(), fresh.end());
    const auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(index.get());
    faiss::SearchParametersIVF all;
    if (ivf) {
        EXPECT_EQ(dynamic_cast<const IndexIVFProtectedSlerp&>(*loaded).nprobe, ivf->nprobe);
        all.nprobe = ivf->nlist;
    }
    const idx_t k = 5;
    for (const faiss::SearchParameters* sp : {static_cast<const faiss::SearchParameters*>(nullptr),
                                              static_cast<const faiss::SearchParameters*>(ivf ? &all : nullptr)}) {
        std::vector<float> Da(nq * k), Db(nq * k);
        std::vector<idx_t> Ia(nq * k), Ib(nq * k);
        index->search(nq, q.data(), k, Da.data(), Ia.data(), sp);
        loaded->search(nq, q.data(), k, Db.data(), Ib.data(), sp);
        EXPECT_EQ(Ia, Ib);
        EXPECT_EQ(Da, Db);
        if (sp != nullptr || !ivf) {
            // Searching every entry, an enrolled feature finds itself first with score 1.
            // With cohort normalisation its own entry's score is that entry's highest, but
            // another entry's can be higher: the best score is at least its own.
            const ProtectedIndex& pl = protected_of(*loaded);
            for (int64_t i = 0; i < nq / 2; ++i) {
                if (pl.params.norm == Norm::kNone) {
                    EXPECT_EQ(Ib[i * k], i) << i;
                    EXPECT_NEAR(Db[i * k], 1.0f, 1e-5) << i;
                } else {
                    // (verify scores one pair with the per-entry kernel, a batch search with
                    // the batched one: equal up to float summation order.)
                    EXPECT_GE(Db[i * k], pl.verify(q.data() + i * loaded->d, i) - 1e-4f) << i;
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
        Strings, FactoryFiles,
        ::testing::Values(FileCase{"PSlerp8x16", 128},
                          FileCase{"PSlerp8x16(t=0.8,drop=importance,mapping=budget,key=shared,fill=random)", 128},
                          FileCase{"PSlerp7x16(preset=slerpface)", 112}, FileCase{"PSlerp3x7(pca=true)", 21},
                          FileCase{"IVF8,PSlerp8x16(t=0.9)", 128}, FileCase{"IVF8_HNSW4,PSlerp8x16(nprobe=3)", 128},
                          FileCase{"IVF4,PSlerp6x10(key=shared,drop=importance,mapping=intervals)", 60},
                          FileCase{"IVF4,PSlerp5x16(preset=slerpface,t=0.8)", 80}));

struct BadCase {
    const char* description;
    int d;
    const char* message;
};

class FactoryErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(FactoryErrors, SayWhatWasExpected) {
    const BadCase& bc = GetParam();
    try {
        index_factory(bc.d, bc.description);
        FAIL() << "no error for '" << bc.description << "'";
    } catch (const faiss::FaissException& e) {
        EXPECT_TRUE(Contains(e.what(), bc.message));
        EXPECT_TRUE(Contains(e.what(), std::string("'") + bc.description + "'"));
    }
}

INSTANTIATE_TEST_SUITE_P(
        Strings, FactoryErrors,
        ::testing::Values(
                BadCase{"Slerp8x16", 128, "expected [IVF<nlist>[_HNSW<M>],]PSlerp<G>x<d>[(option=value,...)]"},
                BadCase{"IVF256,Flat", 128, "expected [IVF<nlist>"},
                BadCase{"", 128, "expected [IVF<nlist>"},
                BadCase{"IVF,PSlerp8x16", 128, "bad list count after 'IVF'"},
                BadCase{"IVF0,PSlerp8x16", 128, "bad list count after 'IVF'"},
                BadCase{"IVF64_HNSW,PSlerp8x16", 128, "bad HNSW neighbour count"},
                BadCase{"IVF64_PQ8,PSlerp8x16", 128, "after the IVF part"},
                BadCase{"IVF64", 128, "after the IVF part"},
                BadCase{"PSlerp", 128, "bad shape"},
                BadCase{"PSlerpx16", 128, "bad shape"},
                BadCase{"PSlerp8y16", 128, "bad shape"},
                BadCase{"PSlerp8x", 128, "bad shape"},
                BadCase{"PSlerp0x16", 128, "bad shape"},
                BadCase{"PSlerp99999999999x16", 128, "bad shape"},
                BadCase{"PSlerp8x16", 100, "the data dimension is 100 but PSlerp8x16 means 8 groups x 16 = 128"},
                BadCase{"IVF16,PSlerp8x16", 256, "the data dimension is 256"},
                BadCase{"PSlerp8x16(t=0.8", 128, "missing ')'"},
                BadCase{"PSlerp8x16(bogus=1)", 128, "unknown option 'bogus'"},
                BadCase{"PSlerp8x16(t=abc)", 128, "option t: expected a number"},
                BadCase{"PSlerp8x16(t)", 128, "expected name=value"},
                BadCase{"PSlerp8x16()", 128, "expected name=value"},
                BadCase{"PSlerp8x16(t=0.5,)", 128, "expected name=value"},
                BadCase{"PSlerp8x16(t=1.5)", 128, "invalid parameters: t must be in [0, 1]"},
                BadCase{"PSlerp8x16(drop=sideways)", 128, "option drop: expected one of none|random|importance"},
                BadCase{"PSlerp8x16(preset=fancy)", 128, "expected slerpface|default"},
                BadCase{"PSlerp8x16(preset=slerpface,preset=default)", 128, "preset given twice"},
                BadCase{"PSlerp8x16(pca=maybe)", 128, "option pca: expected true|false"},
                BadCase{"PSlerp8x16(nprobe=4)", 128, "option nprobe: only an IVF index probes lists"},
                BadCase{"IVF16,PSlerp8x16(nprobe=0)", 128, "option nprobe: expected a positive integer"},
                BadCase{"IVF4,PSlerp8x16(nprobe=100)", 128, "option nprobe: 100 is more than the 4 lists"},
                // The retired coarse stage is refused with what replaced it.
                BadCase{"PSlerp8x16,HNSW32", 128, "is retired"},
                BadCase{"PSlerp8x16,IVF256,Flat", 128, "Put the IVF first, e.g. IVF1024,PSlerp8x16"},
                BadCase{"PSlerp8x16(k_factor=4)", 128, "option k_factor belonged to the retired coarse stage"},
                BadCase{"PSlerp8x16(embedding=identity)", 128, "option embedding belonged to the retired coarse stage"},
                BadCase{"PSlerp8x16 HNSW32", 128, "unexpected"},
                BadCase{"PSlerp8x16(t=0.8)x", 128, "unexpected"}));

}  // namespace
}  // namespace pslerp
