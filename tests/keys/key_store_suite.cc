// The backend-independent KeyStore tests. Expected values always come from crypto.h applied to
// keys the test knows in clear (imported as components), or from tests/data/test-vectors.json.
#include "key_store_suite.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <fstream>
#include <regex>
#include <sstream>

#include "crypto/crypto.h"
#include "keys/pboc.h"

namespace medcard::keys::testing {

std::string KeyStoreBackendName(const ::testing::TestParamInfo<KeyStoreBackend>& info) {
  return info.param.name;
}

void PrintTo(const KeyStoreBackend& backend, std::ostream* os) { *os << backend.name; }

void KeyStoreSuite::SetUp() { store_ = NewStore(false); }

void KeyStoreSuite::TearDown() {
  store_.reset();
  if (GetParam().cleanup) GetParam().cleanup();
}

std::unique_ptr<KeyStore> KeyStoreSuite::NewStore(bool test_only) {
  auto store = GetParam().create(test_only);
  EXPECT_TRUE(store.ok()) << store.error().message;
  return store.ok() ? std::move(store).value() : nullptr;
}

void KeyStoreSuite::ReopenStore() {
  auto reopened = GetParam().reopen(std::move(store_));
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  store_ = std::move(reopened).value();
}

KeyRef KeyStoreSuite::ImportKnownKey(std::string_view name, const Bytes& key) {
  Bytes first = crypto::RandomBytes(key.size());
  Bytes second(key.size());
  for (std::size_t i = 0; i < key.size(); ++i) {
    second[i] = static_cast<std::uint8_t>(key[i] ^ first[i]);
  }
  const std::vector<Bytes> components = {first, second};
  auto info = store_->ImportComponents(name, components);
  EXPECT_TRUE(info.ok()) << info.error().message;
  auto ref = store_->Find(name, info.ok() ? std::optional(info->version) : std::nullopt);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  return ref.ok() ? *ref : KeyRef{};
}

namespace {

using ::testing::HasSubstr;

// A random 2-key 3DES key with distinct halves (what a ceremony would produce).
Bytes RandomKey() {
  for (;;) {
    Bytes k = crypto::RandomBytes(16);
    if (!std::equal(k.begin(), k.begin() + 8, k.begin() + 8)) return k;
  }
}

Bytes Unhex(const nlohmann::json& v) { return HexToBytes(v.get<std::string>()); }

const nlohmann::json& Vectors() {
  static const nlohmann::json kVectors = [] {
    std::ifstream in(std::string(MEDCARD_TEST_DATA_DIR) + "/test-vectors.json");
    std::stringstream text;
    text << in.rdbuf();
    return nlohmann::json::parse(text.str())["vectors"];
  }();
  return kVectors;
}

// ---- Stored keys -----------------------------------------------------------------------------

TEST_P(KeyStoreSuite, NewStoreIsEmptyAndNotTestOnly) {
  ASSERT_NE(store_, nullptr);
  EXPECT_FALSE(store_->test_only());
  EXPECT_FALSE(store_->Describe().empty());
  auto list = store_->List();
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_TRUE(list->empty());
}

TEST_P(KeyStoreSuite, GenerateNewName_IsVersion1WithKcvOriginAndDate) {
  auto info = store_->Generate("purchase");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->name, "purchase");
  EXPECT_EQ(info->version, 1);
  EXPECT_EQ(info->origin, "generated");
  EXPECT_TRUE(std::regex_match(info->kcv, std::regex("[0-9A-F]{6}"))) << info->kcv;
  EXPECT_TRUE(std::regex_match(info->created, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << info->created;
  auto list = store_->List();
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(*list, ::testing::ElementsAre(*info));
  auto ref = store_->Find("purchase");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  auto kcv = store_->Kcv(*ref);
  ASSERT_TRUE(kcv.ok());
  EXPECT_EQ(ToHex(*kcv), info->kcv);
}

TEST_P(KeyStoreSuite, GenerateExistingName_RotatesAndTheOldVersionStillVerifies) {
  ASSERT_TRUE(store_->Generate("load").ok());
  auto v1 = store_->Find("load");
  ASSERT_TRUE(v1.ok());
  const Bytes data = HexToBytes("0000100001001122334455");
  auto mac_v1 = store_->Mac(*v1, data);
  ASSERT_TRUE(mac_v1.ok());

  auto rotated = store_->Generate("load");
  ASSERT_TRUE(rotated.ok()) << rotated.error().message;
  EXPECT_EQ(rotated->version, 2);
  auto latest = store_->Find("load");
  ASSERT_TRUE(latest.ok());
  auto latest_kcv = store_->Kcv(*latest);
  ASSERT_TRUE(latest_kcv.ok());
  EXPECT_EQ(ToHex(*latest_kcv), rotated->kcv);
  auto mac_v2 = store_->Mac(*latest, data);
  ASSERT_TRUE(mac_v2.ok());
  EXPECT_NE(*mac_v2, *mac_v1);

  auto old = store_->Find("load", 1);
  ASSERT_TRUE(old.ok()) << old.error().message;
  EXPECT_TRUE(store_->VerifyMac(*old, data, *mac_v1).ok());
  auto list = store_->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].version, 1);
  EXPECT_EQ((*list)[1].version, 2);
}

TEST_P(KeyStoreSuite, GeneratedKeysAreRandomWithOddParityAndDistinctHalves) {
  // The transport key is known to the test, so a generated key wrapped under it can be read.
  const Bytes transport = RandomKey();
  KeyRef transport_ref = ImportKnownKey("transport", transport);
  std::vector<Bytes> seen;
  for (const char* name : {"purchase", "load", "tac"}) {
    ASSERT_TRUE(store_->Generate(name).ok());
    auto ref = store_->Find(name);
    ASSERT_TRUE(ref.ok());
    if (!GetParam().stored_keys_leave_wrapped) {
      // The key cannot be read, not even wrapped: its KCV is what shows.
      EXPECT_FALSE(store_->Wrap(transport_ref, *ref).ok());
      auto kcv = store_->Kcv(*ref);
      ASSERT_TRUE(kcv.ok());
      for (const Bytes& other : seen) EXPECT_NE(*kcv, other);
      seen.push_back(*kcv);
      continue;
    }
    auto wrapped = store_->Wrap(transport_ref, *ref);
    ASSERT_TRUE(wrapped.ok()) << wrapped.error().message;
    auto clear = crypto::DecryptKeyFromTransport(transport, *wrapped);
    ASSERT_TRUE(clear.ok());
    ASSERT_EQ(clear->size(), 16u);
    for (std::uint8_t b : *clear) EXPECT_EQ(std::popcount(static_cast<unsigned>(b)) % 2, 1);
    EXPECT_FALSE(std::equal(clear->begin(), clear->begin() + 8, clear->begin() + 8));
    for (const Bytes& other : seen) EXPECT_NE(*clear, other);
    seen.push_back(*clear);
  }
}

TEST_P(KeyStoreSuite, KeysSurviveReopenWithSameListAndSameResults) {
  ASSERT_TRUE(store_->Generate("purchase").ok());
  ASSERT_TRUE(store_->Generate("purchase").ok());
  const Bytes settlement = RandomKey();
  ImportKnownKey("settlement", settlement);
  ASSERT_TRUE(store_->Generate("tmk/000000000101").ok());
  const Bytes data = HexToBytes("00000064");
  auto before_ref = store_->Find("purchase", 1);
  ASSERT_TRUE(before_ref.ok());
  auto before_mac = store_->Mac(*before_ref, data);
  ASSERT_TRUE(before_mac.ok());
  auto before = store_->List();
  ASSERT_TRUE(before.ok());

  ReopenStore();
  auto after = store_->List();
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(*after, *before);
  auto after_ref = store_->Find("purchase", 1);
  ASSERT_TRUE(after_ref.ok());
  EXPECT_EQ(*store_->Mac(*after_ref, data), *before_mac);
  auto settlement_ref = store_->Find("settlement");
  ASSERT_TRUE(settlement_ref.ok());
  EXPECT_EQ(*store_->Mac(*settlement_ref, data), *crypto::PbocMac(settlement, data));
}

TEST_P(KeyStoreSuite, ImportComponents_KcvIsTheKcvOfTheirXor) {
  const std::vector<Bytes> components = {crypto::RandomBytes(16), crypto::RandomBytes(16),
                                         crypto::RandomBytes(16)};
  Bytes key(16, 0);
  for (const Bytes& c : components) {
    for (std::size_t i = 0; i < 16; ++i) key[i] ^= c[i];
  }
  auto info = store_->ImportComponents("maintenance", components);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->origin, "components");
  EXPECT_EQ(info->version, 1);
  EXPECT_EQ(info->kcv, ToHex(*crypto::Kcv(key)));
  // The store keeps exactly the XOR: its MACs are those of the clear key.
  auto ref = store_->Find("maintenance");
  ASSERT_TRUE(ref.ok());
  const Bytes data = HexToBytes("841E000004");
  EXPECT_EQ(*store_->Mac(*ref, data), *crypto::PbocMac(key, data));
}

