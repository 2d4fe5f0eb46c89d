// `medcard issue card | issue psam | card blank | psam blank` through the real binary, as an
// operator or a script runs them: the passphrase from the environment, the PIN only in the
// mailer, every bad input a clear message and the documented exit code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "issuance_test_support.h"

namespace medcard::issuance {
namespace {

namespace fs = std::filesystem;
using testing::CliRun;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFile;
using testing::TempDir;

class IssueCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The store is made in process, then closed: the CLI opens it like any other process.
    ASSERT_NE(testing::TestKeyStore(store_), nullptr);
    std::ofstream(holder_) << testing::SampleHolderJson();
  }

  CliRun Medcard(const std::string& args, const std::string& environment = "") {
    return testing::RunMedcard(MEDCARD_CLI, args, environment);
  }
  CliRun IssueCard(const std::string& rest, const std::string& environment = "") {
    return Medcard("issue card --store " + store_ + " --holder " + holder_ + " " + rest,
                   environment);
  }
  std::string LogText() { return ReadFile((fs::path(store_) / "issuance-log.jsonl").string()); }

  TempDir dir_;
  const std::string store_ = dir_ / "store";
  const std::string holder_ = dir_ / "holder.json";
};

TEST_F(IssueCliTest, IssuesACardImageWithAPinMailerAndCardShowShowsTheHolder) {
  const std::string image = dir_ / "card.img", mailer = dir_ / "mailer.txt";
  CliRun run =
      IssueCard("--out " + image + " --asn-prefix 1100 --mailer " + mailer + " --operator carol");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("TEST card 11000000000000000001 issued for 张三 into " + image));
  EXPECT_THAT(run.out, HasSubstr("PIN mailer written to " + mailer));

  struct stat st {};
  ASSERT_EQ(::stat(mailer.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string letter = ReadFile(mailer);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(letter, match, std::regex("PIN: +([0-9]{6})"))) << letter;
  const std::string pin = match[1];
  EXPECT_THAT(run.out + run.err, Not(HasSubstr(pin)));
  EXPECT_THAT(LogText(), Not(HasSubstr(pin)));
  EXPECT_THAT(LogText(), HasSubstr("\"operator\":\"carol\""));

  CliRun shown = Medcard("card show " + image);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("lifecycle     operational"));
  EXPECT_THAT(shown.out, HasSubstr("cardholder    张三"));
  EXPECT_THAT(shown.out, HasSubstr("SSN           11010519491231002X"));
  EXPECT_THAT(shown.out, Not(HasSubstr(pin)));
}

TEST_F(IssueCliTest, WithoutAMailerFileThePinMailerGoesToStdout) {
  CliRun run =
      IssueCard("--out " + (dir_ / "card.img") + " --asn 11000000000000000042 --pin 246813");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("medcard PIN mailer"));
  EXPECT_THAT(run.out, HasSubstr("PIN:         246813"));
  EXPECT_THAT(LogText(), Not(HasSubstr("246813")));
}

TEST_F(IssueCliTest, TheAsnPrefixComesFromIssuanceJsonInTheLogDirectory) {
  const std::string log_dir = dir_ / "station-log";
  fs::create_directories(log_dir);
  std::ofstream(fs::path(log_dir) / "issuance.json") << R"({"asn_prefix": "2200"})";
  CliRun run = IssueCard("--out " + (dir_ / "card.img") + " --log " + log_dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("card 22000000000000000001"));
  EXPECT_THAT(ReadFile(log_dir + "/issuance-log.jsonl"), HasSubstr("22000000000000000001"));

  CliRun no_prefix = IssueCard("--out " + (dir_ / "other.img"));
  EXPECT_EQ(no_prefix.exit_code, 1);
  EXPECT_THAT(no_prefix.err, HasSubstr("no ASN: give one, or an ASN prefix"));
  EXPECT_FALSE(fs::exists(dir_ / "other.img")) << "a blank image left behind";
}

TEST_F(IssueCliTest, AWrongPassphraseIsAClearErrorAndMakesNothing) {
  CliRun run = IssueCard("--out " + (dir_ / "card.img") + " --asn-prefix 1100",
                         "MEDCARD_KEYSTORE_PASSPHRASE='not the passphrase'");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("wrong passphrase"));
  EXPECT_FALSE(fs::exists(dir_ / "card.img"));
}

TEST_F(IssueCliTest, ATamperedStoreIsAClearError) {
  const fs::path file = fs::path(store_) / "keystore.mks";
  std::string bytes = ReadFile(file.string());
  bytes[bytes.size() - 20] = static_cast<char>(bytes[bytes.size() - 20] ^ 0x01);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  CliRun run = IssueCard("--out " + (dir_ / "card.img") + " --asn-prefix 1100");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("corrupt or has been tampered with"));
}

