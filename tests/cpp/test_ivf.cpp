// IndexIVFProtectedSlerp against its oracle, the exhaustive IndexProtectedSlerp: with every
// list probed it returns exactly the exhaustive scores of the same entries; removal,
// selectors, merge_from, copy_subset_to, range search, verify; errors; and the shape of the
// scalability target on small data (rank-1 at the default nprobe >= 0.98x exhaustive).
// Issue 16: removal (list compaction) and reset() against an index built from the survivors,
// range_search order and truncation in both index kinds, de-duplication clusters joined
// transitively and through a gallery match.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>

#include "index/dedup.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "plugin/synth.h"
#include "tests/cpp/test_util.h"

namespace pslerp {
namespace {

struct Pair {
    std::unique_ptr<faiss::Index> ivf_owner;
    IndexIVFProtectedSlerp* ivf;
    IndexProtectedSlerp flat;  // the same entries, keys and centring
    explicit Pair(const Params& p) : flat(p) {}
};

/// An IVF and an exhaustive index holding the same protected entries: the same seed, the same
/// centring and the same add order give both the same keys and masks.
std::unique_ptr<Pair> build_pair(const char* factory, int d, int64_t n_train, int64_t n, uint64_t seed) {
    auto owner = index_factory(d, factory);
    auto* ivf = dynamic_cast<IndexIVFProtectedSlerp*>(owner.get());
    EXPECT_NE(ivf, nullptr);
    auto pair = std::make_unique<Pair>(ivf->params);
    pair->ivf = ivf;
    pair->ivf_owner = std::move(owner);
    const auto t = testing_util::random_features(n_train, d, seed);
    ivf->train(n_train, t.data());
    pair->flat.centering = ivf->centering;
    if (ivf->params.norm == Norm::kCohort) pair->flat.set_cohort(n_train, t.data());  // train()'s cohort
    ivf->set_seed(seed);
    pair->flat.set_seed(seed);
    const auto x = testing_util::random_features(n, d, seed + 1);
    std::vector<idx_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = 5 * i + 2;
    ivf->add_with_ids(n, x.data(), ids.data());
    pair->flat.add_with_ids(n, x.data(), ids.data());
    return pair;
}

// Scores of one (query, entry) pair from two search paths (the batched kernel's sgemm sums in
// another order than the per-entry kernel, and its blocks start at other entries): equal up to
// float rounding of z-unit scores.
constexpr float kOrderTol = 1e-4f;

faiss::SearchParametersIVF probe_all(const IndexIVFProtectedSlerp& ivf) {
    faiss::SearchParametersIVF sp;
    sp.nprobe = ivf.nlist;
    return sp;
}

struct ShapeCase {
    const char* factory;
    int d;
};

class IvfEqualsExhaustive : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(IvfEqualsExhaustive, WithEveryListProbed) {
    const ShapeCase& c = GetParam();
    auto pr = build_pair(c.factory, c.d, 600, 437, 31);
    const auto q = testing_util::random_features(23, c.d, 77);
    const faiss::SearchParametersIVF all = probe_all(*pr->ivf);
    for (idx_t k : {1, 7, 50, 500}) {  // 500 > ntotal: padded alike
        std::vector<float> Di(23 * k), Df(23 * k);
        std::vector<idx_t> Ii(23 * k), If(23 * k);
        pr->ivf->search(23, q.data(), k, Di.data(), Ii.data(), &all);
        pr->flat.search(23, q.data(), k, Df.data(), If.data());
        // The same kernels on the same entries: the same scores up to float summation order
        // (the batched kernel's sgemm blocks differ between a list and the whole gallery); ids
        // agree except where two scores of a query are that close.
        for (int64_t j = 0; j < 23 * k; ++j) {
            if (Di[j] != Df[j]) EXPECT_NEAR(Di[j], Df[j], kOrderTol) << "k=" << k << " j=" << j;  // -inf padding
            if (Ii[j] == If[j]) continue;
            const int64_t row = j / k * k;
            const auto close = [&](float v) { return std::abs(v - Di[j]) <= 2 * kOrderTol; };
            EXPECT_GE(std::count_if(Di.begin() + row, Di.begin() + row + k, close), 2) << "k=" << k << " j=" << j;
        }
    }
    // Range search: the same hits, best first.
    faiss::RangeSearchResult ri(23), rf(23);
    pr->ivf->range_search(23, q.data(), 0.02f, &ri, &all);
    pr->flat.range_search(23, q.data(), 0.02f, &rf);
    ASSERT_EQ(ri.lims[23], rf.lims[23]);
    EXPECT_GT(ri.lims[23], 0u);
    for (int i = 0; i < 23; ++i) {
        ASSERT_EQ(ri.lims[i + 1] - ri.lims[i], rf.lims[i + 1] - rf.lims[i]);
        std::map<idx_t, float> a, b;
        for (size_t j = ri.lims[i]; j < ri.lims[i + 1]; ++j) {
            a[ri.labels[j]] = ri.distances[j];
            if (j > ri.lims[i]) EXPECT_GE(ri.distances[j - 1], ri.distances[j]);
        }
        for (size_t j = rf.lims[i]; j < rf.lims[i + 1]; ++j) b[rf.labels[j]] = rf.distances[j];
        ASSERT_EQ(a.size(), b.size());
        for (const auto& [id, score] : a) {
            ASSERT_TRUE(b.count(id)) << "id " << id;
            EXPECT_NEAR(score, b[id], kOrderTol);
        }
    }
    // verify by id reads the entry through the direct map.
    for (idx_t id : {2, 7, 437 * 5 - 3}) {
        EXPECT_EQ(pr->ivf->verify(q.data(), id), pr->flat.verify(q.data(), id)) << id;
    }
    const idx_t ids[3] = {2, 12, 22};
    EXPECT_EQ(pr->ivf->verify_identity(q.data(), 3, ids), pr->flat.verify_identity(q.data(), 3, ids));
}

INSTANTIATE_TEST_SUITE_P(Shapes, IvfEqualsExhaustive,
                         ::testing::Values(ShapeCase{"IVF16,PSlerp8x16", 128}, ShapeCase{"IVF8,PSlerp5x7", 35},
                                           ShapeCase{"IVF8,PSlerp9x16(key=shared,fill=random)", 144},
                                           ShapeCase{"IVF8_HNSW8,PSlerp11x16(preset=slerpface)", 176},
                                           ShapeCase{"IVF4,PSlerp8x16(t=0.9,pca=true)", 128}));

TEST(Ivf, FewerListsProbedScanFewerEntriesAndNeverInventOnes) {
    auto pr = build_pair("IVF32,PSlerp8x16", 128, 1000, 2000, 5);
    const auto q = testing_util::random_features(10, 128, 9);
    faiss::SearchParametersIVF one;
    one.nprobe = 1;
    std::vector<float> D(10 * 20);
    std::vector<idx_t> I(10 * 20);
    pr->ivf->search(10, q.data(), 20, D.data(), I.data(), &one);
    for (int i = 0; i < 10; ++i) {
        for (int j = 0; j < 20; ++j) {
            const idx_t id = I[i * 20 + j];
            if (id < 0) continue;
            // Every returned score is the entry's exact score.
            EXPECT_FLOAT_EQ(D[i * 20 + j], pr->flat.verify(q.data() + i * 128, id));
        }
    }
    // With max_codes, FAISS's query-by-query scanner path: it stops early, with exact scores.
    faiss::SearchParametersIVF capped;
    capped.nprobe = 32;
    capped.max_codes = 100;
    pr->ivf->search(10, q.data(), 20, D.data(), I.data(), &capped);
    for (int i = 0; i < 10; ++i) {
        for (int j = 0; j < 20; ++j) {
            const idx_t id = I[i * 20 + j];
            if (id >= 0) EXPECT_FLOAT_EQ(D[i * 20 + j], pr->flat.verify(q.data() + i * 128, id));
            if (id < 0) EXPECT_TRUE(std::isinf(D[i * 20 + j]));
        }
    }
}

TEST(Ivf, RemovalAndSelectors) {
    auto pr = build_pair("IVF8,PSlerp4x8", 32, 300, 200, 3);
    const auto q = testing_util::random_features(4, 32, 8);
    std::vector<idx_t> gone;
    for (int i = 0; i < 200; i += 3) gone.push_back(5 * i + 2);
    faiss::IDSelectorBatch sel(gone.size(), gone.data());
    EXPECT_EQ(pr->ivf->remove_ids(sel), gone.size());
    EXPECT_EQ(pr->ivf->ntotal, 200 - int64_t(gone.size()));
    EXPECT_EQ(pr->ivf->remove_ids(sel), 0u);  // already gone
    EXPECT_FALSE(pr->ivf->contains(gone[0]));
    EXPECT_TRUE(pr->ivf->contains(7));
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->verify(q.data(), gone[1]); }), "unknown id"));
    pr->flat.remove_ids(sel);
    faiss::SearchParametersIVF all = probe_all(*pr->ivf);
    std::vector<float> Di(4 * 200), Df(4 * 200);
    std::vector<idx_t> Ii(4 * 200), If(4 * 200);
    pr->ivf->search(4, q.data(), 200, Di.data(), Ii.data(), &all);
    pr->flat.search(4, q.data(), 200, Df.data(), If.data());
    EXPECT_EQ(Di, Df);
    for (idx_t id : Ii) EXPECT_TRUE(id < 0 || std::find(gone.begin(), gone.end(), id) == gone.end());
    // An IDSelector restricts the scan to its ids, in the IVF as in FAISS.
    faiss::IDSelectorRange range(0, 100);
    all.sel = &range;
    pr->ivf->search(4, q.data(), 200, Di.data(), Ii.data(), &all);
    int kept = 0;
    for (idx_t id : Ii) {
        EXPECT_TRUE(id < 100);
        kept += id >= 0;
    }
    EXPECT_GT(kept, 0);
    // Removal of everything, then reset.
    faiss::IDSelectorAll every;
    pr->ivf->remove_ids(every);
    EXPECT_EQ(pr->ivf->ntotal, 0);
    pr->ivf->search(1, q.data(), 5, Di.data(), Ii.data());
    EXPECT_EQ(Ii[0], -1);
    EXPECT_TRUE(std::isinf(Di[0]) && Di[0] < 0);
    pr->ivf->reset();
    EXPECT_EQ(pr->ivf->next_id(), 0);
    EXPECT_TRUE(pr->ivf->is_trained);
}

