// The medcard binary run as a shell runs it, for tests of the command line: env(1) settings, the
// arguments, stdin from a string (or /dev/null), stdout and stderr captured through files.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

namespace medcard::test_support {

struct CliRun {
  int exit_code = -1;
  std::string out, err;
};

inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A new directory under GoogleTest's TempDir() named prefix-XXXXXX (mkdtemp), for a test's
// stdin/stdout/stderr and data; empty if it could not be made. The test removes it.
inline std::filesystem::path NewCliTestDir(const std::string& prefix) {
  std::string pattern =
      (std::filesystem::path(::testing::TempDir()) / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

struct CliCommand {
  std::string binary;       // the medcard binary: the test's MEDCARD_CLI
  std::string environment;  // env(1) arguments before the binary: "-u NAME NAME='value' "
  std::string args;
  std::optional<std::string> input;  // stdin; /dev/null when none
};

// Runs `command` through the shell; its stdin, stdout and stderr files are made in `dir`.
inline CliRun RunCli(const CliCommand& command, const std::filesystem::path& dir) {
  const std::filesystem::path in = dir / "stdin", out = dir / "stdout", err = dir / "stderr";
  std::string stdin_path = "/dev/null";
  if (command.input) {
    std::ofstream(in, std::ios::binary) << *command.input;
    stdin_path = in.string();
  }
  const std::string line = "env " + command.environment + command.binary + " " + command.args +
                           " <" + stdin_path + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(line.c_str());
  CliRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = ReadText(out);
  run.err = ReadText(err);
  return run;
}

}  // namespace medcard::test_support
