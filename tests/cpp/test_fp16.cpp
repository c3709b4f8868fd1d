// Half-precision storage (Storage::kFp16, issue 12): the conversions, the kernels in half mode
// against the scalar oracle, scores against the same index in fp32, rank-1 on a synthetic
// gallery, bytes per entry, files (flat and IVF, sealed and clear), merge, factory strings and
// forged halves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include <faiss/impl/FaissException.h>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "index/kernels/half.h"
#include "index/kernels/scan.h"
#include "index/storage.h"
#include "io/seal.h"
#include "plugin/synth.h"
#include "tests/cpp/test_util.h"

namespace pslerp {
namespace {

using kernels::float_to_half;
using kernels::half_to_float;
using testing_util::answers;
using testing_util::random_features;

Params with_storage(Params p, Storage s) {
    p.storage = s;
    return p;
}

// ---------------------------------------------------------------- conversions

TEST(Half, EveryHalfRoundTripsThroughFloat) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = half_to_float(uint16_t(h));
        if (std::isnan(f)) {
            EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << h;
            EXPECT_EQ((h >> 10) & 0x1f, 0x1fu) << h;
            continue;
        }
        ASSERT_EQ(float_to_half(f), h) << "half " << h << " -> " << f;
    }
    EXPECT_EQ(half_to_float(0x3c00), 1.0f);
    EXPECT_EQ(half_to_float(0xc000), -2.0f);
    EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
    EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
    EXPECT_TRUE(std::isinf(half_to_float(0x7c00)));
}

