#include "io/array_io.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pslerp array_io assumes a little-endian host"
#endif

namespace pslerp {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicLen = 6;
// numpy itself writes headers of a few hundred bytes; anything bigger is not an array header.
constexpr uint64_t kMaxNpyHeader = 1 << 20;

absl::Status bad_file(const std::string& path, const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
}

// ---- .npy header ---------------------------------------------------------------------------

struct NpyHeader {
    std::string descr;
    bool fortran_order = false;
    std::vector<int64_t> shape;
    uint64_t data_offset = 0;
};

/// Parses the Python dict literal numpy writes: {'descr': '<f4', 'fortran_order': False,
/// 'shape': (3, 4), } followed by space padding and a newline.
class DictParser {
  public:
    explicit DictParser(const std::string& text) : s_(text) {}

    absl::Status parse(NpyHeader& h) {
        bool seen_descr = false, seen_order = false, seen_shape = false;
        skip_space();
        if (!eat('{')) return err("header does not start with '{'");
        for (;;) {
            skip_space();
            if (eat('}')) break;
            std::string key;
            if (absl::Status st = string_literal(key); !st.ok()) return st;
            skip_space();
            if (!eat(':')) return err("expected ':' after key '" + key + "'");
            skip_space();
            if (key == "descr") {
                if (absl::Status st = string_literal(h.descr); !st.ok()) return st;
                seen_descr = true;
            } else if (key == "fortran_order") {
                if (s_.compare(i_, 4, "True") == 0) {
                    h.fortran_order = true;
                    i_ += 4;
                } else if (s_.compare(i_, 5, "False") == 0) {
                    h.fortran_order = false;
                    i_ += 5;
                } else {
                    return err("fortran_order is neither True nor False");
                }
                seen_order = true;
            } else if (key == "shape") {
                if (absl::Status st = tuple(h.shape); !st.ok()) return st;
                seen_shape = true;
            } else {
                return err("unknown header key '" + key + "'");
            }
            skip_space();
            if (eat(',')) continue;
            skip_space();
            if (eat('}')) break;
            return err("expected ',' or '}' in the header");
        }
        for (; i_ < s_.size(); ++i_) {
            if (s_[i_] != ' ' && s_[i_] != '\n' && s_[i_] != '\0') return err("junk after the header dict");
        }
        if (!seen_descr || !seen_order || !seen_shape) {
            return err("header lacks one of 'descr', 'fortran_order', 'shape'");
        }
        return absl::OkStatus();
    }

  private:
    absl::Status err(const std::string& m) const { return absl::InvalidArgumentError(m); }
    void skip_space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_;
    }
    bool eat(char c) {
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    absl::Status string_literal(std::string& out) {
        if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) return err("expected a quoted string");
        const char quote = s_[i_++];
        const size_t end = s_.find(quote, i_);
        if (end == std::string::npos || end - i_ > 64) return err("unterminated or overlong string");
        out = s_.substr(i_, end - i_);
        i_ = end + 1;
        return absl::OkStatus();
    }
    absl::Status tuple(std::vector<int64_t>& out) {
        if (!eat('(')) return err("shape is not a tuple");
        for (;;) {
            skip_space();
            if (eat(')')) return absl::OkStatus();
            if (i_ >= s_.size() || !absl::ascii_isdigit(static_cast<unsigned char>(s_[i_]))) {
                return err("shape holds something other than non-negative integers");
            }
            int64_t v = 0;
            while (i_ < s_.size() && absl::ascii_isdigit(static_cast<unsigned char>(s_[i_]))) {
                if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) return err("shape dimension too large");
                v = v * 10 + (s_[i_++] - '0');
            }
            while (i_ < s_.size() && (s_[i_] == 'L' || s_[i_] == 'l')) ++i_;  // Python 2 longs
            out.push_back(v);
            if (out.size() > 32) return err("too many dimensions in shape");
            skip_space();
            if (eat(',')) continue;
            skip_space();
            if (eat(')')) return absl::OkStatus();
            return err("malformed shape tuple");
        }
    }

    const std::string& s_;
    size_t i_ = 0;
};

