#include "plugin/params.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace pslerp {

namespace {

template <typename E>
struct Names {
    E value;
    const char* name;
};

constexpr Names<KeyMode> kKeyModes[] = {{KeyMode::kPerGroup, "group"}, {KeyMode::kShared, "shared"}};
constexpr Names<DropPolicy> kDrops[] = {
        {DropPolicy::kNone, "none"}, {DropPolicy::kRandom, "random"}, {DropPolicy::kImportance, "importance"}};
constexpr Names<DropMapping> kMappings[] = {
        {DropMapping::kFunction, "function"}, {DropMapping::kIntervals, "intervals"}, {DropMapping::kBudget, "budget"}};
constexpr Names<Fill> kFills[] = {{Fill::kZero, "zero"}, {Fill::kRandom, "random"}};
constexpr Names<ImportanceKind> kImportances[] = {{ImportanceKind::kUniform, "uniform"},
                                                  {ImportanceKind::kFixed, "fixed"},
                                                  {ImportanceKind::kSelfAttention, "attention"}};
constexpr Names<Weighting> kWeightings[] = {{Weighting::kUniform, "uniform"}, {Weighting::kImportance, "importance"}};

template <typename E, size_t N>
absl::Status parse_enum(const Names<E> (&names)[N], const std::string& option, const std::string& value, E* out) {
    std::vector<std::string> allowed;
    for (const auto& n : names) {
        if (value == n.name) {
            *out = n.value;
            return absl::OkStatus();
        }
        allowed.push_back(n.name);
    }
    return absl::InvalidArgumentError(
            absl::StrCat("option ", option, ": expected one of ", absl::StrJoin(allowed, "|"), ", got '", value, "'"));
}

template <typename E, size_t N>
const char* enum_name(const Names<E> (&names)[N], E value) {
    for (const auto& n : names) {
        if (n.value == value) return n.name;
    }
    return "?";
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

}  // namespace

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
    if (static_cast<uint8_t>(key_mode) > 1 || static_cast<uint8_t>(drop) > 2 || static_cast<uint8_t>(mapping) > 2 ||
        static_cast<uint8_t>(fill) > 1 || static_cast<uint8_t>(importance) > 2 || static_cast<uint8_t>(weighting) > 1) {
        return invalid("an option holds an unknown enum value");
    }
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
    if (name == "t") return parse_float(name, value, &t);
    if (name == "t_minus_importance") return parse_bool(name, value, &t_minus_importance);
    if (name == "key") return parse_enum(kKeyModes, name, value, &key_mode);
    if (name == "drop") return parse_enum(kDrops, name, value, &drop);
    if (name == "mapping") return parse_enum(kMappings, name, value, &mapping);
    if (name == "fill") return parse_enum(kFills, name, value, &fill);
    if (name == "importance") return parse_enum(kImportances, name, value, &importance);
    if (name == "weighting") return parse_enum(kWeightings, name, value, &weighting);
    if (name == "drop_count") return parse_int(name, value, &drop_count);
    if (name == "drop_min") return parse_int(name, value, &drop_min);
    if (name == "drop_max") return parse_int(name, value, &drop_max);
    if (name == "replacement") return parse_bool(name, value, &drop_with_replacement);
    if (name == "temperature") return parse_float(name, value, &attention_temperature);
    return absl::InvalidArgumentError(absl::StrCat(
            "unknown option '", name,
            "': expected one of preset, t, t_minus_importance, key, drop, drop_count, mapping, drop_min, "
            "drop_max, replacement, fill, importance, weighting, temperature"));
}

std::string Params::get(const std::string& name) const {
    if (name == "key") return enum_name(kKeyModes, key_mode);
    if (name == "drop") return enum_name(kDrops, drop);
    if (name == "mapping") return enum_name(kMappings, mapping);
    if (name == "fill") return enum_name(kFills, fill);
    if (name == "importance") return enum_name(kImportances, importance);
    if (name == "weighting") return enum_name(kWeightings, weighting);
    return "";
}

std::string Params::describe() const {
    std::vector<std::string> parts;
    parts.push_back(absl::StrCat("t=", t));
    if (t_minus_importance) parts.push_back("t_minus_importance=true");
    parts.push_back(absl::StrCat("key=", enum_name(kKeyModes, key_mode)));
    parts.push_back(absl::StrCat("drop=", enum_name(kDrops, drop)));
    if (drop == DropPolicy::kRandom) parts.push_back(absl::StrCat("drop_count=", drop_count));
    if (drop == DropPolicy::kImportance) {
        parts.push_back(absl::StrCat("mapping=", enum_name(kMappings, mapping)));
        if (mapping == DropMapping::kFunction) {
            parts.push_back(absl::StrCat("drop_min=", drop_min, ",drop_max=", drop_max));
        } else if (mapping == DropMapping::kBudget) {
            parts.push_back(absl::StrCat("drop_count=", drop_count));
        } else {
            parts.push_back(absl::StrCat("intervals=", absl::StrJoin(interval_bounds, "/"), ":",
                                         absl::StrJoin(interval_counts, "/"), intervals_by_median ? "(median)" : ""));
        }
    }
    if (drop_with_replacement) parts.push_back("replacement=true");
    parts.push_back(absl::StrCat("fill=", enum_name(kFills, fill)));
    parts.push_back(absl::StrCat("importance=", enum_name(kImportances, importance)));
    parts.push_back(absl::StrCat("weighting=", enum_name(kWeightings, weighting)));
    return absl::StrJoin(parts, ",");
}

}  // namespace pslerp