TEST_P(KeyStoreSuite, ImportComponents_RefusesTooFewWrongSizesAndWeakResults) {
  const Bytes a = crypto::RandomBytes(16);
  const std::vector<Bytes> one = {a};
  EXPECT_FALSE(store_->ImportComponents("purchase", one).ok());
  const std::vector<Bytes> short_one = {a, crypto::RandomBytes(15)};
  EXPECT_FALSE(store_->ImportComponents("purchase", short_one).ok());
  const std::vector<Bytes> long_one = {a, crypto::RandomBytes(24)};
  EXPECT_FALSE(store_->ImportComponents("purchase", long_one).ok());
  const std::vector<Bytes> cancelling = {a, a};  // XOR is all zero
  EXPECT_FALSE(store_->ImportComponents("purchase", cancelling).ok());
  Bytes b = a;  // a ^ b = X ‖ X: equal halves, single-DES strength
  for (std::size_t i = 0; i < 8; ++i) {
    b[i] ^= 0x5A;
    b[i + 8] ^= 0x5A;
  }
  const std::vector<Bytes> equal_halves = {a, b};
  EXPECT_FALSE(store_->ImportComponents("purchase", equal_halves).ok());
  const std::vector<Bytes> fine = {a, crypto::RandomBytes(16)};
  auto bad_name = store_->ImportComponents("purchace", fine);
  ASSERT_FALSE(bad_name.ok());
  EXPECT_THAT(bad_name.error().message, HasSubstr("purchace"));
  auto list = store_->List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_P(KeyStoreSuite, UnknownNamesAndVersionsGiveErrorsNamingThem) {
  auto bad = store_->Generate("purchace");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message, HasSubstr("purchace"));
  auto missing = store_->Find("purchase");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("purchase"));
  auto not_a_name = store_->Find("../etc/passwd");
  ASSERT_FALSE(not_a_name.ok());
  EXPECT_THAT(not_a_name.error().message, HasSubstr("../etc/passwd"));
  ASSERT_TRUE(store_->Generate("purchase").ok());
  auto no_version = store_->Find("purchase", 7);
  ASSERT_FALSE(no_version.ok());
  EXPECT_THAT(no_version.error().message, HasSubstr("7"));
  EXPECT_THAT(no_version.error().message, HasSubstr("purchase"));
}

TEST_P(KeyStoreSuite, TerminalMasterKeysAreNamedByTwelveUpperCaseHexDigits) {
  EXPECT_TRUE(IsTerminalMasterKeyName("tmk/00112233AABB"));
  EXPECT_FALSE(IsTerminalMasterKeyName("tmk/00112233aabb"));  // one spelling per terminal
  EXPECT_FALSE(IsTerminalMasterKeyName("tmk/00112233AAB"));
  EXPECT_FALSE(IsTerminalMasterKeyName("tmk/00112233AABBC"));
  EXPECT_FALSE(IsTerminalMasterKeyName("tmk00112233AABB"));
  EXPECT_TRUE(IsValidKeyName("visit_record"));
  EXPECT_TRUE(IsValidKeyName("tkek"));
  EXPECT_FALSE(IsValidKeyName("ssse_maintenance"));
  auto info = store_->Generate("tmk/00112233AABB");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->name, "tmk/00112233AABB");
  EXPECT_FALSE(store_->Generate("tmk/00112233aabb").ok());
}

TEST_P(KeyStoreSuite, ImportTestKey_RefusedOnAStoreThatIsNotTestOnly) {
  auto refused = store_->ImportTestKey("purchase", RandomKey());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("test"));
  auto list = store_->List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_P(KeyStoreSuite, ImportTestKey_OnATestStoreIsMarkedTestSetAndSurvivesReopen) {
  store_ = NewStore(true);
  ASSERT_NE(store_, nullptr);
  EXPECT_TRUE(store_->test_only());
  const Bytes key = RandomKey();
  auto info = store_->ImportTestKey("purchase", key);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->origin, "test-set");
  EXPECT_EQ(info->kcv, ToHex(*crypto::Kcv(key)));
  EXPECT_FALSE(store_->ImportTestKey("load", HexToBytes("0011")).ok());
  ReopenStore();
  EXPECT_TRUE(store_->test_only());
  auto ref = store_->Find("purchase");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(*store_->Kcv(*ref), *crypto::Kcv(key));
}

// ---- Derivation ------------------------------------------------------------------------------

TEST_P(KeyStoreSuite, Diversify_EqualsCryptoDiversify) {
  const Bytes master = RandomKey();
  KeyRef mk = ImportKnownKey("purchase", master);
  for (const char* asn : {"11000000000000000042", "41000000899999850001"}) {
    const Bytes factor = crypto::AsnFactor(HexToBytes(asn));
    auto dk = store_->Diversify(mk, factor);
    ASSERT_TRUE(dk.ok()) << dk.error().message;
    const Bytes expected = *crypto::Diversify(master, factor);
    EXPECT_EQ(*store_->Kcv(*dk), *crypto::Kcv(expected));
    const Bytes data = HexToBytes("00001000 06 001122334455 20120229 135100");
    EXPECT_EQ(*store_->Mac(*dk, data), *crypto::PbocMac(expected, data));
    store_->Release(*dk);
  }
}

TEST_P(KeyStoreSuite, Diversify_RefusesFactorsThatAreNotEightBytes) {
  KeyRef mk = ImportKnownKey("purchase", RandomKey());
  for (std::size_t size : {0u, 7u, 9u, 10u, 16u}) {
    auto dk = store_->Diversify(mk, crypto::RandomBytes(size));
    EXPECT_FALSE(dk.ok()) << size;
  }
}

TEST_P(KeyStoreSuite, SessionKeys_EqualCryptoLoadAndPurchaseSessionKeys) {
  const Bytes dlk = RandomKey(), dpk = RandomKey();
  KeyRef dlk_ref = ImportKnownKey("load", dlk);
  KeyRef dpk_ref = ImportKnownKey("purchase", dpk);
  const Bytes random = crypto::RandomBytes(4), serial = HexToBytes("0007");
  auto seslk = store_->DeriveSessionKey(dlk_ref, Concat({random, serial, HexToBytes("8000")}));
  ASSERT_TRUE(seslk.ok()) << seslk.error().message;
  const Bytes expected_seslk = *crypto::LoadSessionKey(dlk, random, serial);
  EXPECT_EQ(*store_->Kcv(*seslk), *crypto::Kcv(expected_seslk));
  const Bytes data = HexToBytes("0000000000001000010011223344");
  EXPECT_EQ(*store_->Mac(*seslk, data), *crypto::PbocMac(expected_seslk, data));

  const Bytes term_serial = HexToBytes("00000102");
  auto sespk =
      store_->DeriveSessionKey(dpk_ref, Concat({random, serial, ByteView(term_serial).last(2)}));
  ASSERT_TRUE(sespk.ok());
  const Bytes expected_sespk = *crypto::PurchaseSessionKey(dpk, random, serial, term_serial);
  EXPECT_EQ(*store_->Mac(*sespk, data), *crypto::PbocMac(expected_sespk, data));

  EXPECT_FALSE(store_->DeriveSessionKey(dlk_ref, crypto::RandomBytes(7)).ok());
  EXPECT_FALSE(store_->DeriveSessionKey(dlk_ref, crypto::RandomBytes(9)).ok());
}

TEST_P(KeyStoreSuite, TacKey_EqualsCryptoTacKey) {
  const Bytes dtk = RandomKey();
  KeyRef dtk_ref = ImportKnownKey("tac", dtk);
  auto tac_key = store_->DeriveTacKey(dtk_ref);
  ASSERT_TRUE(tac_key.ok()) << tac_key.error().message;
  const Bytes expected = *crypto::TacKey(dtk);
  EXPECT_EQ(*store_->Kcv(*tac_key), *crypto::Kcv(expected));
  const Bytes data = crypto::RandomBytes(27);
  EXPECT_EQ(*store_->Mac(*tac_key, data), *crypto::PbocMac(expected, data));
  // An 8-byte key is not a DTK.
  EXPECT_FALSE(store_->DeriveTacKey(*tac_key).ok());
}

// ---- Use -------------------------------------------------------------------------------------

