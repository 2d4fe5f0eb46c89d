// The PKCS#11 key store against SoftHSM2: the shared suite, plus what only a token has — the
// module, the token label and the PIN, the object model on the token (docs/keys-pkcs11.md),
// sensitive objects, session objects freed on Release, and what never leaves the token.
//
// Each test binary (ctest runs one test per process) makes its OWN token: a temporary
// directory with a softhsm2.conf, SOFTHSM2_CONF pointing at it before the module is loaded,
// and `softhsm2-util --init-token`; the directory is removed at exit.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <p11-kit-1/p11-kit/pkcs11.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crypto/crypto.h"
#include "key_store_suite.h"
#include "keys/key_store.h"
#include "keys/pboc.h"
#include "softhsm_token.h"

namespace medcard::keys {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kTokenLabel[] = "medcard-test";
constexpr char kUserPin[] = "1234";
constexpr char kSoPin[] = "123456";

// The SoftHSM2 token of this process, made on first use.
class SoftHsmToken {
 public:
  static SoftHsmToken& Get() {
    static SoftHsmToken token;
    return token;
  }
  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;
  ~SoftHsmToken() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Empty when the token is ready; else what went wrong.
  const std::string& problem() const { return problem_; }
  const std::string& module_path() const { return module_path_; }

  Pkcs11Config Config(bool mark_test_only = false) const {
    return {module_path_, kTokenLabel, kUserPin, mark_test_only};
  }

 private:
  SoftHsmToken() {
    module_path_ = medcard::test_support::SoftHsmModule();
    if (module_path_.empty() || std::system("command -v softhsm2-util >/dev/null 2>&1") != 0) {
      problem_ =
          "SoftHSM2 is not installed (no libsofthsm2.so or softhsm2-util): "
          "apt-get install softhsm2";
      return;
    }
    std::string pattern = (fs::path(::testing::TempDir()) / "medcard-softhsm-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      problem_ = "cannot create a temporary directory for the SoftHSM2 token";
      return;
    }
    dir_ = pattern;
    fs::create_directory(dir_ / "tokens");
    const fs::path conf = dir_ / "softhsm2.conf";
    std::ofstream(conf) << "directories.tokendir = " << (dir_ / "tokens").string() << "\n"
                        << "objectstore.backend = file\nlog.level = ERROR\n"
                        << "slots.removable = false\n";
    ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);  // before the module is first loaded
    const std::string command = std::string("softhsm2-util --init-token --free --label ") +
                                kTokenLabel + " --so-pin " + kSoPin + " --pin " + kUserPin +
                                " 2>&1";
    std::string output;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
      problem_ = "cannot run softhsm2-util";
      return;
    }
    char buffer[256];
    while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
    if (::pclose(pipe) != 0) problem_ = "softhsm2-util --init-token failed: " + output;
  }

  fs::path dir_;
  std::string module_path_;
  std::string problem_;
};

