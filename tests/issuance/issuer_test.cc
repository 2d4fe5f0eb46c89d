// The production issuer in process: cards and PSAMs personalised from a key store through a
// reader, then used — loaded, paid with, TACs and PSAM totals verified through the store. The
// safety cases: an issued card refused, a duplicate ASN, no number spent on bad input, the PIN
// nowhere but on the card, and a card (or PSAM) pulled out after every possible command.
#include "issuance/issuer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "crypto/crypto.h"
#include "issuance/test_issuer.h"
#include "issuance_test_support.h"
#include "terminal/purse.h"

namespace medcard::issuance {
namespace {

using nlohmann::json;
using terminal::Wallet;
using ::testing::HasSubstr;
using testing::TempDir;

const Date kToday{2026, 11, 25};
const TimeOfDay kNoon{12, 0, 0};
const Bytes kTerminal = HexToBytes("000000000042");

std::string FileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Contains(const std::string& haystack, ByteView needle) {
  return haystack.find(std::string(needle.begin(), needle.end())) != std::string::npos;
}

class IssuerTest : public ::testing::Test {
 protected:
  void SetUp() override { UseStore(testing::TestKeyStore(dir_ / "store")); }

  void UseStore(std::unique_ptr<keys::KeyStore> store) {
    issuer_.reset();
    store_ = std::move(store);
    ASSERT_NE(store_, nullptr);
    auto log = IssuanceLog::Open(dir_ / "log");
    ASSERT_TRUE(log.ok()) << log.error().message;
    log_ = std::move(log).value();
    IssuanceConfig config;
    config.asn_prefix = "1100";
    config.psam_serial_prefix = "5000";
    issuer_ = std::make_unique<Issuer>(*store_, *log_, config, "alice");
    issuer_->set_issue_date(kToday);
  }

  std::shared_ptr<card::Card> BlankCard(std::unique_ptr<nvm::Medium> medium = nullptr) {
    if (!medium) medium = std::make_unique<nvm::FaultInjectionMedium>();
    auto card = ManufactureBlankCard(*store_, std::move(medium), crypto::RandomBytes(8));
    EXPECT_TRUE(card.ok()) << card.error().message;
    return card.ok() ? std::shared_ptr<card::Card>(std::move(card).value()) : nullptr;
  }
  std::shared_ptr<psam::Psam> BlankPsam(const Bytes& chip_serial) {
    auto made =
        ManufactureBlankPsam(*store_, std::make_unique<nvm::FaultInjectionMedium>(), chip_serial);
    EXPECT_TRUE(made.ok()) << made.error().message;
    return made.ok() ? std::shared_ptr<psam::Psam>(std::move(made).value()) : nullptr;
  }

  CardIssueRequest Request(std::string pin = "135790") {
    CardIssueRequest r;
    r.holder = testing::SampleHolder();
    r.pin = std::move(pin);
    return r;
  }

  Result<IssuedCard> Issue(const std::shared_ptr<card::Card>& card,
                           const CardIssueRequest& request) {
    reader::InProcessReader station("station", card);
    return issuer_->IssueCard(station, request);
  }

  Result<IssuedPsam> IssuePsamFor(const Bytes& terminal, std::shared_ptr<psam::Psam>* out) {
    const Bytes chip = crypto::RandomBytes(8);
    *out = BlankPsam(chip);
    reader::InProcessReader station("psam station", *out);
    PsamIssueRequest request;
    request.terminal_number = terminal;
    request.chip_serial = chip;
    return issuer_->IssuePsam(station, request);
  }

  std::vector<json> Records() {
    auto records = log_->ReadAll();
    EXPECT_TRUE(records.ok());
    return records.ok() ? *records : std::vector<json>{};
  }

  TempDir dir_;
  std::unique_ptr<keys::KeyStore> store_;
  std::unique_ptr<IssuanceLog> log_;
  std::unique_ptr<Issuer> issuer_;
};

TEST_F(IssuerTest, IssuesAnOperationalTestCardCarryingTheHoldersData) {
  auto card = BlankCard();
  auto issued = Issue(card, Request());
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->asn, HexToBytes("11000000000000000001"));
  EXPECT_TRUE(issued->test_card);
  EXPECT_EQ(issued->key_version, 1);

