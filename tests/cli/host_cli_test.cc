// `medcard host ...` through the real binary, as a bank operator runs it: init a data directory
// with a test key store, register a terminal, import an issuance log, blacklist a card, report,
// check — and every bad input refused with a clear message and nothing changed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_run.h"
#include "store/store.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using test_support::ReadText;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAsn1[] = "11000000000000000001";
constexpr char kAsn2[] = "11000000000000000002";

std::string IssuedRecord(const std::string& asn, const std::string& holder, bool test) {
  return std::string(R"({"asn":")") + asn + R"(","chip_serial":"3283C76C99B6BD95",)" +
         R"("date":"2026-11-25","event":"issued","format":1,"holder":")" + holder +
         R"(","key_version":1,"keys":[],"kind":"card","operator":"alice",)" +
         R"("store":"software:/srv/keys","test":)" + (test ? "true" : "false") +
         R"(,"time":"2026-11-25T09:15:02Z","valid_from":"2026-11-25","valid_to":"2036-11-25"})";
}

class HostCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-host-cli");
    ASSERT_FALSE(dir_.empty());
    data_ = (dir_ / "host").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Medcard(const std::string& args, std::optional<std::string> input = std::nullopt) {
    return test_support::RunCli(
        {.binary = MEDCARD_CLI,
         .environment =
             "MEDCARD_KEYSTORE_TEST_KDF=fast MEDCARD_KEYSTORE_PASSPHRASE='host cli test' ",
         .args = args,
         .input = std::move(input)},
        dir_);
  }
  CliRun Host(const std::string& command) {
    return Medcard("host " + command + " --data " + data_);
  }

  void InitWithTerminal() {
    CliRun init = Medcard("host init --test-keys --data " + data_);
    ASSERT_EQ(init.exit_code, 0) << init.err;
    CliRun add = Host(
        "terminals add --merchant 898110000000001 --merchant-name 'City Hospital' --grade "
        "hospital-3A "
        "--terminal-no 112233445566 --psam-serial 00000000000000000001");
    ASSERT_EQ(add.exit_code, 0) << add.err;
  }

  fs::path dir_;
  std::string data_;
};

TEST_F(HostCliTest, InitCreatesDatabaseKeyStoreAndConfiguration) {
  CliRun init = Medcard("host init --test-keys --data " + data_);
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr("host initialised in " + data_));
  EXPECT_THAT(init.out, HasSubstr("TEST keys"));
  EXPECT_THAT(init.out, HasSubstr("127.0.0.1:8583"));
  EXPECT_TRUE(fs::exists(fs::path(data_) / "medcard.db"));
  EXPECT_TRUE(fs::exists(fs::path(data_) / "keys" / "keystore.mks"));
  const std::string config = ReadText(fs::path(data_) / "host.json");
  EXPECT_THAT(config, HasSubstr("\"port\": 8583"));

  // Again: the same directory is updated, nothing is lost.
  CliRun again = Medcard("host init --test-keys --listen 0.0.0.0:9000 --data " + data_);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("host updated"));
  EXPECT_THAT(ReadText(fs::path(data_) / "host.json"), HasSubstr("\"port\": 9000"));

  CliRun check = Host("check");
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_THAT(check.out, HasSubstr("ledger consistent"));
}

