// Card services on a real test card and a test PSAM, issued in process with the published test
// key set: the SSSE cardholder files, visit records with secure messaging computed by the PSAM,
// the purse history.
#include "terminal/ssse.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "terminal/purse.h"

namespace medcard::terminal {
namespace {

const Bytes kAsn = HexToBytes("11000000000000000042");
const Bytes kPsamSerial = HexToBytes("50000000000000000007");
const Bytes kTerminalNumber = HexToBytes("000000000107");
const std::string kPin = "123456";

// A card between the reader and the real card: records every command and may answer one
// itself (a tampered or foreign card).
class InterposedCard final : public iso7816::Icc {
 public:
  using Override = std::function<std::optional<Bytes>(ByteView command)>;
  explicit InterposedCard(std::shared_ptr<iso7816::Icc> card) : card_(std::move(card)) {}
  Bytes PowerOn() override { return card_->PowerOn(); }
  void PowerOff() override { card_->PowerOff(); }
  Bytes Atr() const override { return card_->Atr(); }
  Bytes Transmit(ByteView command) override {
    commands.emplace_back(command.begin(), command.end());
    if (override_answer) {
      if (auto answer = override_answer(command)) return *answer;
    }
    return card_->Transmit(command);
  }
  std::vector<Bytes> commands;
  Override override_answer;

 private:
  std::shared_ptr<iso7816::Icc> card_;
};

template <typename T>
T Must(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) std::abort();
  return std::move(r).value();
}

// The embedded test key set with the visit_record master key changed: a PSAM of another scheme.
issuance::TestKeySet OtherKeySet() {
  nlohmann::json keys;
  for (const std::string& role : issuance::TestKeySet::RequiredRoles()) {
    keys[role] = ToHex(View(issuance::TestKeySet::Embedded().MasterKey(role)));
  }
  keys["visit_record"] = "0123456789ABCDEFFEDCBA9876543210";
  return Must(
      issuance::TestKeySet::FromJson(nlohmann::json{{"test_only", true}, {"keys", keys}}.dump()));
}

card::HolderData ChineseHolder() {
  card::HolderData h = issuance::TestHolder(kAsn, kPin);
  h.ssse_name_gbk = HexToBytes("D5C5C8FD");              // 张三
  h.emergency_gbk = HexToBytes("C7E0C3B9CBD8B9FDC3F4");  // 青霉素过敏
  h.sex = '2';
  h.ethnicity = 0x03;
  h.insured_category = 0x02;
  h.insurance_status = 0x01;
  h.designated_facilities = {"H110100001", "H110100002"};
  return h;
}

class SsseTest : public ::testing::Test {
 protected:
  void Issue(card::HolderData holder) {
    card_ = Must(issuance::IssueTestCard(issuance::TestKeySet::Embedded(),
                                         std::make_unique<nvm::FaultInjectionMedium>(),
                                         std::move(holder)));
    interposed_ = std::make_shared<InterposedCard>(card_);
    card_reader_ = std::make_unique<reader::InProcessReader>("card", interposed_);
    Must(card_reader_->Connect());
  }
  std::unique_ptr<reader::Reader> NewPsam(const issuance::TestKeySet& keys) {
    std::shared_ptr<psam::Psam> psam = Must(issuance::IssueTestPsam(
        keys, std::make_unique<nvm::FaultInjectionMedium>(), kPsamSerial, kTerminalNumber));
    auto r = std::make_unique<reader::InProcessReader>("psam", psam);
    Must(r->Connect());
    psams_.push_back(std::move(psam));
    return r;
  }
  void SetUp() override { Issue(ChineseHolder()); }

  static VisitRecord Visit(int day, std::uint32_t total) {
    VisitRecord v;
    v.date = Date{2026, 11, day};
    v.time = TimeOfDay{9, 30, 5};
    v.facility_code = "H110100001";
    v.visit_type = 0x01;
    v.diagnosis = "J06.9";
    v.total = total;
    v.paid_by_account = total / 2;
    v.paid_by_pool = total - total / 2;
    return v;
  }
  VisitRecordKey Key() const { return VisitRecordKey{kAsn, 0x01}; }

