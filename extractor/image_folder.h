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

/// True for the file names the extractor decodes (.jpg, .jpeg, .png, any case).
bool IsImageFileName(const std::string& name);

/// Lists the images under `root` recursively, sorted by (identity, path). NotFound if `root`
/// is not a folder; an empty list is not an error.
absl::StatusOr<std::vector<LabeledImage>> ListImageFolder(const std::string& root);

/// Dense integer labels 0..k-1 for the identities, in order of first appearance.
std::vector<int> IdentityLabels(const std::vector<LabeledImage>& images);

}  // namespace pslerp