// Raw PKCS#11 on the test token, for what the KeyStore interface deliberately cannot do: look
// at objects, try to read key values, put foreign objects on the token, empty it.
class RawToken {
 public:
  RawToken() {
    const auto& token = SoftHsmToken::Get();
    handle_ = dlopen(token.module_path().c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) return;
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle_, "C_GetFunctionList"));
    if (get_list == nullptr || get_list(&fn_) != CKR_OK) return;
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    const CK_RV rv = fn_->C_Initialize(&args);
    initialized_here_ = rv == CKR_OK;
    CK_SLOT_ID slots[16];
    CK_ULONG count = 16;
    if (fn_->C_GetSlotList(CK_TRUE, slots, &count) != CKR_OK) return;
    for (CK_ULONG i = 0; i < count; ++i) {
      CK_TOKEN_INFO info{};
      fn_->C_GetTokenInfo(slots[i], &info);
      std::string label(reinterpret_cast<const char*>(info.label), sizeof info.label);
      label.erase(label.find_last_not_of(' ') + 1);
      if (label != kTokenLabel) continue;
      if (fn_->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                             &session_) != CKR_OK) {
        return;
      }
      CK_UTF8CHAR pin[] = {'1', '2', '3', '4'};
      const CK_RV login = fn_->C_Login(session_, CKU_USER, pin, sizeof pin);
      ready_ = login == CKR_OK || login == CKR_USER_ALREADY_LOGGED_IN;
    }
  }
  RawToken(const RawToken&) = delete;
  RawToken& operator=(const RawToken&) = delete;
  ~RawToken() {
    if (session_ != CK_INVALID_HANDLE) fn_->C_CloseSession(session_);
    if (initialized_here_) fn_->C_Finalize(nullptr);
    if (handle_ != nullptr) dlclose(handle_);
  }

  bool ready() const { return ready_; }
  CK_FUNCTION_LIST* fn() { return fn_; }
  CK_SESSION_HANDLE session() const { return session_; }

  // Objects (token objects, or this application's session objects) with their labels.
  std::vector<std::pair<CK_OBJECT_HANDLE, std::string>> Objects(bool token_objects) {
    CK_BBOOL token = token_objects ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE match{CKA_TOKEN, &token, sizeof token};
    std::vector<std::pair<CK_OBJECT_HANDLE, std::string>> out;
    fn_->C_FindObjectsInit(session_, &match, 1);
    CK_OBJECT_HANDLE found[64];
    CK_ULONG count = 0;
    while (fn_->C_FindObjects(session_, found, 64, &count) == CKR_OK && count > 0) {
      for (CK_ULONG i = 0; i < count; ++i) out.emplace_back(found[i], Label(found[i]));
    }
    fn_->C_FindObjectsFinal(session_);
    return out;
  }

  CK_OBJECT_HANDLE ObjectLabelled(const std::string& label) {
    for (const auto& [handle, object_label] : Objects(true)) {
      if (object_label == label) return handle;
    }
    return CK_INVALID_HANDLE;
  }

  std::string Label(CK_OBJECT_HANDLE object) {
    char label[256] = {};
    CK_ATTRIBUTE a{CKA_LABEL, label, sizeof label - 1};
    if (fn_->C_GetAttributeValue(session_, object, &a, 1) != CKR_OK) return "";
    return std::string(label, a.ulValueLen);
  }

  CK_BBOOL Flag(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE a{type, &value, sizeof value};
    EXPECT_EQ(fn_->C_GetAttributeValue(session_, object, &a, 1), CKR_OK);
    return value;
  }

  // A CKK_DES2 token key with a value the test knows, as another application might leave.
  CK_OBJECT_HANDLE CreateKey(const std::string& label, const Bytes& value) {
    CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_DES2;
    CK_BBOOL yes = CK_TRUE;
    std::vector<CK_ATTRIBUTE> t = {
        {CKA_CLASS, &key_class, sizeof key_class},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_ENCRYPT, &yes, sizeof yes},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_VALUE, const_cast<std::uint8_t*>(value.data()), value.size()}};
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    EXPECT_EQ(fn_->C_CreateObject(session_, t.data(), t.size(), &handle), CKR_OK);
    return handle;
  }

  // Empties the token of everything medcard put there.
  void RemoveMedcardObjects() {
    for (const auto& [handle, label] : Objects(true)) {
      if (label.starts_with("medcard/")) fn_->C_DestroyObject(session_, handle);
    }
  }

 private:
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* fn_ = nullptr;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  bool initialized_here_ = false;
  bool ready_ = false;
};

Result<std::unique_ptr<KeyStore>> OpenTestToken(bool mark_test_only = false) {
  const auto& token = SoftHsmToken::Get();
  if (!token.problem().empty()) return MakeError(token.problem());
  return OpenPkcs11KeyStore(token.Config(mark_test_only));
}

testing::KeyStoreBackend Pkcs11Backend() {
  testing::KeyStoreBackend backend;
  backend.name = "Pkcs11";
  backend.create = [](bool test_only) -> Result<std::unique_ptr<KeyStore>> {
    const auto& token = SoftHsmToken::Get();
    if (!token.problem().empty()) return MakeError(token.problem());
    {
      RawToken raw;
      if (!raw.ready()) return MakeError("cannot open the SoftHSM2 test token");
      raw.RemoveMedcardObjects();
    }
    return OpenTestToken(test_only);
  };
  backend.reopen = [](std::unique_ptr<KeyStore> store) {
    store.reset();
    return OpenTestToken();
  };
  backend.stored_keys_leave_wrapped = false;
  return backend;
}

using testing::KeyStoreSuite;
INSTANTIATE_TEST_SUITE_P(Pkcs11, KeyStoreSuite, ::testing::Values(Pkcs11Backend()),
                         testing::KeyStoreBackendName);

// ---- PKCS#11-specific ------------------------------------------------------------------------

Bytes RandomKey() {
  for (;;) {
    Bytes k = crypto::RandomBytes(16);
    if (!std::equal(k.begin(), k.begin() + 8, k.begin() + 8)) return k;
  }
}