  std::shared_ptr<card::Card> card_;
  std::shared_ptr<InterposedCard> interposed_;
  std::unique_ptr<reader::Reader> card_reader_;
  std::vector<std::shared_ptr<psam::Psam>> psams_;
};

// ---- Cardholder ------------------------------------------------------------------------------

TEST_F(SsseTest, ReadCardholder_onAnIssuedCard_returnsEveryFieldWithGbkAsUtf8) {
  const Cardholder h = Must(ReadCardholder(*card_reader_));
  EXPECT_EQ(interposed_->commands.size(), 17u);  // SELECT SSSE and one READ RECORD a tag
  EXPECT_EQ(h.name, "张三");
  EXPECT_EQ(h.social_security_number, "110101199001011234");
  EXPECT_EQ(h.sex, '2');
  EXPECT_EQ(h.ethnicity, "03");
  EXPECT_EQ(h.birthplace, "110101");
  EXPECT_EQ(h.birth_date, (Date{1990, 1, 1}));
  EXPECT_EQ(h.ssse_card_id, "0000000000000042");
  EXPECT_EQ(h.ssse_card_number, "T00000042");
  EXPECT_EQ(h.ssse_issue_date, (Date{2026, 1, 1}));
  EXPECT_EQ(h.ssse_expiry_date, (Date{2036, 12, 31}));
  EXPECT_EQ(h.insured_category, 0x02);
  EXPECT_EQ(h.insurance_status, 0x01);
  EXPECT_EQ(h.employer_unit_code, "TESTUNIT0000001");
  EXPECT_EQ(h.pooling_area, "110100");
  EXPECT_EQ(h.designated_facilities, (std::vector<std::string>{"H110100001", "H110100002"}));
  EXPECT_EQ(h.emergency_data, "青霉素过敏");
}

TEST_F(SsseTest, ReadCardholder_withoutOptionalRecords_leavesThemEmpty) {
  card::HolderData holder = issuance::TestHolder(kAsn, kPin);
  holder.designated_facilities.clear();
  holder.emergency_gbk.clear();
  Issue(holder);
  const Cardholder h = Must(ReadCardholder(*card_reader_));
  EXPECT_EQ(h.name, "TEST CARDHOLDER");
  EXPECT_TRUE(h.designated_facilities.empty());
  EXPECT_TRUE(h.emergency_data.empty());
}

TEST_F(SsseTest, CardholderText_masksTheSsnUnlessAskedForTheFullNumber) {
  const Cardholder h = Must(ReadCardholder(*card_reader_));
  const std::string masked = CardholderText(h);
  EXPECT_NE(masked.find("110101********1234"), std::string::npos) << masked;
  EXPECT_EQ(masked.find("110101199001011234"), std::string::npos) << masked;
  EXPECT_NE(masked.find("张三"), std::string::npos);
  EXPECT_NE(masked.find("female"), std::string::npos);
  EXPECT_NE(masked.find("retiree"), std::string::npos);
  EXPECT_NE(masked.find("H110100001, H110100002"), std::string::npos);
  EXPECT_NE(CardholderText(h, SsnDisplay::kFull).find("110101199001011234"), std::string::npos);
}

TEST_F(SsseTest, CardholderJson_isValidJsonWithTheMaskedSsnByDefault) {
  const Cardholder h = Must(ReadCardholder(*card_reader_));
  const auto j = nlohmann::json::parse(CardholderJson(h));
  EXPECT_EQ(j.at("name"), "张三");
  EXPECT_EQ(j.at("social_security_number"), "110101********1234");
  EXPECT_EQ(j.at("social_security_number_masked"), true);
  EXPECT_EQ(j.at("birth_date"), "1990-01-01");
  EXPECT_EQ(j.at("insured_category_name"), "retiree");
  EXPECT_EQ(j.at("designated_facilities").size(), 2u);
  EXPECT_EQ(j.at("emergency_data"), "青霉素过敏");
  const auto full = nlohmann::json::parse(CardholderJson(h, SsnDisplay::kFull));
  EXPECT_EQ(full.at("social_security_number"), "110101199001011234");
}

TEST(MaskSsn, KeepsTheFirstSixAndTheLastFour) {
  EXPECT_EQ(MaskSsn("110101199001011234"), "110101********1234");
  EXPECT_EQ(MaskSsn("11010119900101123X"), "110101********123X");
  EXPECT_EQ(MaskSsn("12345678901"), "123456*8901");
  EXPECT_EQ(MaskSsn("1234567890"), "**********");
  EXPECT_EQ(MaskSsn(""), "");
}

TEST_F(SsseTest, ReadCardholder_badCardData_isAnErrorNamingTheField) {
  card::HolderData bad_sex = ChineseHolder();
  bad_sex.sex = 'M';
  Issue(bad_sex);
  auto r = ReadCardholder(*card_reader_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("SSSE EF06 tag 0A"), std::string::npos) << r.error().message;

  card::HolderData bad_name = ChineseHolder();
  bad_name.ssse_name_gbk = HexToBytes("FFFF");
  Issue(bad_name);
  r = ReadCardholder(*card_reader_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("SSSE EF06 tag 09: not GBK"), std::string::npos)
      << r.error().message;

  card::HolderData bad_ssn = ChineseHolder();
  bad_ssn.social_security_number = "11010119900101123?";
  Issue(bad_ssn);
  r = ReadCardholder(*card_reader_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("SSSE EF06 tag 08"), std::string::npos) << r.error().message;
}

TEST_F(SsseTest, ReadCardholder_malformedTlvAnswers_areErrors) {
  // READ RECORD EF06 tag 0D (P2 = SFI 6 << 3 | 4 = 34).
  const auto is_birth_date_read = [](ByteView c) {
    return c.size() >= 4 && c[1] == 0xB2 && c[2] == 0x0D && c[3] == 0x34;
  };
  const std::vector<std::pair<Bytes, std::string>> cases = {
      {HexToBytes("0D0319900101"
                  "9000"),
       "not a TLV record"},  // length byte lies
      {HexToBytes("0D03199001"
                  "9000"),
       "3 bytes, expected 4"},  // short date
      {HexToBytes("0D0419901301"
                  "9000"),
       "tag 0D: not a date"},  // month 13
      {HexToBytes("0C0419900101"
                  "9000"),
       "not a TLV record"},  // another tag
      {HexToBytes("6A83"), "tag 0D: missing on the card"},
  };
  for (const auto& [answer, expected] : cases) {
    interposed_->override_answer = [&](ByteView c) -> std::optional<Bytes> {
      if (is_birth_date_read(c)) return answer;
      return std::nullopt;
    };
    auto r = ReadCardholder(*card_reader_);
    ASSERT_FALSE(r.ok()) << ToHex(View(answer));
    EXPECT_NE(r.error().message.find(expected), std::string::npos)
        << ToHex(View(answer)) << ": " << r.error().message;
  }
}

TEST_F(SsseTest, ReadCardholder_cardWithoutSsse_saysItIsNotAMedcardCard) {
  interposed_->override_answer = [](ByteView c) -> std::optional<Bytes> {
    if (c.size() >= 2 && c[1] == 0xA4) return HexToBytes("6A82");
    return std::nullopt;
  };
  auto r = ReadCardholder(*card_reader_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "not a medcard card: no social-security (SSSE) application (6A82)");
}

// ---- Visit records ---------------------------------------------------------------------------

TEST(VisitRecordEncoding, RoundTripsThe38Bytes) {
  VisitRecord v;
  v.date = Date{2026, 11, 25};
  v.time = TimeOfDay{14, 3, 9};
  v.facility_code = "H1101";
  v.visit_type = 0x02;
  v.diagnosis = "E11.9";
  v.total = 12345;
  v.paid_by_account = 10000;
  v.paid_by_pool = 2000;
  const Bytes encoded = Must(v.Encode());
  EXPECT_EQ(ToHex(View(encoded)),
            "20261125"
            "140309"
            "48313130312020202020"
            "02"
            "4531312E39202020"
            "00003039"
            "00002710"
            "000007D0");
  EXPECT_EQ(Must(VisitRecord::Parse(View(encoded))), v);
  EXPECT_FALSE(VisitRecord::Parse(ByteView(encoded).first(37)).ok());
  // A record whose account and pool shares exceed its total is no visit record (found by
  // fuzz/ssse_fuzz): total 123.45, account 100.00, pool 30.00.
  Bytes overpaid = encoded;
  overpaid[36] = 0x0B;
  overpaid[37] = 0xB8;
  EXPECT_FALSE(VisitRecord::Parse(View(overpaid)).ok());
}

TEST(VisitRecordEncoding, RefusesFieldsTheRecordCannotHold) {
  const auto error_of = [](const std::function<void(VisitRecord&)>& change) {
    VisitRecord v;
    v.date = Date{2026, 11, 25};
    v.facility_code = "H1101";
    v.diagnosis = "E11.9";
    v.total = 100;
    change(v);
    auto encoded = v.Encode();
    return encoded.ok() ? std::string("accepted") : encoded.error().message;
  };
  EXPECT_EQ(error_of([](VisitRecord&) {}), "accepted");
  EXPECT_EQ(error_of([](VisitRecord& v) {
              v.date = Date{2026, 2, 30};
            }),
            "visit record: the date is not a date");
  EXPECT_EQ(error_of([](VisitRecord& v) {
              v.time = TimeOfDay{24, 0, 0};
            }),
            "visit record: the time is not a time of day");
  EXPECT_EQ(error_of([](VisitRecord& v) { v.facility_code = "h1101"; }),
            "visit record: the facility code is 1 to 10 of 0-9 A-Z");
  EXPECT_EQ(error_of([](VisitRecord& v) { v.facility_code = "H1234567890"; }),
            "visit record: the facility code is 1 to 10 of 0-9 A-Z");
  EXPECT_NE(error_of([](VisitRecord& v) { v.diagnosis = ""; }).find("diagnosis"),
            std::string::npos);
  EXPECT_NE(error_of([](VisitRecord& v) { v.diagnosis = "J06 9"; }).find("diagnosis"),
            std::string::npos);
  EXPECT_EQ(error_of([](VisitRecord& v) {
              v.paid_by_account = 60;
              v.paid_by_pool = 41;
            }),
            "visit record: paid by account 0.60 + paid by pool 0.41 exceed the total 1.00");
  EXPECT_NE(error_of([](VisitRecord& v) {
              v.paid_by_account = 0xFFFFFFFF;
              v.paid_by_pool = 0xFFFFFFFF;
              v.total = 0xFFFFFFFF;
            }).find("exceed"),
            std::string::npos);
}

TEST_F(SsseTest, AppendVisitRecord_recordReadsBackNewestFirst) {
  auto psam = NewPsam(issuance::TestKeySet::Embedded());
  EXPECT_TRUE(Must(ReadVisitRecords(*card_reader_)).empty());
  interposed_->commands.clear();
  ASSERT_TRUE(AppendVisitRecord(*card_reader_, *psam, Key(), Visit(1, 5000)).ok());
  EXPECT_EQ(interposed_->commands.size(), 3u);  // SELECT SSSE, GET CHALLENGE, APPEND RECORD
  const Status second = AppendVisitRecord(*card_reader_, *psam, Key(), Visit(2, 7001));
  ASSERT_TRUE(second.ok()) << second.error().message;
  const auto visits = Must(ReadVisitRecords(*card_reader_));
  ASSERT_EQ(visits.size(), 2u);
  EXPECT_EQ(visits[0], Visit(2, 7001));
  EXPECT_EQ(visits[1], Visit(1, 5000));
  const std::string table = FormatVisitRecords(visits);
  EXPECT_NE(
      table.find(
          "2026-11-02 09:30:05 H110100001 01   J06.9            70.01       35.00       35.01\n"),
      std::string::npos)
      << table;
  EXPECT_NE(table.find("70.01"), std::string::npos) << table;

  // The append went out with secure messaging: 04 E2 00 40 2A, after a GET CHALLENGE.
  const auto& sent = interposed_->commands;
  auto append = std::find_if(sent.begin(), sent.end(),
                             [](const Bytes& c) { return c.size() > 5 && c[1] == 0xE2; });
  ASSERT_NE(append, sent.end());
  EXPECT_EQ(ToHex(ByteView(*append).first(5)), "04E200402A");
  EXPECT_EQ(ToHex(ByteView(*(append - 1)).first(4)), "00840000");

  // The medical application selects again afterwards, as purse commands need.
  EXPECT_TRUE(SelectMedicalApplication(*card_reader_).ok());
}

TEST_F(SsseTest, AppendVisitRecord_cyclicFileKeepsTheNewestTen) {
  auto psam = NewPsam(issuance::TestKeySet::Embedded());
  for (int day = 1; day <= 12; ++day) {
    const Status s =
        AppendVisitRecord(*card_reader_, *psam, Key(), Visit(day, static_cast<std::uint32_t>(day)));
    ASSERT_TRUE(s.ok()) << day << ": " << s.error().message;
  }
  const auto visits = Must(ReadVisitRecords(*card_reader_));
  ASSERT_EQ(visits.size(), kVisitRecordCount);
  for (std::size_t i = 0; i < visits.size(); ++i) {
    EXPECT_EQ(visits[i].date.day, static_cast<int>(12 - i));
  }
}

TEST_F(SsseTest, AppendVisitRecord_psamOfAnotherScheme_isRefused6988AndNothingChanges) {
  auto good = NewPsam(issuance::TestKeySet::Embedded());
  ASSERT_TRUE(AppendVisitRecord(*card_reader_, *good, Key(), Visit(1, 100)).ok());
  const auto before = Must(ReadVisitRecords(*card_reader_));

  auto foreign = NewPsam(OtherKeySet());
  const Status refused = AppendVisitRecord(*card_reader_, *foreign, Key(), Visit(2, 200));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "APPEND RECORD EF08: the card refused the MAC: the PSAM's visit_record key is not "
            "this card's (6988)");
  EXPECT_EQ(Must(ReadVisitRecords(*card_reader_)), before);

