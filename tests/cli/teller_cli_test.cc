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
#include "branch/card_scripts.h"
#include "branch/script_runner.h"
#include "branch/services.h"
#include "card/card.h"
#include "cli/host_session.h"
#include "cli/teller_pek.h"
#include "cli_run.h"
#include "crypto/crypto.h"
#include "keys/key_store.h"
#include "keys/pboc.h"
#include "nvm/nvm.h"
#include "reader/reader.h"
#include "terminal/purse.h"
#include "test_scheme.h"

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
// Cards whose images the teller's reader holds (issuer scripts).
constexpr char kScriptCard[] = "10000000000000000106";
constexpr char kPinCard[] = "10000000000000000107";
constexpr char kCardPin[] = "123456";
constexpr char kNewPin[] = "908172";
constexpr char kWorkstation[] = "B001-T01";
// The TEST key-exchange key's components, entered at the bank and at the workstation.
constexpr char kTkekComponents[] =
    "00112233445566778899AABBCCDDEEFF\n13579BDF02468ACE1122334455667788\n";

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
    DeliverThePinPadKey();
    StartHost();
  }

  // Before the host runs: the tkek ceremony at the bank, the
  // workstation's PEK exported under it, and the workstation's PIN pad store receiving it.
  static void DeliverThePinPadKey() {
    CliRun bank =
        Run("keys ceremony --store " + data_ + "/keys --role tkek --components 2", kTkekComponents);
    ASSERT_EQ(bank.exit_code, 0) << bank.err;
    const std::string delivery = (dir_ / "pek-delivery.json").string();
    CliRun exported = Run("host workstations export-pek --data " + data_ + " --workstation " +
                          kWorkstation + " --out " + delivery);
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    EXPECT_NE(exported.out.find("PEK pek/B001-T01 v1 (generated now)"), std::string::npos)
        << exported.out;
    pinpad_ = (dir_ / "pinpad-keys").string();
    ASSERT_EQ(Run("keys init --test-only --store " + pinpad_).exit_code, 0);
    CliRun workstation =
        Run("keys ceremony --store " + pinpad_ + " --role tkek --components 2", kTkekComponents);
    ASSERT_EQ(workstation.exit_code, 0) << workstation.err;
    CliRun init = Run("teller pinpad init --pek " + delivery + " --store " + pinpad_);
    ASSERT_EQ(init.exit_code, 0) << init.err;
    EXPECT_NE(init.out.find("PIN pad key pek/B001-T01 v1"), std::string::npos) << init.out;
    EXPECT_NE(init.out.find("(TEST keys)"), std::string::npos) << init.out;
    for (const char* asn : {kScriptCard, kPinCard}) {
      CliRun made =
          Run(std::string("card new ") + CardImage(asn) + " --asn " + asn + " --pin " + kCardPin);
      ASSERT_EQ(made.exit_code, 0) << made.err;
    }
  }

  static std::string CardImage(const std::string& asn) { return (dir_ / (asn + ".img")).string(); }

  // The card image in an in-process reader, for the test's own commands (closed before the
  // teller's command opens the image).
  static std::unique_ptr<reader::InProcessReader> ImageReader(const std::string& asn) {
    auto medium = nvm::OpenFileMedium(CardImage(asn));
    EXPECT_TRUE(medium.ok());
    if (!medium.ok()) return nullptr;
    auto card = card::Card::Open(std::move(medium).value());
    EXPECT_TRUE(card.ok());
    if (!card.ok()) return nullptr;
    auto in_process = std::make_unique<reader::InProcessReader>("test", std::move(card).value());
    EXPECT_TRUE(in_process->Connect().ok());
    return in_process;
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
    for (const char* asn :
         {kLossCard, kDualCard, kRetryCard, kReadCard, kCloseCard, kScriptCard, kPinCard}) {
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
  static inline std::string pinpad_;
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

TEST_F(TellerCliTest, ApplyThenIssueThenActivate) {
  SignIn();
  CliRun applied = Teller("--json card apply --person 310101199001019999 --holder-ref holder-9999");
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  const auto application = nlohmann::json::parse(applied.out);
  EXPECT_EQ(application["state"], "applied");
  EXPECT_EQ(application["branch"], kBranch);
  const std::string id = std::to_string(application["application_id"].get<std::int64_t>());

  CliRun human = Teller("card apply --person 310101199001019998 --holder-ref holder-9998");
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("for person 310101199001019998 at branch B001: applied"),
            std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("medcard teller card issue "), std::string::npos) << human.out;

  constexpr char kNewCard[] = "10000000000000000199";
  CliRun issued = Teller("card issue " + id + " --asn " + kNewCard + " --valid-to 2032-12-31");
  ASSERT_EQ(issued.exit_code, 0) << issued.err;
  EXPECT_NE(issued.out.find("card " + std::string(kNewCard) + ": issued"), std::string::npos)
      << issued.out;
  EXPECT_NE(issued.out.find("valid to 2032-12-31"), std::string::npos) << issued.out;
  CliRun again = Teller("card issue " + id + " --asn 10000000000000000198");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("(unprocessable"), std::string::npos) << again.err;
  CliRun bad = Teller("card issue x1 --asn " + std::string(kNewCard));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("the application's number"), std::string::npos) << bad.err;

  CliRun active = Teller("card activate " + std::string(kNewCard));
  ASSERT_EQ(active.exit_code, 0) << active.err;
  EXPECT_NE(active.out.find(": active"), std::string::npos) << active.out;
}

