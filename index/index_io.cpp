#include "index/index_io.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "io/file.h"
#include "io/seal.h"
#include "index/kernels/scan.h"
#include "index/storage.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pslerp index files assume a little-endian host"
#endif

namespace pslerp {

namespace {

constexpr char kMagic[8] = {'P', 'S', 'L', 'E', 'R', 'P', 'I', 'X'};
constexpr uint32_t kHeaderBytes = 32;
constexpr uint32_t kSectionsV1 = 5;     // PARM CENT OPTS STOR CRSE
constexpr uint32_t kSectionsFlat = 4;   // PARM CENT OPTS STOR
constexpr uint32_t kSectionsIVF = 5;    // PARM CENT OPTS QUAN LIST
constexpr uint8_t kKindFlat = 0;
constexpr uint8_t kKindIVF = 1;
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
    const faiss::Index& index;
    const ProtectedIndex& pi;
    const IndexProtectedSlerp* flat;        // one of these two is set
    const IndexIVFProtectedSlerp* ivf;
    std::vector<uint8_t> quantizer;         // faiss::write_index bytes (IVF)

    void params(Sink& s) const {
        Params::visit([&](auto f) {
            using T = typename decltype(f)::type;
            const T& v = pi.params.*f.member;
            if constexpr (std::is_enum_v<T>) {
                s.en(v);
            } else if constexpr (std::is_same_v<T, bool>) {
                s.u8(v);
            } else if constexpr (std::is_same_v<T, int>) {
                s.pod<int32_t>(v);
            } else if constexpr (std::is_same_v<T, float>) {
                s.pod<float>(v);
            } else if constexpr (std::is_same_v<T, std::vector<int>>) {
                s.vec(std::vector<int32_t>(v.begin(), v.end()));
            } else {
                static_assert(std::is_same_v<T, std::vector<float>>, "a Params field type the format lacks");
                s.vec(v);
            }
        });
    }
    void centering(Sink& s) const {
        s.vec(pi.centering.mean);
        s.vec(pi.centering.rotation);
    }
    void options(Sink& s) const {
        s.pod<uint8_t>(ivf ? kKindIVF : kKindFlat);
        s.u8(pi.train_pca);
        s.pod<uint64_t>(pi.streams_used());
        s.u8(pi.seed().has_value());
        s.pod<uint64_t>(pi.seed().value_or(0));
        s.pod<int64_t>(index.ntotal);
        s.pod<int64_t>(pi.next_id());
        if (ivf) {
            s.pod<uint64_t>(ivf->nlist);
            s.pod<uint64_t>(ivf->nprobe);
        }
        const Cohort& cohort = pi.cohort();
        s.pod<uint8_t>(static_cast<uint8_t>(cohort.source));
        s.pod<int64_t>(cohort.fitted_from);
        s.vec(cohort.moments);
    }
    void storage(Sink& s) const {
        const EntryStorage& st = flat->store;
        s.pod<int32_t>(st.layout.groups);
        s.pod<int32_t>(st.layout.group_dim);
        s.u8(st.layout.shared_key);
        s.pod<uint64_t>(st.rows());
        if (st.layout.half) {
            s.vec(st.templates_h);
            s.vec(st.keys_h);
            s.vec(st.masks);
        } else {
            s.vec(st.templates);
            s.vec(st.keys);
            s.vec(st.masks);
            s.vec(st.ke);
            s.vec(st.kmk);
        }
        s.vec(st.weights);
        s.vec(st.offsets);
        s.vec(st.ids);
        s.vec(st.removed);
    }
    void quantizer_section(Sink& s) const { s.vec(quantizer); }
    void lists(Sink& s) const {
        const faiss::InvertedLists& il = *ivf->invlists;
        s.pod<uint64_t>(ivf->nlist);
        s.pod<uint64_t>(ivf->code_size);
        for (size_t l = 0; l < ivf->nlist; ++l) {
            const size_t n = il.list_size(l);
            faiss::InvertedLists::ScopedIds ids(&il, l);
            faiss::InvertedLists::ScopedCodes codes(&il, l);
            s.pod<uint64_t>(n);
            s.bytes(ids.get(), n * sizeof(idx_t));
            s.bytes(codes.get(), n * ivf->code_size);
        }
    }
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
        auto Q = [this](Sink& o) { quantizer_section(o); };
        auto L = [this](Sink& o) { lists(o); };
        uint64_t length = kHeaderBytes + section_size(P) + section_size(C) + section_size(O) + kChecksumBytes;
        length += ivf ? section_size(Q) + section_size(L) : section_size(S);
        s.bytes(kMagic, sizeof kMagic);
        s.pod<uint32_t>(kIndexFormatVersion);
        s.pod<uint32_t>(kHeaderBytes);
        s.pod<uint64_t>(length);
        s.pod<uint32_t>(ivf ? kSectionsIVF : kSectionsFlat);
        s.pod<uint32_t>(0);
        section(s, "PARM", P);
        section(s, "CENT", C);
        section(s, "OPTS", O);
        if (ivf) {
            section(s, "QUAN", Q);
            section(s, "LIST", L);
        } else {
            section(s, "STOR", S);
        }
        const uint64_t sum = s.checksum();
        s.stop_hashing();
        s.pod<uint64_t>(sum);
        if (s.size() != length) bad("internal error: index file length mismatch");
    }
};

/// Checks serialised FAISS quantizer bytes as the reader will (defined with the reader).
void check_quantizer_bytes(const ByteSource& src, int64_t d, const std::string& where);

Body make_body(const faiss::Index& index) {
    Body b{index, protected_of(index), dynamic_cast<const IndexProtectedSlerp*>(&index),
           dynamic_cast<const IndexIVFProtectedSlerp*>(&index), {}};
    if (!b.flat && !b.ivf) bad("write_index: unknown pslerp index type");
    if (b.ivf) {
        faiss::VectorIOWriter w;
        faiss::write_index(b.ivf->quantizer, &w);
        b.quantizer = std::move(w.data);
        // A quantizer the reader would refuse is refused now, rather than saved unreadable.
        check_quantizer_bytes(MemoryBytes(b.quantizer.data(), b.quantizer.size()), b.pi.params.dim(),
                              "write_index: the IVF's quantizer");
    }
    return b;
}

// ---------------------------------------------------------------- reading

/// Throws (bad) with the message of a failed read.
void check_read(const absl::Status& s) {
    if (!s.ok()) bad(std::string(s.message()));
}

