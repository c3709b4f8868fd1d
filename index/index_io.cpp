#include "index/index_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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
        const Params& p = pi.params;
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
    }
    void storage(Sink& s) const {
        const EntryStorage& st = flat->store;
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

Body make_body(const faiss::Index& index) {
    Body b{index, protected_of(index), dynamic_cast<const IndexProtectedSlerp*>(&index),
           dynamic_cast<const IndexIVFProtectedSlerp*>(&index), {}};
    if (!b.flat && !b.ivf) bad("write_index: unknown pslerp index type");
    if (b.ivf) {
        faiss::VectorIOWriter w;
        faiss::write_index(b.ivf->quantizer, &w);
        b.quantizer = std::move(w.data);
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
    SpanIOReader(const uint8_t* d, size_t n) : data(d), size(n) { name = "pslerp quantizer section"; }
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

EntryStorage read_storage(Cursor st, const Params& params) {
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
    return store;
}

/// The nested FAISS quantizer of an IVF file, checked against the index it belongs to.
std::unique_ptr<faiss::Index> read_quantizer(Cursor q, int64_t D, uint64_t nlist) {
    const uint64_t bytes = q.pod<uint64_t>();
    if (bytes != q.left()) bad(absl::StrCat("section 'QUAN' (quantizer): claims ", bytes, " bytes, has ", q.left()));
    SpanIOReader reader(q.here(), bytes);
    std::unique_ptr<faiss::Index> quantizer;
    try {
        quantizer.reset(faiss::read_index(&reader));
    } catch (const std::exception& e) {
        bad(absl::StrCat("section 'QUAN' (quantizer): FAISS cannot read it: ", e.what()));
    }
    if (reader.pos != bytes) bad(absl::StrCat("section 'QUAN' (quantizer): FAISS read ", reader.pos, " of ", bytes, " bytes"));
    // An untrained IVF has no centroids yet.
    const bool centroids_ok = uint64_t(quantizer->ntotal) == nlist || quantizer->ntotal == 0;
    if (quantizer->d != D || !centroids_ok || quantizer->metric_type != faiss::METRIC_L2) {
        bad(absl::StrCat("section 'QUAN' (quantizer): dimension ", quantizer->d, ", ", quantizer->ntotal,
                         " centroids and its metric do not match dimension ", D, ", ", nlist, " lists (or none) and L2"));
    }
    return quantizer;
}

void read_lists(Cursor c, IndexIVFProtectedSlerp& ivf) {
    const uint64_t nlist = c.pod<uint64_t>();
    const uint64_t code_size = c.pod<uint64_t>();
    if (nlist != ivf.nlist || code_size != ivf.code_size) {
        bad(absl::StrCat("section 'LIST' (inverted lists): ", nlist, " lists of ", code_size, "-byte codes, expected ",
                         ivf.nlist, " of ", ivf.code_size));
    }
    const uint64_t entry = sizeof(idx_t) + code_size;
    for (uint64_t l = 0; l < nlist; ++l) {
        const uint64_t n = c.pod<uint64_t>();
        if (n > c.left() / entry) {
            bad(absl::StrCat("section 'LIST' (inverted lists): list ", l, " claims ", n, " entries of ", entry,
                             " bytes but only ", c.left(), " bytes are left"));
        }
        const uint8_t* ids = c.here();
        c.skip(n * sizeof(idx_t));
        const uint8_t* codes = c.here();
        c.skip(n * code_size);
        if (n == 0) continue;
        std::vector<idx_t> id_copy(n);
        std::memcpy(id_copy.data(), ids, n * sizeof(idx_t));
        ivf.invlists->add_entries(l, n, id_copy.data(), codes);
    }
    c.finish();
}

std::unique_ptr<faiss::Index> parse(const uint8_t* data, size_t size) {
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
    const bool sections_ok = version == 1 ? sections == kSectionsV1 : (sections == kSectionsFlat || sections == kSectionsIVF);
    if (!sections_ok) bad(absl::StrCat("header gives ", sections, " sections, impossible for version ", version));
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
    opts.finish();
    if (next_id < 0) bad(absl::StrCat("section 'OPTS' (index options): next id ", next_id, " is negative"));
    const std::optional<uint64_t> seed = has_seed ? std::optional<uint64_t>(seed_value) : std::nullopt;

    std::unique_ptr<faiss::Index> out;
    if (kind == kKindFlat) {
        auto index = std::make_unique<IndexProtectedSlerp>(params);
        index->store = read_storage(open_section(body, "STOR", "storage"), params);
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
        out = std::move(index);
    } else {
        std::unique_ptr<faiss::Index> quantizer = read_quantizer(open_section(body, "QUAN", "quantizer"), D, nlist);
        auto index = std::make_unique<IndexIVFProtectedSlerp>(std::move(quantizer), nlist, params);
        read_lists(open_section(body, "LIST", "inverted lists"), *index);
        index->centering = std::move(centering);
        index->train_pca = train_pca;
        index->nprobe = nprobe;
        index->is_trained = index->quantizer->is_trained && size_t(index->quantizer->ntotal) == nlist;
        index->rebuild_after_load(streams_used, seed, next_id);
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

std::vector<uint8_t> serialize_index(const faiss::Index& index) {
    const Body body = make_body(index);
    std::vector<uint8_t> out;
    CountSink count;
    body.emit(count);
    out.reserve(count.size());
    VectorSink sink(&out);
    body.emit(sink);
    return out;
}

void write_index(const faiss::Index& index, const std::string& path) {
    const Body body = make_body(index);
    AtomicFile file;
    if (auto s = file.open(path); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
    FileSink sink(&file, path);
    body.emit(sink);
    if (auto s = file.commit(); !s.ok()) bad(absl::StrCat("cannot write index file '", path, "': ", s.message()));
}

std::unique_ptr<faiss::Index> deserialize_index(const uint8_t* data, size_t size) {
    if (size > 0 && data == nullptr) bad("deserialize_index: null data");
    try {
        return parse(data, size);
    } catch (const faiss::FaissException&) {
        throw;
    } catch (const std::exception& e) {
        bad(absl::StrCat("cannot load index: ", e.what()));
    }
}

std::unique_ptr<faiss::Index> read_index(const std::string& path) {
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