TEST_P(KeyStoreSuite, Mac_With16And8ByteKeysWithAndWithoutIvEqualsCryptoPbocMac) {
  const Bytes key16 = RandomKey();
  KeyRef ref16 = ImportKnownKey("maintenance", key16);
  const Bytes session_data = crypto::RandomBytes(8);
  auto ref8 = store_->DeriveSessionKey(ref16, session_data);
  ASSERT_TRUE(ref8.ok());
  const Bytes key8 = crypto::BlockCipher::Des(key16)->EncryptEcb(session_data);
  const Bytes iv = HexToBytes("1FB1F7C000000000");
  for (std::size_t length : {0u, 1u, 8u, 15u, 16u, 40u}) {
    const Bytes data = crypto::RandomBytes(length);
    EXPECT_EQ(*store_->Mac(ref16, data), *crypto::PbocMac(key16, data)) << length;
    EXPECT_EQ(*store_->Mac(ref16, data, iv), *crypto::PbocMac(key16, data, iv)) << length;
    EXPECT_EQ(*store_->Mac(*ref8, data), *crypto::PbocMac(key8, data)) << length;
    EXPECT_EQ(*store_->Mac(*ref8, data, iv), *crypto::PbocMac(key8, data, iv)) << length;
  }
  EXPECT_FALSE(store_->Mac(ref16, session_data, HexToBytes("0011")).ok());
}

TEST_P(KeyStoreSuite, VerifyMac_AcceptsTheRightMacAndSaysMacInvalidOtherwise) {
  const Bytes key = RandomKey();
  KeyRef ref = ImportKnownKey("settlement", key);
  const Bytes data = crypto::RandomBytes(22);
  Bytes mac = *crypto::PbocMac(key, data);
  EXPECT_TRUE(store_->VerifyMac(ref, data, mac).ok());
  mac[3] ^= 0x01;
  Status wrong = store_->VerifyMac(ref, data, mac);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.error().message, HasSubstr("MAC invalid"));
  EXPECT_FALSE(store_->VerifyMac(ref, data, ByteView(mac).first(3)).ok());
}

TEST_P(KeyStoreSuite, EncryptDecrypt_EcbAndCbcEqualTheBlockCipher) {
  const Bytes key = RandomKey();
  // Not a PIN key: those encrypt and decrypt nothing for the caller (PinKeys_ tests below).
  KeyRef ref = ImportKnownKey("overdraw", key);
  auto cipher = crypto::BlockCipher::Des(key);
  ASSERT_TRUE(cipher.ok());
  const Bytes data = crypto::RandomBytes(24), iv = crypto::RandomBytes(8), zero(8, 0);

  auto ecb = store_->Encrypt(ref, data);
  ASSERT_TRUE(ecb.ok()) << ecb.error().message;
  EXPECT_EQ(*ecb, cipher->EncryptEcb(data));
  EXPECT_EQ(*store_->Decrypt(ref, *ecb), data);

  auto cbc = store_->Encrypt(ref, data, CipherMode::kCbc, iv);
  ASSERT_TRUE(cbc.ok()) << cbc.error().message;
  EXPECT_EQ(*cbc, cipher->EncryptCbc(data, iv));
  EXPECT_EQ(*store_->Decrypt(ref, *cbc, CipherMode::kCbc, iv), data);
  EXPECT_EQ(*store_->Encrypt(ref, data, CipherMode::kCbc), cipher->EncryptCbc(data, zero));

  EXPECT_FALSE(store_->Encrypt(ref, crypto::RandomBytes(12)).ok());
  EXPECT_FALSE(store_->Encrypt(ref, Bytes{}).ok());
  EXPECT_FALSE(store_->Encrypt(ref, data, CipherMode::kCbc, crypto::RandomBytes(4)).ok());
  EXPECT_FALSE(store_->Decrypt(ref, crypto::RandomBytes(9)).ok());
}

TEST_P(KeyStoreSuite, Wrap_EqualsEncryptKeyForTransportAndUnwrapRoundTrips) {
  const Bytes transport = RandomKey(), purchase = RandomKey();
  KeyRef transport_ref = ImportKnownKey("transport", transport);
  KeyRef purchase_ref = ImportKnownKey("purchase", purchase);
  // A PSAM's transport key: the transport master diversified by the chip serial.
  const Bytes chip_serial = HexToBytes("0000000000000101");
  auto card_transport = store_->Diversify(transport_ref, chip_serial);
  ASSERT_TRUE(card_transport.ok());
  const Bytes clear_card_transport = *crypto::Diversify(transport, chip_serial);

  KeyRef to_wrap = purchase_ref;
  Bytes clear = purchase;
  if (!GetParam().stored_keys_leave_wrapped) {
    // The purchase master stays inside; a card key diversified from it travels instead.
    EXPECT_FALSE(store_->Wrap(*card_transport, purchase_ref).ok());
    const Bytes factor = HexToBytes("1100000000000042");
    auto card_key = store_->Diversify(purchase_ref, factor);
    ASSERT_TRUE(card_key.ok());
    to_wrap = *card_key;
    clear = *crypto::Diversify(purchase, factor);
  }
  auto wrapped = store_->Wrap(*card_transport, to_wrap);
  ASSERT_TRUE(wrapped.ok()) << wrapped.error().message;
  EXPECT_EQ(*wrapped, *crypto::EncryptKeyForTransport(clear_card_transport, clear));

  auto unwrapped = store_->Unwrap(*card_transport, *wrapped);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.error().message;
  EXPECT_EQ(*store_->Kcv(*unwrapped), *crypto::Kcv(clear));
  const Bytes data = crypto::RandomBytes(13);
  EXPECT_EQ(*store_->Mac(*unwrapped, data), *crypto::PbocMac(clear, data));
  EXPECT_FALSE(store_->Unwrap(*card_transport, crypto::RandomBytes(12)).ok());
}

TEST_P(KeyStoreSuite, Kcv_OfStoredAndDerivedKeysEqualsCryptoKcv) {
  const Bytes key = RandomKey();
  KeyRef ref = ImportKnownKey("overdraw", key);
  EXPECT_EQ(*store_->Kcv(ref), *crypto::Kcv(key));
  auto session = store_->DeriveSessionKey(ref, HexToBytes("0102030405060708"));
  ASSERT_TRUE(session.ok());
  const Bytes clear_session =
      crypto::BlockCipher::Des(key)->EncryptEcb(HexToBytes("0102030405060708"));
  EXPECT_EQ(*store_->Kcv(*session), *crypto::Kcv(clear_session));
  EXPECT_EQ(store_->Kcv(*session)->size(), 3u);
}

TEST_P(KeyStoreSuite, Release_MakesARefUnusableAndLeavesTheStoredKey) {
  ASSERT_TRUE(store_->Generate("purchase").ok());
  auto ref = store_->Find("purchase");
  ASSERT_TRUE(ref.ok());
  auto derived = store_->Diversify(*ref, crypto::RandomBytes(8));
  ASSERT_TRUE(derived.ok());
  store_->Release(*derived);
  EXPECT_FALSE(store_->Mac(*derived, HexToBytes("00")).ok());
  EXPECT_FALSE(store_->Kcv(*derived).ok());
  store_->Release(*derived);  // twice: harmless
  store_->Release(*ref);
  EXPECT_FALSE(store_->Mac(*ref, HexToBytes("00")).ok());
  auto again = store_->Find("purchase");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(store_->Mac(*again, HexToBytes("00")).ok());
  EXPECT_FALSE(store_->Mac(KeyRef{}, HexToBytes("00")).ok());
}

// ---- Key usage (key_store.h) -----------------------------------------------------------------

TEST_P(KeyStoreSuite, KeyEncryptingKeys_EncryptAndMacButNeverDecryptOrDeriveSessionKeys) {
  const Bytes transport = RandomKey();
  KeyRef transport_ref = ImportKnownKey("transport", transport);
  const Bytes block = crypto::RandomBytes(8);
  EXPECT_EQ(*store_->Encrypt(transport_ref, block),
            crypto::BlockCipher::Des(transport)->EncryptEcb(block));
  EXPECT_EQ(*store_->Mac(transport_ref, block), *crypto::PbocMac(transport, block));
  EXPECT_FALSE(store_->Decrypt(transport_ref, block).ok());
  EXPECT_FALSE(store_->Decrypt(transport_ref, block, CipherMode::kCbc).ok());
  EXPECT_FALSE(store_->DeriveSessionKey(transport_ref, block).ok());
  EXPECT_FALSE(store_->DeriveTacKey(transport_ref).ok());
  auto card_transport = store_->Diversify(transport_ref, block);
  ASSERT_TRUE(card_transport.ok());
  EXPECT_FALSE(store_->Decrypt(*card_transport, block).ok());

  ASSERT_TRUE(store_->Generate("tmk/000000000001").ok());
  auto tmk = store_->Find("tmk/000000000001");
  ASSERT_TRUE(tmk.ok());
  EXPECT_FALSE(store_->Decrypt(*tmk, block).ok());
}

