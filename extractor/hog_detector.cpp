// The baseline copy of the HOG detector (hog_detector_body.h), the dispatch, and the
// detector's serialized weights for both copies.
#include "extractor/hog_detector.h"

#include <dlib/image_processing/frontal_face_detector.h>

#include <sstream>

#define PSLERP_HOG_FACTORY make_hog_detector_baseline
#include "extractor/hog_detector_body.h"

namespace pslerp::internal {
namespace {

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

}  // namespace

const std::string& frontal_face_bytes() {
    static const std::string bytes = [] {
        std::ostringstream out;
        dlib::serialize(dlib::get_frontal_face_detector(), out);
        return out.str();
    }();
    return bytes;
}

std::unique_ptr<HogDetector> make_hog_detector() {
    if (std::unique_ptr<HogDetector> d = make_hog_detector_avx2()) return d;
    return make_hog_detector_baseline();
}

const char* hog_detector_simd_level() { return cpu_has_avx2_fma() ? "avx2" : "baseline"; }

// Defined in hog_detector_avx2.cpp; called only on a CPU that has both.
std::unique_ptr<HogDetector> make_hog_detector_avx2_unchecked();

std::unique_ptr<HogDetector> make_hog_detector_avx2() {
    if (!cpu_has_avx2_fma()) return nullptr;
    return make_hog_detector_avx2_unchecked();
}

}  // namespace pslerp::internal
