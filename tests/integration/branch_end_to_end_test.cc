// Issue 6's end-to-end test, on SQLite and PostgreSQL: a bank host's data directory (the
// schemas, the merchant, a POS terminal and its TMK), a real test card and PSAM in in-process
// readers, the POS terminal (pos::Terminal) talking ISO 8583 to the host's gateway, and the
// tellers acting through the HTTPS/JSON API's handlers (api::Api::Handle, as the teller
// workstation calls them).
// - A loss report made through the API blocks purchases on the POS after its blacklist download,
//   and at clearing: the finder's purchase, dated after the loss and uploaded later, is held in
//   suspense — the merchant is not paid and the cardholder's medical account is not charged.
// - A replacement moves the exact balance: a card with money, a late purchase uploaded inside the
//   clearing window, then the real `medcard host run` process makes the due transfer at start (its
//   scheduler, docs/host.md `transfer_interval_seconds`), the medical account gets exactly the
//   rest, and `medcard host check` finds the host clean.
// The services' clock runs 30 days behind the real one, so the transfer falls due for the host
// process, which uses the real clock.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "access/directory.h"
#include "api/routes.h"
#include "audit/audit_log.h"
#include "branch/services.h"
#include "host/gateway.h"
#include "host/host.h"
#include "host_directory.h"
#include "ledger/ledger.h"
#include "pos/journal.h"
#include "pos/pos.h"
#include "reader/reader.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pos::ErrorKind;
using terminal::Wallet;
using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kPassphrase[] = "branch end-to-end passphrase";
constexpr char kPerson[] = "310101199001011234";
constexpr char kMerchant[] = "898440154110061";
constexpr char kTerminalId[] = "POS00061";
constexpr char kBranch[] = "B001";
constexpr char kPin[] = "123456";
constexpr char kAsn[] = "11000000000000000611";
constexpr std::int64_t kMinuteUs = 60'000'000;
constexpr std::int64_t kDayUs = 24 * 60 * kMinuteUs;
constexpr std::int64_t kLocalOffsetUs = 8 * 60 * kMinuteUs;  // the branches' and POS's UTC+8

std::string PasswordOf(const std::string& login) { return login + "-password-2026"; }

