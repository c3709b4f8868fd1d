// Arrays on disk: NumPy .npy (format 1.0, 2.0 and 3.0 headers; C order; 1-D or 2-D) and the
// .fvecs / .ivecs formats of the ANN benchmarks, plus atomic file writes and the one POSIX file
// reader of pslerp (InputFile; index files are read through it too).
//
// Guarantees: every malformed, truncated or unsupported file gives an absl::Status naming the
// file and the problem, never a crash; sizes in a header are checked against the file size
// before anything is allocated. Only regular files are read: a FIFO, a device or a folder is
// refused before open() could block on it. Files are read with pread, never mapped, so a file
// truncated while it is read gives an error, not SIGBUS. Writes are atomic: a temporary file
// in the same folder, fsync, rename, so a reader sees the old file or the new one, never half
// of one. Little-endian hosts only (checked at compile time).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
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

/// Random access to the bytes of a file or of a buffer. A read either fills its buffer or fails
/// with a status (past the end, an I/O error, a file that shrank): never a signal.
class ByteSource {
  public:
    virtual ~ByteSource() = default;
    /// Bytes available (for a file, its size when it was opened).
    virtual uint64_t size() const = 0;
    /// Copies n bytes from `offset` into `out`.
    virtual absl::Status read_at(uint64_t offset, void* out, uint64_t n) const = 0;
    /// The bytes themselves when they are in memory; nullptr for a file.
    virtual const uint8_t* data() const { return nullptr; }
    /// What messages call it: the path, or the name given to a buffer.
    const std::string& name() const { return name_; }

  protected:
    explicit ByteSource(std::string name) : name_(std::move(name)) {}
    std::string name_;
};

/// A regular file opened for reading (pread), closed on destruction. Once open, read_at may be
/// called from several threads at once (pread has no shared file offset).
class InputFile : public ByteSource {
  public:
    InputFile() : ByteSource("") {}
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() override;

    /// Opens `path` without blocking (O_NONBLOCK until fstat says it is a regular file).
    /// NotFound for a missing file, InvalidArgument "not a regular file" for anything else.
    absl::Status open(const std::string& path);
    uint64_t size() const override { return size_; }
    /// InvalidArgument "file shrank while being read" when the file is now shorter.
    absl::Status read_at(uint64_t offset, void* out, uint64_t n) const override;

  private:
    int fd_ = -1;
    uint64_t size_ = 0;
};

/// size bytes at `data`, not owned (they must outlive the object).
class MemoryBytes : public ByteSource {
  public:
    MemoryBytes(const uint8_t* data, size_t size, std::string name = "<memory>")
        : ByteSource(std::move(name)), data_(data), size_(size) {}
    uint64_t size() const override { return size_; }
    absl::Status read_at(uint64_t offset, void* out, uint64_t n) const override;
    const uint8_t* data() const override { return data_; }

  private:
    const uint8_t* data_;
    size_t size_;
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
