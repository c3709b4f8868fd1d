#include "io/seal.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pslerp {
namespace {

constexpr char kSealMagic[8] = {'P', 'S', 'L', 'E', 'R', 'P', 'S', 'E'};
constexpr uint32_t kSealVersion = 1;
constexpr uint32_t kSealHeaderBytes = 64;
constexpr uint32_t kFlagSealed = 1;
constexpr uint32_t kMinChunk = 1;
constexpr uint32_t kMaxChunk = 64u << 20;
constexpr size_t kAbytes = crypto_secretstream_xchacha20poly1305_ABYTES;
constexpr char kSealContext[crypto_kdf_CONTEXTBYTES + 1] = "PSLRSEAL";
constexpr char kFrameContext[crypto_kdf_CONTEXTBYTES + 1] = "PSLRFRAM";
static_assert(crypto_secretstream_xchacha20poly1305_HEADERBYTES == 24, "envelope layout");
static_assert(crypto_secretstream_xchacha20poly1305_KEYBYTES == Secret::kBytes, "key size");

void init_sodium() {
    if (sodium_init() < 0) std::abort();  // no usable random source: nothing safe to do
}

/// A 32-byte subkey, wiped on destruction.
struct Subkey {
    uint8_t k[32];
    Subkey(const uint8_t* master, uint64_t id, const char* context) {
        crypto_kdf_derive_from_key(k, sizeof k, id, context, master);
    }
    ~Subkey() { sodium_memzero(k, sizeof k); }
};

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

uint64_t chunk_count(uint64_t payload, uint32_t chunk) { return payload == 0 ? 1 : (payload + chunk - 1) / chunk; }

template <typename T>
T get(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

}  // namespace

// ---- Secret ----------------------------------------------------------------------------------

Secret::Secret() { std::memset(bytes_, 0, sizeof bytes_); }
Secret::Secret(const Secret& other) : set_(other.set_) { std::memcpy(bytes_, other.bytes_, sizeof bytes_); }
Secret& Secret::operator=(const Secret& other) {
    std::memcpy(bytes_, other.bytes_, sizeof bytes_);
    set_ = other.set_;
    return *this;
}
Secret::~Secret() { sodium_memzero(bytes_, sizeof bytes_); }

absl::StatusOr<Secret> Secret::from_bytes(const void* data, size_t size) {
    if (size != kBytes || data == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat("a secret is %d bytes, got %d", kBytes, size));
    }
    Secret s;
    std::memcpy(s.bytes_, data, kBytes);
    s.set_ = true;
    return s;
}

absl::StatusOr<Secret> Secret::from_hex(const std::string& text) {
    const absl::string_view t = absl::StripAsciiWhitespace(text);
    if (t.size() != 2 * kBytes) {
        return absl::InvalidArgumentError(
                absl::StrFormat("a secret is %d hex digits, got %d characters", 2 * kBytes, t.size()));
    }
    init_sodium();
    Secret s;
    size_t got = 0;
    const char* end = nullptr;
    if (sodium_hex2bin(s.bytes_, kBytes, t.data(), t.size(), nullptr, &got, &end) != 0 || got != kBytes ||
        end != t.data() + t.size()) {
        return absl::InvalidArgumentError("a secret is 64 hex digits; this one has other characters");
    }
    s.set_ = true;
    return s;
}

absl::StatusOr<Secret> Secret::from_file(const std::string& path) {
    InputFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    if ((f.mode() & 077) != 0) {
        return absl::PermissionDeniedError(absl::StrFormat(
                "secret file %s has mode %04o: it must not be readable or writable by group or others (chmod 600 %s)",
                path, f.mode() & 07777, path));
    }
    if (f.size() > 256) return absl::InvalidArgumentError(absl::StrCat("secret file ", path, " is too long to be one"));
    std::string text(size_t(f.size()), '\0');
    if (absl::Status s = f.read_at(0, text.data(), text.size()); !s.ok()) return s;
    auto secret = from_hex(text);
    sodium_memzero(text.data(), text.size());
    if (!secret.ok()) return absl::InvalidArgumentError(absl::StrCat("secret file ", path, ": ", secret.status().message()));
    return secret;
}