TEST(Ivf, MergeFromAndCopySubset) {
    auto pr = build_pair("IVF8,PSlerp4x8", 32, 300, 120, 4);
    // A second index with the same training (copied through a file), other ids.
    auto bytes = serialize_index_unsealed(*pr->ivf);
    auto other_owner = deserialize_index(bytes.data(), bytes.size());
    auto& other = dynamic_cast<IndexIVFProtectedSlerp&>(*other_owner);
    other.reset();
    const auto x = testing_util::random_features(50, 32, 44);
    std::vector<idx_t> ids(50);
    for (int i = 0; i < 50; ++i) ids[i] = 100000 + i;
    other.add_with_ids(50, x.data(), ids.data());
    const auto q = testing_util::random_features(3, 32, 1);
    const float before = other.verify(q.data(), 100007);
    pr->ivf->merge_from(other, 0);
    EXPECT_EQ(pr->ivf->ntotal, 170);
    EXPECT_EQ(other.ntotal, 0);
    EXPECT_FALSE(other.contains(100007));
    EXPECT_EQ(pr->ivf->verify(q.data(), 100007), before);
    EXPECT_EQ(pr->ivf->next_id(), 100050);
    // Colliding ids and different training are refused, leaving both indexes as they were.
    other.add_with_ids(1, x.data(), ids.data());
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->merge_from(other, 0); }), "is in both indexes"));
    EXPECT_EQ(pr->ivf->ntotal, 170);
    auto fresh = index_factory(32, "IVF8,PSlerp4x8");
    const auto t = testing_util::random_features(300, 32, 99);
    fresh->train(300, t.data());
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->merge_from(*fresh, 0); }), "different centrings"));
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->merge_from(other, 5); }), "add_id must be 0"));

    // copy_subset_to: ids in [a1, a2) land in the target with a working direct map.
    auto target_owner = deserialize_index(bytes.data(), bytes.size());
    auto& target = dynamic_cast<IndexIVFProtectedSlerp&>(*target_owner);
    target.reset();
    pr->ivf->copy_subset_to(target, 0, 0, 300);
    EXPECT_EQ(target.ntotal, 60);  // ids 2, 7, ..., 297
    EXPECT_EQ(target.verify(q.data(), 297), pr->ivf->verify(q.data(), 297));
    EXPECT_FALSE(target.contains(302));
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->copy_subset_to(target, 0, 0, 300); }), "already in the target"));
}

TEST(Ivf, ErrorsNameTheProblem) {
    auto index = index_factory(32, "IVF8,PSlerp4x8");
    auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*index);
    const auto x = testing_util::random_features(300, 32, 2);
    float D[2];
    idx_t I[2];
    EXPECT_TRUE(Contains(error_of([&] { ivf.add(1, x.data()); }), "needs train() first"));
    EXPECT_TRUE(Contains(error_of([&] { ivf.search(1, x.data(), 1, D, I); }), "needs train() first"));
    EXPECT_TRUE(Contains(error_of([&] { ivf.train(5, x.data()); }), "5 training features for 8 lists"));
    ivf.train(300, x.data());
    ivf.add(10, x.data());
    const idx_t dup[2] = {3, 3};
    EXPECT_TRUE(Contains(error_of([&] { ivf.add_with_ids(1, x.data(), dup); }), "id 3 is already in the index"));
    const idx_t twice[2] = {50, 50};
    EXPECT_TRUE(Contains(error_of([&] { ivf.add_with_ids(2, x.data(), twice); }), "appears twice in the batch"));
    const idx_t negative = -4;
    EXPECT_TRUE(Contains(error_of([&] { ivf.add_with_ids(1, x.data(), &negative); }), "id -4 is out of range"));
    std::vector<float> nan_row(32, 1.0f);
    nan_row[5] = std::nanf("");
    EXPECT_TRUE(Contains(error_of([&] { ivf.add(1, nan_row.data()); }), "NaN"));
    EXPECT_TRUE(Contains(error_of([&] { ivf.search(1, nan_row.data(), 1, D, I); }), "NaN"));
    EXPECT_EQ(ivf.ntotal, 10) << "failed adds must not change the index";
    EXPECT_TRUE(Contains(error_of([&] { ivf.search(1, x.data(), 0, D, I); }), "k must be > 0"));
    faiss::SearchParameters plain;
    EXPECT_TRUE(Contains(error_of([&] { ivf.search(1, x.data(), 1, D, I, &plain); }), "SearchParametersIVF"));
    faiss::SearchParametersIVF zero;
    zero.nprobe = 0;
    EXPECT_TRUE(Contains(error_of([&] { ivf.search(1, x.data(), 1, D, I, &zero); }), "nprobe must be >= 1"));
    EXPECT_TRUE(Contains(error_of([&] { ivf.verify(x.data(), 999); }), "unknown id 999"));
    std::vector<float> out(32);
    EXPECT_TRUE(Contains(error_of([&] { ivf.reconstruct(0, out.data()); }), "cannot be decoded"));
    std::vector<uint8_t> code(ivf.code_size);
    EXPECT_TRUE(Contains(error_of([&] { ivf.sa_decode(1, code.data(), out.data()); }), "cannot be decoded"));
    EXPECT_TRUE(Contains(error_of([&] { ivf.train(300, x.data()); }), "already holds entries"));
}

