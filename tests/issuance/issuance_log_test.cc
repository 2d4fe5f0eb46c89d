// The issuance log: numbers reserved durably and never reused (across reopen, failures,
// concurrent stations), duplicate and same-factor numbers refused, a torn last line survived,
// and issuance.json read strictly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "issuance/issuer.h"
#include "issuance_test_support.h"

namespace medcard::issuance {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using testing::TempDir;

const json kContext = {{"operator", "test"}};

std::unique_ptr<IssuanceLog> OpenLog(const std::string& dir) {
  auto log = IssuanceLog::Open(dir);
  EXPECT_TRUE(log.ok()) << log.error().message;
  return log.ok() ? std::move(log).value() : nullptr;
}

std::string Hex(const Result<Bytes>& r) { return r.ok() ? ToHex(View(*r)) : r.error().message; }

TEST(IssuanceLog, AllocatesConsecutiveNumbersUnderThePrefixAndKeepsCountingAfterReopen) {
  TempDir dir;
  {
    auto log = OpenLog(dir / "log");
    EXPECT_EQ(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext)),
              "11000000000000000001");
    EXPECT_EQ(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext)),
              "11000000000000000002");
    EXPECT_EQ(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "12345678", kContext)),
              "12345678000000000001");
    EXPECT_EQ(Hex(log->Reserve(DeviceKind::kPsam, std::nullopt, "5000", kContext)),
              "50000000000000000001");
  }
  auto reopened = OpenLog(dir / "log");
  EXPECT_EQ(Hex(reopened->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext)),
            "11000000000000000003");
  auto records = reopened->ReadAll();
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 5u);
  EXPECT_EQ((*records)[0].at("event"), "reserved");
  EXPECT_EQ((*records)[0].at("kind"), "card");
  EXPECT_EQ((*records)[0].at("operator"), "test");
  EXPECT_EQ((*records)[3].at("psam_serial"), "50000000000000000001");
}

TEST(IssuanceLog, IsReadableByTheStationAccountOnly) {
  TempDir dir;
  auto log = OpenLog(dir / "log");
  struct stat st {};
  ASSERT_EQ(::stat(log->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(IssuanceLog, RefusesADuplicateNumberAndOneSharingTheKeyDiversificationFactor) {
  TempDir dir;
  auto log = OpenLog(dir / "log");
  const Bytes asn = HexToBytes("11000000000000000777");
  ASSERT_TRUE(log->Reserve(DeviceKind::kCard, asn, "", kContext).ok());
  auto again = log->Reserve(DeviceKind::kCard, asn, "", kContext);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("duplicate ASN 11000000000000000777"));
  // Another issuer prefix, same rightmost 8 bytes: the same card keys.
  auto same_keys =
      log->Reserve(DeviceKind::kCard, HexToBytes("22000000000000000777"), "", kContext);
  ASSERT_FALSE(same_keys.ok());
  EXPECT_THAT(same_keys.error().message, HasSubstr("same rightmost 8 bytes"));
  // Cards and PSAMs are separate number spaces.
  EXPECT_TRUE(log->Reserve(DeviceKind::kPsam, asn, "", kContext).ok());
  // Allocation skips what an explicit number took, under any prefix.
  ASSERT_TRUE(
      log->Reserve(DeviceKind::kCard, HexToBytes("99000000000000000001"), "", kContext).ok());
  EXPECT_EQ(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext)),
            "11000000000000000778");
  EXPECT_EQ(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "AB00", kContext)),
            "AB000000000000000002");
}

TEST(IssuanceLog, SaysWhenAPrefixHasNoNumbersLeft) {
  TempDir dir;
  auto log = OpenLog(dir / "log");
  ASSERT_TRUE(
      log->Reserve(DeviceKind::kCard, HexToBytes("12345678901234569999"), "", kContext).ok());
  auto exhausted = log->Reserve(DeviceKind::kCard, std::nullopt, "1234567890123456", kContext);
  ASSERT_FALSE(exhausted.ok());
  EXPECT_THAT(exhausted.error().message, HasSubstr("no ASN left under prefix 1234567890123456"));
  EXPECT_THAT(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "12G4", kContext)),
              HasSubstr("ASN prefix must be 1 to 16 hex digits"));
  EXPECT_THAT(Hex(log->Reserve(DeviceKind::kCard, HexToBytes("1100"), "", kContext)),
              HasSubstr("ASN must be 10 bytes"));
}