absl::StatusOr<Secret> Secret::from_env(const std::string& name) {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return absl::NotFoundError(absl::StrCat("environment variable ", name, " is not set"));
    auto secret = from_hex(v);
    if (!secret.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, ": ", secret.status().message()));
    }
    return secret;
}

std::string Secret::to_hex() const {
    init_sodium();
    std::string hex(2 * kBytes + 1, '\0');
    sodium_bin2hex(hex.data(), hex.size(), bytes_, kBytes);
    hex.pop_back();
    return hex;
}

Secret generate_secret() {
    init_sodium();
    uint8_t b[Secret::kBytes];
    randombytes_buf(b, sizeof b);
    Secret s = *Secret::from_bytes(b, sizeof b);
    sodium_memzero(b, sizeof b);
    return s;
}

absl::Status write_secret_file(const std::string& path, const Secret& secret, bool overwrite) {
    if (secret.empty()) return absl::InvalidArgumentError("write_secret_file: empty secret");
    struct stat st;
    if (!overwrite && ::lstat(path.c_str(), &st) == 0) {
        return absl::AlreadyExistsError(absl::StrCat(path, " exists; refusing to overwrite a secret (--force to replace it)"));
    }
    std::string text = secret.to_hex() + "\n";
    absl::Status s = atomic_write_file(path, text);
    sodium_memzero(text.data(), text.size());
    return s;
}

// ---- the envelope ----------------------------------------------------------------------------

bool is_sealed(const ByteSource& src) {
    uint8_t m[sizeof kSealMagic];
    return src.size() >= sizeof m && src.read_at(0, m, sizeof m).ok() && std::memcmp(m, kSealMagic, sizeof m) == 0;
}

absl::StatusOr<SealInfo> peek_sealed(const ByteSource& src) {
    const std::string& name = src.name();
    if (!is_sealed(src)) return absl::InvalidArgumentError(absl::StrCat(name, ": not a sealed file"));
    if (src.size() < kSealHeaderBytes) {
        return absl::InvalidArgumentError(
                absl::StrFormat("%s: truncated sealed file: %d bytes, shorter than its header", name, src.size()));
    }
    uint8_t h[kSealHeaderBytes];
    if (absl::Status s = src.read_at(0, h, sizeof h); !s.ok()) return s;
    SealInfo info;
    info.version = get<uint32_t>(h + 8);
    if (info.version > kSealVersion) {
        return absl::InvalidArgumentError(absl::StrFormat(
                "%s: sealed envelope version %d is newer than this pslerp (%d); upgrade pslerp", name, info.version,
                kSealVersion));
    }
    if (info.version == 0) return absl::InvalidArgumentError(absl::StrCat(name, ": sealed envelope version 0"));
    info.payload_bytes = get<uint64_t>(h + 16);
    info.chunk_bytes = get<uint32_t>(h + 24);
    const uint32_t flags = get<uint32_t>(h + 28);
    if (get<uint32_t>(h + 12) != kSealHeaderBytes || flags != kFlagSealed || get<uint64_t>(h + 56) != 0 ||
        info.chunk_bytes < kMinChunk || info.chunk_bytes > kMaxChunk || info.payload_bytes > (uint64_t(1) << 48)) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": sealed file header is corrupted"));
    }
    info.expected_file_bytes = kSealHeaderBytes + info.payload_bytes + chunk_count(info.payload_bytes, info.chunk_bytes) * kAbytes;
    return info;
}