TEST(Ivf, StoresNothingButProtectedEntries) {
    // Each code is exactly the protected entry of the exhaustive index (template, key, mask,
    // constants) and nothing else: the same bytes per entry, less the tombstone.
    auto pr = build_pair("IVF8,PSlerp8x16", 128, 300, 1, 6);
    EXPECT_EQ(pr->ivf->code_size + sizeof(idx_t) + 1, pr->flat.bytes_per_entry());
    EXPECT_EQ(pr->ivf->bytes_per_entry(), pr->ivf->code_size + sizeof(idx_t));
}

TEST(Ivf, DedupThroughTheIvfFindsWhatExhaustiveFinds) {
    // Without score normalisation, so that copies score 1 against their entry (see below).
    auto pr = build_pair("IVF8,PSlerp4x8(norm=none)", 32, 300, 150, 8);
    // A batch: near-copies of 10 enrolled features, and 5 new ones (two of them alike).
    const auto x = testing_util::random_features(150, 32, 9);  // the enrolled features (seed + 1)
    std::vector<float> batch(15 * 32);
    for (int i = 0; i < 10; ++i) {
        for (int j = 0; j < 32; ++j) batch[i * 32 + j] = x[(i * 7) * 32 + j] * 1.01f;
    }
    const auto fresh = testing_util::random_features(5, 32, 1234);
    std::copy(fresh.begin(), fresh.end(), batch.begin() + 10 * 32);
    for (int j = 0; j < 32; ++j) batch[14 * 32 + j] = batch[13 * 32 + j] * 0.99f;
    DedupOptions opt;
    opt.threshold = 0.995f;  // copies score 1 (same normalised feature, same key and mask)
    const faiss::SearchParametersIVF all = probe_all(*pr->ivf);
    opt.search = &all;
    const DedupResult a = deduplicate(*pr->ivf, 15, batch.data(), opt);
    opt.search = nullptr;
    const DedupResult b = deduplicate(pr->flat, 15, batch.data(), opt);
    ASSERT_EQ(a.existing.size(), b.existing.size());
    for (size_t i = 0; i < a.existing.size(); ++i) {
        ASSERT_EQ(a.existing[i].size(), b.existing[i].size()) << i;
        for (size_t j = 0; j < a.existing[i].size(); ++j) {
            EXPECT_EQ(a.existing[i][j].first, b.existing[i][j].first);
            EXPECT_NEAR(a.existing[i][j].second, b.existing[i][j].second, kOrderTol);
        }
    }
    EXPECT_EQ(a.duplicates_of_existing(), 10);
    EXPECT_EQ(a.cluster[14], 13);
    EXPECT_EQ(a.unique, (std::vector<int64_t>{10, 11, 12, 13}));
    opt.search = &all;
    opt.enroll_unique = true;
    const DedupResult c = deduplicate(*pr->ivf, 15, batch.data(), opt);
    EXPECT_EQ(c.enrolled_ids.size(), 4u);
    for (idx_t id : c.enrolled_ids) EXPECT_TRUE(pr->ivf->contains(id));
}

/// The code bytes of the entry with this id.
std::vector<uint8_t> code_of(const IndexIVFProtectedSlerp& ivf, idx_t id) {
    const idx_t lo = ivf.direct_map.get(id);
    faiss::InvertedLists::ScopedCodes code(ivf.invlists, faiss::lo_listno(lo), faiss::lo_offset(lo));
    return std::vector<uint8_t>(code.get(), code.get() + ivf.code_size);
}

// A loaded seeded IVF records the seed but protects later entries with fresh OS keys;
// seeding it again continues the saved stream.
TEST(Ivf, LoadedSeededIndexDrawsFreshKeys) {
    auto pr = build_pair("IVF8,PSlerp4x8", 32, 300, 40, 12);
    const auto bytes = serialize_index_unsealed(*pr->ivf);
    auto load = [&] { return deserialize_index(bytes.data(), bytes.size()); };
    auto first = load(), second = load(), again = load();
    auto& a = dynamic_cast<IndexIVFProtectedSlerp&>(*first);
    auto& b = dynamic_cast<IndexIVFProtectedSlerp&>(*second);
    auto& c = dynamic_cast<IndexIVFProtectedSlerp&>(*again);
    EXPECT_EQ(a.seed(), std::optional<uint64_t>(12));
    EXPECT_FALSE(a.seeded_stream());
    c.set_seed(12);
    const auto x = testing_util::random_features(1, 32, 77);
    const idx_t id = 5000;
    for (faiss::Index* index : {static_cast<faiss::Index*>(pr->ivf), static_cast<faiss::Index*>(&a),
                                static_cast<faiss::Index*>(&b), static_cast<faiss::Index*>(&c)}) {
        index->add_with_ids(1, x.data(), &id);
    }
    EXPECT_NE(code_of(a, id), code_of(b, id)) << "two loads of a seeded file drew the same keys";
    EXPECT_NE(code_of(a, id), code_of(*pr->ivf, id));
    EXPECT_EQ(code_of(c, id), code_of(*pr->ivf, id)) << "set_seed again continues the saved stream";
    EXPECT_EQ(code_of(a, 7), code_of(*pr->ivf, 7)) << "saved entries are kept as they were";
}

// FAISS's IVF entry points that bypass add_with_ids: sa_encode assigns lists as add does
// (from the centred feature), add_core refuses; NaN input is an InvalidInputError everywhere.
TEST(Ivf, OtherFaissEntryPoints) {
    auto pr = build_pair("IVF8,PSlerp4x8", 32, 300, 30, 13);
    IndexIVFProtectedSlerp& ivf = *pr->ivf;
    const auto x = testing_util::random_features(30, 32, 14);  // the enrolled features (seed + 1)
    std::vector<uint8_t> codes(30 * ivf.sa_code_size());
    ivf.sa_encode(30, x.data(), codes.data());
    for (idx_t i = 0; i < 30; ++i) {
        const idx_t list = ivf.decode_listno(codes.data() + i * ivf.sa_code_size());
        EXPECT_EQ(list, faiss::lo_listno(ivf.direct_map.get(5 * i + 2))) << "entry " << i;
    }
    const idx_t lists[1] = {0};
    EXPECT_TRUE(Contains(error_of([&] { ivf.add_core(1, x.data(), nullptr, lists); }), "add_with_ids"));
    std::vector<float> nan_row(32, 1.0f);
    nan_row[3] = std::nanf("");
    float D[1];
    idx_t I[1];
    faiss::RangeSearchResult r(1);
    EXPECT_THROW(ivf.search(1, nan_row.data(), 1, D, I), InvalidInputError);
    EXPECT_THROW(ivf.range_search(1, nan_row.data(), 0.5f, &r), InvalidInputError);
    EXPECT_THROW(ivf.verify(nan_row.data(), 2), InvalidInputError);
    EXPECT_THROW(ivf.add(1, nan_row.data()), InvalidInputError);
    EXPECT_THROW(ivf.sa_encode(1, nan_row.data(), codes.data()), InvalidInputError);
    EXPECT_EQ(ivf.ntotal, 30);
}