/// Bounds-checked sequential reads of [begin, begin + size) of a source; `where` names the
/// section in messages, offsets in messages are from `begin`.
class Cursor {
  public:
    Cursor(const ByteSource& src, uint64_t begin, uint64_t size, std::string where)
        : src_(&src), begin_(begin), end_(begin + size), pos_(begin), where_(std::move(where)) {}

    uint64_t left() const { return end_ - pos_; }
    uint64_t pos() const { return pos_ - begin_; }

    void need(uint64_t k) const {
        if (left() < k) {
            bad(absl::StrCat(where_, " is truncated: needs ", k, " more bytes at offset ", pos(), ", has ", left()));
        }
    }
    void skip(uint64_t k) {
        need(k);
        pos_ += k;
    }
    void read(void* out, uint64_t n) {
        need(n);
        check_read(src_->read_at(pos_, out, n));
        pos_ += n;
    }
    template <typename T>
    T pod() {
        static_assert(std::is_trivially_copyable<T>::value, "pod");
        T v;
        read(&v, sizeof v);
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
    /// A vector; its count must be one of `allowed` (empty = any) and fit in the bytes left,
    /// which is checked before anything is allocated.
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
        read(v.data(), count * sizeof(T));
        return v;
    }
    /// The next `length` bytes as a cursor of their own (a section's payload).
    Cursor sub(uint64_t length, std::string where) {
        need(length);
        Cursor c(*src_, pos_, length, std::move(where));
        pos_ += length;
        return c;
    }
    void finish() const {
        if (left() != 0) bad(absl::StrCat(where_, " has ", left(), " unexpected bytes at its end"));
    }
    const std::string& where() const { return where_; }

  private:
    const ByteSource* src_;
    uint64_t begin_, end_, pos_;
    std::string where_;
};

Cursor open_section(Cursor& file, const char* tag, const char* what) {
    file.need(kSectionHeaderBytes);
    char found[4];
    file.read(found, 4);
    if (std::memcmp(found, tag, 4) != 0) {
        bad(absl::StrCat("expected section '", tag, "' (", what, ") at offset ", file.pos() - 4, ", found another"));
    }
    const uint64_t length = file.pod<uint64_t>();
    if (length > file.left()) {
        bad(absl::StrCat("section '", tag, "' claims ", length, " bytes but only ", file.left(), " are left"));
    }
    return file.sub(length, absl::StrCat("section '", tag, "' (", what, ")"));
}

/// The format version that added a Params field: 3 for the score normalisation, 4 for the
/// storage type (older files: no normalisation, fp32); 1 for the others.
uint32_t field_since(const char* name) {
    if (std::strcmp(name, "norm") == 0 || std::strcmp(name, "cohort_size") == 0) return 3;
    if (std::strcmp(name, "storage") == 0) return 4;
    return 1;
}

Params read_params(Cursor c, uint32_t version) {
    // The fields in Params::visit order, as Body::params writes them.
    Params p;
    p.norm = Norm::kNone;
    Params::visit([&](auto f) {
        using T = typename decltype(f)::type;
        T& v = p.*f.member;
        if (version < field_since(f.name)) return;
        if constexpr (std::is_enum_v<T>) {
            v = c.en<T>(f.name, int(enum_names<T>().size()) - 1);
        } else if constexpr (std::is_same_v<T, bool>) {
            v = c.flag(f.name);
        } else if constexpr (std::is_same_v<T, int>) {
            v = c.pod<int32_t>();
        } else if constexpr (std::is_same_v<T, float>) {
            v = c.pod<float>();
        } else if constexpr (std::is_same_v<T, std::vector<int>>) {
            const std::vector<int32_t> values = c.vec<int32_t>(f.name);
            v.assign(values.begin(), values.end());
        } else {
            v = c.vec<float>(f.name);
        }
    });
    c.finish();
    if (auto s = p.validate(); !s.ok()) bad(absl::StrCat("section 'PARM' (parameters): ", s.message()));
    return p;
}

Centering read_centering(Cursor c, int64_t D) {
    Centering centering;
    centering.mean = c.vec<float>("mean", {0, uint64_t(D)});
    centering.rotation = c.vec<float>("rotation", {0, uint64_t(D) * uint64_t(D)});
    c.finish();
    if (!centering.rotation.empty() && centering.mean.empty()) {
        bad("section 'CENT' (centring): a rotation without a mean");
    }
    for (size_t j = 0; j < centering.mean.size(); ++j) {
        if (!std::isfinite(centering.mean[j])) {
            bad(absl::StrCat("section 'CENT' (centring): mean[", j, "] is ", centering.mean[j]));
        }
    }
    // The rotation is PCA's: orthonormal rows (checked by their norms, which is linear in size).
    for (int64_t r = 0; r < (centering.rotation.empty() ? 0 : D); ++r) {
        double ss = 0;
        for (int64_t j = 0; j < D; ++j) {
            const float v = centering.rotation[r * D + j];
            if (!std::isfinite(v)) bad(absl::StrCat("section 'CENT' (centring): rotation[", r, ", ", j, "] is ", v));
            ss += double(v) * v;
        }
        if (!(std::abs(std::sqrt(ss) - 1.0) <= 1e-3)) {
            bad(absl::StrCat("section 'CENT' (centring): rotation row ", r, " has norm ", std::sqrt(ss),
                             ", expected 1"));
        }
    }
    return centering;
}

/// Ids an index can hold: add() refuses negative ones, and the next id (largest + 1) must not
/// overflow.
bool valid_id(int64_t id) { return id >= 0 && id < std::numeric_limits<int64_t>::max(); }