TEST(IssuanceLog, ALineTornByACrashIsSkippedAndTheNextRecordStartsOnItsOwnLine) {
  TempDir dir;
  std::string path;
  {
    auto log = OpenLog(dir / "log");
    path = log->path();
    ASSERT_TRUE(log->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext).ok());
  }
  {
    std::ofstream torn(path, std::ios::app);
    torn << R"({"event":"reserved","kind":"card","asn":"1100000000000)";  // no newline
  }
  auto log = OpenLog(dir / "log");
  EXPECT_EQ(Hex(log->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext)),
            "11000000000000000002");
  auto records = log->ReadAll();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 2u);
  EXPECT_EQ(log->skipped_lines(), 1u);
  auto reopened = OpenLog(dir / "log");
  EXPECT_EQ(reopened->skipped_lines(), 1u);
  EXPECT_EQ(Hex(reopened->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext)),
            "11000000000000000003");
}

TEST(IssuanceLog, StationsSharingTheDirectoryNeverGetTheSameNumber) {
  TempDir dir;
  OpenLog(dir / "log");  // create it first
  constexpr int kStations = 4, kEach = 25;
  std::vector<pid_t> children;
  for (int s = 0; s < kStations; ++s) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto log = IssuanceLog::Open(dir / "log");
      int failures = log.ok() ? 0 : 1;
      for (int i = 0; log.ok() && i < kEach; ++i) {
        if (!(*log)->Reserve(DeviceKind::kCard, std::nullopt, "1100", kContext).ok()) ++failures;
      }
      ::_exit(failures);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto log = OpenLog(dir / "log");
  auto records = log->ReadAll();
  ASSERT_TRUE(records.ok());
  std::set<std::string> numbers;
  for (const json& r : *records) numbers.insert(r.at("asn").get<std::string>());
  EXPECT_EQ(records->size(), static_cast<std::size_t>(kStations * kEach));
  EXPECT_EQ(numbers.size(), static_cast<std::size_t>(kStations * kEach));
  EXPECT_EQ(*numbers.rbegin(), "11000000000000000100");
}

TEST(IssuanceConfig, ReadsIssuanceJsonStrictly) {
  auto config = IssuanceConfig::Parse(
      R"({"asn_prefix": "11ab", "psam_serial_prefix": "5000", "issuer_id": "0102030405060708",
          "validity_years": 6})");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->asn_prefix, "11AB");
  EXPECT_EQ(config->psam_serial_prefix, "5000");
  EXPECT_EQ(config->issuer_id, HexToBytes("0102030405060708"));
  EXPECT_EQ(config->validity_years, 6);

  const std::pair<const char*, const char*> bad[] = {
      {R"({"asn_prefx": "11"})", "issuance.json: asn_prefx: unknown field"},
      {R"({"asn_prefix": "11Z"})", "issuance.json: asn_prefix must be 1 to 16 hex digits"},
      {R"({"asn_prefix": 11})", "issuance.json: asn_prefix: not a string"},
      {R"({"issuer_id": "0102"})", "issuance.json: issuer_id: must be 16 hex digits"},
      {R"({"validity_years": 0})", "issuance.json: validity_years: must be an integer 1 to 30"},
      {"nope", "issuance.json: not a JSON object"}};
  for (const auto& [text, message] : bad) {
    auto refused = IssuanceConfig::Parse(text);
    ASSERT_FALSE(refused.ok()) << text;
    EXPECT_THAT(refused.error().message, HasSubstr(message)) << text;
  }
}

TEST(IssuanceConfig, DefaultsWhenTheDirectoryHasNoConfig) {
  TempDir dir;
  auto config = IssuanceConfig::Load(dir.path().string());
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->asn_prefix.empty());
  EXPECT_EQ(config->issuer_id, HexToBytes("4D45444341524431"));
  EXPECT_EQ(config->validity_years, 10);
  std::ofstream(dir / "issuance.json") << R"({"asn_prefix": 11})";
  auto broken = IssuanceConfig::Load(dir.path().string());
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.error().message, HasSubstr("issuance.json: asn_prefix: not a string"));
}

}  // namespace
}  // namespace medcard::issuance
