// Image files: the format from the first bytes, then JPEG through libjpeg (straight into the
// RgbImage), PNG and BMP through dlib, WebP through libwebp (Debian's dlib is built without
// WebP), PGM/PPM with the small reader below.
// Every header is checked (dimensions against kMaxImagePixels, truncation) before a pixel
// buffer is allocated; every error starts with the file's name.
#include <dlib/image_io.h>
#include <dlib/image_transforms/interpolation.h>
#include <webp/decode.h>

// jpeglib.h needs FILE and size_t declared first.
#include <cstdio>
#include <jpeglib.h>
#include <jerror.h>

#include <algorithm>
#include <csetjmp>
#include <cstring>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "extractor/dlib_image.h"
#include "extractor/image.h"
#include "io/file.h"

namespace pslerp {
namespace {

using internal::DlibImage;

absl::Status bad(const std::string& name, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

// Byte `at` of b as an unsigned value; the callers have checked the bounds.
uint32_t byte_at(absl::string_view b, size_t at) { return static_cast<uint8_t>(b[at]); }
uint32_t le32(absl::string_view b, size_t at) {
    return byte_at(b, at) | byte_at(b, at + 1) << 8 | byte_at(b, at + 2) << 16 | byte_at(b, at + 3) << 24;
}
uint16_t le16(absl::string_view b, size_t at) { return static_cast<uint16_t>(byte_at(b, at) | byte_at(b, at + 1) << 8); }
uint32_t be32(absl::string_view b, size_t at) {
    return byte_at(b, at) << 24 | byte_at(b, at + 1) << 16 | byte_at(b, at + 2) << 8 | byte_at(b, at + 3);
}
uint16_t be16(absl::string_view b, size_t at) { return static_cast<uint16_t>(byte_at(b, at) << 8 | byte_at(b, at + 1)); }
void put_le32(std::string& s, uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_le16(std::string& s, uint16_t v) {
    s.push_back(static_cast<char>(v & 0xFF));
    s.push_back(static_cast<char>(v >> 8));
}

// Refuses dimensions that are not positive or whose product is over kMaxImagePixels.
absl::Status check_size(const std::string& name, const char* format, int64_t width, int64_t height) {
    if (width <= 0 || height <= 0)
        return bad(name, absl::StrCat(format, " header gives ", width, " x ", height, " pixels"));
    if (width > kMaxImagePixels || height > kMaxImagePixels || width * height > kMaxImagePixels)
        return bad(name, absl::StrCat(format, " image is ", width, " x ", height, " pixels, over the limit of ",
                                      kMaxImagePixels, " pixels"));
    return absl::OkStatus();
}

bool is_netpbm_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// ---------------------------------------------------------------- Netpbm (PGM, PPM)

class NetpbmReader {
  public:
    NetpbmReader(absl::string_view bytes, const std::string& name) : b_(bytes), name_(name) {
        plain_ = b_[1] == '2' || b_[1] == '3';
        channels_ = b_[1] == '3' || b_[1] == '6' ? 3 : 1;
        kind_ = absl::StrCat(channels_ == 3 ? "PPM" : "PGM", " (P", std::string(1, b_[1]), ")");
    }

    absl::StatusOr<RgbImage> read() {
        pos_ = 2;
        int64_t width = 0, height = 0, maxval = 0;
        if (absl::Status s = header_field("width", &width); !s.ok()) return s;
        if (absl::Status s = header_field("height", &height); !s.ok()) return s;
        if (absl::Status s = check_size(name_, kind_.c_str(), width, height); !s.ok()) return s;
        if (absl::Status s = header_field("maxval", &maxval); !s.ok()) return s;
        if (maxval < 1 || maxval > 65535)
            return bad(name_, absl::StrCat(kind_, " maxval is ", maxval, ", not in 1..65535"));
        const int64_t samples = width * height * channels_;
        std::vector<uint16_t> v;
        if (plain_) {
            if (absl::Status s = plain_samples(samples, maxval, &v); !s.ok()) return s;
        } else {
            if (absl::Status s = raw_samples(samples, maxval, &v); !s.ok()) return s;
        }
        RgbImage image;
        image.width = static_cast<int>(width);
        image.height = static_cast<int>(height);
        image.pixels.resize(static_cast<size_t>(width * height) * 3);
        const uint32_t m = static_cast<uint32_t>(maxval);
        auto scale = [m](uint32_t x) { return static_cast<uint8_t>((x * 255u + m / 2) / m); };
        for (int64_t p = 0; p < width * height; ++p)
            for (int c = 0; c < 3; ++c) image.pixels[p * 3 + c] = scale(v[p * channels_ + (channels_ == 3 ? c : 0)]);
        return image;
    }

  private:
    // Skips whitespace and '#' comments (to the end of the line).
    void skip_space() {
        while (pos_ < b_.size()) {
            if (is_netpbm_space(b_[pos_])) {
                ++pos_;
            } else if (b_[pos_] == '#') {
                while (pos_ < b_.size() && b_[pos_] != '\n' && b_[pos_] != '\r') ++pos_;
            } else {
                break;
            }
        }
    }

    // A decimal number of at most `limit`; false if there is none at pos_ (after whitespace).
    // Sets *overflow when it has more digits than `limit` allows.
    bool number(int64_t limit, int64_t* out, bool* overflow) {
        skip_space();
        *overflow = false;
        if (pos_ >= b_.size() || b_[pos_] < '0' || b_[pos_] > '9') return false;
        int64_t v = 0;
        while (pos_ < b_.size() && b_[pos_] >= '0' && b_[pos_] <= '9') {
            v = v * 10 + (b_[pos_++] - '0');
            if (v > limit) {
                *overflow = true;
                v = limit + 1;
                while (pos_ < b_.size() && b_[pos_] >= '0' && b_[pos_] <= '9') ++pos_;
            }
        }
        *out = v;
        return true;
    }

    absl::Status header_field(const char* what, int64_t* out) {
        bool overflow = false;
        constexpr int64_t kLimit = int64_t{1} << 40;
        if (!number(kLimit, out, &overflow)) {
            if (pos_ >= b_.size()) return bad(name_, absl::StrCat("truncated ", kind_, " header: no ", what));
            return bad(name_, absl::StrFormat("%s header: %s expected, found byte 0x%02x at offset %d", kind_, what,
                                              static_cast<uint8_t>(b_[pos_]), pos_));
        }
        if (overflow) return bad(name_, absl::StrCat(kind_, " header: ", what, " is too large"));
        if (pos_ < b_.size() && !is_netpbm_space(b_[pos_]) && b_[pos_] != '#')
            return bad(name_, absl::StrFormat("%s header: %s is followed by byte 0x%02x, not whitespace", kind_, what,
                                              static_cast<uint8_t>(b_[pos_])));
        return absl::OkStatus();
    }

    absl::Status plain_samples(int64_t samples, int64_t maxval, std::vector<uint16_t>* v) {
        v->reserve(static_cast<size_t>(std::min<int64_t>(samples, static_cast<int64_t>(b_.size() - pos_) / 2 + 1)));
        for (int64_t i = 0; i < samples; ++i) {
            int64_t x = 0;
            bool overflow = false;
            if (!number(maxval, &x, &overflow)) {
                if (pos_ >= b_.size())
                    return bad(name_, absl::StrCat("truncated ", kind_, ": ", i, " of ", samples, " samples present"));
                return bad(name_, absl::StrFormat("%s: sample %d is not a number (byte 0x%02x at offset %d)", kind_, i,
                                                  static_cast<uint8_t>(b_[pos_]), pos_));
            }
            if (overflow) return bad(name_, absl::StrCat(kind_, ": sample ", i, " exceeds maxval ", maxval));
            v->push_back(static_cast<uint16_t>(x));
        }
        return absl::OkStatus();
    }

    absl::Status raw_samples(int64_t samples, int64_t maxval, std::vector<uint16_t>* v) {
        // Exactly one whitespace byte (or a comment line) separates maxval from the raster.
        if (pos_ < b_.size() && b_[pos_] == '#') {
            while (pos_ < b_.size() && b_[pos_] != '\n' && b_[pos_] != '\r') ++pos_;
        }
        if (pos_ >= b_.size()) return bad(name_, absl::StrCat("truncated ", kind_, ": no pixel data after the header"));
        ++pos_;
        const int bytes_per_sample = maxval > 255 ? 2 : 1;
        const int64_t need = samples * bytes_per_sample;
        const int64_t have = static_cast<int64_t>(b_.size() - pos_);
        if (have < need)
            return bad(name_,
                       absl::StrCat("truncated ", kind_, ": ", have, " of ", need, " bytes of pixel data present"));
        v->resize(static_cast<size_t>(samples));
        for (int64_t i = 0; i < samples; ++i) {
            const uint16_t x = bytes_per_sample == 2 ? be16(b_, pos_ + 2 * i) : static_cast<uint8_t>(b_[pos_ + i]);
            if (x > maxval) return bad(name_, absl::StrCat(kind_, ": sample ", i, " is ", x, ", over maxval ", maxval));
            (*v)[i] = x;
        }
        return absl::OkStatus();
    }

    absl::string_view b_;
    const std::string& name_;
    size_t pos_ = 0;
    bool plain_ = false;
    int channels_ = 1;
    std::string kind_;
};

// ---------------------------------------------------------------- BMP

// dlib's load_bmp reads the classic layout only: a 40-byte BITMAPINFOHEADER, a palette of
// exactly 2^bits entries, 8-bit (plain or RLE) or 24-bit pixels (its 1- and 4-bit readers
// misjudge the row padding of some widths). This checks the header and rewrites the file into
// that layout: V4/V5 headers cut to 40 bytes, palettes padded to 256 entries, 1- and 4-bit
// indices widened to bytes, 32-bit BGRX pixels made 24-bit, the pixel data cut to its exact
// size. dlib then only ever sees a well-formed 8- or 24-bit file.
absl::StatusOr<std::string> normalise_bmp(absl::string_view b, const std::string& name) {
    if (b.size() < 18) return bad(name, absl::StrCat("truncated BMP: ", b.size(), " bytes, no header"));
    const uint32_t data_offset = le32(b, 10);
    const uint32_t header_size = le32(b, 14);
    if (header_size == 12) return bad(name, "OS/2 BMP (12-byte header) is not supported");
    if (header_size != 40 && header_size != 52 && header_size != 56 && header_size != 108 && header_size != 124)
        return bad(name, absl::StrCat("BMP header size ", header_size, " is not a known BMP header"));
    if (b.size() < 14 + 40) return bad(name, absl::StrCat("truncated BMP: ", b.size(), " bytes, header cut short"));
    const int32_t width = static_cast<int32_t>(le32(b, 18));
    const int32_t signed_height = static_cast<int32_t>(le32(b, 22));
    const uint16_t bits = le16(b, 28);
    const uint32_t compression = le32(b, 30);
    const uint32_t colours_used = le32(b, 46);
    if (signed_height == std::numeric_limits<int32_t>::min()) return bad(name, "BMP height is out of range");
    const int64_t height = std::abs(static_cast<int64_t>(signed_height));
    if (absl::Status s = check_size(name, "BMP", width, height); !s.ok()) return s;

    if (bits != 1 && bits != 4 && bits != 8 && bits != 24 && bits != 32)
        return bad(name, absl::StrCat(bits, "-bit BMP is not supported (1-, 4-, 8-, 24- and 32-bit are)"));
    // Compression: 0 none, 1 RLE8, 3 bit fields (32-bit BGRX masks only).
    uint32_t masks_size = 0;
    if (compression == 3 && bits == 32) {
        const size_t at = 14 + 40;
        if (header_size == 40) masks_size = 12;
        if (b.size() < at + 12) return bad(name, "truncated BMP: bit-field masks cut short");
        if (le32(b, at) != 0x00FF0000 || le32(b, at + 4) != 0x0000FF00 || le32(b, at + 8) != 0x000000FF)
            return bad(name, "32-bit BMP with bit-field masks other than 8-bit B, G, R is not supported");
    } else if (compression == 1 && bits == 8) {
        if (signed_height < 0) return bad(name, "top-down BMP cannot be RLE-compressed");
    } else if (compression != 0) {
        static const char* kNames[] = {"none", "RLE8", "RLE4", "bit fields", "JPEG", "PNG"};
        return bad(name, absl::StrCat(bits, "-bit BMP with compression ",
                                      compression < 6 ? kNames[compression] : std::to_string(compression).c_str(),
                                      " is not supported"));
    }

    const uint32_t max_entries = bits <= 8 ? 1u << bits : 0;
    const uint32_t file_entries = bits <= 8 ? (colours_used == 0 ? max_entries : colours_used) : 0;
    if (file_entries > max_entries)
        return bad(name, absl::StrCat("BMP palette has ", file_entries, " entries, more than ", max_entries));
    const size_t palette_at = 14 + header_size + masks_size;
    if (b.size() < palette_at + size_t{4} * file_entries)
        return bad(name, "truncated BMP: palette cut short");
    if (data_offset < palette_at + size_t{4} * file_entries)
        return bad(name, absl::StrCat("BMP pixel data offset ", data_offset, " points into the header or palette"));
    if (data_offset > b.size())
        return bad(name, absl::StrCat("truncated BMP: pixel data offset ", data_offset, " is past the end (", b.size(),
                                      " bytes)"));

    const int out_bits = bits == 32 ? 24 : bits < 8 ? 8 : bits;
    const uint32_t palette_entries = out_bits == 8 ? 256 : 0;
    const int64_t in_stride = (static_cast<int64_t>(width) * bits + 31) / 32 * 4;
    const int64_t out_stride = (static_cast<int64_t>(width) * out_bits + 31) / 32 * 4;
    const int64_t have = static_cast<int64_t>(b.size() - data_offset);
    int64_t data_bytes = have;  // RLE: everything after the offset
    if (compression != 1) {
        const int64_t need = in_stride * height;
        if (have < need)
            return bad(name, absl::StrCat("truncated BMP: ", have, " of ", need, " bytes of pixel data present"));
        data_bytes = out_stride * height;
    }

    std::string out;
    const uint32_t out_offset = 14 + 40 + 4 * palette_entries;
    out.reserve(out_offset + static_cast<size_t>(data_bytes));
    out += "BM";
    put_le32(out, static_cast<uint32_t>(out_offset + data_bytes));
    put_le32(out, 0);
    put_le32(out, out_offset);
    put_le32(out, 40);
    put_le32(out, static_cast<uint32_t>(width));
    put_le32(out, static_cast<uint32_t>(signed_height));
    put_le16(out, 1);
    put_le16(out, static_cast<uint16_t>(out_bits));
    put_le32(out, compression == 1 ? 1 : 0);
    put_le32(out, static_cast<uint32_t>(data_bytes));
    put_le32(out, 0);
    put_le32(out, 0);
    put_le32(out, 0);
    put_le32(out, 0);
    out.append(b.data() + palette_at, size_t{4} * file_entries);
    out.append(size_t{4} * (palette_entries - file_entries), '\0');
    if (bits == 32) {
        for (int64_t r = 0; r < height; ++r) {
            const char* row = b.data() + data_offset + r * in_stride;
            for (int32_t x = 0; x < width; ++x) out.append(row + 4 * x, 3);
            out.append(static_cast<size_t>(out_stride - 3 * int64_t{width}), '\0');
        }
    } else if (bits < 8) {
        const int per_byte = 8 / bits, mask = (1 << bits) - 1;
        for (int64_t r = 0; r < height; ++r) {
            const auto* row = reinterpret_cast<const uint8_t*>(b.data() + data_offset + r * in_stride);
            for (int32_t x = 0; x < width; ++x) {
                const int shift = (per_byte - 1 - x % per_byte) * bits;  // leftmost pixel in the high bits
                out.push_back(static_cast<char>((row[x / per_byte] >> shift) & mask));
            }
            out.append(static_cast<size_t>(out_stride - width), '\0');
        }
    } else {
        out.append(b.data() + data_offset, static_cast<size_t>(data_bytes));
    }
    return out;
}

// ---------------------------------------------------------------- WebP

absl::StatusOr<RgbImage> decode_webp(absl::string_view b, const std::string& name) {
    const auto* data = reinterpret_cast<const uint8_t*>(b.data());
    WebPBitstreamFeatures features;
    auto explain = [&](VP8StatusCode code) -> std::string {
        switch (code) {
            case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated WebP";
            case VP8_STATUS_BITSTREAM_ERROR: return "corrupt WebP data";
            case VP8_STATUS_UNSUPPORTED_FEATURE: return "WebP feature not supported by libwebp";
            case VP8_STATUS_OUT_OF_MEMORY: return "out of memory decoding WebP";
            default: return absl::StrCat("cannot decode WebP (libwebp status ", static_cast<int>(code), ")");
        }
    };
    if (VP8StatusCode st = WebPGetFeatures(data, b.size(), &features); st != VP8_STATUS_OK)
        return bad(name, explain(st));
    if (features.has_animation) return bad(name, "animated WebP is not supported");
    if (absl::Status s = check_size(name, "WebP", features.width, features.height); !s.ok()) return s;
    RgbImage image;
    image.width = features.width;
    image.height = features.height;
    image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) return absl::InternalError("libwebp version mismatch");
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = image.pixels.data();
    config.output.u.RGBA.stride = image.width * 3;
    config.output.u.RGBA.size = image.pixels.size();
    const VP8StatusCode st = WebPDecode(data, b.size(), &config);
    WebPFreeDecBuffer(&config.output);
    if (st != VP8_STATUS_OK) return bad(name, explain(st));
    return image;
}

// ---------------------------------------------------------------- JPEG

// Scans over this many are refused: a progressive JPEG of many tiny scans costs a pass over the
// image each (libjpeg-turbo's advice for untrusted files).
constexpr int kMaxJpegScans = 1000;

// libjpeg's error handler: errors (and the warning that the data ended early) jump back to the
// setjmp of the function that called libjpeg, with the message kept.
struct JpegErrors {
    jpeg_error_mgr mgr;  // first: libjpeg sees a jpeg_error_mgr*
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX] = "";
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
    auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, e->message);
    std::longjmp(e->jump, 1);
}

// Warnings about corrupt data are ignored (libjpeg recovers, as dlib's loader let it); data
// that ends before the image does is an error, not a picture padded with grey.
void jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(cinfo);
}

