// RgbImage <-> dlib's RGB matrix, for the two translation units that use dlib (image_io.cpp,
// face_align.cpp). Not part of the extractor's interface: include only from those.
#pragma once

#include <dlib/matrix.h>
#include <dlib/pixel.h>

#include <cstddef>
#include <cstdint>

#include "extractor/image.h"

namespace pslerp::internal {

using DlibImage = dlib::matrix<dlib::rgb_pixel>;

inline DlibImage to_dlib(const RgbImage& image) {
    DlibImage m(image.height, image.width);
    for (int y = 0; y < image.height; ++y)
        for (int x = 0; x < image.width; ++x) {
            const uint8_t* p = &image.pixels[(static_cast<size_t>(y) * image.width + x) * 3];
            m(y, x) = dlib::rgb_pixel(p[0], p[1], p[2]);
        }
    return m;
}

inline RgbImage from_dlib(const DlibImage& m) {
    RgbImage image;
    image.height = static_cast<int>(m.nr());
    image.width = static_cast<int>(m.nc());
    image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
    for (int y = 0; y < image.height; ++y)
        for (int x = 0; x < image.width; ++x) {
            uint8_t* p = &image.pixels[(static_cast<size_t>(y) * image.width + x) * 3];
            p[0] = m(y, x).red;
            p[1] = m(y, x).green;
            p[2] = m(y, x).blue;
        }
    return image;
}

}  // namespace pslerp::internal
