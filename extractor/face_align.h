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
    /// fraction of its larger side (finds faces that fill a tight crop); 0 disables.
    double retry_border = 0.25;
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

    /// NotFound when no face is detected; the chip otherwise.
    absl::StatusOr<AlignedFace> align(const RgbImage& image) const;

  private:
    struct Impl;
    explicit FaceAligner(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace pslerp