TEST_F(IssueCliTest, ADuplicateAsnIsRefused) {
  ASSERT_EQ(IssueCard("--out " + (dir_ / "a.img") + " --asn 11000000000000000777").exit_code, 0);
  CliRun again = IssueCard("--out " + (dir_ / "b.img") + " --asn 11000000000000000777");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("duplicate ASN 11000000000000000777"));
  EXPECT_FALSE(fs::exists(dir_ / "b.img"));
}

TEST_F(IssueCliTest, BadHolderDataNamesTheFieldAndSpendsNoNumber) {
  std::string text = testing::SampleHolderJson();
  text.insert(1, "\"nickname\": \"Zhang\",");
  std::ofstream(holder_, std::ios::trunc) << text;
  CliRun run = IssueCard("--out " + (dir_ / "card.img") + " --asn-prefix 1100");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("holder.nickname: unknown field"));
  EXPECT_FALSE(fs::exists(dir_ / "card.img"));
  EXPECT_EQ(LogText(), "");
}

TEST_F(IssueCliTest, UsageErrorsExitWithTwo) {
  const std::string image = dir_ / "card.img";
  EXPECT_EQ(IssueCard("--out " + image + " --asn 1100").exit_code, 2);
  EXPECT_EQ(IssueCard("--out " + image + " --asn-prefix 11 --pin 12345").exit_code, 2);
  EXPECT_EQ(IssueCard("--asn-prefix 11").exit_code, 2);  // neither --out nor --reader
  EXPECT_EQ(IssueCard("--out " + image + " --reader 0").exit_code, 2);
  EXPECT_EQ(
      Medcard("issue psam --store " + store_ + " --terminal-no 0102 --out " + image).exit_code, 2);
  EXPECT_FALSE(fs::exists(image));
}

TEST_F(IssueCliTest, NeverOverwritesAnImageOrAMailer) {
  const std::string image = dir_ / "card.img", mailer = dir_ / "mailer.txt";
  std::ofstream(image) << "an issued card";
  CliRun over_image = IssueCard("--out " + image + " --asn-prefix 1100");
  EXPECT_EQ(over_image.exit_code, 1);
  EXPECT_THAT(over_image.err, HasSubstr("is never overwritten"));
  EXPECT_EQ(ReadFile(image), "an issued card");
  std::ofstream(mailer) << "another holder's PIN";
  CliRun over_mailer =
      IssueCard("--out " + (dir_ / "new.img") + " --asn-prefix 1100 --mailer " + mailer);
  EXPECT_EQ(over_mailer.exit_code, 1);
  EXPECT_THAT(over_mailer.err, HasSubstr("a mailer is never overwritten"));
  EXPECT_EQ(ReadFile(mailer), "another holder's PIN");
  EXPECT_EQ(LogText(), "") << "nothing reserved";
}

TEST_F(IssueCliTest, IssuesAPsamImageAndPrintsItsKeyCheckValues) {
  const std::string image = dir_ / "psam.img";
  CliRun run = Medcard("issue psam --store " + store_ + " --terminal-no 000000000077 --out " +
                       image + " --serial-prefix 5000");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out,
              HasSubstr("TEST PSAM 50000000000000000001 issued for terminal 000000000077"));
  EXPECT_THAT(run.out, HasSubstr("key purchase"));
  EXPECT_THAT(run.out, HasSubstr("key settlement"));
  CliRun shown = Medcard("psam show " + image);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("PSAM serial   50000000000000000001"));
  EXPECT_THAT(shown.out, HasSubstr("lifecycle     operational"));
  EXPECT_THAT(LogText(), HasSubstr("\"kind\":\"psam\""));
}

TEST_F(IssueCliTest, CardBlankMakesABlankCardThatShowsItsLifecycle) {
  const std::string image = dir_ / "blank.img";
  CliRun run =
      Medcard("card blank " + image + " --store " + store_ + " --chip-serial 0102030405060708");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("blank card, chip serial 0102030405060708"));
  CliRun shown = Medcard("card show " + image);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("lifecycle     personalisation"));
  EXPECT_THAT(shown.out, Not(HasSubstr("cardholder")));
  CliRun psam = Medcard("psam blank " + (dir_ / "psam.img") + " --store " + store_);
  ASSERT_EQ(psam.exit_code, 0) << psam.err;
  EXPECT_THAT(psam.out, HasSubstr("--chip-serial"));
}

}  // namespace
}  // namespace medcard::issuance
