// face-api.js's face recognition net (the dlib ResNet-34-like metric network) in ATen.
// Every conv has a bias and a per-channel affine "scale" layer; both fold into the conv.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "extractor/face_model.h"
#include "extractor/tfjs_weights.h"

namespace pslerp {
namespace {

using WeightMap = std::map<std::string, tfjs::Tensor>;

struct Conv {
    at::Tensor weight;  // [out, in, kh, kw]
    at::Tensor bias;    // [out]
};

class FaceApiNet final : public FaceModel {
  public:
    static absl::StatusOr<std::unique_ptr<FaceModel>> build(const WeightMap& w) {
        auto net = std::unique_ptr<FaceApiNet>(new FaceApiNet());
        absl::Status st;
        auto conv = [&](const std::string& prefix, int64_t kernel, int64_t in, int64_t out) {
            Conv c;
            if (!st.ok()) return c;
            auto get = [&](const std::string& name, std::vector<int64_t> shape) -> const tfjs::Tensor* {
                auto it = w.find(name);
                if (it == w.end()) {
                    st = absl::InvalidArgumentError(absl::StrCat("face-api weights: missing tensor ", name));
                    return nullptr;
                }
                if (it->second.shape != shape) {
                    st = absl::InvalidArgumentError(absl::StrCat("face-api weights: tensor ", name, " has an unexpected shape"));
                    return nullptr;
                }
                return &it->second;
            };
            const tfjs::Tensor* filters = get(prefix + "/conv/filters", {kernel, kernel, in, out});
            const tfjs::Tensor* bias = get(prefix + "/conv/bias", {out});
            const tfjs::Tensor* scale = get(prefix + "/scale/weights", {out});
            const tfjs::Tensor* shift = get(prefix + "/scale/biases", {out});
            if (!st.ok()) return c;
            // tfjs filters are [kh, kw, in, out]; ATen wants [out, in, kh, kw].
            at::Tensor f = at::from_blob(const_cast<float*>(filters->values.data()), {kernel, kernel, in, out},
                                         at::kFloat).permute({3, 2, 0, 1});
            at::Tensor s = at::from_blob(const_cast<float*>(scale->values.data()), {out}, at::kFloat);
            at::Tensor b = at::from_blob(const_cast<float*>(bias->values.data()), {out}, at::kFloat);
            at::Tensor sh = at::from_blob(const_cast<float*>(shift->values.data()), {out}, at::kFloat);
            // ((x * f) + b) * s + sh  ==  x * (f s) + (b s + sh)
            c.weight = (f * s.view({out, 1, 1, 1})).contiguous();
            c.bias = (b * s + sh).clone();
            return c;
        };
        net->conv32_down_ = conv("conv32_down", 7, 3, 32);
        const std::vector<std::pair<std::string, int64_t>> stages = {
            {"conv32_1", 32}, {"conv32_2", 32}, {"conv32_3", 32}, {"conv64_down", 64}, {"conv64_1", 64},
            {"conv64_2", 64}, {"conv64_3", 64}, {"conv128_down", 128}, {"conv128_1", 128}, {"conv128_2", 128},
            {"conv256_down", 256}, {"conv256_1", 256}, {"conv256_2", 256}, {"conv256_down_out", 256}};
        int64_t channels = 32;
        for (const auto& [name, out] : stages) {
            Block b;
            b.down = name.find("_down") != std::string::npos;
            b.conv1 = conv(name + "/conv1", 3, channels, out);
            b.conv2 = conv(name + "/conv2", 3, out, out);
            net->blocks_.push_back(std::move(b));
            channels = out;
        }
        auto fc = w.find("fc");
        if (st.ok() && (fc == w.end() || fc->second.shape != std::vector<int64_t>{256, 128}))
            st = absl::InvalidArgumentError("face-api weights: missing or misshapen tensor fc [256, 128]");
        if (!st.ok()) return st;
        net->fc_ = at::from_blob(const_cast<float*>(fc->second.values.data()), {256, 128}, at::kFloat).clone();
        return std::unique_ptr<FaceModel>(std::move(net));
    }

