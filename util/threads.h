// One thread count for everything that computes: OpenMP (our kernels, FAISS's scans) and the BLAS
// behind FAISS's and our sgemm calls. Without the second, `--threads 1` would time FAISS's
// batched search (one large sgemm) on every core while pslerp ran on one.
#pragma once

namespace pslerp {

/// Sets OpenMP's thread count and, where the BLAS in the process is OpenBLAS (looked up at run
/// time: openblas_set_num_threads), its own. n >= 1.
void set_threads(int n);

}  // namespace pslerp
