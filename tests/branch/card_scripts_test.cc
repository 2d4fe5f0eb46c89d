// Issuer scripts on a real test card in an in-process reader (docs/branch.md "Card scripts"):
// the host-side builder on a test key store, the teller-side runner, and the card OS's own
// checks (docs/card-commands.md) deciding what happens.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "branch/card_scripts.h"
#include "branch/script_runner.h"
#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "issuance/test_issuer.h"
#include "reader/reader.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::branch {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPin[] = "123456";
constexpr char kNewPin[] = "654321";
constexpr char kPekName[] = "pek/BRANCH01-T03";
const Bytes kPek = HexToBytes("0123456789ABCDEFFEDCBA9876543210");  // the test PIN pad's key

template <typename R>
auto Must(R result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  if (!result.ok()) std::abort();
  return std::move(result).value();
}

class CardScriptsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    const std::string dir = test_support::NewTempDir("medcard-branch-scripts");
    keys_ = Must(test_support::TestKeyStore((fs::path(dir) / "keys").string(), "branch test"));
    ASSERT_TRUE(keys_->ImportTestKey(kPekName, kPek).ok());
    builder_ = std::make_unique<CardScriptBuilder>(*keys_);
    holder_ = Must(test_support::NewTestCardholder(asn_, kPin));
    psam_ = Must(test_support::NewTestPsam(HexToBytes("50000000000000000611"), terminal_number_));
  }
  void TearDown() override { ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF"); }

  reader::Reader& card() { return *holder_.reader; }

  ScriptSource Source(std::optional<Date> new_expiry = {}, Bytes pin_block = {}) {
    return [this, new_expiry, pin_block](const ScriptContext& context) {
      return builder_->Build(context, new_expiry, kPekName, pin_block);
    };
  }

  Result<ScriptOutcome> Run(ScriptKind kind, std::optional<Date> new_expiry = {},
                            Bytes pin_block = {}) {
    return RunCardScript(card(), kind, Source(new_expiry, std::move(pin_block)));
  }

  iso7816::ResponseApdu Send(const iso7816::CommandApdu& command) {
    return Must(reader::Send(card(), command));
  }
  // SELECT of the medical-account application: 9000, 6A81 temporarily, 9303 permanently blocked.
  std::uint16_t SelectSw() {
    return Send(
               iso7816::CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, HexToBytes("D15600000503"), 256))
        .sw.value;
  }
  Bytes ReadSfi15() {
    auto r = Send(iso7816::CommandApdu::Case2(0x00, 0xB0, 0x95, 0x00, 30));
    EXPECT_TRUE(r.ok()) << r.sw.ToString();
    return r.data;
  }

  void LoadEd(std::uint32_t amount) {
    issuance::TestIssuerHost issuer(issuance::TestKeySet::Embedded());
    auto app = Must(terminal::SelectMedicalApplication(card()));
    ASSERT_TRUE(terminal::VerifyPin(card(), kPin).ok());
    auto loaded = terminal::Load(card(), issuer, app,
                                 {terminal::Wallet::kEd, amount, terminal_number_, today_, now_});
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  }
  Result<terminal::PurchaseResult> PurchaseEd(std::uint32_t amount, const std::string& pin) {
    auto app = terminal::SelectMedicalApplication(card());
    if (!app.ok()) return app.error();
    if (Status ok = terminal::VerifyPin(card(), pin); !ok.ok()) return ok.error();
    return terminal::Purchase(card(), *psam_.reader, *app,
                              {terminal::Wallet::kEd, amount, today_, now_});
  }

  Bytes asn_ = HexToBytes("11000000000000000611");
  Bytes terminal_number_ = HexToBytes("000000000611");
  Date today_{2026, 11, 26};
  TimeOfDay now_{10, 30, 0};
  std::unique_ptr<keys::KeyStore> keys_;
  std::unique_ptr<CardScriptBuilder> builder_;
  test_support::TestCardholder holder_;
  test_support::TestPsam psam_;
};

TEST_F(CardScriptsTest, BlockRefusesPurchasesAndTheUnblockScriptMakesThemWorkAgain) {
  LoadEd(5000);
  ASSERT_TRUE(PurchaseEd(100, kPin).ok());

  auto blocked = Run(ScriptKind::kApplicationBlock);
  ASSERT_TRUE(blocked.ok()) << blocked.error().message;
  EXPECT_EQ(blocked->message, "application blocked (temporary)");
  EXPECT_EQ(blocked->asn, asn_);
  auto refused = PurchaseEd(100, kPin);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("blocked"));
  EXPECT_EQ(SelectSw(), 0x6A81);
  // The card takes nothing but SELECT, GET CHALLENGE and APPLICATION UNBLOCK now.
  EXPECT_EQ(Send(iso7816::CommandApdu::Case2(0x80, 0x5C, 0x00, 0x01, 4)).sw.value, 0x6A81);

  auto again = Run(ScriptKind::kApplicationBlock);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("already blocked"));

  auto unblocked = Run(ScriptKind::kApplicationUnblock);
  ASSERT_TRUE(unblocked.ok()) << unblocked.error().message;
  EXPECT_EQ(unblocked->message, "application unblocked");
  auto paid = PurchaseEd(250, kPin);
  ASSERT_TRUE(paid.ok()) << paid.error().message;
  EXPECT_EQ(paid->balance_after, 5000u - 100u - 250u);

  auto not_blocked = Run(ScriptKind::kApplicationUnblock);
  ASSERT_FALSE(not_blocked.ok());
  EXPECT_THAT(not_blocked.error().message, HasSubstr("not blocked"));
}