TEST_P(KeyStoreSuite, OnlyKeyEncryptingKeysWrapAndUnwrap) {
  const Bytes purchase = RandomKey();
  KeyRef purchase_ref = ImportKnownKey("purchase", purchase);
  ASSERT_TRUE(store_->Generate("load").ok());
  auto load_ref = store_->Find("load");
  ASSERT_TRUE(load_ref.ok());
  EXPECT_FALSE(store_->Wrap(purchase_ref, *load_ref).ok());
  EXPECT_FALSE(store_->Unwrap(purchase_ref, crypto::RandomBytes(16)).ok());

  // A key received under a transport key is a data key: it wraps nothing.
  ASSERT_TRUE(store_->Generate("transport").ok());
  auto transport = store_->Find("transport");
  ASSERT_TRUE(transport.ok());
  auto received = store_->Unwrap(*transport, crypto::RandomBytes(16));
  ASSERT_TRUE(received.ok()) << received.error().message;
  EXPECT_FALSE(store_->Wrap(*received, *load_ref).ok());
  EXPECT_FALSE(store_->Unwrap(*received, crypto::RandomBytes(16)).ok());
}

TEST_P(KeyStoreSuite, TerminalMasterKeyWrapsWorkingKeysButNeverIssuerKeys) {
  const Bytes tmk = RandomKey();
  KeyRef tmk_ref = ImportKnownKey("tmk/000000000101", tmk);
  ASSERT_TRUE(store_->Generate("purchase").ok());
  ASSERT_TRUE(store_->Generate("transport").ok());
  auto purchase = store_->Find("purchase");
  auto transport = store_->Find("transport");
  ASSERT_TRUE(purchase.ok() && transport.ok());
  EXPECT_FALSE(store_->Wrap(tmk_ref, *purchase).ok());
  EXPECT_FALSE(store_->Wrap(tmk_ref, *transport).ok());
  auto card_key = store_->Diversify(*purchase, crypto::RandomBytes(8));
  ASSERT_TRUE(card_key.ok());
  EXPECT_FALSE(store_->Wrap(tmk_ref, *card_key).ok());

  // A working key that arrived under the TMK goes back out under it unchanged.
  const Bytes working = RandomKey();
  const Bytes cryptogram = *crypto::EncryptKeyForTransport(tmk, working);
  auto working_ref = store_->Unwrap(tmk_ref, cryptogram);
  ASSERT_TRUE(working_ref.ok()) << working_ref.error().message;
  EXPECT_EQ(*store_->Kcv(*working_ref), *crypto::Kcv(working));
  auto rewrapped = store_->Wrap(tmk_ref, *working_ref);
  ASSERT_TRUE(rewrapped.ok()) << rewrapped.error().message;
  EXPECT_EQ(*rewrapped, cryptogram);
  const Bytes pin_block = crypto::RandomBytes(8);
  auto enciphered = store_->Encrypt(*working_ref, pin_block);
  ASSERT_TRUE(enciphered.ok());
  EXPECT_EQ(*store_->Decrypt(*working_ref, *enciphered), pin_block);
}

// ---- TMK delivery (docs/pos.md): Wrap(tkek, tmk) at the bank, ImportWrapped at the terminal ---

TEST_P(KeyStoreSuite, TmkDelivery_ImportWrappedStoresTheTmkAsWrappedAndItWorksAfterReopen) {
  const Bytes tkek = RandomKey(), tmk = RandomKey();
  KeyRef tkek_ref = ImportKnownKey("tkek", tkek);
  const Bytes cryptogram = *crypto::EncryptKeyForTransport(tkek, tmk);
  const Bytes kcv = *crypto::Kcv(tmk);
  if (GetParam().stored_keys_leave_wrapped) {
    // The bank's side: its stored TMK goes out under the tkek as exactly that cryptogram.
    KeyRef bank_tmk = ImportKnownKey("tmk/000000000101", tmk);
    auto exported = store_->Wrap(tkek_ref, bank_tmk);
    ASSERT_TRUE(exported.ok()) << exported.error().message;
    EXPECT_EQ(*exported, cryptogram);
  }

  auto info = store_->ImportWrapped("tmk/0000000002AB", tkek_ref, cryptogram, kcv);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->name, "tmk/0000000002AB");
  EXPECT_EQ(info->version, 1);
  EXPECT_EQ(info->origin, "wrapped");
  EXPECT_EQ(info->kcv, ToHex(kcv));

  ReopenStore();
  auto listed = store_->List();
  ASSERT_TRUE(listed.ok());
  auto it = std::find_if(listed->begin(), listed->end(),
                         [](const KeyInfo& k) { return k.name == "tmk/0000000002AB"; });
  ASSERT_NE(it, listed->end());
  EXPECT_EQ(it->origin, "wrapped");
  auto imported = store_->Find("tmk/0000000002AB");
  ASSERT_TRUE(imported.ok()) << imported.error().message;
  EXPECT_EQ(*store_->Kcv(*imported), kcv);
  // It is a terminal master key like any other: working keys arrive under it, it decrypts
  // nothing.
  const Bytes working = RandomKey();
  auto working_ref = store_->Unwrap(*imported, *crypto::EncryptKeyForTransport(tmk, working));
  ASSERT_TRUE(working_ref.ok()) << working_ref.error().message;
  const Bytes data = crypto::RandomBytes(11);
  EXPECT_EQ(*store_->Mac(*working_ref, data), *crypto::PbocMac(working, data));
  EXPECT_FALSE(store_->Decrypt(*imported, crypto::RandomBytes(8)).ok());

  // A new delivery for the same terminal is its next version.
  auto tkek_again = store_->Find("tkek");
  ASSERT_TRUE(tkek_again.ok());
  const Bytes next_tmk = RandomKey();
  auto next = store_->ImportWrapped("tmk/0000000002AB", *tkek_again,
                                    *crypto::EncryptKeyForTransport(tkek, next_tmk),
                                    *crypto::Kcv(next_tmk));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->version, 2);
}

// A terminal reinstalled after the bank rotated its TMK receives only the bank's current version:
// it keeps the bank's number, so the sign-on names the key the host holds (docs/pos.md).
TEST_P(KeyStoreSuite, TmkDelivery_KeepsTheSendersVersionAndRefusesAnOlderOne) {
  const Bytes tkek = RandomKey();
  KeyRef tkek_ref = ImportKnownKey("tkek", tkek);
  auto deliver = [&](std::optional<std::uint8_t> version) {
    const Bytes tmk = RandomKey();
    return store_->ImportWrapped("tmk/000000000401", tkek_ref,
                                 *crypto::EncryptKeyForTransport(tkek, tmk), *crypto::Kcv(tmk),
                                 version);
  };
  auto v3 = deliver(3);
  ASSERT_TRUE(v3.ok()) << v3.error().message;
  EXPECT_EQ(v3->version, 3);
  ASSERT_TRUE(store_->Find("tmk/000000000401", 3).ok());
  EXPECT_FALSE(store_->Find("tmk/000000000401", 1).ok());

  for (std::uint8_t stale : {std::uint8_t{2}, std::uint8_t{3}}) {
    auto older = deliver(stale);
    ASSERT_FALSE(older.ok());
    EXPECT_THAT(older.error().message, HasSubstr("already holds version 3"));
  }
  auto v5 = deliver(5);
  ASSERT_TRUE(v5.ok()) << v5.error().message;
  EXPECT_EQ(v5->version, 5);
  auto next = deliver(std::nullopt);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->version, 6);
  auto listed = store_->List();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 4u);  // tkek, tmk v3, v5, v6: the refused ones stored nothing
}

TEST_P(KeyStoreSuite, TmkDelivery_WrongKcvKeyOrNameStoresNothing) {
  const Bytes tkek = RandomKey(), tmk = RandomKey();
  KeyRef tkek_ref = ImportKnownKey("tkek", tkek);
  KeyRef transport_ref = ImportKnownKey("transport", RandomKey());
  const Bytes cryptogram = *crypto::EncryptKeyForTransport(tkek, tmk);
  const Bytes kcv = *crypto::Kcv(tmk);

  Bytes wrong_kcv = kcv;
  wrong_kcv[0] ^= 0x01;
  auto mismatch = store_->ImportWrapped("tmk/000000000301", tkek_ref, cryptogram, wrong_kcv);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(mismatch.error().message, HasSubstr("KCV"));
  // Under another tkek the same cryptogram is some other key: its KCV gives it away.
  const Bytes other_tkek = RandomKey();
  auto other = store_->ImportWrapped("tmk/000000000301", tkek_ref,
                                     *crypto::EncryptKeyForTransport(other_tkek, tmk), kcv);
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.error().message, HasSubstr("KCV"));

  EXPECT_FALSE(store_->ImportWrapped("tmk/000000000301", transport_ref, cryptogram, kcv).ok());
  auto not_tmk = store_->ImportWrapped("purchase", tkek_ref, cryptogram, kcv);
  ASSERT_FALSE(not_tmk.ok());
  EXPECT_THAT(not_tmk.error().message, HasSubstr("purchase"));
  EXPECT_FALSE(store_->ImportWrapped("tkek", tkek_ref, cryptogram, kcv).ok());
  EXPECT_FALSE(
      store_->ImportWrapped("tmk/000000000301", tkek_ref, ByteView(cryptogram).first(8), kcv).ok());

  auto listed = store_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);  // tkek and transport: nothing was imported
  for (const KeyInfo& k : *listed) EXPECT_NE(k.name, "tmk/000000000301");
}