TEST_F(HostCliTest, TerminalsAddMakesTheTerminalMasterKeyAndIsIdempotent) {
  InitWithTerminal();
  CliRun again = Host(
      "terminals add --merchant 898110000000001 --merchant-name 'City Hospital' --grade "
      "hospital-3A "
      "--terminal-no 112233445566 --psam-serial 00000000000000000001");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out,
              HasSubstr("terminal 112233445566 registered for merchant 898110000000001"));
  EXPECT_THAT(again.out, HasSubstr("tmk/112233445566"));
  EXPECT_THAT(again.out, HasSubstr("KCV "));

  CliRun keys = Medcard("keys list --store " + data_ + "/keys");
  ASSERT_EQ(keys.exit_code, 0) << keys.err;
  EXPECT_THAT(keys.out, HasSubstr("tmk/112233445566"));

  // The same terminal number for another PSAM is refused, and changes nothing.
  CliRun clash = Host(
      "terminals add --merchant 898110000000001 --merchant-name 'City Hospital' --grade "
      "hospital-3A --terminal-no 112233445566 --psam-serial 00000000000000000002");
  EXPECT_EQ(clash.exit_code, 1);
  EXPECT_THAT(clash.err, HasSubstr("terminal 112233445566 exists already"));
  // The merchant under another grade: the message says what it is registered as.
  CliRun other_grade = Host(
      "terminals add --merchant 898110000000001 --merchant-name 'City Hospital' "
      "--terminal-no 112233445577 --psam-serial 00000000000000000003");
  EXPECT_EQ(other_grade.exit_code, 1);
  EXPECT_THAT(other_grade.err, HasSubstr("exists already as \"City Hospital\" (hospital-3A)"));
  CliRun keys_after = Medcard("keys list --store " + data_ + "/keys");
  EXPECT_THAT(keys_after.out, Not(HasSubstr("tmk/112233445577")));
}

TEST_F(HostCliTest, BadArgumentsAreRefusedWithUsageErrors) {
  InitWithTerminal();
  CliRun short_number = Host(
      "terminals add --merchant 898110000000002 --merchant-name Pharmacy --terminal-no 1122 "
      "--psam-serial 00000000000000000009");
  EXPECT_EQ(short_number.exit_code, 2);
  EXPECT_THAT(short_number.err, HasSubstr("--terminal-no must be 12 hex digits"));
  CliRun bad_asn = Host("blacklist add XYZ");
  EXPECT_EQ(bad_asn.exit_code, 2);
  EXPECT_THAT(bad_asn.err, HasSubstr("20 hex digits"));
  CliRun bad_time = Host(std::string("blacklist add ") + kAsn1 + " --at 2026-11-25");
  EXPECT_EQ(bad_time.exit_code, 2);
  EXPECT_THAT(bad_time.err, HasSubstr("YYYYMMDDhhmmss"));
  CliRun bad_date = Host("report settlement --date 25.11.2026");
  EXPECT_EQ(bad_date.exit_code, 2);
  CliRun list = Host("blacklist list");
  EXPECT_THAT(list.out, HasSubstr("0 card(s)"));
}

TEST_F(HostCliTest, AMerchantIdThatIsNotFifteenCharactersIsRefusedAndNothingIsRegistered) {
  ASSERT_EQ(Medcard("host init --test-keys --data " + data_).exit_code, 0);
  for (const char* id : {"H0001", "8981100000000011", "'898110 0000001'"}) {
    CliRun add = Host(std::string("terminals add --merchant ") + id +
                      " --merchant-name 'City Hospital' --terminal-no 112233445566 "
                      "--psam-serial 00000000000000000001");
    EXPECT_EQ(add.exit_code, 2) << id;
    EXPECT_THAT(add.err, HasSubstr("--merchant must be 15 printable characters")) << id;
  }
  // A bad terminal number is refused before the (good) merchant is registered.
  CliRun bad_number = Host(
      "terminals add --merchant 898110000000001 --merchant-name 'City Hospital' "
      "--terminal-no 11 --psam-serial 00000000000000000001");
  EXPECT_EQ(bad_number.exit_code, 2);
  CliRun list = Host("terminals list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, Not(HasSubstr("112233445566")));
  EXPECT_THAT(list.out, Not(HasSubstr("City Hospital")));
}

TEST_F(HostCliTest, InitWithARelativeDirectoryWritesAbsolutePathsSoOtherDirectoriesWork) {
  // medcard runs in dir_, so "--data relative-host" is dir_/relative-host.
  CliRun init = test_support::RunCli(
      {.binary = "sh -c 'cd \"" + dir_.string() + "\" && exec " + MEDCARD_CLI + " \"$@\"' medcard",
       .environment = "MEDCARD_KEYSTORE_TEST_KDF=fast MEDCARD_KEYSTORE_PASSPHRASE='host cli test' ",
       .args = "host init --test-keys --data relative-host",
       .input = std::nullopt},
      dir_);
  ASSERT_EQ(init.exit_code, 0) << init.err;
  const fs::path absolute = dir_ / "relative-host";
  const std::string config = ReadText(absolute / "host.json");
  EXPECT_THAT(config, HasSubstr((absolute / "medcard.db").string()));
  EXPECT_THAT(config, HasSubstr("\"" + (absolute / "keys").string() + "\""));
  // From the test's own working directory (not dir_), by the absolute path.
  CliRun check = Medcard("host check --data " + absolute.string());
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_THAT(check.out, HasSubstr("ledger consistent"));
}

TEST_F(HostCliTest, CommandsOnADirectoryWithoutAHostSaySo) {
  CliRun run = Medcard("host blacklist list --data " + (dir_ / "nothing").string());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("medcard host init"));
}

