#include "extractor/tfjs_weights.h"

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "extractor/json.h"

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
    // stat() does not open: a FIFO or device is refused before open() could block on it.
    std::error_code ec;
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
        return absl::InvalidArgumentError(absl::StrCat("cannot read ", path, ": not a regular file"));
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
    return ss.str();
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

// FIPS 180-4 SHA-256.
std::string sha256_hex(const std::string& bytes) {
    static constexpr std::array<uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };

    std::string msg = bytes;
    const uint64_t bit_len = static_cast<uint64_t>(bytes.size()) * 8;
    msg.push_back(static_cast<char>(0x80));
    while (msg.size() % 64 != 56) msg.push_back('\0');
    for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bit_len >> (8 * i)) & 0xFF));

    uint32_t w[64];
    for (size_t chunk = 0; chunk < msg.size(); chunk += 64) {
        const unsigned char* c = reinterpret_cast<const unsigned char*>(msg.data()) + chunk;
        for (int i = 0; i < 16; ++i)
            w[i] = (uint32_t(c[4 * i]) << 24) | (uint32_t(c[4 * i + 1]) << 16) | (uint32_t(c[4 * i + 2]) << 8) |
                   uint32_t(c[4 * i + 3]);
        for (int i = 16; i < 64; ++i) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], cc = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; ++i) {
            uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = hh + s1 + ch + k[i] + w[i];
            uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            uint32_t maj = (a & b) ^ (a & cc) ^ (b & cc);
            uint32_t t2 = s0 + maj;
            hh = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += cc; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h)
        for (int i = 7; i >= 0; --i) out.push_back(hex[(v >> (4 * i)) & 0xF]);
    return out;
}

}  // namespace pslerp::tfjs
