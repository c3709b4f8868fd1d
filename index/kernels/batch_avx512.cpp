// The batched kernel's closed form with sixteen lanes (batch_pass.h instantiated for AVX-512F).
// Compiled with -mavx512f -mfma for this file only; nothing here runs unless the CPU reports
// AVX-512F (scan.cpp avx512_ratio_passes() checks first).
// Nothing else is compiled here: no library template is instantiated with AVX-512 code that
// another file could end up calling.
#include "index/kernels/batch_pass.h"
#include "index/kernels/simd_avx512.h"

namespace pslerp::kernels {

const RatioPasses* avx512_ratio_passes_unchecked() {
    static constexpr RatioPasses passes = ratio_passes_for<avx512::Avx512>();
    return &passes;
}

}  // namespace pslerp::kernels
