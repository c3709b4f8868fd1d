// pslerp extract: face images to grouped features (extractor/extractor.h) written as .npy.
#include <cstdio>
#include <filesystem>
#include <map>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "extractor/extractor.h"
#include "io/array_io.h"
#include "tools/cli.h"
#include "util/timing.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
    "usage: pslerp extract <folder|images...> -o features.npy [--labels labels.txt] [--aligned]\n"
    "                      [--model-dir DIR] [--threads N] [--torch-threads 1] [--detect-max-side 720]\n"
    "                      [--batch 32] [--groups 8 --group-dim 16]\n"
    "                      [--raw] [--strict] [--torchscript model.pt --input-size 150\n"
    "                       --mean 122.782,117.001,104.298 --std 255,255,255]\n"
    "Detects, aligns and embeds the largest face of each image: JPEG, PNG, BMP, WebP or PGM/PPM,\n"
    "told apart by their bytes, not their names. A folder is read recursively (files named .jpg\n"
    ".jpeg .png .bmp .webp .pgm .ppm .pnm); its sub-folder names are the identities. Writes one\n"
    "float32 row per image with a face (n, G*d), each group L2-normalised unless --raw, and with\n"
    "--labels one line per row: identity<TAB>path. --aligned takes images as already-cropped\n"
    "faces (no detection). Images without a usable face are listed on stderr and skipped\n"
    "(--strict: fail instead).\n"
    "--threads N: workers that each decode, detect, align and embed a batch (default: one per\n"
    "core); --torch-threads: LibTorch's threads per forward pass (default 1). Larger photos are\n"
    "searched for faces on a copy reduced to --detect-max-side pixels, then aligned from the full\n"
    "resolution; faces under about 80 x (photo side) / (that side) pixels are missed (0: detect at\n"
    "full resolution).\n"
    "The face-api weights come from --model-dir, else $PSLERP_MODEL_DIR, else ./models\n"
    "(scripts/fetch_model.sh fetches them).\n";

absl::Status parse_triple(const std::string& flag, const std::string& text, std::array<float, 3>* out) {
    float v[3];
    char tail;
    if (std::sscanf(text.c_str(), "%f,%f,%f%c", &v[0], &v[1], &v[2], &tail) != 3)
        return usage_error(absl::StrCat("--", flag, " expects three comma-separated numbers, got '", text, "'"));
    *out = {v[0], v[1], v[2]};
    return absl::OkStatus();
}

