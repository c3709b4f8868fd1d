#include "extractor/extractor.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "plugin/params.h"
#include "plugin/scheme.h"
#include "util/timing.h"

namespace pslerp {

namespace {
// num_threads / torch_threads above this are refused (a typo, not a machine).
constexpr int kMaxThreads = 4096;
}  // namespace

const char* face_outcome_name(FaceOutcome outcome) {
    switch (outcome) {
        case FaceOutcome::kOk: return "ok";
        case FaceOutcome::kSeveralFaces: return "several_faces";
        case FaceOutcome::kNoFace: return "no_face";
        case FaceOutcome::kTooSmall: return "too_small";
        case FaceOutcome::kUnreadable: return "unreadable";
        case FaceOutcome::kFailed: return "failed";
    }
    return "failed";
}

std::string default_model_dir(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* env = std::getenv("PSLERP_MODEL_DIR"); env != nullptr && *env != '\0') return env;
    return "models";
}

struct Extractor::Impl {
    ExtractorOptions options;
    std::unique_ptr<FaceModel> model;
    std::unique_ptr<FaceAligner> aligner;  // null in aligned mode
    int threads = 1;        // extract_files' workers
    int torch_threads = 1;  // LibTorch intra-op threads

    // A chip ready for the model (input_size^2 * 3 floats), or the reason there is none.
    struct Prepared {
        FaceOutcome outcome = FaceOutcome::kFailed;
        std::string message;
        int num_faces = 0;
        std::vector<float> chip;
        double decode_seconds = 0;
        AlignTiming timing;
    };

    Prepared prepare(const RgbImage& image) const {
        Prepared p;
        if (std::min(image.width, image.height) < options.min_image_side) {
            p.outcome = FaceOutcome::kTooSmall;
            p.message = absl::StrCat("image is ", image.width, "x", image.height, ", below the minimum side of ",
                                     options.min_image_side, " pixels");
            return p;
        }
        const int size = model->input_size();
        if (aligner == nullptr) {
            p.chip = pad_to_square_and_resize(image, size);
            p.num_faces = 1;
            p.outcome = FaceOutcome::kOk;
            return p;
        }
        AlignTiming timing;
        auto face = aligner->align(image, &timing);
        p.timing = timing;
        if (!face.ok()) {
            p.outcome = absl::IsNotFound(face.status()) ? FaceOutcome::kNoFace : FaceOutcome::kFailed;
            p.message = std::string(face.status().message());
            return p;
        }
        p.num_faces = face->num_faces;
        p.chip = face->chip.width == size && face->chip.height == size ? to_float(face->chip)
                                                                       : pad_to_square_and_resize(face->chip, size);
        p.outcome = face->num_faces > 1 ? FaceOutcome::kSeveralFaces : FaceOutcome::kOk;
        if (face->num_faces > 1) p.message = absl::StrCat(face->num_faces, " faces found, the largest was used");
        return p;
    }

    Prepared prepare_file(const std::string& path) const {
        const double t0 = thread_cpu_seconds();
        auto image = decode_image_file(path);
        const double decoded = thread_cpu_seconds() - t0;
        if (!image.ok()) {
            Prepared p;
            p.outcome = FaceOutcome::kUnreadable;
            // ExtractResult::path names the file; the message says only what is wrong.
            p.message = std::string(image.status().message());
            if (absl::StartsWith(p.message, path + ": ")) p.message.erase(0, path.size() + 2);
            p.decode_seconds = decoded;
            return p;
        }
        Prepared p = prepare(*image);
        p.decode_seconds = decoded;
        return p;
    }

    // Embeds the prepared chips of `items` in one forward pass and fills the results.
    void embed(std::vector<Prepared>& items, std::vector<ExtractResult>& results, size_t first, const Extractor& ex) const {
        const int size = model->input_size();
        const size_t chip_floats = static_cast<size_t>(size) * size * 3;
        std::vector<float> batch;
        std::vector<size_t> where;
        for (size_t i = 0; i < items.size(); ++i) {
            ExtractResult& r = results[first + i];
            r.outcome = items[i].outcome;
            r.message = items[i].message;
            r.num_faces = items[i].num_faces;
            if (r.ok()) {
                batch.insert(batch.end(), items[i].chip.begin(), items[i].chip.end());
                where.push_back(first + i);
            }
        }
        if (where.empty()) return;
        std::vector<float> raw(where.size() * model->output_dim());
        absl::Status st = model->embed(batch.data(), static_cast<int64_t>(batch.size() / chip_floats), raw.data());
        const int d = model->output_dim();
        for (size_t k = 0; k < where.size(); ++k) {
            ExtractResult& r = results[where[k]];
            if (!st.ok()) {
                r.outcome = FaceOutcome::kFailed;
                r.message = std::string(st.message());
                continue;
            }
            r.raw.assign(raw.begin() + k * d, raw.begin() + (k + 1) * d);
            absl::StatusOr<std::vector<float>> features = ex.group(r.raw);
            if (!features.ok()) {
                // A NaN or a zero-norm group in the model's output: this image has no features.
                r.outcome = FaceOutcome::kFailed;
                r.message =
                        absl::StrCat("the model's output cannot be group-normalised: ", features.status().message());
                r.raw.clear();
                continue;
            }
            r.features = *std::move(features);
        }
    }
};

