// `pslerp`: protected face-template search from the command line.
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "tools/common.h"
#include "util/threads.h"

namespace {

struct Entry {
    const char* name;
    pslerp::cli::Command run;
    const char* help;
};

const Entry kCommands[] = {
        {"demo", pslerp::cli::cmd_demo, "end-to-end run on a synthetic gallery (the README's main job)"},
        {"synth", pslerp::cli::cmd_synth, "make a synthetic gallery and probes (.npy/.fvecs)"},
        {"enroll", pslerp::cli::cmd_enroll, "raw features in, protected index file out"},
        {"search", pslerp::cli::cmd_search, "1:N search of probes against an index file"},
        {"verify", pslerp::cli::cmd_verify, "1:1 verification of probes against claimed ids"},
        {"dedup", pslerp::cli::cmd_dedup, "find enrolments that duplicate the gallery or each other"},
        {"info", pslerp::cli::cmd_info, "parameters, counts and bytes per entry of an index file"},
        {"keygen", pslerp::cli::cmd_keygen, "a new secret file (mode 0600) for sealing index files"},
        {"rekey", pslerp::cli::cmd_rekey, "re-seal an index file under a new secret, in place"},
        {"bench", pslerp::cli::cmd_bench, "protected search against FAISS on synthetic data"},
        {"eval", pslerp::cli::cmd_eval, "evaluation report: accuracy, 1:N, unlinkability, attacks, sweeps"},
#ifdef PSLERP_WITH_EXTRACTOR
        {"extract", pslerp::cli::cmd_extract, "face images to features (LibTorch)"},
#endif
};

void usage(std::FILE* out) {
    std::fputs("usage: pslerp <command> [options]   (pslerp <command> --help for its options)\n\ncommands:\n", out);
    for (const auto& c : kCommands) {
        std::fprintf(out, "  %-10s%s\n", c.name, c.help);
    }
    std::fputs("\noptions: --name value or --name=value; -o is --out, -k is --k, -t is --threads, -n is --n,\n"
               "-h is --help (also -k10, -k=10). Numbers are checked whole and against their range; an unknown or\n"
               "repeated option is an error. Every command takes --threads N (1 to 4 x the processors)\n"
               "and --help.\n",
               out);
    std::fputs(pslerp::cli::kExitCodesHelp, out);
}

}  // namespace

int main(int argc, char** argv) {
    using namespace pslerp::cli;
    pslerp::wait_passively(argv);  // util/threads.h: before any OpenMP region
    if (argc < 2) {
        usage(stderr);
        return pslerp::kExitUsage;
    }
    const std::string command = argv[1];
    if (command == "--help" || command == "-h" || command == "help") {
        usage(stdout);
        return pslerp::kExitOk;
    }
    const std::vector<std::string> rest(argv + 2, argv + argc);
    for (const auto& c : kCommands) {
        if (command != c.name) continue;
        try {
            return c.run(rest);
        } catch (const std::bad_alloc&) {
            return fail(c.name, out_of_memory());
        } catch (const std::exception& e) {
            return fail(c.name, from_exception(e));
        } catch (...) {
            return fail(c.name, absl::UnknownError("unexpected error"));
        }
    }
    if (!command.empty() && command[0] == '-') {
        std::fprintf(stderr, "pslerp: '%s': the command comes first (pslerp <command> [options])\n", command.c_str());
    } else {
        std::fprintf(stderr, "pslerp: unknown command '%s'\n", command.c_str());
    }
    usage(stderr);
    return pslerp::kExitUsage;
}
