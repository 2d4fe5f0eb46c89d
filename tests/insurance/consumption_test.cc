// The bank's daily consumption detail on SQLite and PostgreSQL: exported from the host's cleared
// purchases (only accepted ones, only the day's), signed, authenticated and checked by the
// agency, imported once per day, and summed per person and per facility for supervision.
#include "insurance/consumption.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "host/host.h"
#include "ledger/ledger.h"
#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

BatchKey Key(char digit = '5') { return *BatchKey::FromHex(std::string(64, digit)); }

std::string Replace(std::string text, std::string_view from, std::string_view to) {
  const auto at = text.find(from);
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

class ConsumptionTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    for (auto* target : {&bank_db_, &agency_db_}) {
      auto url = test_support::NewTestDatabaseUrl(GetParam());
      ASSERT_TRUE(url.ok()) << url.error().message;
      auto db = store::Database::Open(*url);
      ASSERT_TRUE(db.ok()) << db.error().message;
      *target = std::move(db).value();
    }
    auto bank = bank_db_->Connect();
    ASSERT_TRUE(bank.ok());
    bank_ = std::move(bank).value();
    ASSERT_TRUE(store::Migrate(*bank_, ledger::Migrations()).ok());
    ASSERT_TRUE(store::Migrate(*bank_, host::Migrations()).ok());
    auto agency = agency_db_->Connect();
    ASSERT_TRUE(agency.ok());
    agency_ = std::move(agency).value();
    ASSERT_TRUE(store::Migrate(*agency_, Migrations()).ok());

    // Two hospitals' terminals, two cardholders; purchases on 2 and 3 November.
    Exec(
        "INSERT INTO host_merchants (id, name, grade) VALUES ('H001', 'City Hospital', '3'),"
        " ('P002', 'Corner Pharmacy', '1')");
    Exec(
        "INSERT INTO host_terminals (terminal_number, merchant_id, psam_serial, tmk_name, status)"
        " VALUES ('000000000001', 'H001', 'S1', 'tmk1', 'active'),"
        " ('000000000002', 'P002', 'S2', 'tmk2', 'active')");
    Exec(
        "INSERT INTO host_cards (asn, holder_reference, person_id, status) VALUES"
        " ('1000000000000001', 'h1', '110101199001011237', 'active'),"
        " ('1000000000000002', 'h2', '11010120000515234X', 'active')");
    Purchase("1000000000000001", 7, 2500, "000000000001", "20261102091500", "accepted");
    Purchase("1000000000000001", 8, 1050, "000000000002", "20261102180102", "accepted");
    Purchase("1000000000000002", 3, 40000, "000000000001", "20261102120000", "accepted");
    Purchase("1000000000000002", 4, 999, "000000000002", "20261102130000", "rejected");
    Purchase("1000000000000002", 5, 700, "000000000002", "20261103080000", "accepted");
  }

  void Exec(const std::string& sql) {
    auto done = bank_->Execute(sql);
    ASSERT_TRUE(done.ok()) << done.error().message;
  }
  void Purchase(const char* asn, int serial, Fen amount, const char* terminal, const char* time,
                const char* outcome, int type = 6) {
    auto done = bank_->Execute(
        "INSERT INTO host_purchases (asn, offline_serial, type, amount, balance_before,"
        " balance_after, terminal_number, terminal_serial, txn_time, tac, outcome, reason)"
        " VALUES (?, ?, ?, ?, 100000, 90000, ?, 1, ?, '00000000', ?, '')",
        {asn, serial, type, amount, terminal, time, outcome});
    ASSERT_TRUE(done.ok()) << done.error().message;
  }

  std::string ExportedFile(const Date& day) {
    auto detail = ExportConsumption(*bank_, day);
    EXPECT_TRUE(detail.ok()) << detail.error().message;
    return detail.ok() ? WriteConsumptionDetail(*detail, Key()) : std::string();
  }

  std::unique_ptr<store::Database> bank_db_, agency_db_;
  std::unique_ptr<store::Connection> bank_, agency_;
};

TEST_P(ConsumptionTest, TheHostExportsTheDaysClearedPurchasesWithPersonAndMerchant) {
  auto detail = ExportConsumption(*bank_, {2026, 11, 2});
  ASSERT_TRUE(detail.ok()) << detail.error().message;
  EXPECT_THAT(detail->lines,
              ElementsAre(ConsumptionLine{1, "1000000000000001/EP/7", "110101199001011237", "H001",
                                          2500, "2026-11-02T09:15:00"},
                          ConsumptionLine{2, "1000000000000002/EP/3", "11010120000515234X", "H001",
                                          40000, "2026-11-02T12:00:00"},
                          ConsumptionLine{3, "1000000000000001/EP/8", "110101199001011237", "P002",
                                          1050, "2026-11-02T18:01:02"}));
  EXPECT_EQ(detail->total_fen(), 43550);
  auto parsed = ParseConsumptionDetail(WriteConsumptionDetail(*detail, Key()), Key());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->lines, detail->lines);
  EXPECT_EQ(parsed->day, (Date{2026, 11, 2}));
}

