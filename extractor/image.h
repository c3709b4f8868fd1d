// Images and face chips as plain buffers, so that only face_align.cpp sees dlib.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pslerp {

/// An 8-bit RGB image, row-major, interleaved (HWC).
struct RgbImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;  ///< size = height * width * 3
};

/// Decodes a JPEG or PNG file (grey and RGBA become RGB). Errors for a missing, empty,
/// truncated or unrecognised file.
absl::StatusOr<RgbImage> DecodeImageFile(const std::string& path);

/// face-api's preprocessing of an already-cropped face: zero-pad to a centred square (the
/// extra pixel of an odd difference goes before the image), then resize bilinearly to
/// size x size with TensorFlow.js's legacy sampling (no corner alignment, no half-pixel
/// offset). Returns size * size * 3 floats (HWC, 0..255).
std::vector<float> PadToSquareAndResize(const RgbImage& image, int size);

/// The image as floats (HWC, 0..255), no resampling.
std::vector<float> ToFloat(const RgbImage& image);

}  // namespace pslerp

namespace pslerp {

/// Writes a PNG (for inspecting chips and for tests).
absl::Status WritePng(const RgbImage& image, const std::string& path);

}  // namespace pslerp