TEST(Half, RoundsToNearestTiesToEven) {
    EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie: down to even
    EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: up to even
    EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
    EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
    EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // rounds beyond the largest half
    EXPECT_EQ(float_to_half(-1e10f), 0xfc00);
    EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);          // tie with 0: even
    EXPECT_EQ(float_to_half(std::ldexp(1.5f, -24)), 0x0002);          // subnormal tie: even
    EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);          // smallest normal
    EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400);       // subnormal carries into normal
    EXPECT_EQ(float_to_half(-0.0f), 0x8000);
    EXPECT_EQ(float_to_half(std::numeric_limits<float>::infinity()), 0x7c00);
    EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
    // Nearest on random floats of every magnitude the storage sees.
    const auto x = random_features(20000, 1, 5);
    for (float v : x) {
        for (float f : {v, v * 1e-3f, v * 1e-6f, v * 300.0f}) {
            const uint16_t h = float_to_half(f);
            const double err = std::abs(double(half_to_float(h)) - f);
            for (uint16_t n : {uint16_t(h - 1), uint16_t(h + 1)}) {
                const float other = half_to_float(n);
                if (!std::isnan(other) && std::signbit(other) == std::signbit(half_to_float(h))) {
                    EXPECT_LE(err, std::abs(double(other) - f)) << f;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- kernels

std::vector<float> prepared(const ProtectedIndex& index, const std::vector<float>& q, int64_t nq) {
    auto probe = prepare_probes(index.params, q.data(), nq);
    EXPECT_TRUE(probe.ok());
    const size_t qf = index.layout.query_floats();
    std::vector<float> kq(nq * qf);
    for (int64_t i = 0; i < nq; ++i) {
        kernels::prepare_query(index.layout, probe->xn.data() + i * index.params.dim(),
                               probe->t.data() + i * index.params.groups, kq.data() + i * qf);
    }
    return kq;
}

// AVX2 equals the scalar oracle in half mode, for score_range (odd query counts: the pair
// loop's tail), score_list and group_cosines, on shapes that hit the padded lanes.
TEST(Fp16Kernels, Avx2EqualsScalar) {
    const kernels::KernelTable* avx2 = kernels::avx2_kernels();
    if (!avx2) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C: the SIMD kernel is not testable here";
    const kernels::KernelTable& scalar = kernels::scalar_kernels();
    for (const auto& c : testing_util::kernel_cases()) {
        SCOPED_TRACE(c.name);
        IndexProtectedSlerp index(with_storage(c.params, Storage::kFp16));
        index.set_seed(3);
        const int64_t n = 203, nq = 7;
        const auto x = random_features(n, index.d, 1);
        const auto q = random_features(nq, index.d, 2);
        index.add(n, x.data());
        ASSERT_TRUE(index.store.layout.half);
        ASSERT_TRUE(index.store.templates.empty() && index.store.ke.empty());
        const auto kq = prepared(index, q, nq);
        const kernels::Entries E = index.store.view();
        std::vector<float> a(nq * n), b(nq * n);
        EXPECT_EQ(scalar.score_range(E, kq.data(), nq, 0, n, a.data(), n),
                  avx2->score_range(E, kq.data(), nq, 0, n, b.data(), n));
        const auto gain = testing_util::score_gain(index.store);
        double worst = 0;
        for (int64_t i = 0; i < nq * n; ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]) / gain[i % n]);
        EXPECT_LT(worst, 1e-5);
        // The batched kernel (GEMM over unpack_row()'s floats) in half mode, where the CPU has it.
        for (const kernels::KernelTable* batch : {kernels::batch_avx2_kernels(), kernels::batch_kernels()}) {
            if (!batch) continue;
            SCOPED_TRACE(batch->name);
            std::vector<float> g(nq * n);
            batch->score_range(E, kq.data(), nq, 0, n, g.data(), n);
            double worst_batch = 0;
            for (int64_t i = 0; i < nq * n; ++i) {
                worst_batch = std::max(worst_batch, std::abs(double(a[i]) - g[i]) / gain[i % n]);
            }
            EXPECT_LT(worst_batch, 1e-5);
        }
        // One query reads entries straight from storage (no expanded copy): the same scores.
        std::vector<float> one(n);
        avx2->score_range(E, kq.data() + 3 * index.layout.query_floats(), 1, 0, n, one.data(), n);
        for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(one[j], a[3 * n + j], 1e-5 * gain[j]);
        const std::vector<int64_t> pos = {0, 5, n - 1, 17};
        std::vector<float> la(4), lb(4);
        scalar.score_list(E, kq.data(), pos.data(), 4, la.data());
        avx2->score_list(E, kq.data(), pos.data(), 4, lb.data());
        for (int j = 0; j < 4; ++j) {
            EXPECT_FLOAT_EQ(la[j], a[pos[j]]);
            EXPECT_NEAR(lb[j], a[pos[j]], 1e-5 * gain[pos[j]]);
        }
        const size_t gf = index.layout.group_floats();
        std::vector<float> ca(nq * gf), cb(nq * gf);
        for (int64_t j : {int64_t(0), n / 2, n - 1}) {
            scalar.group_cosines(E, kq.data(), nq, j, ca.data());
            avx2->group_cosines(E, kq.data(), nq, j, cb.data());
            for (size_t i = 0; i < ca.size(); ++i) EXPECT_NEAR(ca[i], cb[i], 1e-5);
        }
        // unpack_row gives the stored halves as floats.
        std::vector<float> te(index.layout.vec_floats()), tk(index.layout.key_floats());
        kernels::unpack_row(E, 9, te.data(), tk.data());
        for (size_t i = 0; i < te.size(); ++i) {
            ASSERT_EQ(te[i], half_to_float(index.store.templates_h[9 * te.size() + i]));
        }
        for (size_t i = 0; i < tk.size(); ++i) ASSERT_EQ(tk[i], half_to_float(index.store.keys_h[9 * tk.size() + i]));
    }
}

// The same seeded index in fp32 and fp16: the same keys and masks, templates and keys rounded.
// Returns the largest |score fp16 - score fp32| over probes x entries, and the same divided by
// the entry's sum of combination weights: with norm=none the weights sum to 1 and both are in
// cosine units; with norm=cohort scores are z-units, and the weights (1 / the cohort's standard
// deviations, large at t = 0.9) multiply every cosine error, so the second figure is the error
// in cosine units before that rescaling.
std::pair<double, double> max_score_error(const Params& p, int64_t n, int64_t nq) {
    IndexProtectedSlerp a(with_storage(p, Storage::kFp32)), b(with_storage(p, Storage::kFp16));
    a.set_seed(21);
    b.set_seed(21);
    const auto x = random_features(n, a.d, 7);
    const auto q = random_features(nq, a.d, 8);
    a.add(n, x.data());
    b.add(n, x.data());
    std::vector<idx_t> ids(n);
    for (int64_t j = 0; j < n; ++j) ids[j] = j;
    std::vector<double> weight_sum(n, 0.0);
    std::vector<float> w(p.groups);
    for (int64_t j = 0; j < n; ++j) {
        a.store.weight_row(a.params, j, w.data());
        for (float v : w) weight_sum[j] += v;
    }
    double worst = 0, worst_cosine = 0;
    std::vector<float> sa(n), sb(n), qq(n * a.d);
    for (int64_t i = 0; i < nq; ++i) {
        for (int64_t j = 0; j < n; ++j) std::copy_n(q.begin() + i * a.d, a.d, qq.begin() + j * a.d);
        a.verify_batch(n, qq.data(), ids.data(), sa.data());
        b.verify_batch(n, qq.data(), ids.data(), sb.data());
        for (int64_t j = 0; j < n; ++j) {
            const double err = std::abs(double(sa[j]) - sb[j]);
            worst = std::max(worst, err);
            worst_cosine = std::max(worst_cosine, err / weight_sum[j]);
        }
    }
    return {worst, worst_cosine};
}

// Scores within 1e-3 of fp32 in cosine units (norm=none: the scores themselves; norm=cohort:
// the error over the entry's weight sum). In z-units (norm=cohort) the error is larger, up to
// about 2e-2 of one non-mated standard deviation on these shapes: bounded here at 5e-2.
TEST(Fp16Scores, WithinOneThousandthOfFp32) {
    for (Norm norm : {Norm::kNone, Norm::kCohort}) {
        for (const auto& c : testing_util::kernel_cases()) {
            Params p = c.params;
            p.norm = norm;
            const auto [err, err_cosine] = max_score_error(p, 300, 20);
            const bool cohort = norm == Norm::kCohort;
            std::printf("[ fp16     ] %-16s norm=%-6s max |fp16 - fp32| = %.2e %s, %.2e in cosine units\n", c.name,
                        cohort ? "cohort" : "none", err, cohort ? "z-units" : "cosine", err_cosine);
            EXPECT_LT(err_cosine, 1e-3) << c.name << (cohort ? " norm=cohort" : " norm=none");
            EXPECT_LT(err, cohort ? 5e-2 : 1e-3) << c.name << (cohort ? " norm=cohort" : " norm=none");
        }
    }
}

// Rank-1 identification on a synthetic gallery: the same top-1 for at least 99% of probes, and
// the same rank-1 rate within 1%.
TEST(Fp16Scores, RankOneUnchangedOnASyntheticGallery) {
    SynthConfig cfg;
    cfg.seed = 11;
    auto split = synth_gallery(cfg, 3000, 500, 0);
    ASSERT_TRUE(split.ok()) << split.status();
    const int64_t nq = split->probes.n;
    std::vector<idx_t> top[2];
    int rank1[2] = {0, 0};
    for (int s = 0; s < 2; ++s) {
        IndexProtectedSlerp index(with_storage(Params::defaults(), s ? Storage::kFp16 : Storage::kFp32));
        index.set_seed(9);
        index.add_with_ids(split->gallery.n, split->gallery.x.data(), split->gallery.labels.data());
        std::vector<float> D(nq);
        top[s].resize(nq);
        index.search(nq, split->probes.x.data(), 1, D.data(), top[s].data());
        for (int64_t i = 0; i < nq; ++i) rank1[s] += top[s][i] == split->probes.labels[i];
    }
    int same = 0;
    for (int64_t i = 0; i < nq; ++i) same += top[0][i] == top[1][i];
    std::printf("[ fp16     ] rank-1 fp32 %d / fp16 %d of %ld probes; same top-1 for %d\n", rank1[0], rank1[1],
                long(nq), same);
    EXPECT_GE(same, 0.99 * nq);
    EXPECT_LE(std::abs(rank1[0] - rank1[1]), 0.01 * nq);
    EXPECT_GT(rank1[0], 0.5 * nq) << "the synthetic gallery should be identifiable at all";
}

// ---------------------------------------------------------------- storage and files

TEST(Fp16Storage, BytesPerEntryAt128D) {
    IndexProtectedSlerp flat32(Params::defaults()), flat16(with_storage(Params::defaults(), Storage::kFp16));
    // 256 template + 256 key + 16 mask + 32 weights + 4 offset + 8 id + 1 tombstone
    EXPECT_EQ(flat16.bytes_per_entry(), 573u);
    EXPECT_LE(flat16.bytes_per_entry(), 600u);
    EXPECT_LT(flat16.bytes_per_entry(), flat32.bytes_per_entry() / 2 + 20);
    auto ivf = index_factory(128, "IVF16,PSlerp8x16(storage=fp16)");
    auto& iv = dynamic_cast<IndexIVFProtectedSlerp&>(*ivf);
    EXPECT_EQ(iv.code_size, 256u + 256u + 32u + 4u + 16u);
    EXPECT_LE(iv.bytes_per_entry(), 600u);
    // Shared key: d halves (odd counts pad to whole floats).
    Params shared = with_storage(Params::defaults(3, 5), Storage::kFp16);
    shared.key_mode = KeyMode::kShared;
    shared.drop_count = 1;
    const kernels::CodeLayout c = kernels::code_layout(layout_of(shared));
    EXPECT_EQ(c.key_offset, 20u);  // 8 lanes x 5 = 40 halves
    EXPECT_EQ(c.weights_offset, 23u);  // 5 halves -> 3 floats
    EXPECT_EQ(c.code_size % 4, 0u);
}

// Rows read back as what was stored (rounded), and compaction keeps rows whole.
TEST(Fp16Storage, RowsAndCompaction) {
    const Params p = with_storage(Params::defaults(5, 7), Storage::kFp16);
    IndexProtectedSlerp a(p), b(p);
    a.set_seed(4);
    b.set_seed(4);
    const auto x = random_features(40, a.d, 3);
    a.add(40, x.data());
    b.add(40, x.data());
    std::vector<idx_t> odd;
    for (idx_t i = 1; i < 40; i += 2) odd.push_back(i);
    faiss::IDSelectorBatch sel(odd.size(), odd.data());
    a.remove_ids(sel);
    a.compact();
    ASSERT_TRUE(a.store.consistent());
    ASSERT_EQ(a.store.rows(), 20);
    std::vector<float> ea(a.d), eb(a.d), ka(a.d), kb(a.d);
    for (int64_t r = 0; r < 20; ++r) {
        a.store.template_row(p, r, ea.data());
        b.store.template_row(p, 2 * r, eb.data());
        a.store.key_row(p, r, ka.data());
        b.store.key_row(p, 2 * r, kb.data());
        EXPECT_EQ(ea, eb);
        EXPECT_EQ(ka, kb);
        for (float v : ka) EXPECT_EQ(half_to_float(float_to_half(v)), v);
    }
}

std::unique_ptr<faiss::Index> seeded(const std::string& factory, int64_t n, int d) {
    auto index = index_factory(d, factory);
    protected_of(*index).set_seed(5);
    const auto train = random_features(600, d, 1);
    index->train(600, train.data());
    const auto x = random_features(n, d, 2);
    index->add(n, x.data());
    return index;
}

Secret fixed_secret() {
    std::vector<uint8_t> b(32, 0x5a);
    return *Secret::from_bytes(b.data(), b.size());
}

TEST(Fp16Files, RoundTripKeepsStorageAndScores) {
    const int d = 64;
    const auto q = random_features(9, d, 4);
    std::vector<idx_t> ids = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    for (const char* f : {"PSlerp4x16(storage=fp16)", "IVF8,PSlerp4x16(storage=fp16,nprobe=8)",
                          "PSlerp4x16(storage=fp16,key=shared,norm=none)"}) {
        SCOPED_TRACE(f);
        auto index = seeded(f, 300, d);
        const auto want = answers(*index, q, 9, 5, 0.5f, nullptr, &ids);
        for (bool sealed : {false, true}) {
            SCOPED_TRACE(sealed ? "sealed" : "clear");
            const auto bytes = sealed ? serialize_index(*index, fixed_secret()) : serialize_index_unsealed(*index);
            ::testing::internal::CaptureStderr();  // an unsealed file warns
            auto back = sealed ? deserialize_index(bytes.data(), bytes.size(), fixed_secret())
                               : deserialize_index(bytes.data(), bytes.size());
            ::testing::internal::GetCapturedStderr();
            EXPECT_EQ(protected_of(*back).params.storage, Storage::kFp16);
            EXPECT_TRUE(protected_of(*back).layout.half);
            EXPECT_EQ(describe_index(*back), describe_index(*index));
            EXPECT_TRUE(answers(*back, q, 9, 5, 0.5f, nullptr, &ids) == want);
            EXPECT_EQ(back->ntotal, index->ntotal);
        }
    }
}

// The golden files (tests/data, read by GoldenFiles.OpenAndAnswer) record their storage: the
// version-4 fp16 ones open as fp16, every older one as fp32.
TEST(Fp16Files, GoldenFilesRecordTheStorage) {
    const std::string dir = std::string(PSLERP_SOURCE_DIR) + "/tests/data/";
    for (const char* f : {"v4_exhaustive_fp16.pslerp", "v4_ivf_flat_fp16.pslerp", "v4_ivf_hnsw.pslerp",
                          "v3_exhaustive.pslerp", "v3_ivf_flat.pslerp", "v2_ivf_flat.pslerp"}) {
        SCOPED_TRACE(f);
        ::testing::internal::CaptureStderr();
        auto index = read_index(dir + f);
        ::testing::internal::GetCapturedStderr();
        const bool fp16 = std::string(f).find("fp16") != std::string::npos;
        EXPECT_EQ(protected_of(*index).params.storage, fp16 ? Storage::kFp16 : Storage::kFp32);
        EXPECT_EQ(protected_of(*index).layout.half, fp16);
    }
}

// An fp16 file is smaller than the fp32 one by about half the template and key bytes.
TEST(Fp16Files, HalfTheEntryBytes) {
    auto a = seeded("PSlerp8x16", 500, 128);
    auto b = seeded("PSlerp8x16(storage=fp16)", 500, 128);
    const double per32 = double(serialize_index_unsealed(*a).size()) / 500;
    const double per16 = double(serialize_index_unsealed(*b).size()) / 500;
    EXPECT_LT(per16, 0.55 * per32) << per16 << " vs " << per32;
}

// A forged half (NaN, Inf, a key off unit norm, a dropped coordinate not zero) is refused on
// load, with the field named.
TEST(Fp16Files, ForgedHalvesRefused) {
    auto good = seeded("PSlerp4x16(storage=fp16,norm=none)", 20, 64);
    auto& flat = dynamic_cast<IndexProtectedSlerp&>(*good);
    const kernels::Layout& L = flat.store.layout;
    // Group 1, coordinate 3 of row 2, and one of row 2's dropped template coordinates.
    const size_t o = 2 * L.vec_floats() + (0 * 16 + 3) * kernels::kLanes + 1;
    size_t dropped = 0;
    for (size_t i = 0; i < size_t(L.group_dim); ++i) {
        const bool kept = (flat.store.masks[2 * L.mask_bytes() + i] >> 1) & 1;
        if (!kept) dropped = 2 * L.vec_floats() + i * kernels::kLanes + 1;
    }
    ASSERT_NE(dropped, 0u) << "row 2 group 1 drops a coordinate (default drop_count 2)";
    struct Forgery {
        const char* what;
        std::vector<uint16_t> EntryStorage::*field;
        size_t at;
        uint16_t value;
    };
    const Forgery forgeries[] = {
            {"template: group 1 coordinate 3 is nan", &EntryStorage::templates_h, o, 0x7e00},
            {"key: group 1 coordinate 3 is inf", &EntryStorage::keys_h, o, 0x7c00},
            {"key: group 1 has norm", &EntryStorage::keys_h, o, float_to_half(3.0f)},
            {"is dropped but not zero", &EntryStorage::templates_h, dropped, float_to_half(0.25f)},
    };
    for (const Forgery& f : forgeries) {
        SCOPED_TRACE(f.what);
        auto index = seeded("PSlerp4x16(storage=fp16,norm=none)", 20, 64);
        auto& s = dynamic_cast<IndexProtectedSlerp&>(*index).store;
        (s.*f.field)[f.at] = f.value;
        EXPECT_FALSE(check_entry(protected_of(*index).params, s.view(), 2).ok());
        const auto bytes = serialize_index_unsealed(*index);
        ::testing::internal::CaptureStderr();
        const std::string err = error_of([&] { deserialize_index(bytes.data(), bytes.size()); });
        ::testing::internal::GetCapturedStderr();
        EXPECT_TRUE(Contains(err, "row 2")) << err;
        EXPECT_TRUE(Contains(err, f.what)) << err;
    }
}

// ---------------------------------------------------------------- factory and merge

TEST(Fp16Factory, ParsesValidatesAndDescribes) {
    auto flat = index_factory(128, "PSlerp8x16(storage=fp16)");
    EXPECT_EQ(protected_of(*flat).params.storage, Storage::kFp16);
    EXPECT_EQ(describe_index(*flat), "PSlerp8x16(storage=fp16)");
    EXPECT_TRUE(Contains(protected_of(*flat).params.describe(), "storage=fp16"));
    auto ivf = index_factory(128, "IVF1024,PSlerp8x16(storage=fp16)");
    EXPECT_EQ(protected_of(*ivf).params.storage, Storage::kFp16);
    EXPECT_TRUE(Contains(describe_index(*ivf), "storage=fp16"));
    // fp32 is the default and is not spelled out.
    auto plain = index_factory(128, "PSlerp8x16(storage=fp32)");
    EXPECT_EQ(protected_of(*plain).params.storage, Storage::kFp32);
    EXPECT_EQ(describe_index(*plain), "PSlerp8x16");
    for (const char* bad : {"PSlerp8x16(storage=fp8)", "PSlerp8x16(storage=FP16)", "IVF4,PSlerp8x16(storage=half)"}) {
        SCOPED_TRACE(bad);
        const std::string err = error_of([&] { index_factory(128, bad); });
        EXPECT_TRUE(Contains(err, "option storage: expected one of fp32|fp16")) << err;
    }
    EXPECT_TRUE(Contains(error_of([&] { index_factory(128, "PSlerp8x16(storage=)"); }), "'storage='"));
    Params p;
    p.storage = static_cast<Storage>(7);
    EXPECT_FALSE(p.validate().ok());
}

// Merging an fp16 IVF with an fp32 one is refused (codes of different sizes); two fp16 ones merge.
TEST(Fp16Merge, Fp16AndFp32Refused) {
    auto a = seeded("IVF8,PSlerp4x16", 50, 64);
    auto b = seeded("IVF8,PSlerp4x16(storage=fp16)", 50, 64);
    auto& ib = dynamic_cast<IndexIVFProtectedSlerp&>(*b);
    const std::string err = error_of([&] { ib.merge_from(*a, 0); });
    EXPECT_TRUE(Contains(err, "pslerp: merge: the indexes differ in dimension, nlist or code size")) << err;
    EXPECT_EQ(ib.ntotal, 50);
    // Another fp16 index trained alike, with other ids: merged, it answers as before.
    auto c = index_factory(64, "IVF8,PSlerp4x16(storage=fp16)");
    protected_of(*c).set_seed(5);
    const auto train = random_features(600, 64, 1);
    c->train(600, train.data());
    const auto x = random_features(20, 64, 3);
    std::vector<idx_t> ids(20);
    for (int i = 0; i < 20; ++i) ids[i] = 1000 + i;
    c->add_with_ids(20, x.data(), ids.data());
    std::vector<float> before(20), after(20);
    protected_of(*c).verify_batch(20, x.data(), ids.data(), before.data());
    ib.merge_from(*c, 0);
    EXPECT_EQ(ib.ntotal, 70);
    protected_of(*b).verify_batch(20, x.data(), ids.data(), after.data());
    EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace pslerp
