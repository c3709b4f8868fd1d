// `pslerp`: protected face-template search from the command line.
#include <omp.h>

#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "tools/common.h"

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
        {"bench", pslerp::cli::cmd_bench, "protected search against FAISS on synthetic data"},
#ifdef PSLERP_HAVE_EXTRACTOR
        {"extract", pslerp::cli::cmd_extract, "face images to features (LibTorch)"},
#endif
};

void usage() {
    std::cerr << "usage: pslerp <command> [options]   (pslerp <command> --help for its options)\n\ncommands:\n";
    for (const auto& c : kCommands) std::cerr << "  " << c.name << std::string(10 - std::strlen(c.name), ' ') << c.help << "\n";
    std::cerr << "\ncommon: --threads N (OpenMP threads)\n";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    std::vector<std::string> rest;
    for (int i = 2; i < argc; ++i) {
        // --threads is common to every command; handled here.
        if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            const int t = std::atoi(argv[++i]);
            if (t <= 0) {
                std::cerr << "pslerp: --threads must be a positive integer\n";
                return 2;
            }
            omp_set_num_threads(t);
            continue;
        }
        rest.emplace_back(argv[i]);
    }
    for (const auto& c : kCommands) {
        if (std::strcmp(argv[1], c.name) == 0) {
            try {
                return c.run(rest);
            } catch (const std::exception& e) {
                std::cerr << "pslerp " << c.name << ": " << pslerp::cli::from_exception(e).message() << "\n";
                return 1;
            }
        }
    }
    std::cerr << "pslerp: unknown command '" << argv[1] << "'\n";
    usage();
    return 2;
}