// copy_subset_to checks its arguments before it touches the target (FAISS switches the
// target's direct map off first, and divides by a1 or ntotal).
TEST(Ivf, CopySubsetRefusesBadArgumentsWithoutHarm) {
    auto pr = build_pair("IVF8,PSlerp4x8", 32, 300, 20, 15);
    const auto bytes = serialize_index_unsealed(*pr->ivf);
    auto target_owner = deserialize_index(bytes.data(), bytes.size());
    auto& target = dynamic_cast<IndexIVFProtectedSlerp&>(*target_owner);
    target.reset();
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->copy_subset_to(target, 3, 0, 10); }), "subset type 3"));
    EXPECT_TRUE(Contains(error_of([&] { pr->ivf->copy_subset_to(target, 1, 0, 0); }), "a1 > 0"));
    const auto x = testing_util::random_features(1, 32, 16);
    target.add(1, x.data());  // the target's direct map still works
    EXPECT_TRUE(target.contains(0));
    auto empty_owner = deserialize_index(bytes.data(), bytes.size());
    auto& empty = dynamic_cast<IndexIVFProtectedSlerp&>(*empty_owner);
    empty.reset();
    empty.copy_subset_to(target, 2, 0, 1);  // nothing to copy
    EXPECT_EQ(target.ntotal, 1);
}

// The shape of the scalability target on small structured data: the quantizer trained on
// other identities, rank-1 of mated probes at the default nprobe within 2% of exhaustive.
TEST(Ivf, DefaultNprobeKeepsExhaustiveRank1OnSmallData) {
    // 512-D structured identities, the benchmark target's kind of data (bench/RESULTS.md).
    SynthConfig cfg;
    cfg.groups = 32;
    cfg.group_dim = 16;
    cfg.seed = 5;
    const int64_t gallery = 6000, mated = 400;
    auto split = synth_gallery(cfg, gallery, mated, 0);
    ASSERT_TRUE(split.ok());
    auto model = synth_model(cfg);
    ASSERT_TRUE(model.ok());
    const int D = cfg.dim();
    const int64_t n_train = 4000;
    std::vector<float> train(n_train * D);
    for (int64_t i = 0; i < n_train; ++i) synth_one(cfg, *model, gallery + 100000 + i, 0, train.data() + i * D);

    auto owner = index_factory(D, "IVF64,PSlerp32x16");
    auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*owner);
    ivf.train(n_train, train.data());
    IndexProtectedSlerp flat(ivf.params);
    flat.centering = ivf.centering;
    ivf.set_seed(1);
    flat.set_seed(1);
    ivf.add_with_ids(gallery, split->gallery.x.data(), split->gallery.labels.data());
    flat.add_with_ids(gallery, split->gallery.x.data(), split->gallery.labels.data());
    std::vector<float> D1(mated);
    std::vector<idx_t> I1(mated), I2(mated);
    ivf.search(mated, split->probes.x.data(), 1, D1.data(), I1.data());
    flat.search(mated, split->probes.x.data(), 1, D1.data(), I2.data());
    int64_t hit_ivf = 0, hit_flat = 0;
    for (int64_t i = 0; i < mated; ++i) {
        hit_ivf += I1[i] == split->probes.labels[i];
        hit_flat += I2[i] == split->probes.labels[i];
    }
    EXPECT_GT(hit_flat, mated / 2) << "the exhaustive oracle itself should find most mated identities";
    EXPECT_GE(double(hit_ivf), 0.98 * double(hit_flat)) << "IVF " << hit_ivf << " vs exhaustive " << hit_flat
                                                        << " at nprobe " << ivf.nprobe << " of " << ivf.nlist;
}


// ---------------------------------------------------------------- issue 16: coverage

/// Adds x[positions[i]] under ids[positions[i]] with the keys and masks that set_seed(seed)
/// gives the entry at stream position positions[i]: runs of consecutive positions are added
/// together, after moving the stream there (restore_state) and seeding it again. An index
/// filled so holds, entry for entry, what one seeded index that added every position holds.
void add_at_streams(faiss::Index& index, uint64_t seed, const std::vector<float>& x, const std::vector<idx_t>& ids,
                    const std::vector<int64_t>& positions) {
    ProtectedIndex& pi = protected_of(index);
    const int64_t d = index.d;
    ::testing::internal::CaptureStderr();  // set_seed warns at every call
    for (size_t a = 0; a < positions.size();) {
        size_t b = a + 1;
        while (b < positions.size() && positions[b] == positions[b - 1] + 1) ++b;
        pi.restore_state(uint64_t(positions[a]), seed, 0);
        pi.set_seed(seed);
        index.add_with_ids(idx_t(b - a), x.data() + positions[a] * d, ids.data() + positions[a]);
        a = b;
    }
    ::testing::internal::GetCapturedStderr();
}

/// Each list's (id, code) pairs, sorted: what the list holds whatever the order.
std::vector<std::vector<std::pair<idx_t, std::vector<uint8_t>>>> sorted_lists(const IndexIVFProtectedSlerp& ivf) {
    std::vector<std::vector<std::pair<idx_t, std::vector<uint8_t>>>> out(ivf.nlist);
    for (size_t l = 0; l < ivf.nlist; ++l) {
        const size_t n = ivf.invlists->list_size(l);
        faiss::InvertedLists::ScopedIds ids(ivf.invlists, l);
        faiss::InvertedLists::ScopedCodes codes(ivf.invlists, l);
        for (size_t j = 0; j < n; ++j) {
            out[l].emplace_back(ids[j], std::vector<uint8_t>(codes.get() + j * ivf.code_size,
                                                             codes.get() + (j + 1) * ivf.code_size));
        }
        std::sort(out[l].begin(), out[l].end());
    }
    return out;
}

using testing_util::Answers;
using testing_util::answers;

/// An empty IVF with the training (centring, centroids, parameters) of `trained`.
std::unique_ptr<faiss::Index> empty_copy(const IndexIVFProtectedSlerp& trained) {
    const auto bytes = serialize_index_unsealed(trained);
    auto copy = deserialize_index(bytes.data(), bytes.size());
    copy->reset();
    return copy;
}

class IvfLists : public ::testing::TestWithParam<const char*> {};