void jpeg_progress(j_common_ptr cinfo) {
    const auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
    if (d->input_scan_number > kMaxJpegScans) {
        auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
        std::snprintf(e->message, sizeof e->message, "more than %d scans", kMaxJpegScans);
        std::longjmp(e->jump, 1);
    }
}

// A libjpeg decompressor with the handlers above; the functions that call libjpeg hold the
// setjmp and only plain data, so that a longjmp skips no destructor.
struct JpegReader {
    jpeg_decompress_struct cinfo;
    JpegErrors errors;
    jpeg_progress_mgr progress;
    bool created = false;

    JpegReader() {
        cinfo.err = jpeg_std_error(&errors.mgr);
        errors.mgr.error_exit = jpeg_fail;
        errors.mgr.emit_message = jpeg_message;
        progress.progress_monitor = jpeg_progress;
    }
    ~JpegReader() {
        if (created) jpeg_destroy_decompress(&cinfo);
    }
    JpegReader(const JpegReader&) = delete;
    JpegReader& operator=(const JpegReader&) = delete;

    // The header, and the output colour space: RGB (from YCbCr, RGB or grey), or CMYK (from
    // CMYK or YCCK; converted by read_pixels). False on an error (errors.message).
    bool read_header(const uint8_t* data, size_t size) {
        if (setjmp(errors.jump)) return false;
        jpeg_create_decompress(&cinfo);
        created = true;
        cinfo.progress = &progress;
        jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
        jpeg_read_header(&cinfo, TRUE);
        cinfo.out_color_space = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK ? JCS_CMYK : JCS_RGB;
        return true;
    }