EntryStorage read_storage(Cursor st, const Params& params, uint32_t version) {
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
    const uint64_t row_bytes = store.bytes_per_row() - (version >= 3 ? 0 : sizeof(float));  // v2: no offset
    if (rows > st.left() / row_bytes) {
        bad(absl::StrCat("section 'STOR' (storage): ", rows, " rows of ", row_bytes,
                         " bytes cannot fit in the ", st.left(), " bytes left"));
    }
    if (L.half) {
        store.templates_h = st.vec<uint16_t>("templates", {rows * L.vec_floats()});
        store.keys_h = st.vec<uint16_t>("keys", {rows * L.key_floats()});
        store.masks = st.vec<uint8_t>("masks", {rows * L.mask_bytes()});
    } else {
        store.templates = st.vec<float>("templates", {rows * L.vec_floats()});
        store.keys = st.vec<float>("keys", {rows * L.key_floats()});
        store.masks = st.vec<uint8_t>("masks", {rows * L.mask_bytes()});
        store.ke = st.vec<float>("ke", {rows * L.group_floats()});
        store.kmk = st.vec<float>("kmk", {rows * L.group_floats()});
    }
    store.weights = st.vec<float>("weights", {rows * L.group_floats()});
    store.offsets = version >= 3 ? st.vec<float>("offsets", {rows}) : std::vector<float>(rows, 0.0f);
    store.ids = st.vec<int64_t>("ids", {rows});
    store.removed = st.vec<uint8_t>("removed", {rows});
    st.finish();
    for (uint64_t r = 0; r < rows; ++r) {
        if (store.removed[r] > 1) {
            bad(absl::StrCat("section 'STOR' (storage): row ", r, ": tombstone value ", int(store.removed[r]),
                             ", expected 0 or 1"));
        }
        if (!valid_id(store.ids[r])) {
            bad(absl::StrCat("section 'STOR' (storage): row ", r, ": id ", store.ids[r],
                             " is out of range [0, 2^63 - 1)"));
        }
    }
    const auto [row, why] = first_bad_entry(params, store.view(), int64_t(rows));
    if (!why.ok()) {
        bad(absl::StrCat("section 'STOR' (storage): row ", row, " (id ", store.ids[row], "): ", why.message()));
    }
    return store;
}

// ------------------------------------------------ the nested FAISS quantizer

/// Largest HNSW search or construction width accepted from a file: FAISS allocates heaps of
/// this size per search.
constexpr int32_t kMaxHnswBeam = 1 << 16;
/// Largest number of neighbours per node (all levels together) accepted from a file.
constexpr int32_t kMaxHnswLinks = 1 << 16;

std::string fourcc_text(uint32_t h) {
    std::string out;
    for (int i = 0; i < 4; ++i) {
        const unsigned char c = static_cast<unsigned char>(h >> (8 * i));
        if (c >= 0x20 && c < 0x7f && c != '\'') {
            out.push_back(static_cast<char>(c));
        } else {
            absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
        }
    }
    return out;
}

constexpr uint32_t fourcc(const char (&s)[5]) {
    return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 | uint32_t(uint8_t(s[2])) << 16 |
           uint32_t(uint8_t(s[3])) << 24;
}

/// Walks the bytes faiss::read_index (FAISS 1.7.3) will read, for the two index types pslerp
/// writes as quantizers, checking each count that FAISS allocates for against the bytes left
/// and each field FAISS trusts, so that faiss::read_index neither allocates beyond the input
/// nor throws (it leaks what it had built when it throws).
class FaissBytesCheck {
  public:
    FaissBytesCheck(const ByteSource& src, uint64_t size, int64_t d, std::string where)
        : c_(src, 0, size, where), d_(d), where_(std::move(where)) {}

    void index() {
        const uint32_t h = c_.pod<uint32_t>();
        if (h == fourcc("IxF2")) {
            flat(header("IndexFlatL2"));
        } else if (h == fourcc("IHNf")) {
            hnsw_flat();
        } else {
            fail(absl::StrCat("FAISS index type '", fourcc_text(h),
                              "' is not one a pslerp index file holds (expected 'IxF2', IndexFlatL2, or 'IHNf', IndexHNSWFlat)"));
        }
        c_.finish();
    }

  private:
    [[noreturn]] void fail(const std::string& why) const { bad(absl::StrCat(where_, ": ", why)); }

    /// FAISS's index header; returns ntotal.
    int64_t header(const char* type) {
        const int32_t d = c_.pod<int32_t>();
        const int64_t ntotal = c_.pod<int64_t>();
        c_.pod<int64_t>();  // two fields FAISS ignores
        c_.pod<int64_t>();
        const uint8_t trained = c_.pod<uint8_t>();
        const uint32_t metric = c_.pod<uint32_t>();
        if (d_ <= 0 && d >= 1 && d <= Params::kMaxDim) d_ = d;  // any dimension: the first one found
        if (d != d_) {
            fail(absl::StrCat(type, " of dimension ", d, ", expected ", d_ > 0 ? absl::StrCat(d_) : "1 to 2^20"));
        }
        if (ntotal < 0 || ntotal > std::numeric_limits<int32_t>::max()) {
            fail(absl::StrCat(type, " claims ", ntotal, " vectors"));
        }
        if (trained > 1) fail(absl::StrCat(type, ": is_trained is ", int(trained), ", expected 0 or 1"));
        if (metric != faiss::METRIC_L2) {
            fail(absl::StrCat(type, ": metric ", metric, " is not L2 (", int(faiss::METRIC_L2), ")"));
        }
        return ntotal;
    }

    void flat(int64_t ntotal) {
        const uint64_t floats = c_.pod<uint64_t>();
        if (floats != uint64_t(ntotal) * uint64_t(d_)) {
            fail(absl::StrCat("IndexFlatL2 holds ", floats, " floats, its ", ntotal, " vectors of ", d_, " need ",
                              uint64_t(ntotal) * uint64_t(d_)));
        }
        if (floats > c_.left() / sizeof(float)) {
            fail(absl::StrCat("IndexFlatL2 claims ", floats, " floats but only ", c_.left(), " bytes are left"));
        }
        c_.skip(floats * sizeof(float));
    }

    /// A FAISS vector: u64 count, then count elements of `elem` bytes.
    void vector(const char* name, size_t elem) {
        const uint64_t count = c_.pod<uint64_t>();
        if (count > c_.left() / elem) {
            fail(absl::StrCat("IndexHNSWFlat: ", name, " claims ", count, " elements but only ", c_.left(),
                              " bytes are left"));
        }
        c_.skip(count * elem);
    }

