// HOG detection, 68 landmarks and face chips with dlib (image decoding is image_io.cpp).
#include "extractor/face_align.h"

#include <dlib/image_processing.h>
#include <dlib/image_transforms.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "extractor/dlib_image.h"
#include "extractor/hog_detector.h"
#include "util/timing.h"

namespace pslerp {

using internal::DlibImage;
using internal::from_dlib;
using internal::to_dlib;

namespace {

// detect_max_side: twice the detector's 80 px window at least.
constexpr int kMinDetectSide = 160;
constexpr int kMaxDetectSide = 1 << 16;

// Packed 8-bit RGB pixels, rows `width` pixels apart: an RgbImage or a DlibImage (dlib's
// matrix<rgb_pixel> is 3 packed bytes a pixel, row-major).
struct Packed {
    const uint8_t* pixels;
    long width, height;
};
static_assert(sizeof(dlib::rgb_pixel) == 3);
Packed packed(const RgbImage& image) { return {image.pixels.data(), image.width, image.height}; }
Packed packed(const DlibImage& image) {
    return {reinterpret_cast<const uint8_t*>(image.size() > 0 ? &image(0, 0) : nullptr), image.nc(), image.nr()};
}

// Detects with a pooled HogDetector on a packed image; boxes in its pixels.
std::vector<dlib::rectangle> run_detector(internal::HogDetector& detector, const Packed& image) {
    std::vector<dlib::rectangle> boxes;
    for (const internal::FaceBox& b : detector.detect(image.pixels, image.width, image.height, image.width * 3))
        boxes.emplace_back(b.left, b.top, b.right, b.bottom);
    return boxes;
}

// A reduced copy of an image for detection, inside a zero border, and the map from its
// coordinates back to the image's: x = (x' - border) * fx + ox.
struct Reduced {
    DlibImage img;
    long border = 0;
    double fx = 1, fy = 1, ox = 0, oy = 0;

