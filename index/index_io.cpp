#include "index/index_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <optional>
#include <limits>
#include <type_traits>
#include <utility>

#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "index/array_io.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pslerp index files assume a little-endian host"
#endif

namespace pslerp {

namespace {

constexpr char kMagic[8] = {'P', 'S', 'L', 'E', 'R', 'P', 'I', 'X'};
constexpr uint32_t kHeaderBytes = 32;
constexpr uint32_t kSections = 5;
constexpr size_t kChecksumBytes = 8;
constexpr size_t kSectionHeaderBytes = 12;  // char[4] tag, u64 length

[[noreturn]] void bad(const std::string& why) { throw faiss::FaissException("pslerp: " + why); }

// ---------------------------------------------------------------- checksum

constexpr uint64_t kP1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kP2 = 0xD6E8FEB86659FD93ull;
constexpr uint64_t kP3 = 0xFF51AFD7ED558CCDull;
constexpr uint64_t kP4 = 0xC4CEB9FE1A85EC53ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

/// Streaming form of io_checksum: every step is a bijection of the lane state for a fixed
/// input word and of the word for a fixed state, so one changed byte always changes a lane.
class Hasher {
  public:
    void update(const uint8_t* p, size_t n) {
        total_ += n;
        if (buffered_ > 0) {
            const size_t take = std::min(n, sizeof(buf_) - buffered_);
            std::memcpy(buf_ + buffered_, p, take);
            buffered_ += take;
            p += take;
            n -= take;
            if (buffered_ < sizeof(buf_)) return;
            stripe(buf_);
            buffered_ = 0;
        }
        for (; n >= sizeof(buf_); p += sizeof(buf_), n -= sizeof(buf_)) stripe(p);
        std::memcpy(buf_, p, n);
        buffered_ = n;
    }

    uint64_t finish() const {
        uint64_t h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
        h ^= total_ * kP4;
        size_t i = 0;
        for (; i + 8 <= buffered_; i += 8) h = rotl(h ^ (load64(buf_ + i) * kP2), 27) * kP1 + kP3;
        for (; i < buffered_; ++i) h = rotl(h ^ (uint64_t(buf_[i]) * kP4), 11) * kP1;
        h ^= h >> 33;
        h *= kP3;
        h ^= h >> 29;
        h *= kP4;
        h ^= h >> 32;
        return h;
    }

  private:
    void stripe(const uint8_t* p) {
        for (int l = 0; l < 4; ++l) v_[l] = rotl(v_[l] + load64(p + 8 * l) * kP2, 31) * kP1;
    }

    uint64_t v_[4] = {kP1 + kP2, kP2, 0, kP3};
    uint8_t buf_[32];
    size_t buffered_ = 0;
    uint64_t total_ = 0;
};

// ---------------------------------------------------------------- writing

/// Where the bytes go: counted only (first pass, for the length field), a vector or a file.
/// Every byte is hashed on the way.
class Sink {
  public:
    virtual ~Sink() = default;
    void bytes(const void* p, size_t n) {
        if (n == 0) return;
        size_ += n;
        if (hash_) hasher_.update(static_cast<const uint8_t*>(p), n);
        put(p, n);
    }
    template <typename T>
    void pod(T v) {
        static_assert(std::is_trivially_copyable<T>::value, "pod");
        bytes(&v, sizeof v);
    }
    void u8(bool v) { pod<uint8_t>(v ? 1 : 0); }
    template <typename E>
    void en(E v) {
        pod<uint8_t>(static_cast<uint8_t>(v));
    }
    template <typename T>
    void vec(const std::vector<T>& v) {
        pod<uint64_t>(v.size());
        bytes(v.data(), v.size() * sizeof(T));
    }
    uint64_t size() const { return size_; }
    uint64_t checksum() const { return hasher_.finish(); }
    void stop_hashing() { hash_ = false; }

  protected:
    virtual void put(const void* p, size_t n) = 0;

  private:
    uint64_t size_ = 0;
    bool hash_ = true;
    Hasher hasher_;
};

class CountSink : public Sink {
  public:
    CountSink() { stop_hashing(); }

