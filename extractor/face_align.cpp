// HOG detection, 68 landmarks and face chips with dlib (image decoding is image_io.cpp).
#include "extractor/face_align.h"

#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "extractor/dlib_image.h"

namespace pslerp {

using internal::DlibImage;
using internal::from_dlib;
using internal::to_dlib;

struct FaceAligner::Impl {
    AlignOptions options;
    dlib::shape_predictor predictor;
    mutable std::mutex mutex;
    mutable std::vector<std::unique_ptr<dlib::frontal_face_detector>> idle;

    std::unique_ptr<dlib::frontal_face_detector> acquire() const {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (!idle.empty()) {
                auto d = std::move(idle.back());
                idle.pop_back();
                return d;
            }
        }
        return std::make_unique<dlib::frontal_face_detector>(dlib::get_frontal_face_detector());
    }
    void release(std::unique_ptr<dlib::frontal_face_detector> d) const {
        std::lock_guard<std::mutex> lock(mutex);
        idle.push_back(std::move(d));
    }

    // Detects on `img` upsampled `times` times; boxes come back in `img` coordinates.
    static std::vector<dlib::rectangle> detect(dlib::frontal_face_detector& detector, const DlibImage& img, int times) {
        if (times <= 0) return detector(img);
        DlibImage up = img;
        for (int i = 0; i < times; ++i) dlib::pyramid_up(up);
        std::vector<dlib::rectangle> boxes = detector(up);
        const double f = 1.0 / (1 << times);
        for (auto& r : boxes)
            r = dlib::rectangle(static_cast<long>(r.left() * f), static_cast<long>(r.top() * f),
                                static_cast<long>(r.right() * f), static_cast<long>(r.bottom() * f));
        return boxes;
    }
};

FaceAligner::FaceAligner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FaceAligner::~FaceAligner() = default;

absl::StatusOr<std::unique_ptr<FaceAligner>> FaceAligner::create(const AlignOptions& options) {
    if (options.chip_size < 8) return absl::InvalidArgumentError("chip size must be at least 8");
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

absl::StatusOr<AlignedFace> FaceAligner::align(const RgbImage& image) const {
    const AlignOptions& opt = impl_->options;
    DlibImage img = to_dlib(image);
    int times = opt.upsample;
    if (times < 0) times = static_cast<int64_t>(image.width) * image.height < 600 * 600 ? 1 : 0;

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
    return face;
}

}  // namespace pslerp
