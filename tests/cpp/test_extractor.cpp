// Tests of the face feature extractor: tfjs weight files, the face-api network against the
// published descriptors, alignment, bad inputs, grouping, and the importance learner.
// Tests that need ../shared/data or the face-api weights skip when those are absent; the
// weights come from $PSLERP_MODEL_DIR, else <source>/models (scripts/fetch_model.sh).
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "extractor/extractor.h"
#include "extractor/grouping.h"
#include "extractor/importance_learner.h"
#include "extractor/json.h"
#include "extractor/tfjs_weights.h"
#include "extractor/verification.h"

namespace pslerp {
namespace {

namespace fs = std::filesystem;

std::string SharedFaces() { return std::string(PSLERP_SHARED_DATA) + "/faces"; }

std::string ModelDir() {
    const char* env = std::getenv("PSLERP_MODEL_DIR");
    return env != nullptr && *env != '\0' ? env : std::string(PSLERP_SOURCE_DIR) + "/models";
}

bool HaveModel() { return fs::exists(ModelDir() + "/" + kFaceApiWeights) && fs::exists(ModelDir() + "/" + kFaceApiManifest); }

#define SKIP_WITHOUT_MODEL()                                                                          \
    if (!HaveModel())                                                                                 \
    GTEST_SKIP() << "face-api weights not found in " << ModelDir()                                    \
                 << " (run scripts/fetch_model.sh or set PSLERP_MODEL_DIR)"
#define SKIP_WITHOUT_DATA(dir) \
    if (!fs::is_directory(dir)) GTEST_SKIP() << "shared test data not found: " << (dir)

// A fresh folder under the system temp dir, removed at the end of the test.
class TempDir {
  public:
    TempDir() {
        std::random_device rd;
        path_ = fs::temp_directory_path() / ("pslerp_extractor_" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string path() const { return path_.string(); }

  private:
    fs::path path_;
};

void WriteBytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

double Distance(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
    return std::sqrt(s);
}

std::unique_ptr<Extractor> MakeExtractor(bool aligned, int batch = 8) {
    ExtractorOptions o;
    o.model_dir = ModelDir();
    o.aligned = aligned;
    o.batch_size = batch;
    auto ex = Extractor::Create(o);
    EXPECT_TRUE(ex.ok()) << ex.status();
    return ex.ok() ? std::move(*ex) : nullptr;
}

// ---------------------------------------------------------------- JSON and tfjs weight files

TEST(Json, ParsesNestedValuesAndRejectsGarbage) {
    auto v = json::Parse(R"( {"a": [1, -2.5e1, true, null], "s": "x\"\u00e9", "o": {}} )");
    ASSERT_TRUE(v.ok()) << v.status();
    ASSERT_TRUE(v->find("a")->is_array());
    EXPECT_EQ(v->find("a")->array[1].number, -25.0);
    EXPECT_EQ(v->find("s")->string, "x\"\xc3\xa9");
    EXPECT_TRUE(v->find("o")->is_object());
    EXPECT_EQ(v->find("missing"), nullptr);
    for (const char* bad : {"", "[1,", "{\"a\" 1}", "[1] x", "\"unterminated", "[01x]", "{\"a\":}"})
        EXPECT_FALSE(json::Parse(bad).ok()) << bad;
}

TEST(Tfjs, Sha256KnownVectors) {
    EXPECT_EQ(tfjs::Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(tfjs::Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(tfjs::Sha256Hex(std::string(1000, 'a')),
              "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

// A manifest with two groups/shards: a uint8-quantised [2, 3], a float32 [2], a uint16 [2].
constexpr char kSmallManifest[] = R"([
  {"paths": ["part1.bin"], "weights": [
     {"name": "layer/filters", "shape": [2, 3], "dtype": "float32",
      "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
     {"name": "layer/bias", "shape": [2], "dtype": "float32"}]},
  {"paths": ["part2.bin"], "weights": [
     {"name": "fc", "shape": [2], "dtype": "float32",
      "quantization": {"dtype": "uint16", "scale": 0.25, "min": 2.0}}]}
])";

std::string SmallShard1() {
    std::string b = {0, 1, 2, 3, 4, static_cast<char>(255)};
    const float f[2] = {1.5f, -0.125f};
    b.append(reinterpret_cast<const char*>(f), sizeof(f));
    return b;
}
std::string SmallShard2() { return std::string{4, 0, 0, 1}; }  // little-endian 4 and 256

TEST(Tfjs, ParsesManifest) {
    auto m = tfjs::ParseManifest(kSmallManifest);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ(m->paths, (std::vector<std::string>{"part1.bin", "part2.bin"}));
    ASSERT_EQ(m->tensors.size(), 3u);
    EXPECT_EQ(m->tensors[0].stored_dtype, "uint8");
    EXPECT_EQ(m->tensors[0].stored_bytes(), 6);
    EXPECT_EQ(m->tensors[1].stored_dtype, "float32");
    EXPECT_EQ(m->tensors[1].stored_bytes(), 8);
    EXPECT_EQ(m->tensors[2].stored_bytes(), 4);
    EXPECT_FALSE(tfjs::ParseManifest(R"([{"paths": []}])").ok());
    EXPECT_FALSE(tfjs::ParseManifest(R"([{"paths": [], "weights": [{"name": "a", "shape": [1], "dtype": "string"}]}])").ok());
    EXPECT_FALSE(tfjs::ParseManifest(R"([{"paths": [], "weights": [{"name": "a", "shape": [-1], "dtype": "float32"}]}])").ok());
}

TEST(Tfjs, DecodesQuantisedAndFloatTensorsFromShards) {
    TempDir dir;
    WriteBytes(dir.file("m.json"), kSmallManifest);
    WriteBytes(dir.file("part1.bin"), SmallShard1());
    WriteBytes(dir.file("part2.bin"), SmallShard2());
    auto w = tfjs::LoadWeights(dir.file("m.json"));
    ASSERT_TRUE(w.ok()) << w.status();
    const auto& q = w->at("layer/filters");
    EXPECT_EQ(q.shape, (std::vector<int64_t>{2, 3}));
    // value = q * scale + min
    const std::vector<float> expected = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 126.5f};
    EXPECT_EQ(q.values, expected);
    EXPECT_EQ(w->at("layer/bias").values, (std::vector<float>{1.5f, -0.125f}));
    EXPECT_EQ(w->at("fc").values, (std::vector<float>{3.0f, 66.0f}));

    // The checksum covers the shards in manifest order.
    const std::string sha = tfjs::Sha256Hex(SmallShard1() + SmallShard2());
    EXPECT_TRUE(tfjs::LoadWeights(dir.file("m.json"), sha).ok());
    auto bad_sum = tfjs::LoadWeights(dir.file("m.json"), std::string(64, '0'));
    ASSERT_FALSE(bad_sum.ok());
    EXPECT_NE(bad_sum.status().message().find("checksum mismatch"), std::string::npos) << bad_sum.status();

    // Too short, too long, missing shard.
    WriteBytes(dir.file("part2.bin"), std::string{4, 0, 0});
    auto short_data = tfjs::LoadWeights(dir.file("m.json"));
    ASSERT_FALSE(short_data.ok());
    EXPECT_NE(short_data.status().message().find("fc"), std::string::npos) << short_data.status();
    WriteBytes(dir.file("part2.bin"), std::string{4, 0, 0, 1, 9});
    EXPECT_FALSE(tfjs::LoadWeights(dir.file("m.json")).ok());
    fs::remove(dir.file("part2.bin"));
    EXPECT_TRUE(absl::IsNotFound(tfjs::LoadWeights(dir.file("m.json")).status()));
}

TEST(Tfjs, FaceApiManifestLayout) {
    SKIP_WITHOUT_MODEL();
    auto text = tfjs::ReadFile(ModelDir() + "/" + kFaceApiManifest);
    ASSERT_TRUE(text.ok());
    auto m = tfjs::ParseManifest(*text);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ(m->tensors.size(), 117u);
    int quantised = 0;
    int64_t bytes = 0;
    for (const auto& t : m->tensors) {
        quantised += t.stored_dtype == "uint8";
        bytes += t.stored_bytes();
    }
    EXPECT_EQ(quantised, 109);
    EXPECT_EQ(bytes, static_cast<int64_t>(fs::file_size(ModelDir() + "/" + kFaceApiWeights)));
    EXPECT_EQ(m->tensors.front().shape, (std::vector<int64_t>{7, 7, 3, 32}));
    EXPECT_EQ(m->tensors.back().name, "fc");
}

TEST(FaceApiModel, RejectsWrongChecksumAndMissingFiles) {
    SKIP_WITHOUT_MODEL();
    TempDir dir;
    EXPECT_TRUE(absl::IsNotFound(LoadFaceApiModel(dir.path()).status()));
    fs::copy_file(ModelDir() + "/" + kFaceApiManifest, dir.file(kFaceApiManifest));
    auto bytes = tfjs::ReadFile(ModelDir() + "/" + kFaceApiWeights);
    ASSERT_TRUE(bytes.ok());
    std::string corrupt = *bytes;
    corrupt[corrupt.size() / 2] ^= 0x01;
    WriteBytes(dir.file(kFaceApiWeights), corrupt);
    auto model = LoadFaceApiModel(dir.path());
    ASSERT_FALSE(model.ok());
    EXPECT_NE(model.status().message().find("checksum mismatch"), std::string::npos) << model.status();
    EXPECT_TRUE(LoadFaceApiModel(dir.path(), /*verify_checksum=*/false).ok());
}

// ---------------------------------------------------------------- golden descriptors

TEST(FaceApiModel, MatchesPublishedDescriptors) {
    SKIP_WITHOUT_MODEL();
    const std::string dir = SharedFaces() + "/faceapi-golden";
    SKIP_WITHOUT_DATA(dir);
    auto ex = MakeExtractor(/*aligned=*/true);
    ASSERT_NE(ex, nullptr);
    EXPECT_EQ(ex->raw_dim(), 128);
    const std::vector<std::pair<std::string, std::string>> cases = {{"face1.png", "faceDescriptor1.json"},
                                                                    {"face2.png", "faceDescriptor2.json"},
                                                                    {"face_rectangular.png", "faceDescriptorRect.json"}};
    std::vector<std::string> paths;
    for (const auto& c : cases) paths.push_back(dir + "/" + c.first);
    std::vector<ExtractResult> results = ex->ExtractFiles(paths);
    std::vector<std::vector<float>> refs;
    for (size_t i = 0; i < cases.size(); ++i) {
        ASSERT_TRUE(results[i].ok()) << results[i].message;
        auto text = tfjs::ReadFile(dir + "/" + cases[i].second);
        ASSERT_TRUE(text.ok());
        auto ref = json::Parse(*text);
        ASSERT_TRUE(ref.ok() && ref->is_array() && ref->array.size() == 128u);
        std::vector<float> r;
        for (const auto& v : ref->array) r.push_back(static_cast<float>(v.number));
        const double dist = Distance(results[i].raw, r);
        RecordProperty(cases[i].first, std::to_string(dist));
        EXPECT_LT(dist, 0.06) << cases[i].first;
        refs.push_back(r);
    }
    // Different people stay far apart (dlib's same-person threshold is 0.6).
    EXPECT_GT(Distance(results[0].raw, results[1].raw), 0.6);
    // Batch composition does not change a descriptor.
    auto single = ex->ExtractFiles({paths[2]});
    EXPECT_LT(Distance(single[0].raw, results[2].raw), 1e-4);
}

// ---------------------------------------------------------------- alignment

TEST(Alignment, RealignedChipsAgreeWithDlibChips) {
    SKIP_WITHOUT_MODEL();
    const std::string dir = SharedFaces() + "/dlib-johns";
    SKIP_WITHOUT_DATA(dir);
    auto images = ListImageFolder(dir);
    ASSERT_TRUE(images.ok()) << images.status();
    ASSERT_EQ(images->size(), 55u);
    std::vector<std::string> paths;
    for (const auto& im : *images) paths.push_back(im.path);
    auto direct_ex = MakeExtractor(/*aligned=*/true, 16);
    auto align_ex = MakeExtractor(/*aligned=*/false, 16);
    ASSERT_TRUE(direct_ex && align_ex);
    auto direct = direct_ex->ExtractFiles(paths);
    auto realigned = align_ex->ExtractFiles(paths);
    std::vector<double> dists;
    int found = 0;
    for (size_t i = 0; i < paths.size(); ++i) {
        ASSERT_TRUE(direct[i].ok());
        if (!realigned[i].ok()) continue;
        ++found;
        dists.push_back(Distance(direct[i].raw, realigned[i].raw));
    }
    std::sort(dists.begin(), dists.end());
    ASSERT_FALSE(dists.empty());
    const double median = dists[dists.size() / 2], worst = dists.back();
    std::printf("dlib-johns: %d/%zu chips re-detected; re-aligned vs direct distance median %.4f, max %.4f\n", found,
                paths.size(), median, worst);
    // Measured: all 55 found, median 0.047, max 0.116; dlib's same-person threshold is 0.6.
    EXPECT_GE(found, 53);
    EXPECT_LT(median, 0.1);
    EXPECT_LT(worst, 0.2);
}

// ---------------------------------------------------------------- bad inputs

TEST(BadImages, GiveOutcomesNotCrashes) {
    SKIP_WITHOUT_MODEL();
    TempDir dir;
    WriteBytes(dir.file("empty.jpg"), "");
    WriteBytes(dir.file("garbage.png"), std::string("\x89PNG\r\n\x1a\n garbage garbage garbage garbage", 40));
    WriteBytes(dir.file("garbage.jpg"), std::string("\xff\xd8\xff\xe0 not really a jpeg at all....", 36));
    WriteBytes(dir.file("text.png"), "hello, this is not an image");
    RgbImage tiny{12, 9, std::vector<uint8_t>(12 * 9 * 3, 128)};
    ASSERT_TRUE(WritePng(tiny, dir.file("tiny.png")).ok());
    RgbImage noise{200, 160, std::vector<uint8_t>(200 * 160 * 3)};
    std::mt19937 rng(7);
    for (auto& p : noise.pixels) p = static_cast<uint8_t>(rng() & 0xFF);
    ASSERT_TRUE(WritePng(noise, dir.file("noise.png")).ok());
    std::vector<std::string> paths = {dir.file("empty.jpg"), dir.file("garbage.png"), dir.file("garbage.jpg"),
                                      dir.file("text.png"),  dir.file("missing.jpg"), dir.file("tiny.png"),
                                      dir.file("noise.png")};
    const std::string johns = SharedFaces() + "/dlib-johns/John_Simm/000288_00470387.jpg";
    if (fs::exists(johns)) {  // a truncated JPEG: libjpeg may pad it or fail; either is fine
        auto bytes = tfjs::ReadFile(johns);
        WriteBytes(dir.file("truncated.jpg"), bytes->substr(0, bytes->size() / 3));
        paths.push_back(dir.file("truncated.jpg"));
    }
    auto ex = MakeExtractor(/*aligned=*/false, 3);
    ASSERT_NE(ex, nullptr);
    auto r = ex->ExtractFiles(paths);
    ASSERT_EQ(r.size(), paths.size());
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(r[i].outcome, FaceOutcome::kUnreadable) << paths[i] << ": " << r[i].message;
        EXPECT_FALSE(r[i].message.empty());
        EXPECT_TRUE(r[i].features.empty());
    }
    EXPECT_EQ(r[5].outcome, FaceOutcome::kTooSmall) << r[5].message;
    EXPECT_EQ(r[6].outcome, FaceOutcome::kNoFace) << r[6].message;
    EXPECT_TRUE(absl::IsNotFound(ex->ExtractFile(dir.file("noise.png")).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(ex->ExtractFile(dir.file("garbage.jpg")).status()));
    // Aligned mode has no detector, but still rejects unreadable and tiny images.
    auto aligned = MakeExtractor(/*aligned=*/true);
    auto ra = aligned->ExtractFiles({dir.file("empty.jpg"), dir.file("tiny.png"), dir.file("noise.png")});
    EXPECT_EQ(ra[0].outcome, FaceOutcome::kUnreadable);
    EXPECT_EQ(ra[1].outcome, FaceOutcome::kTooSmall);
    EXPECT_EQ(ra[2].outcome, FaceOutcome::kOk);
    EXPECT_TRUE(ex->ExtractFiles({}).empty());
}

TEST(BadImages, SeveralFacesUseTheLargest) {
    SKIP_WITHOUT_MODEL();
    const std::string a = SharedFaces() + "/dlib-johns/John_Simm/000288_00470387.jpg";
    const std::string b = SharedFaces() + "/dlib-johns/John_Salley/000194_02159572.jpg";
    if (!fs::exists(a) || !fs::exists(b)) GTEST_SKIP() << "shared test data not found";
    auto ia = DecodeImageFile(a), ib = DecodeImageFile(b);
    ASSERT_TRUE(ia.ok() && ib.ok());
    // Side by side: John Simm at full size, John Salley at 0.7x the size, on a grey canvas.
    RgbImage canvas{420, 220, std::vector<uint8_t>(420 * 220 * 3, 90)};
    auto paste = [&](const RgbImage& im, int x0, int y0, double scale) {
        const int w = static_cast<int>(im.width * scale), h = static_cast<int>(im.height * scale);
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                for (int c = 0; c < 3; ++c)
                    canvas.pixels[((y0 + y) * canvas.width + x0 + x) * 3 + c] =
                        im.pixels[(static_cast<int>(y / scale) * im.width + static_cast<int>(x / scale)) * 3 + c];
    };
    paste(*ia, 30, 35, 1.0);
    paste(*ib, 260, 60, 0.7);
    auto ex = MakeExtractor(/*aligned=*/false);
    ExtractResult r = ex->ExtractImage(canvas);
    ASSERT_TRUE(r.ok()) << r.message;
    EXPECT_EQ(r.outcome, FaceOutcome::kSeveralFaces);
    EXPECT_EQ(r.num_faces, 2);
    auto alone = ex->ExtractFile(a);
    ASSERT_TRUE(alone.ok());
    EXPECT_GT(std::inner_product(r.features.begin(), r.features.end(), alone->begin(), 0.0) / ex->groups(), 0.8);
}

// ---------------------------------------------------------------- grouping and batching

TEST(Grouping, GroupsAreUnitNormAndRawIsKept) {
    std::vector<float> x(2 * 12);
    std::mt19937 rng(3);
    std::normal_distribution<float> n01;
    for (auto& v : x) v = n01(rng);
    std::fill(x.begin() + 4, x.begin() + 8, 0.0f);  // a zero group stays zero
    std::vector<float> y = x;
    NormalizeGroups(y.data(), 2, 3, 4);
    for (int g = 0; g < 6; ++g) {
        double s = 0;
        for (int j = 0; j < 4; ++j) s += y[g * 4 + j] * y[g * 4 + j];
        EXPECT_NEAR(s, g == 1 ? 0.0 : 1.0, 1e-6);
    }
    float cos[3];
    GroupCosines(x.data(), x.data() + 12, 3, 4, cos);
    float cos_n[3];
    GroupCosines(y.data(), y.data() + 12, 3, 4, cos_n);
    for (int g = 0; g < 3; ++g) EXPECT_NEAR(cos[g], cos_n[g], 1e-6);
}

TEST(Grouping, ExtractorGroupsAndBatches) {
    SKIP_WITHOUT_MODEL();
    const std::string dir = SharedFaces() + "/faceapi-bbt";
    SKIP_WITHOUT_DATA(dir);
    auto images = ListImageFolder(dir);
    ASSERT_TRUE(images.ok());
    ASSERT_EQ(images->size(), 40u);
    EXPECT_EQ((*images)[0].identity, "amy");
    std::vector<int> labels = IdentityLabels(*images);
    EXPECT_EQ(labels.front(), 0);
    EXPECT_EQ(labels.back(), 7);
    std::vector<std::string> paths;
    for (int i = 0; i < 7; ++i) paths.push_back((*images)[i * 5].path);

    ExtractorOptions o;
    o.model_dir = ModelDir();
    o.aligned = true;
    o.batch_size = 3;  // 7 images: batches of 3, 3, 1
    o.groups = 4;
    o.group_dim = 32;
    auto ex = Extractor::Create(o);
    ASSERT_TRUE(ex.ok()) << ex.status();
    std::vector<std::pair<int64_t, int64_t>> calls;
    auto r = (*ex)->ExtractFiles(paths, [&](int64_t done, int64_t total) { calls.push_back({done, total}); });
    EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{3, 7}, {6, 7}, {7, 7}}));
    for (const auto& res : r) {
        ASSERT_TRUE(res.ok());
        ASSERT_EQ(res.features.size(), 128u);
        for (int g = 0; g < 4; ++g) {
            double s = 0, raw = 0;
            for (int j = 0; j < 32; ++j) {
                s += res.features[g * 32 + j] * res.features[g * 32 + j];
                raw += res.raw[g * 32 + j] * res.raw[g * 32 + j];
            }
            EXPECT_NEAR(s, 1.0, 1e-5);
            EXPECT_GT(std::abs(raw - 1.0), 1e-3);  // the raw output is not normalised
        }
    }
    o.groups = 5;
    auto bad = Extractor::Create(o);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("does not match"), std::string::npos);
    o.groups = 0;
    o.group_dim = 0;
    auto def = Extractor::Create(o);
    ASSERT_TRUE(def.ok());
    EXPECT_EQ((*def)->groups(), 8);
    EXPECT_EQ((*def)->group_dim(), 16);
}

TEST(ImageFolder, ListsIdentitiesAndRejectsMissingFolders) {
    TempDir dir;
    fs::create_directories(dir.file("bob/extra"));
    fs::create_directories(dir.file("alice"));
    WriteBytes(dir.file("bob/2.JPG"), "x");
    WriteBytes(dir.file("bob/extra/3.png"), "x");
    WriteBytes(dir.file("alice/1.jpeg"), "x");
    WriteBytes(dir.file("alice/notes.txt"), "x");
    WriteBytes(dir.file("loose.png"), "x");
    auto list = ListImageFolder(dir.path());
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 4u);
    EXPECT_EQ((*list)[0].identity, "alice");
    EXPECT_EQ((*list)[1].identity, "bob");
    EXPECT_EQ((*list)[2].identity, "bob");
    EXPECT_EQ((*list)[3].identity, fs::path(dir.path()).filename().string());
    EXPECT_EQ(IdentityLabels(*list), (std::vector<int>{0, 1, 1, 2}));
    EXPECT_TRUE(absl::IsNotFound(ListImageFolder(dir.file("nope")).status()));
}