  const card::CardSummary summary = card->Inspect();
  EXPECT_EQ(summary.lifecycle, card::Lifecycle::kOperational);
  EXPECT_FALSE(summary.transport_key_present);
  EXPECT_EQ(summary.chip_serial, issued->chip_serial);
  const CardholderView holder = ReadCardholder(summary);
  EXPECT_EQ(holder.name, "张三");
  EXPECT_EQ(holder.social_security_number, "11010519491231002X");
  EXPECT_EQ(holder.birth_date, "1949-12-31");
  EXPECT_EQ(holder.pooling_area, "110100");

  reader::InProcessReader terminal_reader("terminal", card);
  ASSERT_TRUE(terminal_reader.Connect().ok());
  auto app = terminal::SelectMedicalApplication(terminal_reader);
  ASSERT_TRUE(app.ok()) << app.error().message;
  EXPECT_TRUE(app->test_card);  // SFI 15 issuer data "TE": a test store issues test cards
  EXPECT_EQ(app->asn, issued->asn);
  EXPECT_EQ(app->start_date, kToday);
  EXPECT_EQ(app->expiry_date, (Date{2036, 11, 25}));
}

TEST_F(IssuerTest, TheLogRecordsTheReservationAndTheIssuanceWithKeyCheckValues) {
  auto issued = Issue(BlankCard(), Request());
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  const auto records = Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].at("event"), "reserved");
  const json& r = records[1];
  EXPECT_EQ(r.at("event"), "issued");
  EXPECT_EQ(r.at("kind"), "card");
  EXPECT_EQ(r.at("asn"), "11000000000000000001");
  EXPECT_EQ(r.at("chip_serial"), ToHex(View(issued->chip_serial)));
  EXPECT_EQ(r.at("holder"), "11010519491231002X");
  EXPECT_EQ(r.at("operator"), "alice");
  EXPECT_EQ(r.at("date"), "2026-11-25");
  EXPECT_EQ(r.at("test"), true);
  EXPECT_EQ(r.at("key_version"), 1);
  auto stored = store_->List();
  ASSERT_TRUE(stored.ok());
  std::set<std::string> logged;
  for (const json& k : r.at("keys")) {
    logged.insert(k.at("name").get<std::string>());
    const auto it = std::find_if(stored->begin(), stored->end(), [&](const keys::KeyInfo& i) {
      return i.name == k.at("name") && i.version == k.at("version");
    });
    ASSERT_NE(it, stored->end()) << k.dump();
    EXPECT_EQ(k.at("kcv"), it->kcv);
  }
  EXPECT_EQ(logged,
            (std::set<std::string>{"purchase", "load", "tac", "unload", "overdraw", "pin_unblock",
                                   "pin_reload", "maintenance", "visit_record", "transport"}));
}

TEST_F(IssuerTest, ThePinIsInNoLogAndNoCardImageInClear) {
  const std::string image = dir_ / "card.img";
  auto card = BlankCard(std::move(nvm::OpenFileMedium(image)).value());
  auto issued = Issue(card, Request("582914"));
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  const std::string log_text = FileText(log_->path());
  const std::string image_bytes = FileText(image);
  for (const std::string* text : {&log_text, &image_bytes}) {
    EXPECT_FALSE(Contains(*text, View(Bytes{'5', '8', '2', '9', '1', '4'})));
    EXPECT_FALSE(Contains(*text, View(HexToBytes("582914"))));
  }
  reader::InProcessReader terminal_reader("terminal", card);
  ASSERT_TRUE(terminal_reader.Connect().ok());
  ASSERT_TRUE(terminal::SelectMedicalApplication(terminal_reader).ok());
  EXPECT_TRUE(terminal::VerifyPin(terminal_reader, "582914").ok());
}