TEST_P(KeyStoreSuite, TmkDelivery_TkekWrapsOnlyTmksIsNeverWrappedAndDecryptsNothing) {
  KeyRef tkek_ref = ImportKnownKey("tkek", RandomKey());
  KeyRef transport_ref = ImportKnownKey("transport", RandomKey());
  ASSERT_TRUE(store_->Generate("purchase").ok());
  auto purchase = store_->Find("purchase");
  ASSERT_TRUE(purchase.ok());
  EXPECT_FALSE(store_->Wrap(tkek_ref, *purchase).ok());
  EXPECT_FALSE(store_->Wrap(tkek_ref, transport_ref).ok());
  auto card_key = store_->Diversify(*purchase, crypto::RandomBytes(8));
  ASSERT_TRUE(card_key.ok());
  EXPECT_FALSE(store_->Wrap(tkek_ref, *card_key).ok());
  auto tkek_out = store_->Wrap(transport_ref, tkek_ref);
  ASSERT_FALSE(tkek_out.ok());
  EXPECT_THAT(tkek_out.error().message, HasSubstr("tkek"));
  EXPECT_FALSE(store_->Unwrap(tkek_ref, crypto::RandomBytes(16)).ok());
  EXPECT_FALSE(store_->Decrypt(tkek_ref, crypto::RandomBytes(8)).ok());
  EXPECT_FALSE(store_->DeriveSessionKey(tkek_ref, crypto::RandomBytes(8)).ok());
}

// ---- Known answers (tests/data/test-vectors.json) --------------------------------------------

TEST_P(KeyStoreSuite, TestVectors_LoadSessionKeysMacsAndTacThroughTheStore) {
  int checked = 0;
  for (const auto& v : Vectors()) {
    if (v["algorithm"] != "load") continue;
    SCOPED_TRACE(v["name"].get<std::string>());
    store_ = NewStore(false);
    KeyRef dlk = ImportKnownKey("load", Unhex(v["DLK"]));
    const Bytes serial = Unhex(v["onlineSerial"]);
    auto seslk =
        store_->DeriveSessionKey(dlk, Concat({Unhex(v["random"]), serial, HexToBytes("8000")}));
    ASSERT_TRUE(seslk.ok()) << seslk.error().message;
    EXPECT_EQ(*store_->Kcv(*seslk), *crypto::Kcv(Unhex(v["SESLK"])));
    const Bytes common = Concat({Unhex(v["amount"]), Unhex(v["type"]), Unhex(v["termNo"])});
    EXPECT_TRUE(
        store_->VerifyMac(*seslk, Concat({Unhex(v["oldBalance"]), common}), Unhex(v["MAC1"])).ok());
    EXPECT_EQ(*store_->Mac(*seslk, Concat({common, Unhex(v["date"]), Unhex(v["time"])})),
              Unhex(v["MAC2"]));
    if (v.contains("TAC")) {
      KeyRef dtk = ImportKnownKey("tac", Unhex(v["DTK"]));
      auto tac_key = store_->DeriveTacKey(dtk);
      ASSERT_TRUE(tac_key.ok());
      EXPECT_EQ(*store_->Kcv(*tac_key), *crypto::Kcv(Unhex(v["TACKey"])));
      const Bytes tac_data =
          Concat({Unhex(v["newBalance"]), serial, common, Unhex(v["date"]), Unhex(v["time"])});
      EXPECT_EQ(*store_->Mac(*tac_key, tac_data), Unhex(v["TAC"]));
    }
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST_P(KeyStoreSuite, TestVectors_PurchaseSessionKeysMacsAndTacThroughTheStore) {
  int checked = 0;
  for (const auto& v : Vectors()) {
    if (v["algorithm"] != "purchase") continue;
    SCOPED_TRACE(v["name"].get<std::string>());
    store_ = NewStore(false);
    KeyRef dpk = ImportKnownKey("purchase", Unhex(v["DPK"]));
    const Bytes term_serial = Unhex(v["termTxnSerial"]);
    auto sespk = store_->DeriveSessionKey(
        dpk,
        Concat({Unhex(v["random"]), Unhex(v["offlineSerial"]), ByteView(term_serial).last(2)}));
    ASSERT_TRUE(sespk.ok()) << sespk.error().message;
    EXPECT_EQ(*store_->Kcv(*sespk), *crypto::Kcv(Unhex(v["SESPK"])));
    const Bytes common = Concat({Unhex(v["amount"]), Unhex(v["type"]), Unhex(v["termNo"])});
    if (v.contains("MAC1")) {
      EXPECT_EQ(*store_->Mac(*sespk, Concat({common, Unhex(v["date"]), Unhex(v["time"])})),
                Unhex(v["MAC1"]));
    }
    EXPECT_EQ(*store_->Mac(*sespk, Unhex(v["amount"])), Unhex(v["MAC2"]));
    if (v.contains("TAC")) {
      KeyRef dtk = ImportKnownKey("tac", Unhex(v["DTK"]));
      auto tac_key = store_->DeriveTacKey(dtk);
      ASSERT_TRUE(tac_key.ok());
      const Bytes tac_data = Concat({common, term_serial, Unhex(v["date"]), Unhex(v["time"])});
      EXPECT_TRUE(store_->VerifyMac(*tac_key, tac_data, Unhex(v["TAC"])).ok());
    }
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST_P(KeyStoreSuite, TestVectors_SecureMessagingMacsAndDiversificationThroughTheStore) {
  int checked = 0;
  for (const auto& v : Vectors()) {
    SCOPED_TRACE(v["name"].get<std::string>());
    if (v["algorithm"] == "mac16-iv") {
      store_ = NewStore(false);
      KeyRef key = ImportKnownKey("maintenance", Unhex(v["key"]));
      EXPECT_EQ(*store_->Mac(key, Unhex(v["data"]), Unhex(v["iv"])), Unhex(v["MAC"]));
      ++checked;
    } else if (v["algorithm"] == "diversify") {
      store_ = NewStore(false);
      KeyRef mk = ImportKnownKey("purchase", Unhex(v["masterKey"]));
      auto dk = store_->Diversify(mk, Unhex(v["factor"]));
      ASSERT_TRUE(dk.ok());
      EXPECT_EQ(*store_->Kcv(*dk), *crypto::Kcv(Unhex(v["derivedKey"])));
      ++checked;
    }
  }
  EXPECT_GE(checked, 3);
}

// ---- PBOC issuer helpers (keys/pboc.h) -------------------------------------------------------

TEST_P(KeyStoreSuite, Pboc_AuthoriseLoadChecksMac1AndReturnsMac2AndTheTacVerifies) {
  const Bytes load_master = RandomKey(), tac_master = RandomKey();
  ImportKnownKey("load", load_master);
  ImportKnownKey("tac", tac_master);
  LoadAuthorisationRequest r;
  r.asn = HexToBytes("11000000000000000101");
  r.type = 0x01;
  r.amount = 10000;
  r.terminal_number = HexToBytes("000000000101");
  r.old_balance = 2500;
  r.online_serial = 3;
  r.random = crypto::RandomBytes(4);
  r.date = Date{2026, 11, 25};
  r.time = TimeOfDay{10, 30, 0};
  // What the card computes, from its own (clear) keys.
  const Bytes factor = crypto::AsnFactor(r.asn);
  const Bytes dlk = *crypto::Diversify(load_master, factor);
  const Bytes seslk = *crypto::LoadSessionKey(dlk, r.random, HexToBytes("0003"));
  const Bytes common = Concat({HexToBytes("00002710 01"), r.terminal_number});
  r.mac1 = *crypto::PbocMac(seslk, Concat({HexToBytes("000009C4"), common}));

  auto mac2 = AuthoriseLoad(*store_, r);
  ASSERT_TRUE(mac2.ok()) << mac2.error().message;
  EXPECT_EQ(*mac2, *crypto::PbocMac(seslk, Concat({common, HexToBytes("20261125 103000")})));

  const Bytes tac_key = *crypto::TacKey(*crypto::Diversify(tac_master, factor));
  const Bytes tac = *crypto::PbocMac(
      tac_key, Concat({HexToBytes("000030D4 0003"), common, HexToBytes("20261125 103000")}));
  EXPECT_TRUE(VerifyLoadTac(*store_, r, tac).ok());
  Bytes forged_tac = tac;
  forged_tac[0] ^= 0x80;
  EXPECT_FALSE(VerifyLoadTac(*store_, r, forged_tac).ok());

  LoadAuthorisationRequest forged = r;
  forged.amount = 100000;  // the terminal asks for more than the card signed
  auto refused = AuthoriseLoad(*store_, forged);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("MAC1 invalid"));
  forged = r;
  forged.type = 0x06;
  EXPECT_FALSE(AuthoriseLoad(*store_, forged).ok());
  forged = r;
  forged.asn.pop_back();
  EXPECT_FALSE(AuthoriseLoad(*store_, forged).ok());
}

TEST_P(KeyStoreSuite, Pboc_CardKeysFollowTheCardsKeyVersionAcrossRotation) {
  const Bytes v1 = RandomKey(), v2 = RandomKey();
  ImportKnownKey("tac", v1);
  ImportKnownKey("tac", v2);
  const Bytes asn = HexToBytes("11000000000000000102");
  PurchaseRecord p;
  p.asn = asn;
  p.type = 0x06;
  p.amount = 380;
  p.terminal_number = HexToBytes("000000000101");
  p.terminal_serial = 42;
  p.date = Date{2026, 11, 25};
  p.time = TimeOfDay{11, 0, 5};
  const Bytes data = Concat({HexToBytes("0000017C 06 000000000101 0000002A 20261125 110005")});
  for (const std::uint8_t version : {std::uint8_t{1}, std::uint8_t{2}}) {
    const Bytes& master = version == 1 ? v1 : v2;
    p.key_version = version;
    p.tac =
        *crypto::PbocMac(*crypto::TacKey(*crypto::Diversify(master, crypto::AsnFactor(asn))), data);
    EXPECT_TRUE(VerifyPurchaseTac(*store_, p).ok()) << int{version};
    PurchaseRecord other_version = p;
    other_version.key_version = static_cast<std::uint8_t>(3 - version);
    EXPECT_FALSE(VerifyPurchaseTac(*store_, other_version).ok()) << int{version};
  }
  p.key_version = 3;
  auto missing = VerifyPurchaseTac(*store_, p);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("3"));
  auto card_key = CardKey(*store_, "tac", asn, 2);
  ASSERT_TRUE(card_key.ok());
  EXPECT_EQ(*store_->Kcv(*card_key), *crypto::Kcv(*crypto::Diversify(v2, crypto::AsnFactor(asn))));
  EXPECT_FALSE(CardKey(*store_, "tac", HexToBytes("1100"), 1).ok());
}

TEST_P(KeyStoreSuite, Pboc_SamTotalsVerifyOnlyWhenSignedAndTheAcknowledgementIsTheHostMac) {
  const Bytes settlement_master = RandomKey();
  ImportKnownKey("settlement", settlement_master);
  const Bytes psam_serial = HexToBytes("50000000000000000101");
  const Bytes psam_key = *crypto::Diversify(settlement_master, crypto::AsnFactor(psam_serial));
  const Bytes challenge = crypto::RandomBytes(8);
  const Bytes totals = HexToBytes("00000004 00000000277A 00000001 00000004");
  const Bytes answer = Concat({totals, *crypto::PbocMac(psam_key, Concat({challenge, totals}))});

  EXPECT_TRUE(VerifySamTotals(*store_, psam_serial, challenge, answer).ok());
  auto ack = AcknowledgeSamTotals(*store_, psam_serial, challenge, answer);
  ASSERT_TRUE(ack.ok()) << ack.error().message;
  EXPECT_EQ(*ack, *crypto::PbocMac(psam_key, Concat({HexToBytes("7C"), challenge, totals})));

  Bytes inflated = answer;
  inflated[9] ^= 0x01;  // one fen more than the PSAM signed
  auto refused = AcknowledgeSamTotals(*store_, psam_serial, challenge, inflated);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("SAM totals MAC invalid"));
  EXPECT_FALSE(AcknowledgeSamTotals(*store_, psam_serial, crypto::RandomBytes(8), answer).ok());
  EXPECT_FALSE(
      AcknowledgeSamTotals(*store_, psam_serial, challenge, ByteView(answer).first(21)).ok());
}

// ---- PIN translation (TranslatePinForCard) ------------------------------------------------

// The PIN pad's side: an ISO 9564 format 0 block for `pan`, 3DES-ECB under the PEK.
Bytes PinPadBlock(const Bytes& pek, std::string_view pin, std::string_view pan) {
  return crypto::BlockCipher::Des(pek)->EncryptEcb(
      *crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, pin, pan));
}

