// The key store doing an issuer's real work against a real card OS and PSAM, in process: a card
// personalised with keys that leave the store only wrapped under the card's transport key, then
// loaded online (MAC1 → MAC2 → TAC through keys/pboc.h), a purchase whose TAC the store
// verifies, and PSAM totals the store acknowledges. The published test key set is imported into
// a test-only store, so the PSAM (issued by the test issuer) shares the store's keys.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "card/personalize.h"
#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "issuance/test_issuer.h"
#include "keys/key_store.h"
#include "keys/pboc.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard::keys {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// card::KeyWrapper over the store: card keys are diversified inside it and leave it only as
// cryptograms under the card's transport key.
class StoreCardKeyWrapper final : public card::KeyWrapper {
 public:
  StoreCardKeyWrapper(KeyStore& store, KeyRef card_transport, Bytes asn)
      : store_(store), card_transport_(card_transport), asn_(std::move(asn)) {}

  Result<Bytes> WrapKey(const card::KeySpec& key) override {
    // The standard layout's key names that are not issuer roles of their own.
    std::string role = key.master_key;
    if (role == "ssse_maintenance") role = "maintenance";
    if (role == "internal_auth") role = "card_master";
    auto card_key = CardKey(store_, role, asn_, key.version);
    if (!card_key.ok()) return card_key.error();
    ScopedKey release(store_, *card_key);
    return store_.Wrap(card_transport_, *card_key);
  }
  Result<Bytes> WrapPin(std::string_view pin) override {
    // len ‖ packed PIN ‖ 80 00.. (card::KeyWrapper::WrapPin)
    auto packed = PackDigitsFPadded(pin);
    if (!packed || packed->empty() || packed->size() > 6) return MakeError("bad PIN");
    Bytes block(8, 0x00);
    block[0] = static_cast<std::uint8_t>(packed->size());
    std::copy(packed->begin(), packed->end(), block.begin() + 1);
    block[1 + packed->size()] = 0x80;
    SecureWipe(*packed);
    auto enciphered = store_.Encrypt(card_transport_, block);
    SecureWipe(block);
    return enciphered;
  }
  Result<Bytes> TransportMac(ByteView data, ByteView iv) override {
    return store_.Mac(card_transport_, data, iv);
  }

 private:
  KeyStore& store_;
  KeyRef card_transport_;
  Bytes asn_;
};

// The bank host's load authorisation, through the store.
class StoreLoadAuthoriser final : public terminal::LoadAuthoriser {
 public:
  explicit StoreLoadAuthoriser(KeyStore& store) : store_(store) {}
  Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override {
    return AuthoriseLoad(store_, Request(init));
  }
  Status Confirm(const terminal::LoadInitialisation& init, ByteView tac) override {
    return VerifyLoadTac(store_, Request(init), tac);
  }
  static LoadAuthorisationRequest Request(const terminal::LoadInitialisation& init) {
    LoadAuthorisationRequest r;
    r.asn = init.asn;
    r.type = init.type;
    r.amount = init.amount;
    r.terminal_number = init.terminal_number;
    r.old_balance = init.old_balance;
    r.online_serial = init.online_serial;
    r.key_version = init.key_version;
    r.random = init.random;
    r.mac1 = init.mac1;
    r.date = init.date;
    r.time = init.time;
    return r;
  }

 private:
  KeyStore& store_;
};

PurchaseRecord Record(const terminal::PurchaseResult& p) {
  PurchaseRecord r;
  r.asn = p.asn;
  r.type = p.type;
  r.amount = p.amount;
  r.terminal_number = p.terminal_number;
  r.terminal_serial = p.terminal_serial;
  r.date = p.date;
  r.time = p.time;
  r.tac = p.tac;
  return r;
}

class PbocFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    std::string pattern = (fs::path(::testing::TempDir()) / "medcard-flow-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto store = CreateSoftwareKeyStore((dir_ / "store").string(), "flow test passphrase", true);
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(store).value();
    for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
      ASSERT_TRUE(store_->ImportTestKey(role, test_keys_.MasterKey(role)).ok()) << role;
    }

    // The chip factory injects the card's transport key; from then on only the store has keys.
    const Bytes chip_serial = crypto::AsnFactor(asn_);
    auto blank = card::Card::Manufacture(
        std::make_unique<nvm::FaultInjectionMedium>(),
        {chip_serial, *crypto::Diversify(test_keys_.MasterKey("transport"), chip_serial)});
    ASSERT_TRUE(blank.ok()) << blank.error().message;
    auto transport = store_->Find("transport");
    ASSERT_TRUE(transport.ok());
    auto card_transport = store_->Diversify(*transport, chip_serial);
    ASSERT_TRUE(card_transport.ok());
    StoreCardKeyWrapper wrapper(*store_, *card_transport, asn_);
    auto layout = card::StandardLayout(issuance::TestHolder(asn_, "123456"));
    ASSERT_TRUE(layout.ok()) << layout.error().message;
    auto script = card::BuildPersonalisation(*layout, wrapper);
    ASSERT_TRUE(script.ok()) << script.error().message;
    (*blank)->PowerOn();
    Status personalised = card::RunPersonalisation(*script, wrapper, **blank);
    ASSERT_TRUE(personalised.ok()) << personalised.error().message;
    store_->Release(*card_transport);
    card_ = std::move(blank).value();

    auto psam = issuance::IssueTestPsam(test_keys_, std::make_unique<nvm::FaultInjectionMedium>(),
                                        psam_serial_, terminal_number_);
    ASSERT_TRUE(psam.ok()) << psam.error().message;
    psam_ = std::move(psam).value();
    card_reader_ = std::make_unique<reader::InProcessReader>("card", card_);
    psam_reader_ = std::make_unique<reader::InProcessReader>("psam", psam_);
    ASSERT_TRUE(card_reader_->Connect().ok());
    ASSERT_TRUE(psam_reader_->Connect().ok());
    auto app = terminal::SelectMedicalApplication(*card_reader_);
    ASSERT_TRUE(app.ok()) << app.error().message;
    app_ = *app;
    ASSERT_TRUE(terminal::VerifyPin(*card_reader_, "123456").ok());
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  const issuance::TestKeySet& test_keys_ = issuance::TestKeySet::Embedded();
  fs::path dir_;
  std::unique_ptr<KeyStore> store_;
  Bytes asn_ = HexToBytes("11000000000000000201");
  Bytes psam_serial_ = HexToBytes("50000000000000000201");
  Bytes terminal_number_ = HexToBytes("000000000201");
  Date date_{2026, 11, 25};
  TimeOfDay time_{9, 15, 0};
  std::shared_ptr<card::Card> card_;
  std::shared_ptr<psam::Psam> psam_;
  std::unique_ptr<reader::Reader> card_reader_, psam_reader_;
  terminal::ApplicationData app_;
};

TEST_F(PbocFlowTest, ACardPersonalisedFromTheStoreIsOperationalWithTheHoldersAsn) {
  auto summary = card_->Inspect();
  EXPECT_EQ(summary.lifecycle, card::Lifecycle::kOperational);
  EXPECT_FALSE(summary.transport_key_present);
  EXPECT_EQ(app_.asn, asn_);
}

TEST_F(PbocFlowTest, OnlineLoadIsAuthorisedAndConfirmedByTheStore) {
  StoreLoadAuthoriser host(*store_);
  auto first = terminal::Load(*card_reader_, host, app_,
                              {terminal::Wallet::kEd, 10000, terminal_number_, date_, time_});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->balance_after, 10000u);
  auto second = terminal::Load(*card_reader_, host, app_,
                               {terminal::Wallet::kEp, 2500, terminal_number_, date_, time_});
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, terminal::Wallet::kEd), 10000u);
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, terminal::Wallet::kEp), 2500u);
}

