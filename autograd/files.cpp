// Atomic file writes with POSIX calls (write loops over EINTR and partial writes; fsync before the rename, and
// of the directory after it, so the rename is durable), and the fault-injection counter the tests kill runs by.
#include "autograd/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>

#include "autograd/tensor.h"
#include "autograd/text.h"

namespace vt {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 30;  // read()/write() move at most ~2 GiB per call on Linux

[[noreturn]] void file_error(const char* op, const std::string& path, const std::string& problem) {
  fail(op, "'" + path + "': " + problem);
}

std::string errno_text() { return std::strerror(errno); }

// VT_FAULT_KILL_AT, read once: the 1-based number of the write step to die at, or 0 for never.
int64_t kill_at() {
  static const int64_t value = [] {
    const char* text = std::getenv("VT_FAULT_KILL_AT");
    const std::optional<int64_t> parsed = text ? parse_integer(text) : std::nullopt;
    return parsed && *parsed > 0 ? *parsed : int64_t{0};
  }();
  return value;
}

// "<path>.tmp-<pid>", its file name cut to fit Linux's NAME_MAX (255 bytes) when the output's own name nearly
// fills it (a valid 252-byte name could not be written).
std::string temporary_path(const std::string& path) {
  const std::string suffix = ".tmp-" + std::to_string(::getpid());
  const std::filesystem::path output(path);
  std::string name = output.filename().string();
  constexpr size_t kNameMax = 255;
  if (name.size() + suffix.size() > kNameMax) name.resize(kNameMax - suffix.size());
  return (output.parent_path() / (name + suffix)).string();
}

}  // namespace

void fault_point() {
  static std::atomic<int64_t> steps{0};
  if (kill_at() > 0 && ++steps == kill_at()) std::raise(SIGKILL);
}

AtomicFileWriter::AtomicFileWriter(const char* op, std::string path)
    : op_(op), path_(std::move(path)), temporary_(temporary_path(path_)) {
  // The rename would replace a FIFO, a socket or (run as root) a device node with a regular file; over a folder
  // it fails by itself.
  struct stat status;
  if (::stat(path_.c_str(), &status) == 0 && !S_ISREG(status.st_mode) && !S_ISDIR(status.st_mode))
    file_error(op_, path_, "exists and is not a regular file (a FIFO, a socket or a device)");
  fault_point();
  descriptor_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (descriptor_ < 0) file_error(op_, path_, "cannot create the temporary file '" + temporary_ + "': " + errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (descriptor_ >= 0) ::close(descriptor_);
  if (!committed_) ::unlink(temporary_.c_str());
}

void AtomicFileWriter::write(const void* data, uint64_t bytes) {
  fault_point();
  const char* in = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t put = ::write(descriptor_, in, std::min<uint64_t>(bytes, kChunkBytes));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) file_error(op_, path_, "write to '" + temporary_ + "' failed: " + errno_text());
    in += put;
    bytes -= static_cast<uint64_t>(put);
  }
}

void AtomicFileWriter::commit() {
  fault_point();
  if (::fsync(descriptor_) != 0) file_error(op_, path_, "fsync of '" + temporary_ + "' failed: " + errno_text());
  const int descriptor = descriptor_;
  descriptor_ = -1;
  if (::close(descriptor) != 0) file_error(op_, path_, "close of '" + temporary_ + "' failed: " + errno_text());
  fault_point();
  if (::rename(temporary_.c_str(), path_.c_str()) != 0)
    file_error(op_, path_, "cannot rename '" + temporary_ + "' over it: " + errno_text());
  committed_ = true;
  fault_point();
  // The rename is durable only once the directory entry is on disk.
  std::string directory = std::filesystem::path(path_).parent_path().string();
  if (directory.empty()) directory = ".";
  const int directory_descriptor = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory_descriptor < 0) file_error(op_, path_, "cannot open its directory to sync it: " + errno_text());
  const int synced = ::fsync(directory_descriptor);
  ::close(directory_descriptor);
  if (synced != 0) file_error(op_, path_, "fsync of its directory failed: " + errno_text());
}

void write_file_atomically(const char* op, const std::string& path, std::string_view contents) {
  AtomicFileWriter file(op, path);
  file.write(contents.data(), contents.size());
  file.commit();
}

FolderLock::FolderLock(const char* op, const std::string& folder) {
  const std::string path = folder + "/.vt-lock";
  descriptor_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (descriptor_ < 0) file_error(op, path, "cannot open the folder's lock file: " + errno_text());
  if (::flock(descriptor_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char holder[32] = {};
    const ssize_t got = ::pread(descriptor_, holder, sizeof holder - 1, 0);
    ::close(descriptor_);  // the destructor does not run when the constructor throws
    if (error == EWOULDBLOCK)
      fail(op, "'" + folder + "' is in use by another vt process" +
                   (got > 0 ? " (pid " + std::string(holder, static_cast<size_t>(got)) + ")" : std::string()) +
                   "; wait for it to finish, or write elsewhere with --out");
    file_error(op, path, std::string("cannot lock it: ") + std::strerror(error));
  }
  // The pid only makes the message above precise; the lock holds without it, so a failed write is let go.
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(descriptor_, 0) == 0) (void)!::pwrite(descriptor_, pid.data(), pid.size(), 0);
}

FolderLock::~FolderLock() { ::close(descriptor_); }  // closing releases the lock

void create_folder(const char* op, const std::string& directory) {
  std::error_code error;
  if (std::filesystem::exists(directory, error) && !std::filesystem::is_directory(directory, error))
    fail(op, "'" + directory + "' is a file, not a folder");
  std::filesystem::create_directories(directory, error);
  if (error) fail(op, "cannot create the folder '" + directory + "': " + error.message());
}

int remove_stale_temporary_files(const std::string& directory) {
  namespace fs = std::filesystem;
  std::error_code error;
  int removed = 0;
  for (fs::directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    const size_t mark = name.rfind(".tmp-");
    if (mark == std::string::npos) continue;
    const std::optional<int64_t> pid = parse_integer(name.substr(mark + 5));
    if (!pid || *pid <= 0 || *pid > std::numeric_limits<pid_t>::max()) continue;
    // kill(pid, 0) fails with ESRCH exactly when no such process exists; a live writer's file is left alone.
    if (::kill(static_cast<pid_t>(*pid), 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      removed += fs::remove(it->path(), ignored) ? 1 : 0;
    }
  }
  return removed;
}

}  // namespace vt