    // Decodes into `rgb` (image_width * image_height * 3 bytes). False on an error.
    bool read_pixels(uint8_t* rgb) {
        if (setjmp(errors.jump)) return false;
        jpeg_start_decompress(&cinfo);
        const size_t w = cinfo.output_width;
        JSAMPARRAY cmyk = cinfo.out_color_space == JCS_CMYK
                                  ? (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                               static_cast<JDIMENSION>(w * 4), 1)
                                  : nullptr;
        // Adobe's CMYK JPEGs store the inks inverted (0 = full ink).
        const bool inverted = cinfo.saw_Adobe_marker;
        while (cinfo.output_scanline < cinfo.output_height) {
            uint8_t* out = rgb + static_cast<size_t>(cinfo.output_scanline) * w * 3;
            if (cmyk == nullptr) {
                JSAMPROW row = out;
                jpeg_read_scanlines(&cinfo, &row, 1);
                continue;
            }
            jpeg_read_scanlines(&cinfo, cmyk, 1);
            for (size_t x = 0; x < w; ++x) {
                const uint8_t* p = cmyk[0] + 4 * x;
                const uint32_t k = inverted ? p[3] : 255u - p[3];
                for (int c = 0; c < 3; ++c) {
                    const uint32_t v = inverted ? p[c] : 255u - p[c];
                    out[3 * x + c] = static_cast<uint8_t>((v * k + 127) / 255);
                }
            }
        }
        jpeg_finish_decompress(&cinfo);
        return true;
    }
};