// The published test set holds pvk/CARDS (share/test-keyset.json), so test cards get a value too.
TEST_F(IssuerTest, WithAPinVerificationKeyTheLogGetsThePinsOffsetForTheHostButNeverThePin) {
  CardIssueRequest request = Request("582914");
  request.asn = HexToBytes("00004100000089999985");  // PAN 4100000089999985 (protocol.md 5.7)
  auto issued = Issue(BlankCard(), request);
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  const json r = Records().back();
  ASSERT_TRUE(r.contains("pin_verification")) << r.dump();
  const json& pv = r.at("pin_verification");
  EXPECT_EQ(pv.at("method"), "ibm3624");
  EXPECT_EQ(pv.at("key"), "pvk/CARDS");
  EXPECT_EQ(pv.at("version"), 1);
  const std::string offset = pv.at("offset");
  ASSERT_EQ(offset.size(), 6u);
  EXPECT_NE(offset, "582914");
  // The bank's check: a PIN pad block of the right PIN matches the offset, a wrong one does not.
  keys::KeyRef pvk = *store_->Find(keys::kCardPinVerificationKey);
  ASSERT_TRUE(store_->ImportTestKey("pek/T1", HexToBytes("0123456789ABCDEFFEDCBA9876543210")).ok());
  keys::KeyRef pek = *store_->Find("pek/T1");
  const auto block = [&](std::string_view pin) {
    return crypto::BlockCipher::Des(HexToBytes("0123456789ABCDEFFEDCBA9876543210"))
        ->EncryptEcb(
            *crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, pin, "4100000089999985"));
  };
  EXPECT_TRUE(*store_->VerifyPin(pek, block("582914"), "4100000089999985", pvk, offset));
  EXPECT_FALSE(*store_->VerifyPin(pek, block("582915"), "4100000089999985", pvk, offset));
  EXPECT_FALSE(Contains(FileText(log_->path()), View(Bytes{'5', '8', '2', '9', '1', '4'})));
  // A card whose ASN gives no PAN is never asked for an online PIN: no value.
  auto no_pan = Issue(BlankCard(), Request());
  ASSERT_TRUE(no_pan.ok()) << no_pan.error().message;
  EXPECT_FALSE(Records().back().contains("pin_verification"));
}

TEST_F(IssuerTest, WithoutAPinVerificationKeyTheLogHasNoPinVerificationValue) {
  UseStore(testing::TestKeyStore(dir_ / "store-without-pvk", keys::kCardPinVerificationKey));
  CardIssueRequest request = Request();
  request.asn = HexToBytes("00004100000089999985");
  ASSERT_TRUE(Issue(BlankCard(), request).ok());
  EXPECT_FALSE(Records().back().contains("pin_verification"));
}

TEST_F(IssuerTest, AProductionStoreIssuesUnmarkedCardsThatLoadPayAndClearThroughTheStore) {
  UseStore(testing::CeremonyKeyStore(dir_ / "production", 7));
  std::shared_ptr<card::Card> card = BlankCard();
  auto issued = Issue(card, Request());
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_FALSE(issued->test_card);
  std::shared_ptr<psam::Psam> psam;
  auto issued_psam = IssuePsamFor(kTerminal, &psam);
  ASSERT_TRUE(issued_psam.ok()) << issued_psam.error().message;
  EXPECT_FALSE(issued_psam->test_psam);
  EXPECT_EQ(psam->Inspect().lifecycle, psam::Lifecycle::kOperational);
  EXPECT_EQ(psam->Inspect().issuer_data, Bytes(2, 0x00));

  reader::InProcessReader card_reader("card", card), psam_reader("psam", psam);
  ASSERT_TRUE(card_reader.Connect().ok() && psam_reader.Connect().ok());
  auto app = terminal::SelectMedicalApplication(card_reader);
  ASSERT_TRUE(app.ok()) << app.error().message;
  EXPECT_FALSE(app->test_card);
  ASSERT_TRUE(terminal::VerifyPin(card_reader, "135790").ok());
  KeyStoreIssuerHost host(*store_);
  auto load =
      terminal::Load(card_reader, host, *app, {Wallet::kEd, 50000, kTerminal, kToday, kNoon});
  ASSERT_TRUE(load.ok()) << load.error().message;
  auto purchase =
      terminal::Purchase(card_reader, psam_reader, *app, {Wallet::kEd, 1234, kToday, kNoon});
  ASSERT_TRUE(purchase.ok()) << purchase.error().message;
  EXPECT_TRUE(host.VerifyPurchaseTac(*purchase, issued->key_version).ok());
  terminal::PurchaseResult forged = *purchase;
  forged.amount += 1;
  EXPECT_FALSE(host.VerifyPurchaseTac(forged, issued->key_version).ok());

  // The PSAM signs its totals with the settlement key only the store can check.
  const Bytes challenge = crypto::RandomBytes(8);
  auto totals =
      reader::Send(psam_reader, iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge, 22));
  ASSERT_TRUE(totals.ok() && totals->ok());
  auto ack = host.AcknowledgeSamTotals(issued_psam->psam_serial, challenge, totals->data, 1);
  ASSERT_TRUE(ack.ok()) << ack.error().message;
  auto cleared =
      reader::Send(psam_reader, iso7816::CommandApdu::Case3(0x80, 0x7C, 0x00, 0x00, *ack));
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->ok()) << cleared->sw.ToString();
  EXPECT_EQ(psam->Inspect().totals.count, 0u);
}

