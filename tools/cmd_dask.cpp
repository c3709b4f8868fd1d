// `pslerp enroll|search --scheduler ADDRESS ...`: the sharded versions of the two commands run
// on a Dask cluster by the Python package (pslerp.distributed, which has the Dask client). This
// process is replaced by `python3 -m pslerp.distributed <command> <args>` (execv), so output,
// signals and exit codes are the Python side's, with the same meanings (0, 1 run failed, 2 usage).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "tools/cli.h"

namespace pslerp::cli {
namespace {

namespace fs = std::filesystem;

constexpr char kPython[] = "/usr/bin/python3";  // Debian's interpreter, the one the package is built for

bool asks_for_scheduler(const std::vector<std::string>& argv) {
    for (const std::string& a : argv) {
        if (a == "--scheduler" || a.rfind("--scheduler=", 0) == 0) return true;
    }
    return false;
}

bool has_package(const fs::path& dir) {
    std::error_code ec;
    return fs::is_regular_file(dir / "pslerp" / "distributed.py", ec);
}

/// The folder holding the `pslerp` package that belongs to this executable: <build>/python in
/// a build tree (the executable is <build>/tools/pslerp), or <prefix>/lib/python3.X/
/// dist-packages (or site-packages) of an install (the executable is <prefix>/bin/pslerp).
/// Empty when neither is there: the interpreter's own path is then searched.
std::string package_dir() {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return "";
    const fs::path root = exe.parent_path().parent_path();
    if (has_package(root / "python")) return (root / "python").string();
    for (fs::directory_iterator it(root / "lib", ec), end; !ec && it != end; it.increment(ec)) {
        if (it->path().filename().string().rfind("python3", 0) != 0) continue;
        for (const char* site : {"dist-packages", "site-packages"}) {
            if (has_package(it->path() / site)) return (it->path() / site).string();
        }
    }
    return "";
}

}  // namespace

std::optional<int> run_on_dask_if_asked(const char* command, const std::vector<std::string>& argv) {
    if (!asks_for_scheduler(argv)) return std::nullopt;
    const std::string dir = package_dir();
    if (!dir.empty()) {
        const char* old = std::getenv("PYTHONPATH");
        const std::string path = old && *old ? dir + ":" + old : dir;
        setenv("PYTHONPATH", path.c_str(), 1);
    }
    std::vector<std::string> args = {kPython, "-m", "pslerp.distributed", command};
    args.insert(args.end(), argv.begin(), argv.end());
    std::vector<char*> cargs;
    for (std::string& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    std::fflush(stdout);
    execv(kPython, cargs.data());
    const int err = errno;  // execv returns only on failure
    std::fprintf(stderr, "pslerp %s: --scheduler runs the sharded command with %s -m pslerp.distributed: %s\n",
                 command, kPython, std::strerror(err));
    return 1;
}

}  // namespace pslerp::cli