// The issuer's maintenance script blocking the card's application, made by a separate test key
// store holding the same test key set as the host's.
void BlockTheApplication(reader::Reader& card_reader, const std::filesystem::path& dir) {
  auto keys = test_support::TestKeyStore((dir / "blocker-keys").string(), kPassphrase);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  branch::CardScriptBuilder builder(**keys);
  auto blocked = branch::RunCardScript(
      card_reader, branch::ScriptKind::kApplicationBlock,
      [&](const branch::ScriptContext& context) { return builder.Build(context); });
  ASSERT_TRUE(blocked.ok()) << blocked.error().message;
  std::filesystem::remove_all(dir / "blocker-keys");
}

TEST_F(TellerCliTest, SetValidityAndUnblockOnTheCardInTheReader) {
  SignIn();
  const std::string reader = " --reader image:" + CardImage(kScriptCard);
  {
    auto card_reader = ImageReader(kScriptCard);
    ASSERT_NE(card_reader, nullptr);
    BlockTheApplication(*card_reader, dir_);
  }
  // A blocked application takes no validity change: nothing goes to the card or the host.
  CliRun refused =
      Teller("card set-validity " + std::string(kScriptCard) + " --to 2036-06-30" + reader);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("the application is blocked; unblock it before a validity change"),
            std::string::npos)
      << refused.err;
  CliRun shown = Teller("--json card show " + std::string(kScriptCard));
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(nlohmann::json::parse(shown.out)["valid_to"], "2036-06-30");

  // Unblock is dual control.
  CliRun alone = Teller("card unblock " + std::string(kScriptCard) + reader);
  EXPECT_EQ(alone.exit_code, 1);
  EXPECT_NE(alone.err.find("(forbidden, authoriser)"), std::string::npos) << alone.err;
  CliRun unblocked =
      Teller("card unblock " + std::string(kScriptCard) + reader + " --authoriser s01",
             std::string(kSeniorPassword) + "\n");
  ASSERT_EQ(unblocked.exit_code, 0) << unblocked.err;
  EXPECT_NE(unblocked.out.find("card " + std::string(kScriptCard) + ": application unblocked"),
            std::string::npos)
      << unblocked.out;
  EXPECT_NE(unblocked.out.find("the card can be used"), std::string::npos) << unblocked.out;
  {
    auto card_reader = ImageReader(kScriptCard);
    ASSERT_NE(card_reader, nullptr);
    EXPECT_TRUE(terminal::SelectMedicalApplication(*card_reader).ok());
  }
  // Unblocking an application that is not blocked is refused before the host is asked.
  CliRun again = Teller("card unblock " + std::string(kScriptCard) + reader + " --authoriser s01",
                        std::string(kSeniorPassword) + "\n");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("the application is not blocked"), std::string::npos) << again.err;

  // The validity change: the card's SFI 15 first, then the host's record.
  CliRun changed =
      Teller("card set-validity " + std::string(kScriptCard) + " --to 2036-06-30" + reader);
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_NE(changed.out.find("expiry changed to 2036-06-30"), std::string::npos) << changed.out;
  EXPECT_NE(changed.out.find("the host records valid to 2036-06-30"), std::string::npos)
      << changed.out;
  {
    auto card_reader = ImageReader(kScriptCard);
    ASSERT_NE(card_reader, nullptr);
    auto application = terminal::SelectMedicalApplication(*card_reader);
    ASSERT_TRUE(application.ok()) << application.error().message;
  }
  shown = Teller("--json card show " + std::string(kScriptCard));
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(nlohmann::json::parse(shown.out)["valid_to"], "2036-06-30");

  // The card took the date but the host refused its record (a stale version here): the teller
  // is told and given the command that records it; the card needs no new script.
  CliRun stale = Teller("card set-validity " + std::string(kScriptCard) +
                        " --to 2037-03-31 --expected-version 1" + reader);
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_NE(stale.err.find("the card now expires on 2037-03-31 but the host did not record it"),
            std::string::npos)
      << stale.err;
  const std::smatch::size_type at = stale.err.find("`medcard teller ");
  ASSERT_NE(at, std::string::npos) << stale.err;
  const std::string fix = stale.err.substr(at + 9, stale.err.find('`', at + 1) - at - 9);
  // The host answered (409): nothing recorded, so no key to reuse.
  EXPECT_EQ(fix, "teller card validity " + std::string(kScriptCard) + " --to 2037-03-31") << fix;
  CliRun recorded = Teller(fix.substr(std::string("teller ").size()));
  ASSERT_EQ(recorded.exit_code, 0) << recorded.err;
  EXPECT_NE(recorded.out.find("valid to 2037-03-31"), std::string::npos) << recorded.out;

  // The card in the reader must be the card the teller named.
  CliRun other =
      Teller("card set-validity " + std::string(kReadCard) + " --to 2037-01-31" + reader);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("the card in the reader is " + std::string(kScriptCard) + ", not " +
                           kReadCard + "; nothing sent"),
            std::string::npos)
      << other.err;
}

