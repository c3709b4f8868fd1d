// pslerp rekey: re-seal an index file under a new secret, in place.
#include <cstdio>

#include "index/index_io.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp rekey --index INDEX (--secret-file OLD | --secret-env NAME | --unsealed-in)\n"
        "                    (--new-secret-file NEW | --new-secret-env NAME)\n"
        "Opens INDEX with its secret and writes it back sealed under the new one, atomically (the old\n"
        "file stays whole until the new one replaces it; mode and owner are kept). The templates,\n"
        "keys and secret frame are unchanged: only the sealing changes. --unsealed-in seals a clear\n"
        "file for the first time (it has no secret frame; re-enrol for one).\n";

absl::Status run(Args& args) {
    auto path = args.required("index");
    if (!path.ok()) return path.status();
    const bool clear_in = args.flag("unsealed-in");
    auto old_secret = secret_options(args, false);
    if (!old_secret.ok()) return old_secret.status();
    auto new_secret = secret_options(args, false, "new-");
    if (!new_secret.ok()) return new_secret.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (!args.positional().empty()) return usage_error("rekey takes no positional arguments");
    if (clear_in == !old_secret->secret.empty()) {
        return usage_error("give the old secret (--secret-file or --secret-env), or --unsealed-in for a clear file");
    }
    if (new_secret->secret.empty()) return usage_error("give the new secret: --new-secret-file or --new-secret-env");
    auto index = load_index(*path, old_secret->secret);
    if (!index.ok()) return index.status();
    if (auto s = save_index(**index, *path, *new_secret); !s.ok()) return s;
    std::printf("re-sealed %s (%ld entries) under the new secret\n", path->c_str(), long((*index)->ntotal));
    return absl::OkStatus();
}

}  // namespace

int cmd_rekey(const std::vector<std::string>& argv) {
    return run_command("rekey", argv, {"unsealed-in"}, kUsage, run);
}

}  // namespace pslerp::cli