template <typename R>
auto Must(R result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  if (!result.ok()) std::abort();
  return std::move(result).value();
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The local (UTC+8) date and time of a host clock value.
pos::DateTime LocalDateTime(std::int64_t utc_us) {
  using namespace std::chrono;
  const sys_time<microseconds> local{microseconds{utc_us + kLocalOffsetUs}};
  const sys_days day = floor<days>(local);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> time{local - day};
  return {{static_cast<int>(ymd.year()), static_cast<int>(static_cast<unsigned>(ymd.month())),
           static_cast<int>(static_cast<unsigned>(ymd.day()))},
          {static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
           static_cast<int>(time.seconds().count())}};
}

// `medcard ARGS...` as a child process, stdout and stderr into `output`; returns its pid.
pid_t Spawn(const std::vector<std::string>& args, const fs::path& output) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(out, 2);
    std::vector<char*> argv;
    std::string program = MEDCARD_CLI;
    argv.push_back(program.data());
    std::vector<std::string> copies = args;
    for (std::string& arg : copies) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int WaitExit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class BranchEndToEndTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    ::setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
    ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", kPassphrase, 1);
    // 09:30 local time (01:30 UTC), 30 days before today.
    {
      using namespace std::chrono;
      const auto today = floor<days>(system_clock::now());
      now_us_ = duration_cast<microseconds>(
                    (today - days{30} + hours{1} + minutes{30}).time_since_epoch())
                    .count();
    }
    dir_ = test_support::NewTempDir("medcard-branch-e2e");
    spec_.data_dir = (fs::path(dir_) / "host").string();
    fs::create_directories(spec_.data_dir);
    spec_.database_url = Must(test_support::NewTestDatabaseUrl(GetParam()));
    spec_.passphrase = kPassphrase;
    spec_.merchant_id = kMerchant;
    spec_.merchant_name = "City Hospital";
    spec_.terminal_id = kTerminalId;
    spec_.terminal_number = terminal_number_;
    spec_.psam_serial = psam_serial_;
    spec_.tmk = HexToBytes("2A4C6E80A1C3E5072B4D6F81A3C5E709");
    test_support::HostDirectory host_dir = Must(test_support::PrepareHostDirectory(spec_));
    host_keys_ = std::move(host_dir.key_store);
    database_ = std::move(host_dir.database);
    conn_ = std::move(host_dir.connection);
    for (const store::MigrationSet* set :
         {&audit::Migrations(), &access::Migrations(), &branch::Migrations(), &api::Migrations()}) {
      auto migrated = store::Migrate(*conn_, *set);
      ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    }
    terminal_keys_ =
        Must(test_support::MakeTerminalKeyStore(spec_, (fs::path(dir_) / "pos-keys").string()));

    host_ = std::make_unique<host::Host>(*conn_, *host_keys_,
                                         host::Host::Options{[this] { return now_us_.load(); }});
    gateway_ = std::make_unique<host::TerminalGateway>(
        *conn_, *host_keys_, host::GatewayOptions{[this] { return now_us_.load(); }, 8192});
    transport_ = std::make_unique<terminal::InProcessTransport>(
        [this](ByteView frame) { return gateway_->Handle(frame).frame; });
    journal_ = Must(pos::Journal::Open((fs::path(dir_) / "pos.db").string()));
    terminal::HostLinkConfig link_config;
    link_config.terminal_id = kTerminalId;
    link_config.merchant_id = kMerchant;
    link_config.terminal_number = terminal_number_;
    link_config.max_retries = 1;
    link_config.sleep = [](std::chrono::milliseconds) {};
    link_ = std::make_unique<terminal::HostLink>(
        link_config, *transport_, *terminal_keys_, Must(journal_->LinkState()),
        [this](const terminal::LinkState& s) { ASSERT_TRUE(journal_->SaveLinkState(s).ok()); });
    holder_ = Must(test_support::NewTestCardholder(HexToBytes(kAsn), kPin));
    card_reader_ = std::make_unique<reader::InProcessReader>("card", holder_.card);
    ASSERT_TRUE(card_reader_->Connect().ok());
    psam_ = Must(test_support::NewTestPsam(psam_serial_, terminal_number_));
    terminal_ = std::make_unique<pos::Terminal>(
        pos::TerminalIdentity{kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"},
        *card_reader_, *psam_.reader, *journal_, link_.get(), [this] { return terminal_time_; });

    // The branch: a teller and a senior teller, the API over the same database.
    access::DirectoryOptions directory_options;
    directory_options.clock = [this] { return now_us_.load(); };
    directory_ = std::make_unique<access::Directory>(directory_options);
    AddUser("t01", access::Role::kTeller);
    AddUser("s01", access::Role::kSeniorTeller);
    api::ApiServices services;
    services.database = database_.get();
    services.key_store = host_keys_.get();
    services.directory = directory_.get();
    services.branch_options = BranchOptions();
    api_ = std::make_unique<api::Api>(std::move(services));

    // The cardholder's card applied for, issued and activated at the counter, and the agency's
    // allocation in the medical account.
    branch::BranchServices services_now(*conn_, *host_keys_, BranchOptions());
    const branch::Actor teller{.login = "t01", .from = "10.0.0.7", .branch = kBranch};
    auto applied = Must(services_now.Apply(teller, {kPerson, "holder-0611", kBranch}));
    Must(services_now.Issue(teller, {.application_id = applied.application_id, .asn = kAsn}));
    Must(services_now.Activate(teller, {.asn = kAsn}));
    ASSERT_TRUE(host_->CreditMedicalAccount("allocation-1", kPerson, 100000).ok());
    terminal_time_ = LocalDateTime(now_us_);
  }
  void TearDown() override {
    api_.reset();
    terminal_.reset();
    link_.reset();
    gateway_.reset();
    host_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_PASSPHRASE");
    ::unsetenv("MEDCARD_PASSWORD_TEST_KDF");
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  branch::BranchOptions BranchOptions() {
    branch::BranchOptions options;
    options.clock_us = [this] { return now_us_.load(); };
    options.clearing_window_us = 7 * kDayUs;
    return options;
  }

  void AddUser(const std::string& login, access::Role role) {
    auto added =
        directory_->AddUser(*conn_, access::SystemPrincipal("host"),
                            {login, "User " + login, role, kBranch, PasswordOf(login)}, "cli");
    ASSERT_TRUE(added.ok()) << added.error().message;
  }

  api::HttpResponse Call(const std::string& method, const std::string& path,
                         const std::string& body, const std::string& token = {}) {
    api::HttpRequest request;
    request.method = method;
    request.path = path;
    request.body = body;
    request.remote_address = "10.0.0.7";
    if (!body.empty()) request.headers["content-type"] = "application/json";
    if (!token.empty()) request.headers["authorization"] = "Bearer " + token;
    return api_->Handle(request);
  }
  std::string SignIn(const std::string& login) {
    auto response = Call("POST", "/v1/sessions",
                         json{{"login", login}, {"password", PasswordOf(login)}}.dump());
    EXPECT_EQ(response.status, 201) << response.body;
    auto body = json::parse(response.body, nullptr, false);
    return body.is_object() && body.contains("token") ? body["token"].get<std::string>() : "";
  }

  // The POS's clock moves with the host's (local time).
  void Advance(std::int64_t us) {
    now_us_ += us;
    terminal_time_ = LocalDateTime(now_us_);
  }

  pos::Receipt Buy(std::uint32_t fen) {
    auto receipt = terminal_->Purchase({Wallet::kEd, fen, kPin});
    EXPECT_TRUE(receipt.ok()) << receipt.error().message;
    return receipt.ok() ? *receipt : pos::Receipt{};
  }
  pos::DayEndReport DayEnd() {
    auto report = terminal_->DayEnd();
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? *report : pos::DayEndReport{};
  }
  // The card's ED balance read directly (PIN verified), outside the terminal.
  std::uint32_t CardEd() {
    card_reader_->RemoveCard();
    reader::InProcessReader direct("direct", holder_.card.get());
    EXPECT_TRUE(direct.Connect().ok());
    EXPECT_TRUE(terminal::SelectMedicalApplication(direct).ok());
    EXPECT_TRUE(terminal::VerifyPin(direct, kPin).ok());
    const std::uint32_t balance = Must(terminal::GetBalance(direct, Wallet::kEd));
    direct.RemoveCard();
    EXPECT_TRUE(card_reader_->InsertCard(holder_.card).ok());
    return balance;
  }
  std::int64_t Balance(const ledger::AccountId& id) {
    ledger::Ledger ledger(*conn_);
    auto account = ledger.FindAccount(id);
    EXPECT_TRUE(account.ok());
    return account.ok() && *account ? (*account)->balance : 0;
  }
  // A software key store is used by one process at a time: the test's goes before a medcard
  // process opens it.
  void ReleaseKeyStore() {
    api_.reset();
    terminal_.reset();
    link_.reset();
    gateway_.reset();
    host_.reset();
    host_keys_.reset();
  }
  void ExpectHostClean() {
    auto problems = host_->CheckHost();
    ASSERT_TRUE(problems.ok()) << problems.error().message;
    for (const auto& p : *problems) ADD_FAILURE() << p;
  }

  std::string dir_;
  test_support::HostDirectorySpec spec_;
  std::atomic<std::int64_t> now_us_{0};
  pos::DateTime terminal_time_{};
  std::unique_ptr<keys::KeyStore> host_keys_, terminal_keys_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<host::Host> host_;
  std::unique_ptr<host::TerminalGateway> gateway_;
  std::unique_ptr<terminal::InProcessTransport> transport_;
  std::unique_ptr<pos::Journal> journal_;
  std::unique_ptr<terminal::HostLink> link_;
  std::unique_ptr<pos::Terminal> terminal_;
  test_support::TestCardholder holder_;
  std::unique_ptr<reader::InProcessReader> card_reader_;
  test_support::TestPsam psam_;
  std::unique_ptr<access::Directory> directory_;
  std::unique_ptr<api::Api> api_;
  Bytes terminal_number_ = HexToBytes("000000000611");
  Bytes psam_serial_ = HexToBytes("50000000000000000611");
};

TEST_P(BranchEndToEndTest,
       ALossReportBlocksThePosAfterItsDownloadAndClearingRefusesLaterPurchases) {
  ASSERT_TRUE(terminal_->LoadOnline(Wallet::kEd, 30000, kPin).ok());
  EXPECT_EQ(Balance(ledger::AccountId::Medical(kPerson)), 70000);
  Advance(10 * kMinuteUs);
  Buy(1000);  // 09:40, the cardholder's own purchase, offline

  // 10:00: the cardholder reports the loss at the counter.
  Advance(20 * kMinuteUs);
  auto lost = Call("POST", std::string("/v1/cards/") + kAsn + "/loss",
                   json{{"reason", "lost on the bus"}}.dump(), SignIn("t01"));
  ASSERT_EQ(lost.status, 200) << lost.body;
  EXPECT_EQ(json::parse(lost.body)["state"], "lost");

  // 10:30: the finder pays at a terminal that has not downloaded the blacklist yet.
  Advance(30 * kMinuteUs);
  const pos::Receipt finders = Buy(2500);
  EXPECT_EQ(finders.balance_after, 30000u - 1000u - 2500u);

  // The terminal's day end uploads both purchases and downloads the blacklist.
  const pos::DayEndReport day_end = DayEnd();
  EXPECT_EQ(day_end.purchases_uploaded, 2u);
  EXPECT_GE(day_end.blacklist_version, 1u);
  auto refused = terminal_->Purchase({Wallet::kEd, 100, kPin});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kBlacklisted) << refused.error().message;
  EXPECT_EQ(CardEd(), 26500u);  // the refused purchase took nothing

  // At clearing: the merchant is paid the 10.00 only; the 25.00 is held in suspense, and the
  // cardholder's medical account is not charged for it.
  EXPECT_EQ(Balance(ledger::AccountId::Merchant(kMerchant)), 1000);
  EXPECT_EQ(Balance(ledger::AccountId::Medical(kPerson)), 70000);
  auto queue = host_->ReviewQueue();
  ASSERT_TRUE(queue.ok()) << queue.error().message;
  ASSERT_EQ(queue->size(), 1u);
  EXPECT_EQ((*queue)[0].amount, 2500);
  EXPECT_TRUE((*queue)[0].money_held);
  ExpectHostClean();

  // The audit log has the teller's loss report, from the workstation.
  audit::Filter filter;
  filter.action = branch::kActionReportLoss;
  auto records = audit::Read(*conn_, filter);
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].entry.actor, "t01");
  EXPECT_EQ((*records)[0].entry.from, "10.0.0.7");

  // `medcard host report branch`: the day's cards at the branch, on the console and as CSV.
  ReleaseKeyStore();
  const std::string day = terminal_time_.date.ToString();
  const fs::path csv = fs::path(dir_) / "branch.csv";
  const fs::path output = fs::path(dir_) / "report.out";
  ASSERT_EQ(WaitExit(Spawn({"host", "report", "branch", "--data", spec_.data_dir, "--day", day,
                            "--csv", csv.string()},
                           output)),
            0)
      << ReadText(output);
  EXPECT_THAT(ReadText(output), HasSubstr(day + " " + kBranch));
  EXPECT_EQ(ReadText(csv), "day,branch,applied,issued,activated,lost,captured,replaced,closed\n" +
                               day + "," + kBranch + ",1,1,1,1,0,0,0\n");
  EXPECT_EQ(
      WaitExit(Spawn({"host", "report", "branch", "--data", spec_.data_dir, "--day", "2026-02-30x"},
                     output)),
      2);
}

