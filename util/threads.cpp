#include "util/threads.h"

#include <dlfcn.h>
#include <omp.h>
#include <unistd.h>

#include <cstdlib>

namespace pslerp {

void set_threads(int n) {
    omp_set_num_threads(n);
    // OpenBLAS's own pool (its pthreads build ignores OpenMP's setting); absent from other BLAS.
    using SetFn = void (*)(int);
    if (auto set_blas = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(n);
}

const char* omp_wait_policy() {
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    return policy ? policy : "unset";
}

void wait_passively(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);  // returns only when it fails
}

}  // namespace pslerp
