// Helpers shared by the index subcommands: reading features (arrays, or image folders when
// the extractor is built), index files and search options.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "index/IndexProtectedSlerp.h"
#include "tools/cli.h"

namespace pslerp::cli {

struct Features {
    std::vector<float> x;
    int64_t n = 0;
    int64_t dim = 0;
    std::vector<int64_t> labels;      ///< from an image folder's sub-folder names; else empty
    std::vector<std::string> names;   ///< identity names for those labels
};

/// Reads .npy / .fvecs, or (with the extractor) a folder of images whose sub-folders are
/// identities. Reads the options --aligned and --model-dir.
absl::StatusOr<Features> load_features(const std::string& path, Args& args);

/// Reads an index file, turning FAISS exceptions into a status.
absl::StatusOr<std::unique_ptr<IndexProtectedSlerp>> load_index(const std::string& path);

/// Reads --k-factor, --nprobe, --ef-search into search parameters.
absl::StatusOr<SearchParametersProtectedSlerp> search_options(Args& args);

/// Reads an id array (.npy int64 or .ivecs) and checks its length.
absl::StatusOr<std::vector<int64_t>> load_ids(const std::string& path, int64_t expected);

/// Adds n raw features (ids: n ids, or null for the index's next ids) in batches, with a
/// progress bar.
void enroll_in_batches(IndexProtectedSlerp& index, int64_t n, const float* x, const int64_t* ids,
                       int64_t batch = 20000);

/// Identities of enrolled ids, kept beside an index built from an image folder
/// (`<index>.identities.tsv`, lines "id<TAB>identity").
std::string identities_path(const std::string& index_path);
absl::Status write_identities(const std::string& index_path, const std::vector<int64_t>& ids, const Features& f);
/// Empty map when the file is absent.
absl::StatusOr<std::map<int64_t, std::string>> read_identities(const std::string& index_path);

/// Seconds since an arbitrary origin (steady clock).
double now_seconds();

}  // namespace pslerp::cli