class Pkcs11StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& token = SoftHsmToken::Get();
    ASSERT_TRUE(token.problem().empty()) << token.problem();
    {
      RawToken raw;
      ASSERT_TRUE(raw.ready()) << "cannot open the SoftHSM2 test token";
      raw.RemoveMedcardObjects();
    }
    auto store = OpenTestToken();
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(store).value();
  }

  KeyRef Import(std::string_view name, const Bytes& key) {
    const Bytes first = crypto::RandomBytes(16);
    Bytes second(16);
    for (std::size_t i = 0; i < 16; ++i) second[i] = static_cast<std::uint8_t>(key[i] ^ first[i]);
    const std::vector<Bytes> components = {first, second};
    auto info = store_->ImportComponents(name, components);
    EXPECT_TRUE(info.ok()) << info.error().message;
    auto ref = store_->Find(name);
    EXPECT_TRUE(ref.ok()) << ref.error().message;
    return ref.ok() ? *ref : KeyRef{};
  }

  std::unique_ptr<KeyStore> store_;
};

TEST_F(Pkcs11StoreTest, DescribeNamesTheToken) {
  EXPECT_EQ(store_->Describe(), "pkcs11:medcard-test");
}

TEST_F(Pkcs11StoreTest, WrongPin_IsAClearErrorNamingTheToken) {
  store_.reset();  // not logged in anywhere in this process: the token itself checks the PIN
  Pkcs11Config config = SoftHsmToken::Get().Config();
  config.user_pin = "9999";
  auto store = OpenPkcs11KeyStore(config);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.error().message, HasSubstr("wrong user PIN"));
  EXPECT_THAT(store.error().message, HasSubstr("medcard-test"));
  EXPECT_THAT(store.error().message, ::testing::Not(HasSubstr("9999")));
}

TEST_F(Pkcs11StoreTest, WrongPin_RefusedAlsoWhileThisProcessIsLoggedIn) {
  // PKCS#11 login is per application: the token would let a second session in unchecked.
  Pkcs11Config config = SoftHsmToken::Get().Config();
  config.user_pin = "4321";
  auto second = OpenPkcs11KeyStore(config);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.error().message, HasSubstr("wrong user PIN"));
  auto right = OpenPkcs11KeyStore(SoftHsmToken::Get().Config());
  ASSERT_TRUE(right.ok()) << right.error().message;
}

TEST_F(Pkcs11StoreTest, AnotherPkcs11UserLoggedInInThisProcess_IsRefusedAsThePinIsUnchecked) {
  store_.reset();
  RawToken raw;  // logs in to the token outside any medcard store
  ASSERT_TRUE(raw.ready());
  auto store = OpenTestToken();
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.error().message, HasSubstr("the PIN cannot be checked"));
}

TEST_F(Pkcs11StoreTest, UnknownTokenLabel_IsAClearErrorListingTheTokensPresent) {
  Pkcs11Config config = SoftHsmToken::Get().Config();
  config.token_label = "no-such-token";
  auto store = OpenPkcs11KeyStore(config);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.error().message, HasSubstr("no token labelled \"no-such-token\""));
  EXPECT_THAT(store.error().message, HasSubstr("\"medcard-test\""));
}

TEST_F(Pkcs11StoreTest, MissingModule_IsAClearErrorNamingThePath) {
  Pkcs11Config config = SoftHsmToken::Get().Config();
  config.module_path = "/nonexistent/libpkcs11.so";
  auto store = OpenPkcs11KeyStore(config);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.error().message, HasSubstr("cannot load the PKCS#11 module"));
  EXPECT_THAT(store.error().message, HasSubstr("/nonexistent/libpkcs11.so"));
}

TEST_F(Pkcs11StoreTest, ALibraryThatIsNotAPkcs11Module_IsRefused) {
  Pkcs11Config config = SoftHsmToken::Get().Config();
  config.module_path = "libz.so.1";
  auto store = OpenPkcs11KeyStore(config);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.error().message, HasSubstr("not a PKCS#11 module"));
}