    void hnsw_flat() {
        const int64_t ntotal = header("IndexHNSWFlat");
        vector("assign_probas", sizeof(double));
        vector("cum_nneighbor_per_level", sizeof(int32_t));
        vector("levels", sizeof(int32_t));
        vector("offsets", sizeof(uint64_t));
        vector("neighbors", sizeof(int32_t));
        c_.skip(5 * sizeof(int32_t));  // entry_point, max_level, efConstruction, efSearch, upper_beam
        const uint32_t h = c_.pod<uint32_t>();
        if (h != fourcc("IxF2")) {
            fail(absl::StrCat("IndexHNSWFlat stores its vectors in '", fourcc_text(h),
                              "', expected 'IxF2' (IndexFlatL2)"));
        }
        const int64_t stored = header("IndexHNSWFlat's storage");
        if (stored != ntotal) {
            fail(absl::StrCat("IndexHNSWFlat has ", ntotal, " nodes but stores ", stored, " vectors"));
        }
        flat(stored);
    }

    Cursor c_;
    int64_t d_;
    std::string where_;
};

/// The graph of a loaded IndexHNSW, as FAISS's search and add will walk it.
void check_hnsw(const faiss::IndexHNSW& index, const std::string& where) {
    auto fail = [&](const std::string& why) { bad(absl::StrCat(where, ": HNSW graph: ", why)); };
    const faiss::HNSW& g = index.hnsw;
    const int64_t n = index.ntotal;
    const std::vector<int>& cum = g.cum_nneighbor_per_level;
    if (cum.size() < 2 || cum[0] != 0) fail("cum_nneighbor_per_level must start at 0 and give at least one level");
    for (size_t l = 1; l < cum.size(); ++l) {
        if (cum[l] < cum[l - 1] || cum[l] > kMaxHnswLinks) {
            fail(absl::StrCat("cum_nneighbor_per_level[", l, "] = ", cum[l], " does not grow within [", cum[l - 1],
                              ", ", kMaxHnswLinks, "]"));
        }
    }
    if (g.assign_probas.size() != cum.size() - 1) {
        fail(absl::StrCat(g.assign_probas.size(), " level probabilities for ", cum.size() - 1, " levels"));
    }
    for (double p : g.assign_probas) {
        if (!(p >= 0.0 && p <= 1.0)) fail(absl::StrCat("level probability ", p, " is not in [0, 1]"));
    }
    const int max_levels = int(cum.size()) - 1;
    if (int64_t(g.levels.size()) != n || int64_t(g.offsets.size()) != n + 1) {
        fail(absl::StrCat(g.levels.size(), " levels and ", g.offsets.size(), " offsets for ", n, " nodes"));
    }
    if (g.offsets[0] != 0) fail(absl::StrCat("offset of node 0 is ", g.offsets[0], ", expected 0"));
    int top = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int level = g.levels[i];
        if (level < 1 || level > max_levels) {
            fail(absl::StrCat("node ", i, " has level ", level, ", outside [1, ", max_levels, "]"));
        }
        top = std::max(top, level);
        if (g.offsets[i + 1] < g.offsets[i] || g.offsets[i + 1] - g.offsets[i] != size_t(cum[level])) {
            fail(absl::StrCat("offset of node ", i + 1, " is ", g.offsets[i + 1], ", expected ",
                              g.offsets[i] + size_t(cum[level]), " (node ", i, " has ", cum[level], " links)"));
        }
    }
    if (g.offsets[n] != g.neighbors.size()) {
        fail(absl::StrCat("the offsets end at ", g.offsets[n], " but there are ", g.neighbors.size(), " links"));
    }
    // A neighbour on level l must itself be on level l: the descent reads its level-l links.
    for (int64_t i = 0; i < n; ++i) {
        for (int l = 0; l < g.levels[i]; ++l) {
            for (size_t j = g.offsets[i] + cum[l]; j < g.offsets[i] + cum[l + 1]; ++j) {
                const int v = g.neighbors[j];
                if (v == -1) continue;
                if (v < 0 || v >= n) fail(absl::StrCat("node ", i, " has neighbour ", v, ", outside [-1, ", n, ")"));
                if (g.levels[v] <= l) {
                    fail(absl::StrCat("node ", i, " links to node ", v, " on level ", l, ", which that node (level ",
                                      g.levels[v] - 1, ") is not on"));
                }
            }
        }
    }
    if (n == 0) {
        if (g.entry_point != -1 || g.max_level != -1) {
            fail(absl::StrCat("an empty graph has entry point ", g.entry_point, " and max level ", g.max_level));
        }
    } else {
        if (g.entry_point < 0 || g.entry_point >= n) {
            fail(absl::StrCat("entry point ", g.entry_point, " is outside [0, ", n, ")"));
        }
        if (g.max_level != top - 1 || g.levels[g.entry_point] != top) {
            fail(absl::StrCat("max level ", g.max_level, " and the entry point's level ", g.levels[g.entry_point] - 1,
                              " are not the top level ", top - 1));
        }
    }
    if (g.efSearch < 1 || g.efSearch > kMaxHnswBeam) fail(absl::StrCat("efSearch ", g.efSearch, " is out of range"));
    if (g.efConstruction < 1 || g.efConstruction > kMaxHnswBeam) {
        fail(absl::StrCat("efConstruction ", g.efConstruction, " is out of range"));
    }
    if (g.upper_beam < 1 || g.upper_beam > kMaxHnswBeam) {
        fail(absl::StrCat("upper_beam ", g.upper_beam, " is out of range"));
    }
}

/// Lets faiss::read_index read from a source, counting what it consumed.
struct SourceIOReader : faiss::IOReader {
    const ByteSource& src;
    uint64_t size, pos = 0;
    SourceIOReader(const ByteSource& s, uint64_t n) : src(s), size(n) { name = "pslerp quantizer"; }
    size_t operator()(void* ptr, size_t item, size_t nitems) override {
        if (item == 0 || nitems == 0) return 0;
        const size_t k = std::min<uint64_t>(nitems, (size - pos) / item);
        if (k && !src.read_at(pos, ptr, k * item).ok()) return 0;
        pos += k * item;
        return k;
    }
};

void check_quantizer_bytes(const ByteSource& src, int64_t d, const std::string& where) {
    FaissBytesCheck(src, src.size(), d, where).index();
}