TEST_F(CardScriptsTest, PermanentBlockIsForGood) {
  auto blocked = Run(ScriptKind::kApplicationBlockPermanent);
  ASSERT_TRUE(blocked.ok()) << blocked.error().message;
  EXPECT_EQ(blocked->message, "application blocked permanently");
  EXPECT_EQ(SelectSw(), 0x9303);
  auto unblock = Run(ScriptKind::kApplicationUnblock);
  ASSERT_FALSE(unblock.ok());
  EXPECT_THAT(unblock.error().message, HasSubstr("permanently blocked"));
  EXPECT_EQ(SelectSw(), 0x9303);
}

TEST_F(CardScriptsTest, PinResetAfterThePinBlockedSetsTheNewPinWithFullTries) {
  ASSERT_TRUE(terminal::SelectMedicalApplication(card()).ok());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(terminal::VerifyPin(card(), "000000").ok());
  auto blocked_pin = terminal::VerifyPin(card(), kPin);
  ASSERT_FALSE(blocked_pin.ok());
  EXPECT_THAT(blocked_pin.error().message, HasSubstr("blocked"));

  const Bytes pin_block = Must(EncryptPinBlockAtPinPad(kPek, kNewPin, asn_));
  auto reset = Run(ScriptKind::kPinReset, std::nullopt, pin_block);
  ASSERT_TRUE(reset.ok()) << reset.error().message;
  EXPECT_EQ(reset->message, "PIN reset: tries 3");
  EXPECT_EQ(reset->pin_tries, 3);

  ASSERT_TRUE(terminal::SelectMedicalApplication(card()).ok());
  auto old_pin = terminal::VerifyPin(card(), kPin);
  ASSERT_FALSE(old_pin.ok());
  EXPECT_THAT(old_pin.error().message, HasSubstr("2 tries left"));
  EXPECT_TRUE(terminal::VerifyPin(card(), kNewPin).ok());
}

TEST_F(CardScriptsTest, PinResetScriptCarriesNoClearPinAndTheBuilderTakesOnlyTheEncryptedBlock) {
  const Bytes pin_block = Must(EncryptPinBlockAtPinPad(kPek, kNewPin, asn_));
  const Bytes clear_block = Must(
      crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, kNewPin, Must(PinBlockPan(asn_))));
  EXPECT_NE(pin_block, clear_block);
  ScriptContext context{
      ScriptKind::kPinReset, asn_, HexToBytes("01020304"), {2026, 1, 1}, {2030, 12, 31}};
  auto script = builder_->PinReset(context, kPekName, pin_block);
  ASSERT_TRUE(script.ok()) << script.error().message;
  ASSERT_EQ(script->command.size(), 17u);
  EXPECT_EQ(Bytes(script->command.begin(), script->command.begin() + 5), HexToBytes("842400000C"));
  const std::string hex = ToHex(script->command);
  for (const char* secret : {"654321", "363534333231"}) {
    EXPECT_THAT(hex, Not(HasSubstr(secret)));
  }
  EXPECT_THAT(hex, Not(HasSubstr(ToHex(clear_block))));
  // Logging the command hides its data.
  const auto parsed = iso7816::CommandApdu::Parse(script->command);
  ASSERT_TRUE(std::holds_alternative<iso7816::CommandApdu>(parsed));
  EXPECT_THAT(std::get<iso7816::CommandApdu>(parsed).ToString(), HasSubstr("hidden"));

  // A block from another PIN pad key, or not a PEK name: refused before anything is sent.
  auto foreign = builder_->PinReset(
      context, kPekName, Must(EncryptPinBlockAtPinPad(crypto::RandomBytes(16), kNewPin, asn_)));
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(foreign.error().message, Not(HasSubstr(kNewPin)));
  EXPECT_FALSE(builder_->PinReset(context, "purchase", pin_block).ok());
  // A 4-digit PIN is refused by the store (the card's PIN is 6 digits).
  auto short_pin =
      builder_->PinReset(context, kPekName, Must(EncryptPinBlockAtPinPad(kPek, "1234", asn_)));
  ASSERT_FALSE(short_pin.ok());
  EXPECT_THAT(short_pin.error().message, HasSubstr("6 digits"));
}