    int input_size() const override { return 150; }
    int output_dim() const override { return 128; }
    std::string description() const override {
        return absl::StrCat("face-api ", kFaceApiVersion, " face recognition net (dlib ResNet, 150x150 -> 128)");
    }

    absl::Status embed(const float* chips, int64_t n, float* out) const override {
        if (n == 0) return absl::OkStatus();
        c10::InferenceMode guard;
        at::Tensor x = at::from_blob(const_cast<float*>(chips), {n, 150, 150, 3}, at::kFloat).permute({0, 3, 1, 2});
        // Channels last (NHWC in memory, the chips' own layout): LibTorch's CPU convolutions
        // (oneDNN) take about 0.6 of the time they take on NCHW (bench/RESULTS.md, section 6).
        x = ((x - mean_.view({1, 3, 1, 1})) / 255.0f).contiguous(at::MemoryFormat::ChannelsLast);
        x = at::relu(at::conv2d(x, conv32_down_.weight, conv32_down_.bias, {2, 2}));
        x = at::max_pool2d(x, {3, 3}, {2, 2});
        for (const Block& b : blocks_) x = b.down ? residual_down(x, b) : residual(x, b);
        x = x.mean({2, 3});
        at::Tensor y = at::matmul(x, fc_).contiguous();
        std::memcpy(out, y.data_ptr<float>(), sizeof(float) * n * 128);
        return absl::OkStatus();
    }

  private:
    struct Block {
        bool down = false;
        Conv conv1, conv2;
    };

    FaceApiNet() : mean_(at::tensor(std::vector<float>{122.782f, 117.001f, 104.298f})) {}

    static at::Tensor residual(const at::Tensor& x, const Block& b) {
        at::Tensor y = at::relu(at::conv2d(x, b.conv1.weight, b.conv1.bias, {1, 1}, {1, 1}));
        y = at::conv2d(y, b.conv2.weight, b.conv2.bias, {1, 1}, {1, 1});
        return at::relu(y + x);
    }

    // conv1 is 3x3 stride 2 'valid'; the shortcut is a 2x2 average pool with channels
    // zero-padded; when the conv path is smaller, it gets a zero row/column at bottom/right.
    static at::Tensor residual_down(const at::Tensor& x, const Block& b) {
        at::Tensor y = at::relu(at::conv2d(x, b.conv1.weight, b.conv1.bias, {2, 2}));
        y = at::conv2d(y, b.conv2.weight, b.conv2.bias, {1, 1}, {1, 1});
        at::Tensor pooled = at::avg_pool2d(x, {2, 2}, {2, 2});
        if (pooled.size(2) != y.size(2) || pooled.size(3) != y.size(3))
            y = at::constant_pad_nd(y, {0, pooled.size(3) - y.size(3), 0, pooled.size(2) - y.size(2)}, 0);
        if (pooled.size(1) != y.size(1))
            pooled = at::constant_pad_nd(pooled, {0, 0, 0, 0, 0, y.size(1) - pooled.size(1)}, 0);
        return at::relu(y + pooled);
    }

    at::Tensor mean_;
    Conv conv32_down_;
    std::vector<Block> blocks_;
    at::Tensor fc_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FaceModel>> load_face_api_model(const std::string& model_dir, bool verify_checksum) {
    const std::string dir = model_dir.empty() ? "." : model_dir;
    auto weights = tfjs::load_weights(dir + "/" + kFaceApiManifest, verify_checksum ? kFaceApiWeightsSha256 : "");
    if (!weights.ok()) {
        if (absl::IsNotFound(weights.status()))
            return absl::NotFoundError(absl::StrCat(weights.status().message(),
                                                    " (fetch the face-api model with scripts/fetch_model.sh ", dir, ")"));
        return weights.status();
    }
    return FaceApiNet::build(*weights);
}

void set_torch_threads(int n) {
    if (n > 0) at::set_num_threads(n);
}

}  // namespace pslerp