SealWriter::SealWriter(const Secret& secret, uint64_t payload_bytes, Emit emit, uint32_t chunk_bytes)
    : emit_(std::move(emit)), payload_bytes_(payload_bytes), chunk_bytes_(std::clamp(chunk_bytes, kMinChunk, kMaxChunk)) {
    if (secret.empty()) {
        status_ = absl::InvalidArgumentError("seal: empty secret");
        return;
    }
    init_sodium();
    header_.reserve(kSealHeaderBytes);
    header_.insert(header_.end(), kSealMagic, kSealMagic + sizeof kSealMagic);
    put<uint32_t>(header_, kSealVersion);
    put<uint32_t>(header_, kSealHeaderBytes);
    put<uint64_t>(header_, payload_bytes_);
    put<uint32_t>(header_, chunk_bytes_);
    put<uint32_t>(header_, kFlagSealed);
    uint8_t stream_header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    auto* state = new crypto_secretstream_xchacha20poly1305_state;
    state_ = state;
    const Subkey key(secret.bytes(), 1, kSealContext);
    crypto_secretstream_xchacha20poly1305_init_push(state, stream_header, key.k);
    header_.insert(header_.end(), stream_header, stream_header + sizeof stream_header);
    put<uint64_t>(header_, 0);
    const size_t chunk = size_t(std::min<uint64_t>(std::max<uint64_t>(payload_bytes_, 1), chunk_bytes_));
    plain_.reserve(chunk);
    cipher_.resize(chunk + kAbytes);
    status_ = emit_(header_.data(), header_.size());
}

SealWriter::~SealWriter() {
    if (state_) {
        sodium_memzero(state_, sizeof(crypto_secretstream_xchacha20poly1305_state));
        delete static_cast<crypto_secretstream_xchacha20poly1305_state*>(state_);
    }
    sodium_memzero(plain_.data(), plain_.capacity());
}

absl::Status SealWriter::push(bool last) {
    unsigned long long clen = 0;
    const uint8_t tag = last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
    crypto_secretstream_xchacha20poly1305_push(static_cast<crypto_secretstream_xchacha20poly1305_state*>(state_),
                                               cipher_.data(), &clen, plain_.data(), plain_.size(), header_.data(),
                                               header_.size(), tag);
    plain_.clear();
    return status_ = emit_(cipher_.data(), size_t(clen));
}

absl::Status SealWriter::write(const void* bytes, size_t n) {
    if (!status_.ok()) return status_;
    if (finished_ || n > payload_bytes_ - written_) {
        return status_ = absl::InvalidArgumentError("seal: more bytes than the announced payload");
    }
    const uint8_t* p = static_cast<const uint8_t*>(bytes);
    while (n > 0) {
        // A full chunk is pushed only once more bytes come: the last chunk must carry FINAL.
        if (plain_.size() == chunk_bytes_) {
            if (absl::Status s = push(false); !s.ok()) return s;
        }
        const size_t take = std::min<size_t>(n, chunk_bytes_ - plain_.size());
        plain_.insert(plain_.end(), p, p + take);
        p += take;
        n -= take;
        written_ += take;
    }
    return absl::OkStatus();
}

absl::Status SealWriter::finish() {
    if (!status_.ok()) return status_;
    if (finished_ || written_ != payload_bytes_) {
        return status_ = absl::InvalidArgumentError("seal: the payload is shorter than announced");
    }
    finished_ = true;
    return push(true);
}

void seal_bytes(const Secret& secret, const uint8_t* payload, size_t size, std::vector<uint8_t>* out,
                uint32_t chunk_bytes) {
    if (secret.empty()) throw std::invalid_argument("seal_bytes: empty secret");
    out->reserve(out->size() + kSealHeaderBytes + size +
                 chunk_count(size, std::clamp(chunk_bytes, kMinChunk, kMaxChunk)) * kAbytes);
    SealWriter w(
            secret, size,
            [out](const uint8_t* b, size_t n) {
                out->insert(out->end(), b, b + n);
                return absl::OkStatus();
            },
            chunk_bytes);
    if (!w.write(payload, size).ok() || !w.finish().ok()) throw std::logic_error("seal_bytes: internal error");
}

SealedReader::SealedReader(const ByteSource& src, const SealInfo& info)
    : ByteSource(src.name()), src_(&src), info_(info), chunks_(chunk_count(info.payload_bytes, info.chunk_bytes)) {}

SealedReader::~SealedReader() {
    if (state_) {
        sodium_memzero(state_, sizeof(crypto_secretstream_xchacha20poly1305_state));
        delete static_cast<crypto_secretstream_xchacha20poly1305_state*>(state_);
    }
    sodium_memzero(plain_.data(), plain_.size());
}

