#include "util/threads.h"

#include <dlfcn.h>
#include <omp.h>

namespace pslerp {

void set_threads(int n) {
    omp_set_num_threads(n);
    // OpenBLAS's own pool (its pthreads build ignores OpenMP's setting); absent from other BLAS.
    using SetFn = void (*)(int);
    if (auto set_blas = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(n);
}

}  // namespace pslerp