std::unique_ptr<faiss::Index> load_quantizer(const ByteSource& src, int64_t d, const std::string& where) {
    check_quantizer_bytes(src, d, where);
    SourceIOReader reader(src, src.size());
    std::unique_ptr<faiss::Index> q;
    try {
        q.reset(faiss::read_index(&reader));
    } catch (const std::exception& e) {
        bad(absl::StrCat(where, ": FAISS cannot read it: ", e.what()));
    }
    if (reader.pos != src.size()) bad(absl::StrCat(where, ": FAISS read ", reader.pos, " of ", src.size(), " bytes"));
    const faiss::Index& loaded = *q;
    const faiss::Index* flat = &loaded;
    if (typeid(loaded) == typeid(faiss::IndexHNSWFlat)) {
        const auto& h = static_cast<const faiss::IndexHNSWFlat&>(loaded);
        flat = h.storage;
        if (!flat || typeid(*flat) != typeid(faiss::IndexFlatL2) || flat->ntotal != h.ntotal || flat->d != h.d) {
            bad(absl::StrCat(where, ": the HNSW's storage does not match its graph"));
        }
        check_hnsw(h, where);
    } else if (typeid(loaded) != typeid(faiss::IndexFlatL2)) {
        bad(absl::StrCat(where, ": unexpected index type"));
    }
    // Centroids are finite: a NaN one makes the quantizer's answers meaningless.
    const auto& codes = static_cast<const faiss::IndexFlatL2&>(*flat).codes;
    const size_t dim = size_t(flat->d);
    for (size_t i = 0; i < codes.size() / sizeof(float); ++i) {
        float v;
        std::memcpy(&v, codes.data() + i * sizeof(float), sizeof v);
        if (!std::isfinite(v)) bad(absl::StrCat(where, ": centroid ", i / dim, " coordinate ", i % dim, " is ", v));
    }
    return q;
}

/// The nested FAISS quantizer of an IVF file, checked against the index it belongs to.
std::unique_ptr<faiss::Index> read_quantizer(Cursor q, int64_t D, uint64_t nlist) {
    const std::vector<uint8_t> bytes = q.vec<uint8_t>("quantizer");
    q.finish();
    MemoryBytes src(bytes.data(), bytes.size());
    std::unique_ptr<faiss::Index> quantizer = load_quantizer(src, D, "section 'QUAN' (quantizer)");
    // An untrained IVF has no centroids yet.
    const bool centroids_ok = uint64_t(quantizer->ntotal) == nlist || quantizer->ntotal == 0;
    if (quantizer->d != D || !centroids_ok || quantizer->metric_type != faiss::METRIC_L2) {
        bad(absl::StrCat("section 'QUAN' (quantizer): dimension ", quantizer->d, ", ", quantizer->ntotal,
                         " centroids and its metric do not match dimension ", D, ", ", nlist, " lists (or none) and L2"));
    }
    return quantizer;
}

void read_lists(Cursor c, IndexIVFProtectedSlerp& ivf, uint32_t version) {
    const uint64_t nlist = c.pod<uint64_t>();
    const uint64_t code_size = c.pod<uint64_t>();
    const kernels::CodeLayout layout = kernels::code_layout(ivf.layout);
    // Version 2 codes lack the score offset (the float before the mask bytes): read them at
    // their size and insert a 0.
    const uint64_t file_code_size = version >= 3 ? ivf.code_size : ivf.code_size - sizeof(float);
    if (nlist != ivf.nlist || code_size != file_code_size) {
        bad(absl::StrCat("section 'LIST' (inverted lists): ", nlist, " lists of ", code_size, "-byte codes, expected ",
                         ivf.nlist, " of ", file_code_size));
    }
    const size_t code_end = layout.mask_offset + ivf.layout.mask_bytes();  // then zero padding
    const size_t split = layout.score_offset * sizeof(float);              // v2: where the offset goes
    const uint64_t entry = sizeof(idx_t) + code_size;
    std::vector<idx_t> ids;
    std::vector<uint8_t> codes;  // operator new's alignment: the codes' floats are aligned
    for (uint64_t l = 0; l < nlist; ++l) {
        const uint64_t n = c.pod<uint64_t>();
        if (n > c.left() / entry) {
            bad(absl::StrCat("section 'LIST' (inverted lists): list ", l, " claims ", n, " entries of ", entry,
                             " bytes but only ", c.left(), " bytes are left"));
        }
        if (n == 0) continue;
        ids.resize(n);
        c.read(ids.data(), n * sizeof(idx_t));
        codes.resize(n * ivf.code_size);
        if (file_code_size == ivf.code_size) {
            c.read(codes.data(), n * code_size);
        } else {
            for (uint64_t j = 0; j < n; ++j) {
                uint8_t* code = codes.data() + j * ivf.code_size;
                c.read(code, split);
                std::fill(code + split, code + split + sizeof(float), uint8_t{0});
                c.read(code + split + sizeof(float), file_code_size - split);
            }
        }
        auto where = [&](uint64_t j) {
            return absl::StrCat("section 'LIST' (inverted lists): list ", l, " entry ", j, " (id ", ids[j], "): ");
        };
        for (uint64_t j = 0; j < n; ++j) {
            if (!valid_id(ids[j])) bad(absl::StrCat(where(j), "id is out of range [0, 2^63 - 1)"));
            const uint8_t* code = codes.data() + j * ivf.code_size;
            if (std::any_of(code + code_end, code + ivf.code_size, [](uint8_t b) { return b != 0; })) {
                bad(absl::StrCat(where(j), "the code's padding is not zero"));
            }
        }
        const kernels::Entries view = kernels::code_entries(ivf.layout, codes.data());
        const auto [bad_entry, why] = first_bad_entry(ivf.params, view, int64_t(n));
        if (!why.ok()) bad(absl::StrCat(where(uint64_t(bad_entry)), why.message()));
        ivf.invlists->add_entries(l, n, ids.data(), codes.data());
    }
    c.finish();
}

/// io_checksum of the first `size` bytes of a source, read in chunks.
uint64_t source_checksum(const ByteSource& src, uint64_t size) {
    if (const uint8_t* p = src.data()) return io_checksum(p, size);
    Hasher h;
    std::vector<uint8_t> buf(std::min<uint64_t>(size, uint64_t(1) << 20));
    for (uint64_t at = 0; at < size; at += buf.size()) {
        const uint64_t n = std::min<uint64_t>(buf.size(), size - at);
        check_read(src.read_at(at, buf.data(), n));
        h.update(buf.data(), n);
    }
    return h.finish();
}

