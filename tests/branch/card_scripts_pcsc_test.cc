// A PIN reset on a card in a PC/SC reader (issue 6 end to end): the test card served to pcscd
// by the vpcd bridge ("Virtual PCD 00 00"), the teller-side runner talking PC/SC, the host-side
// builder on a test key store translating the PIN pad's encrypted PIN block.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "branch/card_scripts.h"
#include "branch/script_runner.h"
#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "pcscd_fixture.h"
#include "reader/reader.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::branch {
namespace {

static auto* const kPcscd = test_support::RegisterPcscdEnvironment();

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr char kPin[] = "123456";
constexpr char kNewPin[] = "908172";
constexpr char kPekName[] = "pek/BRANCH01-T01";
const Bytes kPek = HexToBytes("1F2E3D4C5B6A79880011223344556677");

template <typename R>
auto Must(R result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  if (!result.ok()) std::abort();
  return std::move(result).value();
}

// The card in vpcd slot 0 while this object lives.
class Slot {
 public:
  explicit Slot(std::shared_ptr<iso7816::Icc> icc)
      : bridge_(std::move(icc), 0), thread_([this] { (void)bridge_.Run(); }) {}
  ~Slot() {
    bridge_.Stop();
    thread_.join();
    if (auto r = reader::PcscReader::Open(reader::VpcdReaderName(0)); r.ok()) {
      (void)(*r)->WaitForRemoval(5s);
    }
  }

 private:
  reader::VpcdBridge bridge_;
  std::thread thread_;
};

TEST(CardScriptsPcscTest, PinResetOnACardInAVpcdReaderThroughPcscd) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  const std::string dir = test_support::NewTempDir("medcard-branch-pcsc");
  auto keys = Must(test_support::TestKeyStore((fs::path(dir) / "keys").string(), "branch test"));
  ASSERT_TRUE(keys->ImportTestKey(kPekName, kPek).ok());
  CardScriptBuilder builder(*keys);

  const Bytes asn = HexToBytes("11000000000000000621");
  std::shared_ptr<iso7816::Icc> card = Must(issuance::IssueTestCard(
      issuance::TestKeySet::Embedded(), std::make_unique<nvm::FaultInjectionMedium>(),
      issuance::TestHolder(asn, kPin)));
  Slot slot(card);
  auto teller_reader = Must(reader::PcscReader::Open(reader::VpcdReaderName(0)));
  ASSERT_TRUE(Must(teller_reader->WaitForCard(5s)));
  ASSERT_TRUE(teller_reader->Connect().ok());

  // The cardholder forgot the PIN and blocked it.
  ASSERT_TRUE(terminal::SelectMedicalApplication(*teller_reader).ok());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(terminal::VerifyPin(*teller_reader, "111111").ok());
  auto blocked = terminal::VerifyPin(*teller_reader, kPin);
  ASSERT_FALSE(blocked.ok());
  EXPECT_THAT(blocked.error().message, HasSubstr("blocked"));

  // The new PIN typed on the teller's PIN pad reaches the host only encrypted.
  const Bytes pin_block = Must(EncryptPinBlockAtPinPad(kPek, kNewPin, asn));
  auto reset =
      RunCardScript(*teller_reader, ScriptKind::kPinReset, [&](const ScriptContext& context) {
        EXPECT_EQ(context.asn, asn);
        return builder.PinReset(context, kPekName, pin_block);
      });
  ASSERT_TRUE(reset.ok()) << reset.error().message;
  EXPECT_EQ(reset->message, "PIN reset: tries 3");

  ASSERT_TRUE(terminal::SelectMedicalApplication(*teller_reader).ok());
  EXPECT_TRUE(terminal::VerifyPin(*teller_reader, kNewPin).ok());
  ASSERT_TRUE(terminal::SelectMedicalApplication(*teller_reader).ok());
  auto old_pin = terminal::VerifyPin(*teller_reader, kPin);
  ASSERT_FALSE(old_pin.ok());
  EXPECT_THAT(old_pin.error().message, HasSubstr("2 tries left"));

  ASSERT_TRUE(teller_reader->Disconnect().ok());
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
}

}  // namespace
}  // namespace medcard::branch