// ---------------------------------------------------------------- TorchScript models

TEST(TorchScriptModel, LoadsAnyGroupedHead) {
    TempDir dir;
    torch::jit::Module m("GroupedHead");
    m.define(R"(
def forward(self, x):
    m = x.mean(dim=[2, 3])
    return torch.stack([m, m * 2.0, -m, m + 1.0], 1)
)");
    m.save(dir.file("head.pt"));
    RgbImage img{40, 60, std::vector<uint8_t>(40 * 60 * 3)};
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i * 7) % 251);
    ASSERT_TRUE(WritePng(img, dir.file("chip.png")).ok());

    ExtractorOptions o;
    o.torchscript_path = dir.file("head.pt");
    o.input_size = 32;
    o.normalization.mean = {10.f, 20.f, 30.f};
    o.normalization.std = {2.f, 4.f, 8.f};
    o.aligned = true;
    o.groups = 4;
    o.group_dim = 3;
    o.normalize_groups = false;
    auto ex = Extractor::Create(o);
    ASSERT_TRUE(ex.ok()) << ex.status();
    EXPECT_EQ((*ex)->raw_dim(), 12);
    auto f = (*ex)->ExtractFile(dir.file("chip.png"));
    ASSERT_TRUE(f.ok()) << f.status();
    std::vector<float> chip = PadToSquareAndResize(img, 32);
    for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int p = 0; p < 32 * 32; ++p) s += chip[p * 3 + c];
        const double mean = (s / (32 * 32) - o.normalization.mean[c]) / o.normalization.std[c];
        EXPECT_NEAR((*f)[c], mean, 1e-4);
        EXPECT_NEAR((*f)[3 + c], 2 * mean, 1e-4);
        EXPECT_NEAR((*f)[6 + c], -mean, 1e-4);
        EXPECT_NEAR((*f)[9 + c], mean + 1, 1e-4);
    }
    o.torchscript_path = dir.file("missing.pt");
    EXPECT_FALSE(Extractor::Create(o).ok());
}

