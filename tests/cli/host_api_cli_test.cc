// `medcard host run` starts the HTTPS/JSON API next to the ISO 8583 server (docs/api.md
// "Running"): the api object of host.json, plain HTTP refused off loopback, and a request
// answered by the running host.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "cli_run.h"

namespace medcard {
namespace {

using test_support::CliCommand;
using test_support::CliRun;

constexpr char kEnvironment[] =
    "MEDCARD_KEYSTORE_PASSPHRASE='api cli test passphrase' MEDCARD_KEYSTORE_TEST_KDF=fast ";

class HostApiCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-host-api");
    ASSERT_FALSE(dir_.empty());
    data_ = (dir_ / "data").string();
    CliRun init = Medcard("host init --test-keys --data " + data_);
    ASSERT_EQ(init.exit_code, 0) << init.err;
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      for (int i = 0; i < 100 && ::kill(pid_, 0) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    std::filesystem::remove_all(dir_);
  }
  CliRun Medcard(const std::string& args) {
    return test_support::RunCli({MEDCARD_CLI, kEnvironment, args, std::nullopt}, dir_);
  }
  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    const std::string path = data_ + "/host.json";
    auto config = nlohmann::json::parse(test_support::ReadText(path));
    edit(config);
    std::ofstream(path, std::ios::trunc) << config.dump(2);
  }

  std::filesystem::path dir_;
  std::string data_;
  pid_t pid_ = 0;
};

// One HTTP/1.0 request over a plain socket to 127.0.0.1:port; the whole answer.
std::string HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return {};
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return {};
  }
  std::string answer;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0)
    answer.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  return answer;
}

TEST_F(HostApiCliTest, InitWritesTheApiSectionWithLoopbackDefaults) {
  auto config = nlohmann::json::parse(test_support::ReadText(data_ + "/host.json"));
  EXPECT_EQ(config["api"]["enabled"], true);
  EXPECT_EQ(config["api"]["listen_address"], "127.0.0.1");
  EXPECT_EQ(config["api"]["port"], 8080);
}

TEST_F(HostApiCliTest, PlainHttpOffLoopbackIsRefusedAtStart) {
  EditConfig([](nlohmann::json& config) { config["api"]["listen_address"] = "0.0.0.0"; });
  CliRun run = Medcard("host run --data " + data_ + " --listen 127.0.0.1:0 --api-listen 0.0.0.0:0");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("plain HTTP is only allowed on a loopback address"), std::string::npos)
      << run.err;
}

TEST_F(HostApiCliTest, UnknownApiSettingIsRefused) {
  EditConfig([](nlohmann::json& config) { config["api"]["listen"] = "x"; });
  CliRun run = Medcard("host run --data " + data_ + " --listen 127.0.0.1:0");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("api.listen"), std::string::npos) << run.err;
}

TEST_F(HostApiCliTest, RunningHostAnswersOnTheApi) {
  const std::string out = (dir_ / "run.out").string();
  const std::string line = std::string("env ") + kEnvironment + MEDCARD_CLI + " host run --data " +
                           data_ + " --listen 127.0.0.1:0 </dev/null >" + out + " 2>" +
                           (dir_ / "run.err").string() + " & echo $! >" +
                           (dir_ / "run.pid").string();
  ASSERT_EQ(std::system(line.c_str()), 0);
  int port = 0;
  const std::regex listening(R"(medcard API listening on 127\.0\.0\.1:(\d+) \(plain HTTP)");
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::smatch match;
    const std::string text = test_support::ReadText(out);
    if (std::regex_search(text, match, listening)) port = std::stoi(match[1]);
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  pid_ = std::stoi(test_support::ReadText(dir_ / "run.pid"));
  ASSERT_NE(port, 0) << test_support::ReadText(dir_ / "run.err");
  const std::string answer = HttpGet(port, "/v1/cards/10000000000000000001");
  EXPECT_NE(answer.find("HTTP/1.1 401"), std::string::npos) << answer;
  EXPECT_NE(answer.find("X-Request-Id: "), std::string::npos) << answer;
  EXPECT_NE(answer.find(R"("code":"unauthenticated")"), std::string::npos) << answer;
  const std::string missing = HttpGet(port, "/v2/nothing");
  EXPECT_NE(missing.find("HTTP/1.1 404"), std::string::npos) << missing;
}

}  // namespace
}  // namespace medcard
