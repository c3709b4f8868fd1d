// Small helpers shared by the benchmark drivers (bench_search, bench_ivf, bench_dedup, bench_leak,
// bench_faces): their flags (through util/args.h), synthetic data, and the provenance every
// result file carries (command, git commit, SIMD level, thread count, load average). The clock
// and the median are util/timing.h.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/metrics.h"
#include "absl/strings/str_split.h"
#include "index/IndexProtectedSlerp.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"
#include "util/args.h"
#include "util/threads.h"
#include "util/timing.h"

namespace pslerp::bench {

/// The drivers' flags, read with the one parser (util/args.h): --name=value or --name value,
/// each read with a default; --help prints the flags with their defaults. A malformed or
/// unknown flag prints the error and exits with 2.
class Flags {
  public:
    /// Runs the driver again with OMP_WAIT_POLICY=PASSIVE first unless a policy is set
    /// (util/threads.h wait_passively: with spinning threads FAISS's batched search is unfairly slow).
    Flags(int argc, char** argv, std::string usage)
            : args_(std::vector<std::string>(argv + 1, argv + argc), {"help"}), usage_(std::move(usage)) {
        wait_passively(argv);
        for (int i = 0; i < argc; ++i) command_ += (i ? " " : "") + std::string(argv[i]);
        help_ = args_.flag("help");
        check(args_.parsed());
    }

    std::string str(const std::string& name, const std::string& def) {
        known_[name] = def;
        return args_.str(name, def);
    }
    int64_t integer(const std::string& name, int64_t def) {
        known_[name] = std::to_string(def);
        return value(args_.integer(name, def, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
    }
    double number(const std::string& name, double def) {
        known_[name] = std::to_string(def);
        return value(args_.number(name, def, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max()));
    }
    /// A comma-separated list of integers.
    std::vector<int64_t> integers(const std::string& name, const std::string& def) {
        known_[name] = def;
        return value(args_.integers(name, def, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
    }
    /// A list split at `sep`, empty items dropped.
    std::vector<std::string> strings(const std::string& name, const std::string& def, char sep) {
        std::vector<std::string> out;
        for (absl::string_view item : absl::StrSplit(str(name, def), sep, absl::SkipEmpty())) out.emplace_back(item);
        return out;
    }

    /// Call after reading every flag: rejects unknown ones, handles --help. Returns false if
    /// the program should exit (help printed).
    bool finish() {
        if (help_) {
            std::printf("%s\nflags (default):\n", usage_.c_str());
            for (const auto& [k, v] : known_) std::printf("  --%s (%s)\n", k.c_str(), v.c_str());
            return false;
        }
        check(args_.finish());
        return true;
    }
    const std::string& command() const { return command_; }

  private:
    static void check(const absl::Status& s) {
        if (s.ok()) return;
        std::fprintf(stderr, "error: %s (see --help)\n", std::string(s.message()).c_str());
        std::exit(kExitUsage);
    }
    template <class T>
    T value(absl::StatusOr<T> v) {
        check(v.status());
        return *v;
    }

    Args args_;
    std::string usage_, command_;
    std::map<std::string, std::string> known_;
    bool help_ = false;
};

/// The value, or the error on stderr and exit(1): drivers have no one to hand a status to.
template <class T>
T value_or_die(absl::StatusOr<T> s) {
    if (!s.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(s.status().message()).c_str());
        std::exit(1);
    }
    return *std::move(s);
}

// ---- the attack drivers' measures (bench_leak, bench_seal)

inline double dot(const float* a, const float* b, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += double(a[i]) * b[i];
    return s;
}

inline double cosine(const float* a, const float* b, int n) {
    const double na = std::sqrt(dot(a, a, n)), nb = std::sqrt(dot(b, b, n));
    return na > 0 && nb > 0 ? dot(a, b, n) / (na * nb) : 0.0;
}

/// Mean over groups of the cosine of group g of a with group g of b.
inline double group_cosine(const float* a, const float* b, int G, int d) {
    double s = 0;
    for (int g = 0; g < G; ++g) s += cosine(a + g * d, b + g * d, d);
    return s / G;
}

inline double dsys(const std::vector<float>& mated, const std::vector<float>& nonmated) {
    return value_or_die(unlinkability(mated, nonmated)).d_sys;
}

/// Threshold at FAR 1e-3 from non-mated scores.
inline double far_threshold(const std::vector<float>& mated, const std::vector<float>& nonmated) {
    const Roc roc = value_or_die(roc_curve(mated, nonmated));
    return value_or_die(tar_at_far(roc, 1e-3)).threshold;
}

inline double rate_at_or_above(const std::vector<float>& s, double t) {
    return double(std::count_if(s.begin(), s.end(), [&](float v) { return v >= t; })) / double(s.size());
}

/// Samples 0, 1 and 2 of identities 0..n-1 (n * D floats each): an enrolment, a second
/// enrolment or probe, and "another photo" of every person (the attack drivers).
inline std::vector<std::vector<float>> three_samples(const SynthConfig& cfg, const SynthModel& model, int64_t n) {
    const int D = cfg.dim();
    std::vector<std::vector<float>> x(3, std::vector<float>(size_t(n) * D));
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) {
        for (int s = 0; s < 3; ++s) synth_one(cfg, model, i, s, x[s].data() + i * D);
    }
    return x;
}

/// The drivers' synthetic config: G = dim / 16 groups of 16, seeded, generator defaults.
inline SynthConfig synth_config(int64_t dim, uint64_t seed) {
    if (dim % 16 != 0) {
        std::fprintf(stderr, "error: --dims must be multiples of 16, got %ld\n", long(dim));
        std::exit(1);
    }
    SynthConfig cfg;
    cfg.groups = int(dim / 16);
    cfg.group_dim = 16;
    cfg.seed = seed;
    return cfg;
}

/// The drivers' synthetic data under synth_config: a gallery of n identities and mated +
/// nonmated probes.
inline SynthSplit synth_data(int64_t dim, int64_t n, int64_t mated, int64_t nonmated, uint64_t seed) {
    return value_or_die(synth_gallery(synth_config(dim, seed), n, mated, nonmated));
}

/// "" for "", else "_" + text with every character outside [A-Za-z0-9.-] replaced by '-'
/// (result files of runs with index options, e.g. "t=0.9").
inline std::string file_suffix(const std::string& text) {
    if (text.empty()) return "";
    std::string out = "_" + text;
    for (char& c : out) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
    }
    return out;
}

inline std::string run_command(const std::string& cmd) {
    std::string out;
    if (FILE* f = popen(cmd.c_str(), "r")) {
        char buf[256];
        while (std::fgets(buf, sizeof buf, f)) out += buf;
        pclose(f);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

/// HEAD of the source tree this file belongs to, with "+dirty" when it has local changes.
inline std::string git_commit() {
    const std::string dir = std::filesystem::path(__FILE__).parent_path().string();
    std::string head = run_command("git -C '" + dir + "' rev-parse HEAD 2>/dev/null");
    if (head.empty()) return "unknown";
    if (!run_command("git -C '" + dir + "' status --porcelain --untracked-files=no 2>/dev/null").empty()) {
        head += "+dirty";
    }
    return head;
}

inline std::string load_average() {
    std::ifstream f("/proc/loadavg");
    std::string a, b, c;
    f >> a >> b >> c;
    return a + " " + b + " " + c;
}

inline std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    }
    return "unknown";
}

inline std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o;
}

/// The provenance block printed at the start of each driver and stored in its JSON.
struct Provenance {
    std::string command, commit, simd, cpu, load_start, wait_policy;
    uint64_t seed = 0;
    int max_threads = 0;