TEST(Image, PadToSquareCentresAndResizesLikeTfjs) {
    RgbImage img{2, 4, std::vector<uint8_t>(2 * 4 * 3, 200)};
    std::vector<float> out = PadToSquareAndResize(img, 4);  // pad 1 column each side, no resize
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) EXPECT_EQ(out[(y * 4 + x) * 3], (x == 0 || x == 3) ? 0.f : 200.f);
    RgbImage odd{1, 4, std::vector<uint8_t>(4 * 3, 100)};  // diff 3: append round(1.5) = 2, prepend 1
    out = PadToSquareAndResize(odd, 4);
    for (int x = 0; x < 4; ++x) EXPECT_EQ(out[x * 3], x == 1 ? 100.f : 0.f);
    RgbImage ramp{4, 4, {}};
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x)
            for (int c = 0; c < 3; ++c) ramp.pixels.push_back(static_cast<uint8_t>(x * 40));
    out = PadToSquareAndResize(ramp, 8);  // src = dst * 0.5, clamped at the last column
    const float expected[8] = {0, 20, 40, 60, 80, 100, 120, 120};
    for (int x = 0; x < 8; ++x) EXPECT_FLOAT_EQ(out[x * 3], expected[x]);
}

// ---------------------------------------------------------------- importance learner