absl::StatusOr<RgbImage> decode_jpeg(absl::string_view b, const std::string& name) {
    JpegReader reader;
    if (!reader.read_header(reinterpret_cast<const uint8_t*>(b.data()), b.size()))
        return bad(name, absl::StrCat("cannot decode JPEG: ", reader.errors.message));
    const int64_t width = reader.cinfo.image_width, height = reader.cinfo.image_height;
    if (absl::Status s = check_size(name, "JPEG", width, height); !s.ok()) return s;
    RgbImage image;
    image.width = static_cast<int>(width);
    image.height = static_cast<int>(height);
    try {
        image.pixels.resize(static_cast<size_t>(width * height) * 3);
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(name, ": out of memory decoding JPEG"));
    }
    if (!reader.read_pixels(image.pixels.data()))
        return bad(name, absl::StrCat("cannot decode JPEG: ", reader.errors.message));
    return image;
}

template <class Loader>
absl::StatusOr<RgbImage> decode_with_dlib(absl::string_view b, const std::string& name, const char* format,
                                          Loader load) {
    try {
        DlibImage m;
        load(m);
        if (m.size() == 0) return bad(name, absl::StrCat(format, " image has no pixels"));
        return internal::from_dlib(m);
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(name, ": out of memory decoding ", format));
    } catch (const std::exception& e) {
        return bad(name, absl::StrCat("cannot decode ", format, ": ", e.what()));
    }
}

}  // namespace