TEST_F(Pkcs11StoreTest, StoredKeysAreSensitiveUnextractableAndTheirValueIsRefused) {
  ASSERT_TRUE(store_->Generate("purchase").ok());
  Import("load", RandomKey());
  RawToken raw;
  ASSERT_TRUE(raw.ready());
  int keys_seen = 0;
  for (const auto& [handle, label] : raw.Objects(true)) {
    if (!label.starts_with("medcard/") || label == "medcard/test-only") continue;
    SCOPED_TRACE(label);
    ++keys_seen;
    std::uint8_t value[32];
    CK_ATTRIBUTE a{CKA_VALUE, value, sizeof value};
    EXPECT_EQ(raw.fn()->C_GetAttributeValue(raw.session(), handle, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
    EXPECT_EQ(raw.Flag(handle, CKA_SENSITIVE), CK_TRUE);
    EXPECT_EQ(raw.Flag(handle, CKA_EXTRACTABLE), CK_FALSE);
    EXPECT_EQ(raw.Flag(handle, CKA_PRIVATE), CK_TRUE);
  }
  // purchase v1 with /L; load v1 with /L and /T.
  EXPECT_EQ(keys_seen, 5);
  // Born inside the token: never was anything but sensitive and unextractable.
  const CK_OBJECT_HANDLE generated = raw.ObjectLabelled("medcard/purchase/v1");
  ASSERT_NE(generated, CK_INVALID_HANDLE);
  EXPECT_EQ(raw.Flag(generated, CKA_ALWAYS_SENSITIVE), CK_TRUE);
  EXPECT_EQ(raw.Flag(generated, CKA_NEVER_EXTRACTABLE), CK_TRUE);
}

TEST_F(Pkcs11StoreTest, ObjectsAreLabelledByNameAndVersionWithMetadataInCkaId) {
  auto info = store_->Generate("tmk/000000000101");
  ASSERT_TRUE(info.ok()) << info.error().message;
  ASSERT_TRUE(store_->Generate("tmk/000000000101").ok());
  RawToken raw;
  ASSERT_TRUE(raw.ready());
  const CK_OBJECT_HANDLE v1 = raw.ObjectLabelled("medcard/tmk/000000000101/v1");
  ASSERT_NE(v1, CK_INVALID_HANDLE);
  EXPECT_NE(raw.ObjectLabelled("medcard/tmk/000000000101/v2"), CK_INVALID_HANDLE);
  EXPECT_NE(raw.ObjectLabelled("medcard/tmk/000000000101/v1/L"), CK_INVALID_HANDLE);
  char id[128] = {};
  CK_ATTRIBUTE a{CKA_ID, id, sizeof id - 1};
  ASSERT_EQ(raw.fn()->C_GetAttributeValue(raw.session(), v1, &a, 1), CKR_OK);
  const std::string metadata(id, a.ulValueLen);
  EXPECT_THAT(metadata, HasSubstr("kcv=" + info->kcv));
  EXPECT_THAT(metadata, HasSubstr("origin=generated"));
  EXPECT_THAT(metadata, HasSubstr("created=" + info->created));
}

TEST_F(Pkcs11StoreTest, ListIgnoresObjectsOfOtherApplicationsOnTheToken) {
  RawToken raw;
  ASSERT_TRUE(raw.ready());
  raw.CreateKey("backup-key", RandomKey());
  raw.CreateKey("medcardX/purchase/v1", RandomKey());
  raw.CreateKey("medcard/purchase/v1/L", RandomKey());  // a companion is not a key
  auto list = store_->List();
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_TRUE(list->empty());
  for (const auto& [handle, label] : raw.Objects(true)) {
    if (label == "backup-key" || label == "medcardX/purchase/v1") {
      raw.fn()->C_DestroyObject(raw.session(), handle);
    }
  }
}

TEST_F(Pkcs11StoreTest, ABirthClearsTheLeftoversOfAnInterruptedOne) {
  RawToken raw;
  ASSERT_TRUE(raw.ready());
  // As if the process had died after the MAC half of load v1 and before the key itself.
  const CK_OBJECT_HANDLE stale = raw.CreateKey("medcard/load/v1/L", RandomKey());
  const Bytes load = RandomKey();
  KeyRef ref = Import("load", load);
  int halves = 0;
  for (const auto& [handle, label] : raw.Objects(true)) {
    if (label == "medcard/load/v1/L") {
      ++halves;
      EXPECT_NE(handle, stale);
    }
  }
  EXPECT_EQ(halves, 1);
  // Multi-block MACs chain with the new half, not the stale one.
  const Bytes data = crypto::RandomBytes(30);
  EXPECT_EQ(*store_->Mac(ref, data), *crypto::PbocMac(load, data));
}

TEST_F(Pkcs11StoreTest, MasterKeysPersistAcrossReopenOfTheToken) {
  auto generated = store_->Generate("purchase");
  ASSERT_TRUE(generated.ok());
  const Bytes settlement = RandomKey();
  Import("settlement", settlement);
  const Bytes factor = crypto::RandomBytes(8);
  const Bytes data = crypto::RandomBytes(27);
  auto purchase = store_->Find("purchase");
  ASSERT_TRUE(purchase.ok());
  auto card_key = store_->Diversify(*purchase, factor);
  ASSERT_TRUE(card_key.ok());
  const Bytes mac_before = *store_->Mac(*card_key, data);

  store_.reset();  // the last session closes: the module is finalised and unloaded
  auto reopened = OpenTestToken();
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  store_ = std::move(reopened).value();
  auto list = store_->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0], *generated);
  purchase = store_->Find("purchase");
  ASSERT_TRUE(purchase.ok());
  card_key = store_->Diversify(*purchase, factor);
  ASSERT_TRUE(card_key.ok());
  EXPECT_EQ(*store_->Mac(*card_key, data), mac_before);
  auto settlement_ref = store_->Find("settlement");
  ASSERT_TRUE(settlement_ref.ok());
  EXPECT_EQ(*store_->Mac(*settlement_ref, data), *crypto::PbocMac(settlement, data));
}

