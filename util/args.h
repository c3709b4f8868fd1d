// The one command-line parser of pslerp (the `pslerp` tool, the benchmark drivers) and the exit
// codes its errors carry.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pslerp {

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

/// A command-line mistake: exit code 2.
absl::Status usage_error(absl::string_view message);
/// A run that finished with some failed items (already reported): exit code 3.
absl::Status partial_failure(absl::string_view message);
/// 0 for ok, else 2, 3 or 1 (see ExitCode).
int exit_code(const absl::Status& status);

/// Arguments of one command, parsed strictly:
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
    /// A comma-separated list of integers, each in [min, max] (empty items are errors).
    absl::StatusOr<std::vector<int64_t>> integers(const std::string& name, const std::string& def, int64_t min,
                                                  int64_t max);
    /// A finite decimal number in [min, max].
    absl::StatusOr<double> number(const std::string& name, double def, double min, double max);
    absl::StatusOr<double> required_number(const std::string& name, double min, double max);
    bool flag(const std::string& name);
    const std::vector<std::string>& positional() const { return positional_; }

    /// Error if the command line was malformed (a repeated option, an unknown short option, a
    /// value given to a flag). A missing value is reported by the getter that reads the
    /// option, or as an unknown option by finish() when none does.
    absl::Status parsed() const;
    /// Declares a retired option: giving it is the usage error "--<name> <why>", so an old
    /// script is told what to use instead rather than "unknown option".
    void retire(const std::string& name, std::string why);
    /// Error naming the replacement if the command line gives a retired option. finish()
    /// checks it too.
    absl::Status check_retired() const;
    /// Error if the command line was malformed, gave a retired option or named an option
    /// nobody read.
    absl::Status finish() const;
    /// Every option given, whether read or not (for --help listings of drivers).
    const std::map<std::string, std::string>& values() const { return values_; }

  private:
    /// "--name" or "-k": how the user wrote the option.
    std::string spelled(const std::string& name) const;
    absl::Status needs_value(const std::string& name) const;
    absl::StatusOr<int64_t> parse_integer(const std::string& name, const std::string& text, int64_t min,
                                          int64_t max) const;

    std::map<std::string, std::string> values_;
    std::map<std::string, std::string> spelling_;
    std::map<std::string, bool> used_;
    std::map<std::string, std::string> retired_;
    /// Options given last with no value: "needs a value" once read, "unknown" if never read.
    std::set<std::string> missing_value_;
    std::vector<std::string> positional_;
    std::string parse_error_;
};

}  // namespace pslerp
