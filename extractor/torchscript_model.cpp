// Any TorchScript face network: (n, 3, S, S) normalised float input, (n, D) or (n, G, d) output.
// Kept in its own file: <torch/script.h> is the heaviest include of the extractor.
#include <torch/script.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "extractor/face_model.h"

namespace pslerp {
namespace {

class TorchScriptModel final : public FaceModel {
  public:
    TorchScriptModel(torch::jit::Module module, std::string path, int input_size, const InputNormalization& norm)
        : module_(std::move(module)), path_(std::move(path)), input_size_(input_size) {
        mean_ = torch::tensor(std::vector<float>(norm.mean.begin(), norm.mean.end())).view({1, 3, 1, 1});
        std_ = torch::tensor(std::vector<float>(norm.std.begin(), norm.std.end())).view({1, 3, 1, 1});
    }

    absl::Status probe() {
        std::vector<float> chip(static_cast<size_t>(input_size_) * input_size_ * 3, 128.f);
        auto out = forward(chip.data(), 1);
        if (!out.ok()) return out.status();
        if (out->dim() != 2 || out->size(1) <= 0)
            return absl::InvalidArgumentError(absl::StrCat("TorchScript model ", path_,
                                                           ": output must be (n, D) or (n, G, d)"));
        output_dim_ = static_cast<int>(out->size(1));
        return absl::OkStatus();
    }

    int input_size() const override { return input_size_; }
    int output_dim() const override { return output_dim_; }
    std::string description() const override {
        return absl::StrCat("TorchScript ", path_, " (", input_size_, "x", input_size_, " -> ", output_dim_, ")");
    }

    absl::Status embed(const float* chips, int64_t n, float* out) const override {
        if (n == 0) return absl::OkStatus();
        auto y = forward(chips, n);
        if (!y.ok()) return y.status();
        if (y->size(0) != n || y->size(1) != output_dim_)
            return absl::InternalError(absl::StrCat("TorchScript model ", path_, ": output shape changed between calls"));
        std::memcpy(out, y->data_ptr<float>(), sizeof(float) * n * output_dim_);
        return absl::OkStatus();
    }

  private:
    absl::StatusOr<at::Tensor> forward(const float* chips, int64_t n) const {
        try {
            c10::InferenceMode guard;
            at::Tensor x = torch::from_blob(const_cast<float*>(chips), {n, input_size_, input_size_, 3}, torch::kFloat)
                               .permute({0, 3, 1, 2});
            x = ((x - mean_) / std_).contiguous();
            // Module::forward is not const, but running a loaded module in eval mode does not mutate it.
            auto& module = const_cast<torch::jit::Module&>(module_);
            torch::jit::IValue result = module.forward({x});
            at::Tensor y;
            if (result.isTensor()) {
                y = result.toTensor();
            } else if (result.isTuple() && !result.toTupleRef().elements().empty() &&
                       result.toTupleRef().elements()[0].isTensor()) {
                y = result.toTupleRef().elements()[0].toTensor();
            } else {
                return absl::InvalidArgumentError(absl::StrCat("TorchScript model ", path_, " did not return a tensor"));
            }
            if (y.dim() < 2 || y.size(0) != n)
                return absl::InvalidArgumentError(absl::StrCat("TorchScript model ", path_,
                                                               ": output must be (n, D) or (n, G, d)"));
            return y.reshape({n, -1}).to(torch::kFloat).contiguous();
        } catch (const c10::Error& e) {
            return absl::InvalidArgumentError(absl::StrCat("TorchScript model ", path_, ": ", e.what_without_backtrace()));
        }
    }

    torch::jit::Module module_;
    std::string path_;
    int input_size_;
    int output_dim_ = 0;
    at::Tensor mean_, std_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FaceModel>> load_torchscript_model(const std::string& path, int input_size,
                                                                  const InputNormalization& norm) {
    if (input_size <= 0) return absl::InvalidArgumentError("TorchScript model: input size must be positive");
    torch::jit::Module module;
    try {
        module = torch::jit::load(path);
        module.eval();
    } catch (const c10::Error& e) {
        return absl::InvalidArgumentError(absl::StrCat("cannot load TorchScript model ", path, ": ",
                                                       e.what_without_backtrace()));
    }
    auto model = std::make_unique<TorchScriptModel>(std::move(module), path, input_size, norm);
    if (absl::Status st = model->probe(); !st.ok()) return st;
    return std::unique_ptr<FaceModel>(std::move(model));
}

}  // namespace pslerp
