#include "util/args.h"

#include <charconv>
#include <cmath>
#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace pslerp {

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
            // Which error this is depends on whether a getter asks for the option: "needs a
            // value" if one does, "unknown option" if none does (finish()).
            set(name, spelling, "");
            missing_value_.insert(name);
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

absl::Status Args::needs_value(const std::string& name) const {
    return usage_error(absl::StrCat("option ", spelled(name), " needs a value"));
}

absl::StatusOr<std::string> Args::required(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return usage_error(absl::StrCat("missing required option --", name));
    used_[name] = true;
    if (missing_value_.count(name)) return needs_value(name);
    return it->second;
}

absl::StatusOr<int64_t> Args::integer(const std::string& name, int64_t def, int64_t min, int64_t max) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    if (missing_value_.count(name)) return needs_value(name);
    return parse_integer(name, it->second, min, max);
}

absl::StatusOr<int64_t> Args::parse_integer(const std::string& name, const std::string& text, int64_t min,
                                            int64_t max) const {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    const bool whole = !text.empty() && end == text.data() + text.size();
    if (!whole || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
        return usage_error(absl::StrCat("option ", spelled(name), ": expected an integer, got '", text, "'"));
    }
    if (ec == std::errc::result_out_of_range || v < min || v > max) {
        return usage_error(absl::StrCat("option ", spelled(name), ": ", text, " is out of range; must be in [", min,
                                        ", ", max, "]"));
    }
    return v;
}

absl::StatusOr<std::vector<int64_t>> Args::integers(const std::string& name, const std::string& def, int64_t min,
                                                    int64_t max) {
    const std::string text = has(name) ? str(name) : def;
    if (missing_value_.count(name)) return needs_value(name);
    std::vector<int64_t> out;
    for (absl::string_view item : absl::StrSplit(text, ',')) {
        absl::StatusOr<int64_t> v = parse_integer(name, std::string(item), min, max);
        if (!v.ok()) return v.status();
        out.push_back(*v);
    }
    return out;
}

absl::StatusOr<double> Args::number(const std::string& name, double def, double min, double max) {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    used_[name] = true;
    if (missing_value_.count(name)) return needs_value(name);
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

void Args::retire(const std::string& name, std::string why) {
    retired_[name] = std::move(why);
}

absl::Status Args::check_retired() const {
    for (const auto& [name, replacement] : retired_) {
        if (values_.count(name)) {
            return usage_error(absl::StrCat("--", name, " ", replacement));
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
    // What remains was read (with str(), which has no status to return it in).
    if (!missing_value_.empty()) return needs_value(*missing_value_.begin());
    return absl::OkStatus();
}

}  // namespace pslerp