TEST_F(HostCliTest, ABadConfigurationFieldIsNamed) {
  InitWithTerminal();
  std::ofstream(fs::path(data_) / "host.json", std::ios::trunc) << R"({"port": 70000})";
  CliRun run = Host("blacklist list");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("\"port\" must be between 1 and 65535"));
  std::ofstream(fs::path(data_) / "host.json", std::ios::trunc) << R"({"colour": "blue"})";
  run = Host("blacklist list");
  EXPECT_THAT(run.err, HasSubstr("\"colour\" is not a known setting"));
}

TEST_F(HostCliTest, CardsImportRegistersIssuedCardsOnce) {
  InitWithTerminal();
  const fs::path log = dir_ / "issuance.log";
  std::ofstream(log)
      << IssuedRecord(kAsn1, "310101199001011234", true) << "\n"
      << IssuedRecord(kAsn2, "310101199001015678", true) << "\n"
      << R"({"event":"reserved","format":1,"kind":"card","asn":"11000000000000000003"})"
      << "\n";
  CliRun imported = Host("cards import " + log.string());
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("2 card(s) registered, 1 other record(s) skipped"));
  CliRun again = Host("cards import " + log.string());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("2 card(s) registered"));
  CliRun check = Host("check");
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;

  // A log that is not JSON lines is refused as a whole: nothing of it is registered.
  const fs::path bad = dir_ / "bad.log";
  std::ofstream(bad) << IssuedRecord("11000000000000000009", "310101199001019999", true) << "\n"
                     << "not json\n";
  CliRun refused = Host("cards import " + bad.string());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("not a JSON object"));
  CliRun blacklist = Host("blacklist add 11000000000000000009");
  EXPECT_EQ(blacklist.exit_code, 1) << "the card of the refused log must not be registered";
}

TEST_F(HostCliTest, GapsListsTheOpenSerialGapsUntilAnUploadClosesThem) {
  InitWithTerminal();
  CliRun none = Host("gaps");
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_THAT(none.out, HasSubstr("0 open serial gap(s)"));
  {
    // What clearing records (docs/host.md "Clearing rules"): serial 5 of a card's ED missing
    // since 2026-11-25 12:00 UTC, and an EP gap an upload has closed since.
    auto db = store::Database::Open("sqlite:" + data_ + "/medcard.db");
    ASSERT_TRUE(db.ok()) << db.error().message;
    auto conn = (*db)->Connect();
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    const std::int64_t opened = 1795608000LL * 1'000'000;
    ASSERT_TRUE((*conn)
                    ->Execute("INSERT INTO host_gaps (asn, wallet, offline_serial, opened_at_us,"
                              " closed_at_us) VALUES (?, 'ED', 5, ?, NULL), (?, 'EP', 2, ?, ?)",
                              {std::string(kAsn1), opened, std::string(kAsn1), opened, opened + 1})
                    .ok());
  }
  CliRun open = Host("gaps");
  ASSERT_EQ(open.exit_code, 0) << open.err;
  EXPECT_THAT(open.out, HasSubstr("1 open serial gap(s)"));
  EXPECT_THAT(open.out, HasSubstr(std::string("card ") + kAsn1 +
                                  "  ED  offline serial 5  missing since 2026-11-25 12:00:00 UTC"));
  EXPECT_THAT(open.out, Not(HasSubstr("  EP  ")));
}