std::unique_ptr<faiss::Index> parse(const ByteSource& src, bool verify_checksum = true) {
    const uint64_t size = src.size();
    // Header, length and checksum first: nothing is parsed from a damaged file.
    uint8_t magic[sizeof kMagic];
    const uint64_t have = std::min<uint64_t>(size, sizeof kMagic);
    check_read(src.read_at(0, magic, have));
    if (std::memcmp(magic, kMagic, have) != 0) bad("not a pslerp index file (wrong magic, expected \"PSLERPIX\")");
    if (size < sizeof kMagic) bad(absl::StrCat("truncated index file: ", size, " bytes"));
    Cursor file(src, 0, size, "index file header");
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
    const bool sections_ok = version == 1 ? sections == kSectionsV1 : (sections == kSectionsFlat || sections == kSectionsIVF);
    if (!sections_ok) bad(absl::StrCat("header gives ", sections, " sections, impossible for version ", version));
    if (verify_checksum) {
        uint64_t stored;
        check_read(src.read_at(size - kChecksumBytes, &stored, kChecksumBytes));
        if (source_checksum(src, size - kChecksumBytes) != stored) {
            bad("checksum mismatch: the index file is corrupted");
        }
    }

    Cursor body(src, kHeaderBytes, size - kHeaderBytes - kChecksumBytes, "index file");
    const Params params = read_params(open_section(body, "PARM", "parameters"), version);
    const int64_t D = params.dim();
    Centering centering = read_centering(open_section(body, "CENT", "centring"), D);

    Cursor opts = open_section(body, "OPTS", "index options");
    uint8_t kind = kKindFlat;
    bool train_pca = false, has_seed = false, retired_coarse = false;
    uint64_t streams_used = 0, seed_value = 0, nlist = 0, nprobe = 0;
    int64_t ntotal = 0, next_id = 0;
    if (version == 1) {
        // Version 1: exhaustive index with an optional coarse stage (retired: opened without it).
        train_pca = opts.flag("train_pca");
        opts.pod<int32_t>();  // k_factor
        opts.pod<int32_t>();  // range_shortlist
        streams_used = opts.pod<uint64_t>();
        has_seed = opts.flag("has_seed");
        seed_value = opts.pod<uint64_t>();
        ntotal = opts.pod<int64_t>();
        opts.en<uint8_t>("coarse_embedding", 2);
        opts.vec<float>("coarse_shift");
        opts.pod<float>();  // coarse_radius
        next_id = opts.pod<int64_t>();
    } else {
        kind = opts.pod<uint8_t>();
        if (kind != kKindFlat && kind != kKindIVF) bad(absl::StrCat("section 'OPTS': unknown index kind ", int(kind)));
        if ((kind == kKindIVF) != (sections == kSectionsIVF)) bad("section 'OPTS': index kind and sections disagree");
        train_pca = opts.flag("train_pca");
        streams_used = opts.pod<uint64_t>();
        has_seed = opts.flag("has_seed");
        seed_value = opts.pod<uint64_t>();
        ntotal = opts.pod<int64_t>();
        next_id = opts.pod<int64_t>();
        if (kind == kKindIVF) {
            nlist = opts.pod<uint64_t>();
            nprobe = opts.pod<uint64_t>();
            if (nlist < 1 || nlist > (uint64_t(1) << 31) || nprobe < 1 || nprobe > nlist) {
                bad(absl::StrCat("section 'OPTS' (index options): nlist ", nlist, " and nprobe ", nprobe,
                                 " are out of range"));
            }
        }
    }
    Cohort cohort;  // version 1 and 2: no normalisation, the built-in model
    if (version >= 3) {
        cohort.source = static_cast<CohortSource>(opts.en<uint8_t>("cohort source", 2));
        cohort.fitted_from = opts.pod<int64_t>();
        const uint64_t matrices = uint64_t(params.groups) * params.group_dim * params.group_dim;
        cohort.moments = opts.vec<float>("cohort model", {0, matrices});
    }
    opts.finish();
    try {
        check_cohort(params, cohort);
    } catch (const faiss::FaissException& e) {
        bad(absl::StrCat("section 'OPTS' (index options): ", e.what()));
    }
    if (!valid_id(next_id)) {
        bad(absl::StrCat("section 'OPTS' (index options): next id ", next_id, " is out of range [0, 2^63 - 1)"));
    }
    const std::optional<uint64_t> seed = has_seed ? std::optional<uint64_t>(seed_value) : std::nullopt;

    std::unique_ptr<faiss::Index> out;
    if (kind == kKindFlat) {
        auto index = std::make_unique<IndexProtectedSlerp>(params);
        index->store = read_storage(open_section(body, "STOR", "storage"), params, version);
        if (version == 1) {
            Cursor cr = open_section(body, "CRSE", "coarse index");
            const uint64_t coarse_bytes = cr.pod<uint64_t>();
            if (coarse_bytes != cr.left()) {
                bad(absl::StrCat("section 'CRSE' (coarse index): claims ", coarse_bytes, " bytes, has ", cr.left()));
            }
            retired_coarse = coarse_bytes > 0;  // never parsed: the retired stage is dropped
        }
        index->centering = std::move(centering);
        index->train_pca = train_pca;
        index->rebuild_after_load(streams_used, seed, next_id);
        index->restore_cohort(cohort);
        out = std::move(index);
    } else {
        std::unique_ptr<faiss::Index> quantizer = read_quantizer(open_section(body, "QUAN", "quantizer"), D, nlist);
        // The index allocates its nlist lists at once: the LIST section must hold a count for each.
        if (nlist > body.left() / sizeof(uint64_t)) {
            bad(absl::StrCat("section 'OPTS' (index options): ", nlist, " lists cannot fit in the ", body.left(),
                             " bytes left"));
        }
        auto index = std::make_unique<IndexIVFProtectedSlerp>(std::move(quantizer), nlist, params);
        read_lists(open_section(body, "LIST", "inverted lists"), *index, version);
        index->centering = std::move(centering);
        index->train_pca = train_pca;
        index->nprobe = nprobe;
        index->is_trained = index->quantizer->is_trained && size_t(index->quantizer->ntotal) == nlist;
        index->rebuild_after_load(streams_used, seed, next_id);
        index->restore_cohort(cohort);
        if (!index->is_trained && index->ntotal > 0) bad("section 'LIST': entries in an untrained IVF index");
        out = std::move(index);
    }
    body.finish();
    if (out->ntotal != ntotal) bad(absl::StrCat("the file says ", ntotal, " live entries, its storage holds ", out->ntotal));
    if (retired_coarse) {
        std::fprintf(stderr,
                     "pslerp: warning: this version-1 index file has a coarse stage, which is retired (its embeddings "
                     "leaked the raw features); it is opened as an exhaustive index. Re-save it, or re-enrol into an "
                     "IVF index (IVF1024,PSlerp...) for fast search.\n");
    }
    return out;
}

