// The one home of pslerp's file access: a POSIX reader (InputFile, pread) and an atomic,
// private writer (AtomicFile). Index files and arrays are read and written through these.
//
// Guarantees: only regular files are read, and a FIFO, a device or a folder is refused before
// open() could block on it. Files are read with pread, never mapped, so a file truncated while
// it is read gives an error, not SIGBUS. Writes are atomic: a temporary file in the same folder,
// fsync, rename, fsync of the folder, so a reader sees the old file or the new one, never half
// of one. New files are private to their owner (mode 0600): they hold protected templates,
// keys and centroids; a replaced file keeps its mode and owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pslerp {

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
    /// The file's mode bits (st_mode) when it was opened, from the open descriptor.
    uint32_t mode() const { return mode_; }
    /// InvalidArgument "file shrank while being read" when the file is now shorter.
    absl::Status read_at(uint64_t offset, void* out, uint64_t n) const override;

  private:
    int fd_ = -1;
    uint64_t size_ = 0;
    uint32_t mode_ = 0;
};

/// The whole of a regular file (through InputFile), refused before reading when it holds more
/// than `max_bytes`: InvalidArgument "<path>: file of N bytes is over the limit of M".
absl::StatusOr<std::string> read_whole_file(const std::string& path, uint64_t max_bytes);

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

    /// Refuses a target that is not a regular file (check_output_target), then creates the
    /// temporary file (O_EXCL, mode 0600) beside it. When `path` exists, the temporary file takes
    /// its mode, owner and group (owner: as far as the caller may give it), so a re-saved file
    /// keeps them.
    absl::Status open(const std::string& path);
    absl::Status write(const void* bytes, size_t n);
    /// fsync, close, rename onto the final path. The object is spent afterwards.
    absl::Status commit();

  private:
    void abandon();
    std::string path_, tmp_path_;
    int fd_ = -1;
};

/// Whether `path` can be the target of an AtomicFile: InvalidArgument when it exists and is not
/// a regular file (a folder, a device, a FIFO, a symbolic link); a missing folder is found by
/// open(). A command that writes several files checks them all before writing the first.
absl::Status check_output_target(const std::string& path);

/// The whole of `bytes` into `path`, atomically (see AtomicFile).
absl::Status atomic_write_file(const std::string& path, const std::string& bytes);

}  // namespace pslerp