// Removal moves the last entry of a list into the hole (FAISS's compaction of an array list)
// and updates the direct map. What remains is exactly what an index that only ever added the
// survivors holds: the same (id, code) pairs in every list, the same answers to search,
// range_search and verify, and later adds and removals keep working on both alike.
TEST_P(IvfLists, RemovalLeavesWhatAFreshIndexOfTheSurvivorsHolds) {
    const uint64_t seed = 21;
    const int d = 35;  // 5 groups of 7: the last block of the kernels' layout is partly padding
    auto owner = index_factory(d, GetParam());
    auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*owner);
    const auto t = testing_util::random_features(400, d, 20);
    ivf.train(400, t.data());
    auto fresh_owner = empty_copy(ivf);
    auto& fresh = dynamic_cast<IndexIVFProtectedSlerp&>(*fresh_owner);

    const int64_t n = 160;
    const auto x = testing_util::random_features(n + 20, d, 22);
    std::vector<idx_t> ids(n + 20);
    for (int64_t i = 0; i < n + 20; ++i) ids[i] = 7 * i + 3;
    std::vector<int64_t> everyone(n);
    std::iota(everyone.begin(), everyone.end(), 0);
    add_at_streams(ivf, seed, x, ids, everyone);

    // Remove every third entry, a run at the start, a run at the end (the last entries of
    // their lists: nothing to move) and the first entry of the largest list (the last one is
    // moved into its place). Two selectors: a batch, then a range.
    std::vector<idx_t> gone;
    for (int64_t i = 0; i < n; ++i) {
        if (i % 3 == 1 || i < 5 || i >= n - 6) gone.push_back(ids[i]);
    }
    size_t largest = 0;
    for (size_t l = 0; l < ivf.nlist; ++l) {
        if (ivf.invlists->list_size(l) > ivf.invlists->list_size(largest)) largest = l;
    }
    const idx_t first_of_largest = ivf.invlists->get_single_id(largest, 0);
    if (std::find(gone.begin(), gone.end(), first_of_largest) == gone.end()) gone.push_back(first_of_largest);
    faiss::IDSelectorBatch batch(gone.size(), gone.data());
    EXPECT_EQ(ivf.remove_ids(batch), gone.size());
    faiss::IDSelectorRange range(7 * 60 + 3, 7 * 66 + 3);  // ids of entries 60..65, some already gone
    size_t in_range = 0;
    for (int64_t i = 60; i < 66; ++i) in_range += std::find(gone.begin(), gone.end(), ids[i]) == gone.end();
    EXPECT_EQ(ivf.remove_ids(range), in_range);
    for (int64_t i = 60; i < 66; ++i) {
        if (std::find(gone.begin(), gone.end(), ids[i]) == gone.end()) gone.push_back(ids[i]);
    }

    std::vector<int64_t> survivors;
    for (int64_t i = 0; i < n; ++i) {
        if (std::find(gone.begin(), gone.end(), ids[i]) == gone.end()) survivors.push_back(i);
    }
    add_at_streams(fresh, seed, x, ids, survivors);
    ASSERT_EQ(ivf.ntotal, int64_t(survivors.size()));
    ASSERT_EQ(fresh.ntotal, ivf.ntotal);
    EXPECT_EQ(ivf.direct_map.hashtable.size(), survivors.size());

    auto expect_same = [&](const char* when) {
        SCOPED_TRACE(when);
        EXPECT_EQ(sorted_lists(ivf), sorted_lists(fresh));
        const auto q = testing_util::random_features(13, d, 23);
        faiss::SearchParametersIVF all = probe_all(ivf), two;
        two.nprobe = 2;
        for (const faiss::SearchParametersIVF* sp : {&all, &two}) {
            EXPECT_TRUE(answers(ivf, q, 13, 9, 0.3f, sp) == answers(fresh, q, 13, 9, 0.3f, sp));
        }
        EXPECT_EQ(ivf.imbalance(), fresh.imbalance());
        // verify reads each survivor through the direct map, wherever removal moved it.
        std::vector<idx_t> live;
        for (const auto& [id, lo] : fresh.direct_map.hashtable) live.push_back(id);
        std::sort(live.begin(), live.end());
        std::vector<float> probes(live.size() * d), si(live.size()), sf(live.size());
        for (size_t j = 0; j < live.size(); ++j) std::copy_n(q.data() + (j % 13) * d, d, probes.data() + j * d);
        ivf.verify_batch(idx_t(live.size()), probes.data(), live.data(), si.data());
        fresh.verify_batch(idx_t(live.size()), probes.data(), live.data(), sf.data());
        EXPECT_EQ(si, sf);
        for (idx_t id : gone) {
            EXPECT_FALSE(ivf.contains(id)) << id;
            EXPECT_TRUE(Contains(error_of([&] { ivf.verify(q.data(), id); }), "unknown id")) << id;
        }
    };
    expect_same("after removal");

    // Later adds (new ids, the next stream positions) and a second removal stay in step.
    std::vector<int64_t> more(20);
    std::iota(more.begin(), more.end(), n);
    add_at_streams(ivf, seed, x, ids, more);
    add_at_streams(fresh, seed, x, ids, more);
    std::vector<idx_t> second;
    for (int64_t i : survivors) {
        if (i % 4 == 0) second.push_back(ids[i]);
    }
    second.push_back(ids[n + 3]);
    faiss::IDSelectorArray arr(second.size(), second.data());
    EXPECT_EQ(ivf.remove_ids(arr), second.size());
    EXPECT_EQ(fresh.remove_ids(arr), second.size());
    gone.insert(gone.end(), second.begin(), second.end());
    expect_same("after adding and removing again");
    EXPECT_EQ(ivf.next_id(), ids[n + 19] + 1) << "removal never lowers the next id";
}

// reset() empties every list and the direct map but keeps the training (centring, centroids,
// nprobe); the index then answers as empty, and adding the same entries again with the same
// keys rebuilds exactly the index it was.
TEST_P(IvfLists, ResetEmptiesTheListsAndKeepsTheTraining) {
    const uint64_t seed = 24;
    const int d = 35;
    auto owner = index_factory(d, GetParam());
    auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*owner);
    const auto t = testing_util::random_features(400, d, 25);
    ivf.train(400, t.data());
    ivf.nprobe = 3;
    const int64_t n = 90;
    const auto x = testing_util::random_features(n, d, 26);
    std::vector<idx_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = 1000 + 2 * i;
    std::vector<int64_t> everyone(n);
    std::iota(everyone.begin(), everyone.end(), 0);
    add_at_streams(ivf, seed, x, ids, everyone);
    const auto q = testing_util::random_features(11, d, 27);
    const faiss::SearchParametersIVF all = probe_all(ivf);
    const Answers before_all = answers(ivf, q, 11, 6, 0.3f, &all);
    const Answers before_own = answers(ivf, q, 11, 6, 0.3f, nullptr);
    const auto lists_before = sorted_lists(ivf);
    std::vector<float> centroids(ivf.nlist * d), centroids_after(ivf.nlist * d);
    ivf.quantizer->reconstruct_n(0, idx_t(ivf.nlist), centroids.data());
    const auto mean = ivf.centering.mean;

    ivf.reset();
    EXPECT_EQ(ivf.ntotal, 0);
    EXPECT_EQ(ivf.next_id(), 0);
    EXPECT_TRUE(ivf.is_trained);
    EXPECT_EQ(ivf.nprobe, 3u);
    EXPECT_EQ(ivf.centering.mean, mean);
    ivf.quantizer->reconstruct_n(0, idx_t(ivf.nlist), centroids_after.data());
    EXPECT_EQ(centroids_after, centroids);
    for (size_t l = 0; l < ivf.nlist; ++l) EXPECT_EQ(ivf.invlists->list_size(l), 0u) << l;
    EXPECT_TRUE(ivf.direct_map.hashtable.empty());
    EXPECT_EQ(ivf.imbalance(), 0.0);
    EXPECT_FALSE(ivf.contains(ids[0]));
    EXPECT_TRUE(Contains(error_of([&] { ivf.verify(q.data(), ids[0]); }), "unknown id"));
    const Answers empty = answers(ivf, q, 11, 6, -2.0f, &all);
    EXPECT_TRUE(std::all_of(empty.I.begin(), empty.I.end(), [](idx_t i) { return i == -1; }));
    EXPECT_TRUE(std::all_of(empty.D.begin(), empty.D.end(), [](float v) { return std::isinf(v) && v < 0; }));
    EXPECT_EQ(empty.lims.back(), 0u);

    // The same entries with the same keys: the same index, the same answers.
    add_at_streams(ivf, seed, x, ids, everyone);
    EXPECT_EQ(sorted_lists(ivf), lists_before);
    EXPECT_TRUE(answers(ivf, q, 11, 6, 0.3f, &all) == before_all);
    EXPECT_TRUE(answers(ivf, q, 11, 6, 0.3f, nullptr) == before_own);
    EXPECT_EQ(ivf.next_id(), ids.back() + 1);

    // Reset again, then add() without ids numbers from 0; removal and verify work on them.
    ivf.reset();
    ivf.add(5, x.data());
    for (idx_t id = 0; id < 5; ++id) EXPECT_TRUE(ivf.contains(id));
    EXPECT_FALSE(ivf.contains(ids[0]));
    const idx_t two = 2;
    faiss::IDSelectorArray sel(1, &two);
    EXPECT_EQ(ivf.remove_ids(sel), 1u);
    EXPECT_EQ(ivf.ntotal, 4);
    EXPECT_NO_THROW(ivf.verify(x.data() + 4 * d, 4));
}

