#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/cli.h"

namespace pslerp::cli {

Args::Args(std::vector<std::string> argv, std::vector<std::string> flags) {
    auto is_flag = [&](const std::string& name) {
        for (const auto& f : flags) {
            if (f == name) return true;
        }
        return false;
    };
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
            std::string name = a.substr(2), value;
            const size_t eq = name.find('=');
            if (eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
            } else if (is_flag(name)) {
                value = "true";
            } else if (i + 1 < argv.size()) {
                value = argv[++i];
            } else {
                parse_error_ = absl::StrCat("option --", name, " needs a value");
                continue;
            }
            if (values_.count(name)) parse_error_ = absl::StrCat("option --", name, " given twice");
            values_[name] = value;
            used_[name] = false;
        } else if (a.size() == 2 && a[0] == '-' && a[1] != '-') {
            // short aliases: -o, -k, -t, -n
            const std::map<char, std::string> alias = {{'o', "out"}, {'k', "k"}, {'t', "threads"}, {'n', "n"}};
            auto it = alias.find(a[1]);
            if (it == alias.end() || i + 1 >= argv.size()) {
                parse_error_ = absl::StrCat("unknown option ", a);
                continue;
            }
            values_[it->second] = argv[++i];
            used_[it->second] = false;
        } else {
            positional_.push_back(a);
        }
    }
}

std::string Args::str(const std::string& name, const std::string& def) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    return it->second;
}

absl::StatusOr<std::string> Args::required(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return absl::InvalidArgumentError(absl::StrCat("missing required option --", name));
    used_[name] = true;
    return it->second;
}

absl::StatusOr<int64_t> Args::integer(const std::string& name, int64_t def) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    int64_t v;
    if (!absl::SimpleAtoi(it->second, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("option --", name, ": expected an integer, got '", it->second, "'"));
    }
    return v;
}

absl::StatusOr<double> Args::number(const std::string& name, double def) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    double v;
    if (!absl::SimpleAtod(it->second, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("option --", name, ": expected a number, got '", it->second, "'"));
    }
    return v;
}

bool Args::flag(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return false;
    used_[name] = true;
    return it->second == "true" || it->second == "1";
}

namespace {

/// Options of the retired coarse stage, with what replaced them: an old script gets told what
/// to use instead rather than "unknown option".
const std::map<std::string, std::string>& retired_options() {
    static const std::map<std::string, std::string> retired = {
            {"k-factor", "use an IVF index (--factory IVF1024,PSlerp8x16 at enrolment) and --nprobe"},
            {"ef-search",
             "use an IVF index and --nprobe (for very many lists, an HNSW quantizer: IVF65536_HNSW32,PSlerp8x16)"},
            {"range-shortlist", "use an IVF index: a range search scores every member of the --nprobe lists"},
            {"embedding", "an IVF index assigns each entry's list from its centred raw feature (IVF1024,PSlerp8x16)"},
    };
    return retired;
}

}  // namespace

absl::Status Args::check_retired() const {
    for (const auto& [name, replacement] : retired_options()) {
        if (values_.count(name)) {
            return absl::InvalidArgumentError(
                    absl::StrCat("--", name, " belonged to the retired coarse stage; ", replacement));
        }
    }
    return absl::OkStatus();
}

absl::Status Args::finish() const {
    if (!parse_error_.empty()) return absl::InvalidArgumentError(parse_error_);
    if (absl::Status s = check_retired(); !s.ok()) return s;
    std::vector<std::string> unknown;
    for (const auto& [name, used] : used_) {
        if (!used) unknown.push_back("--" + name);
    }
    if (!unknown.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("unknown option(s): ", absl::StrJoin(unknown, " ")));
    }
    return absl::OkStatus();
}

Progress::Progress(std::string label, int64_t total) : label_(std::move(label)), total_(total) {
    const char* env = std::getenv("PSLERP_PROGRESS");
    enabled_ = env ? std::string(env) == "1" : isatty(STDERR_FILENO) != 0;
}

Progress::~Progress() {
    finish();
}

void Progress::update(int64_t done) {
    if (!enabled_ || total_ <= 0) return;
    const int64_t pct = done * 100 / total_;
    if (pct == last_drawn_) return;
    last_drawn_ = pct;
    const int width = 30;
    const int filled = static_cast<int>(pct * width / 100);
    std::fprintf(stderr, "\r%-16s [%s%s] %3ld%% (%ld/%ld)", label_.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), long(pct), long(done), long(total_));
    std::fflush(stderr);
}

void Progress::finish() {
    if (finished_) return;
    finished_ = true;
    if (enabled_ && last_drawn_ >= 0) {
        update(total_);
        std::fprintf(stderr, "\n");
    }
}

int run_command(const char* name, const std::vector<std::string>& argv, std::vector<std::string> flags,
                const char* usage, const std::function<absl::Status(Args&)>& run) {
    flags.push_back("help");
    Args args(argv, flags);
    if (args.flag("help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (absl::Status s = run(args); !s.ok()) return fail(name, s);
    return 0;
}

int fail(const std::string& cmd, const absl::Status& status) {
    std::cerr << "pslerp " << cmd << ": " << status.message() << "\n";
    return 2;
}

}  // namespace pslerp::cli
