// Files that survive a crash: every write goes to "<path>.tmp-<pid>", is fsynced and renamed over `path`, so a
// reader (and a run killed at any point) sees either the old file or the complete new one. Conventions: errors
// name the op and the file; the environment variable VT_FAULT_KILL_AT=N kills the process (SIGKILL) at the Nth
// step of any write (creating, writing, syncing, renaming), which is how the tests kill runs mid-write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vt {

class AtomicFileWriter {
 public:
  AtomicFileWriter(const char* op, std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless committed
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, uint64_t bytes);
  void commit();  // fsync, rename over the path, fsync the directory

 private:
  const char* op_;
  std::string path_, temporary_;
  int descriptor_ = -1;
  bool committed_ = false;
};

void write_file_atomically(const char* op, const std::string& path, std::string_view contents);

// An exclusive lock on a folder (flock on "<folder>/.vt-lock", which records the holder's pid), held until
// destroyed: a second vt writing into the same run folder is refused, where both runs overwrote each other's
// files and exited 0. The kernel drops the lock when the process dies, so a killed run leaves none behind.
class FolderLock {
 public:
  FolderLock(const char* op, const std::string& folder);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int descriptor_ = -1;
};

// Creates `directory` and its parents where missing; fails naming the op and the folder (a file in its place, no
// permission) instead of std::filesystem's bare message.
void create_folder(const char* op, const std::string& directory);

// Removes "*.tmp-<pid>" files in `directory` left by writers that were killed (no process has that pid any
// more); returns how many it removed.
int remove_stale_temporary_files(const std::string& directory);

// One step of a write, for fault injection (see the header comment); does nothing unless VT_FAULT_KILL_AT is set.
void fault_point();

}  // namespace vt
