// libFuzzer target: arbitrary bytes as a .npy file, read from memory by both readers, with and
// without dtype conversion. A matrix that is returned must be consistent with its shape; any
// sanitizer report, leak, hang or allocation beyond -malloc_limit_mb is a finding.
#include <cstdint>
#include <cstdlib>

#include "io/array_io.h"

namespace {

template <typename M>
void check(const absl::StatusOr<M>& m) {
    if (!m.ok()) return;
    const bool consistent = m->rows >= 0 && m->cols >= 0 && uint64_t(m->rows) * uint64_t(m->cols) == m->data.size();
    if (!consistent) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const pslerp::MemoryBytes in(data, size, "fuzz input");
    for (bool convert : {false, true}) {
        check(pslerp::read_npy_f32(in, convert));
        check(pslerp::read_npy_i64(in, convert));
    }
    return 0;
}