ImageFormat detect_image_format(absl::string_view b) {
    auto starts = [&](absl::string_view magic) { return b.substr(0, magic.size()) == magic; };
    if (starts("\xFF\xD8\xFF")) return ImageFormat::kJpeg;
    if (starts("\x89PNG\r\n\x1A\n")) return ImageFormat::kPng;
    if (starts("BM")) return ImageFormat::kBmp;
    if (b.size() >= 12 && starts("RIFF") && b.substr(8, 4) == "WEBP") return ImageFormat::kWebp;
    if (b.size() >= 2 && b[0] == 'P' && (b[1] == '2' || b[1] == '3' || b[1] == '5' || b[1] == '6') &&
        (b.size() == 2 || is_netpbm_space(b[2]) || b[2] == '#'))
        return ImageFormat::kNetpbm;
    return ImageFormat::kUnknown;
}

const char* image_format_name(ImageFormat format) {
    switch (format) {
        case ImageFormat::kJpeg: return "JPEG";
        case ImageFormat::kPng: return "PNG";
        case ImageFormat::kBmp: return "BMP";
        case ImageFormat::kWebp: return "WebP";
        case ImageFormat::kNetpbm: return "Netpbm";
        case ImageFormat::kUnknown: break;
    }
    return "unknown";
}