    Provenance(const std::string& cmd, uint64_t s)
            : command(cmd),
              commit(git_commit()),
              simd(kernels::simd_level()),
              cpu(cpu_model()),
              load_start(load_average()),
              wait_policy(omp_wait_policy()),
              seed(s),
              max_threads(omp_get_max_threads()) {}

    void print() const {
        std::printf("# command:     %s\n# git commit:  %s\n# simd level:  %s\n# cpu:         %s (%d OpenMP threads max, "
                    "OMP_WAIT_POLICY %s)\n# data seed:   %llu\n# load avg:    %s (at start; the machine is shared)\n",
                    command.c_str(), commit.c_str(), simd.c_str(), cpu.c_str(), max_threads, wait_policy.c_str(),
                    static_cast<unsigned long long>(seed), load_start.c_str());
        std::fflush(stdout);
    }

    std::string json() const {
        std::ostringstream o;
        o << "{\"command\": \"" << json_escape(command) << "\", \"git_commit\": \"" << commit
          << "\", \"simd_level\": \"" << simd << "\", \"cpu\": \"" << json_escape(cpu)
          << "\", \"max_threads\": " << max_threads << ", \"omp_wait_policy\": \"" << json_escape(wait_policy)
          << "\", \"seed\": " << seed << ", \"load_avg_start\": \""
          << load_start << "\", \"load_avg_end\": \"" << load_average() << "\"}";
        return o.str();
    }
};

}  // namespace pslerp::bench
