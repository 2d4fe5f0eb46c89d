// The KeyStore-backed wrappers give byte for byte what the clear-key wrappers give with the same
// keys (so a card personalised either way is the same card), the key version a card gets, and
// the clear errors for a missing or unknown role and a store answering the wrong length.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "card/personalize.h"
#include "crypto/crypto.h"
#include "issuance/issuer.h"
#include "issuance/test_issuer.h"
#include "issuance_test_support.h"
#include "psam/personalize.h"

namespace medcard::issuance {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

const Bytes kChipSerial = HexToBytes("C0FFEE0000001234");
const Bytes kAsn = HexToBytes("11000000000000004242");
const Bytes kPsamSerial = HexToBytes("50000000000000004242");

const Bytes& TestMaster(const std::string& role) { return TestKeySet::Embedded().MasterKey(role); }

// The test issuer's layout names → clear masters (what test_issuer.cc personalises with).
std::map<std::string, Bytes> LayoutMasters() {
  std::map<std::string, Bytes> m;
  for (const char* role : {"purchase", "load", "tac", "unload", "overdraw", "pin_unblock",
                           "pin_reload", "maintenance", "visit_record", "external_auth"}) {
    m[role] = TestMaster(role);
  }
  m["ssse_maintenance"] = TestMaster("maintenance");
  m["internal_auth"] = TestMaster("card_master");
  return m;
}

std::vector<card::KeySpec> LayoutKeys(const card::CardLayout& layout) {
  std::vector<card::KeySpec> keys;
  const auto visit = [&keys](const card::DfLayout& df, const auto& self) -> void {
    keys.insert(keys.end(), df.keys.begin(), df.keys.end());
    for (const auto& child : df.dfs) self(child, self);
  };
  visit(layout.mf, visit);
  return keys;
}

class KeyWrappersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = testing::TestKeyStore(dir_ / "store");
    ASSERT_NE(store_, nullptr);
  }
  TempDir dir_;
  std::unique_ptr<keys::KeyStore> store_;
};

TEST(StoreRoleForLayoutKey, MapsTheLayoutNamesToStoreRoles) {
  EXPECT_EQ(*StoreRoleForLayoutKey("ssse_maintenance"), "maintenance");
  EXPECT_EQ(*StoreRoleForLayoutKey("internal_auth"), "card_master");
  EXPECT_EQ(*StoreRoleForLayoutKey("purchase"), "purchase");
  EXPECT_EQ(*StoreRoleForLayoutKey("visit_record"), "visit_record");
  auto unknown = StoreRoleForLayoutKey("purchace");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("unknown role \"purchace\""));
  // The transport key is never a card key.
  EXPECT_FALSE(StoreRoleForLayoutKey("transport").ok());
}

TEST_F(KeyWrappersTest, CardWrapperGivesWhatTheClearKeyWrapperGivesWithTheSameKeys) {
  auto transport = crypto::Diversify(TestMaster("transport"), kChipSerial);
  ASSERT_TRUE(transport.ok());
  auto clear = card::ClearKeyWrapper::FromMasterKeys(*transport, LayoutMasters(), kAsn);
  ASSERT_TRUE(clear.ok());
  auto wrapper = KeyStoreCardWrapper::Create(*store_, kChipSerial, kAsn);
  ASSERT_TRUE(wrapper.ok()) << wrapper.error().message;

  auto layout = card::StandardLayout(TestHolder(kAsn, "123456"));
  ASSERT_TRUE(layout.ok());
  const auto keys = LayoutKeys(*layout);
  ASSERT_EQ(keys.size(), 10u);
  for (const card::KeySpec& key : keys) {
    auto from_store = (*wrapper)->WrapKey(key);
    ASSERT_TRUE(from_store.ok()) << key.master_key << ": " << from_store.error().message;
    EXPECT_EQ(*from_store, *clear->WrapKey(key)) << key.master_key;
  }
  EXPECT_EQ(*(*wrapper)->WrapPin("123456"), *clear->WrapPin("123456"));
  const Bytes data = HexToBytes("84D400001901010100030011223344556677889900AABBCCDDEEFF");
  const Bytes iv = HexToBytes("A1B2C3D400000000");
  EXPECT_EQ(*(*wrapper)->TransportMac(data, iv), *clear->TransportMac(data, iv));
}

