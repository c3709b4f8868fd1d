// pslerp keygen: a new secret file for sealing index files.
#include <cstdio>

#include "io/seal.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp keygen --out FILE [--force]\n"
        "Writes a new 32-byte secret (64 hex digits, from the OS generator) to FILE with mode 0600,\n"
        "for --secret-file. Refuses an existing FILE unless --force. Keep it apart from the index\n"
        "files it seals: whoever has both can read them. The same 64 hex digits in an environment\n"
        "variable serve --secret-env.\n";

absl::Status run(Args& args) {
    auto out = args.required("out");
    if (!out.ok()) return out.status();
    const bool force = args.flag("force");
    if (auto s = args.finish(); !s.ok()) return s;
    if (!args.positional().empty()) return usage_error("keygen takes no positional arguments");
    if (auto s = write_secret_file(*out, generate_secret(), force); !s.ok()) return s;
    std::printf("wrote a new secret to %s (mode 0600)\n", out->c_str());
    return absl::OkStatus();
}

}  // namespace

int cmd_keygen(const std::vector<std::string>& argv) { return run_command("keygen", argv, {"force"}, kUsage, run); }

}  // namespace pslerp::cli