absl::Status run(Args& args, std::string& summary) {
    absl::StatusOr<std::string> out = args.required("out");
    const std::string labels_path = args.str("labels");
    ExtractorOptions opt;
    opt.aligned = args.flag("aligned");
    const bool raw = args.flag("raw");
    const bool strict = args.flag("strict");
    opt.model_dir = default_model_dir(args.str("model-dir"));
    opt.torchscript_path = args.str("torchscript");
    // --threads was checked and applied by run_command; the extractor takes it too.
    absl::StatusOr<int64_t> threads = args.integer("threads", 0, 1, max_threads());
    absl::StatusOr<int64_t> torch_threads = args.integer("torch-threads", 0, 1, max_threads());
    absl::StatusOr<int64_t> detect_max_side = args.integer("detect-max-side", opt.align.detect_max_side, 0, 65536);
    absl::StatusOr<int64_t> batch = args.integer("batch", 32, 1, 4096);
    absl::StatusOr<int64_t> groups = args.integer("groups", 0, 1, 4096);
    absl::StatusOr<int64_t> group_dim = args.integer("group-dim", 0, 1, 4096);
    absl::StatusOr<int64_t> input_size = args.integer("input-size", opt.input_size, 8, 4096);
    const std::string mean = args.str("mean"), std_dev = args.str("std");
    for (const absl::Status& st : {out.status(), threads.status(), torch_threads.status(), detect_max_side.status(),
                                   batch.status(), groups.status(), group_dim.status(), input_size.status()}) {
        if (!st.ok()) return st;
    }
    if (absl::Status st = args.finish(); !st.ok()) return st;
    if (args.positional().empty()) return usage_error("give a folder or image files to extract");
    if (!mean.empty())
        if (absl::Status st = parse_triple("mean", mean, &opt.normalization.mean); !st.ok()) return st;
    if (!std_dev.empty())
        if (absl::Status st = parse_triple("std", std_dev, &opt.normalization.std); !st.ok()) return st;
    opt.num_threads = static_cast<int>(*threads);
    opt.torch_threads = static_cast<int>(*torch_threads);
    opt.align.detect_max_side = static_cast<int>(*detect_max_side);
    if (opt.align.detect_max_side != 0 && opt.align.detect_max_side < 160)
        return usage_error(absl::StrCat("--detect-max-side must be 0 (full resolution) or 160 to 65536, got ",
                                        opt.align.detect_max_side));
    opt.batch_size = static_cast<int>(*batch);
    // Neither given: the extractor's default split (groups of 16).
    opt.groups = static_cast<int>(*groups);
    opt.group_dim = static_cast<int>(*group_dim);
    if (opt.groups == 0 && opt.group_dim == 0) opt.group_dim = 16;
    opt.input_size = static_cast<int>(*input_size);
    opt.normalize_groups = !raw;

    // Inputs: folders are listed (identity = sub-folder), files taken as they are (identity =
    // their folder's name).
    std::vector<LabeledImage> images;
    for (const std::string& p : args.positional()) {
        std::error_code ec;
        if (std::filesystem::is_directory(p, ec)) {
            absl::StatusOr<std::vector<LabeledImage>> listed = list_image_folder(p);
            if (!listed.ok()) return listed.status();
            if (listed->empty())
                return absl::NotFoundError(
                        absl::StrCat("no images (.jpg .jpeg .png .bmp .webp .pgm .ppm .pnm) under ", p));
            images.insert(images.end(), listed->begin(), listed->end());
        } else if (std::filesystem::is_regular_file(p, ec)) {
            std::string id = std::filesystem::absolute(p, ec).parent_path().filename().string();
            images.push_back({id, p});
        } else {
            return absl::NotFoundError(absl::StrCat("no such file or folder: ", p));
        }
    }

    absl::StatusOr<std::unique_ptr<Extractor>> ex = Extractor::create(opt);
    if (!ex.ok()) return ex.status();
    std::vector<std::string> paths;
    for (const auto& im : images) paths.push_back(im.path);

    const double t0 = now_seconds();
    std::vector<ExtractResult> results;
    {
        Progress progress("extract", static_cast<int64_t>(paths.size()));
        results = (*ex)->extract_files(paths, [&](int64_t done, int64_t) { progress.update(done); });
    }
    const double seconds = now_seconds() - t0;

    const int dim = (*ex)->dim();
    std::vector<float> rows;
    std::string labels;
    std::map<std::string, int> outcomes;
    int several = 0;
    for (size_t i = 0; i < results.size(); ++i) {
        const ExtractResult& r = results[i];
        ++outcomes[face_outcome_name(r.outcome)];
        if (!r.ok()) {
            std::fprintf(stderr, "pslerp extract: skipped %s: %s: %s\n", r.path.c_str(), face_outcome_name(r.outcome),
                         r.message.c_str());
            continue;
        }
        several += r.outcome == FaceOutcome::kSeveralFaces;
        rows.insert(rows.end(), r.features.begin(), r.features.end());
        absl::StrAppend(&labels, images[i].identity, "\t", r.path, "\n");
    }
    const int64_t n = static_cast<int64_t>(rows.size() / dim);
    const int64_t skipped = static_cast<int64_t>(results.size()) - n;
    if (strict && skipped > 0)
        return absl::FailedPreconditionError(absl::StrCat(skipped, " of ", results.size(),
                                                          " images have no usable face (listed above); nothing written"));
    if (n == 0) return absl::NotFoundError(absl::StrCat("no face found in any of the ", results.size(), " images"));
    if (absl::Status st = write_npy_f32(*out, rows.data(), n, dim); !st.ok()) return st;
    if (!labels_path.empty())
        if (absl::Status st = atomic_write_file(labels_path, labels); !st.ok()) return st;

    std::string detail;
    for (const auto& [name, count] : outcomes)
        if (name != "ok") absl::StrAppend(&detail, ", ", count, " ", name);
    summary = absl::StrFormat("extract: %d images -> %d rows of D=%d (%dx%d%s) in %s%s%s; %.1f images/s; %s%s", results.size(),
                              n, dim, (*ex)->groups(), (*ex)->group_dim(), raw ? ", raw" : ", groups normalised",
                              *out, labels_path.empty() ? "" : " + ", labels_path, results.size() / seconds,
                              (*ex)->model_description(), detail);
    if (several > 0) absl::StrAppend(&summary, " (several faces: the largest was used)");
    return absl::OkStatus();
}

}  // namespace

int cmd_extract(const std::vector<std::string>& argv) {
    return run_command("extract", argv, {"aligned", "raw", "strict"}, kUsage, [](Args& args) {
        std::string summary;
        absl::Status st = run(args, summary);
        if (st.ok()) std::printf("%s\n", summary.c_str());
        return st;
    });
}

}  // namespace pslerp::cli