constexpr char kPinAsn[] = "11000000000000000042";
constexpr char kPinPan[] = "1000000000000000420";  // a PIN block's PAN: 8..19 digits

TEST_P(KeyStoreSuite, PinKeys_PekNamesNameAWorkstation) {
  EXPECT_TRUE(IsValidKeyName("pek/BRANCH01-T03"));
  EXPECT_TRUE(IsPinEncryptionKeyName("pek/A"));
  EXPECT_FALSE(IsValidKeyName("pek/"));
  EXPECT_FALSE(IsValidKeyName("pek/branch01"));
  EXPECT_FALSE(IsValidKeyName("pek/T_1"));
  EXPECT_FALSE(IsValidKeyName("pek/" + std::string(33, 'A')));
  EXPECT_TRUE(IsValidKeyName("pek/" + std::string(32, 'A')));
  const Bytes pek = RandomKey();
  ImportKnownKey("pek/BRANCH01-T03", pek);
  ReopenStore();
  auto ref = store_->Find("pek/BRANCH01-T03");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  EXPECT_EQ(*store_->Kcv(*ref), *crypto::Kcv(pek));
}

TEST_P(KeyStoreSuite, TranslatePinForCard_IsThePinUnblockCryptogramAndMacUnderTheCardsDpuk) {
  const Bytes pek = RandomKey();
  const Bytes master = RandomKey();
  KeyRef pek_ref = ImportKnownKey("pek/T1", pek);
  ImportKnownKey("pin_unblock", master);
  const Bytes asn = HexToBytes(kPinAsn);
  auto dpuk = CardKey(*store_, "pin_unblock", asn, 1);
  ASSERT_TRUE(dpuk.ok()) << dpuk.error().message;
  const Bytes dpuk_clear = *crypto::Diversify(master, crypto::AsnFactor(asn));
  for (const char* challenge_hex : {"A1B2C3D4", "0102030405060708"}) {
    const Bytes challenge = HexToBytes(challenge_hex);
    auto data = store_->TranslatePinForCard(pek_ref, PinPadBlock(pek, "654321", kPinPan), kPinPan,
                                            *dpuk, challenge);
    ASSERT_TRUE(data.ok()) << data.error().message;
    ASSERT_EQ(data->size(), 12u);
    const Bytes enc =
        crypto::BlockCipher::Des(dpuk_clear)->EncryptEcb(HexToBytes("03654321 80000000"));
    EXPECT_EQ(Bytes(data->begin(), data->begin() + 8), enc);
    Bytes iv = challenge;
    iv.resize(8, 0);
    EXPECT_EQ(Bytes(data->begin() + 8, data->end()),
              *crypto::PbocMac(dpuk_clear, Concat({HexToBytes("8424 0000 0C"), enc}), iv));
  }
}

