#include "extractor/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace pslerp {

namespace fs = std::filesystem;

bool is_image_file_name(const std::string& name) {
    std::string ext = fs::path(name).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const char* known : {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".ppm", ".pnm"})
        if (ext == known) return true;
    return false;
}

absl::StatusOr<std::vector<LabeledImage>> list_image_folder(const std::string& root) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) return absl::NotFoundError(absl::StrCat("not a folder: ", root));
    const fs::path base = fs::path(root).lexically_normal();
    std::string root_name = base.filename().string();
    if (root_name.empty()) root_name = base.parent_path().filename().string();
    std::vector<LabeledImage> out;
    fs::recursive_directory_iterator it(base, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list ", root, ": ", ec.message()));
    for (; it != end; it.increment(ec)) {
        if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list ", root, ": ", ec.message()));
        if (!it->is_regular_file(ec) || !is_image_file_name(it->path().filename().string())) continue;
        const fs::path rel = it->path().lexically_relative(base);
        const bool nested = std::distance(rel.begin(), rel.end()) > 1;
        out.push_back({nested ? rel.begin()->string() : root_name, it->path().string()});
    }
    std::sort(out.begin(), out.end(), [](const LabeledImage& a, const LabeledImage& b) {
        return a.identity != b.identity ? a.identity < b.identity : a.path < b.path;
    });
    return out;
}

std::vector<int> identity_labels(const std::vector<LabeledImage>& images) {
    std::map<std::string, int> ids;
    std::vector<int> labels;
    labels.reserve(images.size());
    for (const auto& im : images) labels.push_back(ids.emplace(im.identity, static_cast<int>(ids.size())).first->second);
    return labels;
}

}  // namespace pslerp
