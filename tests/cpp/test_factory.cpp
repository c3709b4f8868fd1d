// Factory strings: every documented form builds the right coarse index with its options
// applied, malformed strings say what was expected, and describe_index gives back a string
// that rebuilds the same index.
#include <gtest/gtest.h>

#include <string>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissException.h>

#include "index/factory.h"

namespace pslerp {
namespace {

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

enum class Coarse { kNone, kFlat, kHNSW, kIVFFlat, kIVFPQ, kIVFSQ };

struct FactoryCase {
    const char* description;
    int d;
    Coarse coarse;
};

void expect_coarse(const IndexProtectedSlerp& index, Coarse want) {
    const faiss::Index* c = index.coarse.get();
    switch (want) {
        case Coarse::kNone: EXPECT_EQ(c, nullptr); return;
        case Coarse::kFlat: EXPECT_NE(dynamic_cast<const faiss::IndexFlat*>(c), nullptr); break;
        case Coarse::kHNSW: EXPECT_NE(dynamic_cast<const faiss::IndexHNSWFlat*>(c), nullptr); break;
        case Coarse::kIVFFlat: EXPECT_NE(dynamic_cast<const faiss::IndexIVFFlat*>(c), nullptr); break;
        case Coarse::kIVFPQ: EXPECT_NE(dynamic_cast<const faiss::IndexIVFPQ*>(c), nullptr); break;
        case Coarse::kIVFSQ: EXPECT_NE(dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(c), nullptr); break;
    }
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->d, index.coarse_d());
    EXPECT_EQ(c->metric_type, IndexProtectedSlerp::coarse_metric(index.coarse_embedding));
    EXPECT_EQ(c->ntotal, 0);
}

class FactoryExamples : public ::testing::TestWithParam<FactoryCase> {};

TEST_P(FactoryExamples, BuildsTheCoarseTypeAndDescribesItBack) {
    const FactoryCase& fc = GetParam();
    auto index = index_factory(fc.d, fc.description);
    ASSERT_NE(index, nullptr);
    EXPECT_EQ(index->d, fc.d);
    EXPECT_EQ(index->ntotal, 0);
    expect_coarse(*index, fc.coarse);

    // describe_index -> index_factory -> describe_index is a fixed point with the same state.
    const std::string described = describe_index(*index);
    auto again = index_factory(fc.d, described);
    EXPECT_EQ(describe_index(*again), described);
    EXPECT_EQ(again->params.describe(), index->params.describe());
    EXPECT_EQ(again->params.interval_counts, index->params.interval_counts);
    EXPECT_EQ(again->k_factor, index->k_factor);
    EXPECT_EQ(again->range_shortlist, index->range_shortlist);
    EXPECT_EQ(again->train_pca, index->train_pca);
    EXPECT_EQ(again->coarse_embedding, index->coarse_embedding);
    expect_coarse(*again, fc.coarse);
}

INSTANTIATE_TEST_SUITE_P(
        Strings, FactoryExamples,
        ::testing::Values(FactoryCase{"PSlerp8x16", 128, Coarse::kNone},
                          FactoryCase{"PSlerp8x16,HNSW32", 128, Coarse::kHNSW},
                          FactoryCase{"PSlerp8x16,IVF256,Flat", 128, Coarse::kIVFFlat},
                          FactoryCase{"PSlerp8x16,IVF1024,PQ16", 128, Coarse::kIVFPQ},
                          FactoryCase{"PSlerp8x16,IVF256,SQ8", 128, Coarse::kIVFSQ},
                          FactoryCase{"PSlerp8x16,Flat", 128, Coarse::kFlat},
                          FactoryCase{"PSlerp49x16(preset=slerpface),HNSW32", 784, Coarse::kHNSW},
                          FactoryCase{"PSlerp8x16(t=0.8,drop=importance,mapping=budget,key=shared,fill=random)", 128,
                                      Coarse::kNone},
                          FactoryCase{"PSlerp6x10(embedding=template,k_factor=4),IVF8,SQ4", 60, Coarse::kIVFSQ},
                          FactoryCase{"PSlerp3x7(pca=true,range_shortlist=50),HNSW8", 21, Coarse::kHNSW}));

TEST(Factory, DescribesTheExamplesAsWritten) {
    for (const char* s : {"PSlerp8x16", "PSlerp8x16,HNSW32", "PSlerp8x16,IVF256,Flat", "PSlerp8x16,IVF1024,PQ16",
                          "PSlerp8x16,IVF256,SQ8"}) {
        EXPECT_EQ(describe_index(*index_factory(128, s)), s);
    }
    EXPECT_EQ(describe_index(*index_factory(784, "PSlerp49x16(preset=slerpface),HNSW32")),
              "PSlerp49x16(preset=slerpface),HNSW32");
    EXPECT_EQ(describe_index(*index_factory(128, "PSlerp8x16(k_factor=20,pca=true),IVF64_HNSW16,Flat")),
              "PSlerp8x16(k_factor=20,pca=true),IVF64_HNSW16,Flat");
    EXPECT_EQ(describe_index(*index_factory(128, "PSlerp8x16,IVF64,PQ8x4np")), "PSlerp8x16,IVF64,PQ8x4np");
}

TEST(Factory, AppliesOptions) {
    auto index = index_factory(128, "PSlerp8x16(t=0.8,drop=importance,mapping=budget,key=shared,fill=random)");
    const Params& p = index->params;
    EXPECT_EQ(p.groups, 8);
    EXPECT_EQ(p.group_dim, 16);
    EXPECT_FLOAT_EQ(p.t, 0.8f);
    EXPECT_EQ(p.drop, DropPolicy::kImportance);
    EXPECT_EQ(p.mapping, DropMapping::kBudget);
    EXPECT_EQ(p.key_mode, KeyMode::kShared);
    EXPECT_EQ(p.fill, Fill::kRandom);
    EXPECT_TRUE(index->store.layout.shared_key);

}

TEST(Factory, IndexOptions) {
    auto index = index_factory(128, "PSlerp8x16(k_factor=7,range_shortlist=300,pca=true,embedding=template),HNSW16");
    EXPECT_EQ(index->k_factor, 7);
    EXPECT_EQ(index->range_shortlist, 300);
    EXPECT_TRUE(index->train_pca);
    EXPECT_EQ(index->coarse_embedding, CoarseEmbedding::kTemplate);
    EXPECT_EQ(index->coarse->d, 128);

    auto identity = index_factory(128, "PSlerp8x16(embedding=identity),IVF16,Flat");
    EXPECT_EQ(identity->coarse_embedding, CoarseEmbedding::kIdentity);
    EXPECT_EQ(identity->coarse->d, 128);
    EXPECT_EQ(identity->coarse->metric_type, faiss::METRIC_INNER_PRODUCT);
    EXPECT_NE(describe_index(*identity).find("embedding=identity"), std::string::npos) << describe_index(*identity);

    auto linear = index_factory(128, "PSlerp8x16,HNSW16");
    EXPECT_EQ(linear->k_factor, 10);
    EXPECT_EQ(linear->range_shortlist, 1000);
    EXPECT_FALSE(linear->train_pca);
    EXPECT_EQ(linear->coarse_embedding, CoarseEmbedding::kLinear);
    EXPECT_EQ(linear->coarse->d, coarse_dim(linear->params, CoarseEmbedding::kLinear));
}

TEST(Factory, PresetFirstWhereverItIs) {
    const Params slerpface = Params::slerpface(49, 16);
    auto a = index_factory(784, "PSlerp49x16(preset=slerpface),HNSW32");
    EXPECT_EQ(a->params.describe(), slerpface.describe());
    EXPECT_EQ(a->params.interval_counts, slerpface.interval_counts);
    // An option before the preset still wins over the preset's value.
    auto b = index_factory(784, "PSlerp49x16(t=0.5,preset=slerpface)");
    EXPECT_FLOAT_EQ(b->params.t, 0.5f);
    EXPECT_EQ(b->params.drop, DropPolicy::kImportance);
    EXPECT_EQ(b->params.weighting, Weighting::kImportance);
    EXPECT_EQ(describe_index(*b), "PSlerp49x16(preset=slerpface,t=0.5)");
}

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
                BadCase{"Slerp8x16", 128, "expected PSlerp<G>x<d>[(option=value,...)][,coarse] such as PSlerp8x16,HNSW32"},
                BadCase{"IVF256,Flat", 128, "expected PSlerp<G>x<d>"},
                BadCase{"", 128, "expected PSlerp<G>x<d>"},
                BadCase{"PSlerp", 128, "bad shape"},
                BadCase{"PSlerpx16", 128, "bad shape"},
                BadCase{"PSlerp8y16", 128, "bad shape"},
                BadCase{"PSlerp8x", 128, "bad shape"},
                BadCase{"PSlerp0x16", 128, "bad shape"},
                BadCase{"PSlerp99999999999x16", 128, "bad shape"},
                BadCase{"PSlerp8x16", 100, "the data dimension is 100 but PSlerp8x16 means 8 groups x 16 = 128"},
                BadCase{"PSlerp8x16,HNSW32", 256, "the data dimension is 256"},
                BadCase{"PSlerp8x16(t=0.8", 128, "missing ')'"},
                BadCase{"PSlerp8x16(t=0.8,HNSW32", 128, "missing ')'"},
                BadCase{"PSlerp8x16(bogus=1)", 128, "unknown option 'bogus'"},
                BadCase{"PSlerp8x16(t=abc)", 128, "option t: expected a number"},
                BadCase{"PSlerp8x16(t)", 128, "expected name=value"},
                BadCase{"PSlerp8x16()", 128, "expected name=value"},
                BadCase{"PSlerp8x16(t=0.5,)", 128, "expected name=value"},
                BadCase{"PSlerp8x16(t=1.5)", 128, "invalid parameters: t must be in [0, 1]"},
                BadCase{"PSlerp8x16(drop=sideways)", 128, "option drop: expected one of none|random|importance"},
                BadCase{"PSlerp8x16(preset=fancy)", 128, "expected slerpface|default"},
                BadCase{"PSlerp8x16(preset=slerpface,preset=default)", 128, "preset given twice"},
                BadCase{"PSlerp8x16(k_factor=0)", 128, "option k_factor: expected a positive integer"},
                BadCase{"PSlerp8x16(pca=maybe)", 128, "option pca: expected true|false"},
                BadCase{"PSlerp8x16(embedding=cubic)", 128, "option embedding: expected linear|template"},
                BadCase{"PSlerp8x16,", 128, "unexpected"},
                BadCase{"PSlerp8x16 HNSW32", 128, "unexpected"},
                BadCase{"PSlerp8x16(t=0.8)x", 128, "unexpected"},
                BadCase{"PSlerp8x16,Bogus99", 128, "coarse part 'Bogus99' is not a FAISS factory string such as HNSW32"},
                BadCase{"PSlerp8x16,IVF256,PQ7", 128, "coarse part 'IVF256,PQ7'"}));

}  // namespace
}  // namespace pslerp
