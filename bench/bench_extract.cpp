// The extractor's throughput on face photos, and where its time goes (bench/RESULTS.md,
// section 6). Built when the extractor is (LibTorch, dlib and libwebp found).
//
//   bench_extract [--images DIR] [--model-dir DIR] [--upscale-side S] [--frame F]
//                 [--detect-max-side L] [--torch-threads L] [--threads N] [--batch B] [--repeat R]
//
// --images DIR          photos, read recursively (default: ../shared/data/faces beside the
//                       repository)
// --upscale-side S      run on copies resized (bilinear) so that their larger side is S pixels,
//                       written as JPEG (quality 90) to a temporary folder that is removed at the
//                       end: phone-photo sizes from the small test crops; 0: the files as they are
//                       (default 0)
// --frame F             with --upscale-side, centre each copy in a black canvas whose sides are
//                       (1 + 2F) times the copy's, like a photo with room around the face (the
//                       copy itself is then S / (1 + 2F) on its larger side; default 0)
// --detect-max-side L   AlignOptions::detect_max_side values to compare, comma-separated
//                       (0: detection at full resolution, the behaviour before it existed;
//                       default "0,720")
// --torch-threads L     ExtractorOptions::torch_threads values, comma-separated (0: the default)
// --threads N           extract_files workers (0: one per core, the default)
// --batch B             chips per forward pass (default 32, the extractor's default)
// --repeat R            runs per configuration; images/s is the median (default 3)
//
// Every configuration runs over the same files; the first is the reference the others' faces
// are compared with: same outcome per image, and the distance between the raw descriptors of
// an image under both (0 = the same chip; two photos of one person are typically 0.3-0.5
// apart). Stage times are seconds summed over the workers (ExtractStats), per image, from the
// median run.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/driver_util.h"
#include "extractor/extractor.h"
#include "extractor/image.h"
#include "extractor/image_folder.h"
#include "util/timing.h"