INSTANTIATE_TEST_SUITE_P(Quantizers, IvfLists, ::testing::Values("IVF8,PSlerp5x7", "IVF6_HNSW4,PSlerp5x7"),
                         [](const auto& info) { return std::string(info.index == 0 ? "Flat" : "Hnsw"); });

// ---- range_search order and truncation, both index kinds

/// A seeded index of `factory` whose every entry has a twin: the same protected code (same
/// feature, same stream position, so the same keys and masks) under another id, so that every
/// score appears twice and the order of equal scores is tested everywhere. The twins with ids
/// 1000 + 3i are added first, then those with ids 10 + 3i (or the other way round), so that
/// insertion order and id order disagree.
std::unique_ptr<faiss::Index> twins_index(const std::string& factory, int d, int64_t n, uint64_t seed,
                                          bool larger_id_first = true) {
    auto index = index_factory(d, factory);
    if (!index->is_trained) {
        const auto t = testing_util::random_features(400, d, seed + 1);
        index->train(400, t.data());
    }
    const auto x = testing_util::random_features(n, d, seed);
    std::vector<idx_t> a(n), b(n);
    for (int64_t i = 0; i < n; ++i) {
        a[i] = 3 * i + 1000;
        b[i] = 3 * i + 10;
    }
    std::vector<int64_t> everyone(n);
    std::iota(everyone.begin(), everyone.end(), 0);
    add_at_streams(*index, seed, x, larger_id_first ? a : b, everyone);
    add_at_streams(*index, seed, x, larger_id_first ? b : a, everyone);
    return index;
}

/// search(k) against the first k of `full` (a range search over every entry, best first):
/// scores equal rank by rank; ids equal, where scores tie as sets of the tie (strict_ties:
/// ids equal everywhere, ties cut as range_search orders them); padding past the entries.
void expect_search_is_range_prefix(const faiss::Index& index, const std::vector<float>& q, int64_t nq, idx_t k,
                                   const faiss::SearchParameters* sp, const faiss::RangeSearchResult& full,
                                   bool strict_ties) {
    std::vector<float> D(nq * k);
    std::vector<idx_t> I(nq * k);
    index.search(nq, q.data(), k, D.data(), I.data(), sp);
    for (int64_t i = 0; i < nq; ++i) {
        const size_t m = full.lims[i + 1] - full.lims[i];
        const float* fd = full.distances + full.lims[i];
        const idx_t* fl = full.labels + full.lims[i];
        const float* d = D.data() + i * k;
        const idx_t* l = I.data() + i * k;
        for (idx_t j = 0; j < k; ++j) {
            if (size_t(j) < m) {
                EXPECT_EQ(d[j], fd[j]) << "k=" << k << " query " << i << " rank " << j;
                if (strict_ties) EXPECT_EQ(l[j], fl[j]) << "k=" << k << " query " << i << " rank " << j;
            } else {
                EXPECT_EQ(l[j], -1) << "k=" << k << " query " << i << " rank " << j;
                EXPECT_TRUE(std::isinf(d[j]) && d[j] < 0) << "k=" << k << " query " << i << " rank " << j;
            }
        }
        const size_t kept = std::min(m, size_t(k));
        for (size_t b = 0; b < kept;) {
            size_t e = b + 1;
            while (e < m && fd[e] == fd[b]) ++e;
            std::vector<idx_t> tie(fl + b, fl + e), got(l + b, l + std::min(e, kept));
            std::sort(tie.begin(), tie.end());
            std::sort(got.begin(), got.end());
            if (e <= kept) {
                EXPECT_EQ(got, tie) << "k=" << k << " query " << i << " ranks " << b << ".." << e - 1;
            } else {
                for (idx_t id : got) {
                    EXPECT_TRUE(std::binary_search(tie.begin(), tie.end(), id)) << "k=" << k << " query " << i;
                }
            }
            b = e;
        }
    }
}

class RangeOrder : public ::testing::TestWithParam<const char*> {};

