// TensorFlow.js weight files: a JSON manifest (groups of {paths, weights}) and binary shards
// holding the tensors back to back in manifest order, row-major in tfjs shape. Quantised
// tensors (uint8 / uint16 with `quantization {scale, min}`) decode as q * scale + min.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pslerp::tfjs {

/// One tensor entry of a manifest.
struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
    std::string dtype;              ///< the logical dtype, "float32" or "int32"
    std::string stored_dtype;       ///< as stored: "float32", "int32", "uint8" or "uint16"
    double scale = 1.0;             ///< quantisation: value = q * scale + min
    double min = 0.0;

    int64_t num_elements() const;
    int64_t stored_bytes() const;
};

/// A parsed manifest: the shard file names (in order) and the tensors (in order).
struct Manifest {
    std::vector<std::string> paths;
    std::vector<TensorSpec> tensors;
};

/// A decoded float tensor.
struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> values;  ///< size = product of shape
};

/// Parses a tfjs weights manifest (the whole JSON text).
absl::StatusOr<Manifest> parse_manifest(const std::string& json_text);

/// Decodes the concatenated shard bytes against the manifest. Errors if the bytes are shorter
/// or longer than the manifest says, or a dtype is unsupported.
absl::StatusOr<std::map<std::string, Tensor>> decode_weights(const Manifest& manifest,
                                                             const std::string& bytes);

/// Reads `manifest_path` and its shards (relative to the manifest's folder) and decodes them.
/// When `expected_sha256` is not empty the concatenated shard bytes must hash to it.
absl::StatusOr<std::map<std::string, Tensor>> load_weights(const std::string& manifest_path,
                                                           const std::string& expected_sha256 = "");

/// Reads a whole file.
absl::StatusOr<std::string> read_file(const std::string& path);

}  // namespace pslerp::tfjs