// The number that follows `before` in `text` (0 and a test failure when it is not there).
long long VersionIn(const std::string& text, const std::string& before) {
  const auto at = text.find(before);
  EXPECT_NE(at, std::string::npos) << "no \"" << before << "\" in: " << text;
  return at == std::string::npos ? 0 : std::atoll(text.c_str() + at + before.size());
}

long long SecondsSince2020() { return static_cast<long long>(::time(nullptr)) - 1577836800; }

TEST_F(HostCliTest, BlacklistAddListRemove) {
  InitWithTerminal();
  const fs::path log = dir_ / "issuance.log";
  std::ofstream(log) << IssuedRecord(kAsn1, "310101199001011234", true) << "\n";
  ASSERT_EQ(Host("cards import " + log.string()).exit_code, 0);

  const long long seconds_before = SecondsSince2020();
  CliRun add = Host(std::string("blacklist add ") + kAsn1 + " --at 20261125120000");
  ASSERT_EQ(add.exit_code, 0) << add.err;
  // Versions never repeat, even after a restore: they are above the seconds since 2020.
  const long long added = VersionIn(add.out, "blacklisted from 20261125120000 (blacklist version ");
  EXPECT_GT(added, seconds_before);
  CliRun list = Host("blacklist list");
  EXPECT_THAT(list.out, HasSubstr("blacklist version " + std::to_string(added) + ": 1 card(s)"));
  EXPECT_THAT(list.out, HasSubstr(kAsn1));
  CliRun remove = Host(std::string("blacklist remove ") + kAsn1);
  ASSERT_EQ(remove.exit_code, 0) << remove.err;
  const long long removed = VersionIn(remove.out, "removed from the blacklist (blacklist version ");
  EXPECT_GT(removed, added);
  list = Host("blacklist list");
  EXPECT_THAT(list.out, HasSubstr("blacklist version " + std::to_string(removed) + ": 0 card(s)"));
  EXPECT_THAT(list.out, Not(HasSubstr(std::string("  ") + kAsn1)));
}

TEST_F(HostCliTest, TerminalsAreListedBlockedAndUnblocked) {
  InitWithTerminal();
  CliRun list = Host("terminals list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("1 terminal(s)"));
  EXPECT_THAT(list.out, HasSubstr("112233445566  33445566  898110000000001"));
  EXPECT_THAT(list.out, HasSubstr("00000000000000000001  active   City Hospital"));

  CliRun block = Host("terminals block 112233445566");
  ASSERT_EQ(block.exit_code, 0) << block.err;
  EXPECT_THAT(block.out, HasSubstr("terminal 112233445566 blocked"));
  list = Host("terminals list");
  EXPECT_THAT(list.out, HasSubstr("00000000000000000001  blocked  City Hospital"));
  EXPECT_THAT(list.out, Not(HasSubstr("active")));

  CliRun unblock = Host("terminals unblock 112233445566");
  ASSERT_EQ(unblock.exit_code, 0) << unblock.err;
  EXPECT_THAT(unblock.out, HasSubstr("terminal 112233445566 active"));
  EXPECT_THAT(Host("terminals list").out, HasSubstr("  active   City Hospital"));
}

TEST_F(HostCliTest, BlockingABadOrUnknownTerminalNumberIsRefused) {
  InitWithTerminal();
  CliRun short_number = Host("terminals block 1122");
  EXPECT_EQ(short_number.exit_code, 2);
  EXPECT_THAT(short_number.err, HasSubstr("12 hex digits"));
  CliRun not_hex = Host("terminals unblock 11223344556G");
  EXPECT_EQ(not_hex.exit_code, 2);
  CliRun unknown = Host("terminals block 000000000999");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("000000000999 unknown"));
  EXPECT_THAT(Host("terminals list").out, HasSubstr("  active   City Hospital"));
}