// ED and EP number their offline serials each from 0: one card's ED purchase 7 and EP purchase 7
// on the same day are two lines, and the day imports.
TEST_P(ConsumptionTest, OneCardsEdAndEpPurchasesWithTheSameSerialAreTwoLines) {
  Purchase("1000000000000001", 7, 300, "000000000001", "20261102100000", "accepted", 5);
  auto detail = ExportConsumption(*bank_, {2026, 11, 2});
  ASSERT_TRUE(detail.ok()) << detail.error().message;
  ASSERT_EQ(detail->lines.size(), 4u);
  EXPECT_EQ(detail->lines[1].reference, "1000000000000001/ED/7");
  EXPECT_EQ(detail->lines[0].reference, "1000000000000001/EP/7");
  auto imported = ImportConsumption(*agency_, ExportedFile({2026, 11, 2}), Key());
  ASSERT_TRUE(imported.ok()) << imported.error().message;
  EXPECT_EQ(imported->count, 4);
  EXPECT_EQ(imported->total_fen, 43850);
}

TEST_P(ConsumptionTest, ImportIsOncePerDayAndSumsPerPersonAndFacility) {
  const std::string day2 = ExportedFile({2026, 11, 2});
  auto imported = ImportConsumption(*agency_, day2, Key());
  ASSERT_TRUE(imported.ok()) << imported.error().message;
  EXPECT_EQ(imported->count, 3);
  EXPECT_EQ(imported->total_fen, 43550);
  EXPECT_FALSE(imported->already_imported);

  auto again = ImportConsumption(*agency_, day2, Key());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->already_imported);

  ASSERT_TRUE(ImportConsumption(*agency_, ExportedFile({2026, 11, 3}), Key()).ok());

  auto by_person =
      ConsumptionTotals(*agency_, ConsumptionBy::kPerson, {2026, 11, 1}, {2026, 11, 30});
  ASSERT_TRUE(by_person.ok());
  EXPECT_THAT(*by_person, ElementsAre(ConsumptionTotal{"11010120000515234X", 2, 40700},
                                      ConsumptionTotal{"110101199001011237", 2, 3550}));
  auto by_facility =
      ConsumptionTotals(*agency_, ConsumptionBy::kMerchant, {2026, 11, 2}, {2026, 11, 2});
  ASSERT_TRUE(by_facility.ok());
  EXPECT_THAT(*by_facility,
              ElementsAre(ConsumptionTotal{"H001", 2, 42500}, ConsumptionTotal{"P002", 1, 1050}));

  // The same day with other figures is refused and changes nothing.
  Purchase("1000000000000002", 6, 100, "000000000002", "20261102230000", "accepted");
  auto changed = ImportConsumption(*agency_, ExportedFile({2026, 11, 2}), Key());
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.error().code, access::ErrorCode::kConflict);
  EXPECT_THAT(changed.error().message, HasSubstr("imported before with other figures"));
  auto rows = agency_->Query("SELECT COUNT(*) FROM si_consumption");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), 4);
}

TEST_P(ConsumptionTest, AnAlteredOrForeignFileIsRefusedWhole) {
  const std::string file = ExportedFile({2026, 11, 2});
  auto altered = ImportConsumption(
      *agency_, Replace(file, "\"amount_fen\":2500", "\"amount_fen\":250"), Key());
  ASSERT_FALSE(altered.ok());
  EXPECT_EQ(altered.error().code, access::ErrorCode::kInvalid);
  EXPECT_THAT(altered.error().message, HasSubstr("authentication failed"));
  auto foreign = ImportConsumption(*agency_, file, Key('6'));
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(foreign.error().message, HasSubstr("authentication failed"));
  auto rows = agency_->Query("SELECT COUNT(*) FROM si_consumption_days");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), 0);

  // Signed correctly but inconsistent: the parser still checks the counts and the day.
  ConsumptionDetail wrong_day{
      {2026, 11, 2}, {{1, "1/1", "110101199001011237", "H001", 100, "2026-11-03T00:00:01"}}};
  auto parsed = ParseConsumptionDetail(WriteConsumptionDetail(wrong_day, Key()), Key());
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.error().message, HasSubstr("line 2: time: not a time"));
}

INSTANTIATE_TEST_SUITE_P(Engines, ConsumptionTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