absl::StatusOr<std::unique_ptr<SealedReader>> SealedReader::open(const ByteSource& src, const Secret& secret) {
    const std::string& name = src.name();
    auto info = peek_sealed(src);
    if (!info.ok()) return info.status();
    if (src.size() < info->expected_file_bytes) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: truncated sealed file: %d bytes, its header says %d",
                                                          name, src.size(), info->expected_file_bytes));
    }
    if (src.size() > info->expected_file_bytes) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: sealed file has %d bytes after its end (%d bytes)", name,
                                                          src.size() - info->expected_file_bytes,
                                                          info->expected_file_bytes));
    }
    if (secret.empty()) {
        return absl::FailedPreconditionError(
                absl::StrCat(name, ": the file is sealed and no secret was given (--secret-file PATH or --secret-env "
                                   "NAME; secret= in Python)"));
    }
    init_sodium();
    std::unique_ptr<SealedReader> r(new SealedReader(src, *info));
    if (absl::Status s = src.read_at(0, r->header_, sizeof r->header_); !s.ok()) return s;
    auto* state = new crypto_secretstream_xchacha20poly1305_state;
    r->state_ = state;
    const Subkey key(secret.bytes(), 1, kSealContext);
    if (crypto_secretstream_xchacha20poly1305_init_pull(state, r->header_ + 32, key.k) != 0) {
        return absl::PermissionDeniedError(absl::StrCat(name, ": cannot open the sealed file: wrong secret or file modified"));
    }
    const size_t chunk = size_t(std::min<uint64_t>(std::max<uint64_t>(info->payload_bytes, 1), info->chunk_bytes));
    r->plain_.resize(chunk);
    r->cipher_.resize(chunk + kAbytes);
    return r;
}

absl::Status SealedReader::next_chunk() const {
    if (!failed_.ok()) return failed_;
    const uint64_t i = uint64_t(chunk_ + 1);
    if (i >= chunks_) return failed_ = absl::InternalError(absl::StrCat(name_, ": read past the sealed payload"));
    const uint64_t at = i * info_.chunk_bytes;
    const size_t len = size_t(std::min<uint64_t>(info_.chunk_bytes, info_.payload_bytes - at));
    const uint64_t file_at = kSealHeaderBytes + at + i * kAbytes;
    if (absl::Status s = src_->read_at(file_at, cipher_.data(), len + kAbytes); !s.ok()) return failed_ = s;
    unsigned long long mlen = 0;
    uint8_t tag = 0;
    const bool last = i + 1 == chunks_;
    auto* state = static_cast<crypto_secretstream_xchacha20poly1305_state*>(state_);
    if (crypto_secretstream_xchacha20poly1305_pull(state, plain_.data(), &mlen, &tag, cipher_.data(), len + kAbytes,
                                                   header_, sizeof header_) != 0 ||
        mlen != len || (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) != last ||
        (tag != 0 && tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)) {
        return failed_ = absl::PermissionDeniedError(
                       absl::StrCat(name_, ": cannot open the sealed file: wrong secret or file modified (chunk ", i,
                                    " of ", chunks_, " fails authentication)"));
    }
    chunk_ = int64_t(i);
    return absl::OkStatus();
}

absl::Status SealedReader::read_at(uint64_t offset, void* out, uint64_t n) const {
    if (offset > info_.payload_bytes || n > info_.payload_bytes - offset) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: read of %d bytes at offset %d, past the end (%d bytes)",
                                                          name_, n, offset, info_.payload_bytes));
    }
    uint8_t* p = static_cast<uint8_t*>(out);
    while (n > 0) {
        const uint64_t want = offset / info_.chunk_bytes;
        if (chunk_ >= 0 && want < uint64_t(chunk_)) {
            return absl::FailedPreconditionError(absl::StrCat(name_, ": sealed payload read out of order"));
        }
        while (chunk_ < 0 || uint64_t(chunk_) < want) {
            if (absl::Status s = next_chunk(); !s.ok()) return s;
        }
        const uint64_t in = offset - want * info_.chunk_bytes;
        const uint64_t len = uint64_t(std::min<uint64_t>(info_.chunk_bytes, info_.payload_bytes - want * info_.chunk_bytes));
        const uint64_t take = std::min<uint64_t>(n, len - in);
        std::memcpy(p, plain_.data() + in, size_t(take));
        p += take;
        offset += take;
        n -= take;
    }
    return absl::OkStatus();
}