TEST_F(HostCliTest, TheReviewQueueIsListedAndBadDecisionsAreRefused) {
  InitWithTerminal();
  CliRun list = Host("suspense list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("0 open review item(s)"));
  CliRun bad = Host("suspense resolve 1 --decision maybe --reviewer rita");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("pay-merchant, refund-cardholder or reject"));
  CliRun missing = Host("suspense resolve 7 --decision reject --reviewer rita --note forged");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no review item 7"));
}

TEST_F(HostCliTest, LoadReconciliationWithNothingPendingSaysSo) {
  InitWithTerminal();
  CliRun run = Host("loads reconcile --older-than-minutes 0");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("0 pending load(s) looked at"));
  EXPECT_EQ(Host("loads reconcile --older-than-minutes -5").exit_code, 2);
}

TEST_F(HostCliTest, SettlementReportWithNothingClearedSaysSoAndWritesTheCsvHeader) {
  InitWithTerminal();
  const fs::path csv = dir_ / "settlement.csv";
  CliRun report = Host("report settlement --date 20261125 --csv " + csv.string());
  ASSERT_EQ(report.exit_code, 0) << report.err;
  EXPECT_THAT(report.out, HasSubstr("no purchases cleared on 20261125"));
  EXPECT_EQ(ReadText(csv),
            "merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen,"
            "paid_on_review_count,paid_on_review_fen\n");
}

