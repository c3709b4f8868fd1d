// Sealed index files and the secret frame (issue 11): secrets (hex, files, environment), the
// envelope (round trips, every single-byte flip and every truncation refused, missing / wrong /
// truncated told apart), sealed index files (round trip, frame kept, unsealed writes and
// secret-less reads refused where they must be, rekey), file modes (0600 new, mode and owner
// kept on re-save), and the frame: a signed permutation per group that changes no score.
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

namespace pslerp {
namespace {

namespace fs = std::filesystem;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

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
        EXPECT_EQ(protected_of(*loaded).centering.frame_source, protected_of(*index).centering.frame_source);
        EXPECT_EQ(protected_of(*loaded).centering.frame_sign, protected_of(*index).centering.frame_sign);
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

TEST_F(SealTest, FrameIsASignedPermutationPerGroupFromItsSeed) {
    const Secret seed = fixed_secret(0x33);
    const FrameMaps f = derive_frame(seed.bytes(), 4, 16);
    const FrameMaps again = derive_frame(seed.bytes(), 4, 16);
    EXPECT_EQ(f.source, again.source);
    EXPECT_EQ(f.sign, again.sign);
    int moved = 0, negative = 0;
    for (int g = 0; g < 4; ++g) {
        std::vector<int32_t> s(f.source.begin() + g * 16, f.source.begin() + (g + 1) * 16);
        for (int i = 0; i < 16; ++i) moved += s[i] != i;
        std::sort(s.begin(), s.end());
        for (int i = 0; i < 16; ++i) EXPECT_EQ(s[i], i);
        for (int i = 0; i < 16; ++i) negative += f.sign[g * 16 + i] < 0;
    }
    EXPECT_FALSE(std::equal(f.source.begin(), f.source.begin() + 16, f.source.begin() + 16))
            << "groups get their own permutations";
    EXPECT_GT(moved, 40);
    EXPECT_GT(negative, 16);
    EXPECT_LT(negative, 48);
    EXPECT_NE(derive_frame(fixed_secret(0x34).bytes(), 4, 16).source, f.source);
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

// With frame P (a signed permutation per group), the entry the index stores for x under key k
// and mask M is P times the entry the scheme without a frame stores for x under key P^T k and
// mask P^T M P, and every score is the same: the frame changes which keys and masks an entry
// has, never what a score is.
TEST_F(SealTest, FrameKeepsEveryScore) {
    const int G = 3, d = 16, D = G * d;
    const int64_t n = 40, nq = 25;
    // norm=none: the match_all reference gives the plain combined cosine.
    for (const char* factory : {"PSlerp3x16(norm=none)", "PSlerp3x16(norm=none,drop=importance,mapping=budget,drop_count=5)"}) {
        auto index = index_factory(D, factory);
        ProtectedIndex& pi = protected_of(*index);
        const Params p = pi.params;
        pi.set_seed(11);
        const Secret seed = fixed_secret(0x55);
        set_secret_frame(*index, seed.bytes());
        const auto xt = gaussian(100, D, 4, 0.5f);
        index->train(100, xt.data());
        const auto x = gaussian(n, D, 5, 0.5f);
        index->add(n, x.data());
        // y: noisy copies of the enrolled x, so mated scores are high and the test means something.
        auto y = gaussian(nq, D, 6, 0.0f);
        for (int64_t i = 0; i < nq * D; ++i) y[i] = x[i] + 0.3f * y[i];

        // Centred, without and with the frame.
        Centering plain = pi.centering;
        plain.frame_seed.clear();
        plain.frame_source.clear();
        plain.frame_sign.clear();
        std::vector<float> xc(n * D), xf(n * D), yc(nq * D), yf(nq * D);
        plain.apply(x.data(), n, D, xc.data());
        pi.centering.apply(x.data(), n, D, xf.data());
        plain.apply(y.data(), nq, D, yc.data());
        pi.centering.apply(y.data(), nq, D, yf.data());
        // What the index stored: protect() of the framed features under its seeded streams.
        auto framed = protect(p, xf.data(), n, RandomSource(11));
        ASSERT_TRUE(framed.ok());
        // The same entries without the frame: keys P^T k, masks P^T M P.
        const auto& src = pi.centering.frame_source;
        const auto& sign = pi.centering.frame_sign;
        std::vector<float> keys(framed->keys.size());
        std::vector<uint8_t> masks(framed->masks.size());
        for (int64_t j = 0; j < n; ++j) {
            for (int g = 0; g < G; ++g) {
                for (int i = 0; i < d; ++i) {
                    const size_t at = size_t(j) * D + g * d + i;   // framed coordinate
                    const size_t to = size_t(j) * D + g * d + src[g * d + i];  // where it came from
                    keys[to] = sign[g * d + i] * framed->keys[at];
                    masks[to] = framed->masks[at];
                }
            }
        }
        ProtectInputs in;
        in.keys = keys.data();
        in.masks = masks.data();
        auto unframed = protect(p, xc.data(), n, RandomSource(11), in);
        ASSERT_TRUE(unframed.ok());
        for (int64_t j = 0; j < n; ++j) {
            for (int g = 0; g < G; ++g) {
                for (int i = 0; i < d; ++i) {
                    const size_t at = size_t(j) * D + g * d + i;
                    const size_t to = size_t(j) * D + g * d + src[g * d + i];
                    ASSERT_NEAR(framed->templates[at], sign[g * d + i] * unframed->templates[to], 2e-6f);
                }
            }
        }
        auto s_framed = match_all(p, yf.data(), nq, framed->templates.data(), framed->keys.data(),
                                  framed->masks.data(), framed->weights.data(), n);
        auto s_plain = match_all(p, yc.data(), nq, unframed->templates.data(), unframed->keys.data(),
                                 unframed->masks.data(), unframed->weights.data(), n);
        ASSERT_TRUE(s_framed.ok() && s_plain.ok());
        // And the index (closed-form kernels) answers those scores.
        std::vector<float> dist(nq * n);
        std::vector<faiss::Index::idx_t> lab(nq * n);
        index->search(nq, y.data(), n, dist.data(), lab.data());
        int mated_top1 = 0;
        for (int64_t q = 0; q < nq; ++q) {
            mated_top1 += lab[q * n] == q;
            for (int64_t j = 0; j < n; ++j) {
                ASSERT_NEAR((*s_framed)[q * n + j], (*s_plain)[q * n + j], 2e-6f) << factory;
                const int64_t e = lab[q * n + j];
                ASSERT_NEAR(dist[q * n + j], (*s_plain)[q * n + e], 1e-5f) << factory;
            }
        }
        EXPECT_GE(mated_top1, nq - 2) << factory;
    }
}

}  // namespace
}  // namespace pslerp
