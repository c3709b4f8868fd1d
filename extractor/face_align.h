// Face detection (dlib's HOG frontal detector), 68 landmarks and dlib's face-chip alignment:
// the similarity transform to dlib's mean face that the face-api / dlib network was trained on.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "extractor/image.h"

namespace pslerp {

inline constexpr char kDefaultLandmarksPath[] = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";

struct AlignOptions {
    std::string landmarks_path = kDefaultLandmarksPath;  ///< dlib's 68-point shape predictor
    int chip_size = 150;                                 ///< side of the aligned chip
    double chip_padding = 0.25;                          ///< dlib's get_face_chip_details padding
    /// Times the image is doubled before detection (HOG finds faces of about 80 px and up).
    /// -1: once when the image has fewer than 600 x 600 pixels, else never.
    int upsample = -1;
    /// When nothing is found, detect again on the image framed by a zero border of this
    /// fraction of its larger side (finds faces that fill a tight crop); 0 disables. 0 to 1.
    double retry_border = 0.25;
    /// Detect on a reduced copy: an image whose larger side exceeds this (and that is not
    /// upsampled) is reduced to this side (block average, then bilinear) for detection, and for
    /// the retry its framed version likewise; the box is mapped back, and the landmarks and
    /// the chip come from the full-resolution pixels around it. Faces smaller than about
    /// 80 * (larger side) / detect_max_side pixels are then missed (200 px in an 1800 px
    /// photo at 720). Images within the bound take the full-resolution path unchanged.
    /// 0: always full resolution; else 160 to 65536. Default measured: bench/RESULTS.md, section 6.
    int detect_max_side = 720;
};

/// Which copy of dlib's HOG detector runs on this CPU: "avx2" or "baseline" (benchmarks say it).
const char* face_detector_simd_level();

/// CPU seconds one align() call spent (its thread), for throughput figures (see ExtractStats).
struct AlignTiming {
    double detect = 0;     ///< conversion, reduction, detection (with the retry)
    double landmarks = 0;  ///< the 68 landmarks and the chip
};

/// A detected and aligned face.
struct AlignedFace {
    RgbImage chip;       ///< chip_size x chip_size
    int num_faces = 0;   ///< faces the detector found; the largest was aligned
    int left = 0, top = 0, right = 0, bottom = 0;  ///< its detection box in image pixels
};

/// Thread safety: align() may be called from several threads at once (detectors are pooled,
/// the shape predictor is read-only).
class FaceAligner {
  public:
    static absl::StatusOr<std::unique_ptr<FaceAligner>> create(const AlignOptions& options);
    ~FaceAligner();

    /// NotFound when no face is detected; the chip otherwise. `timing`, if not null, receives
    /// the seconds spent (also when no face is found).
    absl::StatusOr<AlignedFace> align(const RgbImage& image, AlignTiming* timing = nullptr) const;

  private:
    struct Impl;
    explicit FaceAligner(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace pslerp
