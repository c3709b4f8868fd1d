// The body of hog_detector.cpp and hog_detector_avx2.cpp (see hog_detector.h); include only
// from those two, after defining PSLERP_HOG_FACTORY (the name of the factory to define).
//
// The AVX2 copy renames dlib's namespace (hog_detector_avx2.cpp), so that its instantiations
// of dlib's templates are its own symbols: otherwise the linker would keep one copy of each
// for both, and the baseline path could run AVX2 code (or the AVX2 path baseline code).
// Only header code of dlib is used here: the detector's weights come from the baseline copy
// as serialized bytes (frontal_face_bytes()), not from dlib's compiled base64 decoder.
#include <dlib/image_processing/object_detector.h>
#include <dlib/image_processing/scan_fhog_pyramid.h>

#include <sstream>

#include "extractor/hog_detector.h"

namespace pslerp::internal {

/// dlib's frontal face detector serialized (made once by the baseline copy).
const std::string& frontal_face_bytes();

namespace {

// A packed RGB buffer seen as a dlib image without a copy (rgb_pixel is 3 packed bytes). In an
// anonymous namespace: every template instantiated on it is private to this file.
struct RgbBuffer {
    const uint8_t* data;
    long width, height, stride;
};
long num_rows(const RgbBuffer& b) { return b.height; }
long num_columns(const RgbBuffer& b) { return b.width; }
const void* image_data(const RgbBuffer& b) { return b.data; }
long width_step(const RgbBuffer& b) { return b.stride; }

}  // namespace
}  // namespace pslerp::internal

template <>
struct dlib::image_traits<pslerp::internal::RgbBuffer> {
    typedef dlib::rgb_pixel pixel_type;
};

namespace pslerp::internal {
namespace {

static_assert(sizeof(dlib::rgb_pixel) == 3);

class Detector final : public HogDetector {
  public:
    explicit Detector(const std::string& bytes) {
        std::istringstream in(bytes);
        dlib::deserialize(detector_, in);
    }
    std::vector<FaceBox> detect(const uint8_t* rgb, long width, long height, long stride) override {
        const std::vector<dlib::rectangle> found = detector_(RgbBuffer{rgb, width, height, stride});
        std::vector<FaceBox> boxes(found.size());
        for (size_t i = 0; i < found.size(); ++i)
            boxes[i] = FaceBox{found[i].left(), found[i].top(), found[i].right(), found[i].bottom()};
        return boxes;
    }

  private:
    dlib::object_detector<dlib::scan_fhog_pyramid<dlib::pyramid_down<6>>> detector_;
};

}  // namespace

std::unique_ptr<HogDetector> PSLERP_HOG_FACTORY() { return std::make_unique<Detector>(frontal_face_bytes()); }

}  // namespace pslerp::internal
