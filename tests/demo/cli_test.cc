// `medcard demo` as a user runs it (docs/demo.md): the whole day with --no-serve, its report and
// exit status, the settlement CSVs in the data directory, a second run in the same directory,
// the options it refuses; and without --no-serve, the bank host it leaves running for a teller.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli_run.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using ::testing::HasSubstr;
using ::testing::Not;

class DemoCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-demo-cli");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Demo(const std::string& args) {
    return test_support::RunCli({.binary = MEDCARD_CLI,
                                 .environment = "MEDCARD_KEYSTORE_TEST_KDF=fast ",
                                 .args = "demo " + args,
                                 .input = std::nullopt},
                                dir_);
  }
  fs::path dir_;
};

TEST_F(DemoCliTest, TheDayReconcilesAndTheReportSaysSo) {
  const fs::path data = dir_ / "data";
  const CliRun run =
      Demo("--no-serve --quiet --readers inproc --cards 6 --seed 4 --dir " + data.string());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("medcard demo report — business day "));
  EXPECT_THAT(run.out, HasSubstr("6 TEST cards, 5 terminals (5 merchants), 5 sign-ons over "
                                 "ISO 8583/TCP"));
  EXPECT_THAT(run.out, HasSubstr("refused   wrong PIN: yes; insufficient balance: yes; lost card "
                                 "11000000000000010004 after the blacklist download: yes"));
  EXPECT_THAT(run.out, HasSubstr("torn      card 11000000000000010003 pulled mid-purchase"));
  EXPECT_THAT(run.out, HasSubstr("recovered 1x, cleared 1x"));
  EXPECT_THAT(run.out, HasSubstr("5/5 terminals settled, 0 exceptions, 0 in suspense; host check "
                                 "clean"));
  EXPECT_THAT(run.out, HasSubstr("claim     inpatient, "));
  EXPECT_THAT(run.out, HasSubstr("billed 5900.00: pooled fund "));
  // The claim's personal-account share, paid at discharge by the patient's card at the
  // hospital's POS and cleared once at day end.
  EXPECT_THAT(run.out, ::testing::ContainsRegex(
                           "\n            personal account share [0-9]+\\.[0-9]{2} paid by "
                           "card [0-9]{20} at [^\n]+ terminal [0-9A-Z]+, card serial [0-9]+; "
                           "cleared 1x\n"));
  EXPECT_THAT(run.out, HasSubstr("reconciliation: clean — every fen accounted for"));
  // --quiet: the report only, not the step-by-step story; and no server log. The scripted day:
  // no city-scale figures.
  EXPECT_THAT(run.out, Not(HasSubstr("exception: ")));
  EXPECT_THAT(run.out, Not(HasSubstr("  timing ")));
  EXPECT_THAT(run.err, Not(HasSubstr("server:")));
  EXPECT_TRUE(fs::exists(data / "merchant-settlement.csv"));
  EXPECT_TRUE(fs::exists(data / "terminal-settlement.csv"));
  EXPECT_THAT(test_support::ReadText(data / "terminal-settlement.csv"),
              HasSubstr(",acknowledged\n"));

  // Again in the same directory, with the story: a fresh day, clean again.
  const CliRun again =
      Demo("--no-serve --readers inproc --cards 6 --seed 4 --dir " + data.string());
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("exception: the lost card 11000000000000010004 tried at"));
  EXPECT_THAT(again.out, HasSubstr("refused, blacklisted (downloaded at day end)"));
  EXPECT_THAT(again.out, HasSubstr("reconciliation: clean"));
}

TEST_F(DemoCliTest, OptionsItCannotHonourAreRefusedWithExitStatus2) {
  const std::string data = (dir_ / "data").string();
  const CliRun few = Demo("--no-serve --cards 3 --dir " + data);
  EXPECT_EQ(few.exit_code, 2);
  EXPECT_THAT(few.err, HasSubstr("--cards: at least 4"));
  const CliRun bad = Demo("--no-serve --readers magic --dir " + data);
  EXPECT_EQ(bad.exit_code, 2);
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"--purchases -1", "--purchases: 0 (the scripted day) or at least 3"},
           {"--purchases 2", "--purchases: 0 (the scripted day) or at least 3"},
           {"--terminals 0", "--terminals: 1 to 9999"},
           {"--workers 0 --purchases 100", "--workers: at least 1"},
           {"--purchases 3000",
            "--purchases 3000 needs at least 150 cards (--cards): at most 20 "
            "purchases per cardholder a day"},
           {"--cards 40 --purchases 801", "needs at least 41 cards"},
           {"--purchases 100 --readers pcsc", "--readers pcsc: not with --purchases"}}) {
    const CliRun refused = Demo("--no-serve --dir " + data + " " + args);
    EXPECT_EQ(refused.exit_code, 2) << args << ": " << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr(message)) << args;
  }
  EXPECT_FALSE(fs::exists(data));  // refused before anything was made
}

