// `medcard si ...` and `medcard host allocations import` through the real binary, as the
// agency's officer and the bank's operator run them: init, units and people, the monthly run
// (once), a payment and the arrears, the allocation batch to a real host data directory, the
// acknowledgement reconciled with its refused line reported, the books checked — and bad input,
// a tampered batch and a missing key refused with clear messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "cli_run.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using test_support::ReadText;
using ::testing::HasSubstr;

constexpr char kA[] = "110101199001011237";  // employee, has a card at the bank
constexpr char kC[] = "110101195003103452";  // retiree, has a card at the bank
constexpr char kD[] = "110101197506204561";  // employee, no card: the bank refuses the line
constexpr char kKey[] = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";

std::string IssuedRecord(const std::string& asn, const std::string& holder) {
  return R"({"asn":")" + asn + R"(","chip_serial":"3283C76C99B6BD95",)" +
         R"("date":"2026-11-25","event":"issued","format":1,"holder":")" + holder +
         R"(","key_version":1,"keys":[],"kind":"card","operator":"alice",)" +
         R"("store":"software:/srv/keys","test":true,)" +
         R"("time":"2026-11-25T09:15:02Z","valid_from":"2026-11-25","valid_to":"2036-11-25"})";
}

class SiRegistryCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-si-registry-cli");
    ASSERT_FALSE(dir_.empty());
    si_ = (dir_ / "si").string();
    bank_ = (dir_ / "bank").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Medcard(const std::string& args, bool with_key = true) {
    return test_support::RunCli(
        {.binary = MEDCARD_CLI,
         .environment =
             std::string(with_key ? "" : "-u MEDCARD_ALLOCATION_KEY ") +
             "MEDCARD_KEYSTORE_TEST_KDF=fast MEDCARD_KEYSTORE_PASSPHRASE='si cli test' " +
             (with_key ? std::string("MEDCARD_ALLOCATION_KEY=") + kKey + " " : ""),
         .args = args,
         .input = std::nullopt},
        dir_);
  }
  CliRun Si(const std::string& command) { return Medcard("si " + command + " --data " + si_); }

  void Enrol(const std::string& ssn, const std::string& birth, const std::string& wage,
             const std::string& category) {
    CliRun r =
        Si("person enrol --ssn " + ssn + " --name Person --birth-date " + birth +
           " --unit U001 --wage " + wage + " --category " + category + " --effective 2026-01-01");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void SetUpAgency() {
    CliRun init = Medcard("si init --data " + si_ + " --policy " + MEDCARD_SOURCE_DIR +
                          "/config/policy/beijing-example.json");
    ASSERT_EQ(init.exit_code, 0) << init.err;
    CliRun unit =
        Si("unit add --code U001 --name 'Capital Steel' --bank-account 62220202001122"
           " --area 110000");
    ASSERT_EQ(unit.exit_code, 0) << unit.err;
    Enrol(kA, "1990-01-01", "8000.00", "employee");
    Enrol(kC, "1950-03-10", "0", "retiree");
    Enrol(kD, "1975-06-20", "50000.00", "employee");
  }

  fs::path dir_;
  std::string si_, bank_;
};

TEST_F(SiRegistryCliTest, RegistryEventsAndHistory) {
  SetUpAgency();
  CliRun bad =
      Si("person enrol --ssn 110105194912310021 --name X --birth-date 1949-12-31"
         " --unit U001 --effective 2026-01-01");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("ssn: not an 18-character resident identity number"));
  CliRun bad_date = Si(std::string("person retire --ssn ") + kA + " --effective 2026-13-01");
  EXPECT_EQ(bad_date.exit_code, 2);
  EXPECT_THAT(bad_date.err, HasSubstr("--effective: expected YYYY-MM-DD"));

  ASSERT_EQ(Si(std::string("unit add --code U002 --name Library --bank-account 62220202003344"
                           " --area 110000"))
                .exit_code,
            0);
  CliRun transfer =
      Si(std::string("person transfer --ssn ") + kA + " --unit U002 --effective 2026-12-01");
  ASSERT_EQ(transfer.exit_code, 0) << transfer.err;
  CliRun close =
      Si(std::string("person close --ssn ") + kA + " --reason death --effective 2027-02-01");
  ASSERT_EQ(close.exit_code, 0) << close.err;
  CliRun after = Si(std::string("person retire --ssn ") + kA + " --effective 2027-03-01");
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_THAT(after.err, HasSubstr("closed"));

  CliRun history = Si(std::string("person show --ssn ") + kA);
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_THAT(history.out, HasSubstr("(enrol)"));
  EXPECT_THAT(history.out, HasSubstr("(transfer)"));
  EXPECT_THAT(history.out, HasSubstr("(close: death)"));
  CliRun on = Si(std::string("person show --ssn ") + kA + " --on 2026-11-30");
  ASSERT_EQ(on.exit_code, 0) << on.err;
  EXPECT_THAT(on.out, HasSubstr("unit U001"));
  EXPECT_THAT(on.out, HasSubstr("8000.00"));
}

