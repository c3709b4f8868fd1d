// libFuzzer target: arbitrary bytes as a sealed index file under a fixed secret
// (deserialize_index with a secret), then, when they load, a search. The seeds are sealed files
// under the same secret (make_seeds.cpp), so mutations reach the envelope's header checks, the
// chunk walk and the authentication; only the seeds themselves may load.
//
// Any exception other than faiss::FaissException, any sanitizer report, leak, hang or
// allocation beyond -malloc_limit_mb is a finding. (That no edited file loads is what
// tests/cpp/test_seal.cpp checks byte by byte.)
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <faiss/impl/FaissException.h>

#include "index/index_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const pslerp::Secret secret = [] {
        uint8_t raw[32];
        for (uint8_t& b : raw) b = 0x5a;
        return *pslerp::Secret::from_bytes(raw, sizeof raw);
    }();
    try {
        const std::unique_ptr<faiss::Index> index = pslerp::deserialize_index(data, size, secret);
        std::vector<float> x(index->d, 0.25f);
        std::vector<float> distances(3);
        std::vector<faiss::Index::idx_t> labels(3);
        index->search(1, x.data(), 3, distances.data(), labels.data());
    } catch (const faiss::FaissException&) {
        // refused: the expected outcome for every input but the seeds
    }
    return 0;
}
