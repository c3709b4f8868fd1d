// dlib's HOG frontal face detector behind a plain interface, compiled twice: for the x86-64
// baseline (hog_detector.cpp) and with AVX2 + FMA (hog_detector_avx2.cpp, used only when the
// CPU reports both), so that dlib's SIMD types (chosen from the compiler's __AVX__ etc.) run
// eight lanes wide where they can. Both copies are the same source, hog_detector_body.h.
// Internal to the extractor (face_align.cpp); no dlib type crosses this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pslerp::internal {

/// A detection box in the pixels of the image given to detect(), corners inclusive.
struct FaceBox {
    long left = 0, top = 0, right = 0, bottom = 0;
    long area() const { return (right - left + 1) * (bottom - top + 1); }
};

/// Not thread-safe (dlib keeps scratch space in the detector): one per thread at a time.
class HogDetector {
  public:
    virtual ~HogDetector() = default;
    /// Faces in a packed 8-bit RGB image of width x height pixels, rows `stride` bytes apart.
    /// May throw (dlib's errors, std::bad_alloc).
    virtual std::vector<FaceBox> detect(const uint8_t* rgb, long width, long height, long stride) = 0;
};

/// The copy for this CPU: AVX2 when it has AVX2 and FMA, else the baseline.
std::unique_ptr<HogDetector> make_hog_detector();
/// "avx2" or "baseline": which copy make_hog_detector() returns (benchmarks report it).
const char* hog_detector_simd_level();

/// Both copies, for tests comparing them; make_hog_detector_avx2() is null when the CPU
/// lacks AVX2 or FMA.
std::unique_ptr<HogDetector> make_hog_detector_baseline();
std::unique_ptr<HogDetector> make_hog_detector_avx2();

}  // namespace pslerp::internal
