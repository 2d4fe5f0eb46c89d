#include "test_database.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

namespace medcard::test_support {

namespace {

namespace fs = std::filesystem;

struct TempDirs {
  std::mutex mutex;
  pid_t owner = 0;
  std::vector<std::string> dirs;
};

TempDirs& Dirs() {
  static TempDirs* dirs = new TempDirs;  // outlives the atexit handler that empties it
  return *dirs;
}

void RemoveTempDirs() {
  TempDirs& t = Dirs();
  std::lock_guard lock(t.mutex);
  if (t.owner != ::getpid()) return;  // a forked child leaves its parent's directories alone
  for (const auto& dir : t.dirs) {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  t.dirs.clear();
}

}  // namespace

std::string EngineTestName(const ::testing::TestParamInfo<store::Engine>& info) {
  return info.param == store::Engine::kSqlite ? "SQLite" : "PostgreSQL";
}

std::string NewTempDir(const std::string& prefix) {
  std::string pattern = (fs::path(::testing::TempDir()) / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "cannot create " << pattern;
    return pattern;
  }
  TempDirs& t = Dirs();
  std::lock_guard lock(t.mutex);
  if (t.owner == 0) {
    t.owner = ::getpid();
    std::atexit(RemoveTempDirs);
  }
  t.dirs.push_back(pattern);
  return pattern;
}

Result<std::string> NewTestDatabaseUrl(store::Engine engine) {
  if (engine == store::Engine::kPostgres) return NewPostgresDatabase();
  return "sqlite:" + NewTempDir("medcard-store") + "/medcard.db";
}

}  // namespace medcard::test_support