    dlib::drectangle to_image(const dlib::rectangle& r) const {
        return dlib::drectangle((r.left() - border) * fx + ox, (r.top() - border) * fy + oy,
                                (r.right() - border) * fx + ox, (r.bottom() - border) * fy + oy);
    }
};

// `region` of `image` (inside it) averaged over blocks of f x f pixels: pixel j of the result
// is the mean of pixels [left + j f, left + (j + 1) f) (fewer at the right and bottom edges),
// rounded to nearest. The rows of a block are summed first (one pass over contiguous bytes,
// which the compiler vectorises), then the columns.
DlibImage block_average(const Packed& image, const dlib::rectangle& region, int f) {
    const long rw = region.width(), w = (rw + f - 1) / f, h = (region.height() + f - 1) / f;
    DlibImage out(h, w);
    std::vector<uint32_t> column_sums(static_cast<size_t>(rw) * 3);
    for (long by = 0; by < h; ++by) {
        std::fill(column_sums.begin(), column_sums.end(), 0);
        const long y0 = region.top() + by * f, y1 = std::min(y0 + f, region.bottom() + 1);
        for (long y = y0; y < y1; ++y) {
            const uint8_t* p = image.pixels + (static_cast<size_t>(y) * image.width + region.left()) * 3;
            uint32_t* s = column_sums.data();
            for (long i = 0; i < rw * 3; ++i) s[i] += p[i];
        }
        for (long bx = 0; bx < w; ++bx) {
            const long x0 = bx * f, x1 = std::min(x0 + f, rw);
            uint64_t r = 0, g = 0, b = 0;
            for (long x = x0; x < x1; ++x) {
                r += column_sums[x * 3];
                g += column_sums[x * 3 + 1];
                b += column_sums[x * 3 + 2];
            }
            const uint64_t n = static_cast<uint64_t>(y1 - y0) * (x1 - x0);
            out(by, bx) = dlib::rgb_pixel(static_cast<uint8_t>((r + n / 2) / n), static_cast<uint8_t>((g + n / 2) / n),
                                          static_cast<uint8_t>((b + n / 2) / n));
        }
    }
    return out;
}

// The size of the first level of the detector's pyramid (dlib::pyramid_down<6>, 5/6 a level)
// of a width x height image whose larger side is at most max_side. Reducing to exactly that
// size keeps the detector's box sizes (multiples of 6/5 of its window) those of the
// full-resolution detection.
std::pair<long, long> pyramid_level_within(long width, long height, long max_side) {
    while (std::max(width, height) > max_side) {
        width = 5 * width / 6;
        height = 5 * height / 6;
    }
    return {std::max(1L, width), std::max(1L, height)};  // a side of a few pixels stays one
}

// `image` reduced to w x h: block-averaged (f the largest integer keeping both sides >= w x h:
// no pixel skipped, no aliasing), then resampled bilinearly to the exact size; framed by
// `border` pixels of zeros.
Reduced reduce(const Packed& image, long w, long h, long border) {
    const int f = static_cast<int>(std::max(1L, std::min(image.width / w, image.height / h)));
    const DlibImage blocks = block_average(image, dlib::rectangle(0, 0, image.width - 1, image.height - 1), f);
    const long bw = blocks.nc(), bh = blocks.nr();
    Reduced r;
    r.border = border;
    r.img.set_size(h, w);
    dlib::resize_image(blocks, r.img);  // corner-aligned: x_block = x * (bw - 1) / (w - 1)
    if (border > 0) {
        DlibImage framed(h + 2 * border, w + 2 * border);
        framed = dlib::rgb_pixel(0, 0, 0);
        dlib::set_subm(framed, border, border, h, w) = r.img;
        r.img.swap(framed);
    }
    r.fx = f * (w > 1 ? (bw - 1.0) / (w - 1.0) : 1.0);
    r.fy = f * (h > 1 ? (bh - 1.0) / (h - 1.0) : 1.0);
    r.ox = r.oy = (f - 1) / 2.0;
    return r;
}

// An RgbImage seen as a dlib image without a copy (dlib's rgb_pixel is 3 packed bytes, the
// same layout): for the shape predictor on full-resolution pixels.
struct RgbView {
    const RgbImage* image;
    long nr() const { return image->height; }
    long nc() const { return image->width; }
};
long num_rows(const RgbView& v) { return v.nr(); }
long num_columns(const RgbView& v) { return v.nc(); }
const void* image_data(const RgbView& v) { return v.image->pixels.data(); }
long width_step(const RgbView& v) { return static_cast<long>(v.image->width) * 3; }

}  // namespace
}  // namespace pslerp

template <>
struct dlib::image_traits<pslerp::RgbView> {
    typedef dlib::rgb_pixel pixel_type;
};

namespace pslerp {

struct FaceAligner::Impl {
    AlignOptions options;
    dlib::shape_predictor predictor;
    mutable std::mutex mutex;
    mutable std::vector<std::unique_ptr<internal::HogDetector>> idle;

    std::unique_ptr<internal::HogDetector> acquire() const {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (!idle.empty()) {
                auto d = std::move(idle.back());
                idle.pop_back();
                return d;
            }
        }
        return internal::make_hog_detector();
    }
    void release(std::unique_ptr<internal::HogDetector> d) const {
        std::lock_guard<std::mutex> lock(mutex);
        idle.push_back(std::move(d));
    }

    // Detects on `img` upsampled `times` times; boxes come back in `img` coordinates.
    static std::vector<dlib::rectangle> detect(internal::HogDetector& detector, const DlibImage& img, int times) {
        if (times <= 0) return run_detector(detector, packed(img));
        DlibImage up = img;
        for (int i = 0; i < times; ++i) dlib::pyramid_up(up);
        std::vector<dlib::rectangle> boxes = run_detector(detector, packed(up));
        const double f = 1.0 / (1 << times);
        for (auto& r : boxes)
            r = dlib::rectangle(static_cast<long>(r.left() * f), static_cast<long>(r.top() * f),
                                static_cast<long>(r.right() * f), static_cast<long>(r.bottom() * f));
        return boxes;
    }

