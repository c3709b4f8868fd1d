// pslerp info: what an index file holds.
#include <cstdio>
#include <iostream>

#include "index/factory.h"
#include "index/kernels/scan.h"
#include "tools/common.h"

namespace pslerp::cli {

int cmd_info(const std::vector<std::string>& argv) {
    Args args(argv, {"help"});
    if (args.flag("help")) {
        std::cout << "usage: pslerp info INDEX\n";
        return 0;
    }
    if (auto s = args.finish(); !s.ok()) return fail("info", s);
    if (args.positional().size() != 1) return fail("info", absl::InvalidArgumentError("expected one index file"));
    auto index = load_index(args.positional()[0]);
    if (!index.ok()) return fail("info", index.status());
    const IndexProtectedSlerp& ix = **index;
    std::printf("index        %s\n", describe_index(ix).c_str());
    std::printf("dimension    %ld (%d groups x %d)\n", long(ix.d), ix.params.groups, ix.params.group_dim);
    std::printf("parameters   %s\n", ix.params.describe().c_str());
    std::printf("entries      %ld live, %ld rows stored\n", long(ix.ntotal), long(ix.store.rows()));
    std::printf("centring     %s\n", ix.centering.trained() ? (ix.centering.rotation.empty() ? "mean" : "mean + PCA") : "none");
    std::printf("coarse       %s\n", ix.coarse ? (ix.coarse->is_trained ? "trained" : "untrained") : "none (exhaustive)");
    std::printf("bytes/entry  %zu protected storage + %.1f coarse index\n", ix.storage_bytes_per_entry(),
                ix.coarse_bytes_per_entry());
    std::printf("kernel       %s\n", kernels::simd_level());
    std::printf("keys         %s\n", ix.seed() ? "SEEDED (test index: keys are reproducible)" : "OS random generator");
    return 0;
}

}  // namespace pslerp::cli
