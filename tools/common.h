// Helpers shared by the index subcommands: reading features (arrays, or image folders when
// the extractor is built), index files and search options.
#pragma once

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>

#include "absl/status/statusor.h"
#include "index/ProtectedIndex.h"
#include "io/seal.h"
#include "plugin/synth.h"
#include "tools/cli.h"
#include "util/timing.h"

namespace pslerp::cli {

struct Features {
    std::vector<float> x;
    int64_t n = 0;
    int64_t dim = 0;
    std::vector<int64_t> labels;      ///< from an image folder's sub-folder names; else empty
    std::vector<std::string> names;   ///< identity names for those labels
};

/// How image folders become features: the options --aligned and --model-dir.
struct FeatureOptions {
    bool aligned = false;
    std::string model_dir;
};
/// Declares and reads --aligned and --model-dir (call before args.finish()).
FeatureOptions feature_options(Args& args);

/// Reads .npy / .fvecs, or (with the extractor) a folder of images whose sub-folders are
/// identities.
absl::StatusOr<Features> load_features(const std::string& path, const FeatureOptions& options);

/// An exception from the index as a status with `code` (std::bad_alloc: out_of_memory()).
/// fail() strips FAISS's "Error in <function> at <file>:<line>" preamble when printing.
absl::Status from_exception(const std::exception& e, absl::StatusCode code = absl::StatusCode::kInvalidArgument);
/// The status of a std::bad_alloc.
absl::Status out_of_memory();

/// Checks a buffer of factors[0] * factors[1] * ... elements of `element_bytes` bytes before
/// it is allocated: an error naming `what` if the product overflows or the buffer would not
/// fit in this machine's memory. Every buffer sized from the command line or an input file
/// goes through it (a wrapped size would allocate too little and overflow the heap).
absl::Status check_buffer(const std::string& what, std::initializer_list<int64_t> factors, int64_t element_bytes);

/// Bounds of the sizes the command line accepts, before check_buffer looks at memory.
constexpr int64_t kMaxCount = int64_t{1} << 40;  ///< gallery, probes, training features
constexpr int64_t kMaxK = int64_t{1} << 20;      ///< results per query (beyond ntotal FAISS pads with -1)

/// The secret of the index files a command reads or writes: --secret-file PATH (mode 0600,
/// what `pslerp keygen` writes) or --secret-env NAME (64 hex digits), and for a command that
/// writes, --unsealed to write the clear format instead (declare "unsealed" among its flags).
struct SecretOptions {
    Secret secret;          ///< empty when none was given
    bool unsealed = false;  ///< --unsealed
};
/// Reads the options above with flag names `prefix` + "secret-file" / "secret-env" (rekey's
/// --new-secret-file has prefix "new-"); at most one source. With `writes`, exactly one of a
/// secret and --unsealed (a usage error names them). Call before args.finish().
absl::StatusOr<SecretOptions> secret_options(Args& args, bool writes, const std::string& prefix = "");

/// Reads an index file (exhaustive or IVF) with `secret` (empty: only a clear file opens, with
/// a warning), turning exceptions into a status.
absl::StatusOr<std::unique_ptr<faiss::Index>> load_index(const std::string& path, const Secret& secret);

/// Writes an index file sealed with options.secret, or clear with options.unsealed.
absl::Status save_index(const faiss::Index& index, const std::string& path, const SecretOptions& options);

/// A new index from a factory string (index/factory.h); a string it refuses is a usage error.
absl::StatusOr<std::unique_ptr<faiss::Index>> make_index(int64_t d, const std::string& factory);

/// The IVF index behind `index`, or null for the exhaustive one.
const faiss::IndexIVF* as_ivf(const faiss::Index& index);

/// Trains `index` on n representative features x (n * d): the centring, and for an IVF index
/// the k-means centroids. Uses an evenly strided subset when n exceeds what training needs.
absl::Status train_index(faiss::Index& index, int64_t n, const float* x);

/// The search options of the command line: --nprobe, which only an IVF index takes.
struct SearchOptions {
    int64_t nprobe = 0;  ///< 0: the index's own nprobe
    faiss::SearchParametersIVF ivf;

    /// Checks the options against the index they will search (--nprobe needs an IVF index,
    /// and at most nlist) and fills `ivf`.
    absl::Status bind(const faiss::Index& index);
    /// For index.search / range_search: null when no option was given.
    const faiss::SearchParameters* params() const { return nprobe > 0 ? &ivf : nullptr; }
    /// "exhaustive" or "nprobe 16 of 512 lists" (after bind).
    std::string describe(const faiss::Index& index) const;
};

/// Reads --nprobe (>= 1; bind() checks it against nlist). The retired coarse-stage options are
/// refused naming their replacement.
absl::StatusOr<SearchOptions> search_options(Args& args);

/// Reads an id array (.npy int64 or .ivecs) and checks its length.
absl::StatusOr<std::vector<int64_t>> load_ids(const std::string& path, int64_t expected);

/// Adds n raw features (ids: n ids, or null for the index's next ids) in batches, with a
/// progress bar. Exceptions from the index become a status.
absl::Status enroll_in_batches(faiss::Index& index, int64_t n, const float* x, const int64_t* ids,
                               int64_t batch = 20000);

/// pslerp::synth_identities (other people of the same population, for training the centring
/// and centroids) after checking that the buffer fits in memory.
absl::StatusOr<SynthSet> synth_identities_checked(const SynthConfig& config, int64_t first, int64_t n);

/// Identities of enrolled ids, kept beside an index built from an image folder
/// (`<index>.identities.tsv`, lines "id<TAB>identity").
std::string identities_path(const std::string& index_path);
absl::Status write_identities(const std::string& index_path, const std::vector<int64_t>& ids, const Features& f);
/// Empty map when the file is absent.
absl::StatusOr<std::map<int64_t, std::string>> read_identities(const std::string& index_path);


}  // namespace pslerp::cli