TEST_F(TellerCliTest, PinResetOnTheCardInTheReaderNeverShowsThePin) {
  SignIn();
  {
    // The cardholder forgot the PIN and blocked it.
    auto card_reader = ImageReader(kPinCard);
    ASSERT_NE(card_reader, nullptr);
    ASSERT_TRUE(terminal::SelectMedicalApplication(*card_reader).ok());
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(terminal::VerifyPin(*card_reader, "111111").ok());
    EXPECT_FALSE(terminal::VerifyPin(*card_reader, kCardPin).ok());
  }
  const std::string command = "card pin-reset " + std::string(kPinCard) +
                              " --reader image:" + CardImage(kPinCard) + " --store " + pinpad_ +
                              " --pin-stdin";
  CliRun differ = Teller(command + " --authoriser s01",
                         std::string(kNewPin) + "\n" + "908173\n" + kSeniorPassword + "\n");
  EXPECT_EQ(differ.exit_code, 1);
  EXPECT_NE(differ.err.find("the two PIN entries differ"), std::string::npos) << differ.err;
  CliRun alone = Teller(command, std::string(kNewPin) + "\n" + kNewPin + "\n");
  EXPECT_EQ(alone.exit_code, 1);
  EXPECT_NE(alone.err.find("(forbidden, authoriser)"), std::string::npos) << alone.err;

  CliRun reset = Teller(command + " --authoriser s01",
                        std::string(kNewPin) + "\n" + kNewPin + "\n" + kSeniorPassword + "\n");
  ASSERT_EQ(reset.exit_code, 0) << reset.err;
  EXPECT_NE(reset.out.find("card " + std::string(kPinCard) + ": PIN reset: tries 3"),
            std::string::npos)
      << reset.out;
  for (const std::string& text : {reset.out, reset.err, differ.err, alone.err}) {
    EXPECT_EQ(text.find(kNewPin), std::string::npos) << text;
  }
  {
    auto card_reader = ImageReader(kPinCard);
    ASSERT_NE(card_reader, nullptr);
    ASSERT_TRUE(terminal::SelectMedicalApplication(*card_reader).ok());
    EXPECT_TRUE(terminal::VerifyPin(*card_reader, kNewPin).ok());
    ASSERT_TRUE(terminal::SelectMedicalApplication(*card_reader).ok());
    EXPECT_FALSE(terminal::VerifyPin(*card_reader, kCardPin).ok());
  }
  // Neither the host's output nor any file of its data directory holds the PIN.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(data_)) {
    if (!entry.is_regular_file()) continue;
    EXPECT_EQ(test_support::ReadText(entry.path()).find(kNewPin), std::string::npos)
        << entry.path();
  }
  EXPECT_EQ(test_support::ReadText(dir_ / "run.out").find(kNewPin), std::string::npos);
  EXPECT_EQ(test_support::ReadText(dir_ / "run.err").find(kNewPin), std::string::npos);
}

