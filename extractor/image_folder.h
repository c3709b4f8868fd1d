// Image folders where the sub-folder name is the identity: root/<identity>/<image>.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pslerp {

struct LabeledImage {
    std::string identity;  ///< first folder below the root; the root's own name for images directly in it
    std::string path;
};

/// True for the file names a folder listing picks up: .jpg, .jpeg, .png, .bmp, .webp, .pgm,
/// .ppm, .pnm, any case. Only the listing looks at the name; decoding takes the format from
/// the bytes (a WebP file named .jpg decodes as WebP).
bool is_image_file_name(const std::string& name);

/// Lists the images under `root` recursively, sorted by (identity, path). NotFound if `root`
/// is not a folder; an empty list is not an error.
absl::StatusOr<std::vector<LabeledImage>> list_image_folder(const std::string& root);

/// Dense integer labels 0..k-1 for the identities, in order of first appearance.
std::vector<int> identity_labels(const std::vector<LabeledImage>& images);

}  // namespace pslerp
