#include "plugin/params.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace pslerp {

namespace {

template <class E>
absl::Status parse_enum(const std::string& option, const std::string& value, E* out) {
    const std::vector<std::string>& names = enum_names<E>();
    for (size_t i = 0; i < names.size(); ++i) {
        if (value == names[i]) {
            *out = static_cast<E>(i);
            return absl::OkStatus();
        }
    }
    return absl::InvalidArgumentError(
            absl::StrCat("option ", option, ": expected one of ", absl::StrJoin(names, "|"), ", got '", value, "'"));
}

template <class E>
std::string enum_name(E value) {
    const std::vector<std::string>& names = enum_names<E>();
    const size_t i = static_cast<size_t>(value);
    return i < names.size() ? names[i] : "?";
}

absl::Status parse_int(const std::string& option, const std::string& value, int* out) {
    if (!absl::SimpleAtoi(value, out)) {
        return absl::InvalidArgumentError(absl::StrCat("option ", option, ": expected an integer, got '", value, "'"));
    }
    return absl::OkStatus();
}

absl::Status parse_float(const std::string& option, const std::string& value, float* out) {
    if (!absl::SimpleAtof(value, out) || !std::isfinite(*out)) {
        return absl::InvalidArgumentError(absl::StrCat("option ", option, ": expected a number, got '", value, "'"));
    }
    return absl::OkStatus();
}

absl::Status parse_bool(const std::string& option, const std::string& value, bool* out) {
    if (!absl::SimpleAtob(value, out)) {
        return absl::InvalidArgumentError(absl::StrCat("option ", option, ": expected true|false, got '", value, "'"));
    }
    return absl::OkStatus();
}

/// A field's value as set() reads it.
template <class T>
std::string option_text(const T& v) {
    if constexpr (std::is_enum_v<T>) {
        return enum_name(v);
    } else if constexpr (std::is_same_v<T, bool>) {
        return v ? "true" : "false";
    } else if constexpr (std::is_arithmetic_v<T>) {
        return absl::StrCat(v);
    } else {
        return absl::StrJoin(v, "/");
    }
}

}  // namespace

