// Arrays on disk: NumPy .npy (format 1.0, 2.0 and 3.0 headers; C order; 1-D or 2-D) and the
// .fvecs / .ivecs formats of the ANN benchmarks, plus atomic file writes.
//
// Guarantees: every malformed, truncated or unsupported file gives an absl::Status naming the
// file and the problem, never a crash; sizes in a header are checked against the file size
// before anything is allocated. Writes are atomic: a temporary file in the same folder,
// fsync, rename, so a reader sees the old file or the new one, never half of one.
// Little-endian hosts only (checked at compile time).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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

/// Writes a file atomically: temporary file in the same folder, write, fsync, rename, fsync
/// of the folder. On any failure the temporary file is removed and `path` is untouched.
class AtomicFile {
  public:
    AtomicFile() = default;
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    /// Removes the temporary file unless commit() succeeded.
    ~AtomicFile();

    absl::Status open(const std::string& path);
    absl::Status write(const void* bytes, size_t n);
    /// fsync, close, rename onto the final path. The object is spent afterwards.
    absl::Status commit();

  private:
    void abandon();
    std::string path_, tmp_path_;
    int fd_ = -1;
};

/// The whole of `bytes` into `path`, atomically (see AtomicFile).
absl::Status atomic_write_file(const std::string& path, const std::string& bytes);

/// float32 .npy: dtype '<f4'; with allow_convert, '<f8' is read and converted to float32.
absl::StatusOr<Matrix> read_npy_f32(const std::string& path, bool allow_convert = false);
/// int64 .npy: dtype '<i8'; with allow_convert, '<i4' is read and widened.
absl::StatusOr<IntMatrix> read_npy_i64(const std::string& path, bool allow_convert = false);

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