TEST_F(IssuerTest, RotatedCardKeysGiveAVersionTwoCardThatLoadsAndPays) {
  for (const char* role : {"purchase", "load", "tac", "unload", "overdraw", "pin_unblock",
                           "pin_reload", "maintenance", "visit_record"}) {
    ASSERT_TRUE(store_->Generate(role).ok()) << role;
  }
  std::shared_ptr<card::Card> card = BlankCard();
  auto issued = Issue(card, Request());
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->key_version, 2);
  for (const auto& file : card->Inspect().files) {
    for (const auto& key : file.keys) EXPECT_EQ(key.version, 2) << file.path;
  }
  std::shared_ptr<psam::Psam> psam;
  auto issued_psam = IssuePsamFor(kTerminal, &psam);
  ASSERT_TRUE(issued_psam.ok()) << issued_psam.error().message;
  int purchase_keys = 0;
  for (const auto& key : psam->Inspect().keys) {
    if (key.usage == psam::KeyUsage::kPurchase) ++purchase_keys;
  }
  EXPECT_EQ(purchase_keys, 2);  // v1 and v2: the PSAM serves cards of either version

  reader::InProcessReader card_reader("card", card), psam_reader("psam", psam);
  ASSERT_TRUE(card_reader.Connect().ok() && psam_reader.Connect().ok());
  auto app = terminal::SelectMedicalApplication(card_reader);
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE(terminal::VerifyPin(card_reader, "135790").ok());
  KeyStoreIssuerHost host(*store_);
  ASSERT_TRUE(
      terminal::Load(card_reader, host, *app, {Wallet::kEp, 900, kTerminal, kToday, kNoon}).ok());
  auto purchase =
      terminal::Purchase(card_reader, psam_reader, *app, {Wallet::kEp, 100, kToday, kNoon});
  ASSERT_TRUE(purchase.ok()) << purchase.error().message;
  EXPECT_TRUE(host.VerifyPurchaseTac(*purchase, 2).ok());
  EXPECT_FALSE(host.VerifyPurchaseTac(*purchase, 1).ok());
}

TEST_F(IssuerTest, RefusesACardThatIsAlreadyPersonalised) {
  auto card = BlankCard();
  ASSERT_TRUE(Issue(card, Request()).ok());
  auto again = Issue(card, Request());
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message,
              HasSubstr("card is already personalised (lifecycle operational)"));
  EXPECT_EQ(Records().size(), 2u) << "no number reserved for a refused card";
}

TEST_F(IssuerTest, ADuplicateAsnIsRefusedBeforeTheCardIsTouched) {
  CardIssueRequest request = Request();
  request.asn = HexToBytes("11000000000000000500");
  ASSERT_TRUE(Issue(BlankCard(), request).ok());
  auto second_card = BlankCard();
  auto duplicate = Issue(second_card, request);
  ASSERT_FALSE(duplicate.ok());
  EXPECT_THAT(duplicate.error().message, HasSubstr("duplicate ASN 11000000000000000500"));
  EXPECT_EQ(second_card->Inspect().files.size(), 1u) << "the card must still be blank";
  EXPECT_TRUE(Issue(second_card, Request()).ok());
}

TEST_F(IssuerTest, NoNumberIsSpentOnWhatTheIssuerCanCheckBeforeTheCard) {
  CardIssueRequest bad_pin = Request("12345");
  EXPECT_THAT(Issue(BlankCard(), bad_pin).error().message, HasSubstr("the PIN is 6 digits"));
  ASSERT_TRUE(store_->Generate("purchase").ok());  // a rotation half done
  auto half_rotated = Issue(BlankCard(), Request());
  ASSERT_FALSE(half_rotated.ok());
  EXPECT_THAT(half_rotated.error().message,
              HasSubstr("card master keys are at different versions"));
  IssuanceConfig no_prefix;
  Issuer without_prefix(*store_, *log_, no_prefix, "bob");
  reader::InProcessReader station("station", BlankCard());
  auto no_asn = without_prefix.IssueCard(station, Request());
  ASSERT_FALSE(no_asn.ok());
  EXPECT_THAT(no_asn.error().message, HasSubstr("no ASN: give one, or an ASN prefix"));
  EXPECT_TRUE(Records().empty());
}

