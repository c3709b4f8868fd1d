// IndexIVFProtectedSlerp against its oracle, the exhaustive IndexProtectedSlerp: with every
// list probed it returns exactly the exhaustive scores of the same entries; removal,
// selectors, merge_from, copy_subset_to, range search, verify; errors; and the shape of the
// scalability target on small data (rank-1 at the default nprobe >= 0.98x exhaustive).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const faiss::FaissException& e) {
        return e.what();
    }
    return "";
}

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
    ivf->set_seed(seed);
    pair->flat.set_seed(seed);
    const auto x = testing_util::random_features(n, d, seed + 1);
    std::vector<idx_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = 5 * i + 2;
    ivf->add_with_ids(n, x.data(), ids.data());
    pair->flat.add_with_ids(n, x.data(), ids.data());
    return pair;
}

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
        // The same kernel on the same entries: the same scores; ids agree except where two
        // scores of a query tie exactly.
        EXPECT_EQ(Di, Df) << "k=" << k;
        for (int64_t j = 0; j < 23 * k; ++j) {
            if (Ii[j] == If[j]) continue;
            const int64_t row = j / k * k;
            EXPECT_GE(std::count(Di.begin() + row, Di.begin() + row + k, Di[j]), 2) << "k=" << k << " j=" << j;
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
        std::set<std::pair<idx_t, float>> a, b;
        for (size_t j = ri.lims[i]; j < ri.lims[i + 1]; ++j) {
            a.insert({ri.labels[j], ri.distances[j]});
            if (j > ri.lims[i]) EXPECT_GE(ri.distances[j - 1], ri.distances[j]);
        }
        for (size_t j = rf.lims[i]; j < rf.lims[i + 1]; ++j) b.insert({rf.labels[j], rf.distances[j]});
        EXPECT_EQ(a, b);
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
    auto bytes = serialize_index(*pr->ivf);
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
    auto pr = build_pair("IVF8,PSlerp4x8", 32, 300, 150, 8);
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
    EXPECT_EQ(a.existing, b.existing);
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
    const auto bytes = serialize_index(*pr->ivf);
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
    const auto bytes = serialize_index(*pr->ivf);
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

}  // namespace
}  // namespace pslerp
