// The batched kernel's closed form with sixteen lanes (batch_pass.h instantiated for AVX-512F).
// Compiled with -mavx512f -mfma for this file only; used only when the CPU reports AVX-512F.
// Nothing else is compiled here: no library template is instantiated with AVX-512 code that
// another file could end up calling.
#include "index/kernels/batch_pass.h"
#include "index/kernels/simd_avx512.h"

namespace pslerp::kernels {

const RatioPasses* avx512_ratio_passes() {
    static constexpr RatioPasses passes = ratio_passes_for<avx512::Avx512>();
    if (!__builtin_cpu_supports("avx512f")) return nullptr;
    return &passes;
}

}  // namespace pslerp::kernels