TEST_F(DemoCliTest, AtCityScaleTheReportCarriesTimingsThroughputAndLatencies) {
  const fs::path data = dir_ / "data";
  const CliRun run = Demo(
      "--no-serve --quiet --readers inproc --cards 40 --purchases 400 "
      "--terminals 6 --workers 2 --seed 3 --dir " +
      data.string());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("40 TEST cards, 6 terminals (6 merchants), 6 sign-ons"));
  EXPECT_THAT(run.out, HasSubstr("scale     40 cards (12 at the branch, 28 by the card bureau), "
                                 "6 terminals, 2 POS driver threads; 401 purchase attempts: 399 "
                                 "made, 2 refused"));
  EXPECT_THAT(run.out, HasSubstr("timing    phase"));
  for (const char* phase :
       {"agency month", "bank import", "issuance", "sign-on", "loads", "purchases", "discharge",
        "day end", "host check", "reconciliation", "total"}) {
    EXPECT_THAT(run.out, HasSubstr(std::string("            ") + phase)) << phase;
  }
  EXPECT_THAT(run.out, HasSubstr("online load       n=80  p50 "));
  EXPECT_THAT(run.out, HasSubstr("offline purchase  n=398  p50 "));
  EXPECT_THAT(run.out, HasSubstr("day end/terminal  n=6  p50 "));
  EXPECT_THAT(run.out, HasSubstr("clearing  399 purchases uploaded, settled and cleared at the "
                                 "host: "));
  // The discharge's card payment, as in the scripted day.
  EXPECT_THAT(run.out, ::testing::ContainsRegex("personal account share [0-9]+\\.[0-9]{2} paid by "
                                                "card [0-9]{20} at .* terminal POS[0-9]{5}, card "
                                                "serial [0-9]+; cleared 1x"));
  EXPECT_THAT(run.out, HasSubstr("6/6 terminals settled, 0 exceptions, 0 in suspense; host check "
                                 "clean"));
  EXPECT_THAT(run.out, HasSubstr("reconciliation: clean — every fen accounted for"));
  // Not a terminal: no progress bars, and --quiet: no story either.
  EXPECT_THAT(run.out, Not(HasSubstr("\r")));
  EXPECT_THAT(run.out, Not(HasSubstr("agency: ")));
  EXPECT_TRUE(fs::exists(data / "cards" / "issuance-log.jsonl"));
}

// `medcard ARGS...` as a child process, stdout and stderr into `output`; returns its pid.
pid_t Spawn(const std::vector<std::string>& args, const fs::path& output) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(out, 2);
    std::string program = MEDCARD_CLI;
    std::vector<std::string> copies = args;
    std::vector<char*> argv = {program.data()};
    for (std::string& arg : copies) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

TEST_F(DemoCliTest, WithoutNoServeTheBankHostKeepsRunningForATellerUntilStopped) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  const fs::path data = dir_ / "data", output = dir_ / "serve.out";
  const pid_t demo =
      Spawn({"demo", "--quiet", "--readers", "inproc", "--cards", "4", "--dir", data.string(),
             "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"},
            output);
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  ASSERT_GT(demo, 0);
  // `host run` says where its API listens once it does.
  const std::string marker = "medcard API listening on 127.0.0.1:";
  std::string port;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (port.empty() && std::chrono::steady_clock::now() < deadline) {
    const std::string text = test_support::ReadText(output);
    if (const auto at = text.find(marker); at != std::string::npos) {
      const auto end = text.find_first_not_of("0123456789", at + marker.size());
      if (end != std::string::npos)
        port = text.substr(at + marker.size(), end - at - marker.size());
    }
    int status = 0;
    if (port.empty() && ::waitpid(demo, &status, WNOHANG) == demo) {
      FAIL() << "medcard demo exited: " << test_support::ReadText(output);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(port.empty()) << test_support::ReadText(output);
  const std::string report = test_support::ReadText(output);
  EXPECT_THAT(report, HasSubstr("reconciliation: clean"));
  EXPECT_THAT(report, HasSubstr("The bank host now keeps running on the demo's data"));
  EXPECT_THAT(report, HasSubstr("medcard host users add --data " + (data / "bank").string()));

  // A teller added, signed in through the API, sees the card reported lost during the day.
  const std::string env = "MEDCARD_PASSWORD_TEST_KDF=fast ";
  const std::string password = "demo-teller-pass-2026\n";
  const CliRun added = test_support::RunCli({MEDCARD_CLI, env,
                                             "host users add --data " + (data / "bank").string() +
                                                 " --login t01 --role teller --branch B001",
                                             password + password},
                                            dir_);
  EXPECT_EQ(added.exit_code, 0) << added.out << added.err;
  const std::string session = "--session " + (dir_ / "teller-session").string();
  const CliRun login = test_support::RunCli(
      {MEDCARD_CLI, env,
       "teller " + session + " login --host http://127.0.0.1:" + port + " --login t01", password},
      dir_);
  EXPECT_EQ(login.exit_code, 0) << login.out << login.err;
  const CliRun card = test_support::RunCli(
      {MEDCARD_CLI, env, "teller " + session + " card show 11000000000000010004", std::nullopt},
      dir_);
  EXPECT_EQ(card.exit_code, 0) << card.out << card.err;
  EXPECT_THAT(card.out, HasSubstr("card 11000000000000010004: lost"));

  ::kill(demo, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(demo, &status, 0), demo);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test_support::ReadText(output);
}

}  // namespace
}  // namespace medcard