Extractor::Extractor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Extractor::~Extractor() = default;

absl::StatusOr<std::unique_ptr<Extractor>> Extractor::create(const ExtractorOptions& options) {
    if (options.batch_size <= 0) return absl::InvalidArgumentError("batch size must be positive");
    if (options.groups < 0 || options.group_dim < 0) return absl::InvalidArgumentError("groups and group_dim must not be negative");
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    if (options.num_threads < 0 || options.num_threads > kMaxThreads || options.torch_threads < 0 ||
        options.torch_threads > kMaxThreads)
        return absl::InvalidArgumentError(absl::StrCat("num_threads and torch_threads must be 0 (default) to ",
                                                       kMaxThreads, ", got ", options.num_threads, " and ",
                                                       options.torch_threads));
    impl->threads = options.num_threads > 0 ? options.num_threads
                                             : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    impl->torch_threads = options.torch_threads > 0 ? options.torch_threads : 1;
    set_torch_threads(impl->torch_threads);

    absl::StatusOr<std::unique_ptr<FaceModel>> model =
        options.torchscript_path.empty()
            ? load_face_api_model(default_model_dir(options.model_dir), options.verify_checksum)
            : load_torchscript_model(options.torchscript_path, options.input_size, options.normalization);
    if (!model.ok()) return model.status();
    impl->model = std::move(*model);

    const int out = impl->model->output_dim();
    ExtractorOptions& o = impl->options;
    if (o.groups == 0 && o.group_dim == 0) o.group_dim = 16;
    if (o.groups == 0 && o.group_dim > 0 && out % o.group_dim == 0) o.groups = out / o.group_dim;
    if (o.group_dim == 0 && o.groups > 0 && out % o.groups == 0) o.group_dim = out / o.groups;
    if (static_cast<int64_t>(o.groups) * o.group_dim != out)
        return absl::InvalidArgumentError(absl::StrCat("groups x group_dim = ", o.groups, " x ", o.group_dim,
                                                       " does not match the model's output dimension ", out));
    if (!options.aligned) {
        auto aligner = FaceAligner::create(options.align);
        if (!aligner.ok()) return aligner.status();
        impl->aligner = std::move(*aligner);
    }
    return std::unique_ptr<Extractor>(new Extractor(std::move(impl)));
}

int Extractor::dim() const { return impl_->options.groups * impl_->options.group_dim; }
int Extractor::groups() const { return impl_->options.groups; }
int Extractor::group_dim() const { return impl_->options.group_dim; }
int Extractor::raw_dim() const { return impl_->model->output_dim(); }
const ExtractorOptions& Extractor::options() const { return impl_->options; }
std::string Extractor::model_description() const { return impl_->model->description(); }

absl::StatusOr<std::vector<float>> Extractor::group(const std::vector<float>& raw) const {
    if (raw.size() % static_cast<size_t>(dim()) != 0)
        return absl::InvalidArgumentError(absl::StrCat(raw.size(), " floats are not a whole number of ", dim(),
                                                       "-dimensional descriptors"));
    std::vector<float> out = raw;
    if (!impl_->options.normalize_groups) return out;
    // The scheme's own normalisation (plugin/scheme.h): it reads only groups and group_dim.
    Params p;
    p.groups = groups();
    p.group_dim = group_dim();
    const int64_t n = static_cast<int64_t>(raw.size() / dim());
    if (absl::Status st = normalize_groups(p, raw.data(), n, out.data()); !st.ok()) return st;
    return out;
}

