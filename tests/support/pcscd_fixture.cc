#include "pcscd_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <winscard.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace medcard::test_support {

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr char kLockPath[] = "/tmp/medcard-vpcd.lock";
// Debian's /etc/reader.conf.d/vpcd names the two slots like this.
constexpr char kSlot0[] = "Virtual PCD 00 00";
constexpr char kSlot1[] = "Virtual PCD 00 01";
constexpr char kInstallHint[] =
    "install them with: apt-get install pcscd vsmartcard-vpcd libpcsclite-dev";
constexpr milliseconds kLockTimeout{300'000};  // another binary's whole run
constexpr milliseconds kStartTimeout{15'000};
constexpr milliseconds kStopTimeout{5'000};
constexpr milliseconds kPoll{25};

struct State {
  int lock_fd = -1;
  pid_t child = -1;
  std::string log_path;
  bool started_here = false;
};
State& Global() {
  static State state;
  return state;
}

bool Executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }
bool Exists(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0;
}

std::string FindPcscd() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string all = path;
    for (std::size_t start = 0; start <= all.size();) {
      const std::size_t end = std::min(all.find(':', start), all.size());
      dirs.push_back(all.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const char* dir : {"/usr/sbin", "/usr/local/sbin", "/sbin"}) dirs.emplace_back(dir);
  for (const std::string& dir : dirs) {
    if (!dir.empty() && Executable(dir + "/pcscd")) return dir + "/pcscd";
  }
  return "";
}

bool VpcdInstalled() {
  for (const char* path : {"/etc/reader.conf.d/vpcd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
                           "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so"}) {
    if (Exists(path)) return true;
  }
  return false;
}

// The reader list, or nullopt-like empty + false when pcscd does not answer.
bool ListReaders(std::vector<std::string>& names) {
  names.clear();
  SCARDCONTEXT context = 0;
  if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &context) != SCARD_S_SUCCESS) {
    return false;
  }
  DWORD length = 0;
  LONG rv = SCardListReaders(context, nullptr, nullptr, &length);
  if (rv == SCARD_S_SUCCESS) {
    std::string multi(length, '\0');
    rv = SCardListReaders(context, nullptr, multi.data(), &length);
    for (std::size_t start = 0; rv == SCARD_S_SUCCESS && start < multi.size() && multi[start];) {
      const std::size_t end = multi.find('\0', start);
      names.push_back(multi.substr(start, end - start));
      start = end + 1;
    }
  }
  SCardReleaseContext(context);
  return true;
}

bool PcscdAnswers() {
  std::vector<std::string> names;
  return ListReaders(names);
}

bool HasVpcdReaders() {
  std::vector<std::string> names;
  return ListReaders(names) && std::find(names.begin(), names.end(), kSlot0) != names.end();
}

// Both vpcd slots empty: a card left in by another program would confuse every test.
Status WaitForEmptySlots(milliseconds timeout) {
  SCARDCONTEXT context = 0;
  if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &context) != SCARD_S_SUCCESS) {
    return MakeError("pcscd does not answer");
  }
  SCARD_READERSTATE states[2] = {};
  states[0].szReader = kSlot0;
  states[1].szReader = kSlot1;
  const auto deadline = Clock::now() + timeout;
  std::string busy;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    const LONG rv = SCardGetStatusChange(
        context, static_cast<DWORD>(std::max<long long>(0, left.count())), states, 2);
    busy.clear();
    for (const SCARD_READERSTATE& state : states) {
      if ((state.dwEventState & SCARD_STATE_PRESENT) != 0)
        busy += std::string(" '") + state.szReader + "'";
    }
    if (rv != SCARD_S_SUCCESS || busy.empty() || Clock::now() >= deadline) break;
    for (SCARD_READERSTATE& state : states) {
      state.dwCurrentState = state.dwEventState & ~static_cast<DWORD>(SCARD_STATE_CHANGED);
    }
  }
  SCardReleaseContext(context);
  if (busy.empty()) return Status::Ok();
  return MakeError("another program keeps a card in" + busy +
                   " (a vpcd bridge not using this fixture's lock?)");
}