TEST_P(KeyStoreSuite, TranslatePinForCard_RefusesWrongKeysBlocksAndPinsWithoutShowingThePin) {
  const Bytes pek = RandomKey();
  KeyRef pek_ref = ImportKnownKey("pek/T1", pek);
  ImportKnownKey("pin_unblock", RandomKey());
  ImportKnownKey("purchase", RandomKey());
  KeyRef transport = ImportKnownKey("transport", RandomKey());
  const Bytes asn = HexToBytes(kPinAsn);
  KeyRef dpuk = *CardKey(*store_, "pin_unblock", asn, 1);
  KeyRef dpk = *CardKey(*store_, "purchase", asn, 1);
  // Found again: CardKey released its master's ref (a PKCS#11 store shares stored refs).
  KeyRef purchase = *store_->Find("purchase");
  KeyRef received = *store_->Unwrap(transport, crypto::RandomBytes(16));
  const Bytes challenge = HexToBytes("A1B2C3D4");
  const Bytes block = PinPadBlock(pek, "987123", kPinPan);
  ASSERT_TRUE(store_->TranslatePinForCard(pek_ref, block, kPinPan, dpuk, challenge).ok());

  struct Case {
    std::string what;
    Result<Bytes> result;
    std::string says;
  };
  const Case cases[] = {
      {"block under another PEK",
       store_->TranslatePinForCard(pek_ref, PinPadBlock(RandomKey(), "987123", kPinPan), kPinPan,
                                   dpuk, challenge),
       "PIN block"},
      {"block for another card",
       store_->TranslatePinForCard(pek_ref, block, "1000000000000000430", dpuk, challenge),
       "PIN block"},
      {"a 4-digit PIN",
       store_->TranslatePinForCard(pek_ref, PinPadBlock(pek, "9871", kPinPan), kPinPan, dpuk,
                                   challenge),
       "6 digits"},
      {"a 12-digit PIN",
       store_->TranslatePinForCard(pek_ref, PinPadBlock(pek, "987123987123", kPinPan), kPinPan,
                                   dpuk, challenge),
       "6 digits"},
      {"not a PEK", store_->TranslatePinForCard(purchase, block, kPinPan, dpuk, challenge), "pek/"},
      {"a purchase key as DPUK",
       store_->TranslatePinForCard(pek_ref, block, kPinPan, dpk, challenge), "DPUK"},
      {"a received key as DPUK",
       store_->TranslatePinForCard(pek_ref, block, kPinPan, received, challenge), "DPUK"},
      {"a 7-byte block",
       store_->TranslatePinForCard(pek_ref, ByteView(block).first(7), kPinPan, dpuk, challenge),
       "8 bytes"},
      {"a 5-byte challenge",
       store_->TranslatePinForCard(pek_ref, block, kPinPan, dpuk, HexToBytes("0102030405")),
       "4 or 8 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_FALSE(c.result.ok());
    EXPECT_THAT(c.result.error().message, HasSubstr(c.says));
    for (const char* pin : {"987123", "9871", "98 71 23"}) {
      EXPECT_THAT(c.result.error().message, ::testing::Not(HasSubstr(pin)));
    }
  }
}

TEST_P(KeyStoreSuite, PinKeys_NeverDecryptDeriveOrTravelExceptTheDpukToItsCard) {
  const Bytes pek = RandomKey();
  KeyRef pek_ref = ImportKnownKey("pek/T1", pek);
  ImportKnownKey("pin_unblock", RandomKey());
  KeyRef transport = ImportKnownKey("transport", RandomKey());
  const Bytes asn = HexToBytes(kPinAsn);
  KeyRef dpuk = *CardKey(*store_, "pin_unblock", asn, 1);
  KeyRef master = *store_->Find("pin_unblock");
  const Bytes block = crypto::RandomBytes(8);
  // The PIN pad's operation is allowed (a test PIN pad may run on the store).
  EXPECT_EQ(*store_->Encrypt(pek_ref, block), crypto::BlockCipher::Des(pek)->EncryptEcb(block));
  // Encrypt(master, D ‖ ~D) would be a card's DPUK in clear.
  EXPECT_FALSE(store_->Encrypt(master, Concat({block, block})).ok());
  EXPECT_FALSE(store_->Encrypt(dpuk, block).ok());
  for (KeyRef pin_key : {pek_ref, master, dpuk}) {
    EXPECT_FALSE(store_->Decrypt(pin_key, block).ok());
    EXPECT_FALSE(store_->Decrypt(pin_key, block, CipherMode::kCbc).ok());
    EXPECT_FALSE(store_->DeriveSessionKey(pin_key, block).ok());
    EXPECT_FALSE(store_->DeriveTacKey(pin_key).ok());
  }
  auto card_transport = store_->Diversify(transport, crypto::AsnFactor(asn));
  ASSERT_TRUE(card_transport.ok());
  auto wrapped_pek = store_->Wrap(*card_transport, pek_ref);
  ASSERT_FALSE(wrapped_pek.ok());
  EXPECT_THAT(wrapped_pek.error().message, HasSubstr("never wrapped"));
  // WRITE KEY of personalisation: the DPUK under its card's transport key.
  EXPECT_TRUE(store_->Wrap(*card_transport, dpuk).ok());
  ASSERT_TRUE(store_->Generate("tmk/000000000001").ok());
  EXPECT_FALSE(store_->Wrap(*store_->Find("tmk/000000000001"), dpuk).ok());
}

// ---- Online PIN verification (PinOffset, VerifyPin) -----------------------------------------

// IBM 3624 computed here from the PVK in clear: natural PIN = 3DES(PVK, the PAN's rightmost 16
// digits as BCD) decimalised; offset = PIN − natural PIN, digit by digit mod 10.
std::string ExpectedOffset(const Bytes& pvk, std::string_view pan, std::string_view pin) {
  std::string digits = std::string(16 - std::min<std::size_t>(16, pan.size()), '0') +
                       std::string(pan.substr(pan.size() > 16 ? pan.size() - 16 : 0));
  const Bytes enciphered = crypto::BlockCipher::Des(pvk)->EncryptEcb(HexToBytes(digits));
  const std::string hex = ToHex(enciphered);
  std::string offset;
  for (std::size_t i = 0; i < pin.size(); ++i) {
    const int natural = std::stoi(std::string(1, hex[i]), nullptr, 16) % 10;
    offset += static_cast<char>('0' + ((pin[i] - '0') - natural + 10) % 10);
  }
  return offset;
}

TEST_P(KeyStoreSuite, PinVerification_PvkNamesAndTheOffsetIsIbm3624) {
  EXPECT_TRUE(IsValidKeyName("pvk/CARDS"));
  EXPECT_TRUE(IsPinVerificationKeyName(kCardPinVerificationKey));
  EXPECT_FALSE(IsValidKeyName("pvk/"));
  EXPECT_FALSE(IsValidKeyName("pvk/cards"));
  const Bytes pvk = RandomKey();
  ImportKnownKey("pvk/CARDS", pvk);
  ReopenStore();
  KeyRef ref = *store_->Find("pvk/CARDS");
  for (const char* pin : {"123456", "9871", "987123987123"}) {
    SCOPED_TRACE(pin);
    auto offset = store_->PinOffset(ref, kPinPan, pin);
    ASSERT_TRUE(offset.ok()) << offset.error().message;
    EXPECT_EQ(*offset, ExpectedOffset(pvk, kPinPan, pin));
  }
  // Another card, another offset for the same PIN (the PAN is the validation data).
  EXPECT_EQ(*store_->PinOffset(ref, "4100000089999985", "123456"),
            ExpectedOffset(pvk, "4100000089999985", "123456"));
  for (const auto& [pan, pin] : {std::pair<std::string, std::string>{kPinPan, "123"},
                                 {kPinPan, "1234567890123"},
                                 {kPinPan, "12a456"},
                                 {"1234567", "123456"},
                                 {"12345678901234567890", "123456"}}) {
    auto refused = store_->PinOffset(ref, pan, pin);
    ASSERT_FALSE(refused.ok()) << pan << " " << pin;
    EXPECT_THAT(refused.error().message, ::testing::Not(HasSubstr(pin)));
  }
}

TEST_P(KeyStoreSuite, PinVerification_TheRightPinMatchesUnderAWorkingPinKeyOrAPek) {
  const Bytes pvk = RandomKey();
  KeyRef pvk_ref = ImportKnownKey("pvk/CARDS", pvk);
  const std::string offset = *store_->PinOffset(pvk_ref, kPinPan, "739515");
  // A terminal's working PIN key as the host holds it: unwrapped under the terminal's TMK.
  const Bytes tmk = RandomKey();
  KeyRef tmk_ref = ImportKnownKey("tmk/000000000301", tmk);
  const Bytes working_pin_key = RandomKey();
  KeyRef received = *store_->Unwrap(tmk_ref, *crypto::EncryptKeyForTransport(tmk, working_pin_key));
  const Bytes pek = RandomKey();
  KeyRef pek_ref = ImportKnownKey("pek/T1", pek);
  struct Case {
    std::string what;
    KeyRef pin_key;
    Bytes block;
    std::string offset;
    std::string pan;
    bool match;
  };
  const Case cases[] = {
      {"right PIN, working key", received, PinPadBlock(working_pin_key, "739515", kPinPan), offset,
       kPinPan, true},
      {"right PIN, PEK", pek_ref, PinPadBlock(pek, "739515", kPinPan), offset, kPinPan, true},
      {"wrong PIN", received, PinPadBlock(working_pin_key, "739516", kPinPan), offset, kPinPan,
       false},
      {"shorter PIN", received, PinPadBlock(working_pin_key, "7395", kPinPan), offset, kPinPan,
       false},
      {"block under another key", received, PinPadBlock(RandomKey(), "739515", kPinPan), offset,
       kPinPan, false},
      {"block for another card", received,
       PinPadBlock(working_pin_key, "739515", "1000000000000000430"), offset, kPinPan, false},
      {"another offset", received, PinPadBlock(working_pin_key, "739515", kPinPan),
       offset == "000000" ? "000001" : "000000", kPinPan, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto verified = store_->VerifyPin(c.pin_key, c.block, c.pan, pvk_ref, c.offset);
    ASSERT_TRUE(verified.ok()) << verified.error().message;
    EXPECT_EQ(*verified, c.match);
  }
}

TEST_P(KeyStoreSuite, PinVerification_PvkOnlyVerifiesAndWrongArgumentsAreErrors) {
  KeyRef pvk = ImportKnownKey("pvk/CARDS", RandomKey());
  const Bytes pek = RandomKey();
  KeyRef pek_ref = ImportKnownKey("pek/T1", pek);
  KeyRef purchase = ImportKnownKey("purchase", RandomKey());
  KeyRef transport = ImportKnownKey("transport", RandomKey());
  const Bytes block = PinPadBlock(pek, "739515", kPinPan);
  const std::string offset = *store_->PinOffset(pvk, kPinPan, "739515");
  ASSERT_TRUE(*store_->VerifyPin(pek_ref, block, kPinPan, pvk, offset));
  // 3DES under the PVK of a card's validation data is its natural PIN: never for the caller.
  const Bytes data = crypto::RandomBytes(8);
  EXPECT_FALSE(store_->Encrypt(pvk, data).ok());
  EXPECT_FALSE(store_->Mac(pvk, data).ok());
  EXPECT_FALSE(store_->Decrypt(pvk, data).ok());
  EXPECT_FALSE(store_->DeriveSessionKey(pvk, data).ok());
  EXPECT_FALSE(store_->DeriveTacKey(pvk).ok());
  auto wrapped = store_->Wrap(*store_->Diversify(transport, data), pvk);
  ASSERT_FALSE(wrapped.ok());
  EXPECT_THAT(wrapped.error().message, HasSubstr("never wrapped"));
  // Only a PVK makes or checks offsets; only a working PIN key or a PEK carries the block.
  EXPECT_FALSE(store_->PinOffset(purchase, kPinPan, "739515").ok());
  EXPECT_FALSE(store_->PinOffset(pek_ref, kPinPan, "739515").ok());
  EXPECT_FALSE(store_->VerifyPin(pek_ref, block, kPinPan, purchase, offset).ok());
  EXPECT_FALSE(store_->VerifyPin(purchase, block, kPinPan, pvk, offset).ok());
  EXPECT_FALSE(store_->VerifyPin(transport, block, kPinPan, pvk, offset).ok());
  EXPECT_FALSE(store_->VerifyPin(pek_ref, ByteView(block).first(7), kPinPan, pvk, offset).ok());
  EXPECT_FALSE(store_->VerifyPin(pek_ref, block, "12345", pvk, offset).ok());
  EXPECT_FALSE(store_->VerifyPin(pek_ref, block, kPinPan, pvk, "12x456").ok());
  EXPECT_FALSE(store_->VerifyPin(pek_ref, block, kPinPan, pvk, "123").ok());
}

// ---- A new PIN's offset from its PIN block (PinOffsetFromBlock, a branch PIN reset) ---------

TEST_P(KeyStoreSuite, PinOffsetFromBlock_EqualsPinOffsetOfTheSamePinAndVerifiesOnline) {
  const Bytes pvk = RandomKey();
  ImportKnownKey("pvk/CARDS", pvk);
  const Bytes pek = RandomKey();
  ImportKnownKey("pek/BRANCH01", pek);
  ReopenStore();
  KeyRef pvk_ref = *store_->Find("pvk/CARDS");
  KeyRef pek_ref = *store_->Find("pek/BRANCH01");
  for (const char* pin : {"654321", "9871", "987123987123"}) {
    SCOPED_TRACE(pin);
    auto offset = store_->PinOffsetFromBlock(pek_ref, PinPadBlock(pek, pin, kPinPan), kPinPan,
                                             pvk_ref, kPinPan);
    ASSERT_TRUE(offset.ok()) << offset.error().message;
    EXPECT_EQ(*offset, *store_->PinOffset(pvk_ref, kPinPan, pin));
    EXPECT_EQ(*offset, ExpectedOffset(pvk, kPinPan, pin));
    // The value the host stores then verifies that PIN, and only that PIN, online.
    EXPECT_TRUE(
        *store_->VerifyPin(pek_ref, PinPadBlock(pek, pin, kPinPan), kPinPan, pvk_ref, *offset));
    EXPECT_FALSE(*store_->VerifyPin(pek_ref, PinPadBlock(pek, "111111", kPinPan), kPinPan, pvk_ref,
                                    *offset));
  }
  // A PIN pad that forms its block with another PAN than the terminals send: the block is read
  // with the block's PAN, the offset is the card number's.
  const char kBlockPan[] = "0000000000000000420";
  auto two_pans = store_->PinOffsetFromBlock(pek_ref, PinPadBlock(pek, "654321", kBlockPan),
                                             kBlockPan, pvk_ref, kPinPan);
  ASSERT_TRUE(two_pans.ok()) << two_pans.error().message;
  EXPECT_EQ(*two_pans, ExpectedOffset(pvk, kPinPan, "654321"));
  // Another card: the same PIN has another offset.
  const char kOtherPan[] = "4100000089999985";
  EXPECT_EQ(*store_->PinOffsetFromBlock(pek_ref, PinPadBlock(pek, "654321", kOtherPan), kOtherPan,
                                        pvk_ref, kOtherPan),
            ExpectedOffset(pvk, kOtherPan, "654321"));
}

TEST_P(KeyStoreSuite, PinOffsetFromBlock_RefusesWrongKeysAndGarbledBlocksWithoutShowingThePin) {
  KeyRef pvk = ImportKnownKey("pvk/CARDS", RandomKey());
  const Bytes pek = RandomKey();
  KeyRef pek_ref = ImportKnownKey("pek/BRANCH01", pek);
  KeyRef purchase = ImportKnownKey("purchase", RandomKey());
  KeyRef transport = ImportKnownKey("transport", RandomKey());
  const Bytes tmk = RandomKey();
  KeyRef tmk_ref = ImportKnownKey("tmk/000000000301", tmk);
  const Bytes working_pin_key = RandomKey();
  KeyRef received = *store_->Unwrap(tmk_ref, *crypto::EncryptKeyForTransport(tmk, working_pin_key));
  const std::string pin = "582047";
  const Bytes block = PinPadBlock(pek, pin, kPinPan);
  ASSERT_TRUE(store_->PinOffsetFromBlock(pek_ref, block, kPinPan, pvk, kPinPan).ok());
  Bytes garbled = block;
  garbled[3] ^= 0x5A;
  const struct {
    std::string what;
    Result<std::string> result;
    std::string says;
  } cases[] = {
      {"a PVK as the PIN key", store_->PinOffsetFromBlock(pvk, block, kPinPan, pvk, kPinPan),
       "pek/"},
      {"an issuer key as the PIN key",
       store_->PinOffsetFromBlock(purchase, block, kPinPan, pvk, kPinPan), "pek/"},
      {"a transport key as the PIN key",
       store_->PinOffsetFromBlock(transport, block, kPinPan, pvk, kPinPan), "pek/"},
      // A terminal's working PIN key verifies PINs; only a teller's PIN pad sets one.
      {"a working PIN key",
       store_->PinOffsetFromBlock(received, PinPadBlock(working_pin_key, pin, kPinPan), kPinPan,
                                  pvk, kPinPan),
       "pek/"},
      {"an issuer key as the PVK",
       store_->PinOffsetFromBlock(pek_ref, block, kPinPan, purchase, kPinPan), "pvk/"},
      {"a PEK as the PVK", store_->PinOffsetFromBlock(pek_ref, block, kPinPan, pek_ref, kPinPan),
       "pvk/"},
      {"a garbled block", store_->PinOffsetFromBlock(pek_ref, garbled, kPinPan, pvk, kPinPan),
       "format 0"},
      {"a block under another PEK",
       store_->PinOffsetFromBlock(pek_ref, PinPadBlock(RandomKey(), pin, kPinPan), kPinPan, pvk,
                                  kPinPan),
       "format 0"},
      {"a block for another card",
       store_->PinOffsetFromBlock(pek_ref, block, "1000000000000000430", pvk, kPinPan), "format 0"},
      {"7 bytes",
       store_->PinOffsetFromBlock(pek_ref, ByteView(block).first(7), kPinPan, pvk, kPinPan),
       "8 bytes"},
      {"a block PAN that is too short",
       store_->PinOffsetFromBlock(pek_ref, block, "12345", pvk, kPinPan), "8..19 digits"},
      {"a card number with a letter",
       store_->PinOffsetFromBlock(pek_ref, block, kPinPan, pvk, "10000000A0000000420"),
       "8..19 digits"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_FALSE(c.result.ok());
    EXPECT_THAT(c.result.error().message, HasSubstr(c.says));
    EXPECT_THAT(c.result.error().message, ::testing::Not(HasSubstr(pin)));
  }
}

}  // namespace
}  // namespace medcard::keys::testing