// range_search returns every entry scoring >= radius (the scores verify gives), best first,
// equal scores by id; search(k) is exactly the first k of the range over the same entries
// (ties cut by id too), padded with -1 / -inf past the entries there are.
TEST_P(RangeOrder, BestFirstTiesByIdAndSearchIsItsPrefix) {
    const int d = 32;
    const int64_t n = 70;
    auto owner = twins_index(GetParam(), d, n, 31);
    const faiss::Index& index = *owner;
    ASSERT_EQ(index.ntotal, 2 * n);
    const auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(&index);
    const int64_t nq = 6;
    const auto q = testing_util::random_features(nq, d, 31);  // the first six features: twins score alike at the top
    std::vector<idx_t> all_ids;
    for (int64_t i = 0; i < n; ++i) {
        all_ids.push_back(3 * i + 1000);
        all_ids.push_back(3 * i + 10);
    }
    // Exact scores of every entry, by verify.
    std::vector<std::vector<float>> exact(nq, std::vector<float>(all_ids.size()));
    for (int64_t i = 0; i < nq; ++i) {
        std::vector<float> probes(all_ids.size() * d);
        for (size_t j = 0; j < all_ids.size(); ++j) std::copy_n(q.data() + i * d, d, probes.data() + j * d);
        protected_of(index).verify_batch(idx_t(all_ids.size()), probes.data(), all_ids.data(), exact[i].data());
    }

    faiss::SearchParametersIVF every;
    every.nprobe = ivf ? ivf->nlist : 1;
    const faiss::SearchParameters* sp = ivf ? &every : nullptr;
    for (float radius : {0.95f, 0.8f, 0.5f, -2.0f}) {
        SCOPED_TRACE(radius);
        faiss::RangeSearchResult r(nq);
        index.range_search(nq, q.data(), radius, &r, sp);
        for (int64_t i = 0; i < nq; ++i) {
            std::vector<std::pair<float, idx_t>> want;
            for (size_t j = 0; j < all_ids.size(); ++j) {
                if (exact[i][j] >= radius) want.emplace_back(exact[i][j], all_ids[j]);
            }
            std::sort(want.begin(), want.end(), [](const auto& u, const auto& v) {
                return u.first != v.first ? u.first > v.first : u.second < v.second;
            });
            std::vector<std::pair<float, idx_t>> got;
            for (size_t j = r.lims[i]; j < r.lims[i + 1]; ++j) got.emplace_back(r.distances[j], r.labels[j]);
            EXPECT_EQ(got, want) << "query " << i;
            // Every twin pair is adjacent, the smaller id first.
            for (size_t j = 0; j + 1 < got.size(); j += 2) {
                EXPECT_EQ(got[j].first, got[j + 1].first) << "query " << i << " rank " << j;
                EXPECT_LT(got[j].second, got[j + 1].second) << "query " << i << " rank " << j;
            }
        }
        if (radius > 0.9f) {
            for (int64_t i = 0; i < nq; ++i) EXPECT_EQ(r.lims[i + 1] - r.lims[i], 2u) << "the own feature's twins";
        }
    }

    // search(k) is the prefix of the full range: the same scores rank by rank, the same ids
    // (equal scores: the same ids when the whole tie is inside k, ids of the tie when k cuts
    // it), padded with -1 / -inf past the entries there are. Which twin a cut keeps:
    // SearchBreaksTiesAsRangeSearchDoes below.
    faiss::RangeSearchResult full(nq);
    index.range_search(nq, q.data(), -2.0f, &full, sp);
    for (idx_t k : {idx_t(1), idx_t(2), idx_t(5), idx_t(33), idx_t(2 * n), idx_t(2 * n + 7)}) {
        expect_search_is_range_prefix(index, q, nq, k, sp, full, /*strict_ties=*/false);
    }

    // With a selector the order holds over the selected entries.
    faiss::IDSelectorRange low(0, 500);  // the twins with small ids only: no ties left
    faiss::SearchParametersIVF sel_ivf;
    sel_ivf.nprobe = every.nprobe;
    sel_ivf.sel = &low;
    faiss::SearchParameters sel_flat;
    sel_flat.sel = &low;
    const faiss::SearchParameters* spsel = ivf ? static_cast<const faiss::SearchParameters*>(&sel_ivf) : &sel_flat;
    faiss::RangeSearchResult rs(nq);
    index.range_search(nq, q.data(), 0.5f, &rs, spsel);
    for (int64_t i = 0; i < nq; ++i) {
        for (size_t j = rs.lims[i]; j < rs.lims[i + 1]; ++j) {
            EXPECT_LT(rs.labels[j], 500);
            if (j > rs.lims[i]) EXPECT_GT(rs.distances[j - 1], rs.distances[j]);
        }
        EXPECT_EQ(rs.lims[i + 1] - rs.lims[i], (full.lims[i + 1] - full.lims[i]) / 2 -
                                                       size_t(std::count_if(exact[i].begin(), exact[i].end(),
                                                                            [](float s) { return s < 0.5f; })) / 2);
    }

    if (!ivf) return;
    // IVF: fewer lists probed is a prefix of the same order over the probed entries, and
    // FAISS's max_codes path (it may stop early: a truncated scan) keeps the same order.
    for (size_t np : {size_t(1), size_t(3)}) {
        faiss::SearchParametersIVF some;
        some.nprobe = np;
        faiss::RangeSearchResult part(nq);
        index.range_search(nq, q.data(), -2.0f, &part, &some);
        expect_search_is_range_prefix(index, q, nq, 9, &some, part, /*strict_ties=*/false);
        for (int64_t i = 0; i < nq; ++i) {
            const size_t cnt = part.lims[i + 1] - part.lims[i];
            EXPECT_EQ(cnt % 2, 0u) << "twins share a list";
            for (size_t j = part.lims[i] + 1; j < part.lims[i + 1]; ++j) {
                EXPECT_TRUE(part.distances[j - 1] > part.distances[j] ||
                            (part.distances[j - 1] == part.distances[j] && part.labels[j - 1] < part.labels[j]));
            }
        }
        faiss::SearchParametersIVF capped = some;
        capped.max_codes = 10;
        faiss::RangeSearchResult c(nq);
        index.range_search(nq, q.data(), 0.3f, &c, &capped);
        for (int64_t i = 0; i < nq; ++i) {
            for (size_t j = c.lims[i]; j < c.lims[i + 1]; ++j) {
                EXPECT_GE(c.distances[j], 0.3f);
                const auto at = std::find(all_ids.begin(), all_ids.end(), c.labels[j]) - all_ids.begin();
                EXPECT_EQ(c.distances[j], exact[i][at]);
                if (j > c.lims[i]) {
                    EXPECT_TRUE(c.distances[j - 1] > c.distances[j] ||
                                (c.distances[j - 1] == c.distances[j] && c.labels[j - 1] < c.labels[j]));
                }
            }
        }
    }
}

// Radii in cosine units, where only an entry's own feature reaches 0.95 at t = 0.7.
INSTANTIATE_TEST_SUITE_P(Kinds, RangeOrder,
                         ::testing::Values("PSlerp4x8(norm=none,t=0.7)", "IVF4,PSlerp4x8(norm=none,t=0.7)"),
                         [](const auto& info) { return std::string(info.index == 0 ? "Exhaustive" : "IVF"); });

// search(k) cutting a tie keeps what range_search puts first: the smaller id, in both index
// kinds (index/topk.h WorstOnTop). Before, the IVF kept the larger id of equal scores and the
// exhaustive index decided ties by storage row. (The max_codes path uses FAISS's own heaps.)
TEST_P(RangeOrder, SearchBreaksTiesAsRangeSearchDoes) {
    const int d = 32;
    const int64_t n = 70;
    for (bool larger_id_first : {true, false}) {
        SCOPED_TRACE(larger_id_first ? "larger id added first" : "smaller id added first");
        auto owner = twins_index(GetParam(), d, n, 31, larger_id_first);
        const auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(owner.get());
        faiss::SearchParametersIVF every;
        every.nprobe = ivf ? ivf->nlist : 1;
        const faiss::SearchParameters* sp = ivf ? &every : nullptr;
        const int64_t nq = 6;
        const auto q = testing_util::random_features(nq, d, 31);
        faiss::RangeSearchResult full(nq);
        owner->range_search(nq, q.data(), -2.0f, &full, sp);
        for (idx_t k : {idx_t(1), idx_t(2), idx_t(5), idx_t(2 * n + 7)}) {
            expect_search_is_range_prefix(*owner, q, nq, k, sp, full, /*strict_ties=*/true);
        }
    }
}

// ---- de-duplication: clusters through chains and gallery matches

/// Features whose scores are plain cosines: with t = 0 and nothing dropped the protected
/// template is the normalised feature and the score the mean of the group cosines. Each group
/// of feature `angle` is base's group turned by `angle` in a plane of its own, so the score of
/// two such features is cos(their angle difference), exactly up to float rounding.
struct Arc {
    int groups, group_dim;
    std::vector<float> e1, e2;  // per group, orthonormal

    Arc(int g, int gd, uint64_t seed) : groups(g), group_dim(gd), e1(g * gd), e2(g * gd) {
        const auto r = testing_util::random_features(2, g * gd, seed);
        for (int k = 0; k < g; ++k) {
            double n1 = 0, dot = 0, n2 = 0;
            for (int j = 0; j < gd; ++j) n1 += double(r[k * gd + j]) * r[k * gd + j];
            for (int j = 0; j < gd; ++j) e1[k * gd + j] = float(r[k * gd + j] / std::sqrt(n1));
            for (int j = 0; j < gd; ++j) dot += double(e1[k * gd + j]) * r[g * gd + k * gd + j];
            std::vector<double> v(gd);
            for (int j = 0; j < gd; ++j) n2 += (v[j] = r[g * gd + k * gd + j] - dot * e1[k * gd + j]) * v[j];
            for (int j = 0; j < gd; ++j) e2[k * gd + j] = float(v[j] / std::sqrt(n2));
        }
    }
    std::vector<float> at(double angle) const {
        std::vector<float> x(groups * group_dim);
        for (size_t j = 0; j < x.size(); ++j) x[j] = float(std::cos(angle) * e1[j] + std::sin(angle) * e2[j]);
        return x;
    }
};