// The operating-system user the commands run as, as the host's audit entries name them.
std::string OsActor() {
  if (const char* login = getlogin(); login != nullptr && *login != '\0') {
    return std::string("os:") + login;
  }
  const passwd* user = getpwuid(geteuid());
  return user != nullptr ? std::string("os:") + user->pw_name
                         : "os:uid:" + std::to_string(geteuid());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// Every bank-side change made with `medcard host ...` is an entry of the hash-chained audit log
// (docs/audit.md "Host commands"): who (the OS user), what, which target, from "cli" — and a
// refused command, or one that changes nothing, writes none. No key, cryptogram or component in
// any entry.
TEST_F(HostCliTest, HostCommandsThatChangeTheSchemeAreInTheAuditLog) {
  const long long seconds_before = SecondsSince2020();
  InitWithTerminal();  // merchant.register + terminal.register
  const std::string add_again =
      "terminals add --merchant 898110000000001 --merchant-name 'City Hospital' --grade "
      "hospital-3A --terminal-no 112233445566 --psam-serial 00000000000000000001";
  ASSERT_EQ(Host(add_again).exit_code, 0);  // changes nothing: no entry
  const fs::path log = dir_ / "issuance.log";
  std::ofstream(log) << IssuedRecord(kAsn1, "310101199001011234", true) << "\n";
  ASSERT_EQ(Host("cards import " + log.string()).exit_code, 0);
  ASSERT_EQ(Host(std::string("blacklist add ") + kAsn1 + " --at 20261125120000").exit_code, 0);
  ASSERT_EQ(Host(std::string("blacklist remove ") + kAsn1).exit_code, 0);
  ASSERT_EQ(Host("terminals block 112233445566").exit_code, 0);
  ASSERT_EQ(Host("terminals unblock 112233445566").exit_code, 0);
  ASSERT_EQ(Host("loads reconcile --older-than-minutes 0").exit_code, 0);
  constexpr char kTkekComponents[] =
      "00112233445566778899AABBCCDDEEFF\n13579BDF02468ACE1122334455667788\n";
  CliRun ceremony = Medcard("keys ceremony --store " + data_ + "/keys --role tkek --components 2",
                            kTkekComponents);
  ASSERT_EQ(ceremony.exit_code, 0) << ceremony.err;
  const fs::path tmk_file = dir_ / "tmk.json";
  CliRun tmk = Host("terminals export-tmk --terminal-no 112233445566 --out " + tmk_file.string());
  ASSERT_EQ(tmk.exit_code, 0) << tmk.err;
  const fs::path pek_file = dir_ / "pek.json";
  CliRun pek = Host("workstations export-pek --workstation B001-T01 --out " + pek_file.string());
  ASSERT_EQ(pek.exit_code, 0) << pek.err;

  // Refused: no entry.
  EXPECT_EQ(Host("blacklist add XYZ").exit_code, 2);
  EXPECT_EQ(Host("blacklist add 11000000000000000009").exit_code, 1);  // unknown card
  EXPECT_EQ(Host("terminals block 000000000999").exit_code, 1);        // unknown terminal
  EXPECT_EQ(Host("suspense resolve 7 --decision reject --reviewer rita --note x").exit_code, 1);
  EXPECT_EQ(Host("terminals add --merchant 898110000000001 --merchant-name 'City Hospital' "
                 "--grade hospital-3A --terminal-no 112233445566 --psam-serial "
                 "00000000000000000002")
                .exit_code,
            1);

  CliRun exported = Host("audit export --format jsonl");
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const std::vector<std::string> entries = Lines(exported.out);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"merchant.register", "merchant:898110000000001"},
      {"terminal.register", "terminal:112233445566"},
      {"card.import", "file:" + log.string()},
      {"blacklist.add", std::string("card:") + kAsn1},
      {"blacklist.remove", std::string("card:") + kAsn1},
      {"terminal.block", "terminal:112233445566"},
      {"terminal.unblock", "terminal:112233445566"},
      {"load.reconcile", "loads"},
      {"terminal.export_tmk", "terminal:112233445566"},
      {"workstation.export_pek", "workstation:B001-T01"}};
  ASSERT_EQ(entries.size(), expected.size()) << exported.out;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    EXPECT_THAT(entries[i], HasSubstr("\"actor\":\"" + OsActor() + "\"")) << entries[i];
    EXPECT_THAT(entries[i], HasSubstr("\"action\":\"" + expected[i].first + "\"")) << entries[i];
    EXPECT_THAT(entries[i], HasSubstr("\"target\":\"" + expected[i].second + "\"")) << entries[i];
    EXPECT_THAT(entries[i], HasSubstr("\"from\":\"cli\"")) << entries[i];
  }
  // What, in the details.
  EXPECT_THAT(entries[0], HasSubstr("\"name\":\"City Hospital\""));
  EXPECT_THAT(entries[1], HasSubstr("\"psam_serial\":\"00000000000000000001\""));
  EXPECT_THAT(entries[1], HasSubstr("\"tmk\":\"tmk/112233445566\""));
  EXPECT_THAT(entries[1], HasSubstr("\"terminal_id\":\"33445566\""));
  EXPECT_THAT(entries[1], HasSubstr("\"tmk_kcv\":\""));
  EXPECT_THAT(entries[2], HasSubstr("\"cards\":1"));
  EXPECT_THAT(entries[3], HasSubstr("\"effective_at\":\"20261125120000\""));
  const long long added = VersionIn(entries[3], "\"blacklist_version\":");
  EXPECT_GT(added, seconds_before);
  EXPECT_GT(VersionIn(entries[4], "\"blacklist_version\":"), added);
  EXPECT_THAT(entries[7], HasSubstr("\"looked_at\":0"));
  EXPECT_THAT(entries[8], HasSubstr("\"out\":\"" + tmk_file.string() + "\""));
  EXPECT_THAT(entries[9], HasSubstr("\"key\":\"pek/B001-T01\""));
  // Never a cryptogram or a key component.
  const std::string tmk_delivery = ReadText(tmk_file);
  const auto at = tmk_delivery.find("\"tmk_cryptogram\": \"");
  ASSERT_NE(at, std::string::npos) << tmk_delivery;
  const std::string cryptogram = tmk_delivery.substr(at + 19, 32);
  EXPECT_THAT(exported.out, Not(HasSubstr(cryptogram)));
  EXPECT_THAT(exported.out, Not(HasSubstr("00112233445566778899")));

  CliRun verify = Host("audit verify");
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_THAT(verify.out, HasSubstr("audit log intact: 10 entries"));
}

}  // namespace
}  // namespace medcard