/// Runs `load`, turning anything but a FaissException into one.
template <typename F>
std::unique_ptr<faiss::Index> guarded(F&& load) {
    try {
        return load();
    } catch (const faiss::FaissException&) {
        throw;
    } catch (const std::exception& e) {
        bad(absl::StrCat("cannot load index: ", e.what()));
    }
}

}  // namespace

uint64_t io_checksum(const uint8_t* data, size_t size) {
    Hasher h;
    h.update(data, size);
    return h.finish();
}

namespace {

constexpr char kFrameTag[4] = {'F', 'R', 'A', 'M'};
constexpr size_t kSealPrefixBytes = 4 + 1 + 32;  // tag, has_frame, seed

/// The bytes of `src` from `base` on.
class OffsetBytes : public ByteSource {
  public:
    OffsetBytes(const ByteSource& src, uint64_t base) : ByteSource(src.name()), src_(&src), base_(base) {}
    uint64_t size() const override { return src_->size() - base_; }
    absl::Status read_at(uint64_t offset, void* out, uint64_t n) const override {
        return src_->read_at(base_ + offset, out, n);
    }

  private:
    const ByteSource* src_;
    uint64_t base_;
};

/// Clears a buffer that held the frame seed (volatile stores, not optimised away).
void wipe_bytes(uint8_t* p, size_t n) {
    volatile uint8_t* v = p;
    for (size_t i = 0; i < n; ++i) v[i] = 0;
}

/// The clear file's bytes.
std::vector<uint8_t> clear_bytes(const faiss::Index& index) {
    const Body body = make_body(index);
    CountSink count;
    body.emit(count);
    std::vector<uint8_t> out;
    out.reserve(count.size());
    VectorSink sink(&out);
    body.emit(sink);
    return out;
}

/// Sealed output: bytes go through a SealWriter, chunk by chunk (the inner file keeps its
/// checksum, so the payload after the frame record is a valid clear file).
class SealSink : public Sink {
  public:
    explicit SealSink(SealWriter* w) : w_(w) {}

  protected:
    void put(const void* p, size_t n) override {
        if (auto s = w_->write(p, n); !s.ok()) bad(std::string(s.message()));
    }

  private:
    SealWriter* w_;
};

/// Writes the sealed payload of `index` (caller holds its shared lock) through `emit`: the
/// frame record, then the clear file; memory is one chunk.
absl::Status seal_index(const faiss::Index& index, const Secret& secret, const SealWriter::Emit& emit) {
    const Body body = make_body(index);
    CountSink count;
    body.emit(count);
    const Centering& c = protected_of(index).centering;
    uint8_t prefix[kSealPrefixBytes] = {};
    std::memcpy(prefix, kFrameTag, 4);
    prefix[4] = c.has_frame() ? 1 : 0;
    if (c.has_frame()) std::memcpy(prefix + 5, c.frame_seed.data(), 32);
    SealWriter w(secret, kSealPrefixBytes + count.size(), emit);
    absl::Status st = w.write(prefix, sizeof prefix);
    wipe_bytes(prefix, sizeof prefix);  // the frame seed
    if (!st.ok()) return st;
    SealSink sink(&w);
    body.emit(sink);
    return w.finish();
}

void check_secret(const Secret& secret, const char* what) {
    if (secret.empty()) bad(absl::StrCat(what, ": the secret is empty (use generate_secret, or write unsealed explicitly)"));
}

void refuse_frame_unsealed(const faiss::Index& index, const char* what) {
    if (protected_of(index).centering.has_frame()) {
        bad(absl::StrCat(what, ": this index has a secret frame, whose seed exists only in sealed files; write it "
                               "sealed (with a secret)"));
    }
}

void install_frame(ProtectedIndex& pi, const uint8_t* seed) {
    const int G = pi.params.groups, d = pi.params.group_dim;
    if (d > kMaxFrameGroupDim || int64_t(G) * d * d > kMaxFrameFloats) {
        bad(absl::StrCat("secret frame: ", G, "x", d, " is too large for a frame (a ", d, "x", d,
                         " matrix per group; at most ", kMaxFrameGroupDim, " coordinates per group and ",
                         kMaxFrameFloats, " matrix entries in all)"));
    }
    pi.centering.frame_matrix = derive_frame(seed, G, d);
    pi.centering.frame_seed.assign(seed, seed + 32);
    pi.centering.frame_group_dim = d;
}

/// Once per process: a test or a fuzzer opens thousands of clear files.
void warn_unsealed(const std::string& name) {
    static std::atomic<bool> warned{false};
    if (warned.exchange(true)) return;
    std::fprintf(stderr,
                 "pslerp: warning: %s is not sealed: whoever can read it gets its keys and templates, and edits to "
                 "it go undetected; re-save it with a secret (pslerp rekey --unsealed-in, or write_index(..., "
                 "secret=...))\n",
                 name.c_str());
}

/// Opens a source that may be sealed: the index, with its frame.
std::unique_ptr<faiss::Index> open_any(const ByteSource& src, const Secret& secret) {
    if (!is_sealed(src)) {
        if (!secret.empty()) {
            uint8_t magic[sizeof kMagic];
            // Not an index file at all: say so (parse throws on a wrong magic or a short file).
            if (src.size() < sizeof magic || !src.read_at(0, magic, sizeof magic).ok() ||
                std::memcmp(magic, kMagic, sizeof magic) != 0) {
                parse(src);
            }
            bad("the index is not sealed, but a secret was given: refusing a clear file where a sealed one is "
                "expected (open it without a secret if it is trusted, then save it sealed)");
        }
        warn_unsealed(src.name());
        return parse(src);
    }
    auto reader = SealedReader::open(src, secret);
    auto check = [&](const absl::Status& st) {
        if (st.ok()) return;
        absl::string_view why = st.message();
        absl::ConsumePrefix(&why, src.name() + ": ");
        bad(std::string(why));
    };
    check(reader.status());
    // Decrypted as it is parsed (each chunk authenticated before use): memory is one chunk
    // beyond the index, and no pass over the payload besides the parse itself.
    uint8_t prefix[kSealPrefixBytes];
    if ((*reader)->size() < kSealPrefixBytes) bad("sealed payload: the frame record is malformed");
    check((*reader)->read_at(0, prefix, sizeof prefix));
    // Authenticated, so a malformed record is a writer's bug; still checked.
    if (std::memcmp(prefix, kFrameTag, 4) != 0 || prefix[4] > 1) bad("sealed payload: the frame record is malformed");
    const OffsetBytes inner(**reader, kSealPrefixBytes);
    // The checksum is redundant under authentication and would need a second pass.
    std::unique_ptr<faiss::Index> index = parse(inner, /*verify_checksum=*/false);
    check((*reader)->finish());
    if (prefix[4] == 1) install_frame(protected_of(*index), prefix + 5);
    wipe_bytes(prefix, sizeof prefix);
    return index;
}

std::string strip_pslerp(const faiss::FaissException& e) {
    absl::string_view why = e.msg;
    absl::ConsumePrefix(&why, "pslerp: ");
    return std::string(why);
}

}  // namespace

