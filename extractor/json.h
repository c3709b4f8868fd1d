// A small JSON reader for the tfjs weight manifests and the reference descriptor files: enough
// of RFC 8259 for those (objects, arrays, strings with escapes, numbers, literals), no writer.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pslerp::json {

/// One parsed JSON value. Objects keep their keys sorted (duplicate keys: the last wins).
struct Value {
    enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
    Kind kind = Kind::kNull;
    bool boolean = false;
    double number = 0.0;
    std::string string;
    std::vector<Value> array;
    std::map<std::string, Value> object;

    bool is_object() const { return kind == Kind::kObject; }
    bool is_array() const { return kind == Kind::kArray; }
    bool is_number() const { return kind == Kind::kNumber; }
    bool is_string() const { return kind == Kind::kString; }
    /// The member `key` of an object, or nullptr when absent or when this is no object.
    const Value* find(const std::string& key) const;
};

/// Parses a whole document; trailing non-space text is an error. Errors name the byte offset.
absl::StatusOr<Value> parse(const std::string& text);

}  // namespace pslerp::json