namespace pslerp {
namespace {

namespace fs = std::filesystem;

// A fresh folder for the upscaled copies, removed when it goes out of scope.
class ScratchDir {
  public:
    ScratchDir() {
        std::random_device rd;
        path_ = fs::temp_directory_path() / absl::StrFormat("pslerp_bench_extract_%08x%08x", rd(), rd());
        fs::create_directories(path_);
        fs::permissions(path_, fs::perms::owner_all, fs::perm_options::replace);
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

// The copy of `image` for --upscale-side / --frame.
RgbImage phone_copy(const RgbImage& image, int side, double frame) {
    const int inner = int(std::lround(side / (1 + 2 * frame)));
    const double s = double(inner) / std::max(image.width, image.height);
    RgbImage up = bench::value_or_die(resize_image(image, std::max(1, int(std::lround(image.width * s))),
                                                   std::max(1, int(std::lround(image.height * s)))));
    if (frame <= 0) return up;
    RgbImage out;
    out.width = int(std::lround(up.width * (1 + 2 * frame)));
    out.height = int(std::lround(up.height * (1 + 2 * frame)));
    out.pixels.assign(size_t(out.width) * out.height * 3, 0);
    const int x0 = (out.width - up.width) / 2, y0 = (out.height - up.height) / 2;
    for (int y = 0; y < up.height; ++y)
        std::copy_n(&up.pixels[size_t(y) * up.width * 3], size_t(up.width) * 3,
                    &out.pixels[(size_t(y + y0) * out.width + x0) * 3]);
    return out;
}

double distance(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += double(a[i] - b[i]) * (a[i] - b[i]);
    return std::sqrt(s);
}

int run_extract(int argc, char** argv) {
    bench::Flags f(argc, argv,
                   "bench_extract: the extractor's images/s, faces found and time per stage on the photos of "
                   "--images, as they are or upscaled (bench/RESULTS.md section 6)");
    // The repository's ../shared/data/faces, wherever the driver runs from.
    const std::string repo = fs::path(__FILE__).parent_path().parent_path().string();
    const std::string images_dir = f.str("images", repo + "/../shared/data/faces");
    const std::string model_dir = default_model_dir(f.str("model-dir", ""));
    const int64_t upscale = f.integer("upscale-side", 0);
    const double frame = f.number("frame", 0);
    const std::vector<int64_t> max_sides = f.integers("detect-max-side", "0,720");
    const std::vector<int64_t> torch_list = f.integers("torch-threads", "0");
    const int64_t threads = f.integer("threads", 0);
    const int64_t batch = f.integer("batch", 32);
    const int64_t repeat = f.integer("repeat", 3);
    if (!f.finish()) return 0;
    std::string usage;
    if (upscale != 0 && (upscale < 16 || upscale > 8192)) usage = "--upscale-side must be 0 or 16..8192";
    if (frame < 0 || frame > 2) usage = "--frame must be in 0..2";
    if (frame > 0 && upscale == 0) usage = "--frame applies to upscaled copies: give --upscale-side";
    for (int64_t t : torch_list)
        if (t < 0 || t > 4096) usage = "--torch-threads: values must be in 0..4096 (0: the default)";
    if (threads < 0 || threads > 4096) usage = "--threads must be in 0..4096 (0: one per core)";
    if (batch < 1 || batch > 4096) usage = "--batch must be in 1..4096";
    if (repeat < 1 || repeat > 1000) usage = "--repeat must be in 1..1000";
    if (!usage.empty()) {
        std::fprintf(stderr, "error: %s (see --help)\n", usage.c_str());
        return kExitUsage;
    }

    bench::Provenance prov(f.command(), 0);
    prov.print();
    const std::vector<LabeledImage> listed = bench::value_or_die(list_image_folder(images_dir));
    std::vector<std::string> paths;
    double megapixels = 0;
    int max_w = 0, max_h = 0;
    ScratchDir scratch;
    for (size_t i = 0; i < listed.size(); ++i) {
        absl::StatusOr<RgbImage> image = decode_image_file(listed[i].path);
        if (!image.ok()) {
            std::fprintf(stderr, "bench_extract: skipped %s\n", std::string(image.status().message()).c_str());
            continue;
        }
        if (upscale > 0) {
            *image = phone_copy(*image, int(upscale), frame);
            const std::string path = (scratch.path() / absl::StrFormat("%05d.jpg", int(i))).string();
            if (absl::Status st = write_jpeg(*image, path, 90); !st.ok()) {
                std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
                return 1;
            }
            paths.push_back(path);
        } else {
            paths.push_back(listed[i].path);
        }
        megapixels += image->width * double(image->height) / 1e6;
        max_w = std::max(max_w, image->width);
        max_h = std::max(max_h, image->height);
    }
    if (paths.empty()) {
        std::fprintf(stderr, "error: no readable images under %s\n", images_dir.c_str());
        return 1;
    }
    std::printf("bench_extract: %zu images from %s%s, mean %.2f Mpixel, largest %dx%d; model %s; workers %lld "
                "(%u cores), batch %lld, repeat %lld; HOG detector %s\n\n",
                paths.size(), images_dir.c_str(),
                upscale > 0 ? absl::StrFormat(" upscaled to a %lld px side (frame %.2f, JPEG q90)", (long long)upscale,
                                              frame).c_str()
                            : "",
                megapixels / double(paths.size()), max_w, max_h, model_dir.c_str(), (long long)threads,
                std::thread::hardware_concurrency(), (long long)batch, (long long)repeat, face_detector_simd_level());
    std::printf("| detect_max_side | torch threads | images/s | runs (s) | faces found | same outcome as row 1 "
                "| descriptor distance to row 1 (median / max) | decode | detect | landmarks+chip | network "
                "| sum of stages / wall |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");

    std::vector<ExtractResult> reference;
    for (int64_t max_side : max_sides) {
        for (int64_t torch_threads : torch_list) {
            ExtractorOptions eo;
            eo.model_dir = model_dir;
            eo.num_threads = int(threads);
            eo.torch_threads = int(torch_threads);
            eo.batch_size = int(batch);
            eo.align.detect_max_side = int(max_side);
            std::unique_ptr<Extractor> ex = bench::value_or_die(Extractor::create(eo));
            std::vector<double> seconds;
            std::vector<ExtractStats> stats;
            std::vector<ExtractResult> results;
            for (int r = 0; r < repeat; ++r) {
                ExtractStats s;
                results = ex->extract_files(paths, nullptr, &s);
                seconds.push_back(s.wall);
                stats.push_back(s);
            }
            // The stage times of the median run.
            std::vector<size_t> order(seconds.size());
            for (size_t i = 0; i < order.size(); ++i) order[i] = i;
            std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seconds[a] < seconds[b]; });
            const ExtractStats& m = stats[order[order.size() / 2]];
            std::string runs;
            for (double s : seconds) runs += absl::StrFormat("%s%.2f", runs.empty() ? "" : " ", s);

            if (reference.empty()) reference = results;
            int found = 0, same = 0;
            std::vector<double> dists;
            for (size_t i = 0; i < results.size(); ++i) {
                found += results[i].ok();
                same += results[i].outcome == reference[i].outcome;
                if (results[i].ok() && reference[i].ok()) dists.push_back(distance(results[i].raw, reference[i].raw));
            }
            const double n = double(paths.size());
            const auto ms = [&](double sec) { return absl::StrFormat("%.1f ms", 1e3 * sec / n); };
            std::printf("| %s | %s | %.2f | %s | %d / %zu | %d / %zu | %.4f / %.4f | %s | %s | %s | %s | %.2f |\n",
                        max_side == 0 ? "0 (full res)" : std::to_string(max_side).c_str(),
                        torch_threads == 0 ? "0 (default)" : std::to_string(torch_threads).c_str(), n / median(seconds),
                        runs.c_str(), found, paths.size(), same, paths.size(), median(dists),
                        dists.empty() ? 0.0 : *std::max_element(dists.begin(), dists.end()), ms(m.decode).c_str(),
                        ms(m.detect).c_str(), ms(m.landmarks).c_str(), ms(m.network).c_str(),
                        (m.decode + m.detect + m.landmarks + m.network) / m.wall);
            std::fflush(stdout);
        }
    }
    std::printf("\n# load average at the end: %s\n", bench::load_average().c_str());
    return 0;
}

}  // namespace
}  // namespace pslerp

int main(int argc, char** argv) { return pslerp::run_extract(argc, argv); }
