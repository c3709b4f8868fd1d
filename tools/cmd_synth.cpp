// pslerp synth: a synthetic gallery and probes (plugin/synth.h) written as arrays.
#include <cstdio>
#include <filesystem>
#include <limits>
#include <system_error>

#include "absl/strings/str_format.h"
#include "io/array_io.h"
#include "plugin/synth.h"
#include "tools/cli.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
    "usage: pslerp synth --out DIR [--gallery 100000] [--mated 1000] [--nonmated 1000]\n"
    "                    [--groups 8] [--group-dim 16] [--seed 42] [--offset-norm 0]\n"
    "                    [--noise 0.52] [--noisy-fraction 0.25] [--noisy-scale 2.5]\n"
    "                    [--format npy|fvecs] [--train 0]\n"
    "Writes gallery, gallery_labels, probes, probe_labels (mated probes first, labelled with\n"
    "their gallery identity; non-mated probes labelled -1) into DIR. --train N also writes\n"
    "train: N features of other identities from the same population (neither enrolled nor\n"
    "probes), for `pslerp enroll --train` (an IVF index's centroids).\n";

absl::Status run(Args& args, std::string& summary) {
    absl::StatusOr<std::string> out = args.required("out");
    if (!out.ok()) return out.status();
    SynthConfig config;
    constexpr double kHuge = std::numeric_limits<double>::max();
    absl::StatusOr<int64_t> gallery = args.integer("gallery", 100000, 0, kMaxCount);
    absl::StatusOr<int64_t> mated = args.integer("mated", 1000, 0, kMaxCount);
    absl::StatusOr<int64_t> nonmated = args.integer("nonmated", 1000, 0, kMaxCount);
    absl::StatusOr<int64_t> groups = args.integer("groups", config.groups, 1, 4096);
    absl::StatusOr<int64_t> group_dim = args.integer("group-dim", config.group_dim, 2, 1024);
    absl::StatusOr<int64_t> seed =
        args.integer("seed", static_cast<int64_t>(config.seed), 0, std::numeric_limits<int64_t>::max());
    absl::StatusOr<double> offset = args.number("offset-norm", config.offset_norm, 0, kHuge);
    absl::StatusOr<double> noise = args.number("noise", config.noise, 0, kHuge);
    absl::StatusOr<double> noisy_fraction = args.number("noisy-fraction", config.noisy_group_fraction, 0, 1);
    absl::StatusOr<double> noisy_scale = args.number("noisy-scale", config.noisy_group_scale, 0, kHuge);
    absl::StatusOr<int64_t> train = args.integer("train", 0, 0, kMaxCount);
    const std::string format = args.str("format", "npy");
    for (const absl::Status& st : {gallery.status(), mated.status(), nonmated.status(), groups.status(),
                                   group_dim.status(), seed.status(), offset.status(), noise.status(),
                                   noisy_fraction.status(), noisy_scale.status(), train.status()}) {
        if (!st.ok()) return st;
    }
    if (absl::Status st = args.finish(); !st.ok()) return st;
    if (!args.positional().empty()) return usage_error("synth takes no positional arguments (the folder is --out)");
    if (format != "npy" && format != "fvecs") return usage_error("--format must be npy or fvecs, got '" + format + "'");
    if (*noisy_scale <= 0) return usage_error("--noisy-scale must be > 0");
    if (*mated > 0 && *gallery == 0) return usage_error("--mated probes need a gallery (--gallery >= 1)");
    if (absl::Status st = check_buffer("synthetic features (gallery + probes + training) x dimension",
                                       {*gallery + *mated + *nonmated + *train, *groups * *group_dim}, sizeof(float));
        !st.ok()) {
        return st;
    }
    config.groups = static_cast<int>(*groups);
    config.group_dim = static_cast<int>(*group_dim);
    config.seed = static_cast<uint64_t>(*seed);
    config.offset_norm = static_cast<float>(*offset);
    config.noise = static_cast<float>(*noise);
    config.noisy_group_fraction = static_cast<float>(*noisy_fraction);
    config.noisy_group_scale = static_cast<float>(*noisy_scale);

    std::error_code ec;
    std::filesystem::create_directories(*out, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrFormat("cannot create %s: %s", *out, ec.message()));

    const double t0 = now_seconds();
    absl::StatusOr<SynthSplit> split = synth_gallery(config, *gallery, *mated, *nonmated);
    if (!split.ok()) return split.status();
    absl::StatusOr<SynthSet> others = synth_identities_checked(config, *gallery + *nonmated, *train);
    if (!others.ok()) return others.status();
    const double seconds = now_seconds() - t0;

    const std::string dir = *out + "/";
    const SynthSet& g = split->gallery;
    const SynthSet& p = split->probes;
    const bool npy = format == "npy";
    const std::string fext = npy ? ".npy" : ".fvecs", iext = npy ? ".npy" : ".ivecs";
    auto write_f = [&](const std::string& name, const SynthSet& s) {
        return npy ? write_npy_f32(dir + name + fext, s.x.data(), s.n, s.dim)
                   : write_fvecs(dir + name + fext, s.x.data(), s.n, s.dim);
    };
    auto write_i = [&](const std::string& name, const SynthSet& s) {
        return npy ? write_npy_i64(dir + name + iext, s.labels.data(), s.n)
                   : write_ivecs(dir + name + iext, s.labels.data(), s.n, 1);
    };
    if (absl::Status st = write_f("gallery", g); !st.ok()) return st;
    if (absl::Status st = write_i("gallery_labels", g); !st.ok()) return st;
    if (absl::Status st = write_f("probes", p); !st.ok()) return st;
    if (absl::Status st = write_i("probe_labels", p); !st.ok()) return st;
    if (*train > 0) {
        if (absl::Status st = write_f("train", *others); !st.ok()) return st;
    }
    summary = absl::StrFormat(
        "synth: %d gallery, %d mated + %d non-mated probes, %d training features of other identities, D=%d "
        "(%dx%d), seed %d, offset %.3g -> %s (.%s, generated in %.2f s)",
        g.n, split->mated, split->nonmated, others->n, g.dim, config.groups, config.group_dim, config.seed,
        config.offset_norm, *out, format, seconds);
    return absl::OkStatus();
}

}  // namespace

int cmd_synth(const std::vector<std::string>& argv) {
    return run_command("synth", argv, {}, kUsage, [](Args& args) {
        std::string summary;
        absl::Status st = run(args, summary);
        if (st.ok()) std::printf("%s\n", summary.c_str());
        return st;
    });
}

}  // namespace pslerp::cli