  // A MAC of another card (its ASN) is refused the same way.
  VisitRecordKey other_card{HexToBytes("11000000000000000043"), 0x01};
  EXPECT_FALSE(AppendVisitRecord(*card_reader_, *good, other_card, Visit(3, 300)).ok());
  EXPECT_EQ(Must(ReadVisitRecords(*card_reader_)), before);

  // The right PSAM still appends (two failures are under the key's limit of 3).
  EXPECT_TRUE(AppendVisitRecord(*card_reader_, *good, Key(), Visit(4, 400)).ok());
  EXPECT_EQ(Must(ReadVisitRecords(*card_reader_)).size(), 2u);
}

TEST_F(SsseTest, AppendVisitRecord_psamWithoutThatKeyVersion_saysSo) {
  auto psam = NewPsam(issuance::TestKeySet::Embedded());
  const Status s = AppendVisitRecord(*card_reader_, *psam, VisitRecordKey{kAsn, 0x02}, Visit(1, 1));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message,
            "PSAM DELIVERY KEY: the PSAM has no visit_record key of version 02 (6A88)");
  EXPECT_TRUE(Must(ReadVisitRecords(*card_reader_)).empty());
}

TEST_F(SsseTest, AppendVisitRecord_invalidRecord_sendsNothing) {
  auto psam = NewPsam(issuance::TestKeySet::Embedded());
  VisitRecord v = Visit(1, 100);
  v.paid_by_pool = 101;
  interposed_->commands.clear();
  EXPECT_FALSE(AppendVisitRecord(*card_reader_, *psam, Key(), v).ok());
  EXPECT_FALSE(
      AppendVisitRecord(*card_reader_, *psam, VisitRecordKey{Bytes(9, 0x11), 1}, Visit(1, 100))
          .ok());
  EXPECT_TRUE(interposed_->commands.empty());
}