    // align() of an image larger than detect_max_side: detection on a reduced copy (the retry
    // on a reduced copy of the framed image, also within detect_max_side), the box mapped
    // back, the landmarks and the chip from the full-resolution pixels around it. Outside the
    // image is zero, as in the framed image of the full-resolution retry.
    absl::StatusOr<AlignedFace> align_reduced(const RgbImage& image, AlignTiming* timing) const {
        const double t0 = thread_cpu_seconds();
        const int side = options.detect_max_side;
        auto detector = acquire();
        std::vector<dlib::rectangle> boxes;
        Reduced reduced;
        try {
            const auto [w, h] = pyramid_level_within(image.width, image.height, side);
            reduced = reduce(packed(image), w, h, 0);
            boxes = run_detector(*detector, packed(reduced.img));
            if (boxes.empty() && options.retry_border > 0) {
                // The framed image of the full-resolution retry, reduced to a level of its
                // pyramid within `side`. (A smaller copy, enough for a face that fills the
                // photo, found fewer faces: bench/RESULTS.md, section 6.)
                const long border = static_cast<long>(std::max(image.width, image.height) * options.retry_border);
                const long fw = image.width + 2 * border, fh = image.height + 2 * border;
                const auto [lw, lh] = pyramid_level_within(fw, fh, side);
                const double scale = static_cast<double>(lw) / fw;
                const long iw = std::max(1L, std::lround(image.width * scale)), ih = std::max(1L, std::lround(image.height * scale));
                reduced = reduce(packed(image), iw, ih, std::lround(border * scale));
                boxes = run_detector(*detector, packed(reduced.img));
            }
        } catch (const std::exception& e) {
            release(std::move(detector));
            return absl::InternalError(absl::StrCat("face detection failed: ", e.what()));
        }
        release(std::move(detector));
        const double t1 = thread_cpu_seconds();
        if (timing != nullptr) timing->detect = t1 - t0;
        if (boxes.empty()) return absl::NotFoundError("no face detected");

        auto largest = std::max_element(boxes.begin(), boxes.end(), [](const dlib::rectangle& a, const dlib::rectangle& b) {
            return a.area() < b.area();
        });
        const dlib::drectangle d = reduced.to_image(*largest);
        const dlib::rectangle box(std::lround(d.left()), std::lround(d.top()), std::lround(d.right()), std::lround(d.bottom()));
        // The landmarks from the full-resolution pixels (outside the image reads as zero, as in
        // the framed image); the chip from its own (rotated) rectangle of them, block-averaged
        // to about twice the chip's resolution first (instead of dlib's 2x pyramid of the
        // whole image: one pass over the rectangle's pixels).
        const dlib::full_object_detection shape = predictor(RgbView{&image}, box);
        dlib::chip_details details = dlib::get_face_chip_details(shape, options.chip_size, options.chip_padding);
        const dlib::drectangle& cr = details.rect;
        const double radius = 0.5 * std::hypot(cr.width(), cr.height()) + 2;
        const dlib::dpoint centre = dlib::center(cr);
        const dlib::rectangle area = dlib::rectangle(std::lround(centre.x() - radius), std::lround(centre.y() - radius),
                                                     std::lround(centre.x() + radius), std::lround(centre.y() + radius))
                                             .intersect(dlib::rectangle(0, 0, image.width - 1, image.height - 1));
        if (area.is_empty()) return absl::NotFoundError("no face detected inside the image");
        const int f = std::max(1, static_cast<int>(cr.width() / (2.0 * options.chip_size)));
        const double shift = (f - 1) / 2.0;
        details.rect = dlib::drectangle((cr.left() - area.left() - shift) / f, (cr.top() - area.top() - shift) / f,
                                        (cr.right() - area.left() - shift) / f, (cr.bottom() - area.top() - shift) / f);
        DlibImage chip;
        dlib::extract_image_chip(block_average(packed(image), area, f), details, chip);

        AlignedFace face;
        face.chip = from_dlib(chip);
        face.num_faces = static_cast<int>(boxes.size());
        face.left = static_cast<int>(box.left());
        face.top = static_cast<int>(box.top());
        face.right = static_cast<int>(box.right());
        face.bottom = static_cast<int>(box.bottom());
        if (timing != nullptr) timing->landmarks = thread_cpu_seconds() - t1;
        return face;
    }
};

const char* face_detector_simd_level() { return internal::hog_detector_simd_level(); }

FaceAligner::FaceAligner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FaceAligner::~FaceAligner() = default;