absl::Status SealedReader::finish() const {
    while (chunk_ + 1 < int64_t(chunks_)) {
        if (absl::Status s = next_chunk(); !s.ok()) return s;
    }
    return failed_;
}

absl::StatusOr<std::vector<uint8_t>> open_sealed(const ByteSource& src, const Secret& secret) {
    auto reader = SealedReader::open(src, secret);
    if (!reader.ok()) return reader.status();
    std::vector<uint8_t> out(size_t((*reader)->size()));
    absl::Status s = (*reader)->read_at(0, out.data(), out.size());
    if (s.ok()) s = (*reader)->finish();
    if (!s.ok()) {
        sodium_memzero(out.data(), out.size());
        return s;
    }
    return out;
}

// ---- the frame -------------------------------------------------------------------------------

std::vector<float> derive_frame(const uint8_t* seed, int groups, int group_dim) {
    if (groups < 1 || group_dim < 1 || group_dim > kMaxFrameGroupDim ||
        int64_t(groups) * group_dim * group_dim > kMaxFrameFloats) {
        throw std::invalid_argument(absl::StrFormat("derive_frame: no frame for %d groups of %d", groups, group_dim));
    }
    init_sodium();
    const size_t d = size_t(group_dim), dd = d * d;
    std::vector<float> frame(size_t(groups) * dd);
    // Per group: d*d standard normals by Box-Muller from 53-bit uniforms of the group's stream,
    // as the columns of A; modified Gram-Schmidt in double gives A = QR with R's diagonal the
    // column norms, all positive, which is the sign choice that makes Q Haar-distributed.
    std::vector<uint64_t> words(dd + 1);
    std::vector<double> a(dd);  // column-major: column j at a[j*d]
    for (int g = 0; g < groups; ++g) {
        {
            const Subkey k(seed, uint64_t(g), kFrameContext);
            randombytes_buf_deterministic(words.data(), words.size() * sizeof(uint64_t), k.k);
        }
        constexpr double kTwoPi = 6.283185307179586476925286766559;
        for (size_t i = 0; i < dd; i += 2) {
            const double u1 = (double(words[i] >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
            const double u2 = double(words[i + 1] >> 11) * 0x1.0p-53;       // [0, 1)
            const double r = std::sqrt(-2.0 * std::log(u1));
            a[i] = r * std::cos(kTwoPi * u2);
            if (i + 1 < dd) a[i + 1] = r * std::sin(kTwoPi * u2);
        }
        for (size_t j = 0; j < d; ++j) {
            double* q = a.data() + j * d;
            for (size_t p = 0; p < j; ++p) {
                const double* qp = a.data() + p * d;
                double r = 0;
                for (size_t i = 0; i < d; ++i) r += qp[i] * q[i];
                for (size_t i = 0; i < d; ++i) q[i] -= r * qp[i];
            }
            double n = 0;
            for (size_t i = 0; i < d; ++i) n += q[i] * q[i];
            n = std::sqrt(n);
            // A Gaussian matrix is singular with probability zero; a zero column here means a
            // broken generator, and no frame is better than a wrong one.
            if (!(n > 1e-12)) throw std::runtime_error("derive_frame: degenerate Gaussian draw");
            for (size_t i = 0; i < d; ++i) q[i] /= n;
        }
        // F_g = Q, row-major: F[i][j] = Q[i][j] = a[j*d + i].
        float* f = frame.data() + size_t(g) * dd;
        for (size_t i = 0; i < d; ++i) {
            for (size_t j = 0; j < d; ++j) f[i * d + j] = float(a[j * d + i]);
        }
    }
    sodium_memzero(words.data(), words.size() * sizeof(uint64_t));
    sodium_memzero(a.data(), a.size() * sizeof(double));
    return frame;
}

}  // namespace pslerp