absl::StatusOr<RgbImage> decode_image(absl::string_view b, const std::string& name) {
    if (b.empty()) return bad(name, "empty image");
    const auto* u = reinterpret_cast<const unsigned char*>(b.data());
    switch (detect_image_format(b)) {
        case ImageFormat::kJpeg: return decode_jpeg(b, name);
        case ImageFormat::kPng:
            if (b.size() >= 24 && b.substr(12, 4) == "IHDR")
                if (absl::Status s = check_size(name, "PNG", be32(b, 16), be32(b, 20)); !s.ok()) return s;
            return decode_with_dlib(b, name, "PNG", [&](DlibImage& m) { dlib::load_png(m, u, b.size()); });
        case ImageFormat::kBmp: {
            absl::StatusOr<std::string> bmp = normalise_bmp(b, name);
            if (!bmp.ok()) return bmp.status();
            return decode_with_dlib(*bmp, name, "BMP", [&](DlibImage& m) {
                std::istringstream in(*bmp);
                dlib::load_bmp(m, in);
            });
        }
        case ImageFormat::kWebp: return decode_webp(b, name);
        case ImageFormat::kNetpbm: return NetpbmReader(b, name).read();
        case ImageFormat::kUnknown: break;
    }
    // Name formats people meet, so that "unrecognised" is not the only clue.
    auto starts = [&](absl::string_view magic) { return b.substr(0, magic.size()) == magic; };
    std::string what = "unrecognised image format";
    if (starts("GIF8")) {
        what = "GIF is not supported";
    } else if (starts("II*\0") || starts("MM\0*")) {
        what = "TIFF is not supported";
    } else if (b.size() >= 12 && b.substr(4, 4) == "ftyp") {
        what = absl::StrCat("ISO media (", b.substr(8, 4), ", e.g. HEIC or AVIF) is not supported");
    } else if (b.size() >= 2 && b[0] == 'P' && (b[1] == '1' || b[1] == '4')) {
        what = "PBM bitmap (P1/P4) is not supported";
    } else if (starts("P7")) {
        what = "PAM (P7) is not supported";
    } else {
        absl::StrAppend(&what, " (first bytes");
        for (size_t i = 0; i < std::min<size_t>(b.size(), 4); ++i)
            absl::StrAppend(&what, absl::StrFormat(" %02x", static_cast<uint8_t>(b[i])));
        absl::StrAppend(&what, ")");
    }
    return bad(name, absl::StrCat(what, "; supported: ", kSupportedImageFormats));
}

