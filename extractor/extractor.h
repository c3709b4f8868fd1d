// From face photos to grouped features: decode, detect, align, embed, group.
//
//   auto ex = pslerp::Extractor::create({});            // face-api's net from ./models
//   auto results = (*ex)->extract_files(paths, progress); // one ExtractResult per path
//
// Thread safety: an Extractor is immutable after create(); every method is const and may be
// called from several threads at once. create() and the workers of extract_files() set
// LibTorch's process-wide intra-op thread count to `torch_threads`. Errors are returned
// (absl::Status or a per-image outcome), never thrown; a bad image never stops a batch.
//
// Threads (measured in bench/RESULTS.md, section 6): extract_files() runs `num_threads` workers
// (default: one per core), each taking a batch of files through decode, detection, alignment
// AND the network, so that every stage runs on every core and nothing waits for a phase to end.
// LibTorch gets 1 intra-op thread by default: its OpenMP threads would compete with the workers
// for the same cores and, under OpenMP's default active waiting, spin between forward passes
// (on 2 cores, 1 worker: 15.6 images/s with 1 LibTorch thread, 8.8 with 2; 2 workers: as fast
// or faster with 1). A caller that embeds chips only (embed_chips) may want more: set
// torch_threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "extractor/face_align.h"
#include "extractor/face_model.h"
#include "extractor/image.h"
#include "extractor/image_folder.h"

namespace pslerp {

struct ExtractorOptions {
    /// Folder holding face-api's weights (scripts/fetch_model.sh); empty: $PSLERP_MODEL_DIR,
    /// else ./models.
    std::string model_dir;
    /// Check the weights against the SHA-256 of face-api 1.7.15.
    bool verify_checksum = true;
    /// A TorchScript model to use instead of face-api's net; then input_size and
    /// normalization describe its input.
    std::string torchscript_path;
    int input_size = 150;
    InputNormalization normalization;

    /// Take images as already-cropped faces (no detection): zero-pad to a centred square and
    /// resize to the model's input, as face-api does.
    bool aligned = false;
    /// Detection and alignment (unused when aligned).
    AlignOptions align;
    /// Images whose shorter side is below this are rejected as too small.
    int min_image_side = 40;

    int batch_size = 32;   ///< chips per forward pass
    /// Workers of extract_files (each decodes, detects, aligns and embeds); 0: one per core.
    int num_threads = 0;
    /// LibTorch's intra-op threads (process-wide, set by create() and by each worker); 0: 1
    /// (see the class comment).
    int torch_threads = 0;

    /// Features are the raw output split into groups x group_dim (groups * group_dim must be
    /// the model's output dimension); 0 for both: groups of 16.
    int groups = 8;
    int group_dim = 16;
    /// L2-normalise each group of the features (the raw output is kept in ExtractResult::raw).
    bool normalize_groups = true;
};

/// What happened to one image.
enum class FaceOutcome {
    kOk,            ///< exactly one face (or an aligned chip)
    kSeveralFaces,  ///< several faces: the largest was used, features are valid
    kNoFace,        ///< nothing detected
    kTooSmall,      ///< shorter side below min_image_side
    kUnreadable,    ///< missing, empty, truncated, corrupt or not a supported format (image.h)
    kFailed,        ///< model error, or an output with a NaN or a zero-norm group
};

/// "ok", "several_faces", "no_face", "too_small", "unreadable", "failed".
const char* face_outcome_name(FaceOutcome outcome);

struct ExtractResult {
    std::string path;
    FaceOutcome outcome = FaceOutcome::kFailed;
    std::string message;         ///< why, when not ok (the path is in `path`)
    int num_faces = 0;           ///< faces detected (1 in aligned mode)
    std::vector<float> raw;      ///< raw model output, raw_dim() floats; empty when not ok
    std::vector<float> features; ///< grouped, dim() floats; empty when not ok

    bool ok() const { return outcome == FaceOutcome::kOk || outcome == FaceOutcome::kSeveralFaces; }
};

/// Called after each batch with (images done, images total); from the worker that finished
/// the batch, one call at a time, `done` increasing.
using ProgressCallback = std::function<void(int64_t done, int64_t total)>;

/// Where extract_files' time went: CPU seconds of the worker threads per stage, summed over
/// the workers (so other load on the machine does not inflate them; LibTorch's own threads,
/// when torch_threads > 1, are not counted), plus the wall time of the call.
struct ExtractStats {
    int64_t images = 0;
    double decode = 0;     ///< reading and decoding the files
    double detect = 0;     ///< conversion, pyramid reduction (detect_max_side), HOG detection
    double landmarks = 0;  ///< 68 landmarks and the aligned chip
    double network = 0;    ///< chip preparation, forward passes, grouping
    double wall = 0;       ///< the whole call
};

class Extractor {
  public:
    static absl::StatusOr<std::unique_ptr<Extractor>> create(const ExtractorOptions& options);
    ~Extractor();

    int dim() const;        ///< groups * group_dim
    int groups() const;
    int group_dim() const;
    int raw_dim() const;    ///< the model's output dimension (== dim())
    const ExtractorOptions& options() const;
    std::string model_description() const;

    /// Features of the (largest) face in one file; an error status when there is none.
    absl::StatusOr<std::vector<float>> extract_file(const std::string& path) const;
    /// Features of the (largest) face of a decoded image.
    ExtractResult extract_image(const RgbImage& image) const;
    /// One result per path, in order; num_threads workers each take batch_size files at a
    /// time through decode, detection, alignment and one forward pass. `stats`, if not null,
    /// receives the time per stage (counted only when asked for).
    std::vector<ExtractResult> extract_files(const std::vector<std::string>& paths,
                                             const ProgressCallback& progress = nullptr,
                                             ExtractStats* stats = nullptr) const;

    /// Raw descriptors (n * raw_dim) of already-cropped face chips (padded and resized as in
    /// aligned mode, no detection).
    absl::StatusOr<std::vector<float>> embed_chips(const std::vector<RgbImage>& chips) const;
    /// Detects and aligns without embedding (for inspection and tests).
    absl::StatusOr<AlignedFace> align(const RgbImage& image) const;
    /// Raw descriptors (n * dim) -> features (n * dim), per the grouping options: each group
    /// L2-normalised by the scheme's normalize_groups (plugin/scheme.h), which refuses a NaN or
    /// infinite value or a group of zero norm (the error names the vector and group; the batch
    /// methods report it as kFailed for that image).
    absl::StatusOr<std::vector<float>> group(const std::vector<float>& raw) const;

  private:
    struct Impl;
    explicit Extractor(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// The face-api model folder the tools use: `flag` if not empty, else $PSLERP_MODEL_DIR, else
/// "models".
std::string default_model_dir(const std::string& flag = "");

}  // namespace pslerp