// ---- History and money -----------------------------------------------------------------------

TEST_F(SsseTest, FormatHistory_ofARealCardLog_showsLoadAndPurchaseInYuan) {
  auto psam = NewPsam(issuance::TestKeySet::Embedded());
  auto app = Must(SelectMedicalApplication(*card_reader_));
  ASSERT_TRUE(VerifyPin(*card_reader_, kPin).ok());
  issuance::TestIssuerHost issuer(issuance::TestKeySet::Embedded());
  LoadRequest load{Wallet::kEd, 10000, kTerminalNumber, Date{2026, 11, 24}, TimeOfDay{8, 0, 0}};
  ASSERT_TRUE(Load(*card_reader_, issuer, app, load).ok());
  PurchaseRequest purchase{Wallet::kEd, 1250, Date{2026, 11, 25}, TimeOfDay{14, 3, 9}};
  ASSERT_TRUE(Purchase(*card_reader_, *psam, app, purchase).ok());

  const auto log = Must(ReadTransactionLog(*card_reader_));
  const std::string table = FormatHistory(log);
  EXPECT_EQ(table,
            " serial  type               wallet       amount  date       time     terminal\n"
            "      0  purchase           ED            12.50  2026-11-25 14:03:09 000000000107\n"
            "      0  load               ED           100.00  2026-11-24 08:00:00 000000000107\n");

  const auto j = nlohmann::json::parse(FormatHistory(log, HistoryFormat::kJson));
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0].at("type"), "purchase");
  EXPECT_EQ(j[0].at("type_code"), 5);
  EXPECT_EQ(j[0].at("wallet"), "ED");
  EXPECT_EQ(j[0].at("amount"), "12.50");
  EXPECT_EQ(j[0].at("amount_fen"), 1250);
  EXPECT_EQ(j[0].at("date"), "2026-11-25");
  EXPECT_EQ(j[0].at("time"), "14:03:09");
  EXPECT_EQ(j[0].at("terminal_number"), "000000000107");
  EXPECT_EQ(j[1].at("type"), "load");
}

TEST(FormatHistory, UnknownTypesMissingDatesAndAnEmptyLog) {
  LogRecord r;
  r.serial = 7;
  r.type = 0x42;
  r.amount = 5;
  r.terminal_number = HexToBytes("000000000001");
  const std::string table = FormatHistory({r});
  EXPECT_EQ(table,
            " serial  type               wallet       amount  date       time     terminal\n"
            "      7  type 0x42                         0.05  -          -        000000000001\n");
  const auto j = nlohmann::json::parse(FormatHistory({r}, HistoryFormat::kJson));
  EXPECT_TRUE(j[0].at("date").is_null());
  EXPECT_EQ(j[0].at("wallet"), "");
  EXPECT_NE(FormatHistory({}).find("(no transactions)"), std::string::npos);
  EXPECT_EQ(FormatHistory({}, HistoryFormat::kJson), "[]");
  EXPECT_EQ(TransactionTypeName(0x02), "load");
  EXPECT_EQ(TransactionTypeName(0x06), "purchase");
  EXPECT_EQ(TransactionTypeName(0x03), "unload");
}

}  // namespace
}  // namespace medcard::terminal