  protected:
    void put(const void*, size_t) override {}
};

class VectorSink : public Sink {
  public:
    explicit VectorSink(std::vector<uint8_t>* out) : out_(out) {}

  protected:
    void put(const void* p, size_t n) override {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        out_->insert(out_->end(), b, b + n);
    }

  private:
    std::vector<uint8_t>* out_;
};

class FileSink : public Sink {
  public:
    FileSink(AtomicFile* file, const std::string& path) : file_(file), path_(path) {}

  protected:
    void put(const void* p, size_t n) override {
        if (auto s = file_->write(p, n); !s.ok()) bad(absl::StrCat("cannot write index file '", path_, "': ", s.message()));
    }

  private:
    AtomicFile* file_;
    std::string path_;
};

/// Section payload sizes, computed with a CountSink so the header can give the file length.
template <typename F>
uint64_t payload_size(F&& f) {
    CountSink c;
    f(c);
    return c.size();
}

struct Body {
    const IndexProtectedSlerp& index;
    std::vector<uint8_t> coarse;

    void params(Sink& s) const {
        const Params& p = index.params;
        s.pod<int32_t>(p.groups);
        s.pod<int32_t>(p.group_dim);
        s.pod<float>(p.t);
        s.u8(p.t_minus_importance);
        s.en(p.key_mode);
        s.en(p.drop);
        s.pod<int32_t>(p.drop_count);
        s.u8(p.drop_with_replacement);
        s.en(p.mapping);
        s.pod<int32_t>(p.drop_min);
        s.pod<int32_t>(p.drop_max);
        s.vec(p.interval_bounds);
        std::vector<int32_t> counts(p.interval_counts.begin(), p.interval_counts.end());
        s.vec(counts);
        s.u8(p.intervals_by_median);
        s.en(p.fill);
        s.en(p.importance);
        s.vec(p.importance_weights);
        s.vec(p.attention_wq);
        s.vec(p.attention_wk);
        s.pod<float>(p.attention_temperature);
        s.en(p.weighting);
    }
    void centering(Sink& s) const {
        s.vec(index.centering.mean);
        s.vec(index.centering.rotation);
    }
    void options(Sink& s) const {
        s.u8(index.train_pca);
        s.pod<int32_t>(index.k_factor);
        s.pod<int32_t>(index.range_shortlist);
        s.pod<uint64_t>(index.streams_used());
        s.u8(index.seed().has_value());
        s.pod<uint64_t>(index.seed().value_or(0));
        s.pod<int64_t>(index.ntotal);
        s.en(index.coarse_embedding);
        s.vec(index.coarse_shift);
        s.pod<float>(index.coarse_radius);
        s.pod<int64_t>(index.next_id());
    }
    void storage(Sink& s) const {
        const EntryStorage& st = index.store;
        s.pod<int32_t>(st.layout.groups);
        s.pod<int32_t>(st.layout.group_dim);
        s.u8(st.layout.shared_key);
        s.pod<uint64_t>(st.rows());
        s.vec(st.templates);
        s.vec(st.keys);
        s.vec(st.masks);
        s.vec(st.ke);
        s.vec(st.kmk);
        s.vec(st.weights);
        s.vec(st.ids);
        s.vec(st.removed);
    }
    void coarse_index(Sink& s) const { s.vec(coarse); }

    template <typename F>
    void section(Sink& s, const char (&tag)[5], F f) const {
        s.bytes(tag, 4);
        s.pod<uint64_t>(payload_size(f));
        f(s);
    }
    template <typename F>
    static uint64_t section_size(F f) {
        return kSectionHeaderBytes + payload_size(f);
    }