absl::StatusOr<std::unique_ptr<FaceAligner>> FaceAligner::create(const AlignOptions& options) {
    if (options.chip_size < 8) return absl::InvalidArgumentError("chip size must be at least 8");
    if (options.upsample < -1 || options.upsample > 3)
        return absl::InvalidArgumentError(absl::StrCat("upsample must be -1 (automatic) or 0 to 3, got ", options.upsample));
    if (!(options.retry_border >= 0 && options.retry_border <= 1))
        return absl::InvalidArgumentError(absl::StrCat("retry_border must be in [0, 1], got ", options.retry_border));
    if (options.detect_max_side != 0 && (options.detect_max_side < kMinDetectSide || options.detect_max_side > kMaxDetectSide))
        return absl::InvalidArgumentError(absl::StrCat("detect_max_side must be 0 (full resolution) or ", kMinDetectSide,
                                                       " to ", kMaxDetectSide, " pixels, got ", options.detect_max_side));
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(options.landmarks_path, ec))
        return absl::NotFoundError(absl::StrCat("cannot open the landmark model ", options.landmarks_path,
                                                " (Debian: apt-get install libdlib-data)"));
    try {
        dlib::deserialize(options.landmarks_path) >> impl->predictor;
    } catch (const std::exception& e) {
        return absl::InvalidArgumentError(absl::StrCat("cannot read the landmark model ", options.landmarks_path, ": ", e.what()));
    }
    if (impl->predictor.num_parts() != 68)
        return absl::InvalidArgumentError(absl::StrCat(options.landmarks_path, " is not a 68-point shape predictor"));
    return std::unique_ptr<FaceAligner>(new FaceAligner(std::move(impl)));
}

absl::StatusOr<AlignedFace> FaceAligner::align(const RgbImage& image, AlignTiming* timing) const {
    const AlignOptions& opt = impl_->options;
    int times = opt.upsample;
    if (times < 0) times = static_cast<int64_t>(image.width) * image.height < 600 * 600 ? 1 : 0;
    if (times == 0 && opt.detect_max_side > 0 && std::max(image.width, image.height) > opt.detect_max_side)
        return impl_->align_reduced(image, timing);

    const double t0 = thread_cpu_seconds();
    DlibImage img = to_dlib(image);
    auto detector = impl_->acquire();
    std::vector<dlib::rectangle> boxes;
    long offset = 0;
    const DlibImage* source = &img;
    DlibImage framed;
    try {
        boxes = Impl::detect(*detector, img, times);
        if (boxes.empty() && opt.retry_border > 0) {
            offset = static_cast<long>(std::max(image.width, image.height) * opt.retry_border);
            framed.set_size(img.nr() + 2 * offset, img.nc() + 2 * offset);
            framed = dlib::rgb_pixel(0, 0, 0);
            dlib::set_subm(framed, offset, offset, img.nr(), img.nc()) = img;
            source = &framed;
            boxes = Impl::detect(*detector, framed, times);
        }
    } catch (const std::exception& e) {
        impl_->release(std::move(detector));
        return absl::InternalError(absl::StrCat("face detection failed: ", e.what()));
    }
    impl_->release(std::move(detector));
    const double t1 = thread_cpu_seconds();
    if (timing != nullptr) timing->detect = t1 - t0;
    if (boxes.empty()) return absl::NotFoundError("no face detected");

    auto largest = std::max_element(boxes.begin(), boxes.end(),
                                    [](const dlib::rectangle& a, const dlib::rectangle& b) { return a.area() < b.area(); });
    dlib::full_object_detection shape = impl_->predictor(*source, *largest);
    DlibImage chip;
    dlib::extract_image_chip(*source, dlib::get_face_chip_details(shape, opt.chip_size, opt.chip_padding), chip);

    AlignedFace face;
    face.chip = from_dlib(chip);
    face.num_faces = static_cast<int>(boxes.size());
    face.left = static_cast<int>(largest->left() - offset);
    face.top = static_cast<int>(largest->top() - offset);
    face.right = static_cast<int>(largest->right() - offset);
    face.bottom = static_cast<int>(largest->bottom() - offset);
    if (timing != nullptr) timing->landmarks = thread_cpu_seconds() - t1;
    return face;
}

}  // namespace pslerp