TEST_F(IssuerTest, RefusesADeviceThatIsNotAMedcardCard) {
  std::shared_ptr<psam::Psam> psam = BlankPsam(crypto::RandomBytes(8));
  reader::InProcessReader station("station", psam);
  auto refused = issuer_->IssueCard(station, Request());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("not a medcard card"));
}

// Card answers to a terminal: a half-personalised card must refuse every purse command.
bool CanPay(const std::shared_ptr<card::Card>& card) {
  reader::InProcessReader terminal_reader("terminal", card);
  if (!terminal_reader.Connect().ok()) return false;
  auto select = reader::Send(
      terminal_reader, iso7816::CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, card::AdfAid(), 256));
  if (!select.ok() || !select->ok()) return false;
  // INITIALIZE FOR PURCHASE (EP, no PIN), INITIALIZE FOR LOAD (EP): 6985 before personalised.
  Bytes data{0x01, 0x00, 0x00, 0x00, 0x01};
  Append(data, View(kTerminal));
  for (std::uint8_t p1 : {std::uint8_t{0x01}, std::uint8_t{0x00}}) {
    auto init = reader::Send(terminal_reader,
                             iso7816::CommandApdu::Case4(0x80, 0x50, p1, 0x02, data, 0x0F));
    if (init.ok() && init->sw != iso7816::sw::kConditionsNotSatisfied) return true;
  }
  return false;
}

TEST_F(IssuerTest, ACardPulledOutAfterAnyCommandIsHalfPersonalisedNeverPaysAndIsRefused) {
  // How many commands a whole issuance sends.
  int total = 0;
  {
    reader::InProcessReader inner("station", BlankCard());
    testing::PullingReader counting(inner, 1 << 30);
    ASSERT_TRUE(issuer_->IssueCard(counting, Request()).ok());
    total = counting.transmitted();
  }
  ASSERT_GT(total, 50);
  int half_personalised = 0, still_blank = 0;
  std::set<std::string> reserved;
  for (int n = 0; n < total; ++n) {
    SCOPED_TRACE("card pulled out after " + std::to_string(n) + " commands");
    auto card = BlankCard();
    reader::InProcessReader inner("station", card);
    testing::PullingReader pulling(inner, n);
    auto pulled = issuer_->IssueCard(pulling, Request());
    ASSERT_FALSE(pulled.ok());
    EXPECT_THAT(pulled.error().message, HasSubstr("card removed"));
    const card::CardSummary summary = card->Inspect();
    EXPECT_EQ(summary.lifecycle, card::Lifecycle::kPersonalisation);
    EXPECT_TRUE(summary.transport_key_present);
    EXPECT_FALSE(CanPay(card));

    auto again = Issue(card, Request());
    if (summary.files.size() > 1) {
      ++half_personalised;
      ASSERT_FALSE(again.ok());
      EXPECT_THAT(again.error().message,
                  HasSubstr("card is half-personalised (lifecycle personalisation"));
      EXPECT_THAT(pulled.error().message, HasSubstr("personalisation step"));
    } else {
      ++still_blank;  // pulled before its first file: a blank card that can be issued
      EXPECT_TRUE(again.ok()) << again.error().message;
    }
  }
  EXPECT_GT(half_personalised, 40);
  EXPECT_GT(still_blank, 0);
  // Every attempt reserved its own number; none was given out twice.
  std::size_t reservations = 0;
  for (const json& r : Records()) {
    if (r.at("event") != "reserved") continue;
    ++reservations;
    EXPECT_TRUE(reserved.insert(r.at("asn").get<std::string>()).second) << r.dump();
  }
  EXPECT_GE(reservations, static_cast<std::size_t>(half_personalised));
}