    void emit(Sink& s) const {
        auto P = [this](Sink& o) { params(o); };
        auto C = [this](Sink& o) { centering(o); };
        auto O = [this](Sink& o) { options(o); };
        auto S = [this](Sink& o) { storage(o); };
        auto X = [this](Sink& o) { coarse_index(o); };
        const uint64_t length = kHeaderBytes + section_size(P) + section_size(C) + section_size(O) +
                                section_size(S) + section_size(X) + kChecksumBytes;
        s.bytes(kMagic, sizeof kMagic);
        s.pod<uint32_t>(kIndexFormatVersion);
        s.pod<uint32_t>(kHeaderBytes);
        s.pod<uint64_t>(length);
        s.pod<uint32_t>(kSections);
        s.pod<uint32_t>(0);
        section(s, "PARM", P);
        section(s, "CENT", C);
        section(s, "OPTS", O);
        section(s, "STOR", S);
        section(s, "CRSE", X);
        const uint64_t sum = s.checksum();
        s.stop_hashing();
        s.pod<uint64_t>(sum);
        if (s.size() != length) bad("internal error: index file length mismatch");
    }
};

Body make_body(const IndexProtectedSlerp& index) {
    Body b{index, {}};
    if (index.coarse) {
        faiss::VectorIOWriter w;
        faiss::write_index(index.coarse.get(), &w);
        b.coarse = std::move(w.data);
    }
    return b;
}

// ---------------------------------------------------------------- reading

/// Bounds-checked reads from [data, data + size); `where` names the section in messages.
class Cursor {
  public:
    Cursor(const uint8_t* data, size_t size, std::string where) : p_(data), n_(size), where_(std::move(where)) {}

    size_t left() const { return n_ - pos_; }
    size_t pos() const { return pos_; }
    const uint8_t* here() const { return p_ + pos_; }

    void need(size_t k) const {
        if (left() < k) {
            bad(absl::StrCat(where_, " is truncated: needs ", k, " more bytes at offset ", pos_, ", has ", left()));
        }
    }
    void skip(size_t k) {
        need(k);
        pos_ += k;
    }
    template <typename T>
    T pod() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    bool flag(const char* name) {
        const uint8_t v = pod<uint8_t>();
        if (v > 1) bad(absl::StrCat(where_, ": ", name, " must be 0 or 1, got ", int(v)));
        return v == 1;
    }
    template <typename E>
    E en(const char* name, uint8_t max) {
        const uint8_t v = pod<uint8_t>();
        if (v > max) bad(absl::StrCat(where_, ": ", name, " has unknown value ", int(v), " (at most ", int(max), ")"));
        return static_cast<E>(v);
    }
    /// A vector; its count must be one of `allowed` (empty = any) and fit in the bytes left.
    template <typename T>
    std::vector<T> vec(const char* name, std::initializer_list<uint64_t> allowed = {}) {
        const uint64_t count = pod<uint64_t>();
        bool ok = allowed.size() == 0;
        for (uint64_t a : allowed) ok = ok || count == a;
        if (!ok) {
            std::string expected;
            for (uint64_t a : allowed) absl::StrAppend(&expected, expected.empty() ? "" : " or ", a);
            bad(absl::StrCat(where_, ": ", name, " has ", count, " elements, expected ", expected));
        }
        if (count > left() / sizeof(T)) {
            bad(absl::StrCat(where_, ": ", name, " claims ", count, " elements of ", sizeof(T), " bytes but only ",
                             left(), " bytes are left"));
        }
        std::vector<T> v(count);
        if (count) std::memcpy(v.data(), p_ + pos_, count * sizeof(T));
        pos_ += count * sizeof(T);
        return v;
    }
    void finish() const {
        if (left() != 0) bad(absl::StrCat(where_, " has ", left(), " unexpected bytes at its end"));
    }