TEST_F(KeyWrappersTest, PsamWrapperGivesTheWriteKeyDataOfTheClearKeys) {
  auto transport = crypto::Diversify(TestMaster("transport"), kChipSerial);
  ASSERT_TRUE(transport.ok());
  auto wrapper = KeyStorePsamWrapper::Create(*store_, kChipSerial, kPsamSerial);
  ASSERT_TRUE(wrapper.ok()) << wrapper.error().message;
  const Bytes challenge = HexToBytes("01020304");
  const auto settlement =
      crypto::Diversify(TestMaster("settlement"), crypto::AsnFactor(kPsamSerial));
  ASSERT_TRUE(settlement.ok());
  const std::pair<std::string, Bytes> cases[] = {{"purchase", TestMaster("purchase")},
                                                 {"maintenance", TestMaster("maintenance")},
                                                 {"visit_record", TestMaster("visit_record")},
                                                 {"settlement", *settlement}};
  for (const auto& [label, clear_key] : cases) {
    psam::KeyHeader header;
    header.usage = psam::KeyUsage::kPurchase;
    auto from_store = (*wrapper)->WrapKey(header, label, challenge);
    ASSERT_TRUE(from_store.ok()) << label << ": " << from_store.error().message;
    EXPECT_EQ(*from_store, *psam::BuildWriteKeyData(*transport, header, clear_key, challenge))
        << label;
  }
  EXPECT_EQ(*(*wrapper)->EndPersonalisationMac(challenge),
            *psam::BuildEndPersonalisationMac(*transport, challenge));
  auto unknown = (*wrapper)->WrapKey(psam::KeyHeader{}, "tac", challenge);
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("unknown role \"tac\" for a PSAM key"));
}

TEST_F(KeyWrappersTest, TheChipFactoryTransportKeyIsTheDiversifiedTransportMaster) {
  auto key = ChipFactoryTransportKey(*store_, kChipSerial);
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(*key, *crypto::Diversify(TestMaster("transport"), kChipSerial));
  EXPECT_FALSE(ChipFactoryTransportKey(*store_, HexToBytes("0102")).ok());
}

TEST_F(KeyWrappersTest, ACardGetsVersionOneUntilEveryCardRoleIsRotated) {
  auto layout = card::StandardLayout(TestHolder(kAsn, "123456"));
  ASSERT_TRUE(layout.ok());
  auto v1 = CardKeyVersion(*store_, *layout);
  ASSERT_TRUE(v1.ok()) << v1.error().message;
  EXPECT_EQ(*v1, 1);

  ASSERT_TRUE(store_->Generate("purchase").ok());
  auto half = CardKeyVersion(*store_, *layout);
  ASSERT_FALSE(half.ok());
  EXPECT_THAT(half.error().message, HasSubstr("different versions (newest v2; load v1"));
  EXPECT_THAT(half.error().message, HasSubstr("finish the rotation"));

  for (const char* role : {"load", "tac", "unload", "overdraw", "pin_unblock", "pin_reload",
                           "maintenance", "visit_record"}) {
    ASSERT_TRUE(store_->Generate(role).ok()) << role;
  }
  auto v2 = CardKeyVersion(*store_, *layout);
  ASSERT_TRUE(v2.ok()) << v2.error().message;
  EXPECT_EQ(*v2, 2);

  // A key of version 2 is wrapped from master version 2 (clear here only to check the bytes).
  auto wrapper = KeyStoreCardWrapper::Create(*store_, kChipSerial, kAsn);
  ASSERT_TRUE(wrapper.ok());
  card::KeySpec spec{"purchase", card::KeyUsage::kPurchase, 1, 2, 3};
  auto v2_cryptogram = (*wrapper)->WrapKey(spec);
  ASSERT_TRUE(v2_cryptogram.ok()) << v2_cryptogram.error().message;
  spec.version = 1;
  EXPECT_NE(*v2_cryptogram, *(*wrapper)->WrapKey(spec));
  spec.version = 3;
  auto missing = (*wrapper)->WrapKey(spec);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("card key purchase v3"));
}

TEST(KeyWrappers, AStoreWithoutARoleSaysWhichRoleIsMissing) {
  TempDir dir;
  testing::UseFastKdf();
  auto store = keys::CreateSoftwareKeyStore(dir / "store", testing::kPassphrase, true);
  ASSERT_TRUE(store.ok());
  for (const auto& role : TestKeySet::RequiredRoles()) {
    if (role == "unload") continue;
    ASSERT_TRUE((*store)->ImportTestKey(role, TestMaster(role)).ok());
  }
  auto layout = card::StandardLayout(TestHolder(kAsn, "123456"));
  auto version = CardKeyVersion(**store, *layout);
  ASSERT_FALSE(version.ok());
  EXPECT_THAT(version.error().message, HasSubstr("has no key \"unload\""));
}

// Forwards to a real store; its Wrap, Mac and Encrypt answers can be cut short, as a
// misconfigured HSM (an 8-byte key where a 16-byte one belongs) would answer.
class ShortAnsweringStore final : public keys::KeyStore {
 public:
  explicit ShortAnsweringStore(keys::KeyStore& inner) : inner_(inner) {}
  std::size_t wrap_size = 0, mac_size = 0, encrypt_size = 0;  // 0: as the store answers

