#include "extractor/json.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace pslerp::json {

const Value* Value::find(const std::string& key) const {
    if (kind != Kind::kObject) return nullptr;
    auto it = object.find(key);
    return it == object.end() ? nullptr : &it->second;
}

namespace {

constexpr int kMaxDepth = 256;

class Parser {
  public:
    explicit Parser(const std::string& text) : s_(text) {}

    absl::StatusOr<Value> document() {
        Value v;
        if (!value(&v, 0)) return error();
        skip_space();
        if (pos_ != s_.size()) {
            msg_ = "trailing characters";
            return error();
        }
        return v;
    }

  private:
    absl::Status error() const {
        return absl::InvalidArgumentError(absl::StrCat("JSON: ", msg_, " at byte ", pos_));
    }
    void skip_space() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
            ++pos_;
    }
    bool fail(const char* m) {
        msg_ = m;
        return false;
    }
    bool literal(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(pos_, n, word) != 0) return fail("unknown literal");
        pos_ += n;
        return true;
    }

    bool value(Value* v, int depth) {
        if (depth > kMaxDepth) return fail("nesting too deep");
        skip_space();
        if (pos_ >= s_.size()) return fail("unexpected end");
        char c = s_[pos_];
        if (c == '{') return object(v, depth);
        if (c == '[') return array(v, depth);
        if (c == '"') {
            v->kind = Value::Kind::kString;
            return string(&v->string);
        }
        if (c == 't') {
            v->kind = Value::Kind::kBool;
            v->boolean = true;
            return literal("true");
        }
        if (c == 'f') {
            v->kind = Value::Kind::kBool;
            return literal("false");
        }
        if (c == 'n') return literal("null");
        return number(v);
    }

    bool number(Value* v) {
        size_t start = pos_;
        if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
        auto digits = [&] {
            size_t d = pos_;
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
            return pos_ > d;
        };
        if (!digits()) return fail("bad number");
        if (pos_ < s_.size() && s_[pos_] == '.') {
            ++pos_;
            if (!digits()) return fail("bad number");
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            if (!digits()) return fail("bad number");
        }
        std::string token = s_.substr(start, pos_ - start);
        v->kind = Value::Kind::kNumber;
        v->number = std::strtod(token.c_str(), nullptr);
        return true;
    }

    static void append_utf8(std::string* out, unsigned cp) {
        if (cp < 0x80) {
            out->push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
            out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
    }

    bool hex4(unsigned* cp) {
        if (pos_ + 4 > s_.size()) return fail("bad \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = s_[pos_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= c - '0';
            else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
            else return fail("bad \\u escape");
        }
        *cp = v;
        return true;
    }

    bool string(std::string* out) {
        ++pos_;  // opening quote
        while (true) {
            if (pos_ >= s_.size()) return fail("unterminated string");
            char c = s_[pos_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
            if (c != '\\') {
                out->push_back(c);
                continue;
            }
            if (pos_ >= s_.size()) return fail("unterminated string");
            char e = s_[pos_++];
            switch (e) {
                case '"': out->push_back('"'); break;
                case '\\': out->push_back('\\'); break;
                case '/': out->push_back('/'); break;
                case 'b': out->push_back('\b'); break;
                case 'f': out->push_back('\f'); break;
                case 'n': out->push_back('\n'); break;
                case 'r': out->push_back('\r'); break;
                case 't': out->push_back('\t'); break;
                case 'u': {
                    unsigned cp;
                    if (!hex4(&cp)) return false;
                    if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {
                        pos_ += 2;
                        unsigned low;
                        if (!hex4(&low)) return false;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: return fail("bad escape");
            }
        }
    }

    bool array(Value* v, int depth) {
        ++pos_;
        v->kind = Value::Kind::kArray;
        skip_space();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return true;
        }
        while (true) {
            v->array.emplace_back();
            if (!value(&v->array.back(), depth + 1)) return false;
            skip_space();
            if (pos_ >= s_.size()) return fail("unterminated array");
            char c = s_[pos_++];
            if (c == ']') return true;
            if (c != ',') return fail("expected ',' or ']'");
        }
    }

    bool object(Value* v, int depth) {
        ++pos_;
        v->kind = Value::Kind::kObject;
        skip_space();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return true;
        }
        while (true) {
            skip_space();
            if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a key");
            std::string key;
            if (!string(&key)) return false;
            skip_space();
            if (pos_ >= s_.size() || s_[pos_++] != ':') return fail("expected ':'");
            Value member;
            if (!value(&member, depth + 1)) return false;
            v->object[key] = std::move(member);
            skip_space();
            if (pos_ >= s_.size()) return fail("unterminated object");
            char c = s_[pos_++];
            if (c == '}') return true;
            if (c != ',') return fail("expected ',' or '}'");
        }
    }

    const std::string& s_;
    size_t pos_ = 0;
    std::string msg_;
};

}  // namespace

absl::StatusOr<Value> parse(const std::string& text) { return Parser(text).document(); }

}  // namespace pslerp::json