TEST_F(IssuerTest, APsamPulledOutAfterAnyCommandIsRefusedAsHalfPersonalised) {
  int total = 0;
  {
    const Bytes chip = crypto::RandomBytes(8);
    reader::InProcessReader inner("station", BlankPsam(chip));
    testing::PullingReader counting(inner, 1 << 30);
    PsamIssueRequest request{kTerminal, std::nullopt, "", chip};
    ASSERT_TRUE(issuer_->IssuePsam(counting, request).ok());
    total = counting.transmitted();
  }
  int half = 0;
  for (int n = 0; n < total; ++n) {
    SCOPED_TRACE("PSAM pulled out after " + std::to_string(n) + " commands");
    const Bytes chip = crypto::RandomBytes(8);
    auto psam = BlankPsam(chip);
    reader::InProcessReader inner("station", psam);
    testing::PullingReader pulling(inner, n);
    PsamIssueRequest request{kTerminal, std::nullopt, "", chip};
    ASSERT_FALSE(issuer_->IssuePsam(pulling, request).ok());
    EXPECT_EQ(psam->Inspect().lifecycle, psam::Lifecycle::kPersonalisation);
    const bool ef15_written = psam->Inspect().psam_serial != Bytes(10, 0x00);
    reader::InProcessReader again_reader("station", psam);
    auto again = issuer_->IssuePsam(again_reader, request);
    if (ef15_written) {  // personalisation's first write happened
      ++half;
      ASSERT_FALSE(again.ok());
      EXPECT_THAT(again.error().message, HasSubstr("PSAM is half-personalised"));
    } else {
      EXPECT_TRUE(again.ok()) << again.error().message;
    }
  }
  EXPECT_GT(half, 3);
}

TEST_F(IssuerTest, APsamReportsItsChipSerialAndAWrongOneGivenIsRefused) {
  const Bytes chip = crypto::RandomBytes(8);
  auto psam = BlankPsam(chip);
  reader::InProcessReader station("station", psam);
  PsamIssueRequest request;
  request.terminal_number = kTerminal;
  request.chip_serial = crypto::RandomBytes(8);
  auto refused = issuer_->IssuePsam(station, request);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("chip serial is " + ToHex(View(chip))));
  EXPECT_TRUE(Records().empty());
  request.chip_serial.reset();
  auto issued = issuer_->IssuePsam(station, request);
  ASSERT_TRUE(issued.ok()) << issued.error().message;
}

TEST_F(IssuerTest, APsamGetsEveryMasterVersionAndTheLatestSettlementKey) {
  ASSERT_TRUE(store_->Generate("purchase").ok());
  ASSERT_TRUE(store_->Generate("settlement").ok());
  std::shared_ptr<psam::Psam> psam;
  auto issued = IssuePsamFor(kTerminal, &psam);
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->psam_serial, HexToBytes("50000000000000000001"));
  EXPECT_TRUE(issued->test_psam);
  const psam::Inspection inspection = psam->Inspect();
  EXPECT_EQ(inspection.terminal_number, kTerminal);
  EXPECT_EQ(inspection.issuer_data, Bytes({'T', 'E'}));
  std::multiset<std::pair<psam::KeyUsage, int>> keys;
  for (const auto& k : inspection.keys) keys.insert({k.usage, k.version});
  EXPECT_EQ(keys,
            (std::multiset<std::pair<psam::KeyUsage, int>>{{psam::KeyUsage::kPurchase, 1},
                                                           {psam::KeyUsage::kPurchase, 2},
                                                           {psam::KeyUsage::kSettlement, 2},
                                                           {psam::KeyUsage::kMaintenance, 1},
                                                           {psam::KeyUsage::kVisitRecord, 1}}));
  const json issued_record = Records().back();
  EXPECT_EQ(issued_record.at("event"), "issued");
  EXPECT_EQ(issued_record.at("kind"), "psam");
  EXPECT_EQ(issued_record.at("terminal_number"), "000000000042");
}

TEST(RandomPin, IsSixDigitsAndNeverATrivialPattern) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    const std::string pin = RandomPin();
    ASSERT_EQ(pin.size(), 6u);
    ASSERT_EQ(pin.find_first_not_of("0123456789"), std::string::npos);
    ASSERT_FALSE(IsTrivialPin(pin)) << pin;
    seen.insert(pin);
  }
  EXPECT_GT(seen.size(), 1990u);
  EXPECT_TRUE(IsTrivialPin("111111"));
  EXPECT_TRUE(IsTrivialPin("123456"));
  EXPECT_TRUE(IsTrivialPin("987654"));
  EXPECT_FALSE(IsTrivialPin("123457"));
}

TEST(PinMailer, NamesTheHolderTheCardAndThePinAndNothingMore) {
  const std::string text = PinMailerText(
      testing::SampleHolder(), HexToBytes("11000000000000000001"), "582914", Date{2026, 11, 25});
  EXPECT_THAT(text, HasSubstr("张三"));
  EXPECT_THAT(text, HasSubstr("11000000000000000001"));
  EXPECT_THAT(text, HasSubstr("PIN:         582914"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("11010519491231002X")));
}

}  // namespace
}  // namespace medcard::issuance
