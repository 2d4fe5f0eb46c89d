// The medcard processes the POS tests run beside themselves: `medcard host run`, and
// `medcard card|psam attach` putting a card image into a vpcd slot. The including test target
// defines MEDCARD_CLI (the binary's path).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli_run.h"
#include "reader/reader.h"

namespace medcard::test_support {

// `medcard ARGS...` (argv[0] is "medcard") as a child process, stdin from /dev/null, stdout and
// stderr to files.
inline pid_t SpawnMedcard(const std::vector<std::string>& argv, const std::filesystem::path& out,
                          const std::filesystem::path& err) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDONLY);
    const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(null, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(MEDCARD_CLI, args.data());
    ::_exit(127);
  }
  return pid;
}

// `medcard card|psam attach IMAGE --slot N`: the device in vpcd slot N while this lives. Its
// output goes to DIR/<what>-attach-<n>.out|err.
class AttachedImage {
 public:
  AttachedImage(const char* what, const std::string& image, unsigned slot,
                const std::filesystem::path& dir)
      : slot_(slot) {
    const std::string name = std::string(what) + "-attach-" + std::to_string(++starts_);
    pid_ = SpawnMedcard({"medcard", what, "attach", image, "--slot", std::to_string(slot)},
                        dir / (name + ".out"), dir / (name + ".err"));
  }
  ~AttachedImage() { Stop(SIGTERM); }
  AttachedImage(const AttachedImage&) = delete;
  AttachedImage& operator=(const AttachedImage&) = delete;

  bool WaitInserted() const {
    auto reader = reader::PcscReader::Open(reader::VpcdReaderName(slot_));
    if (!reader.ok()) return false;
    auto present = (*reader)->WaitForCard(std::chrono::seconds(10));
    return present.ok() && *present;
  }
  // SIGTERM: the bridge closes the connection between commands. SIGKILL: the device loses
  // power wherever it is (its image commits are all-or-nothing, docs/card-image.md).
  void Stop(int signal = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    if (auto reader = reader::PcscReader::Open(reader::VpcdReaderName(slot_)); reader.ok()) {
      (void)(*reader)->WaitForRemoval(std::chrono::seconds(5));
    }
  }

 private:
  static inline int starts_ = 0;
  unsigned slot_;
  pid_t pid_ = -1;
};

// `medcard host run --data DIR --listen 127.0.0.1:0`, output in DIR2/host.out|err; stopped with
// SIGTERM.
class HostProcess {
 public:
  HostProcess(const std::string& data_dir, const std::filesystem::path& dir)
      : out_(dir / "host.out"), err_(dir / "host.err") {
    pid_ = SpawnMedcard({"medcard", "host", "run", "--data", data_dir, "--listen", "127.0.0.1:0"},
                        out_, err_);
  }
  ~HostProcess() { Stop(); }
  HostProcess(const HostProcess&) = delete;
  HostProcess& operator=(const HostProcess&) = delete;

  // Exit status of the stopped host (-1 if it did not exit by itself after SIGTERM).
  int Stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // The port from "listening on 127.0.0.1:PORT"; 0 when it never listened (30 s).
  int Port() const {
    const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600; ++i) {
      std::smatch match;
      const std::string out = ReadText(out_);
      if (std::regex_search(out, match, listening)) return std::stoi(match[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 0;
  }
  std::string err() const { return ReadText(err_); }

 private:
  std::filesystem::path out_, err_;
  pid_t pid_ = -1;
};

}  // namespace medcard::test_support