absl::StatusOr<NpyHeader> read_npy_header(const ByteSource& f) {
    const std::string& path = f.name();
    unsigned char pre[12];
    if (f.size() < 10) return bad_file(path, "truncated: too short for a .npy header");
    if (absl::Status st = f.read_at(0, pre, std::min<uint64_t>(12, f.size())); !st.ok()) return st;
    if (std::memcmp(pre, kNpyMagic, kNpyMagicLen) != 0) return bad_file(path, "bad magic: not a .npy file");
    const int major = pre[6], minor = pre[7];
    uint64_t header_len = 0, start = 0;
    if (major == 1) {
        header_len = pre[8] | (uint64_t{pre[9]} << 8);
        start = 10;
    } else if (major == 2 || major == 3) {
        if (f.size() < 12) return bad_file(path, "truncated: too short for a .npy 2.0 header");
        header_len = pre[8] | (uint64_t{pre[9]} << 8) | (uint64_t{pre[10]} << 16) | (uint64_t{pre[11]} << 24);
        start = 12;
    } else {
        return bad_file(path, absl::StrFormat("unsupported .npy format version %d.%d", major, minor));
    }
    if (header_len > f.size() - start) {
        return bad_file(path, absl::StrFormat("truncated: header of %d bytes, file has %d after the preamble",
                                              header_len, f.size() - start));
    }
    if (header_len > kMaxNpyHeader) return bad_file(path, "header length is implausibly large");
    std::string text(header_len, '\0');
    if (absl::Status st = f.read_at(start, text.data(), header_len); !st.ok()) return st;
    NpyHeader h;
    if (absl::Status st = DictParser(text).parse(h); !st.ok()) {
        return bad_file(path, absl::StrCat("bad .npy header: ", st.message()));
    }
    h.data_offset = start + header_len;
    if (h.fortran_order) return bad_file(path, "Fortran-order arrays are not supported (save with C order)");
    if (h.shape.empty()) return bad_file(path, "0-d arrays are not supported (need 1-D or 2-D)");
    if (h.shape.size() > 2) {
        return bad_file(path, absl::StrFormat("%d-d array: only 1-D or 2-D are supported", h.shape.size()));
    }
    return h;
}

int itemsize(const std::string& descr) {
    if (descr.size() != 3) return 0;
    return descr[2] - '0';
}

/// Checks the shape against the bytes in the file; returns the element count.
absl::StatusOr<uint64_t> check_npy_size(const NpyHeader& h, const ByteSource& f, int item) {
    const std::string& path = f.name();
    uint64_t count = 1;
    for (int64_t dim : h.shape) {
        if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) {
            return bad_file(path, "shape overflows");
        }
    }
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(item), &bytes)) return bad_file(path, "shape overflows");
    const uint64_t have = f.size() - h.data_offset;
    if (have < bytes) {
        return bad_file(path, absl::StrFormat("truncated: header says %d bytes of data, file has %d", bytes, have));
    }
    if (have > bytes) {
        return bad_file(path, absl::StrFormat("%d unexpected bytes after the array data", have - bytes));
    }
    return count;
}

std::string describe_dtype(const std::string& descr) {
    if (!descr.empty() && descr[0] == '>') return "big-endian dtype '" + descr + "' is not supported";
    return "dtype '" + descr + "'";
}

template <typename Out, typename In>
absl::Status read_converted(const ByteSource& f, uint64_t offset, uint64_t count, Out* out) {
    // Chunked so the conversion needs no second full-size buffer.
    constexpr uint64_t kChunk = 1 << 16;
    std::vector<In> buf(std::min(count, kChunk));
    for (uint64_t done = 0; done < count;) {
        const uint64_t n = std::min(kChunk, count - done);
        if (absl::Status st = f.read_at(offset + done * sizeof(In), buf.data(), n * sizeof(In)); !st.ok()) {
            return st;
        }
        for (uint64_t i = 0; i < n; ++i) out[done + i] = static_cast<Out>(buf[i]);
        done += n;
    }
    return absl::OkStatus();
}

