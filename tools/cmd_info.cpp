// pslerp info: what an index file holds.
#include <algorithm>
#include <cstdio>
#include <vector>

#include <faiss/IndexFlat.h>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "index/kernels/scan.h"
#include "tools/common.h"

namespace pslerp::cli {
namespace {

void print_ivf(const IndexIVFProtectedSlerp& ix) {
    std::vector<size_t> sizes(ix.nlist);
    for (size_t l = 0; l < ix.nlist; ++l) sizes[l] = ix.invlists->list_size(l);
    std::sort(sizes.begin(), sizes.end());
    const size_t empty = size_t(std::count(sizes.begin(), sizes.end(), size_t(0)));
    const bool is_default = ix.nprobe == default_nprobe(ix.nlist);
    std::printf("kind         IVF: a query scores the entries of its nprobe nearest lists\n");
    std::printf("nlist        %zu (quantizer %s, %s)\n", ix.nlist,
                dynamic_cast<const faiss::IndexFlat*>(ix.quantizer) ? "flat L2" : "HNSW over the centroids",
                ix.is_trained ? "trained" : "UNTRAINED");
    std::printf("nprobe       %zu (%s; %.1f%% of the lists per query)\n", ix.nprobe,
                is_default ? "the default for this nlist" : "set at creation, not the default", 100.0 * ix.nprobe / ix.nlist);
    if (ix.ntotal > 0) {
        std::printf("list sizes   min %zu / median %zu / max %zu; %zu of %zu lists empty\n", sizes.front(),
                    sizes[sizes.size() / 2], sizes.back(), empty, ix.nlist);
        std::printf("imbalance    %.3f (nlist * sum(size^2) / ntotal^2; 1 = balanced)\n", ix.imbalance());
    }
    std::printf("bytes/entry  %zu: protected code %zu + id %zu\n", ix.bytes_per_entry(), ix.code_size,
                sizeof(idx_t));
    std::printf("centroids    %zu x %ld floats = %.1f KiB (each an average of training features)\n", ix.nlist,
                long(ix.d), double(ix.nlist) * ix.d * sizeof(float) / 1024);
}

void print_exhaustive(const IndexProtectedSlerp& ix) {
    std::printf("kind         exhaustive: a query scores every entry\n");
    std::printf("rows         %ld stored (%ld removed, reclaimed by compaction)\n", long(ix.store.rows()),
                long(ix.store.rows() - ix.ntotal));
    std::printf("bytes/entry  %zu: protected template, key, mask and constants, id, removal flag\n",
                ix.bytes_per_entry());
}

constexpr char kUsage[] =
        "usage: pslerp info INDEX [--secret-file KEY | --secret-env NAME]\n"
        "Whether the file is sealed (no secret needed); then, for a clear file or with the secret of a\n"
        "sealed one: parameters, entries, bytes per entry, key state and secret frame; for an IVF index\n"
        "also nlist, nprobe, list sizes and their imbalance.\n";

absl::Status run(Args& args) {
    auto sealing = secret_options(args, false);
    if (!sealing.ok()) return sealing.status();
    if (auto s = args.finish(); !s.ok()) return s;
    if (args.positional().size() != 1) return usage_error("expected one index file");
    const std::string& path = args.positional()[0];
    IndexFileSummary summary;
    try {
        summary = peek_index_file(path);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
    if (summary.sealed) {
        std::printf("file         SEALED (envelope version %u, %lu payload bytes encrypted and authenticated)\n",
                    summary.version, static_cast<unsigned long>(summary.payload_bytes));
        if (sealing->secret.empty()) {
            std::printf("contents     need the secret (--secret-file or --secret-env)\n");
            return absl::OkStatus();
        }
    }
    auto index = load_index(path, sealing->secret);
    if (!index.ok()) return index.status();
    if (!summary.sealed) {
        std::printf("file         NOT SEALED (format version %u: keys and templates readable by whoever has the file)\n",
                    summary.version);
    }
    const faiss::Index& ix = **index;
    const ProtectedIndex& pi = protected_of(ix);
    std::printf("index        %s\n", describe_index(ix).c_str());
    std::printf("dimension    %ld (%d groups x %d)\n", long(ix.d), pi.params.groups, pi.params.group_dim);
    std::printf("parameters   %s\n", pi.params.describe().c_str());
    std::printf("storage      %s\n", pi.params.storage == Storage::kFp16
                                           ? "fp16 templates and keys (per-group constants recomputed when scoring)"
                                           : "fp32");
    std::printf("entries      %ld (next id %ld)\n", long(ix.ntotal), long(pi.next_id()));
    std::printf("centring     %s\n",
                pi.centering.trained() ? (pi.centering.rotation.empty() ? "mean" : "mean + PCA") : "none");
    std::printf("frame        %s\n", pi.centering.has_frame()
                                           ? "secret (a random rotation per group; its seed is in the sealed file only)"
                                           : "none");
    if (pi.params.norm == Norm::kCohort) {
        std::printf("score norm   cohort z-scores against the %s (%d draws)\n", pi.cohort().describe().c_str(),
                    pi.params.cohort_size);
    } else {
        std::printf("score norm   none (combined cosines)\n");
    }
    if (auto* ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(&ix)) {
        print_ivf(*ivf);
    } else if (auto* ex = dynamic_cast<const IndexProtectedSlerp*>(&ix)) {
        print_exhaustive(*ex);
    }
    std::printf("kernel       %s\n", kernels::simd_level());
    if (pi.seed()) {
        std::printf("keys         SEEDED (test index: keys are reproducible from the stored seed; keys added after "
                    "loading come from the OS generator); %lu streams used\n",
                    static_cast<unsigned long>(pi.streams_used()));
    } else {
        std::printf("keys         OS random generator (not reproducible); %lu streams used\n",
                    static_cast<unsigned long>(pi.streams_used()));
    }
    return absl::OkStatus();
}

}  // namespace

int cmd_info(const std::vector<std::string>& argv) {
    return run_command("info", argv, {}, kUsage, run);
}

}  // namespace pslerp::cli