absl::StatusOr<RgbImage> decode_image_file(const std::string& path) {
    absl::StatusOr<std::string> bytes = read_whole_file(path, kMaxImageFileBytes);
    if (!bytes.ok()) return bytes.status();
    if (bytes->empty()) return bad(path, "empty image file");
    return decode_image(*bytes, path);
}

absl::Status write_png(const RgbImage& image, const std::string& path) {
    if (image.width <= 0 || image.height <= 0) return absl::InvalidArgumentError("cannot write an empty image");
    try {
        dlib::save_png(internal::to_dlib(image), path);
    } catch (const std::exception& e) {
        return absl::InternalError(absl::StrCat("cannot write ", path, ": ", e.what()));
    }
    return absl::OkStatus();
}

absl::Status write_jpeg(const RgbImage& image, const std::string& path, int quality) {
    if (image.width <= 0 || image.height <= 0) return absl::InvalidArgumentError("cannot write an empty image");
    if (quality < 1 || quality > 100) return absl::InvalidArgumentError(absl::StrCat("JPEG quality must be 1 to 100, got ", quality));
    try {
        dlib::save_jpeg(internal::to_dlib(image), path, quality);
    } catch (const std::exception& e) {
        return absl::InternalError(absl::StrCat("cannot write ", path, ": ", e.what()));
    }
    return absl::OkStatus();
}

absl::StatusOr<RgbImage> resize_image(const RgbImage& image, int width, int height) {
    if (image.width <= 0 || image.height <= 0) return absl::InvalidArgumentError("cannot resize an empty image");
    if (width <= 0 || height <= 0 || static_cast<int64_t>(width) * height > kMaxImagePixels)
        return absl::InvalidArgumentError(absl::StrCat("cannot resize to ", width, "x", height, " (1 to ",
                                                       kMaxImagePixels, " pixels)"));
    DlibImage out(height, width);
    dlib::resize_image(internal::to_dlib(image), out);
    return internal::from_dlib(out);
}

}  // namespace pslerp
