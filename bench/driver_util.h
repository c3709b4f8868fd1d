// Small helpers shared by the benchmark drivers (bench_search, bench_ivf, bench_dedup): a flag parser,
// timing, medians, and the provenance every result file carries (command, git commit, SIMD
// level, thread count, load average).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "index/IndexProtectedSlerp.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"

namespace pslerp::bench {

/// --name=value or --name value; --help prints the flags with their defaults.
class Flags {
  public:
    Flags(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "--help" || a == "-h") {
                help_ = true;
                continue;
            }
            if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument '" + a + "'");
            a = a.substr(2);
            const auto eq = a.find('=');
            if (eq != std::string::npos) {
                values_[a.substr(0, eq)] = a.substr(eq + 1);
            } else if (i + 1 < argc) {
                values_[a] = argv[++i];
            } else {
                throw std::invalid_argument("flag --" + a + " needs a value");
            }
        }
        for (int i = 0; i < argc; ++i) command_ += (i ? " " : "") + std::string(argv[i]);
    }

    std::string str(const std::string& name, const std::string& def) { return lookup(name, def); }
    int64_t integer(const std::string& name, int64_t def) { return std::stoll(lookup(name, std::to_string(def))); }
    std::vector<int64_t> integers(const std::string& name, const std::string& def) {
        std::vector<int64_t> out;
        for (const auto& s : split(lookup(name, def), ',')) out.push_back(std::stoll(s));
        return out;
    }
    std::vector<std::string> strings(const std::string& name, const std::string& def, char sep) {
        return split(lookup(name, def), sep);
    }

    /// Call after reading every flag: rejects unknown ones, handles --help. Returns false if
    /// the program should exit (help printed).
    bool finish() {
        for (const auto& [k, v] : values_) {
            if (!known_.count(k)) throw std::invalid_argument("unknown flag --" + k + " (see --help)");
        }
        if (help_) {
            std::printf("%s\nflags (default):\n", usage_.c_str());
            for (const auto& [k, v] : known_) std::printf("  --%s (%s)\n", k.c_str(), v.c_str());
        }
        return !help_;
    }
    const std::string& command() const { return command_; }

    static std::vector<std::string> split(const std::string& s, char sep) {
        std::vector<std::string> out;
        std::stringstream ss(s);
        std::string item;
        while (std::getline(ss, item, sep)) {
            if (!item.empty()) out.push_back(item);
        }
        return out;
    }

  private:
    std::string lookup(const std::string& name, const std::string& def) {
        known_[name] = def;
        const auto it = values_.find(name);
        return it == values_.end() ? def : it->second;
    }
    std::string usage_, command_;
    std::map<std::string, std::string> values_, known_;
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

inline double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
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
    std::string command, commit, simd, cpu, load_start;
    uint64_t seed = 0;
    int max_threads = 0;

    Provenance(const std::string& cmd, uint64_t s)
            : command(cmd),
              commit(git_commit()),
              simd(kernels::simd_level()),
              cpu(cpu_model()),
              load_start(load_average()),
              seed(s),
              max_threads(omp_get_max_threads()) {}

    void print() const {
        std::printf("# command:     %s\n# git commit:  %s\n# simd level:  %s\n# cpu:         %s (%d OpenMP threads max)\n"
                    "# data seed:   %llu\n# load avg:    %s (at start; the machine is shared)\n",
                    command.c_str(), commit.c_str(), simd.c_str(), cpu.c_str(), max_threads,
                    static_cast<unsigned long long>(seed), load_start.c_str());
        std::fflush(stdout);
    }

    std::string json() const {
        std::ostringstream o;
        o << "{\"command\": \"" << json_escape(command) << "\", \"git_commit\": \"" << commit
          << "\", \"simd_level\": \"" << simd << "\", \"cpu\": \"" << json_escape(cpu)
          << "\", \"max_threads\": " << max_threads << ", \"seed\": " << seed << ", \"load_avg_start\": \""
          << load_start << "\", \"load_avg_end\": \"" << load_average() << "\"}";
        return o.str();
    }
};

}  // namespace pslerp::bench