TEST_F(PbocFlowTest, StoreAndTestIssuerAgreeOnEveryLoadMac2) {
  // A host that records what the store answers and checks the test issuer (clear keys) agrees.
  class Comparing final : public terminal::LoadAuthoriser {
   public:
    Comparing(KeyStore& store, const issuance::TestKeySet& keys) : store_(store), clear_(keys) {}
    Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override {
      auto from_store = store_.Authorise(init);
      auto from_clear = clear_.Authorise(init);
      EXPECT_TRUE(from_store.ok() && from_clear.ok());
      if (from_store.ok() && from_clear.ok()) {
        EXPECT_EQ(*from_store, *from_clear);
      }
      return from_store;
    }
    Status Confirm(const terminal::LoadInitialisation& init, ByteView tac) override {
      EXPECT_TRUE(clear_.Confirm(init, tac).ok());
      return store_.Confirm(init, tac);
    }
    StoreLoadAuthoriser store_;
    issuance::TestIssuerHost clear_;
  } host(*store_, test_keys_);
  for (std::uint32_t amount : {1u, 999u, 123456u}) {
    ASSERT_TRUE(terminal::Load(*card_reader_, host, app_,
                               {terminal::Wallet::kEd, amount, terminal_number_, date_, time_})
                    .ok());
  }
}

TEST_F(PbocFlowTest, ALoadWithAForgedMac1IsRefusedAndTheCardKeepsItsBalance) {
  class Tampering final : public terminal::LoadAuthoriser {
   public:
    explicit Tampering(KeyStore& store) : store_(store) {}
    Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override {
      terminal::LoadInitialisation forged = init;
      forged.amount = init.amount * 10;  // a terminal asking for more than the card signed
      return store_.Authorise(forged);
    }
    Status Confirm(const terminal::LoadInitialisation& init, ByteView tac) override {
      return store_.Confirm(init, tac);
    }
    StoreLoadAuthoriser store_;
  } host(*store_);
  auto refused = terminal::Load(*card_reader_, host, app_,
                                {terminal::Wallet::kEd, 500, terminal_number_, date_, time_});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("MAC1 invalid"));
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, terminal::Wallet::kEd), 0u);
}

TEST_F(PbocFlowTest, PurchaseTacsVerifyInTheStoreAndTheSignedTotalsAreAcknowledged) {
  StoreLoadAuthoriser host(*store_);
  ASSERT_TRUE(terminal::Load(*card_reader_, host, app_,
                             {terminal::Wallet::kEd, 50000, terminal_number_, date_, time_})
                  .ok());
  for (std::uint32_t amount : {1250u, 8630u}) {
    auto purchase = terminal::Purchase(*card_reader_, *psam_reader_, app_,
                                       {terminal::Wallet::kEd, amount, date_, time_});
    ASSERT_TRUE(purchase.ok()) << purchase.error().message;
    EXPECT_TRUE(VerifyPurchaseTac(*store_, Record(*purchase)).ok());
    PurchaseRecord forged = Record(*purchase);
    forged.amount += 100;
    auto refused = VerifyPurchaseTac(*store_, forged);
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.error().message, HasSubstr("purchase TAC invalid"));
  }

  const Bytes challenge = crypto::RandomBytes(8);
  auto totals = reader::Send(*psam_reader_,
                             iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge, 22));
  ASSERT_TRUE(totals.ok() && totals->ok());
  auto ack = AcknowledgeSamTotals(*store_, psam_serial_, challenge, totals->data);
  ASSERT_TRUE(ack.ok()) << ack.error().message;
  auto cleared = reader::Send(*psam_reader_, iso7816::CommandApdu::Case3(0x80, 0x7C, 0, 0, *ack));
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->ok()) << cleared->sw.ToString();
  EXPECT_EQ(psam_->Inspect().totals.count, 0u);
}

}  // namespace
}  // namespace medcard::keys
