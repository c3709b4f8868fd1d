// libFuzzer target: arbitrary bytes as a pslerp index file (deserialize_index), then, when they
// load, searches of the loaded index. Each input is tried as it is and again with its length
// field and checksum made valid, since a forger can recompute both: without that, almost every
// mutation would stop at the checksum and the parser behind it would go unexplored.
//
// Any exception other than faiss::FaissException, any sanitizer report, leak, hang (-timeout)
// or allocation beyond -malloc_limit_mb is a finding.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>

#include "index/index_io.h"

namespace {

constexpr size_t kLengthAt = 16;  // u64 file length in the header
constexpr size_t kChecksumBytes = 8;

void search(const faiss::Index& index) {
    if (!index.is_trained) return;
    const int64_t nq = 2, k = 3;
    std::vector<float> x(nq * index.d);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7f * float(i) + 0.3f);
    std::vector<float> distances(nq * k);
    std::vector<faiss::Index::idx_t> labels(nq * k);
    index.search(nq, x.data(), k, distances.data(), labels.data());
    faiss::SearchParametersIVF every_list;
    if (const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&index)) {
        every_list.nprobe = ivf->nlist;
        index.search(nq, x.data(), k, distances.data(), labels.data(), &every_list);
    }
    faiss::RangeSearchResult result(nq);
    index.range_search(nq, x.data(), 0.2f, &result);
}

void load(const uint8_t* data, size_t size) {
    try {
        const std::unique_ptr<faiss::Index> index = pslerp::deserialize_index(data, size);
        search(*index);
    } catch (const faiss::FaissException&) {
        // a refused file: the expected outcome for almost every input
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    load(data, size);
    if (size >= 32 + kChecksumBytes) {
        std::vector<uint8_t> sealed(data, data + size);
        const uint64_t length = size;
        std::memcpy(sealed.data() + kLengthAt, &length, sizeof length);
        const uint64_t sum = pslerp::io_checksum(sealed.data(), size - kChecksumBytes);
        std::memcpy(sealed.data() + size - kChecksumBytes, &sum, sizeof sum);
        load(sealed.data(), sealed.size());
    }
    return 0;
}