TEST_F(Pkcs11StoreTest, ReleaseDestroysSessionObjectsOnceNoDerivedKeyNeedsThem) {
  const Bytes transport = RandomKey(), tac = RandomKey();
  KeyRef transport_ref = Import("transport", transport);
  KeyRef master = Import("tac", tac);
  RawToken raw;
  ASSERT_TRUE(raw.ready());
  ASSERT_TRUE(raw.Objects(false).empty());
  const Bytes factor = crypto::RandomBytes(8), data = crypto::RandomBytes(8);
  auto dtk = store_->Diversify(master, factor);
  ASSERT_TRUE(dtk.ok());
  ASSERT_TRUE(store_->Mac(*dtk, crypto::RandomBytes(20)).ok());  // makes its MAC half
  auto tac_key = store_->DeriveTacKey(*dtk);
  ASSERT_TRUE(tac_key.ok()) << tac_key.error().message;
  auto session_key = store_->DeriveSessionKey(*dtk, data);
  ASSERT_TRUE(session_key.ok());
  EXPECT_EQ(raw.Objects(false).size(), 4u);  // DTK, its MAC half, TAC key, session key

  // The session key was derived from the DTK and is wrapped from it: the DTK object stays.
  store_->Release(*dtk);
  EXPECT_EQ(raw.Objects(false).size(), 3u);
  const Bytes clear_session =
      crypto::BlockCipher::Des(*crypto::Diversify(tac, factor))->EncryptEcb(data);
  EXPECT_EQ(*store_->Wrap(transport_ref, *session_key),
            *crypto::EncryptKeyForTransport(transport, clear_session));
  store_->Release(*tac_key);
  store_->Release(*session_key);
  EXPECT_TRUE(raw.Objects(false).empty());

  // Closing the store frees what was never released.
  ASSERT_TRUE(store_->Diversify(master, factor).ok());
  EXPECT_EQ(raw.Objects(false).size(), 1u);
  store_.reset();
  EXPECT_TRUE(raw.Objects(false).empty());
}

TEST_F(Pkcs11StoreTest, CardKeysWrapUnderACardTransportKeyExactlyAsCryptoDoes) {
  const Bytes transport = RandomKey(), load = RandomKey();
  KeyRef transport_ref = Import("transport", transport);
  KeyRef load_ref = Import("load", load);
  const Bytes chip_serial = crypto::RandomBytes(8);
  const Bytes asn_factor = crypto::RandomBytes(8);
  auto card_transport = store_->Diversify(transport_ref, chip_serial);
  auto dlk = store_->Diversify(load_ref, asn_factor);
  ASSERT_TRUE(card_transport.ok() && dlk.ok());
  const Bytes clear_card_transport = *crypto::Diversify(transport, chip_serial);
  const Bytes clear_dlk = *crypto::Diversify(load, asn_factor);

  auto wrapped = store_->Wrap(*card_transport, *dlk);
  ASSERT_TRUE(wrapped.ok()) << wrapped.error().message;
  // Byte for byte: the token sets DES parity on derived keys; the cryptogram carries the
  // card key exactly as crypto::Diversify computes it.
  EXPECT_EQ(*wrapped, *crypto::EncryptKeyForTransport(clear_card_transport, clear_dlk));

  // An 8-byte key travels as 8 bytes.
  const Bytes data = crypto::RandomBytes(8);
  auto session = store_->DeriveSessionKey(*dlk, data);
  ASSERT_TRUE(session.ok());
  auto wrapped8 = store_->Wrap(*card_transport, *session);
  ASSERT_TRUE(wrapped8.ok()) << wrapped8.error().message;
  const Bytes clear_session = crypto::BlockCipher::Des(clear_dlk)->EncryptEcb(data);
  EXPECT_EQ(*wrapped8, *crypto::EncryptKeyForTransport(clear_card_transport, clear_session));
  auto unwrapped8 = store_->Unwrap(*card_transport, *wrapped8);
  ASSERT_TRUE(unwrapped8.ok()) << unwrapped8.error().message;
  EXPECT_EQ(*store_->Kcv(*unwrapped8), *crypto::Kcv(clear_session));
  const Bytes mac_data = crypto::RandomBytes(19);
  EXPECT_EQ(*store_->Mac(*unwrapped8, mac_data), *crypto::PbocMac(clear_session, mac_data));
}

