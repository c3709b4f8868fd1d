#include "extractor/tfjs_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "extractor/json.h"
#include "io/digest.h"
#include "io/file.h"

namespace pslerp::tfjs {

int64_t TensorSpec::num_elements() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

namespace {

int64_t bytes_per_element(const std::string& stored) {
    if (stored == "float32" || stored == "int32") return 4;
    if (stored == "uint16" || stored == "float16") return 2;
    if (stored == "uint8") return 1;
    return 0;
}

float half_to_float(uint16_t h) {
    uint32_t sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign << 31;
        } else {  // subnormal: renormalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400u) == 0);
            bits = (sign << 31) | ((127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        bits = (sign << 31) | 0x7F800000u | (mant << 13);
    } else {
        bits = (sign << 31) | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

}  // namespace

int64_t TensorSpec::stored_bytes() const { return num_elements() * bytes_per_element(stored_dtype); }

absl::StatusOr<Manifest> parse_manifest(const std::string& json_text) {
    auto doc = json::parse(json_text);
    if (!doc.ok()) return absl::InvalidArgumentError(absl::StrCat("tfjs manifest: ", doc.status().message()));
    if (!doc->is_array()) return absl::InvalidArgumentError("tfjs manifest: expected a JSON array of weight groups");
    Manifest m;
    for (const json::Value& group : doc->array) {
        const json::Value* paths = group.find("paths");
        const json::Value* weights = group.find("weights");
        if (!paths || !paths->is_array() || !weights || !weights->is_array())
            return absl::InvalidArgumentError("tfjs manifest: a group lacks 'paths' or 'weights' arrays");
        for (const json::Value& p : paths->array) {
            if (!p.is_string()) return absl::InvalidArgumentError("tfjs manifest: a path is not a string");
            m.paths.push_back(p.string);
        }
        for (const json::Value& w : weights->array) {
            TensorSpec spec;
            const json::Value* name = w.find("name");
            const json::Value* shape = w.find("shape");
            const json::Value* dtype = w.find("dtype");
            if (!name || !name->is_string() || !shape || !shape->is_array() || !dtype || !dtype->is_string())
                return absl::InvalidArgumentError("tfjs manifest: a weight lacks name, shape or dtype");
            spec.name = name->string;
            for (const json::Value& s : shape->array) {
                if (!s.is_number() || s.number < 0 || s.number != static_cast<double>(static_cast<int64_t>(s.number)))
                    return absl::InvalidArgumentError(absl::StrCat("tfjs manifest: bad shape for ", spec.name));
                spec.shape.push_back(static_cast<int64_t>(s.number));
            }
            spec.dtype = dtype->string;
            spec.stored_dtype = spec.dtype;
            if (const json::Value* q = w.find("quantization")) {
                const json::Value* qd = q->find("dtype");
                const json::Value* scale = q->find("scale");
                const json::Value* min = q->find("min");
                if (!qd || !qd->is_string())
                    return absl::InvalidArgumentError(absl::StrCat("tfjs manifest: quantisation of ", spec.name, " lacks dtype"));
                spec.stored_dtype = qd->string;
                if (spec.stored_dtype == "uint8" || spec.stored_dtype == "uint16") {
                    if (!scale || !scale->is_number() || !min || !min->is_number())
                        return absl::InvalidArgumentError(absl::StrCat("tfjs manifest: quantisation of ", spec.name, " lacks scale/min"));
                    spec.scale = scale->number;
                    spec.min = min->number;
                } else if (spec.stored_dtype != "float16") {
                    return absl::InvalidArgumentError(absl::StrCat("tfjs manifest: unsupported quantisation dtype '",
                                                                    spec.stored_dtype, "' for ", spec.name));
                }
            }
            if (spec.dtype != "float32" && spec.dtype != "int32")
                return absl::InvalidArgumentError(absl::StrCat("tfjs manifest: unsupported dtype '", spec.dtype, "' for ", spec.name));
            m.tensors.push_back(std::move(spec));
        }
    }
    return m;
}

absl::StatusOr<std::map<std::string, Tensor>> decode_weights(const Manifest& manifest, const std::string& bytes) {
    std::map<std::string, Tensor> out;
    size_t offset = 0;
    for (const TensorSpec& spec : manifest.tensors) {
        const int64_t n = spec.num_elements();
        const size_t nbytes = static_cast<size_t>(spec.stored_bytes());
        if (offset + nbytes > bytes.size())
            return absl::DataLossError(absl::StrCat("tfjs weights: data ends inside tensor ", spec.name, " (need ",
                                                    offset + nbytes, " bytes, have ", bytes.size(), ")"));
        Tensor t;
        t.shape = spec.shape;
        t.values.resize(n);
        const unsigned char* p = reinterpret_cast<const unsigned char*>(bytes.data()) + offset;
        if (spec.stored_dtype == "uint8") {
            for (int64_t i = 0; i < n; ++i) t.values[i] = static_cast<float>(p[i] * spec.scale + spec.min);
        } else if (spec.stored_dtype == "uint16") {
            for (int64_t i = 0; i < n; ++i) {
                uint16_t q = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
                t.values[i] = static_cast<float>(q * spec.scale + spec.min);
            }
        } else if (spec.stored_dtype == "float16") {
            for (int64_t i = 0; i < n; ++i)
                t.values[i] = half_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
        } else if (spec.stored_dtype == "float32") {
            for (int64_t i = 0; i < n; ++i) {
                uint32_t u = static_cast<uint32_t>(p[4 * i]) | (static_cast<uint32_t>(p[4 * i + 1]) << 8) |
                             (static_cast<uint32_t>(p[4 * i + 2]) << 16) | (static_cast<uint32_t>(p[4 * i + 3]) << 24);
                std::memcpy(&t.values[i], &u, 4);
            }
        } else if (spec.stored_dtype == "int32") {
            for (int64_t i = 0; i < n; ++i) {
                uint32_t u = static_cast<uint32_t>(p[4 * i]) | (static_cast<uint32_t>(p[4 * i + 1]) << 8) |
                             (static_cast<uint32_t>(p[4 * i + 2]) << 16) | (static_cast<uint32_t>(p[4 * i + 3]) << 24);
                int32_t v;
                std::memcpy(&v, &u, 4);
                t.values[i] = static_cast<float>(v);
            }
        } else {
            return absl::InvalidArgumentError(absl::StrCat("tfjs weights: unsupported stored dtype ", spec.stored_dtype));
        }
        offset += nbytes;
        if (!out.emplace(spec.name, std::move(t)).second)
            return absl::InvalidArgumentError(absl::StrCat("tfjs weights: duplicate tensor name ", spec.name));
    }
    if (offset != bytes.size())
        return absl::DataLossError(absl::StrCat("tfjs weights: ", bytes.size() - offset,
                                                " bytes left over after the last tensor (manifest and data disagree)"));
    return out;
}

absl::StatusOr<std::string> read_file(const std::string& path) {
    // A manifest or one weights shard: tens of megabytes; a gigabyte is no model of ours.
    return read_whole_file(path, uint64_t{1} << 30);
}

absl::StatusOr<std::map<std::string, Tensor>> load_weights(const std::string& manifest_path,
                                                           const std::string& expected_sha256) {
    auto text = read_file(manifest_path);
    if (!text.ok()) return text.status();
    auto manifest = parse_manifest(*text);
    if (!manifest.ok())
        return absl::Status(manifest.status().code(), absl::StrCat(manifest_path, ": ", manifest.status().message()));
    const size_t slash = manifest_path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "" : manifest_path.substr(0, slash + 1);
    std::string bytes;
    for (const std::string& shard : manifest->paths) {
        auto part = read_file(dir + shard);
        if (!part.ok()) return part.status();
        bytes += *part;
    }
    if (!expected_sha256.empty()) {
        std::string got = sha256_hex(bytes);
        if (got != expected_sha256)
            return absl::DataLossError(absl::StrCat("weights checksum mismatch for ", dir,
                                                    absl::StrJoin(manifest->paths, ","), ": SHA-256 ", got,
                                                    ", expected ", expected_sha256,
                                                    " (wrong package version or corrupt download; rerun scripts/fetch_model.sh)"));
    }
    return decode_weights(*manifest, bytes);
}


}  // namespace pslerp::tfjs