std::vector<uint8_t> serialize_index(const faiss::Index& index, const Secret& secret) {
    check_secret(secret, "serialize_index");
    auto lock = protected_of(index).lock_shared();
    std::vector<uint8_t> out;
    const absl::Status st = seal_index(index, secret, [&](const uint8_t* p, size_t n) {
        out.insert(out.end(), p, p + n);
        return absl::OkStatus();
    });
    if (!st.ok()) bad(absl::StrCat("serialize_index: ", st.message()));
    return out;
}

std::vector<uint8_t> serialize_index_unsealed(const faiss::Index& index) {
    auto lock = protected_of(index).lock_shared();
    refuse_frame_unsealed(index, "serialize_index_unsealed");
    return clear_bytes(index);
}

void write_index(const faiss::Index& index, const std::string& path, const Secret& secret) {
    check_secret(secret, "write_index");
    auto lock = protected_of(index).lock_shared();
    AtomicFile file;
    if (auto s = file.open(path); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
    const absl::Status st = seal_index(index, secret, [&](const uint8_t* p, size_t n) { return file.write(p, n); });
    if (!st.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", st.message()));
    if (auto s = file.commit(); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
}

void write_index_unsealed(const faiss::Index& index, const std::string& path) {
    auto lock = protected_of(index).lock_shared();
    refuse_frame_unsealed(index, "write_index_unsealed");
    const Body body = make_body(index);
    AtomicFile file;
    if (auto s = file.open(path); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
    FileSink sink(&file, path);
    body.emit(sink);
    if (auto s = file.commit(); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
}

std::unique_ptr<faiss::Index> deserialize_index(const uint8_t* data, size_t size, const Secret& secret) {
    if (size > 0 && data == nullptr) bad("deserialize_index: null data");
    const MemoryBytes src(data, size, "index bytes");
    return guarded([&] { return open_any(src, secret); });
}

std::unique_ptr<faiss::Index> read_index(const std::string& path, const Secret& secret) {
    InputFile file;
    if (auto s = file.open(path); !s.ok()) {
        absl::string_view why = s.message();
        absl::ConsumePrefix(&why, path + ": ");
        bad(absl::StrCat("cannot open index file '", path, "': ", why));
    }
    try {
        return guarded([&] { return open_any(file, secret); });
    } catch (const faiss::FaissException& e) {
        bad(absl::StrCat("index file '", path, "': ", strip_pslerp(e)));
    }
}

IndexFileSummary peek_index_file(const std::string& path) {
    InputFile file;
    if (auto s = file.open(path); !s.ok()) {
        absl::string_view why = s.message();
        absl::ConsumePrefix(&why, path + ": ");
        bad(absl::StrCat("cannot open index file '", path, "': ", why));
    }
    IndexFileSummary out;
    if (!is_sealed(file)) {
        // A clear file (or none): read_index tells what is wrong with it.
        uint8_t head[12];
        if (file.size() >= sizeof head && file.read_at(0, head, sizeof head).ok() &&
            std::memcmp(head, kMagic, sizeof kMagic) == 0) {
            std::memcpy(&out.version, head + 8, 4);
        }
        out.payload_bytes = file.size();
        return out;
    }
    auto info = peek_sealed(file);
    if (info.ok() && file.size() < info->expected_file_bytes) {
        info = absl::InvalidArgumentError(absl::StrCat(path, ": truncated sealed file: ", file.size(),
                                                       " bytes, its header says ", info->expected_file_bytes));
    } else if (info.ok() && file.size() > info->expected_file_bytes) {
        info = absl::InvalidArgumentError(absl::StrCat(path, ": sealed file has ", file.size() - info->expected_file_bytes,
                                                       " bytes after its end"));
    }
    if (!info.ok()) {
        absl::string_view why = info.status().message();
        absl::ConsumePrefix(&why, path + ": ");
        bad(absl::StrCat("index file '", path, "': ", why));
    }
    out.sealed = true;
    out.version = info->version;
    out.payload_bytes = info->payload_bytes;
    return out;
}

void set_secret_frame(faiss::Index& index, const uint8_t* seed) {
    ProtectedIndex& pi = protected_of(index);
    auto lock = pi.lock_exclusive();
    if (pi.centering.has_frame()) bad("set_secret_frame: the index already has a secret frame");
    if (index.ntotal > 0) bad("set_secret_frame: the index has entries; a frame is set on an empty index");
    if (dynamic_cast<const IndexIVFProtectedSlerp*>(&index) && index.is_trained) {
        bad("set_secret_frame: the IVF index is trained; set the frame before train()");
    }
    if (pi.params.importance == ImportanceKind::kSelfAttention) {
        bad("set_secret_frame: self-attention importance reads coordinates within a group, which the frame rotates; "
            "use uniform or fixed importance with a frame");
    }
    install_frame(pi, seed);
}

void enable_secret_frame(faiss::Index& index) {
    const Secret seed = generate_secret();
    set_secret_frame(index, seed.bytes());
}

bool has_secret_frame(const faiss::Index& index) { return protected_of(index).centering.has_frame(); }

std::unique_ptr<faiss::Index> deserialize_quantizer(const uint8_t* data, size_t size, int64_t d) {
    if (size > 0 && data == nullptr) bad("deserialize_quantizer: null data");
    const MemoryBytes src(data, size, "quantizer bytes");
    return guarded([&] { return load_quantizer(src, d, "FAISS quantizer"); });
}

}  // namespace pslerp
