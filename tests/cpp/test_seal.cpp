// Sealed index files and the secret frame (issue 11): secrets (hex, files, environment), the
// envelope (round trips, every single-byte flip and every truncation refused, missing / wrong /
// truncated told apart), sealed index files (round trip, frame kept, unsealed writes and
// secret-less reads refused where they must be, rekey), file modes (0600 new, mode and owner
// kept on re-save), and the frame: a Haar-random rotation per group, from its seed, under which
// the index answers exactly as the unframed scheme given rotated features and probes.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <faiss/impl/FaissException.h>

#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "io/file.h"
#include "io/seal.h"
#include "plugin/protect.h"
#include "plugin/scheme.h"
#include "test_util.h"

namespace pslerp {
namespace {

namespace fs = std::filesystem;

Secret fixed_secret(uint8_t fill) {
    std::vector<uint8_t> b(32, fill);
    return *Secret::from_bytes(b.data(), b.size());
}

std::vector<float> gaussian(int64_t n, int d, uint32_t seed, float shift = 0.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> N;
    std::vector<float> x(size_t(n) * d);
    for (size_t i = 0; i < x.size(); ++i) x[i] = N(g) + shift * float(i % d);
    return x;
}

std::string load_error(const std::vector<uint8_t>& bytes, const Secret& secret) {
    try {
        deserialize_index(bytes.data(), bytes.size(), secret);
    } catch (const faiss::FaissException& e) {
        return e.what();
    }
    return "";
}

class SealTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("pslerp_seal_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    /// A small seeded exhaustive index (2 groups of 8), trained, with `n` entries.
    std::unique_ptr<faiss::Index> small(int64_t n, bool frame) {
        auto index = index_factory(16, "PSlerp2x8");
        protected_of(*index).set_seed(3);
        if (frame) {
            const Secret seed = fixed_secret(0x11);
            set_secret_frame(*index, seed.bytes());
        }
        const auto x = gaussian(std::max<int64_t>(n, 4), 16, 1, 0.2f);
        index->train(std::max<int64_t>(n, 4), x.data());
        if (n > 0) index->add(n, x.data());
        return index;
    }

    fs::path dir_;
};

// ---- secrets ---------------------------------------------------------------------------------

TEST_F(SealTest, SecretFormats) {
    const Secret s = generate_secret();
    EXPECT_FALSE(s.empty());
    EXPECT_NE(s.to_hex(), generate_secret().to_hex());
    auto back = Secret::from_hex("  " + s.to_hex() + "\n");
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->to_hex(), s.to_hex());
    std::string upper = s.to_hex();
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    EXPECT_TRUE(Secret::from_hex(upper).ok());
    EXPECT_TRUE(Contains(std::string(Secret::from_hex("abcd").status().message()), "64 hex digits"));
    EXPECT_FALSE(Secret::from_hex(std::string(63, 'a') + "g").ok());
    EXPECT_FALSE(Secret::from_bytes("short", 5).ok());
    EXPECT_TRUE(Secret().empty());