TEST_F(SiRegistryCliTest, MonthRunPaymentsAllocationsToTheBankAndReconciliation) {
  SetUpAgency();
  CliRun run = Si("month run 2026-11 --chunk-size 2");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("3 people in 1 unit(s)"));
  EXPECT_THAT(run.out, HasSubstr("2 chunk(s)"));
  CliRun again = Si("month run 2026-11");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("already run: nothing changed"));

  CliRun paid = Si("payment add --unit U001 --month 2026-11 --amount 100.00 --date 2026-11-20");
  ASSERT_EQ(paid.exit_code, 0) << paid.err;
  CliRun bills = Si("month show 2026-11");
  ASSERT_EQ(bills.exit_code, 0) << bills.err;
  // Billed: A 480.00 + 160.00, D at the cap 35,283.00 × 8% = 2,822.64; C pays nothing.
  EXPECT_THAT(bills.out, HasSubstr("3462.64"));
  EXPECT_THAT(bills.out, HasSubstr("3362.64"));  // arrears after paying 100.00

  const std::string batch = (dir_ / "batch.jsonl").string();
  CliRun no_key = Medcard("si allocations export 2026-11 --out " + batch + " --data " + si_,
                          /*with_key=*/false);
  EXPECT_EQ(no_key.exit_code, 1);
  EXPECT_THAT(no_key.err, HasSubstr("MEDCARD_ALLOCATION_KEY"));
  CliRun exported = Si("allocations export 2026-11 --out " + batch);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_THAT(exported.out, HasSubstr("batch SIA-2026-11: 3 line(s)"));

  // The bank: a host with cards for A and C.
  ASSERT_EQ(Medcard("host init --test-keys --data " + bank_).exit_code, 0);
  const std::string log = (dir_ / "issuance.jsonl").string();
  std::ofstream(log) << IssuedRecord("11000000000000000001", kA) << "\n"
                     << IssuedRecord("11000000000000000002", kC) << "\n";
  CliRun cards = Medcard("host cards import " + log + " --data " + bank_);
  ASSERT_EQ(cards.exit_code, 0) << cards.err;

  std::string forged = ReadText(batch);
  forged.replace(forged.find("\"amount_fen\":24000"), 18, "\"amount_fen\":99000");
  const std::string forged_path = (dir_ / "forged.jsonl").string();
  std::ofstream(forged_path) << forged;
  CliRun refused = Medcard("host allocations import " + forged_path + " --data " + bank_);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("nothing credited"));
  EXPECT_FALSE(fs::exists(forged_path + ".ack"));

  CliRun imported = Medcard("host allocations import " + batch + " --data " + bank_);
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("2 credited"));
  EXPECT_THAT(imported.out, HasSubstr("1 refused (1411.32)"));
  const std::string ack = ReadText(batch + ".ack");
  CliRun reimported = Medcard("host allocations import " + batch + " --data " + bank_);
  ASSERT_EQ(reimported.exit_code, 0) << reimported.err;
  EXPECT_EQ(ReadText(batch + ".ack"), ack);
  // One audit entry per credited line, in the credit's transaction; the re-import posted
  // nothing and wrote none (docs/audit.md "Host commands").
  CliRun credits =
      Medcard("host audit export --format csv --action allocation.credit --data " + bank_);
  ASSERT_EQ(credits.exit_code, 0) << credits.err;
  EXPECT_EQ(std::count(credits.out.begin(), credits.out.end(), '\n'), 3) << credits.out;
  EXPECT_THAT(credits.out, HasSubstr(std::string("person:") + kA));
  EXPECT_THAT(credits.out, HasSubstr(std::string("person:") + kC));
  CliRun host_check = Medcard("host check --data " + bank_);
  EXPECT_EQ(host_check.exit_code, 0) << host_check.out << host_check.err;

  CliRun reconciled = Si("allocations reconcile " + batch + ".ack");
  ASSERT_EQ(reconciled.exit_code, 0) << reconciled.err;
  EXPECT_THAT(reconciled.out, HasSubstr("2 credited"));
  EXPECT_THAT(reconciled.out, HasSubstr(std::string("refused line 2: ") + kD + " 1411.32"));
  EXPECT_THAT(reconciled.out, HasSubstr("no medical account"));

  CliRun check = Si("check");
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, HasSubstr("books OK"));
}

}  // namespace
}  // namespace medcard
