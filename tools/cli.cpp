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
#include "util/threads.h"

namespace pslerp::cli {

const char kExitCodesHelp[] =
        "exit codes: 0 success; 1 the run failed (input missing or unfit, index error, out of memory);\n"
        "            2 usage error (the command line is wrong; nothing was written);\n"
        "            3 partial success (some items failed, each reported on stderr)\n";

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
    for (const auto& [option, replacement] : retired_options()) {
        args.retire(option, absl::StrCat("belonged to the retired coarse stage; ", replacement));
    }
    if (args.flag("help")) {
        std::fputs(usage, stdout);
        std::fputs("common options: --threads N (-t N): threads (OpenMP and OpenBLAS), 1 to 4 x the processors; --help (-h)\n",
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
    if (*threads > 0) set_threads(int(*threads));
    if (absl::Status s = run(args); !s.ok()) return fail(name, s);
    return kExitOk;
}

int fail(const std::string& cmd, const absl::Status& status) {
    std::cerr << "pslerp " << cmd << ": " << clean_message(status.message()) << "\n";
    return exit_code(status);
}

}  // namespace pslerp::cli