class DedupClusters : public ::testing::TestWithParam<const char*> {};

// A batch whose clusters are joined only through other items (chains: neighbours match,
// items two steps apart do not) and a cluster whose only gallery match is through one member
// that is not its first: none of that cluster is new, the chain's first item is.
TEST_P(DedupClusters, ChainsJoinTransitivelyAndAGalleryMatchMarksTheWholeCluster) {
    const int G = 4, gd = 8, d = G * gd;
    const double step = 0.25;  // cos 0.25 = 0.969 >= threshold > cos 0.5 = 0.878
    const float threshold = 0.93f;
    auto owner = index_factory(d, GetParam());
    faiss::Index& index = *owner;
    protected_of(index).set_seed(41);
    ASSERT_EQ(protected_of(index).params.t, 0.0f);
    if (!index.is_trained) {
        // Training features in +/- pairs: the learned mean is exactly 0, so centring changes nothing.
        const auto t = testing_util::random_features(200, d, 42);
        std::vector<float> pm;
        for (int i = 0; i < 200; ++i) {
            pm.insert(pm.end(), t.begin() + i * d, t.begin() + (i + 1) * d);
            for (int j = 0; j < d; ++j) pm.push_back(-t[i * d + j]);
        }
        index.train(400, pm.data());
        ASSERT_TRUE(std::all_of(protected_of(index).centering.mean.begin(), protected_of(index).centering.mean.end(),
                                [](float m) { return m == 0.0f; }));
    }
    const Arc gal(G, gd, 43), chain(G, gd, 44);
    // The gallery: 30 unrelated features, and g0 = gal.at(0) under id 500.
    const auto others = testing_util::random_features(30, d, 45);
    std::vector<idx_t> other_ids(30);
    std::iota(other_ids.begin(), other_ids.end(), 0);
    index.add_with_ids(30, others.data(), other_ids.data());
    const idx_t g0 = 500;
    index.add_with_ids(1, gal.at(0).data(), &g0);

    // The batch, in this order (a step apart: a match; two steps or more: none):
    //  0: gal.at(3 steps)   no gallery match; joined to one only through 5 and 2
    //  1: chain.at(2 steps) the chain is 4 - 6 - 1 - 8, no gallery match anywhere
    //  2: gal.at(1 step)    matches g0
    //  3: unrelated
    //  4: chain.at(0)
    //  5: gal.at(2 steps)   matches 2 and 0, not g0
    //  6: chain.at(1 step)
    //  7: unrelated
    //  8: chain.at(3 steps) matches 1 only
    std::vector<std::vector<float>> items = {gal.at(3 * step), chain.at(2 * step), gal.at(step), {}, chain.at(0),
                                             gal.at(2 * step), chain.at(step),     {},           chain.at(3 * step)};
    const auto unrelated = testing_util::random_features(2, d, 46);
    items[3].assign(unrelated.begin(), unrelated.begin() + d);
    items[7].assign(unrelated.begin() + d, unrelated.end());
    std::vector<float> batch;
    for (const auto& it : items) batch.insert(batch.end(), it.begin(), it.end());
    const int64_t n = int64_t(items.size());

    faiss::SearchParametersIVF all;
    const auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(&index);
    all.nprobe = ivf ? ivf->nlist : 1;
    DedupOptions opt;
    opt.threshold = threshold;
    opt.search = ivf ? &all : nullptr;
    const DedupResult r = deduplicate(index, n, batch.data(), opt);

    // Gallery matches: only item 2 (g0 at one step); 0 and 5 are two and three steps away.
    ASSERT_EQ(r.existing.size(), size_t(n));
    for (int64_t i = 0; i < n; ++i) {
        if (i == 2) {
            ASSERT_EQ(r.existing[i].size(), 1u);
            EXPECT_EQ(r.existing[i][0].first, g0);
            EXPECT_NEAR(r.existing[i][0].second, std::cos(step), 1e-4);
        } else {
            EXPECT_TRUE(r.existing[i].empty()) << "item " << i;
        }
    }
    EXPECT_EQ(r.duplicates_of_existing(), 1);
    // Clusters, each named by its smallest batch index.
    EXPECT_EQ(r.cluster, (std::vector<int64_t>{0, 1, 0, 3, 1, 0, 1, 7, 1}));
    EXPECT_EQ(r.clusters_with_several(), 2);
    // New: the chain (as its first item, 1) and the unrelated items. Not 0: its cluster holds
    // a gallery match (item 2), although 0 itself matches nothing in the gallery.
    EXPECT_EQ(r.unique, (std::vector<int64_t>{1, 3, 7}));

    // Enrolling: exactly the new ones, under the given ids; a second pass finds every item.
    std::vector<idx_t> batch_ids(n);
    for (int64_t i = 0; i < n; ++i) batch_ids[i] = 900 + i;
    opt.enroll_unique = true;
    opt.ids = batch_ids.data();
    const DedupResult e = deduplicate(index, n, batch.data(), opt);
    EXPECT_EQ(e.unique, r.unique);
    EXPECT_EQ(e.cluster, r.cluster);
    EXPECT_EQ(e.enrolled_ids, (std::vector<idx_t>{901, 903, 907}));
    EXPECT_EQ(index.ntotal, 31 + 3);
    for (idx_t id : {900, 902, 904, 905, 906, 908}) EXPECT_FALSE(protected_of(index).contains(id)) << id;
    opt.enroll_unique = false;
    opt.ids = nullptr;
    const DedupResult again = deduplicate(index, n, batch.data(), opt);
    EXPECT_TRUE(again.unique.empty());
    EXPECT_EQ(again.existing[1].front().first, 901);  // its own enrolment, score 1
    EXPECT_EQ(again.existing[6].front().first, 901);  // a step from 901
    EXPECT_TRUE(again.existing[4].empty()) << "two steps from 901 and from anything else enrolled";
    EXPECT_EQ(again.existing[8].size(), 1u);
    EXPECT_EQ(again.existing[8].front().first, 901);

    // The batch in reverse: the same partition, named by the new smallest indexes; a chain's
    // members are found whatever order links them.
    std::vector<float> rev;
    for (int64_t i = n - 1; i >= 0; --i) rev.insert(rev.end(), items[i].begin(), items[i].end());
    IndexProtectedSlerp empty(protected_of(index).params);
    empty.centering = protected_of(index).centering;
    DedupOptions plain;
    plain.threshold = threshold;
    const DedupResult rr = deduplicate(empty, n, rev.data(), plain);
    // reversed positions: 8-i. Chain {1,4,6,8} -> {7,4,2,0}: root 0; {0,2,5} -> {8,6,3}: root 3.
    EXPECT_EQ(rr.cluster, (std::vector<int64_t>{0, 1, 0, 3, 0, 5, 3, 0, 3}));
    EXPECT_EQ(rr.unique, (std::vector<int64_t>{0, 1, 3, 5}));
}

INSTANTIATE_TEST_SUITE_P(Kinds, DedupClusters,
                         ::testing::Values("PSlerp4x8(t=0,drop=none,norm=none)", "IVF4,PSlerp4x8(t=0,drop=none,norm=none)"),
                         [](const auto& info) { return std::string(info.index == 0 ? "Exhaustive" : "IVF"); });

}  // namespace
}  // namespace pslerp
