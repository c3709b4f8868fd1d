// Images and face chips as plain buffers, so that only image_io.cpp and face_align.cpp see
// dlib (and only image_io.cpp libwebp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pslerp {

/// An 8-bit RGB image, row-major, interleaved (HWC).
struct RgbImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;  ///< size = height * width * 3
};

/// The encodings decode_image() reads, told apart by their first bytes (magic), never by a
/// file name.
enum class ImageFormat {
    kUnknown,
    kJpeg,    ///< FF D8 FF (libjpeg; grey, YCbCr, RGB, CMYK and YCCK become RGB)
    kPng,     ///< 89 'PNG' 0D 0A 1A 0A (dlib / libpng)
    kBmp,     ///< 'BM' (via dlib: 1-, 4-, 8-bit palette, 8-bit RLE, 24-, 32-bit; V3-V5 headers)
    kWebp,    ///< 'RIFF' size 'WEBP' (libwebp; lossy, lossless, alpha dropped; not animated)
    kNetpbm,  ///< 'P2', 'P3', 'P5', 'P6' (PGM / PPM, plain or raw, maxval 1..65535)
};

/// What decode_image() accepts, for error messages and usage texts.
inline constexpr char kSupportedImageFormats[] = "JPEG, PNG, BMP, WebP, PGM/PPM (Netpbm P2, P3, P5, P6)";

/// Largest image decoded: width * height (64 Mpixel), checked from the header before any
/// pixel buffer is allocated (Netpbm, BMP, WebP, PNG).
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;
/// Largest image file read.
inline constexpr int64_t kMaxImageFileBytes = int64_t{1} << 30;

/// The format of an encoded image from its first bytes; kUnknown if none of the above
/// (including P1/P4 bitmaps and P7 PAM).
ImageFormat detect_image_format(absl::string_view bytes);
/// "JPEG", "PNG", "BMP", "WebP", "Netpbm" or "unknown".
const char* image_format_name(ImageFormat format);

/// Decodes an encoded image held in memory: the format comes from the bytes. Grey becomes
/// RGB, alpha is dropped. Errors (InvalidArgument) start with `name` (a file path, say) and say
/// what is wrong: unrecognised format (listing the supported ones), truncated data, bad
/// header fields, dimensions over kMaxImagePixels.
absl::StatusOr<RgbImage> decode_image(absl::string_view bytes, const std::string& name);

/// Reads and decodes a file (see decode_image). Every error starts with "<path>: ". NotFound
/// for a missing file; InvalidArgument for something that is not a regular file, an empty or
/// oversized file, or undecodable bytes.
absl::StatusOr<RgbImage> decode_image_file(const std::string& path);

/// Writes a PNG (for inspecting chips and for tests).
absl::Status write_png(const RgbImage& image, const std::string& path);
/// Writes a JPEG of `quality` 1..100 (test and benchmark photos).
absl::Status write_jpeg(const RgbImage& image, const std::string& path, int quality = 90);
/// The image resampled bilinearly (dlib) to width x height (1 to kMaxImagePixels pixels).
absl::StatusOr<RgbImage> resize_image(const RgbImage& image, int width, int height);

/// face-api's preprocessing of an already-cropped face: zero-pad to a centred square (the
/// extra pixel of an odd difference goes before the image), then resize bilinearly to
/// size x size with TensorFlow.js's legacy sampling (no corner alignment, no half-pixel
/// offset). Returns size * size * 3 floats (HWC, 0..255).
std::vector<float> pad_to_square_and_resize(const RgbImage& image, int size);

/// The image as floats (HWC, 0..255), no resampling.
std::vector<float> to_float(const RgbImage& image);

}  // namespace pslerp