std::string npy_header(const std::string& descr, int64_t rows, int64_t cols) {
    std::string shape = cols < 0 ? absl::StrFormat("(%d,)", rows) : absl::StrFormat("(%d, %d)", rows, cols);
    std::string dict = absl::StrFormat("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    // Pad with spaces and a final newline so that the data starts on a 64-byte boundary.
    const size_t total = 10 + dict.size() + 1;
    dict.append((64 - total % 64) % 64, ' ');
    dict.push_back('\n');
    std::string out(kNpyMagic, kNpyMagicLen);
    out.push_back('\x01');
    out.push_back('\x00');
    out.push_back(static_cast<char>(dict.size() & 0xff));
    out.push_back(static_cast<char>(dict.size() >> 8));
    return out + dict;
}

absl::Status check_shape(int64_t rows, int64_t cols, bool allow_1d) {
    if (rows < 0) return absl::InvalidArgumentError("negative number of rows");
    if (cols < 0 && !allow_1d) return absl::InvalidArgumentError("negative number of columns");
    uint64_t bytes;
    if (__builtin_mul_overflow(static_cast<uint64_t>(rows), static_cast<uint64_t>(std::max<int64_t>(cols, 1)) * 8,
                               &bytes)) {
        return absl::InvalidArgumentError("array size overflows");
    }
    return absl::OkStatus();
}

template <typename T>
absl::Status write_npy(const std::string& path, const char* descr, const T* x, int64_t rows, int64_t cols) {
    if (absl::Status st = check_shape(rows, cols, true); !st.ok()) return st;
    const uint64_t count = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols < 0 ? 1 : cols);
    if (count > 0 && x == nullptr) return absl::InvalidArgumentError("null data pointer");
    const std::string header = npy_header(descr, rows, cols);
    AtomicFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    if (absl::Status st = f.write(header.data(), header.size()); !st.ok()) return st;
    if (count > 0) {
        if (absl::Status st = f.write(x, count * sizeof(T)); !st.ok()) return st;
    }
    return f.commit();
}

/// Reads .fvecs / .ivecs: int32 dimension then `dim` 4-byte values per row.
template <typename Raw, typename Out>
absl::Status read_vecs(const std::string& path, std::vector<Out>& data, int64_t& rows, int64_t& cols) {
    InputFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    rows = cols = 0;
    if (f.size() == 0) return absl::OkStatus();
    if (f.size() < 4) return bad_file(path, "truncated: shorter than one row's dimension field");
    int32_t dim = 0;
    if (absl::Status st = f.read_at(0, &dim, 4); !st.ok()) return st;
    if (dim <= 0) return bad_file(path, absl::StrFormat("first row has dimension %d (must be > 0)", dim));
    if (static_cast<uint64_t>(dim) > (f.size() - 4) / 4) {
        return bad_file(path, absl::StrFormat("truncated: first row has dimension %d but the file holds %d bytes",
                                              dim, f.size()));
    }
    const uint64_t row_bytes = 4 * (1 + static_cast<uint64_t>(dim));
    if (f.size() % row_bytes != 0) {
        return bad_file(path, absl::StrFormat(
                                  "size %d is not a multiple of the row size %d (dimension %d): truncated, or rows "
                                  "of different dimensions",
                                  f.size(), row_bytes, dim));
    }
    const uint64_t n = f.size() / row_bytes;
    try {
        data.resize(n * static_cast<uint64_t>(dim));
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(path, ": cannot allocate the array"));
    }
    constexpr uint64_t kChunkBytes = 1 << 22;
    const uint64_t chunk_rows = std::max<uint64_t>(1, kChunkBytes / row_bytes);
    std::vector<char> buf(std::min(n, chunk_rows) * row_bytes);
    for (uint64_t r0 = 0; r0 < n; r0 += chunk_rows) {
        const uint64_t nr = std::min(chunk_rows, n - r0);
        if (absl::Status st = f.read_at(r0 * row_bytes, buf.data(), nr * row_bytes); !st.ok()) return st;
        for (uint64_t r = 0; r < nr; ++r) {
            const char* row = buf.data() + r * row_bytes;
            int32_t d;
            std::memcpy(&d, row, 4);
            if (d != dim) {
                return bad_file(path, absl::StrFormat("row %d has dimension %d, the first row %d", r0 + r, d, dim));
            }
            Out* out = data.data() + (r0 + r) * static_cast<uint64_t>(dim);
            for (int32_t j = 0; j < dim; ++j) {
                Raw v;
                std::memcpy(&v, row + 4 + 4 * static_cast<uint64_t>(j), 4);
                out[j] = static_cast<Out>(v);
            }
        }
    }
    rows = static_cast<int64_t>(n);
    cols = dim;
    return absl::OkStatus();
}