template <>
const std::vector<std::string>& enum_names<KeyMode>() {
    static const std::vector<std::string> names = {"group", "shared"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<DropPolicy>() {
    static const std::vector<std::string> names = {"none", "random", "importance"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<DropMapping>() {
    static const std::vector<std::string> names = {"function", "intervals", "budget"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<Fill>() {
    static const std::vector<std::string> names = {"zero", "random"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<ImportanceKind>() {
    static const std::vector<std::string> names = {"uniform", "fixed", "attention"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<Weighting>() {
    static const std::vector<std::string> names = {"uniform", "importance"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<Norm>() {
    static const std::vector<std::string> names = {"none", "cohort"};
    return names;
}
template <>
const std::vector<std::string>& enum_names<Storage>() {
    static const std::vector<std::string> names = {"fp32", "fp16"};
    return names;
}

Params Params::defaults(int groups, int group_dim) {
    Params p;
    p.groups = groups;
    p.group_dim = group_dim;
    return p;
}

Params Params::slerpface(int groups, int group_dim) {
    Params p;
    p.groups = groups;
    p.group_dim = group_dim;
    p.t = 0.9f;
    p.t_minus_importance = true;
    p.key_mode = KeyMode::kPerGroup;
    p.drop = DropPolicy::kImportance;
    p.mapping = DropMapping::kIntervals;
    p.intervals_by_median = true;
    p.interval_bounds = {1.0f};
    p.interval_counts = {12, 4};
    p.drop_with_replacement = true;
    p.fill = Fill::kZero;
    p.importance = ImportanceKind::kSelfAttention;
    p.weighting = Weighting::kImportance;
    p.norm = Norm::kNone;  // the reference code scores raw combined cosines
    return p;
}

absl::Status Params::validate() const {
    auto invalid = [](const std::string& why) { return absl::InvalidArgumentError(why); };
    if (groups < 1 || group_dim < 2) {
        return invalid(absl::StrFormat("need groups >= 1 and group_dim >= 2, got %dx%d", groups, group_dim));
    }
    if (static_cast<int64_t>(groups) * group_dim > kMaxDim) {
        return invalid(absl::StrFormat("dimension groups*group_dim exceeds %d", kMaxDim));
    }
    // Enums can arrive from outside as plain integers (bindings, casts).
    std::string bad_enum;
    visit([&](auto f) {
        using T = typename decltype(f)::type;
        if constexpr (std::is_enum_v<T>) {
            if (bad_enum.empty() && static_cast<size_t>(this->*f.member) >= enum_names<T>().size()) {
                bad_enum = absl::StrCat(f.name, " holds the unknown value ", static_cast<int>(this->*f.member));
            }
        }
    });
    if (!bad_enum.empty()) return invalid(bad_enum);
    if (!(t >= 0.0f && t <= 1.0f)) return invalid(absl::StrCat("t must be in [0, 1], got ", t));
    // Every count is bounded, in use or not, so that add() does a bounded amount of work: with
    // replacement a draw may repeat, so up to kMaxDrawsPerCoordinate * d draws (the reference
    // code's 12 at d = 16 is well inside); without, at most d - 1 distinct draws (a group keeps
    // one coordinate).
    const int64_t max_with_replacement = int64_t{kMaxDrawsPerCoordinate} * group_dim;
    auto check_count = [&](const char* what, int c, bool in_use) -> absl::Status {
        if (c < 0 || c > max_with_replacement) {
            return invalid(absl::StrFormat("%s = %d: draws per group must be in [0, %d] (%d per coordinate of %d)",
                                           what, c, max_with_replacement, kMaxDrawsPerCoordinate, group_dim));
        }
        if (in_use && !drop_with_replacement && c > group_dim - 1) {
            return invalid(absl::StrFormat(
                    "%s = %d: a group of %d keeps at least one coordinate (0..%d distinct draws)", what, c, group_dim,
                    group_dim - 1));
        }
        return absl::OkStatus();
    };
    const bool importance_drop = drop == DropPolicy::kImportance;
    const bool uses_count = drop == DropPolicy::kRandom || (importance_drop && mapping == DropMapping::kBudget);
    const bool uses_function = importance_drop && mapping == DropMapping::kFunction;
    const bool uses_intervals = importance_drop && mapping == DropMapping::kIntervals;
    if (auto s = check_count("drop_count", drop_count, uses_count); !s.ok()) return s;
    if (auto s = check_count("drop_min", drop_min, uses_function); !s.ok()) return s;
    if (auto s = check_count("drop_max", drop_max, uses_function); !s.ok()) return s;
    if (uses_function && drop_min > drop_max) return invalid("drop_min must not exceed drop_max");
    if (interval_bounds.size() > kMaxIntervals || interval_counts.size() > kMaxIntervals + 1) {
        return invalid(absl::StrFormat("at most %d interval bounds", kMaxIntervals));
    }
    for (float b : interval_bounds) {
        if (!std::isfinite(b)) return invalid("interval_bounds must be finite");
    }
    for (int c : interval_counts) {
        if (auto s = check_count("interval count", c, uses_intervals); !s.ok()) return s;
    }
    if (uses_intervals) {
        if (interval_counts.size() != interval_bounds.size() + 1) {
            return invalid("interval_counts needs exactly one more entry than interval_bounds");
        }
        for (size_t i = 1; i < interval_bounds.size(); ++i) {
            if (!(interval_bounds[i] > interval_bounds[i - 1])) return invalid("interval_bounds must increase");
        }
    }
    if (importance == ImportanceKind::kFixed && static_cast<int>(importance_weights.size()) != groups) {
        return invalid(absl::StrFormat("fixed importance needs %d weights, got %d", groups, importance_weights.size()));
    }
    double sum = 0;
    for (float w : importance_weights) {
        if (!(w >= 0.0f) || !std::isfinite(w)) return invalid("importance weights must be finite and >= 0");
        sum += w;
    }
    if (importance == ImportanceKind::kFixed && !(sum > 0)) return invalid("importance weights sum to zero");
    const size_t dd = static_cast<size_t>(group_dim) * group_dim;
    if ((!attention_wq.empty() && attention_wq.size() != dd) || (!attention_wk.empty() && attention_wk.size() != dd)) {
        return invalid(absl::StrFormat("attention projections must be %dx%d", group_dim, group_dim));
    }
    for (const std::vector<float>* m : {&attention_wq, &attention_wk}) {
        for (float v : *m) {
            if (!std::isfinite(v)) return invalid("attention projections must be finite");
        }
    }
    if (!(attention_temperature > 0.0f) || !std::isfinite(attention_temperature)) {
        return invalid(absl::StrCat("attention temperature must be finite and > 0, got ", attention_temperature));
    }
    if (cohort_size < kMinCohort || cohort_size > kMaxCohort) {
        return invalid(absl::StrFormat("cohort_size must be in [%d, %d], got %d", kMinCohort, kMaxCohort, cohort_size));
    }
    // Self-attention builds a G x G matrix of logits per sample.
    if (importance == ImportanceKind::kSelfAttention && groups > kMaxAttentionGroups) {
        return invalid(absl::StrFormat("self-attention importance needs groups <= %d, got %d", kMaxAttentionGroups,
                                       groups));
    }
    return absl::OkStatus();
}

absl::Status Params::set(const std::string& name, const std::string& value) {
    if (name == "preset") {
        if (value == "slerpface") {
            *this = slerpface(groups, group_dim);
        } else if (value == "default") {
            *this = defaults(groups, group_dim);
        } else {
            return absl::InvalidArgumentError(
                    absl::StrCat("option preset: expected slerpface|default, got '", value, "'"));
        }
        return absl::OkStatus();
    }
    absl::Status status = absl::NotFoundError("");
    std::vector<std::string> options = {"preset"};
    visit([&](auto f) {
        if (f.option == nullptr) return;
        options.push_back(f.option);
        if (name != f.option) return;
        using T = typename decltype(f)::type;
        T& v = this->*f.member;
        if constexpr (std::is_enum_v<T>) {
            status = parse_enum(name, value, &v);
        } else if constexpr (std::is_same_v<T, bool>) {
            status = parse_bool(name, value, &v);
        } else if constexpr (std::is_same_v<T, int>) {
            status = parse_int(name, value, &v);
        } else if constexpr (std::is_same_v<T, float>) {
            status = parse_float(name, value, &v);
        }
    });
    if (!absl::IsNotFound(status)) return status;
    return absl::InvalidArgumentError(
            absl::StrCat("unknown option '", name, "': expected one of ", absl::StrJoin(options, ", ")));
}

std::string Params::get(const std::string& name) const {
    std::string out;
    visit([&](auto f) {
        using T = typename decltype(f)::type;
        if constexpr (std::is_enum_v<T>) {
            if (f.option != nullptr && name == f.option) out = enum_name(this->*f.member);
        }
    });
    return out;
}

std::string Params::describe() const {
    // The options that matter for this policy; flags only when set, the temperature only when
    // attention uses it and it is not 1.
    const bool by_importance = drop == DropPolicy::kImportance;
    auto shown = [&](const std::string& option) {
        if (option == "t_minus_importance") return t_minus_importance;
        if (option == "replacement") return drop_with_replacement;
        if (option == "drop_count") return drop == DropPolicy::kRandom || (by_importance && mapping == DropMapping::kBudget);
        if (option == "mapping") return by_importance;
        if (option == "drop_min" || option == "drop_max") return by_importance && mapping == DropMapping::kFunction;
        if (option == "temperature") return importance == ImportanceKind::kSelfAttention && attention_temperature != 1.0f;
        if (option == "cohort") return norm == Norm::kCohort;
        if (option == "storage") return storage != Storage::kFp32;
        return true;
    };
    std::vector<std::string> parts;
    visit([&](auto f) {
        if (f.option != nullptr) {
            if (shown(f.option)) parts.push_back(absl::StrCat(f.option, "=", option_text(this->*f.member)));
        } else if (std::string(f.name) == "interval_bounds" && by_importance && mapping == DropMapping::kIntervals) {
            // Not an option set() takes: shown for information.
            parts.push_back(absl::StrCat("intervals=", absl::StrJoin(interval_bounds, "/"), ":",
                                         absl::StrJoin(interval_counts, "/"), intervals_by_median ? "(median)" : ""));
        }
    });
    return absl::StrJoin(parts, ",");
}

}  // namespace pslerp
