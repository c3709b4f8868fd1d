#include "extractor/image.h"

#include <algorithm>
#include <cmath>

namespace pslerp {

std::vector<float> to_float(const RgbImage& image) { return std::vector<float>(image.pixels.begin(), image.pixels.end()); }

std::vector<float> pad_to_square_and_resize(const RgbImage& image, int size) {
    const int side = std::max(image.width, image.height);
    // tfjs padToSquare(isCenterImage=true): append round(diff / 2), prepend the rest.
    const int diff_w = side - image.width, diff_h = side - image.height;
    const int before_x = diff_w - static_cast<int>(std::lround(diff_w * 0.5));
    const int before_y = diff_h - static_cast<int>(std::lround(diff_h * 0.5));
    auto at = [&](int y, int x, int c) -> float {
        const int iy = y - before_y, ix = x - before_x;
        if (iy < 0 || ix < 0 || iy >= image.height || ix >= image.width) return 0.f;
        return image.pixels[(static_cast<size_t>(iy) * image.width + ix) * 3 + c];
    };
    std::vector<float> out(static_cast<size_t>(size) * size * 3);
    const double ratio = static_cast<double>(side) / size;
    for (int r = 0; r < size; ++r) {
        const double src_r = ratio * r;
        const int r0 = static_cast<int>(std::floor(src_r));
        const int r1 = std::min(side - 1, static_cast<int>(std::ceil(src_r)));
        const float fr = static_cast<float>(src_r - r0);
        for (int c = 0; c < size; ++c) {
            const double src_c = ratio * c;
            const int c0 = static_cast<int>(std::floor(src_c));
            const int c1 = std::min(side - 1, static_cast<int>(std::ceil(src_c)));
            const float fc = static_cast<float>(src_c - c0);
            for (int ch = 0; ch < 3; ++ch) {
                const float tl = at(r0, c0, ch), tr = at(r0, c1, ch), bl = at(r1, c0, ch), br = at(r1, c1, ch);
                const float top = tl + (tr - tl) * fc, bottom = bl + (br - bl) * fc;
                out[(static_cast<size_t>(r) * size + c) * 3 + ch] = top + (bottom - top) * fr;
            }
        }
    }
    return out;
}

}  // namespace pslerp
