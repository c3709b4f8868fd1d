// The `pslerp` command line: one strict argument parser shared by the subcommands, the exit
// codes, and the subcommand entry points (one file each, tools/cmd_<name>.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pslerp::cli {

/// Exit codes of every subcommand (listed by `pslerp --help`).
enum ExitCode : int {
    kExitOk = 0,
    /// The run failed: an input missing or unreadable, data that does not fit the index, an
    /// index error, not enough memory, an output that cannot be written.
    kExitFailed = 1,
    /// The command line is wrong: unknown or repeated option, missing value, a number that is
    /// malformed or out of range, an option that does not apply. Nothing was written.
    kExitUsage = 2,
    /// The run finished but some items failed, each reported on stderr (verify: unknown ids).
    kExitPartial = 3,
};

/// The exit codes as `--help` prints them.
extern const char kExitCodesHelp[];

/// A command-line mistake: exit code 2.
absl::Status usage_error(absl::string_view message);
/// A run that finished with some failed items (already reported): exit code 3.
absl::Status partial_failure(absl::string_view message);
/// 0 for ok, else 2, 3 or 1 (see ExitCode).
int exit_code(const absl::Status& status);

/// An error message fit for a user: FAISS's "Error in <function> at <file>:<line>: " preambles
/// and a leading "pslerp: " removed. Every message the command line prints goes through it.
std::string clean_message(absl::string_view message);

/// The most OpenMP threads --threads accepts: 4 x the processors available (more only
/// oversubscribes, and a huge count is a fatal error inside libgomp).
int max_threads();

/// Arguments of one subcommand, parsed strictly:
///   --name value, --name=value, and the short aliases -o (--out), -k (--k), -t (--threads),
///   -n (--n), -h (--help), also written -k10 or -k=10;
///   a flag takes no value (--aligned; --aligned=yes is an error);
///   an option given twice is an error, whatever its spelling;
///   a word after "--" is positional even if it starts with '-'.
/// Every option a subcommand reads is declared by the getter it calls; finish() then rejects
/// options that no getter asked for, so a typo is an error, not a silent default. Getters
/// return usage errors (exit code 2) naming the option as the user spelled it.
class Args {
  public:
    /// @param argv  the words after the subcommand name
    /// @param flags options that take no value (e.g. {"aligned", "help"})
    Args(std::vector<std::string> argv, std::vector<std::string> flags = {});

    /// True if the option was given.
    bool has(const std::string& name) const { return values_.count(name) != 0; }
    std::string str(const std::string& name, const std::string& def = "");
    absl::StatusOr<std::string> required(const std::string& name);
    /// A decimal integer (optional '-', digits, nothing else) in [min, max].
    absl::StatusOr<int64_t> integer(const std::string& name, int64_t def, int64_t min, int64_t max);
    /// A finite decimal number in [min, max].
    absl::StatusOr<double> number(const std::string& name, double def, double min, double max);
    absl::StatusOr<double> required_number(const std::string& name, double min, double max);
    bool flag(const std::string& name);
    const std::vector<std::string>& positional() const { return positional_; }

    /// Error if the command line was malformed (a missing value, a repeated option, an unknown
    /// short option, a value given to a flag).
    absl::Status parsed() const;
    /// Error naming the replacement if the command line gives an option of the retired coarse
    /// stage (--k-factor, --ef-search, --range-shortlist, --embedding). finish() checks it too.
    absl::Status check_retired() const;
    /// Error if the command line was malformed, gave a retired option or named an option
    /// nobody read.
    absl::Status finish() const;

  private:
    /// "--name" or "-k": how the user wrote the option.
    std::string spelled(const std::string& name) const;
    absl::StatusOr<std::string> value_of(const std::string& name, const char* expected) const;

    std::map<std::string, std::string> values_;
    std::map<std::string, std::string> spelling_;
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

/// Prints "pslerp <cmd>: <message>" (clean_message) to stderr and returns exit_code(status).
int fail(const std::string& cmd, const absl::Status& status);

/// The common shape of a subcommand: parse argv (with `flags` taking no value, plus --help),
/// print `usage` and the exit codes for --help (-h), apply --threads (-t), else run and turn a
/// failed status into its exit code.
int run_command(const char* name, const std::vector<std::string>& argv, std::vector<std::string> flags,
                const char* usage, const std::function<absl::Status(Args&)>& run);

}  // namespace pslerp::cli