    ::setenv("PSLERP_TEST_SECRET", s.to_hex().c_str(), 1);
    auto env = Secret::from_env("PSLERP_TEST_SECRET");
    ASSERT_TRUE(env.ok());
    EXPECT_EQ(env->to_hex(), s.to_hex());
    ::setenv("PSLERP_TEST_SECRET", "nothex", 1);
    EXPECT_TRUE(Contains(std::string(Secret::from_env("PSLERP_TEST_SECRET").status().message()), "PSLERP_TEST_SECRET"));
    ::unsetenv("PSLERP_TEST_SECRET");
    EXPECT_EQ(Secret::from_env("PSLERP_TEST_SECRET").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SealTest, SecretFiles) {
    const std::string path = (dir_ / "key").string();
    const Secret s = generate_secret();
    ASSERT_TRUE(write_secret_file(path, s, false).ok());
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    auto back = Secret::from_file(path);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->to_hex(), s.to_hex());
    // Never overwritten unless asked.
    EXPECT_EQ(write_secret_file(path, generate_secret(), false).code(), absl::StatusCode::kAlreadyExists);
    EXPECT_EQ(Secret::from_file(path)->to_hex(), s.to_hex());
    ASSERT_TRUE(write_secret_file(path, generate_secret(), true).ok());
    EXPECT_NE(Secret::from_file(path)->to_hex(), s.to_hex());
    // Readable by group or others: refused, naming the mode.
    ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
    const absl::Status loose = Secret::from_file(path).status();
    EXPECT_EQ(loose.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_TRUE(Contains(std::string(loose.message()), "0640"));
    // Not a regular file.
    EXPECT_FALSE(Secret::from_file(dir_.string()).ok());
    EXPECT_EQ(Secret::from_file((dir_ / "missing").string()).status().code(), absl::StatusCode::kNotFound);
}

// ---- the envelope ----------------------------------------------------------------------------

TEST_F(SealTest, EnvelopeRoundTripsAndRefusesDamage) {
    const Secret s = fixed_secret(7);
    for (const size_t n : {size_t(0), size_t(1), size_t(96), size_t(97), size_t(1000)}) {
        std::vector<uint8_t> payload(n);
        for (size_t i = 0; i < n; ++i) payload[i] = uint8_t(i * 31 + 5);
        std::vector<uint8_t> sealed;
        seal_bytes(s, payload.data(), n, &sealed, 97);
        const MemoryBytes src(sealed.data(), sealed.size());
        EXPECT_TRUE(is_sealed(src));
        auto info = peek_sealed(src);
        ASSERT_TRUE(info.ok());
        EXPECT_EQ(info->payload_bytes, n);
        EXPECT_EQ(info->expected_file_bytes, sealed.size());
        auto opened = open_sealed(src, s);
        ASSERT_TRUE(opened.ok()) << opened.status();
        EXPECT_EQ(*opened, payload);
        // No secret, wrong secret, truncation: three different errors.
        EXPECT_EQ(open_sealed(src, Secret()).status().code(), absl::StatusCode::kFailedPrecondition);
        const absl::Status wrong = open_sealed(src, fixed_secret(8)).status();
        EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied);
        EXPECT_TRUE(Contains(std::string(wrong.message()), "wrong secret or file modified"));
        for (size_t cut = 0; cut < sealed.size(); ++cut) {
            const MemoryBytes part(sealed.data(), cut);
            const absl::Status st = open_sealed(part, s).status();
            ASSERT_FALSE(st.ok()) << cut;
            if (cut >= 8) EXPECT_TRUE(Contains(std::string(st.message()), "truncated")) << cut;
        }
        std::vector<uint8_t> longer = sealed;
        longer.push_back(0);
        EXPECT_TRUE(Contains(std::string(open_sealed(MemoryBytes(longer.data(), longer.size()), s).status().message()),
                             "after its end"));
    }
    // Each file has its own nonce: the same payload seals differently.
    std::vector<uint8_t> a, b;
    const uint8_t p[3] = {1, 2, 3};
    seal_bytes(s, p, 3, &a);
    seal_bytes(s, p, 3, &b);
    EXPECT_NE(a, b);
}

TEST_F(SealTest, ReorderedChunksAreRefused) {
    const Secret s = fixed_secret(9);
    std::vector<uint8_t> payload(300, 0x42);
    std::vector<uint8_t> sealed;
    seal_bytes(s, payload.data(), payload.size(), &sealed, 100);
    const size_t c = 100 + 17;
    // Swap chunks 0 and 1 (same length): authentication fails.
    std::vector<uint8_t> swapped = sealed;
    std::swap_ranges(swapped.begin() + 64, swapped.begin() + 64 + c, swapped.begin() + 64 + c);
    EXPECT_EQ(open_sealed(MemoryBytes(swapped.data(), swapped.size()), s).status().code(),
              absl::StatusCode::kPermissionDenied);
    // Dropping the final chunk and shortening the header's length: refused (no FINAL tag, and
    // the header is authenticated).
    std::vector<uint8_t> dropped(sealed.begin(), sealed.end() - c);
    const uint64_t shorter = 200;
    std::memcpy(dropped.data() + 16, &shorter, 8);
    EXPECT_FALSE(open_sealed(MemoryBytes(dropped.data(), dropped.size()), s).ok());
}

// ---- sealed index files ----------------------------------------------------------------------

TEST_F(SealTest, EverySingleByteFlipOfASealedIndexIsRefused) {
    const Secret s = fixed_secret(1);
    for (const bool frame : {false, true}) {
        auto index = small(3, frame);
        std::vector<uint8_t> bytes = serialize_index(*index, s);
        if (frame) {
            // The same payload in chunks of 97 bytes: the index is parsed across chunk ends.
            const auto payload = open_sealed(MemoryBytes(bytes.data(), bytes.size()), s);
            ASSERT_TRUE(payload.ok());
            bytes.clear();
            seal_bytes(s, payload->data(), payload->size(), &bytes, 97);
        }
        ASSERT_NO_THROW(deserialize_index(bytes.data(), bytes.size(), s));
        EXPECT_TRUE(has_secret_frame(*deserialize_index(bytes.data(), bytes.size(), s)) == frame);
        int refused = 0;
        for (size_t i = 0; i < bytes.size(); ++i) {
            for (const uint8_t mask : {uint8_t(0x01), uint8_t(0x80)}) {
                std::vector<uint8_t> b = bytes;
                b[i] ^= mask;
                refused += load_error(b, s).empty() ? 0 : 1;
            }
        }
        EXPECT_EQ(refused, int(2 * bytes.size())) << "frame " << frame;
    }
}

TEST_F(SealTest, MissingWrongAndTruncatedSecretsAreToldApart) {
    const Secret s = fixed_secret(2);
    auto index = small(5, true);
    const std::string path = (dir_ / "g.pslerp").string();
    write_index(*index, path, s);
    auto err = [&](const Secret& secret) {
        try {
            read_index(path, secret);
        } catch (const faiss::FaissException& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_TRUE(Contains(err(Secret()), "no secret was given"));
    EXPECT_TRUE(Contains(err(fixed_secret(3)), "wrong secret or file modified"));
    EXPECT_TRUE(Contains(err(Secret()), path));
    fs::resize_file(path, fs::file_size(path) - 1);
    EXPECT_TRUE(Contains(err(s), "truncated"));
    EXPECT_TRUE(Contains(err(Secret()), "truncated"));
    // The clear header: info without the secret, truncation seen there too.
    EXPECT_THROW(peek_index_file(path), faiss::FaissException);
    write_index(*index, path, s);
    const IndexFileSummary sum = peek_index_file(path);
    EXPECT_TRUE(sum.sealed);
    EXPECT_EQ(sum.version, 1u);
}

TEST_F(SealTest, SealedRoundTripAnswersIdentically) {
    const Secret s = generate_secret();
    for (const char* factory : {"PSlerp2x8", "IVF4,PSlerp2x8"}) {
        auto index = index_factory(16, factory);
        protected_of(*index).set_seed(5);
        enable_secret_frame(*index);
        const auto xt = gaussian(200, 16, 2, 0.3f);
        index->train(200, xt.data());
        const auto x = gaussian(50, 16, 3, 0.3f);
        index->add(50, x.data());
        const std::string path = (dir_ / "r.pslerp").string();
        write_index(*index, path, s);
        auto loaded = read_index(path, s);
        EXPECT_TRUE(has_secret_frame(*loaded));
        EXPECT_EQ(protected_of(*loaded).centering.frame_matrix, protected_of(*index).centering.frame_matrix);
        EXPECT_EQ(protected_of(*loaded).centering.frame_seed, protected_of(*index).centering.frame_seed);
        const int64_t k = 5;
        std::vector<float> d1(50 * k), d2(50 * k);
        std::vector<faiss::Index::idx_t> l1(50 * k), l2(50 * k);
        index->search(50, x.data(), k, d1.data(), l1.data());
        loaded->search(50, x.data(), k, d2.data(), l2.data());
        EXPECT_EQ(d1, d2) << factory;
        EXPECT_EQ(l1, l2) << factory;
        // In memory too, and a frame never goes out clear.
        const auto bytes = serialize_index(*index, s);
        EXPECT_EQ(deserialize_index(bytes.data(), bytes.size(), s)->ntotal, 50);
        // As index_io.h documents: the payload is the 37-byte frame record, then a whole clear
        // file (checksum included), which opens as one (without the frame).
        const auto payload = open_sealed(MemoryBytes(bytes.data(), bytes.size()), s);
        ASSERT_TRUE(payload.ok());
        ASSERT_GT(payload->size(), 37u);
        EXPECT_EQ(std::string(payload->begin(), payload->begin() + 4), "FRAM");
        EXPECT_EQ((*payload)[4], 1);
        auto inner = deserialize_index(payload->data() + 37, payload->size() - 37);
        EXPECT_EQ(inner->ntotal, 50);
        EXPECT_FALSE(has_secret_frame(*inner));
        EXPECT_THROW(write_index_unsealed(*index, path), faiss::FaissException);
        EXPECT_THROW(serialize_index_unsealed(*index), faiss::FaissException);
        EXPECT_THROW(write_index(*index, path, Secret()), faiss::FaissException);
    }
}

TEST_F(SealTest, ClearFilesOpenOnlyWithoutASecret) {
    auto index = small(4, false);
    const std::string path = (dir_ / "clear.pslerp").string();
    write_index_unsealed(*index, path);
    EXPECT_EQ(read_index(path)->ntotal, 4);
    EXPECT_FALSE(peek_index_file(path).sealed);
    try {
        read_index(path, fixed_secret(4));
        ADD_FAILURE() << "a clear file opened where a sealed one was expected";
    } catch (const faiss::FaissException& e) {
        EXPECT_TRUE(Contains(e.what(), "not sealed, but a secret was given"));
    }
}

TEST_F(SealTest, RekeyRoundTrip) {
    const Secret a = fixed_secret(0x21), b = fixed_secret(0x22);
    auto index = small(6, true);
    const std::string path = (dir_ / "k.pslerp").string();
    write_index(*index, path, a);
    // What pslerp rekey does: open with the old secret, write with the new one in place.
    write_index(*read_index(path, a), path, b);
    EXPECT_THROW(read_index(path, a), faiss::FaissException);
    auto loaded = read_index(path, b);
    EXPECT_TRUE(protected_of(*loaded).centering.same_frame(protected_of(*index).centering));
    const auto x = gaussian(6, 16, 1, 0.2f);
    std::vector<float> d1(6), d2(6);
    std::vector<faiss::Index::idx_t> l1(6), l2(6);
    index->search(6, x.data(), 1, d1.data(), l1.data());
    loaded->search(6, x.data(), 1, d2.data(), l2.data());
    EXPECT_EQ(d1, d2);
    EXPECT_EQ(l1, l2);
    // The templates themselves are unchanged: the clear payloads are the same bytes.
    EXPECT_EQ(serialize_index(*loaded, a).size(), serialize_index(*index, a).size());
}

// ---- file modes ------------------------------------------------------------------------------

TEST_F(SealTest, ModesAreKeptOnResave) {
    const Secret s = fixed_secret(5);
    auto index = small(2, true);
    const std::string path = (dir_ / "m.pslerp").string();
    ::umask(022);
    write_index(*index, path, s);
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    write_index(*index, path, s);
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "re-save";
    // A mode the owner chose is kept.
    ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
    write_index(*index, path, s);
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    // No temporary file is left beside it.
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file() ? 1 : 0;
    EXPECT_EQ(files, 1);
    // The owner and group are kept (only root can give a file away).
    if (::geteuid() == 0) {
        ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
        write_index(*index, path, s);
        ASSERT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, 65534u);
        EXPECT_EQ(st.st_gid, 65534u);
    }
    // Special files and symbolic links are refused as targets.
    const std::string link = (dir_ / "link").string();
    ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
    EXPECT_THROW(write_index(*index, link, s), faiss::FaissException);
    EXPECT_THROW(write_index(*index, "/dev/null", s), faiss::FaissException);
}

// ---- the frame -------------------------------------------------------------------------------

/// max |F F^T - I| of the d x d row-major f, in double.
double orthogonality_error(const float* f, int d) {
    double worst = 0;
    for (int i = 0; i < d; ++i) {
        for (int j = 0; j < d; ++j) {
            double s = 0;
            for (int k = 0; k < d; ++k) s += double(f[i * d + k]) * f[j * d + k];
            worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
        }
    }
    return worst;
}

/// y = blockdiag(F_g) x for n vectors of G groups of d (the frame applied to raw vectors).
std::vector<float> rotate(const std::vector<float>& frame, int G, int d, const std::vector<float>& x, int64_t n) {
    const int D = G * d;
    std::vector<float> y(x.size());
    for (int64_t i = 0; i < n; ++i) {
        for (int g = 0; g < G; ++g) {
            const float* f = frame.data() + size_t(g) * d * d;
            for (int r = 0; r < d; ++r) {
                double s = 0;
                for (int c = 0; c < d; ++c) s += double(f[r * d + c]) * x[i * D + g * d + c];
                y[i * D + g * d + r] = float(s);
            }
        }
    }
    return y;
}

TEST_F(SealTest, FrameIsAHaarRotationPerGroupFromItsSeed) {
    const Secret seed = fixed_secret(0x33);
    const int G = 4, d = 16;
    const std::vector<float> f = derive_frame(seed.bytes(), G, d);
    ASSERT_EQ(f.size(), size_t(G * d * d));
    EXPECT_EQ(f, derive_frame(seed.bytes(), G, d)) << "deterministic from the seed";
    for (int g = 0; g < G; ++g) EXPECT_LT(orthogonality_error(f.data() + g * d * d, d), 1e-6) << "group " << g;
    EXPECT_FALSE(std::equal(f.begin(), f.begin() + d * d, f.begin() + d * d)) << "groups get their own matrices";
    const std::vector<float> other = derive_frame(fixed_secret(0x34).bytes(), G, d);
    EXPECT_NE(other, f);
    // A dense rotation, not a signed permutation: no row has a dominant entry.
    int dominant = 0;
    for (int r = 0; r < G * d; ++r) {
        for (int c = 0; c < d; ++c) dominant += std::fabs(f[r * d + c]) > 0.9f;
    }
    EXPECT_EQ(dominant, 0);
    // Odd d*d, large d and d=1 work; the limits are refused.
    for (int dd : {7, 1, 256}) {
        const std::vector<float> m = derive_frame(seed.bytes(), 1, dd);
        EXPECT_LT(orthogonality_error(m.data(), dd), 1e-6) << dd;
    }
    EXPECT_THROW(derive_frame(seed.bytes(), 1, kMaxFrameGroupDim + 1), std::invalid_argument);
    EXPECT_THROW(derive_frame(seed.bytes(), 64, 1024), std::invalid_argument);
    // Haar on O(3): every entry is uniform on [-1, 1] (so each quarter of [-1, 1] holds a quarter
    // of 3000 draws, sd 0.008), and the determinant is -1 for half of them. A QR without the
    // sign fix, or a permutation, fails this.
    const int n3 = 3000;
    const std::vector<float> h = derive_frame(seed.bytes(), n3, 3);
    for (int e : {0, 5, 8}) {
        int quarter[4] = {0, 0, 0, 0};
        for (int g = 0; g < n3; ++g) quarter[std::min(3, int((h[g * 9 + e] + 1.0f) * 2.0f))]++;
        for (int b = 0; b < 4; ++b) EXPECT_NEAR(quarter[b] / double(n3), 0.25, 0.04) << "entry " << e << " bin " << b;
    }
    int negative = 0;
    for (int g = 0; g < n3; ++g) {
        const float* m = h.data() + g * 9;
        const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                           m[2] * (m[3] * m[7] - m[4] * m[6]);
        EXPECT_NEAR(std::fabs(det), 1.0, 1e-5);
        negative += det < 0;
    }
    EXPECT_NEAR(negative / double(n3), 0.5, 0.05);
}

TEST_F(SealTest, FrameKeepsCosineGeometry) {
    auto index = small(0, true);
    const Centering& framed = protected_of(*index).centering;
    ASSERT_TRUE(framed.has_frame());
    Centering plain = framed;
    plain.frame_seed.clear();
    plain.frame_matrix.clear();
    const int n = 30, D = 16, d = 8;
    const auto x = gaussian(n, D, 7, 0.4f);
    std::vector<float> c(n * D), y(n * D);
    plain.apply(x.data(), n, D, c.data());
    framed.apply(x.data(), n, D, y.data());
    EXPECT_NE(c, y);
    auto dot8 = [&](const float* a, const float* b) {
        double s = 0;
        for (int j = 0; j < d; ++j) s += double(a[j]) * b[j];
        return s;
    };
    for (int i = 0; i < n; ++i) {
        for (int g = 0; g < 2; ++g) {
            const float *ci = c.data() + i * D + g * d, *yi = y.data() + i * D + g * d;
            EXPECT_NEAR(std::sqrt(dot8(yi, yi)), std::sqrt(dot8(ci, ci)), 1e-5 * std::sqrt(dot8(ci, ci)));
            const int j = (i + 1) % n;
            const float *cj = c.data() + j * D + g * d, *yj = y.data() + j * D + g * d;
            const double cos_c = dot8(ci, cj) / std::sqrt(dot8(ci, ci) * dot8(cj, cj));
            const double cos_y = dot8(yi, yj) / std::sqrt(dot8(yi, yi) * dot8(yj, yj));
            EXPECT_NEAR(cos_y, cos_c, 1e-5);
        }
    }
    // In place as well, and exactly F_g times the centred vector.
    std::vector<float> z = x;
    framed.apply(z.data(), n, D, z.data());
    EXPECT_EQ(z, y);
    const auto fc = rotate(framed.frame_matrix, 2, d, c, n);
    for (int i = 0; i < n * D; ++i) EXPECT_NEAR(fc[i], y[i], 1e-5);
}

TEST_F(SealTest, FrameRefusals) {
    auto full = small(3, false);
    const Secret seed = fixed_secret(0x44);
    EXPECT_THROW(set_secret_frame(*full, seed.bytes()), faiss::FaissException);
    auto framed = small(0, true);
    EXPECT_THROW(set_secret_frame(*framed, seed.bytes()), faiss::FaissException);
    auto ivf = index_factory(16, "IVF2,PSlerp2x8");
    const auto xt = gaussian(20, 16, 1);
    ivf->train(20, xt.data());
    EXPECT_THROW(enable_secret_frame(*ivf), faiss::FaissException);
    auto attention = index_factory(12, "PSlerp3x4(preset=slerpface)");
    EXPECT_THROW(enable_secret_frame(*attention), faiss::FaissException);
}

// The frame is a rotation of the inputs: an index with frame F answers exactly as the same
// index without a frame (same key seed) trained on, enrolling and probed with F x (raw vectors
// rotated group by group). Scores are not those of the unframed index on x: the drop then acts on
// rotated coordinates.
TEST_F(SealTest, FrameKeepsEveryScore) {
    const int G = 3, d = 16, D = G * d;
    const int64_t n = 40, nq = 25;
    for (const char* factory : {"PSlerp3x16(norm=none)", "PSlerp3x16", "PSlerp3x16(norm=none,drop=importance,mapping=budget,drop_count=5)"}) {
        auto framed = index_factory(D, factory);
        auto plain = index_factory(D, factory);
        auto unrotated = index_factory(D, factory);
        protected_of(*framed).set_seed(11);
        protected_of(*plain).set_seed(11);
        protected_of(*unrotated).set_seed(11);
        set_secret_frame(*framed, fixed_secret(0x55).bytes());
        const std::vector<float>& F = protected_of(*framed).centering.frame_matrix;
        ASSERT_EQ(F.size(), size_t(G * d * d));

        const auto xt = gaussian(100, D, 4, 0.5f);
        const auto x = gaussian(n, D, 5, 0.5f);
        // y: noisy copies of the enrolled x, so mated scores are high and the test means something.
        auto y = gaussian(nq, D, 6, 0.0f);
        for (int64_t i = 0; i < nq * D; ++i) y[i] = x[i] + 0.3f * y[i];
        framed->train(100, xt.data());
        framed->add(n, x.data());
        plain->train(100, rotate(F, G, d, xt, 100).data());
        plain->add(n, rotate(F, G, d, x, n).data());
        unrotated->train(100, xt.data());
        unrotated->add(n, x.data());

        std::vector<float> d1(nq * n), d2(nq * n), d3(nq * n);
        std::vector<faiss::Index::idx_t> l1(nq * n), l2(nq * n), l3(nq * n);
        framed->search(nq, y.data(), n, d1.data(), l1.data());
        plain->search(nq, rotate(F, G, d, y, nq).data(), n, d2.data(), l2.data());
        unrotated->search(nq, y.data(), n, d3.data(), l3.data());
        // Cosines to 1e-5; cohort z-scores divide them by the cohort's spread (about 0.1 here).
        const float tol = protected_of(*framed).params.norm == Norm::kCohort ? 1e-4f : 1e-5f;
        int mated_top1 = 0;
        double moved = 0;
        for (int64_t q = 0; q < nq; ++q) {
            mated_top1 += l1[q * n] == q;
            // Every entry's score, by label (near ties may order differently).
            std::vector<float> s1(n), s2(n), s3(n);
            for (int64_t j = 0; j < n; ++j) {
                s1[l1[q * n + j]] = d1[q * n + j];
                s2[l2[q * n + j]] = d2[q * n + j];
                s3[l3[q * n + j]] = d3[q * n + j];
            }
            for (int64_t j = 0; j < n; ++j) {
                ASSERT_NEAR(s1[j], s2[j], tol) << factory << " query " << q << " entry " << j;
                moved = std::max(moved, double(std::fabs(s1[j] - s3[j])));
            }
        }
        EXPECT_GE(mated_top1, nq - 2) << factory;
        // And the frame is not the identity on scores: the drop acts on rotated coordinates.
        EXPECT_GT(moved, 1e-3) << factory;
    }
}

}  // namespace
}  // namespace pslerp
