// The `pslerp` command line: one strict argument parser shared by the subcommands, the exit
// codes, and the subcommand entry points (one file each, tools/cmd_<name>.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "util/args.h"

namespace pslerp::cli {

/// The exit codes as `--help` prints them.
extern const char kExitCodesHelp[];

/// An error message fit for a user: FAISS's "Error in <function> at <file>:<line>: " preambles
/// and a leading "pslerp: " removed. Every message the command line prints goes through it.
std::string clean_message(absl::string_view message);

/// The most OpenMP threads --threads accepts: 4 x the processors available (more only
/// oversubscribes, and a huge count is a fatal error inside libgomp).
int max_threads();

/// A progress bar on stderr, drawn only when stderr is a terminal or PSLERP_PROGRESS=1.
class Progress {
  public:
    Progress(std::string label, int64_t total);
    ~Progress();
    void update(int64_t done);
    void finish();

  private:
    std::string label_;
    int64_t total_;
    int64_t last_drawn_ = -1;
    bool enabled_;
    bool finished_ = false;
};

using Command = int (*)(const std::vector<std::string>& argv);

int cmd_synth(const std::vector<std::string>& argv);
int cmd_enroll(const std::vector<std::string>& argv);
int cmd_search(const std::vector<std::string>& argv);
int cmd_verify(const std::vector<std::string>& argv);
int cmd_dedup(const std::vector<std::string>& argv);
int cmd_info(const std::vector<std::string>& argv);
int cmd_keygen(const std::vector<std::string>& argv);
int cmd_rekey(const std::vector<std::string>& argv);
int cmd_bench(const std::vector<std::string>& argv);
int cmd_demo(const std::vector<std::string>& argv);
int cmd_eval(const std::vector<std::string>& argv);
#ifdef PSLERP_WITH_EXTRACTOR
int cmd_extract(const std::vector<std::string>& argv);
#endif

/// Prints "pslerp <cmd>: <message>" (clean_message) to stderr and returns exit_code(status).
int fail(const std::string& cmd, const absl::Status& status);

/// `pslerp enroll|search --scheduler ADDRESS ...` (tools/cmd_dask.cpp): replaces this process by
/// the sharded command on a Dask cluster (python3 -m pslerp.distributed); nullopt without
/// --scheduler, the exit code if it could not be started.
std::optional<int> run_on_dask_if_asked(const char* command, const std::vector<std::string>& argv);

/// The common shape of a subcommand: parse argv (with `flags` taking no value, plus --help),
/// print `usage` and the exit codes for --help (-h), apply --threads (-t), else run and turn a
/// failed status into its exit code.
int run_command(const char* name, const std::vector<std::string>& argv, std::vector<std::string> flags,
                const char* usage, const std::function<absl::Status(Args&)>& run);

}  // namespace pslerp::cli