// The PEK delivery file: the key only under tkek, its KCV checked at import, a test key refused
// by a real store, and the PIN pad's block translated by the host's store for the card.
TEST(PekDeliveryTest, CarriesThePekEncryptedAndThePinPadBlockTranslatesAtTheHost) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  const std::filesystem::path dir = test_support::NewCliTestDir("medcard-pek");
  const std::vector<Bytes> components = {HexToBytes("00112233445566778899AABBCCDDEEFF"),
                                         HexToBytes("13579BDF02468ACE1122334455667788")};
  auto bank = test_support::TestKeyStore((dir / "bank").string(), kPassphrase);
  ASSERT_TRUE(bank.ok()) << bank.error().message;
  ASSERT_TRUE((*bank)->ImportComponents("tkek", components).ok());
  EXPECT_FALSE(cli::ExportPek(**bank, "b001-t01").ok());  // lower case is not a workstation name
  bool generated = false;
  auto delivery = cli::ExportPek(**bank, kWorkstation, &generated);
  ASSERT_TRUE(delivery.ok()) << delivery.error().message;
  EXPECT_TRUE(generated);
  EXPECT_TRUE(delivery->test_keys);
  auto again = cli::ExportPek(**bank, kWorkstation, &generated);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(generated);
  EXPECT_EQ(again->pek_kcv, delivery->pek_kcv);

  auto parsed = cli::PekDelivery::Parse(delivery->ToJson());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->cryptogram, delivery->cryptogram);
  EXPECT_FALSE(cli::PekDelivery::Parse(R"({"medcard_pek_delivery": 1})").ok());

  auto workstation = keys::CreateSoftwareKeyStore((dir / "ws").string(), kPassphrase, true);
  ASSERT_TRUE(workstation.ok()) << workstation.error().message;
  EXPECT_FALSE(cli::ImportPek(**workstation, *parsed).ok());  // no tkek yet
  ASSERT_TRUE((*workstation)->ImportComponents("tkek", components).ok());
  auto version = cli::ImportPek(**workstation, *parsed);
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(*version, 1);
  EXPECT_EQ(*cli::ImportPek(**workstation, *parsed), 1);  // init run again: nothing new
  EXPECT_EQ(*cli::PinPadKeyName(**workstation, ""), "pek/B001-T01");

  auto real = keys::CreateSoftwareKeyStore((dir / "real").string(), kPassphrase, false);
  ASSERT_TRUE(real.ok());
  ASSERT_TRUE((*real)->ImportComponents("tkek", components).ok());
  auto refused = cli::ImportPek(**real, *parsed);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("TEST"), std::string::npos);

  // The PIN pad's block is what the host's store translates into the card's PIN UNBLOCK.
  const Bytes asn = HexToBytes(kPinCard);
  auto block = cli::PinPadBlock(**workstation, "pek/B001-T01", kNewPin, asn);
  ASSERT_TRUE(block.ok()) << block.error().message;
  EXPECT_FALSE(cli::PinPadBlock(**workstation, "pek/B001-T01", "1234", asn).ok());
  branch::CardScriptBuilder builder(**bank);
  branch::ScriptContext context;
  context.kind = branch::ScriptKind::kPinReset;
  context.asn = asn;
  context.challenge = HexToBytes("01020304");
  context.start_date = {2026, 1, 1};
  context.expiry_date = {2031, 12, 31};
  EXPECT_TRUE(builder.PinReset(context, "pek/B001-T01", *block).ok());
  EXPECT_FALSE(builder.PinReset(context, "pek/B001-T01", crypto::RandomBytes(8)).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace medcard