template <typename Raw, typename In>
absl::Status write_vecs(const std::string& path, const In* x, int64_t rows, int64_t cols) {
    if (absl::Status st = check_shape(rows, cols, false); !st.ok()) return st;
    if (cols < 1 || cols > std::numeric_limits<int32_t>::max() / 4) {
        return absl::InvalidArgumentError(absl::StrFormat("vecs files need 1 <= cols < 2^29, got %d", cols));
    }
    if (rows > 0 && x == nullptr) return absl::InvalidArgumentError("null data pointer");
    const uint64_t row_bytes = 4 * (1 + static_cast<uint64_t>(cols));
    const uint64_t chunk_rows = std::max<uint64_t>(1, (uint64_t{1} << 22) / row_bytes);
    AtomicFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    std::vector<char> buf(std::min<uint64_t>(rows, chunk_rows) * row_bytes);
    const int32_t dim = static_cast<int32_t>(cols);
    for (uint64_t r0 = 0; r0 < static_cast<uint64_t>(rows); r0 += chunk_rows) {
        const uint64_t nr = std::min<uint64_t>(chunk_rows, rows - r0);
        for (uint64_t r = 0; r < nr; ++r) {
            char* row = buf.data() + r * row_bytes;
            std::memcpy(row, &dim, 4);
            const In* in = x + (r0 + r) * static_cast<uint64_t>(cols);
            for (int64_t j = 0; j < cols; ++j) {
                if constexpr (std::is_integral_v<In>) {
                    if (in[j] < std::numeric_limits<int32_t>::min() || in[j] > std::numeric_limits<int32_t>::max()) {
                        return absl::InvalidArgumentError(
                            absl::StrFormat("%s: value %d at row %d does not fit in int32", path, in[j], r0 + r));
                    }
                }
                const Raw v = static_cast<Raw>(in[j]);
                std::memcpy(row + 4 + 4 * j, &v, 4);
            }
        }
        if (absl::Status st = f.write(buf.data(), nr * row_bytes); !st.ok()) return st;
    }
    return f.commit();
}

std::string lower_extension(const std::string& path) {
    const size_t slash = path.rfind('/');
    const size_t dot = path.rfind('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
    return absl::AsciiStrToLower(path.substr(dot));
}

}  // namespace

// ---- .npy ------------------------------------------------------------------------------------

absl::StatusOr<Matrix> read_npy_f32(const ByteSource& f, bool allow_convert) {
    const std::string& path = f.name();
    absl::StatusOr<NpyHeader> h = read_npy_header(f);
    if (!h.ok()) return h.status();
    if (h->descr != "<f4" && !(allow_convert && h->descr == "<f8")) {
        return bad_file(path, absl::StrCat(describe_dtype(h->descr), " where float32 ('<f4') is needed",
                                           h->descr == "<f8" ? " (float64 is converted only when allowed)" : ""));
    }
    absl::StatusOr<uint64_t> count = check_npy_size(*h, f, itemsize(h->descr));
    if (!count.ok()) return count.status();
    Matrix m;
    if (h->shape.size() == 1) {
        m.rows = h->shape[0] == 0 ? 0 : 1;
        m.cols = h->shape[0];
    } else {
        m.rows = h->shape[0];
        m.cols = h->shape[1];
    }
    try {
        m.data.resize(*count);
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(path, ": cannot allocate the array"));
    }
    absl::Status st = h->descr == "<f4" ? f.read_at(h->data_offset, m.data.data(), *count * 4)
                                        : read_converted<float, double>(f, h->data_offset, *count, m.data.data());
    if (!st.ok()) return st;
    return m;
}