  bool test_only() const override { return inner_.test_only(); }
  std::string Describe() const override { return inner_.Describe(); }
  Result<std::vector<keys::KeyInfo>> List() override { return inner_.List(); }
  Result<keys::KeyInfo> Generate(std::string_view n) override { return inner_.Generate(n); }
  Result<keys::KeyInfo> ImportComponents(std::string_view n, std::span<const Bytes> c) override {
    return inner_.ImportComponents(n, c);
  }
  Result<keys::KeyInfo> ImportTestKey(std::string_view n, ByteView k) override {
    return inner_.ImportTestKey(n, k);
  }
  Result<keys::KeyInfo> ImportWrapped(std::string_view n, keys::KeyRef w, ByteView c, ByteView kcv,
                                      std::optional<std::uint8_t> v) override {
    return inner_.ImportWrapped(n, w, c, kcv, v);
  }
  Result<keys::KeyRef> Find(std::string_view n, std::optional<std::uint8_t> v) override {
    return inner_.Find(n, v);
  }
  Result<keys::KeyRef> Diversify(keys::KeyRef m, ByteView f) override {
    return inner_.Diversify(m, f);
  }
  Result<keys::KeyRef> DeriveSessionKey(keys::KeyRef k, ByteView d) override {
    return inner_.DeriveSessionKey(k, d);
  }
  Result<keys::KeyRef> DeriveTacKey(keys::KeyRef k) override { return inner_.DeriveTacKey(k); }
  Result<keys::KeyRef> Unwrap(keys::KeyRef w, ByteView c) override { return inner_.Unwrap(w, c); }
  void Release(keys::KeyRef k) override { inner_.Release(k); }
  Result<Bytes> Mac(keys::KeyRef k, ByteView d, ByteView iv) override {
    return Cut(inner_.Mac(k, d, iv), mac_size);
  }
  Result<Bytes> Encrypt(keys::KeyRef k, ByteView d, keys::CipherMode m, ByteView iv) override {
    return Cut(inner_.Encrypt(k, d, m, iv), encrypt_size);
  }
  Result<Bytes> Decrypt(keys::KeyRef k, ByteView d, keys::CipherMode m, ByteView iv) override {
    return inner_.Decrypt(k, d, m, iv);
  }
  Result<Bytes> TranslatePinForCard(keys::KeyRef p, ByteView b, std::string_view pan,
                                    keys::KeyRef d, ByteView c) override {
    return inner_.TranslatePinForCard(p, b, pan, d, c);
  }
  Result<std::string> PinOffset(keys::KeyRef k, std::string_view pan,
                                std::string_view pin) override {
    return inner_.PinOffset(k, pan, pin);
  }
  Result<bool> VerifyPin(keys::KeyRef p, ByteView b, std::string_view pan, keys::KeyRef k,
                         std::string_view offset) override {
    return inner_.VerifyPin(p, b, pan, k, offset);
  }
  Result<std::string> PinOffsetFromBlock(keys::KeyRef p, ByteView b, std::string_view block_pan,
                                         keys::KeyRef k, std::string_view pan) override {
    return inner_.PinOffsetFromBlock(p, b, block_pan, k, pan);
  }
  Result<Bytes> Wrap(keys::KeyRef w, keys::KeyRef k) override {
    return Cut(inner_.Wrap(w, k), wrap_size);
  }
  Result<Bytes> Kcv(keys::KeyRef k) override { return inner_.Kcv(k); }

 private:
  static Result<Bytes> Cut(Result<Bytes> r, std::size_t size) {
    if (r.ok() && size != 0) r->resize(size);
    return r;
  }
  keys::KeyStore& inner_;
};

TEST_F(KeyWrappersTest, AStoreAnsweringTheWrongKeyLengthIsAnErrorNotACardMacTry) {
  ShortAnsweringStore store(*store_);
  auto wrapper = KeyStoreCardWrapper::Create(store, kChipSerial, kAsn);
  ASSERT_TRUE(wrapper.ok());
  store.wrap_size = 8;
  auto key = (*wrapper)->WrapKey(card::KeySpec{"purchase", card::KeyUsage::kPurchase, 1, 1, 3});
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(key.error().message,
              HasSubstr("card key purchase v1: the key store returned 8 bytes, 16 expected "
                        "(wrong key length)"));
  store.encrypt_size = 16;
  auto pin = (*wrapper)->WrapPin("123456");
  ASSERT_FALSE(pin.ok());
  EXPECT_THAT(pin.error().message, HasSubstr("SET PIN cryptogram"));
  store.mac_size = 8;
  auto mac = (*wrapper)->TransportMac(HexToBytes("84EE000004"), Bytes(8, 0));
  ASSERT_FALSE(mac.ok());
  EXPECT_THAT(mac.error().message, HasSubstr("transport MAC"));

  auto psam_wrapper = KeyStorePsamWrapper::Create(store, kChipSerial, kPsamSerial);
  ASSERT_TRUE(psam_wrapper.ok());
  auto psam_key = (*psam_wrapper)->WrapKey(psam::KeyHeader{}, "purchase", Bytes(4, 0));
  ASSERT_FALSE(psam_key.ok());
  EXPECT_THAT(psam_key.error().message, HasSubstr("wrong key length"));
}

}  // namespace
}  // namespace medcard::issuance
