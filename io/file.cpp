#include "io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pslerp {
namespace {

absl::Status io_error(const std::string& what, const std::string& path) {
    return absl::InternalError(absl::StrFormat("%s %s: %s", what, path, std::strerror(errno)));
}

absl::Status bad_file(const std::string& path, const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
}

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

}  // namespace

// ---- reading -------------------------------------------------------------------------------

InputFile::~InputFile() {
    if (fd_ >= 0) ::close(fd_);
}

absl::Status InputFile::open(const std::string& path) {
    if (fd_ >= 0) return absl::FailedPreconditionError(absl::StrCat(name_, ": already open"));
    name_ = path;
    // O_NONBLOCK: open() of a FIFO would otherwise wait for a writer (forever, for a reader
    // given the wrong path). It is cleared once fstat shows a regular file.
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd_ < 0) {
        if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
        return io_error("cannot open", path);
    }
    struct stat st;
    if (::fstat(fd_, &st) != 0) return io_error("cannot stat", path);
    if (!S_ISREG(st.st_mode)) return bad_file(path, "not a regular file");
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK) != 0) return io_error("cannot set up", path);
    size_ = static_cast<uint64_t>(st.st_size);
    mode_ = static_cast<uint32_t>(st.st_mode);
    return absl::OkStatus();
}

absl::Status InputFile::read_at(uint64_t offset, void* out, uint64_t n) const {
    if (fd_ < 0) return absl::FailedPreconditionError("InputFile is not open");
    char* p = static_cast<char*>(out);
    while (n > 0) {
        const size_t step = static_cast<size_t>(std::min<uint64_t>(n, 1 << 30));
        const ssize_t got = ::pread(fd_, p, step, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) continue;
            return io_error("cannot read", name_);
        }
        if (got == 0) return bad_file(name_, "file shrank while being read");
        p += got;
        offset += static_cast<uint64_t>(got);
        n -= static_cast<uint64_t>(got);
    }
    return absl::OkStatus();
}

absl::StatusOr<std::string> read_whole_file(const std::string& path, uint64_t max_bytes) {
    InputFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    if (f.size() > max_bytes) {
        return bad_file(path, absl::StrFormat("file of %d bytes is over the limit of %d", f.size(), max_bytes));
    }
    std::string bytes(static_cast<size_t>(f.size()), '\0');
    if (absl::Status st = f.read_at(0, bytes.data(), bytes.size()); !st.ok()) return st;
    return bytes;
}

absl::Status MemoryBytes::read_at(uint64_t offset, void* out, uint64_t n) const {
    if (offset > size_ || n > size_ - offset) {
        return bad_file(name_, absl::StrFormat("read of %d bytes at offset %d, past the end (%d bytes)", n, offset,
                                               size_));
    }
    if (n > 0) std::memcpy(out, data_ + offset, n);
    return absl::OkStatus();
}

// ---- AtomicFile ------------------------------------------------------------------------------

AtomicFile::~AtomicFile() { abandon(); }

void AtomicFile::abandon() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (!tmp_path_.empty()) {
        ::unlink(tmp_path_.c_str());
        tmp_path_.clear();
    }
}

absl::Status check_output_target(const std::string& path) {
    if (path.empty() || path.back() == '/') return absl::InvalidArgumentError("empty file name");
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return absl::OkStatus();
        return io_error("cannot stat", path);
    }
    if (S_ISLNK(st.st_mode)) return bad_file(path, "is a symbolic link; refusing to replace it");
    if (S_ISDIR(st.st_mode)) return bad_file(path, "is a folder; refusing to replace it");
    if (!S_ISREG(st.st_mode)) return bad_file(path, "is not a regular file (a device or a FIFO); refusing to replace it");
    return absl::OkStatus();
}

absl::Status AtomicFile::open(const std::string& path) {
    if (fd_ >= 0 || !tmp_path_.empty()) return absl::FailedPreconditionError("AtomicFile already open");
    if (absl::Status st = check_output_target(path); !st.ok()) return st;
    static std::atomic<uint64_t> counter{0};
    path_ = path;
    tmp_path_ = absl::StrFormat("%s.tmp.%d.%d", path, static_cast<int64_t>(::getpid()), counter.fetch_add(1));
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
        const absl::Status st = io_error("cannot create a temporary file beside", path);
        tmp_path_.clear();
        return st;
    }
    // A file being replaced keeps its mode, owner and group: the temporary file takes them
    // before any byte is written. Only root may give a file to another owner; for anyone else
    // the owner is already theirs or cannot be kept (then the group is still tried).
    struct stat old;
    if (::lstat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode)) {
        if (::fchown(fd_, old.st_uid, old.st_gid) != 0) (void)::fchown(fd_, static_cast<uid_t>(-1), old.st_gid);
        if (::fchmod(fd_, old.st_mode & 07777) != 0) {
            const absl::Status st = io_error("cannot set the mode of the temporary file beside", path);
            abandon();
            return st;
        }
    }
    return absl::OkStatus();
}

absl::Status AtomicFile::write(const void* bytes, size_t n) {
    if (fd_ < 0) return absl::FailedPreconditionError("AtomicFile is not open");
    const char* p = static_cast<const char*>(bytes);
    while (n > 0) {
        const ssize_t put = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
        if (put < 0) {
            if (errno == EINTR) continue;
            const absl::Status st = io_error("cannot write", path_);
            abandon();
            return st;
        }
        p += put;
        n -= static_cast<size_t>(put);
    }
    return absl::OkStatus();
}

absl::Status AtomicFile::commit() {
    if (fd_ < 0) return absl::FailedPreconditionError("AtomicFile is not open");
    if (::fsync(fd_) != 0) {
        const absl::Status st = io_error("cannot fsync", path_);
        abandon();
        return st;
    }
    if (::close(fd_) != 0) {
        fd_ = -1;
        const absl::Status st = io_error("cannot close", path_);
        abandon();
        return st;
    }
    fd_ = -1;
    if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
        const absl::Status st = io_error("cannot rename the temporary file onto", path_);
        abandon();
        return st;
    }
    tmp_path_.clear();
    // Make the rename itself durable; a failure here leaves a correct file, so it is ignored.
    const int dir = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
    return absl::OkStatus();
}

absl::Status atomic_write_file(const std::string& path, const std::string& bytes) {
    AtomicFile f;
    if (absl::Status st = f.open(path); !st.ok()) return st;
    if (absl::Status st = f.write(bytes.data(), bytes.size()); !st.ok()) return st;
    return f.commit();
}

}  // namespace pslerp