absl::StatusOr<IntMatrix> read_npy_i64(const ByteSource& f, bool allow_convert) {
    const std::string& path = f.name();
    absl::StatusOr<NpyHeader> h = read_npy_header(f);
    if (!h.ok()) return h.status();
    if (h->descr != "<i8" && !(allow_convert && h->descr == "<i4")) {
        return bad_file(path, absl::StrCat(describe_dtype(h->descr), " where int64 ('<i8') is needed",
                                           h->descr == "<i4" ? " (int32 is widened only when allowed)" : ""));
    }
    absl::StatusOr<uint64_t> count = check_npy_size(*h, f, itemsize(h->descr));
    if (!count.ok()) return count.status();
    IntMatrix m;
    m.rows = h->shape[0];
    m.cols = h->shape.size() == 1 ? 1 : h->shape[1];
    try {
        m.data.resize(*count);
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(path, ": cannot allocate the array"));
    }
    absl::Status st = h->descr == "<i8" ? f.read_at(h->data_offset, m.data.data(), *count * 8)
                                        : read_converted<int64_t, int32_t>(f, h->data_offset, *count, m.data.data());
    if (!st.ok()) return st;
    return m;
}

absl::StatusOr<Matrix> read_npy_f32(const std::string& path, bool allow_convert) {
    InputFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    return read_npy_f32(f, allow_convert);
}

absl::StatusOr<IntMatrix> read_npy_i64(const std::string& path, bool allow_convert) {
    InputFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    return read_npy_i64(f, allow_convert);
}

absl::Status write_npy_f32(const std::string& path, const float* x, int64_t rows, int64_t cols) {
    return write_npy(path, "<f4", x, rows, cols);
}

absl::Status write_npy_i64(const std::string& path, const int64_t* x, int64_t rows, int64_t cols) {
    return write_npy(path, "<i8", x, rows, cols);
}

// ---- .fvecs / .ivecs -------------------------------------------------------------------------

absl::StatusOr<Matrix> read_fvecs(const std::string& path) {
    Matrix m;
    if (absl::Status st = read_vecs<float, float>(path, m.data, m.rows, m.cols); !st.ok()) return st;
    return m;
}

absl::Status write_fvecs(const std::string& path, const float* x, int64_t rows, int64_t cols) {
    return write_vecs<float, float>(path, x, rows, cols);
}

absl::StatusOr<IntMatrix> read_ivecs(const std::string& path) {
    IntMatrix m;
    if (absl::Status st = read_vecs<int32_t, int64_t>(path, m.data, m.rows, m.cols); !st.ok()) return st;
    return m;
}

absl::Status write_ivecs(const std::string& path, const int64_t* x, int64_t rows, int64_t cols) {
    return write_vecs<int32_t, int64_t>(path, x, rows, cols);
}

// ---- dispatch --------------------------------------------------------------------------------

absl::StatusOr<Matrix> read_matrix(const std::string& path, bool allow_convert) {
    const std::string ext = lower_extension(path);
    if (ext == ".npy") return read_npy_f32(path, allow_convert);
    if (ext == ".fvecs") return read_fvecs(path);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unknown matrix format '", ext, "' (expected .npy or .fvecs)"));
}

absl::StatusOr<std::vector<int64_t>> read_labels(const std::string& path, bool allow_convert) {
    const std::string ext = lower_extension(path);
    absl::StatusOr<IntMatrix> m;
    if (ext == ".npy") {
        m = read_npy_i64(path, allow_convert);
    } else if (ext == ".ivecs") {
        m = read_ivecs(path);
    } else {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": unknown label format '", ext, "' (expected .npy or .ivecs)"));
    }
    if (!m.ok()) return m.status();
    if (m->cols != 1 && m->rows > 0) {
        return bad_file(path, absl::StrFormat("labels must be one column, got %d x %d", m->rows, m->cols));
    }
    return std::move(m->data);
}

}  // namespace pslerp
