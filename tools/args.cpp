#include <omp.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/cli.h"

namespace pslerp::cli {

const char kExitCodesHelp[] =
        "exit codes: 0 success; 1 the run failed (input missing or unfit, index error, out of memory);\n"
        "            2 usage error (the command line is wrong; nothing was written);\n"
        "            3 partial success (some items failed, each reported on stderr)\n";

namespace {

/// The payload that carries a status's exit code when it is not 1.
constexpr char kExitPayload[] = "pslerp.cli/exit-code";

absl::Status with_exit_code(absl::Status status, ExitCode code) {
    status.SetPayload(kExitPayload, absl::Cord(std::to_string(int(code))));
    return status;
}

const std::map<char, std::string>& short_aliases() {
    static const std::map<char, std::string> aliases = {
            {'h', "help"}, {'k', "k"}, {'n', "n"}, {'o', "out"}, {'t', "threads"}};
    return aliases;
}

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

absl::Status usage_error(absl::string_view message) {
    return with_exit_code(absl::InvalidArgumentError(message), kExitUsage);
}

absl::Status partial_failure(absl::string_view message) {
    return with_exit_code(absl::InvalidArgumentError(message), kExitPartial);
}

int exit_code(const absl::Status& status) {
    if (status.ok()) return kExitOk;
    if (absl::optional<absl::Cord> code = status.GetPayload(kExitPayload)) {
        const std::string text(*code);
        if (text == "2") return kExitUsage;
        if (text == "3") return kExitPartial;
    }
    return kExitFailed;
}

std::string clean_message(absl::string_view message) {
    std::string m(message);
    const std::string preamble = "Error in ", ours = "pslerp: ", check = "Error: '", failed = "' failed: ";
    // What follows a preamble: FAISS_THROW_IF_NOT_MSG adds "Error: '<condition>' failed: " before
    // the message (kept when there is no message), the index "pslerp: ".
    auto drop_prefixes = [&](size_t at) {
        if (m.compare(at, check.size(), check) == 0) {
            const size_t end = m.find(failed, at + check.size());
            if (end != std::string::npos && end < m.find('\n', at)) m.erase(at, end + failed.size() - at);
        }
        if (m.compare(at, ours.size(), ours) == 0) m.erase(at, ours.size());
    };
    // FAISS_THROW_* writes "Error in <function> at <file>:<line>: <message>"; several of them
    // when the exceptions of several threads were gathered.
    for (size_t at = m.find(preamble); at != std::string::npos; at = m.find(preamble, at)) {
        const size_t where = m.find(" at ", at);
        size_t end = std::string::npos;
        for (size_t c = where == std::string::npos ? where : m.find(':', where); c != std::string::npos;
             c = m.find(':', c + 1)) {
            size_t e = c + 1;
            while (e < m.size() && std::isdigit(static_cast<unsigned char>(m[e]))) ++e;
            if (e > c + 1 && m.compare(e, 2, ": ") == 0) {
                end = e + 2;
                break;
            }
        }
        if (end == std::string::npos) {
            at += preamble.size();
            continue;
        }
        m.erase(at, end - at);
        drop_prefixes(at);
    }
    drop_prefixes(0);
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
}

int max_threads() {
    return 4 * std::max(1, omp_get_num_procs());
}

Args::Args(std::vector<std::string> argv, std::vector<std::string> flags) {
    auto is_flag = [&](const std::string& name) {
        for (const auto& f : flags) {
            if (f == name) return true;
        }
        return false;
    };
    auto error = [&](std::string message) {
        if (parse_error_.empty()) parse_error_ = std::move(message);
    };
    auto set = [&](const std::string& name, const std::string& spelling, const std::string& value) {
        if (values_.count(name)) {
            const std::string& first = spelling_[name];
            error(absl::StrCat("option ", spelling, " given twice",
                               first == spelling ? "" : absl::StrCat(" (as ", first, " and ", spelling, ")")));
            return;
        }
        values_[name] = value;
        spelling_[name] = spelling;
        used_[name] = false;
    };
    bool only_positional = false;
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (only_positional || a.size() < 2 || a[0] != '-') {
            positional_.push_back(a);
            continue;
        }
        if (a == "--") {
            only_positional = true;
            continue;
        }
        std::string name, spelling;
        std::optional<std::string> inline_value;
        if (a[1] == '-') {
            name = a.substr(2);
            if (const size_t eq = name.find('='); eq != std::string::npos) {
                inline_value = name.substr(eq + 1);
                name = name.substr(0, eq);
            }
            spelling = "--" + name;
            if (name.empty()) {
                error(absl::StrCat("malformed option '", a, "'"));
                continue;
            }
        } else {
            auto it = short_aliases().find(a[1]);
            spelling = a.substr(0, 2);
            if (it == short_aliases().end()) {
                error(absl::StrCat("unknown option ", spelling));
                continue;
            }
            name = it->second;
            if (a.size() > 2) inline_value = a.substr(a[2] == '=' ? 3 : 2);
        }
        if (is_flag(name)) {
            if (inline_value) {
                error(absl::StrCat("option ", spelling, " takes no value"));
            } else {
                set(name, spelling, "true");
            }
            continue;
        }
        std::string value;
        if (inline_value) {
            value = *inline_value;
        } else if (i + 1 < argv.size() && !absl::StartsWith(argv[i + 1], "--")) {
            value = argv[++i];
        }
        if (value.empty()) {
            error(absl::StrCat("option ", spelling, " needs a value"));
            continue;
        }
        set(name, spelling, value);
    }
}

std::string Args::spelled(const std::string& name) const {
    auto it = spelling_.find(name);
    return it != spelling_.end() ? it->second : "--" + name;
}

std::string Args::str(const std::string& name, const std::string& def) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    return it->second;
}