TEST_P(BranchEndToEndTest, AReplacementMovesTheExactBalanceThroughTheHostProcess) {
  ASSERT_TRUE(terminal_->LoadOnline(Wallet::kEd, 30000, kPin).ok());
  Advance(10 * kMinuteUs);
  Buy(1234);  // 09:40, uploaded only after the replacement

  // 10:00: replaced at the counter (a senior teller authorises it).
  Advance(20 * kMinuteUs);
  auto replaced = Call("POST", std::string("/v1/cards/") + kAsn + "/replacement",
                       json{{"reason", "damaged"},
                            {"authorisation", {{"login", "s01"}, {"password", PasswordOf("s01")}}}}
                           .dump(),
                       SignIn("t01"));
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  const json body = json::parse(replaced.body);
  EXPECT_EQ(body["old_card"]["state"], "replaced");
  EXPECT_EQ(body["transfer"]["kind"], "replacement");

  // Three days later, inside the window: the late upload clears from the old card's float, and
  // nothing has moved yet.
  Advance(3 * kDayUs);
  const pos::DayEndReport day_end = DayEnd();
  EXPECT_EQ(day_end.purchases_uploaded, 1u);
  EXPECT_EQ(Balance(ledger::AccountId::Merchant(kMerchant)), 1234);
  EXPECT_EQ(Balance(ledger::AccountId::CardFloat(kAsn, ledger::Wallet::kEd)), 28766);
  {
    branch::BranchServices services(*conn_, *host_keys_, BranchOptions());
    auto early = services.RunDueTransfers(now_us_);
    ASSERT_TRUE(early.ok()) << early.error().message;
    EXPECT_TRUE(early->empty());
  }
  EXPECT_EQ(Balance(ledger::AccountId::Medical(kPerson)), 70000);

  // The host process (real clock, 26 days later): its scheduler makes the due transfer at start.
  ReleaseKeyStore();
  const fs::path run_output = fs::path(dir_) / "host-run.out";
  const pid_t host = Spawn({"host", "run", "--data", spec_.data_dir, "--listen", "127.0.0.1:0",
                            "--no-api", "--transfer-interval", "3600"},
                           run_output);
  ASSERT_GT(host, 0);
  const fs::path log = fs::path(spec_.data_dir) / "host.log";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (ReadText(log).find("scheduled transfers every 3600s") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(host, &status, WNOHANG) == host) {
      FAIL() << "host run exited: " << ReadText(run_output);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(host, SIGTERM);
  EXPECT_EQ(WaitExit(host), 0) << ReadText(run_output);
  const std::string log_text = ReadText(log);
  EXPECT_THAT(log_text, HasSubstr(std::string("transfer made asn=") + kAsn +
                                  " kind=replacement state=done moved_ed=28766 moved_ep=0"));

  // The medical account got exactly what the old card held: 300.00 − 12.34.
  EXPECT_EQ(Balance(ledger::AccountId::CardFloat(kAsn, ledger::Wallet::kEd)), 0);
  EXPECT_EQ(Balance(ledger::AccountId::Medical(kPerson)), 70000 + 28766);
  auto transfers =
      conn_->Query("SELECT state, moved_ed FROM branch_transfers WHERE asn = ?", {kAsn});
  ASSERT_TRUE(transfers.ok()) << transfers.error().message;
  ASSERT_EQ(transfers->size(), 1u);
  EXPECT_EQ((*transfers)[0].Text(0), "done");
  EXPECT_EQ((*transfers)[0].Int(1), 28766);

  // `medcard host check`: the ledger and the host agree.
  const fs::path check_output = fs::path(dir_) / "host-check.out";
  EXPECT_EQ(WaitExit(Spawn({"host", "check", "--data", spec_.data_dir}, check_output)), 0)
      << ReadText(check_output);
}

INSTANTIATE_TEST_SUITE_P(Engines, BranchEndToEndTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard
