// One thread count for everything that computes: OpenMP (our kernels, FAISS's scans) and the BLAS
// behind FAISS's and our sgemm calls. Without the second, `--threads 1` would time FAISS's
// batched search (one large sgemm) on every core while pslerp ran on one.
#pragma once

namespace pslerp {

/// Sets OpenMP's thread count and, where the BLAS in the process is OpenBLAS (looked up at run
/// time: openblas_set_num_threads), its own. n >= 1.
void set_threads(int n);

/// Makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the caller chose a policy.
/// With libgomp's default, the waiting threads of OpenMP and OpenBLAS spin on the cores the other
/// pool needs: FAISS's batched flat search, which alternates sgemm calls with OpenMP loops over
/// its heaps, took 5x longer at two threads on a 2-core machine (bench/RESULTS.md 1.1, fourth
/// pass). libgomp reads the variable only as it loads, so this sets it and runs the program
/// again (/proc/self/exe, the same argv); call it first thing in main(). Returns only when the
/// policy was already set or the new run could not start (then the default policy stays).
void wait_passively(char** argv);

/// OMP_WAIT_POLICY as the process sees it, or "unset" (for the benchmarks' provenance).
const char* omp_wait_policy();

}  // namespace pslerp