// Identities with a centre per group; group noise grows from group 0 to 5, groups 6-7 carry
// no identity at all.
struct Synthetic {
    std::vector<float> x;
    std::vector<int> labels;
};
Synthetic MakeSynthetic(int ids, int per_id, uint64_t seed) {
    const int G = 8, d = 16;
    const float noise[G] = {1.0f, 1.0f, 1.2f, 1.5f, 2.0f, 3.0f, -1, -1};
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n01;
    Synthetic s;
    for (int id = 0; id < ids; ++id) {
        std::vector<float> centre(G * d);
        for (auto& v : centre) v = n01(rng);
        for (int k = 0; k < per_id; ++k) {
            for (int g = 0; g < G; ++g)
                for (int j = 0; j < d; ++j)
                    s.x.push_back(noise[g] > 0 ? centre[g * d + j] + noise[g] * n01(rng) : n01(rng));
            s.labels.push_back(id);
        }
    }
    return s;
}

TEST(ImportanceLearner, LearnedWeightsBeatUniformOnNoisyGroups) {
    const int G = 8, d = 16;
    Synthetic train = MakeSynthetic(40, 5, 1), test = MakeSynthetic(40, 5, 2);
    ImportanceLearnerOptions opt;
    auto learned = LearnImportance(train.x.data(), 200, train.labels.data(), opt);
    ASSERT_TRUE(learned.ok()) << learned.status();
    ASSERT_EQ(learned->weights.size(), 8u);
    double sum = 0;
    for (float w : learned->weights) {
        EXPECT_GE(w, 0.0f);
        sum += w;
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_GT(learned->final_objective, learned->initial_objective);
    for (int g = 6; g < 8; ++g) EXPECT_LT(learned->weights[g], 0.05f);
    const PairScores uniform = AllPairScores(test.x.data(), 200, test.labels.data(), G, d, {});
    const PairScores weighted = AllPairScores(test.x.data(), 200, test.labels.data(), G, d, learned->weights);
    const double eer_u = EqualErrorRate(uniform.genuine, uniform.impostor);
    const double eer_w = EqualErrorRate(weighted.genuine, weighted.impostor);
    std::printf("synthetic held-out EER: uniform %.4f, learned %.4f\n", eer_u, eer_w);
    // Measured: uniform about 8%, learned about 3%.
    EXPECT_LT(eer_w, 0.75 * eer_u);

    opt.learn_attention = true;
    opt.steps = 150;
    auto att = LearnImportance(train.x.data(), 200, train.labels.data(), opt);
    ASSERT_TRUE(att.ok()) << att.status();
    ASSERT_EQ(att->attention_wq.size(), static_cast<size_t>(d * d));
    ASSERT_EQ(att->attention_wk.size(), static_cast<size_t>(d * d));
    EXPECT_GE(att->final_objective, att->initial_objective);
    std::vector<float> w = AttentionImportance(test.x.data(), 200, G, d, att->attention_wq, att->attention_wk);
    for (int i = 0; i < 200; ++i) {
        double s = 0;
        for (int g = 0; g < G; ++g) {
            EXPECT_GE(w[i * G + g], 0.0f);
            s += w[i * G + g];
        }
        EXPECT_NEAR(s, 1.0, 1e-5);
    }

    std::vector<int> one_label(10, 3);
    EXPECT_FALSE(LearnImportance(train.x.data(), 10, one_label.data(), {}).ok());
}

TEST(Verification, EerAndTarOnKnownScores) {
    EXPECT_DOUBLE_EQ(EqualErrorRate({0.9f, 0.8f, 0.7f}, {0.1f, 0.2f, 0.3f}), 0.0);
    EXPECT_NEAR(EqualErrorRate({0.9f, 0.8f, 0.2f, 0.7f}, {0.1f, 0.3f, 0.85f, 0.25f}), 0.25, 1e-9);
    std::vector<float> imp(100);
    for (int i = 0; i < 100; ++i) imp[i] = i / 100.0f;
    EXPECT_DOUBLE_EQ(TarAtFar({0.995f, 0.985f, 0.5f}, imp, 0.01), 2.0 / 3);  // FAR 1/100: accept > 0.98
    EXPECT_DOUBLE_EQ(TarAtFar({0.995f, 0.985f, 0.5f}, imp, 0.001), 1.0 / 3);  // above every impostor
}

}  // namespace
}  // namespace pslerp