Status AcquireLock() {
  State& s = Global();
  s.lock_fd = open(kLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (s.lock_fd < 0) return MakeError(std::string("cannot open ") + kLockPath);
  const auto deadline = Clock::now() + kLockTimeout;
  while (flock(s.lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (Clock::now() >= deadline) {
      return MakeError(std::string("another test binary holds ") + kLockPath + " for too long");
    }
    std::this_thread::sleep_for(kPoll);
  }
  return Status::Ok();
}

void ReleaseLock() {
  State& s = Global();
  if (s.lock_fd >= 0) close(s.lock_fd);  // also releases the flock
  s.lock_fd = -1;
}

// vpcd's driver binds its ports (35963, 35964) without SO_REUSEADDR: while a connection of the
// previous pcscd sits in TIME_WAIT (up to 60 s, when pcscd closed first) the new one cannot
// listen and logs "Address already in use".
bool VpcdPortWasBusy(const std::string& log_path) {
  std::ifstream log(log_path);
  std::string line;
  while (std::getline(log, line)) {
    if (line.find("Address already in use") != std::string::npos) return true;
  }
  return false;
}

Status WaitForVpcdReaders() {
  State& s = Global();
  const auto deadline = Clock::now() + kStartTimeout;
  while (!HasVpcdReaders()) {
    int status = 0;
    if (s.child > 0 && waitpid(s.child, &status, WNOHANG) == s.child) {
      s.child = -1;
      return MakeError("pcscd exited during start-up (status " + std::to_string(status) +
                       "); its log: " + s.log_path);
    }
    if (Clock::now() >= deadline || VpcdPortWasBusy(s.log_path)) {
      return MakeError(std::string("pcscd lists no '") + kSlot0 + "' reader after " +
                       std::to_string(kStartTimeout.count()) + " ms; its log: " + s.log_path);
    }
    std::this_thread::sleep_for(kPoll);
  }
  return Status::Ok();
}

}  // namespace

bool PcscdStartedHere() { return Global().started_here; }

namespace {
Status StartPcscdOnce() {
  State& s = Global();
  const std::string pcscd = FindPcscd();
  if (pcscd.empty()) return MakeError(std::string("pcscd is not installed; ") + kInstallHint);
  if (!VpcdInstalled()) {
    return MakeError(std::string("the vsmartcard-vpcd driver is not installed; ") + kInstallHint);
  }
  s.log_path = "/tmp/medcard-pcscd-" + std::to_string(getpid()) + ".log";
  std::ofstream(s.log_path, std::ios::trunc).close();  // a retry reads only its own start-up
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) return MakeError("fork failed");
  if (child == 0) {
    // pcscd must not outlive a test binary that crashes or is killed by a timeout.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    const int log = open(s.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    execl(pcscd.c_str(), "pcscd", "--foreground", static_cast<char*>(nullptr));
    _exit(127);
  }
  s.child = child;
  s.started_here = true;
  return WaitForVpcdReaders();
}
}  // namespace

Status StartPcscd() {
  const auto deadline = Clock::now() + milliseconds(75'000);  // TIME_WAIT is 60 s on Linux
  for (;;) {
    Status started = StartPcscdOnce();
    if (started.ok() || !VpcdPortWasBusy(Global().log_path) || Clock::now() >= deadline) {
      return started;
    }
    // The port frees itself when TIME_WAIT ends: stop this pcscd and start another.
    (void)StopPcscd();
    std::this_thread::sleep_for(milliseconds(1000));
  }
}

Status StopPcscd() {
  State& s = Global();
  if (!s.started_here || s.child <= 0) return MakeError("pcscd was not started by this binary");
  kill(s.child, SIGTERM);
  const auto deadline = Clock::now() + kStopTimeout;
  int status = 0;
  while (waitpid(s.child, &status, WNOHANG) != s.child) {
    if (Clock::now() >= deadline) {
      kill(s.child, SIGKILL);
      waitpid(s.child, &status, 0);
      break;
    }
    std::this_thread::sleep_for(kPoll);
  }
  s.child = -1;
  if (PcscdAnswers()) return MakeError("pcscd still answers after being stopped");
  return Status::Ok();
}

// A failed environment would make GoogleTest report every test as skipped, which ctest counts
// as no failure: the binary ends here instead, with the reason, and fails.
namespace {
[[noreturn]] void FailEnvironment(const std::string& why) {
  std::fprintf(stderr, "pcscd environment: %s\n", why.c_str());
  std::fflush(stderr);
  std::exit(1);
}
}  // namespace

void PcscdEnvironment::SetUp() {
  Status locked = AcquireLock();
  if (!locked.ok()) FailEnvironment(locked.error().message);
  if (PcscdAnswers()) {
    // Someone else's pcscd: use it, leave it running.
    const auto deadline = Clock::now() + milliseconds(3000);
    while (!HasVpcdReaders() && Clock::now() < deadline) std::this_thread::sleep_for(kPoll);
    if (!HasVpcdReaders()) {
      FailEnvironment(std::string("pcscd is running but lists no '") + kSlot0 +
                      "' reader: is vsmartcard-vpcd installed? (" + kInstallHint +
                      ", then restart pcscd)");
    }
  } else {
    Status started = StartPcscd();
    if (!started.ok()) FailEnvironment(started.error().message);
  }
  Status empty = WaitForEmptySlots(milliseconds(3000));
  if (!empty.ok()) FailEnvironment(empty.error().message);
}

void PcscdEnvironment::TearDown() {
  State& s = Global();
  if (s.started_here && s.child > 0) {
    Status stopped = StopPcscd();
    EXPECT_TRUE(stopped.ok()) << stopped.error().message;
    if (stopped.ok() && !::testing::UnitTest::GetInstance()->Failed()) unlink(s.log_path.c_str());
  }
  ReleaseLock();
}

::testing::Environment* RegisterPcscdEnvironment() {
  static ::testing::Environment* const environment =
      ::testing::AddGlobalTestEnvironment(new PcscdEnvironment);
  return environment;
}

}  // namespace medcard::test_support
