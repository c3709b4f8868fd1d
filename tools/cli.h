// The `pslerp` command line: a small argument reader shared by the subcommands, and the
// subcommand entry points (one file each, tools/cmd_<name>.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pslerp::cli {

/// Arguments of one subcommand: `--name value`, `--flag` and positionals, in any order.
/// Every option a subcommand reads is declared by the getter it calls; `finish()` then
/// rejects options that no getter asked for, so a typo is an error, not a silent default.
class Args {
  public:
    /// @param argv  the words after the subcommand name
    /// @param flags options that take no value (e.g. {"aligned", "help"})
    Args(std::vector<std::string> argv, std::vector<std::string> flags = {});

    std::string str(const std::string& name, const std::string& def = "");
    absl::StatusOr<std::string> required(const std::string& name);
    absl::StatusOr<int64_t> integer(const std::string& name, int64_t def);
    absl::StatusOr<double> number(const std::string& name, double def);
    bool flag(const std::string& name);
    const std::vector<std::string>& positional() const { return positional_; }

    /// Error naming the replacement if the command line gives an option of the retired coarse
    /// stage (--k-factor, --ef-search, --range-shortlist, --embedding). finish() checks it too.
    absl::Status check_retired() const;
    /// Error if the command line was malformed, gave a retired option or named an option
    /// nobody read.
    absl::Status finish() const;

  private:
    std::map<std::string, std::string> values_;
    std::map<std::string, bool> used_;
    std::vector<std::string> positional_;
    std::string parse_error_;
};

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
int cmd_bench(const std::vector<std::string>& argv);
int cmd_demo(const std::vector<std::string>& argv);
#ifdef PSLERP_HAVE_EXTRACTOR
int cmd_extract(const std::vector<std::string>& argv);
#endif

/// Prints "pslerp <cmd>: <message>" to stderr and returns the exit code 2.
int fail(const std::string& cmd, const absl::Status& status);

/// The common shape of a subcommand: parse argv (with `flags` taking no value, plus --help),
/// print `usage` for --help, else run and turn a failed status into exit code 2.
int run_command(const char* name, const std::vector<std::string>& argv, std::vector<std::string> flags,
                const char* usage, const std::function<absl::Status(Args&)>& run);

}  // namespace pslerp::cli