absl::StatusOr<AlignedFace> Extractor::align(const RgbImage& image) const {
    if (impl_->aligner == nullptr) return absl::FailedPreconditionError("this extractor was created in aligned mode");
    return impl_->aligner->align(image);
}

ExtractResult Extractor::extract_image(const RgbImage& image) const {
    std::vector<Impl::Prepared> items(1, impl_->prepare(image));
    std::vector<ExtractResult> results(1);
    impl_->embed(items, results, 0, *this);
    return std::move(results[0]);
}

absl::StatusOr<std::vector<float>> Extractor::extract_file(const std::string& path) const {
    std::vector<ExtractResult> r = extract_files({path});
    if (r[0].ok()) return std::move(r[0].features);
    const std::string msg = absl::StrCat(path, ": ", face_outcome_name(r[0].outcome), ": ", r[0].message);
    switch (r[0].outcome) {
        case FaceOutcome::kNoFace: return absl::NotFoundError(msg);
        case FaceOutcome::kTooSmall: return absl::OutOfRangeError(msg);
        case FaceOutcome::kUnreadable: return absl::InvalidArgumentError(msg);
        default: return absl::InternalError(msg);
    }
}

std::vector<ExtractResult> Extractor::extract_files(const std::vector<std::string>& paths,
                                                    const ProgressCallback& progress, ExtractStats* stats) const {
    const double start = now_seconds();
    std::vector<ExtractResult> results(paths.size());
    for (size_t i = 0; i < paths.size(); ++i) results[i].path = paths[i];
    if (paths.empty()) {
        if (stats != nullptr) *stats = ExtractStats{};
        return results;
    }
    // Batches of at most batch_size files, small enough that every worker gets one.
    const size_t workers = std::min(static_cast<size_t>(impl_->threads), paths.size());
    const size_t batch = std::min(static_cast<size_t>(impl_->options.batch_size), (paths.size() + workers - 1) / workers);
    const size_t num_batches = (paths.size() + batch - 1) / batch;
    std::atomic<size_t> next_batch{0};
    std::mutex mutex;  // guards totals, done and the progress call
    ExtractStats totals;
    int64_t done = 0;
    auto work = [&] {
        // LibTorch's thread count is per thread under OpenMP: set it where the forward passes run.
        set_torch_threads(impl_->torch_threads);
        ExtractStats mine;
        for (size_t b = next_batch++; b < num_batches; b = next_batch++) {
            const size_t first = b * batch, count = std::min(batch, paths.size() - first);
            std::vector<Impl::Prepared> items(count);
            for (size_t i = 0; i < count; ++i) {
                items[i] = impl_->prepare_file(paths[first + i]);
                mine.decode += items[i].decode_seconds;
                mine.detect += items[i].timing.detect;
                mine.landmarks += items[i].timing.landmarks;
            }
            const double t0 = thread_cpu_seconds();
            impl_->embed(items, results, first, *this);
            mine.network += thread_cpu_seconds() - t0;
            std::lock_guard<std::mutex> lock(mutex);
            done += static_cast<int64_t>(count);
            if (progress) progress(done, static_cast<int64_t>(paths.size()));
        }
        std::lock_guard<std::mutex> lock(mutex);
        totals.decode += mine.decode;
        totals.detect += mine.detect;
        totals.landmarks += mine.landmarks;
        totals.network += mine.network;
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < workers; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (stats != nullptr) {
        *stats = totals;
        stats->images = static_cast<int64_t>(paths.size());
        stats->wall = now_seconds() - start;
    }
    return results;
}

absl::StatusOr<std::vector<float>> Extractor::embed_chips(const std::vector<RgbImage>& chips) const {
    const int size = impl_->model->input_size();
    std::vector<float> raw(chips.size() * raw_dim());
    const size_t batch = static_cast<size_t>(impl_->options.batch_size);
    for (size_t first = 0; first < chips.size(); first += batch) {
        const size_t count = std::min(batch, chips.size() - first);
        std::vector<float> input;
        input.reserve(count * size * size * 3);
        for (size_t i = first; i < first + count; ++i) {
            if (chips[i].width <= 0 || chips[i].height <= 0) return absl::InvalidArgumentError("empty chip");
            std::vector<float> c = pad_to_square_and_resize(chips[i], size);
            input.insert(input.end(), c.begin(), c.end());
        }
        absl::Status st = impl_->model->embed(input.data(), static_cast<int64_t>(count), raw.data() + first * raw_dim());
        if (!st.ok()) return st;
    }
    return raw;
}

}  // namespace pslerp