TEST_F(Pkcs11StoreTest, StoredKeysNeverLeaveTheToken) {
  const Bytes transport = RandomKey();
  KeyRef transport_ref = Import("transport", transport);
  ASSERT_TRUE(store_->Generate("purchase").ok());
  auto purchase = store_->Find("purchase");
  ASSERT_TRUE(purchase.ok());
  auto wrapped = store_->Wrap(transport_ref, *purchase);
  ASSERT_FALSE(wrapped.ok());
  EXPECT_THAT(wrapped.error().message, HasSubstr("medcard/purchase/v1 never leaves the token"));
}

TEST_F(Pkcs11StoreTest, TacKeyOfAGeneratedStoredKeyIsRefusedButACardsTacKeyWorks) {
  ASSERT_TRUE(store_->Generate("tac").ok());
  auto master = store_->Find("tac");
  ASSERT_TRUE(master.ok());
  auto refused = store_->DeriveTacKey(*master);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("no PKCS#11 mechanism XORs"));

  // The host's real use: a card's DTK diversified from the master, through keys/pboc.h.
  const Bytes tac_master = RandomKey();
  Import("tac", tac_master);  // version 2
  const Bytes asn = HexToBytes("11000000000000000101");
  PurchaseRecord p;
  p.asn = asn;
  p.type = 0x06;
  p.amount = 1250;
  p.terminal_number = HexToBytes("000000000101");
  p.terminal_serial = 7;
  p.date = Date{2026, 11, 25};
  p.time = TimeOfDay{9, 15, 0};
  p.key_version = 2;
  const Bytes tac_key = *crypto::TacKey(*crypto::Diversify(tac_master, crypto::AsnFactor(asn)));
  p.tac =
      *crypto::PbocMac(tac_key, HexToBytes("000004E2 06 000000000101 00000007 20261125 091500"));
  EXPECT_TRUE(VerifyPurchaseTac(*store_, p).ok());
  p.amount = 1251;
  EXPECT_FALSE(VerifyPurchaseTac(*store_, p).ok());
}

TEST_F(Pkcs11StoreTest, TestOnlyMarking_RefusedOnATokenThatHoldsKeysAndKeptWhenTheMarkerGoes) {
  ASSERT_TRUE(store_->Generate("purchase").ok());
  store_.reset();
  auto refused = OpenTestToken(true);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("already holds medcard keys"));

  {
    RawToken raw;
    ASSERT_TRUE(raw.ready());
    raw.RemoveMedcardObjects();
  }
  auto test_store = OpenTestToken(true);
  ASSERT_TRUE(test_store.ok()) << test_store.error().message;
  ASSERT_TRUE((*test_store)->test_only());
  ASSERT_TRUE((*test_store)->ImportTestKey("purchase", RandomKey()).ok());
  test_store->reset();
  {
    RawToken raw;
    ASSERT_TRUE(raw.ready());
    const CK_OBJECT_HANDLE marker = raw.ObjectLabelled("medcard/test-only");
    ASSERT_NE(marker, CK_INVALID_HANDLE);
    ASSERT_EQ(raw.fn()->C_DestroyObject(raw.session(), marker), CKR_OK);
  }
  // A test-set key on the token still makes it a test store.
  auto reopened = OpenTestToken();
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->test_only());
}

}  // namespace
}  // namespace medcard::keys