TEST_F(CardScriptsTest, ValidityChangeWritesTheNewExpiryToSfi15) {
  const Bytes before = ReadSfi15();
  auto changed = Run(ScriptKind::kChangeExpiry, Date{2031, 12, 31});
  ASSERT_TRUE(changed.ok()) << changed.error().message;
  EXPECT_EQ(changed->message, "expiry changed to 2031-12-31");
  EXPECT_EQ(changed->expiry, (Date{2031, 12, 31}));
  const Bytes after = ReadSfi15();
  EXPECT_EQ(ToHex(ByteView(after).subspan(24, 4)), "20311231");
  // Only the expiry date changed.
  ASSERT_EQ(after.size(), 30u);
  EXPECT_TRUE(std::equal(before.begin(), before.begin() + 24, after.begin()));
  EXPECT_TRUE(std::equal(before.begin() + 28, before.end(), after.begin() + 28));
  auto app = Must(terminal::SelectMedicalApplication(card()));
  EXPECT_EQ(app.expiry_date, (Date{2031, 12, 31}));

  // Not after the start date: refused by the builder, nothing sent.
  auto early = Run(ScriptKind::kChangeExpiry, app.start_date);
  ASSERT_FALSE(early.ok());
  EXPECT_THAT(early.error().message, HasSubstr("start date"));
  EXPECT_EQ(ReadSfi15(), after);
}

TEST_F(CardScriptsTest, AScriptForAnotherCardIsRefusedByTheCardAndNothingChanges) {
  ASSERT_TRUE(Run(ScriptKind::kApplicationBlock).ok());
  const Bytes other_asn = HexToBytes("11000000000000000612");
  auto refused =
      RunCardScript(card(), ScriptKind::kApplicationUnblock, [&](const ScriptContext& context) {
        ScriptContext other = context;
        other.asn = other_asn;
        return builder_->ApplicationUnblock(other);
      });
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("6988"));
  EXPECT_THAT(refused.error().message, HasSubstr("another card"));
  EXPECT_EQ(SelectSw(), 0x6A81);

  ASSERT_TRUE(Run(ScriptKind::kApplicationUnblock).ok());
  const Bytes before = ReadSfi15();
  auto expiry = RunCardScript(card(), ScriptKind::kChangeExpiry, [&](const ScriptContext& context) {
    ScriptContext other = context;
    other.asn = other_asn;
    return builder_->ChangeExpiry(other, Date{2032, 6, 30});
  });
  ASSERT_FALSE(expiry.ok());
  EXPECT_THAT(expiry.error().message, HasSubstr("6988"));
  EXPECT_EQ(ReadSfi15(), before);
}

TEST_F(CardScriptsTest, AScriptMadeForAnOldChallengeIsRefusedAndThePinStaysTheSame) {
  // The teller's first attempt: the card's challenge reaches the host, but the script made for
  // it is only sent during a later attempt, after a new GET CHALLENGE.
  std::optional<ScriptContext> first;
  auto abandoned = RunCardScript(card(), ScriptKind::kPinReset, [&](const ScriptContext& context) {
    first = context;
    return Result<CardScript>(MakeError("host unreachable"));
  });
  ASSERT_FALSE(abandoned.ok());
  EXPECT_THAT(abandoned.error().message, HasSubstr("host unreachable"));
  ASSERT_TRUE(first.has_value());
  const Bytes pin_block = Must(EncryptPinBlockAtPinPad(kPek, kNewPin, asn_));
  const CardScript old_script = Must(builder_->PinReset(*first, kPekName, pin_block));

  auto refused = RunCardScript(card(), ScriptKind::kPinReset, [&](const ScriptContext& context) {
    EXPECT_NE(context.challenge, first->challenge);
    return Result<CardScript>(old_script);
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("card refused the PIN reset: 6988"));
  ASSERT_TRUE(terminal::SelectMedicalApplication(card()).ok());
  EXPECT_FALSE(terminal::VerifyPin(card(), kNewPin).ok());
  EXPECT_TRUE(terminal::VerifyPin(card(), kPin).ok());
}

TEST_F(CardScriptsTest, AScriptOfAnotherKindIsNotSent) {
  auto wrong = RunCardScript(
      card(), ScriptKind::kApplicationBlock,
      [&](const ScriptContext& context) { return builder_->ApplicationBlock(context, true); });
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.error().message, HasSubstr("nothing sent"));
  EXPECT_EQ(SelectSw(), 0x9000);
}

TEST_F(CardScriptsTest, PinBlockPanIsTheAsnsLastDigitsAndNeedsADecimalAsn) {
  EXPECT_EQ(Must(PinBlockPan(asn_)), "0000000000000006110");
  EXPECT_FALSE(PinBlockPan(HexToBytes("1100000000000000061A")).ok());
  EXPECT_FALSE(PinBlockPan(HexToBytes("110000")).ok());
}

}  // namespace
}  // namespace medcard::branch
