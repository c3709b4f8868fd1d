// Arrays on disk: NumPy .npy (format 1.0, 2.0 and 3.0 headers; C order; 1-D or 2-D) and the
// .fvecs / .ivecs formats of the ANN benchmarks, read through io/file.h and written atomically.
//
// Guarantees: every malformed, truncated or unsupported file gives an absl::Status naming the
// file and the problem, never a crash; sizes in a header are checked against the file size
// before anything is allocated. Only regular files are read: a FIFO, a device or a folder is
// refused before open() could block on it (io/file.h). Writes are atomic and private (0600).
// Little-endian hosts only (checked at compile time).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/file.h"

namespace pslerp {

/// A row-major float32 matrix. A 1-D array of n values reads as one row of n columns.
struct Matrix {
    std::vector<float> data;  ///< size rows * cols
    int64_t rows = 0, cols = 0;
};

/// A row-major int64 matrix. A 1-D array of n values reads as n rows of one column.
struct IntMatrix {
    std::vector<int64_t> data;  ///< size rows * cols
    int64_t rows = 0, cols = 0;
};

/// float32 .npy: dtype '<f4'; with allow_convert, '<f8' is read and converted to float32.
absl::StatusOr<Matrix> read_npy_f32(const std::string& path, bool allow_convert = false);
/// int64 .npy: dtype '<i8'; with allow_convert, '<i4' is read and widened.
absl::StatusOr<IntMatrix> read_npy_i64(const std::string& path, bool allow_convert = false);

/// The same two readers over a .npy file's bytes from any source (a buffer: the fuzzer, bytes
/// received from elsewhere); messages name the source.
absl::StatusOr<Matrix> read_npy_f32(const ByteSource& in, bool allow_convert = false);
absl::StatusOr<IntMatrix> read_npy_i64(const ByteSource& in, bool allow_convert = false);

/// @param x  size rows * cols. cols < 0 writes a 1-D array of `rows` values.
absl::Status write_npy_f32(const std::string& path, const float* x, int64_t rows, int64_t cols);
/// @param x  size rows * cols. cols < 0 (the default) writes a 1-D array of `rows` values.
absl::Status write_npy_i64(const std::string& path, const int64_t* x, int64_t rows,
                           int64_t cols = -1);

/// .fvecs: per row an int32 dimension then that many float32. Every row must have the same
/// dimension; an empty file is 0 rows.
absl::StatusOr<Matrix> read_fvecs(const std::string& path);
/// @param x  size rows * cols, cols >= 1
absl::Status write_fvecs(const std::string& path, const float* x, int64_t rows, int64_t cols);
/// .ivecs: as .fvecs with int32 values, widened to int64.
absl::StatusOr<IntMatrix> read_ivecs(const std::string& path);
/// @param x  size rows * cols; every value must fit in int32.
absl::Status write_ivecs(const std::string& path, const int64_t* x, int64_t rows, int64_t cols);

/// Dispatches on the extension: .npy (read_npy_f32) or .fvecs.
absl::StatusOr<Matrix> read_matrix(const std::string& path, bool allow_convert = false);
/// Labels as a flat vector: .npy (1-D, or 2-D with one column) or .ivecs (one column).
absl::StatusOr<std::vector<int64_t>> read_labels(const std::string& path,
                                                 bool allow_convert = false);

}  // namespace pslerp