  private:
    const uint8_t* p_;
    size_t n_, pos_ = 0;
    std::string where_;
};

/// Lets faiss::read_index read the nested index in place.
struct SpanIOReader : faiss::IOReader {
    const uint8_t* data;
    size_t size, pos = 0;
    SpanIOReader(const uint8_t* d, size_t n) : data(d), size(n) { name = "pslerp coarse section"; }
    size_t operator()(void* ptr, size_t item, size_t nitems) override {
        if (item == 0 || nitems == 0) return 0;
        const size_t k = std::min(nitems, (size - pos) / item);
        if (k) std::memcpy(ptr, data + pos, k * item);
        pos += k * item;
        return k;
    }
};

Cursor open_section(Cursor& file, const char* tag, const char* what) {
    file.need(kSectionHeaderBytes);
    if (std::memcmp(file.here(), tag, 4) != 0) {
        bad(absl::StrCat("expected section '", tag, "' (", what, ") at offset ", file.pos(), ", found another"));
    }
    file.skip(4);
    const uint64_t length = file.pod<uint64_t>();
    if (length > file.left()) {
        bad(absl::StrCat("section '", tag, "' claims ", length, " bytes but only ", file.left(), " are left"));
    }
    Cursor section(file.here(), length, absl::StrCat("section '", tag, "' (", what, ")"));
    file.skip(length);
    return section;
}

Params read_params(Cursor c) {
    Params p;
    p.groups = c.pod<int32_t>();
    p.group_dim = c.pod<int32_t>();
    p.t = c.pod<float>();
    p.t_minus_importance = c.flag("t_minus_importance");
    p.key_mode = c.en<KeyMode>("key_mode", 1);
    p.drop = c.en<DropPolicy>("drop", 2);
    p.drop_count = c.pod<int32_t>();
    p.drop_with_replacement = c.flag("drop_with_replacement");
    p.mapping = c.en<DropMapping>("mapping", 2);
    p.drop_min = c.pod<int32_t>();
    p.drop_max = c.pod<int32_t>();
    p.interval_bounds = c.vec<float>("interval_bounds");
    const std::vector<int32_t> counts = c.vec<int32_t>("interval_counts");
    p.interval_counts.assign(counts.begin(), counts.end());
    p.intervals_by_median = c.flag("intervals_by_median");
    p.fill = c.en<Fill>("fill", 1);
    p.importance = c.en<ImportanceKind>("importance", 2);
    p.importance_weights = c.vec<float>("importance_weights");
    p.attention_wq = c.vec<float>("attention_wq");
    p.attention_wk = c.vec<float>("attention_wk");
    p.attention_temperature = c.pod<float>();
    p.weighting = c.en<Weighting>("weighting", 1);
    c.finish();
    if (auto s = p.validate(); !s.ok()) bad(absl::StrCat("section 'PARM' (parameters): ", s.message()));
    return p;
}

std::unique_ptr<IndexProtectedSlerp> parse(const uint8_t* data, size_t size) {
    // Header, length and checksum first: nothing is parsed from a damaged file.
    if (size < sizeof kMagic) {
        if (size == 0 || std::memcmp(data, kMagic, size) == 0) {
            bad(absl::StrCat("truncated index file: ", size, " bytes"));
        }
        bad("not a pslerp index file (wrong magic, expected \"PSLERPIX\")");
    }
    if (std::memcmp(data, kMagic, sizeof kMagic) != 0) bad("not a pslerp index file (wrong magic, expected \"PSLERPIX\")");
    Cursor file(data, size, "index file header");
    file.skip(sizeof kMagic);
    const uint32_t version = file.pod<uint32_t>();
    if (version > kIndexFormatVersion) {
        bad(absl::StrCat("file format version ", version, " is newer than this pslerp (", kIndexFormatVersion,
                         "); upgrade pslerp to read it"));
    }
    if (version == 0) bad("unknown file format version 0");
    const uint32_t header_bytes = file.pod<uint32_t>();
    const uint64_t length = file.pod<uint64_t>();
    const uint32_t sections = file.pod<uint32_t>();
    file.pod<uint32_t>();
    if (header_bytes != kHeaderBytes) {
        bad(absl::StrCat("header length is ", header_bytes, ", expected ", kHeaderBytes, " for version ", version));
    }
    if (length < kHeaderBytes + kChecksumBytes) bad(absl::StrCat("header gives an impossible file length ", length));
    if (size < length) bad(absl::StrCat("truncated index file: ", size, " bytes, the header says ", length));
    if (size > length) bad(absl::StrCat("index file has ", size - length, " bytes after its end (", length, " bytes)"));
    if (sections != kSections) bad(absl::StrCat("header gives ", sections, " sections, expected ", kSections));
    uint64_t stored;
    std::memcpy(&stored, data + size - kChecksumBytes, kChecksumBytes);
    if (io_checksum(data, size - kChecksumBytes) != stored) {
        bad("checksum mismatch: the index file is corrupted");
    }

    Cursor body(data + kHeaderBytes, size - kHeaderBytes - kChecksumBytes, "index file");
    const Params params = read_params(open_section(body, "PARM", "parameters"));
    const int64_t D = params.dim();

    Cursor cent = open_section(body, "CENT", "centring");
    Centering centering;
    centering.mean = cent.vec<float>("mean", {0, uint64_t(D)});
    centering.rotation = cent.vec<float>("rotation", {0, uint64_t(D) * uint64_t(D)});
    cent.finish();
    if (!centering.rotation.empty() && centering.mean.empty()) {
        bad("section 'CENT' (centring): a rotation without a mean");
    }

    Cursor opts = open_section(body, "OPTS", "index options");
    const bool train_pca = opts.flag("train_pca");
    const int32_t k_factor = opts.pod<int32_t>();
    const int32_t range_shortlist = opts.pod<int32_t>();
    const uint64_t streams_used = opts.pod<uint64_t>();
    const bool has_seed = opts.flag("has_seed");
    const uint64_t seed_value = opts.pod<uint64_t>();
    const int64_t ntotal = opts.pod<int64_t>();
    const auto embedding = opts.en<CoarseEmbedding>("coarse_embedding", 2);
    const int64_t coarse_d = coarse_dim(params, embedding);
    std::vector<float> coarse_shift = opts.vec<float>("coarse_shift", {0, uint64_t(coarse_d)});
    const float coarse_radius = opts.pod<float>();
    const int64_t next_id = opts.pod<int64_t>();
    opts.finish();
    if (next_id < 0) bad(absl::StrCat("section 'OPTS' (index options): next id ", next_id, " is negative"));
    if (!std::isfinite(coarse_radius) || coarse_radius < 0) {
        bad(absl::StrCat("section 'OPTS' (index options): coarse radius ", coarse_radius, " is not finite and >= 0"));
    }
    if (k_factor < 1 || range_shortlist < 1) {
        bad(absl::StrCat("section 'OPTS' (index options): k_factor ", k_factor, " and range_shortlist ",
                         range_shortlist, " must be >= 1"));
    }

    Cursor st = open_section(body, "STOR", "storage");
    EntryStorage store(params);
    const kernels::Layout& L = store.layout;
    const int32_t groups = st.pod<int32_t>();
    const int32_t group_dim = st.pod<int32_t>();
    const bool shared_key = st.flag("shared_key");
    if (groups != L.groups || group_dim != L.group_dim || shared_key != L.shared_key) {
        bad(absl::StrCat("section 'STOR' (storage): layout ", groups, "x", group_dim, shared_key ? " shared key" : "",
                         " does not match the parameters ", L.groups, "x", L.group_dim,
                         L.shared_key ? " shared key" : ""));
    }
    const uint64_t rows = st.pod<uint64_t>();
    if (rows > st.left() / store.bytes_per_row()) {
        bad(absl::StrCat("section 'STOR' (storage): ", rows, " rows of ", store.bytes_per_row(),
                         " bytes cannot fit in the ", st.left(), " bytes left"));
    }
    store.templates = st.vec<float>("templates", {rows * L.vec_floats()});
    store.keys = st.vec<float>("keys", {rows * L.key_floats()});
    store.masks = st.vec<uint8_t>("masks", {rows * L.mask_bytes()});
    store.ke = st.vec<float>("ke", {rows * L.group_floats()});
    store.kmk = st.vec<float>("kmk", {rows * L.group_floats()});
    store.weights = st.vec<float>("weights", {rows * L.group_floats()});
    store.ids = st.vec<int64_t>("ids", {rows});
    store.removed = st.vec<uint8_t>("removed", {rows});
    st.finish();
    for (uint8_t r : store.removed) {
        if (r > 1) bad(absl::StrCat("section 'STOR' (storage): tombstone value ", int(r), ", expected 0 or 1"));
    }

    Cursor cr = open_section(body, "CRSE", "coarse index");
    const uint64_t coarse_bytes = cr.pod<uint64_t>();
    if (coarse_bytes != cr.left()) {
        bad(absl::StrCat("section 'CRSE' (coarse index): claims ", coarse_bytes, " bytes, has ", cr.left()));
    }
    std::unique_ptr<faiss::Index> coarse;
    if (coarse_bytes > 0) {
        SpanIOReader reader(cr.here(), coarse_bytes);
        try {
            coarse.reset(faiss::read_index(&reader));
        } catch (const std::exception& e) {
            bad(absl::StrCat("section 'CRSE' (coarse index): FAISS cannot read it: ", e.what()));
        }
        if (reader.pos != coarse_bytes) {
            bad(absl::StrCat("section 'CRSE' (coarse index): FAISS read ", reader.pos, " of its ", coarse_bytes, " bytes"));
        }
        if (coarse->d != coarse_d || coarse->ntotal != static_cast<faiss::Index::idx_t>(rows)) {
            bad(absl::StrCat("section 'CRSE' (coarse index): dimension ", coarse->d, " and ", coarse->ntotal,
                             " entries do not match ", coarse_d, " and the ", rows, " stored rows"));
        }
        if (coarse->metric_type != IndexProtectedSlerp::coarse_metric(embedding)) {
            bad("section 'CRSE' (coarse index): its metric does not match the coarse embedding");
        }
    }
    body.finish();

    auto index = std::make_unique<IndexProtectedSlerp>(params, nullptr, embedding);
    index->coarse_shift = std::move(coarse_shift);
    index->coarse_radius = coarse_radius;
    index->centering = std::move(centering);
    index->train_pca = train_pca;
    index->k_factor = k_factor;
    index->range_shortlist = range_shortlist;
    index->store = std::move(store);
    index->coarse = std::move(coarse);
    index->rebuild_after_load(streams_used, has_seed ? std::optional<uint64_t>(seed_value) : std::nullopt, next_id);
    if (index->ntotal != ntotal) {
        bad(absl::StrCat("the file says ", ntotal, " live entries, its storage holds ", index->ntotal));
    }
    return index;
}

/// A read-only mapping of a whole file, unmapped on destruction.
class MappedFile {
  public:
    explicit MappedFile(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) bad(absl::StrCat("cannot open index file '", path, "': ", std::strerror(errno)));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            bad(absl::StrCat("cannot read index file '", path, "': ", std::strerror(err)));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            bad(absl::StrCat("cannot read index file '", path, "': not a regular file"));
        }
        size_ = static_cast<size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                bad(absl::StrCat("cannot map index file '", path, "': ", std::strerror(err)));
            }
            data_ = static_cast<const uint8_t*>(p);
        }
        ::close(fd);
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

  private:
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace

uint64_t io_checksum(const uint8_t* data, size_t size) {
    Hasher h;
    h.update(data, size);
    return h.finish();
}

std::vector<uint8_t> serialize_index(const IndexProtectedSlerp& index) {
    const Body body = make_body(index);
    std::vector<uint8_t> out;
    CountSink count;
    body.emit(count);
    out.reserve(count.size());
    VectorSink sink(&out);
    body.emit(sink);
    return out;
}

void write_index(const IndexProtectedSlerp& index, const std::string& path) {
    const Body body = make_body(index);
    AtomicFile file;
    if (auto s = file.open(path); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
    FileSink sink(&file, path);
    body.emit(sink);
    if (auto s = file.commit(); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
}

std::unique_ptr<IndexProtectedSlerp> deserialize_index(const uint8_t* data, size_t size) {
    if (size > 0 && data == nullptr) bad("deserialize_index: null data");
    try {
        return parse(data, size);
    } catch (const faiss::FaissException&) {
        throw;
    } catch (const std::exception& e) {
        bad(absl::StrCat("cannot load index: ", e.what()));
    }
}

std::unique_ptr<IndexProtectedSlerp> read_index(const std::string& path) {
    MappedFile file(path);
    try {
        return deserialize_index(file.data(), file.size());
    } catch (const faiss::FaissException& e) {
        absl::string_view why = e.msg;
        absl::ConsumePrefix(&why, "pslerp: ");
        bad(absl::StrCat("index file '", path, "': ", why));
    }
}

}  // namespace pslerp
