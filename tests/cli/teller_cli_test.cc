// `medcard teller ...` against a real `medcard host run` with its API on a free loopback port
// (docs/teller.md): sign-in and the session file, wrong passwords, absent and signed-out
// sessions, a loss report and its cancellation, dual control, retries with an Idempotency-Key,
// history and statements, and what the teller sees when the host cannot be reached.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <tuple>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "branch/services.h"
#include "cli/host_session.h"
#include "cli_run.h"

namespace medcard {
namespace {

using test_support::CliRun;

constexpr char kPassphrase[] = "teller cli test passphrase";
constexpr char kEnvironment[] =
    "MEDCARD_KEYSTORE_PASSPHRASE='teller cli test passphrase' MEDCARD_KEYSTORE_TEST_KDF=fast "
    "MEDCARD_PASSWORD_TEST_KDF=fast HOME=/nonexistent-home ";
constexpr char kBranch[] = "B001";
constexpr char kTellerPassword[] = "teller-pass-7Q";
constexpr char kSeniorPassword[] = "senior-pass-9Z";

// Cards the tests act on, each its own person (a closure is refused while the person has
// another card in use) so the tests do not depend on each other's order.
constexpr char kLossCard[] = "10000000000000000101";
constexpr char kDualCard[] = "10000000000000000102";
constexpr char kRetryCard[] = "10000000000000000103";
constexpr char kReadCard[] = "10000000000000000104";
constexpr char kCloseCard[] = "10000000000000000105";

class TellerCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test_support::NewCliTestDir("medcard-teller");
    ASSERT_FALSE(dir_.empty());
    data_ = (dir_ / "data").string();
    CliRun init = Run("host init --test-keys --data " + data_);
    ASSERT_EQ(init.exit_code, 0) << init.err;
    for (const auto& [login, role, password] :
         {std::tuple{"t01", "teller", kTellerPassword},
          std::tuple{"s01", "senior_teller", kSeniorPassword}}) {
      CliRun add = Run(std::string("host users add --data ") + data_ + " --login " + login +
                           " --role " + role + " --branch " + kBranch,
                       std::string(password) + "\n");
      ASSERT_EQ(add.exit_code, 0) << add.err;
    }
    SeedCards();
    StartHost();
  }
  static void TearDownTestSuite() {
    if (host_pid_ > 0) {
      ::kill(host_pid_, SIGTERM);
      for (int i = 0; i < 100 && ::kill(host_pid_, 0) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    std::filesystem::remove_all(dir_);
  }

  // Apply for, issue and activate each card in the host's database, as a teller's earlier
  // visit would have (the apply/issue routes are not part of the API yet).
  static void SeedCards() {
    ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", kPassphrase, 1);
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    cli::HostSession session = cli::OpenHostSession(data_);
    for (const store::MigrationSet* set :
         {&audit::Migrations(), &access::Migrations(), &branch::Migrations()}) {
      auto migrated = store::Migrate(session.connection(), *set);
      ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    }
    branch::BranchServices services(session.connection(), session.key_store());
    branch::Actor teller;
    teller.login = "t01";
    teller.from = "test";
    teller.branch = kBranch;
    int person = 0;
    for (const char* asn : {kLossCard, kDualCard, kRetryCard, kReadCard, kCloseCard}) {
      auto applied = services.Apply(
          teller, {"31010119900101" + std::to_string(1000 + ++person), "holder", kBranch});
      ASSERT_TRUE(applied.ok()) << applied.error().message;
      branch::CardIssue issue;
      issue.application_id = applied->application_id;
      issue.asn = asn;
      auto issued = services.Issue(teller, issue);
      ASSERT_TRUE(issued.ok()) << issued.error().message;
      auto active = services.Activate(teller, {asn, std::nullopt, ""});
      ASSERT_TRUE(active.ok()) << active.error().message;
    }
  }

  static void StartHost() {
    const std::string out = (dir_ / "run.out").string();
    const std::string line = std::string("env ") + kEnvironment + MEDCARD_CLI +
                             " host run --data " + data_ + " --listen 127.0.0.1:0 </dev/null >" +
                             out + " 2>" + (dir_ / "run.err").string() + " & echo $! >" +
                             (dir_ / "run.pid").string();
    ASSERT_EQ(std::system(line.c_str()), 0);
    const std::regex listening(R"(medcard API listening on 127\.0\.0\.1:(\d+) \(plain HTTP)");
    int port = 0;
    for (int i = 0; i < 300 && port == 0; ++i) {
      std::smatch match;
      const std::string text = test_support::ReadText(out);
      if (std::regex_search(text, match, listening)) port = std::stoi(match[1]);
      if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    host_pid_ = std::stoi(test_support::ReadText(dir_ / "run.pid"));
    ASSERT_NE(port, 0) << test_support::ReadText(dir_ / "run.err");
    host_url_ = "http://127.0.0.1:" + std::to_string(port);
  }

  static CliRun Run(const std::string& args, std::optional<std::string> input = std::nullopt) {
    return test_support::RunCli({MEDCARD_CLI, kEnvironment, args, std::move(input)}, dir_);
  }

  void SetUp() override {
    ASSERT_FALSE(host_url_.empty());
    session_ =
        (dir_ / (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                 ".session"))
            .string();
  }

  // `medcard teller --session <this test's file> ARGS`.
  CliRun Teller(const std::string& args, std::optional<std::string> input = std::nullopt) {
    return Run("teller --session " + session_ + " " + args, std::move(input));
  }
  void SignIn(const std::string& login = "t01", const std::string& password = kTellerPassword) {
    CliRun login_run = Teller("login --host " + host_url_ + " --login " + login, password + "\n");
    ASSERT_EQ(login_run.exit_code, 0) << login_run.err;
  }

  static inline std::filesystem::path dir_;
  static inline std::string data_;
  static inline std::string host_url_;
  static inline pid_t host_pid_ = 0;
  std::string session_;
};

TEST_F(TellerCliTest, LoginKeepsTheTokenInAFileOnlyTheUserCanRead) {
  CliRun login =
      Teller("login --host " + host_url_ + " --login t01", std::string(kTellerPassword) + "\n");
  ASSERT_EQ(login.exit_code, 0) << login.err;
  EXPECT_NE(login.out.find("signed in as t01 (teller)"), std::string::npos) << login.out;
  EXPECT_EQ(login.out.find(kTellerPassword), std::string::npos);
  EXPECT_EQ(login.err.find(kTellerPassword), std::string::npos);

  struct stat status {};
  ASSERT_EQ(::stat(session_.c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, 0600u);
  const std::string saved = test_support::ReadText(session_);
  EXPECT_NE(saved.find("\"token\""), std::string::npos);
  EXPECT_EQ(saved.find(kTellerPassword), std::string::npos);

  CliRun whoami = Teller("whoami");
  ASSERT_EQ(whoami.exit_code, 0) << whoami.err;
  EXPECT_NE(whoami.out.find("t01 (teller) at " + host_url_), std::string::npos) << whoami.out;

  // A session file others can read is not used.
  ASSERT_EQ(::chmod(session_.c_str(), 0644), 0);
  CliRun exposed = Teller("card show " + std::string(kReadCard));
  EXPECT_EQ(exposed.exit_code, 1);
  EXPECT_NE(exposed.err.find("readable by others"), std::string::npos) << exposed.err;
}

TEST_F(TellerCliTest, WrongPasswordIsRefusedAndNoSessionIsKept) {
  CliRun login = Teller("login --host " + host_url_ + " --login t01", "not-the-password\n");
  EXPECT_EQ(login.exit_code, 1);
  EXPECT_NE(login.err.find("medcard: "), std::string::npos) << login.err;
  EXPECT_NE(login.err.find("(unauthenticated)"), std::string::npos) << login.err;
  EXPECT_FALSE(std::filesystem::exists(session_));

  CliRun empty = Teller("login --host " + host_url_ + " --login t01");
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_NE(empty.err.find("no password on stdin"), std::string::npos) << empty.err;
}

TEST_F(TellerCliTest, AbsentAndSignedOutSessionsAreRefused) {
  CliRun absent = Teller("card show " + std::string(kReadCard));
  EXPECT_EQ(absent.exit_code, 1);
  EXPECT_NE(absent.err.find("not signed in"), std::string::npos) << absent.err;

  SignIn();
  const std::string copy = session_ + ".copy";
  std::filesystem::copy_file(session_, copy);
  CliRun logout = Teller("logout");
  ASSERT_EQ(logout.exit_code, 0) << logout.err;
  EXPECT_NE(logout.out.find("signed out t01"), std::string::npos) << logout.out;
  EXPECT_FALSE(std::filesystem::exists(session_));

  // The old token no longer works at the host: its session was ended there.
  CliRun stale = Run("teller --session " + copy + " card show " + kReadCard);
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_NE(stale.err.find("(unauthenticated)"), std::string::npos) << stale.err;
}

TEST_F(TellerCliTest, LossReportAndItsCancellation) {
  SignIn();
  CliRun lost = Teller("card report-loss " + std::string(kLossCard) + " --reason 'phoned in'");
  ASSERT_EQ(lost.exit_code, 0) << lost.err;
  EXPECT_NE(lost.out.find("card " + std::string(kLossCard) + ": lost"), std::string::npos)
      << lost.out;
  EXPECT_NE(lost.out.find("blacklisted at "), std::string::npos) << lost.out;

  CliRun shown = Teller("--json card show " + std::string(kLossCard));
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  auto card = nlohmann::json::parse(shown.out);
  EXPECT_EQ(card["state"], "lost");
  EXPECT_EQ(card["loss"]["reported"], true);

  // Reporting it again is refused by the business rules, with nothing changed.
  CliRun again = Teller("card report-loss " + std::string(kLossCard));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("(unprocessable)"), std::string::npos) << again.err;

  CliRun cancelled = Teller("card cancel-loss " + std::string(kLossCard));
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  EXPECT_NE(cancelled.out.find(": active"), std::string::npos) << cancelled.out;
  EXPECT_EQ(cancelled.out.find("blacklisted at "), std::string::npos) << cancelled.out;
}

TEST_F(TellerCliTest, ReplacementNeedsAnAuthoriser) {
  SignIn();
  CliRun alone = Teller("card replace " + std::string(kDualCard));
  EXPECT_EQ(alone.exit_code, 1);
  EXPECT_NE(alone.err.find("(forbidden, authoriser)"), std::string::npos) << alone.err;

  CliRun wrong = Teller("card replace " + std::string(kDualCard) + " --authoriser s01",
                        "wrong-senior-password\n");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("(unauthenticated, authoriser)"), std::string::npos) << wrong.err;

  CliRun shown = Teller("card show " + std::string(kDualCard));
  EXPECT_NE(shown.out.find(": active"), std::string::npos) << shown.out;

  CliRun authorised = Teller("card replace " + std::string(kDualCard) + " --authoriser s01",
                             std::string(kSeniorPassword) + "\n");
  ASSERT_EQ(authorised.exit_code, 0) << authorised.err;
  EXPECT_NE(authorised.out.find(": replaced"), std::string::npos) << authorised.out;
  EXPECT_NE(authorised.out.find("new application"), std::string::npos) << authorised.out;
  EXPECT_EQ(authorised.out.find(kSeniorPassword), std::string::npos);
}

TEST_F(TellerCliTest, ClosureWithAnAuthoriserSchedulesTheRefund) {
  SignIn();
  CliRun closed =
      Teller("--json card close " + std::string(kCloseCard) + " --payee 6222-0001 --authoriser s01",
             std::string(kSeniorPassword) + "\n");
  ASSERT_EQ(closed.exit_code, 0) << closed.err;
  auto answer = nlohmann::json::parse(closed.out);
  EXPECT_EQ(answer["card"]["state"], "closed");
  EXPECT_EQ(answer["transfer"]["kind"], "closure");
  EXPECT_EQ(answer["transfer"]["state"], "scheduled");
}

TEST_F(TellerCliTest, RetryWithTheSameIdempotencyKeyIsAnsweredOnce) {
  SignIn();
  CliRun first = Teller("--verbose card capture " + std::string(kRetryCard) +
                        " --idempotency-key retry-capture-1");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.err.find("Idempotency-Key: retry-capture-1"), std::string::npos) << first.err;
  EXPECT_NE(first.out.find(": captured"), std::string::npos) << first.out;

  // A second capture would be refused (already captured): the retry gets the first answer.
  CliRun retry = Teller("--verbose card capture " + std::string(kRetryCard) +
                        " --idempotency-key retry-capture-1");
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  EXPECT_EQ(retry.out, first.out);
  EXPECT_NE(retry.err.find("nothing done again"), std::string::npos) << retry.err;

  // The same key for another request is a conflict.
  CliRun other = Teller("card capture " + std::string(kRetryCard) +
                        " --reason other --idempotency-key retry-capture-1");
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("(conflict, Idempotency-Key)"), std::string::npos) << other.err;