absl::StatusOr<std::string> Args::required(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return usage_error(absl::StrCat("missing required option --", name));
    used_[name] = true;
    return it->second;
}

absl::StatusOr<int64_t> Args::integer(const std::string& name, int64_t def, int64_t min, int64_t max) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    const std::string& text = it->second;
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    const bool whole = end == text.data() + text.size();
    if (!whole || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
        return usage_error(absl::StrCat("option ", spelled(name), ": expected an integer, got '", text, "'"));
    }
    if (ec == std::errc::result_out_of_range || v < min || v > max) {
        return usage_error(absl::StrCat("option ", spelled(name), ": ", text, " is out of range; must be in [", min,
                                        ", ", max, "]"));
    }
    return v;
}

absl::StatusOr<double> Args::number(const std::string& name, double def, double min, double max) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    const std::string& text = it->second;
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    const bool whole = end == text.data() + text.size();
    if (!whole || (ec != std::errc() && ec != std::errc::result_out_of_range) || std::isnan(v)) {
        return usage_error(absl::StrCat("option ", spelled(name), ": expected a number, got '", text, "'"));
    }
    if (ec == std::errc::result_out_of_range || !std::isfinite(v) || v < min || v > max) {
        return usage_error(absl::StrCat("option ", spelled(name), ": ", text, " is out of range; must be in [", min,
                                        ", ", max, "]"));
    }
    return v;
}

absl::StatusOr<double> Args::required_number(const std::string& name, double min, double max) {
    if (!has(name)) return usage_error(absl::StrCat("missing required option --", name));
    return number(name, 0, min, max);
}

bool Args::flag(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return false;
    used_[name] = true;
    return it->second == "true";
}

absl::Status Args::parsed() const {
    if (!parse_error_.empty()) return usage_error(parse_error_);
    return absl::OkStatus();
}

absl::Status Args::check_retired() const {
    for (const auto& [name, replacement] : retired_options()) {
        if (values_.count(name)) {
            return usage_error(absl::StrCat("--", name, " belonged to the retired coarse stage; ", replacement));
        }
    }
    return absl::OkStatus();
}

absl::Status Args::finish() const {
    if (absl::Status s = parsed(); !s.ok()) return s;
    if (absl::Status s = check_retired(); !s.ok()) return s;
    std::vector<std::string> unknown;
    for (const auto& [name, used] : used_) {
        if (!used) unknown.push_back(spelled(name));
    }
    if (!unknown.empty()) return usage_error(absl::StrCat("unknown option(s): ", absl::StrJoin(unknown, " ")));
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
        std::fputs("common options: --threads N (-t N): OpenMP threads, 1 to 4 x the processors; --help (-h)\n",
                   stdout);
        std::fputs(kExitCodesHelp, stdout);
        return kExitOk;
    }
    if (absl::Status s = args.parsed(); !s.ok()) return fail(name, s);
    auto threads = args.integer("threads", 0, 1, max_threads());
    if (!threads.ok()) {
        const bool range = absl::StrContains(threads.status().message(), "out of range");
        return fail(name, range ? usage_error(absl::StrCat(threads.status().message(), " (4 x the ",
                                                           omp_get_num_procs(), " processors available)"))
                                : threads.status());
    }
    if (*threads > 0) omp_set_num_threads(int(*threads));
    if (absl::Status s = run(args); !s.ok()) return fail(name, s);
    return kExitOk;
}

int fail(const std::string& cmd, const absl::Status& status) {
    std::cerr << "pslerp " << cmd << ": " << clean_message(status.message()) << "\n";
    return exit_code(status);
}

}  // namespace pslerp::cli
