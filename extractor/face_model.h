// Face-descriptor networks behind one small interface, so that the pipeline (decode, detect,
// align, group) does not see LibTorch. Two implementations: the face-api.js / dlib ResNet read
// from its tfjs weight files, and any TorchScript module.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pslerp {

/// The face-api package version whose weights load_face_api_model accepts, and their SHA-256.
inline constexpr char kFaceApiVersion[] = "1.7.15";
inline constexpr char kFaceApiWeightsSha256[] =
    "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589";
inline constexpr char kFaceApiManifest[] = "face_recognition_model-weights_manifest.json";
inline constexpr char kFaceApiWeights[] = "face_recognition_model.bin";

/// Per-channel input normalisation: (pixel - mean) / std, pixels in 0..255, RGB order.
struct InputNormalization {
    std::array<float, 3> mean = {122.782f, 117.001f, 104.298f};
    std::array<float, 3> std = {255.f, 255.f, 255.f};
};

/// A network from square RGB chips to one descriptor each.
/// Thread safety: embed() is const and may be called from several threads at once.
class FaceModel {
  public:
    virtual ~FaceModel() = default;
    /// Side of the square input chip in pixels.
    virtual int input_size() const = 0;
    /// Descriptor dimension (G * d for grouped heads).
    virtual int output_dim() const = 0;
    /// @param chips  n chips, each input_size x input_size x 3 floats (HWC, RGB, 0..255)
    /// @param out    n * output_dim descriptors, raw network output (not normalised)
    virtual absl::Status embed(const float* chips, int64_t n, float* out) const = 0;
    virtual std::string description() const = 0;
};

/// Loads face-api's face recognition net from `model_dir` (the manifest and .bin of
/// @vladmandic/face-api 1.7.15, see scripts/fetch_model.sh). With `verify_checksum` the .bin
/// must match kFaceApiWeightsSha256.
absl::StatusOr<std::unique_ptr<FaceModel>> load_face_api_model(const std::string& model_dir,
                                                               bool verify_checksum = true);

/// Loads a TorchScript module taking (n, 3, input_size, input_size) float input normalised
/// with `norm` and returning (n, D) or (n, G, d) descriptors; D is found by a trial forward.
absl::StatusOr<std::unique_ptr<FaceModel>> load_torchscript_model(const std::string& path, int input_size,
                                                                  const InputNormalization& norm);

/// Sets LibTorch's intra-op thread count (process-wide); n <= 0 leaves it unchanged.
void set_torch_threads(int n);

}  // namespace pslerp