  // Without a key each run is a new request: now refused by the business rules.
  CliRun fresh = Teller("--verbose card capture " + std::string(kRetryCard));
  EXPECT_EQ(fresh.exit_code, 1);
  EXPECT_NE(fresh.err.find("(unprocessable)"), std::string::npos) << fresh.err;
  EXPECT_NE(fresh.err.find("Idempotency-Key: "), std::string::npos) << fresh.err;
}

TEST_F(TellerCliTest, ShowHistoryValidityAndStatement) {
  SignIn();
  CliRun shown = Teller("card show " + std::string(kReadCard));
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("medical account 0.00, card float ED 0.00, EP 0.00"), std::string::npos)
      << shown.out;

  CliRun history = Teller("card history " + std::string(kReadCard) + " --limit 10");
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_NE(history.out.find("(no movements)"), std::string::npos) << history.out;

  CliRun validity = Teller("card validity " + std::string(kReadCard) + " --to 2035-12-31");
  ASSERT_EQ(validity.exit_code, 0) << validity.err;
  EXPECT_NE(validity.out.find("valid to 2035-12-31"), std::string::npos) << validity.out;

  CliRun bad_day = Teller("card validity " + std::string(kReadCard) + " --to 2035-02-30");
  EXPECT_EQ(bad_day.exit_code, 1);
  EXPECT_NE(bad_day.err.find("(invalid, valid_to)"), std::string::npos) << bad_day.err;

  const std::string csv = (dir_ / "statement.csv").string();
  CliRun statement = Teller("card statement " + std::string(kReadCard) +
                            " --from 2026-01-01 --to 2026-12-31 --out " + csv);
  ASSERT_EQ(statement.exit_code, 0) << statement.err;
  const std::string text = test_support::ReadText(csv);
  EXPECT_TRUE(text.starts_with("date,time,wallet,kind,amount,balance")) << text;
  EXPECT_NE(text.find("opening"), std::string::npos) << text;

  const std::string pdf = (dir_ / "statement.pdf").string();
  CliRun as_pdf = Teller("card statement " + std::string(kReadCard) +
                         " --from 2026-01-01 --to 2026-12-31 --out " + pdf);
  ASSERT_EQ(as_pdf.exit_code, 0) << as_pdf.err;
  EXPECT_TRUE(test_support::ReadText(pdf).starts_with("%PDF-"));

  CliRun unknown = Teller("card show 1000000000000000FFFF");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("(not_found, asn)"), std::string::npos) << unknown.err;
}

TEST_F(TellerCliTest, UnreachableOrUnsafeHostsAreExplained) {
  CliRun plain =
      Teller("login --host http://10.1.2.3:8080 --login t01", std::string(kTellerPassword) + "\n");
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.err.find("plain HTTP only to a loopback address"), std::string::npos)
      << plain.err;

  // A port nobody listens on (the ISO 8583 port range is not used by the API).
  CliRun down =
      Teller("login --host http://127.0.0.1:9 --login t01", std::string(kTellerPassword) + "\n");
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.err.find("cannot reach the host at http://127.0.0.1:9"), std::string::npos)
      << down.err;
}

}  // namespace
}  // namespace medcard
