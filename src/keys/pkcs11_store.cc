// The PKCS#11 key store backend: any PKCS#11 token (SoftHSM2 in the tests). Object model, the
// mechanisms used for each operation, and every place where standard PKCS#11 has no mechanism
// for a PBOC operation (and what this backend does instead): docs/keys-pkcs11.md.
//
// Every key is a CKO_SECRET_KEY of type CKK_DES2. An 8-byte single-DES key K (a session key,
// a TAC key, an 8-byte working key) is held as K‖K, which is single DES under 3DES-EDE, so only
// the CKM_DES3_* mechanisms are needed (SoftHSM 2.6.1 with OpenSSL 3 offers no usable single
// DES).
#include <dlfcn.h>
#include <openssl/crypto.h>
#include <p11-kit-1/p11-kit/pkcs11.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crypto/crypto.h"
#include "keys/key_policy.h"
#include "keys/key_store.h"

namespace medcard::keys {
namespace {

using internal::Family;
using internal::FamilyOfName;
using internal::IsKeyEncryptingKey;
using internal::Sha256;

constexpr internal::KeyPolicy kPolicy("pkcs11");

constexpr std::string_view kLabelPrefix = "medcard/";
// Companions of a stored key: K_L‖K_L, the single-DES half a PBOC MAC chains with, and for a
// key imported in clear, T‖T with T = K_L ⊕ K_R, its TAC key.
constexpr std::string_view kLeftHalfSuffix = "/L";
constexpr std::string_view kTacKeySuffix = "/T";
constexpr std::string_view kTestOnlyLabel = "medcard/test-only";
constexpr std::string_view kApplication = "medcard";
constexpr std::string_view kMetadataTag = "medcard-key-1";

// Return values in errors by name: what an operator looks up in the token's manual.
constexpr std::pair<CK_RV, const char*> kReturnValueNames[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
};

std::string RvName(CK_RV rv) {
  for (const auto& [value, name] : kReturnValueNames) {
    if (value == rv) return name;
  }
  char text[32];
  std::snprintf(text, sizeof text, "CKR 0x%08lX", rv);
  return text;
}

Error P11Error(const std::string& what, CK_RV rv) {
  return MakeError("pkcs11: " + what + " failed: " + RvName(rv));
}

std::string IsoUtcNow() { return internal::IsoUtc(std::time(nullptr)); }

// A fixed-width, space-padded PKCS#11 text field (token label) as a string.
std::string PaddedField(const unsigned char* field, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(field), size);
  text.erase(text.find_last_not_of(' ') + 1);
  return text;
}

// ---- The module: dlopened once per process, C_Initialize'd while any store uses it --------

struct TokenLogin {
  int open_sessions = 0;
  Bytes salt;        // 16
  Bytes pin_digest;  // SHA-256(salt ‖ PIN) of the login this process holds
};

class Module {
 public:
  static Result<std::shared_ptr<Module>> Load(const std::string& path);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* fn() const { return functions_; }
  const std::string& path() const { return path_; }

  // Login state is per application and token in PKCS#11: a second session of this process on
  // a token where the first is logged in is logged in already. The PIN digest lets the second
  // open still refuse a wrong PIN.
  std::mutex& mutex() { return mutex_; }
  std::map<CK_SLOT_ID, TokenLogin>& logins() { return logins_; }

 private:
  Module(void* handle, CK_FUNCTION_LIST* functions, std::string path, bool initialized_by_us)
      : handle_(handle),
        functions_(functions),
        path_(std::move(path)),
        initialized_by_us_(initialized_by_us) {}

  void* handle_;
  CK_FUNCTION_LIST* functions_;
  std::string path_;
  bool initialized_by_us_;
  std::mutex mutex_;
  std::map<CK_SLOT_ID, TokenLogin> logins_;
};

// Never destroyed: a store that outlives main() (a static) still finds them at its end.
std::mutex& RegistryMutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
// By dlopen handle: two spellings of one module path share one initialisation.
std::map<void*, std::weak_ptr<Module>>& Registry() {
  static auto* modules = new std::map<void*, std::weak_ptr<Module>>;
  return *modules;
}

// Under the registry lock: a Load racing this must not C_Initialize before C_Finalize is done.
Module::~Module() {
  std::lock_guard lock(RegistryMutex());
  if (initialized_by_us_) functions_->C_Finalize(nullptr);
  dlclose(handle_);
}

Result<std::shared_ptr<Module>> Module::Load(const std::string& path) {
  std::lock_guard lock(RegistryMutex());
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return MakeError("pkcs11: cannot load the PKCS#11 module " + path + ": " +
                     (why != nullptr ? why : "unknown error"));
  }
  auto& registry = Registry();
  if (auto it = registry.find(handle); it != registry.end()) {
    if (auto existing = it->second.lock()) {
      dlclose(handle);  // drop the reference this dlopen added; `existing` holds its own
      return existing;
    }
  }
  auto get_function_list =
      reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  if (get_function_list == nullptr) {
    dlclose(handle);
    return MakeError("pkcs11: " + path + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  CK_FUNCTION_LIST* functions = nullptr;
  if (CK_RV rv = get_function_list(&functions); rv != CKR_OK || functions == nullptr) {
    dlclose(handle);
    return P11Error("C_GetFunctionList of " + path, rv);
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  const CK_RV rv = functions->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    dlclose(handle);
    return P11Error("C_Initialize of " + path, rv);
  }
  // Already initialised by someone else in this process: theirs to finalise, not ours.
  std::shared_ptr<Module> module(new Module(handle, functions, path, rv == CKR_OK));
  registry[handle] = module;
  return module;
}

// ---- Attribute templates -------------------------------------------------------------------

CK_BBOOL kTrue = CK_TRUE;
CK_BBOOL kFalse = CK_FALSE;
CK_OBJECT_CLASS kSecretKeyClass = CKO_SECRET_KEY;
CK_OBJECT_CLASS kDataClass = CKO_DATA;
CK_KEY_TYPE kDes2KeyType = CKK_DES2;

CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, CK_BBOOL& value) { return {type, &value, sizeof value}; }
CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, CK_OBJECT_CLASS& value) {
  return {type, &value, sizeof value};
}
CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, const std::string& value) {
  return {type, const_cast<char*>(value.data()), value.size()};
}
CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, const Bytes& value) {
  return {type, const_cast<std::uint8_t*>(value.data()), value.size()};
}

// What a key object may do. Every key is sensitive; none is extractable (keys reach a card
// only through Wrap, which this backend builds from encryption: docs/keys-pkcs11.md).
enum class Usage {
  kKey,       // a full key: encrypt, decrypt, derive
  kLeftHalf,  // K_L‖K_L: encrypt only (the CBC chain of a PBOC MAC)
  kTacKey,    // T‖T, T = K_L ⊕ K_R: encrypt only (a TAC is a MAC)
  kSeed,      // the transient seed a generated key is derived from: derive only
};

// REQUIRES: the caller appends its own attributes, then FinishTemplate.
std::vector<CK_ATTRIBUTE> KeyTemplate(Usage usage, bool token) {
  std::vector<CK_ATTRIBUTE> t = {
      Attr(CKA_CLASS, kSecretKeyClass),
      {CKA_KEY_TYPE, &kDes2KeyType, sizeof kDes2KeyType},
      Attr(CKA_TOKEN, token ? kTrue : kFalse),
      Attr(CKA_PRIVATE, kTrue),
      Attr(CKA_SENSITIVE, kTrue),
      Attr(CKA_EXTRACTABLE, kFalse),
      Attr(CKA_ENCRYPT, usage == Usage::kSeed ? kFalse : kTrue),
      Attr(CKA_DECRYPT, usage == Usage::kKey ? kTrue : kFalse),
      Attr(CKA_DERIVE, usage == Usage::kKey || usage == Usage::kSeed ? kTrue : kFalse),
      Attr(CKA_WRAP, kFalse),
      Attr(CKA_UNWRAP, kFalse),
  };
  return t;
}

// A stored object cannot be changed once made. Last: SoftHSM applies a template in order and
// refuses CKA_LABEL after CKA_MODIFIABLE false.
void FinishTemplate(std::vector<CK_ATTRIBUTE>& t, bool token) {
  if (token) t.push_back(Attr(CKA_MODIFIABLE, kFalse));
}

// ---- Key metadata, kept in CKA_ID of the stored key object (one object: atomic) ------------

struct Metadata {
  std::string kcv, origin, created;
};

std::string FormatMetadata(const Metadata& m) {
  return std::string(kMetadataTag) + " kcv=" + m.kcv + " origin=" + m.origin +
         " created=" + m.created;
}

std::optional<Metadata> ParseMetadata(std::string_view text) {
  if (!text.starts_with(kMetadataTag)) return std::nullopt;
  Metadata m;
  std::size_t at = kMetadataTag.size();
  while (at < text.size()) {
    if (text[at] != ' ') return std::nullopt;
    const std::size_t end = std::min(text.find(' ', at + 1), text.size());
    const std::string_view field = text.substr(at + 1, end - at - 1);
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
    if (key == "kcv") m.kcv = value;
    if (key == "origin") m.origin = value;
    if (key == "created") m.created = value;
    at = end;
  }
  if (m.kcv.empty() || m.origin.empty() || m.created.empty()) return std::nullopt;
  return m;
}

std::string StoredLabel(std::string_view name, std::uint8_t version) {
  return std::string(kLabelPrefix) + std::string(name) + "/v" + std::to_string(version);
}

// "medcard/<name>/v<version>" → (name, version); nullopt for anything else (companions too).
std::optional<std::pair<std::string, std::uint8_t>> ParseStoredLabel(std::string_view label) {
  if (!label.starts_with(kLabelPrefix)) return std::nullopt;
  const std::size_t slash_v = label.rfind("/v");
  if (slash_v == std::string_view::npos || slash_v < kLabelPrefix.size()) return std::nullopt;
  const std::string_view name = label.substr(kLabelPrefix.size(), slash_v - kLabelPrefix.size());
  const std::string_view digits = label.substr(slash_v + 2);
  if (digits.empty() || digits.size() > 3 || digits[0] == '0' ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int version = std::stoi(std::string(digits));
  if (version > 255 || !IsValidKeyName(name)) return std::nullopt;
  return std::make_pair(std::string(name), static_cast<std::uint8_t>(version));
}

// ---- The store -----------------------------------------------------------------------------

class Pkcs11KeyStore final : public KeyStore {
 public:
  Pkcs11KeyStore(std::shared_ptr<Module> module, CK_SLOT_ID slot, CK_SESSION_HANDLE session,
                 std::string token_label, bool test_only)
      : module_(std::move(module)),
        fn_(module_->fn()),
        slot_(slot),
        session_(session),
        token_label_(std::move(token_label)),
        test_only_(test_only) {
    next_id_ = internal::FirstRefId();
  }
  Pkcs11KeyStore(const Pkcs11KeyStore&) = delete;
  Pkcs11KeyStore& operator=(const Pkcs11KeyStore&) = delete;

  ~Pkcs11KeyStore() override {
    refs_.clear();  // destroys the session objects while the session is open
    stored_refs_.clear();
    fn_->C_CloseSession(session_);
    // No C_Logout: login state is shared by every session of this process on the token; it
    // ends with the last session.
    std::lock_guard lock(module_->mutex());
    auto& login = module_->logins()[slot_];
    if (--login.open_sessions <= 0) module_->logins().erase(slot_);
  }

  // A test store has the marker object, or (should the marker have been deleted) a test-set key.
  Status LoadTestOnlyMarking(bool mark) {
    auto marker = FindHandles({Attr(CKA_CLASS, kDataClass), Attr(CKA_TOKEN, kTrue),
                               Attr(CKA_LABEL, std::string(kTestOnlyLabel))});
    if (!marker.ok()) return marker.error();
    auto keys = FindStoredObjects();
    if (!keys.ok()) return keys.error();
    test_only_ = !marker->empty() ||
                 std::any_of(keys->begin(), keys->end(),
                             [](const StoredObject& o) { return o.info.origin == "test-set"; });
    if (!mark || test_only_) return Status::Ok();
    if (!keys->empty()) {
      return MakeError("pkcs11: token \"" + token_label_ +
                       "\" already holds medcard keys; refused to make it a test key store");
    }
    const std::string label(kTestOnlyLabel), application(kApplication);
    const std::string value = "published test keys only: every card issued from it is a test card";
    std::vector<CK_ATTRIBUTE> t = {Attr(CKA_CLASS, kDataClass),        Attr(CKA_TOKEN, kTrue),
                                   Attr(CKA_PRIVATE, kTrue),           Attr(CKA_LABEL, label),
                                   Attr(CKA_APPLICATION, application), Attr(CKA_VALUE, value)};
    FinishTemplate(t, true);
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    if (CK_RV rv = fn_->C_CreateObject(session_, t.data(), t.size(), &handle); rv != CKR_OK) {
      return P11Error("C_CreateObject(test-only marker)", rv);
    }
    test_only_ = true;
    return Status::Ok();
  }

  bool test_only() const override { return test_only_; }
  std::string Describe() const override { return "pkcs11:" + token_label_; }

  Result<std::vector<KeyInfo>> List() override {
    auto found = FindStoredObjects();
    if (!found.ok()) return found.error();
    std::vector<KeyInfo> out;
    for (const StoredObject& o : *found) out.push_back(o.info);
    internal::SortByNameAndVersion(out);
    return out;
  }

  // The key is born inside the token: a random seed S (CKM_DES2_KEY_GEN) and two random
  // distinct blocks X, Y give K = 3DES(S, X) ‖ 3DES(S, Y) and its MAC half K_L‖K_L =
  // 3DES(S, X ‖ X) by CKM_DES3_ECB_ENCRYPT_DATA; S is destroyed, so K and K_L never exist
  // outside the token and no oracle on S remains.
  Result<KeyInfo> Generate(std::string_view name) override {
    auto version = NextVersion(name);
    if (!version.ok()) return version.error();
    CK_MECHANISM keygen{CKM_DES2_KEY_GEN, nullptr, 0};
    auto seed_template = KeyTemplate(Usage::kSeed, false);
    CK_OBJECT_HANDLE seed = CK_INVALID_HANDLE;
    if (CK_RV rv = fn_->C_GenerateKey(session_, &keygen, seed_template.data(), seed_template.size(),
                                      &seed);
        rv != CKR_OK) {
      return P11Error("C_GenerateKey(CKM_DES2_KEY_GEN)", rv);
    }
    Bytes x, y;
    do {
      x = crypto::RandomBytes(8);
      y = crypto::RandomBytes(8);
    } while (x == y);
    auto info = [&]() -> Result<KeyInfo> {
      // The KCV goes into the key object's CKA_ID at creation: from a session twin first.
      auto twin = DeriveObject(seed, Concat({x, y}), Usage::kKey, false, {});
      if (!twin.ok()) return twin.error();
      auto kcv = KcvOf(*twin);
      DestroyObject(*twin);
      if (!kcv.ok()) return kcv.error();
      return CreateStored(
          name, *version, {ToHex(*kcv), "generated", IsoUtcNow()}, false,
          [&](const std::string& label, Usage usage, const Bytes& id) {
            const Bytes data = usage == Usage::kLeftHalf ? Concat({x, x}) : Concat({x, y});
            return DeriveObject(seed, data, usage, true, TokenAttrs(label, id));
          });
    }();
    DestroyObject(seed);
    return info;
  }

  // The components are in host memory anyway (custodians type them): they are XORed here, the
  // key created with C_CreateObject and every clear copy wiped. An HSM with a key-ceremony
  // feature would take the components itself (docs/keys-pkcs11.md).
  Result<KeyInfo> ImportComponents(std::string_view name,
                                   std::span<const Bytes> components) override {
    auto key = kPolicy.CombineComponents(components);
    if (!key.ok()) return key.error();
    auto info = ImportClear(name, *key, "components");
    SecureWipe(*key);
    return info;
  }

  Result<KeyInfo> ImportTestKey(std::string_view name, ByteView key) override {
    if (Status ok = kPolicy.CheckTestKeyImport(test_only_, Describe(), key); !ok.ok()) {
      return ok.error();
    }
    return ImportClear(name, key, "test-set");
  }

  // Like Unwrap (SoftHSM 2.6.1 has no DES3 C_UnwrapKey): C_Decrypt under the wrapping key, then
  // the token objects of a stored key (CKA_TOKEN) from the value, which is wiped. The KCV is
  // checked before anything is created.
  Result<KeyInfo> ImportWrapped(std::string_view name, KeyRef wrapping, ByteView cryptogram,
                                ByteView expected_kcv,
                                std::optional<std::uint8_t> version) override {
    auto w = Get(wrapping);
    if (!w.ok()) return w.error();
    if (Status ok = kPolicy.CheckImportWrapped((*w)->family, name, cryptogram, expected_kcv);
        !ok.ok()) {
      return ok.error();
    }
    if ((*w)->length != 16) return kPolicy.KeyLengthError("unwrapping", 16, (*w)->length);
    auto value = RunCipher(*(*w)->object, CKM_DES3_ECB, cryptogram, {}, false);
    if (!value.ok()) return value.error();
    auto kcv = crypto::Kcv(*value);
    if (!kcv.ok()) {
      SecureWipe(*value);
      return kcv.error();
    }
    if (Status ok = kPolicy.CheckDeliveredKcv(name, *kcv, expected_kcv); !ok.ok()) {
      SecureWipe(*value);
      return ok.error();
    }
    auto info = ImportClear(name, *value, "wrapped", version);
    SecureWipe(*value);
    return info;
  }

  // With a version (the host's usual case: the card names its key version) the key is found by
  // its exact label, and its handles are remembered: no scan of the token per transaction.
  Result<KeyRef> Find(std::string_view name, std::optional<std::uint8_t> version) override {
    if (Status ok = kPolicy.CheckName(name); !ok.ok()) return ok.error();
    std::uint8_t chosen = 0;
    if (version) {
      chosen = *version;
    } else {
      auto found = FindStoredObjects(name);
      if (!found.ok()) return found.error();
      for (const StoredObject& o : *found) chosen = std::max(chosen, o.info.version);
      if (chosen == 0) return NoSuchKey(name);
    }
    const auto cache_key = std::make_pair(std::string(name), chosen);
    if (auto it = stored_refs_.find(cache_key); it != stored_refs_.end()) {
      return KeyRef{it->second};
    }
    auto handles = StoredKeyHandles(name, chosen);
    if (!handles.ok()) return handles.error();
    Key key;
    key.object = std::make_shared<Object>(this, handles->key, false);
    key.left = std::make_shared<Object>(this, handles->left, false);
    if (handles->tac) key.tac = std::make_shared<Object>(this, *handles->tac, false);
    key.length = 16;
    key.family = FamilyOfName(name);
    key.stored_name = StoredLabel(name, chosen);
    const KeyRef ref = NewRef(std::move(key));
    stored_refs_[cache_key] = ref.id;
    return ref;
  }

  Result<KeyRef> Diversify(KeyRef master, ByteView factor) override {
    auto k = Get(master);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckFactor(factor); !ok.ok()) return ok.error();
    if ((*k)->length != 16) return kPolicy.KeyLengthError("diversification", 16, (*k)->length);
    // DK = 3DES(MK, D) ‖ 3DES(MK, ~D): CKM_DES3_ECB_ENCRYPT_DATA over D ‖ ~D.
    Bytes data(factor.begin(), factor.end());
    for (std::uint8_t b : factor) data.push_back(static_cast<std::uint8_t>(~b));
    return DeriveRef(**k, std::move(data), 16, (*k)->family);
  }

  Result<KeyRef> DeriveSessionKey(KeyRef key, ByteView data) override {
    auto k = Get(key);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckDerivation((*k)->family, "derive a session key"); !ok.ok()) {
      return ok.error();
    }
    if (Status ok = kPolicy.CheckSessionKeyData(data); !ok.ok()) return ok.error();
    if ((*k)->length != 16) {
      return kPolicy.KeyLengthError("a session key derivation", 16, (*k)->length);
    }
    // 3DES(K, data ‖ data) = S ‖ S: the single-DES session key S as a CKK_DES2 key.
    return DeriveRef(**k, Concat({data, data}), 8, (*k)->family);
  }

  // No PKCS#11 mechanism XORs the two halves of a secret key, so the DTK comes to host memory
  // for the few instructions that form DTK_L ⊕ DTK_R, and is wiped (docs/keys-pkcs11.md).
  Result<KeyRef> DeriveTacKey(KeyRef dtk) override {
    auto k = Get(dtk);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckDerivation((*k)->family, "derive a TAC key"); !ok.ok()) {
      return ok.error();
    }
    if ((*k)->length != 16) return kPolicy.KeyLengthError("a TAC key derivation", 16, (*k)->length);
    if (!(*k)->stored_name.empty()) {
      if (!(*k)->tac) {
        return MakeError("pkcs11: stored key " + (*k)->stored_name +
                         " was generated inside the token and has no TAC key: no PKCS#11 "
                         "mechanism XORs its halves (a card's TAC key comes from the card key, "
                         "Diversify first)");
      }
      Key key;
      key.object = (*k)->tac;
      key.left = (*k)->tac;
      key.length = 8;
      key.family = (*k)->family;
      return NewRef(std::move(key));
    }
    auto value = ClearValue(**k, "form its TAC key");
    if (!value.ok()) return value.error();
    auto tac = crypto::TacKey(*value);
    SecureWipe(*value);
    if (!tac.ok()) return tac.error();
    Bytes doubled = Concat({*tac, *tac});
    SecureWipe(*tac);
    auto object = CreateSessionObject(doubled, Usage::kKey);
    SecureWipe(doubled);
    if (!object.ok()) return object.error();
    Key key;
    key.object = std::move(object).value();
    key.left = key.object;
    key.length = 8;
    key.family = (*k)->family;
    return NewRef(std::move(key));
  }

  // SoftHSM 2.6.1 unwraps nothing with DES3 (C_UnwrapKey: CKR_MECHANISM_INVALID), so: C_Decrypt
  // under the wrapping key, C_CreateObject, wipe (docs/keys-pkcs11.md).
  Result<KeyRef> Unwrap(KeyRef wrapping, ByteView cryptogram) override {
    auto w = Get(wrapping);
    if (!w.ok()) return w.error();
    if (Status ok = kPolicy.CheckUnwrap((*w)->family); !ok.ok()) return ok.error();
    if ((*w)->length != 16) return kPolicy.KeyLengthError("unwrapping", 16, (*w)->length);
    if (cryptogram.size() != 8 && cryptogram.size() != 16) {
      return MakeError("pkcs11: a key cryptogram is 8 or 16 bytes, got " +
                       std::to_string(cryptogram.size()));
    }
    auto value = RunCipher(*(*w)->object, CKM_DES3_ECB, cryptogram, {}, false);
    if (!value.ok()) return value.error();
    Key key;
    key.length = value->size();
    key.family = Family::kReceived;
    Bytes full = key.length == 8 ? Concat({*value, *value}) : *value;
    Bytes left = Concat({ByteView(full).first(8), ByteView(full).first(8)});
    SecureWipe(*value);
    auto object = CreateSessionObject(full, Usage::kKey);
    auto left_object = key.length == 16 ? CreateSessionObject(left, Usage::kLeftHalf) : object;
    SecureWipe(full);
    SecureWipe(left);
    if (!object.ok()) return object.error();
    if (!left_object.ok()) return left_object.error();
    key.object = std::move(object).value();
    key.left = std::move(left_object).value();
    key.source = (*w)->object;
    key.source_data.assign(cryptogram.begin(), cryptogram.end());
    key.source_is_cryptogram = true;
    return NewRef(std::move(key));
  }

  void Release(KeyRef ref) override {
    auto it = refs_.find(ref.id);
    if (it == refs_.end()) return;
    for (auto s = stored_refs_.begin(); s != stored_refs_.end(); ++s) {
      if (s->second == ref.id) {
        stored_refs_.erase(s);
        break;
      }
    }
    refs_.erase(it);  // session objects go with their last user
  }

  // PBOC MAC (ISO 9797-1 alg. 1 / 3): CKM_DES3_CBC under K_L‖K_L over every block but the
  // last, then CKM_DES3_CBC under K with the chaining value as IV over the last block, which is
  // E_L(D_R(E_L(last ⊕ chain))). For an 8-byte key both objects are K‖K: one call.
  Result<Bytes> Mac(KeyRef ref, ByteView data, ByteView iv) override {
    auto k = Get(ref);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckMac((*k)->family); !ok.ok()) return ok.error();
    if (!iv.empty() && iv.size() != 8) {
      return MakeError("pkcs11: a MAC IV is 8 bytes (or empty for zero), got " +
                       std::to_string(iv.size()));
    }
    Key& key = **k;
    const Bytes padded = crypto::PadIso9797M2(data);
    Bytes chain = iv.empty() ? Bytes(8, 0) : Bytes(iv.begin(), iv.end());
    if (key.length == 8) {
      auto out = RunCipher(*key.object, CKM_DES3_CBC, padded, chain, true);
      if (!out.ok()) return out.error();
      return Bytes(out->end() - 8, out->end() - 4);
    }
    const ByteView blocks(padded);
    if (blocks.size() > 8) {
      auto left = LeftHalf(key);
      if (!left.ok()) return left.error();
      auto out = RunCipher(**left, CKM_DES3_CBC, blocks.first(blocks.size() - 8), chain, true);
      if (!out.ok()) return out.error();
      chain.assign(out->end() - 8, out->end());
    }
    auto out = RunCipher(*key.object, CKM_DES3_CBC, blocks.last(8), chain, true);
    if (!out.ok()) return out.error();
    return Bytes(out->begin(), out->begin() + 4);
  }

  Result<Bytes> Encrypt(KeyRef key, ByteView data, CipherMode mode, ByteView iv) override {
    return Cipher(key, data, mode, iv, true);
  }

  Result<Bytes> Decrypt(KeyRef key, ByteView data, CipherMode mode, ByteView iv) override {
    return Cipher(key, data, mode, iv, false);
  }

  // SoftHSM 2.6.1 wraps no key with DES3 (C_WrapKey(CKM_DES3_ECB): CKR_MECHANISM_INVALID), so:
  // the key's value is recomputed from how it was made (3DES under its parent, or decryption
  // of its cryptogram), encrypted with C_Encrypt(CKM_DES3_ECB) under the wrapping key, wiped.
  // Stored keys never leave the token (docs/keys-pkcs11.md).
  Result<Bytes> Wrap(KeyRef wrapping, KeyRef ref) override {
    auto w = Get(wrapping);
    if (!w.ok()) return w.error();
    auto k = Get(ref);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckWrap((*w)->family, (*k)->family); !ok.ok()) return ok.error();
    if ((*w)->length != 16) return kPolicy.KeyLengthError("wrapping", 16, (*w)->length);
    auto value = ClearValue(**k, "wrap it");
    if (!value.ok()) return value.error();
    auto cryptogram = RunCipher(*(*w)->object, CKM_DES3_ECB, *value, {}, true);
    SecureWipe(*value);
    return cryptogram;
  }

  Result<Bytes> Kcv(KeyRef ref) override {
    auto k = Get(ref);
    if (!k.ok()) return k.error();
    return KcvOf((*k)->object->handle);
  }

  // Standard PKCS#11 has no PIN translation mechanism (CKM_* for ISO 9564 blocks are vendor
  // extensions), so the PIN block is C_Decrypt'ed under the PEK into process memory, re-formed
  // as the card's block, C_Encrypt'ed under the DPUK, and every clear copy is wiped at once
  // (docs/keys-pkcs11.md, "PIN translation"). The MAC is the token's, as for every MAC.
  Result<Bytes> TranslatePinForCard(KeyRef pin_key, ByteView encrypted_pin_block,
                                    std::string_view pan, KeyRef dpuk,
                                    ByteView challenge) override {
    auto pek = Get(pin_key);
    if (!pek.ok()) return pek.error();
    auto card_key = Get(dpuk);
    if (!card_key.ok()) return card_key.error();
    if (Status ok = kPolicy.CheckPinTranslation((*pek)->family, (*card_key)->family,
                                                encrypted_pin_block, challenge);
        !ok.ok()) {
      return ok.error();
    }
    if ((*card_key)->length != 16) {
      return kPolicy.KeyLengthError("a PIN UNBLOCK cryptogram", 16, (*card_key)->length);
    }
    auto clear_block = RunCipher(*(*pek)->object, CKM_DES3_ECB, encrypted_pin_block, {}, false);
    if (!clear_block.ok()) return clear_block.error();
    auto plain = kPolicy.CardPinPlaintext(*clear_block, pan);
    SecureWipe(*clear_block);
    if (!plain.ok()) return plain.error();
    auto enc = RunCipher(*(*card_key)->object, CKM_DES3_ECB, *plain, {}, true);
    SecureWipe(*plain);
    if (!enc.ok()) return enc.error();
    Bytes iv(challenge.begin(), challenge.end());
    iv.resize(8, 0x00);
    Bytes mac_input = {0x84, 0x24, 0x00, 0x00, 0x0C};
    Append(mac_input, *enc);
    auto mac = Mac(dpuk, mac_input, iv);
    if (!mac.ok()) return mac.error();
    Bytes out = std::move(enc).value();
    Append(out, *mac);
    return out;
  }

  // The natural PIN's source 3DES-ECB(pvk, validation data) is computed on the token; the PIN
  // block is C_Decrypt'ed into process memory as in TranslatePinForCard, and every clear copy is
  // wiped before this returns (docs/keys-pkcs11.md).
  Result<std::string> PinOffset(KeyRef pvk, std::string_view pan, std::string_view pin) override {
    auto k = Get(pvk);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckPinOffset((*k)->family, pan, pin); !ok.ok()) return ok.error();
    auto enciphered = RunCipher(*(*k)->object, CKM_DES3_ECB,
                                internal::KeyPolicy::PinValidationData(pan), {}, true);
    if (!enciphered.ok()) return enciphered.error();
    std::string offset = internal::KeyPolicy::PinOffsetOf(*enciphered, pin);
    SecureWipe(*enciphered);
    return offset;
  }

  Result<bool> VerifyPin(KeyRef pin_key, ByteView encrypted_pin_block, std::string_view pan,
                         KeyRef pvk, std::string_view offset) override {
    auto pk = Get(pin_key);
    if (!pk.ok()) return pk.error();
    auto vk = Get(pvk);
    if (!vk.ok()) return vk.error();
    if (Status ok = kPolicy.CheckPinVerification((*pk)->family, (*vk)->family, encrypted_pin_block,
                                                 pan, offset);
        !ok.ok()) {
      return ok.error();
    }
    auto enciphered = RunCipher(*(*vk)->object, CKM_DES3_ECB,
                                internal::KeyPolicy::PinValidationData(pan), {}, true);
    if (!enciphered.ok()) return enciphered.error();
    auto clear_block = RunCipher(*(*pk)->object, CKM_DES3_ECB, encrypted_pin_block, {}, false);
    if (!clear_block.ok()) {
      SecureWipe(*enciphered);
      return clear_block.error();
    }
    const bool match = internal::KeyPolicy::PinBlockMatches(*clear_block, pan, *enciphered, offset);
    SecureWipe(*clear_block);
    SecureWipe(*enciphered);
    return match;
  }

  // As VerifyPin: the PVK enciphers on the token, the PIN block is C_Decrypt'ed into process
  // memory and every clear copy is wiped before this returns.
  Result<std::string> PinOffsetFromBlock(KeyRef pin_key, ByteView encrypted_pin_block,
                                         std::string_view block_pan, KeyRef pvk,
                                         std::string_view pan) override {
    auto pk = Get(pin_key);
    if (!pk.ok()) return pk.error();
    auto vk = Get(pvk);
    if (!vk.ok()) return vk.error();
    if (Status ok = kPolicy.CheckPinOffsetFromBlock((*pk)->family, (*vk)->family,
                                                    encrypted_pin_block, block_pan, pan);
        !ok.ok()) {
      return ok.error();
    }
    auto enciphered = RunCipher(*(*vk)->object, CKM_DES3_ECB,
                                internal::KeyPolicy::PinValidationData(pan), {}, true);
    if (!enciphered.ok()) return enciphered.error();
    auto clear_block = RunCipher(*(*pk)->object, CKM_DES3_ECB, encrypted_pin_block, {}, false);
    if (!clear_block.ok()) {
      SecureWipe(*enciphered);
      return clear_block.error();
    }
    auto offset = kPolicy.PinOffsetOfBlock(*clear_block, block_pan, *enciphered);
    SecureWipe(*clear_block);
    SecureWipe(*enciphered);
    return offset;
  }

 private:
  // A key object; a session object is destroyed with its last user (a derived key keeps the
  // key it was derived from alive, to derive its MAC half or wrap it later).
  struct Object {
    Object(Pkcs11KeyStore* s, CK_OBJECT_HANDLE h, bool owned_session_object)
        : store(s), handle(h), owned(owned_session_object) {}
    Object(const Object&) = delete;
    Object& operator=(const Object&) = delete;
    ~Object() {
      if (owned) store->DestroyObject(handle);
    }
    Pkcs11KeyStore* store;
    CK_OBJECT_HANDLE handle;
    bool owned;
  };

  struct Key {
    std::shared_ptr<Object> object;  // CKK_DES2: K, or K‖K for an 8-byte key
    std::shared_ptr<Object> left;    // K_L‖K_L; derived keys make it on first MAC
    std::shared_ptr<Object> tac;     // T‖T: a stored key imported in clear only
    std::size_t length = 16;         // 8 or 16: the key as the scheme sees it
    Family family = Family::kIssuer;
    std::string stored_name;  // the label of a stored key; empty for a transient one
    // How the value can be recomputed: 3DES-ECB(source, source_data) for a derived key (its
    // first `length` bytes), or 3DES-ECB⁻¹(source, source_data) for an unwrapped one. Empty
    // source: no way (stored keys, TAC keys).
    std::shared_ptr<Object> source;
    Bytes source_data;
    bool source_is_cryptogram = false;
  };

  struct StoredObject {
    CK_OBJECT_HANDLE handle;
    KeyInfo info;
  };

  KeyRef NewRef(Key key) {
    const std::uint64_t id = next_id_++;
    refs_.emplace(id, std::move(key));
    return KeyRef{id};
  }

  Result<Key*> Get(KeyRef ref) {
    auto it = refs_.find(ref.id);
    if (it == refs_.end()) return kPolicy.UnknownRef();
    return &it->second;
  }

  void DestroyObject(CK_OBJECT_HANDLE handle) { fn_->C_DestroyObject(session_, handle); }

  std::vector<CK_ATTRIBUTE> TokenAttrs(const std::string& label, const Bytes& id) {
    std::vector<CK_ATTRIBUTE> extra = {Attr(CKA_LABEL, label)};
    if (!id.empty()) extra.push_back(Attr(CKA_ID, id));
    return extra;
  }

  // C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA): 3DES-ECB(base, data) as a new CKK_DES2 key.
  Result<CK_OBJECT_HANDLE> DeriveObject(CK_OBJECT_HANDLE base, const Bytes& data, Usage usage,
                                        bool token, const std::vector<CK_ATTRIBUTE>& extra) {
    CK_KEY_DERIVATION_STRING_DATA params{const_cast<std::uint8_t*>(data.data()), data.size()};
    CK_MECHANISM mechanism{CKM_DES3_ECB_ENCRYPT_DATA, &params, sizeof params};
    auto t = KeyTemplate(usage, token);
    t.insert(t.end(), extra.begin(), extra.end());
    FinishTemplate(t, token);
    CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;
    if (CK_RV rv = fn_->C_DeriveKey(session_, &mechanism, base, t.data(), t.size(), &out);
        rv != CKR_OK) {
      return P11Error("C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA)", rv);
    }
    return out;
  }

  Result<CK_OBJECT_HANDLE> CreateObject(const Bytes& value, Usage usage, bool token,
                                        const std::vector<CK_ATTRIBUTE>& extra) {
    auto t = KeyTemplate(usage, token);
    t.insert(t.end(), extra.begin(), extra.end());
    t.push_back(Attr(CKA_VALUE, value));
    FinishTemplate(t, token);
    CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;
    if (CK_RV rv = fn_->C_CreateObject(session_, t.data(), t.size(), &out); rv != CKR_OK) {
      return P11Error("C_CreateObject", rv);
    }
    return out;
  }

  Result<std::shared_ptr<Object>> CreateSessionObject(const Bytes& value, Usage usage) {
    auto handle = CreateObject(value, usage, false, {});
    if (!handle.ok()) return handle.error();
    return std::make_shared<Object>(this, *handle, true);
  }

  Result<KeyRef> DeriveRef(const Key& parent, Bytes data, std::size_t length, Family family) {
    auto handle = DeriveObject(parent.object->handle, data, Usage::kKey, false, {});
    if (!handle.ok()) return handle.error();
    Key key;
    key.object = std::make_shared<Object>(this, *handle, true);
    if (length == 8) key.left = key.object;
    key.length = length;
    key.family = family;
    key.source = parent.object;
    key.source_data = std::move(data);
    return NewRef(std::move(key));
  }

  // K_L‖K_L of a 16-byte key: a stored key's companion object, made at birth for an unwrapped
  // key, and for a derived key 3DES(parent, D ‖ D) — the left half of 3DES(parent, D ‖ ~D) twice.
  Result<Object*> LeftHalf(Key& key) {
    if (key.left) return key.left.get();
    if (!key.source || key.source_is_cryptogram) {
      return MakeError("pkcs11: no MAC half for this key");  // unreachable: set at birth
    }
    const ByteView d = ByteView(key.source_data).first(8);
    auto handle = DeriveObject(key.source->handle, Concat({d, d}), Usage::kLeftHalf, false, {});
    if (!handle.ok()) return handle.error();
    key.left = std::make_shared<Object>(this, *handle, true);
    return key.left.get();
  }

  // The key's value in host memory (the caller wipes it), recomputed from its source.
  Result<Bytes> ClearValue(const Key& key, const char* purpose) {
    if (!key.stored_name.empty()) {
      return MakeError("pkcs11: stored key " + key.stored_name +
                       " never leaves the token; cannot " + purpose +
                       " (only card keys derived from it can)");
    }
    if (!key.source) {
      return MakeError(std::string("pkcs11: this key was made from secret halves and cannot be "
                                   "recomputed; cannot ") +
                       purpose);
    }
    auto value =
        RunCipher(*key.source, CKM_DES3_ECB, key.source_data, {}, !key.source_is_cryptogram);
    if (!value.ok()) return value.error();
    // S ‖ S of an 8-byte key: S
    OPENSSL_cleanse(value->data() + key.length, value->size() - key.length);
    value->resize(key.length);
    return value;
  }

  Result<Bytes> RunCipher(const Object& key, CK_MECHANISM_TYPE type, ByteView data, ByteView iv,
                          bool encrypt) {
    Bytes iv_copy(iv.begin(), iv.end());
    CK_MECHANISM mechanism{type, iv_copy.empty() ? nullptr : iv_copy.data(), iv_copy.size()};
    const char* what =
        encrypt ? (type == CKM_DES3_CBC ? "C_Encrypt(CKM_DES3_CBC)" : "C_Encrypt(CKM_DES3_ECB)")
                : (type == CKM_DES3_CBC ? "C_Decrypt(CKM_DES3_CBC)" : "C_Decrypt(CKM_DES3_ECB)");
    CK_RV rv = encrypt ? fn_->C_EncryptInit(session_, &mechanism, key.handle)
                       : fn_->C_DecryptInit(session_, &mechanism, key.handle);
    if (rv != CKR_OK) return P11Error(what, rv);
    Bytes out(data.size());
    CK_ULONG out_length = out.size();
    auto* in = const_cast<std::uint8_t*>(data.data());
    rv = encrypt ? fn_->C_Encrypt(session_, in, data.size(), out.data(), &out_length)
                 : fn_->C_Decrypt(session_, in, data.size(), out.data(), &out_length);
    if (rv != CKR_OK) {
      SecureWipe(out);
      return P11Error(what, rv);
    }
    out.resize(out_length);
    return out;
  }

  Result<Bytes> KcvOf(CK_OBJECT_HANDLE handle) {
    Object view(this, handle, false);
    auto block = RunCipher(view, CKM_DES3_ECB, Bytes(8, 0), {}, true);
    if (!block.ok()) return block.error();
    return Bytes(block->begin(), block->begin() + 3);
  }

  Result<Bytes> Cipher(KeyRef ref, ByteView data, CipherMode mode, ByteView iv, bool encrypt) {
    auto k = Get(ref);
    if (!k.ok()) return k.error();
    if (Status ok = encrypt ? kPolicy.CheckEncrypt((*k)->family) : Status::Ok(); !ok.ok()) {
      return ok.error();
    }
    if (!encrypt) {
      if (Status ok = kPolicy.CheckDecrypt((*k)->family); !ok.ok()) return ok.error();
    }
    if (Status ok = kPolicy.CheckCipherInput(data, mode, iv, encrypt); !ok.ok()) {
      return ok.error();
    }
    if (mode == CipherMode::kEcb) return RunCipher(*(*k)->object, CKM_DES3_ECB, data, {}, encrypt);
    const Bytes chain = iv.empty() ? Bytes(8, 0) : Bytes(iv.begin(), iv.end());
    return RunCipher(*(*k)->object, CKM_DES3_CBC, data, chain, encrypt);
  }

  // ---- Stored objects ----

  Result<std::vector<CK_OBJECT_HANDLE>> FindHandles(std::vector<CK_ATTRIBUTE> match) {
    if (CK_RV rv = fn_->C_FindObjectsInit(session_, match.data(), match.size()); rv != CKR_OK) {
      return P11Error("C_FindObjectsInit", rv);
    }
    std::vector<CK_OBJECT_HANDLE> out;
    std::array<CK_OBJECT_HANDLE, 64> batch;
    CK_RV rv = CKR_OK;
    for (;;) {
      CK_ULONG count = 0;
      rv = fn_->C_FindObjects(session_, batch.data(), batch.size(), &count);
      if (rv != CKR_OK || count == 0) break;
      out.insert(out.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(count));
    }
    fn_->C_FindObjectsFinal(session_);
    if (rv != CKR_OK) return P11Error("C_FindObjects", rv);
    return out;
  }

  Result<Bytes> ByteAttribute(CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    if (CK_RV rv = fn_->C_GetAttributeValue(session_, handle, &a, 1); rv != CKR_OK) {
      return P11Error("C_GetAttributeValue", rv);
    }
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
      return MakeError("pkcs11: attribute unavailable");
    }
    Bytes value(a.ulValueLen);
    a.pValue = value.data();
    if (CK_RV rv = fn_->C_GetAttributeValue(session_, handle, &a, 1); rv != CKR_OK) {
      return P11Error("C_GetAttributeValue", rv);
    }
    value.resize(a.ulValueLen);
    return value;
  }

  // Every stored key (of `name`, or all): C_FindObjects over token secret keys, filtered by the
  // label "medcard/<name>/v<n>" (PKCS#11 matches whole attribute values, not prefixes).
  Result<std::vector<StoredObject>> FindStoredObjects(std::string_view name = {}) {
    auto handles = FindHandles({Attr(CKA_CLASS, kSecretKeyClass), Attr(CKA_TOKEN, kTrue)});
    if (!handles.ok()) return handles.error();
    std::vector<StoredObject> out;
    for (CK_OBJECT_HANDLE h : *handles) {
      auto label = ByteAttribute(h, CKA_LABEL);
      if (!label.ok()) return label.error();
      auto parsed = ParseStoredLabel(std::string(label->begin(), label->end()));
      if (!parsed || (!name.empty() && parsed->first != name)) continue;
      auto id = ByteAttribute(h, CKA_ID);
      if (!id.ok()) return id.error();
      auto metadata = ParseMetadata(std::string(id->begin(), id->end()));
      if (!metadata) {
        return MakeError("pkcs11: key object " + StoredLabel(parsed->first, parsed->second) +
                         " on " + Describe() + " has no medcard metadata in CKA_ID");
      }
      out.push_back({h, KeyInfo{parsed->first, parsed->second, metadata->kcv, metadata->origin,
                                metadata->created}});
    }
    return out;
  }

  // The token key object labelled `label`, or nullopt when there is none.
  Result<std::optional<CK_OBJECT_HANDLE>> FindKeyObject(const std::string& label) {
    auto handles = FindHandles(
        {Attr(CKA_CLASS, kSecretKeyClass), Attr(CKA_TOKEN, kTrue), Attr(CKA_LABEL, label)});
    if (!handles.ok()) return handles.error();
    if (handles->size() > 1) {
      return MakeError("pkcs11: " + std::to_string(handles->size()) + " objects labelled " + label +
                       " on " + Describe() + "; expected one");
    }
    if (handles->empty()) return std::optional<CK_OBJECT_HANDLE>();
    return std::optional<CK_OBJECT_HANDLE>(handles->front());
  }

  Error NoSuchKey(std::string_view name) {
    return MakeError("pkcs11: no key \"" + std::string(name) + "\" on " + Describe());
  }

  struct StoredHandles {
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE, left = CK_INVALID_HANDLE;
    std::optional<CK_OBJECT_HANDLE> tac;
  };

  // The objects of a stored key version by their labels; cached, as stored objects never change.
  Result<StoredHandles> StoredKeyHandles(std::string_view name, std::uint8_t version) {
    const std::string label = StoredLabel(name, version);
    if (auto it = handle_cache_.find(label); it != handle_cache_.end()) return it->second;
    auto key = FindKeyObject(label);
    if (!key.ok()) return key.error();
    if (!*key) {
      auto found = FindStoredObjects(name);
      if (!found.ok()) return found.error();
      std::uint8_t latest = 0;
      for (const StoredObject& o : *found) latest = std::max(latest, o.info.version);
      if (latest == 0) return NoSuchKey(name);
      return kPolicy.NoSuchVersion(name, version, latest);
    }
    auto left = FindKeyObject(label + std::string(kLeftHalfSuffix));
    if (!left.ok()) return left.error();
    if (!*left) {
      return MakeError("pkcs11: stored key " + label + " on " + Describe() +
                       " has lost its MAC half " + label + std::string(kLeftHalfSuffix));
    }
    auto tac = FindKeyObject(label + std::string(kTacKeySuffix));
    if (!tac.ok()) return tac.error();
    StoredHandles handles{**key, **left, *tac};
    handle_cache_.emplace(label, handles);
    return handles;
  }

  Result<std::uint8_t> NextVersion(std::string_view name,
                                   std::optional<std::uint8_t> requested = std::nullopt) {
    if (Status ok = kPolicy.CheckName(name); !ok.ok()) return ok.error();
    auto found = FindStoredObjects(name);
    if (!found.ok()) return found.error();
    std::uint8_t latest = 0;
    for (const StoredObject& o : *found) latest = std::max(latest, o.info.version);
    return kPolicy.VersionOfNewKey(name, latest, requested);
  }

  // Creates a stored key's objects: first its companions, then the key itself, whose existence
  // is what makes the version exist. Leftovers of an interrupted birth of this version go first.
  template <typename MakeObject>
  Result<KeyInfo> CreateStored(std::string_view name, std::uint8_t version,
                               const Metadata& metadata, bool with_tac_key, MakeObject make) {
    const std::string label = StoredLabel(name, version);
    std::vector<std::pair<std::string, Usage>> companions = {
        {label + std::string(kLeftHalfSuffix), Usage::kLeftHalf}};
    if (with_tac_key) companions.emplace_back(label + std::string(kTacKeySuffix), Usage::kTacKey);
    for (const auto& [companion_label, usage] : companions) {
      auto leftovers = FindHandles({Attr(CKA_CLASS, kSecretKeyClass), Attr(CKA_TOKEN, kTrue),
                                    Attr(CKA_LABEL, companion_label)});
      if (!leftovers.ok()) return leftovers.error();
      for (CK_OBJECT_HANDLE h : *leftovers) DestroyObject(h);
    }
    std::vector<CK_OBJECT_HANDLE> made;
    auto undo = [&] {
      for (CK_OBJECT_HANDLE h : made) DestroyObject(h);
    };
    const Bytes no_id;
    for (const auto& [companion_label, usage] : companions) {
      auto object = make(companion_label, usage, no_id);
      if (!object.ok()) {
        undo();
        return object.error();
      }
      made.push_back(*object);
    }
    const std::string id_text = FormatMetadata(metadata);
    const Bytes id(id_text.begin(), id_text.end());
    auto key = make(label, Usage::kKey, id);
    if (!key.ok()) {
      undo();
      return key.error();
    }
    return KeyInfo{std::string(name), version, metadata.kcv, metadata.origin, metadata.created};
  }

  Result<KeyInfo> ImportClear(std::string_view name, ByteView key, const char* origin,
                              std::optional<std::uint8_t> requested_version = std::nullopt) {
    auto version = NextVersion(name, requested_version);
    if (!version.ok()) return version.error();
    auto kcv = crypto::Kcv(key);
    if (!kcv.ok()) return kcv.error();
    Bytes full(key.begin(), key.end());
    Bytes left = Concat({key.first(8), key.first(8)});
    auto tac = crypto::TacKey(key);
    if (!tac.ok()) return tac.error();
    Bytes tac_doubled = Concat({*tac, *tac});
    SecureWipe(*tac);
    // A key-encrypting key never forms a TAC key, so it gets no TAC companion.
    const bool with_tac_key = !IsKeyEncryptingKey(FamilyOfName(name));
    auto info = CreateStored(name, *version, {ToHex(*kcv), origin, IsoUtcNow()}, with_tac_key,
                             [&](const std::string& label, Usage usage, const Bytes& id) {
                               const Bytes& value = usage == Usage::kLeftHalf ? left
                                                    : usage == Usage::kTacKey ? tac_doubled
                                                                              : full;
                               return CreateObject(value, usage, true, TokenAttrs(label, id));
                             });
    SecureWipe(full);
    SecureWipe(left);
    SecureWipe(tac_doubled);
    return info;
  }

  std::shared_ptr<Module> module_;
  CK_FUNCTION_LIST* fn_;
  CK_SLOT_ID slot_;
  CK_SESSION_HANDLE session_;
  std::string token_label_;
  bool test_only_;
  std::unordered_map<std::uint64_t, Key> refs_;
  std::map<std::pair<std::string, std::uint8_t>, std::uint64_t> stored_refs_;
  std::map<std::string, StoredHandles> handle_cache_;
  std::uint64_t next_id_ = 1;
};

// The mechanisms this backend needs from the token.
constexpr std::array<std::pair<CK_MECHANISM_TYPE, const char*>, 4> kRequiredMechanisms = {{
    {CKM_DES2_KEY_GEN, "CKM_DES2_KEY_GEN"},
    {CKM_DES3_ECB, "CKM_DES3_ECB"},
    {CKM_DES3_CBC, "CKM_DES3_CBC"},
    {CKM_DES3_ECB_ENCRYPT_DATA, "CKM_DES3_ECB_ENCRYPT_DATA"},
}};

Result<CK_SLOT_ID> FindToken(CK_FUNCTION_LIST* fn, const Pkcs11Config& config) {
  CK_ULONG count = 0;
  if (CK_RV rv = fn->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    return P11Error("C_GetSlotList", rv);
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (CK_RV rv = fn->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
    return P11Error("C_GetSlotList", rv);
  }
  slots.resize(count);
  std::string seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (fn->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    const std::string label = PaddedField(info.label, sizeof info.label);
    if (label == config.token_label) return slot;
    seen += (seen.empty() ? "" : ", ") + ("\"" + label + "\"");
  }
  return MakeError("pkcs11: no token labelled \"" + config.token_label + "\" in " +
                   config.module_path + " (tokens present: " + (seen.empty() ? "none" : seen) +
                   ")");
}

Status CheckMechanisms(CK_FUNCTION_LIST* fn, CK_SLOT_ID slot, const std::string& token) {
  std::string missing;
  for (const auto& [type, name] : kRequiredMechanisms) {
    CK_MECHANISM_INFO info{};
    if (fn->C_GetMechanismInfo(slot, type, &info) != CKR_OK) {
      missing += (missing.empty() ? "" : ", ") + std::string(name);
    }
  }
  if (!missing.empty()) {
    return MakeError("pkcs11: token \"" + token + "\" lacks mechanisms medcard needs: " + missing);
  }
  return Status::Ok();
}

Status Login(Module& module, CK_SESSION_HANDLE session, CK_SLOT_ID slot, const Pkcs11Config& c) {
  Bytes pin(c.user_pin.begin(), c.user_pin.end());
  std::lock_guard lock(module.mutex());
  TokenLogin& login = module.logins()[slot];
  const CK_RV rv = module.fn()->C_Login(session, CKU_USER, pin.data(), pin.size());
  Status result;
  if (rv == CKR_OK) {
    login.salt = crypto::RandomBytes(16);
    login.pin_digest = Sha256(Concat({login.salt, pin}));
  } else if (rv == CKR_USER_ALREADY_LOGGED_IN && !login.pin_digest.empty()) {
    if (!ConstantTimeEqual(Sha256(Concat({login.salt, pin})), login.pin_digest)) {
      result = MakeError("pkcs11: wrong user PIN for token \"" + c.token_label + "\"");
    }
  } else if (rv == CKR_USER_ALREADY_LOGGED_IN) {
    result = MakeError("pkcs11: another PKCS#11 user in this process is logged in to token \"" +
                       c.token_label + "\"; the PIN cannot be checked, refused");
  } else if (rv == CKR_PIN_INCORRECT) {
    result = MakeError("pkcs11: wrong user PIN for token \"" + c.token_label + "\"");
  } else if (rv == CKR_PIN_LOCKED) {
    result = MakeError("pkcs11: the user PIN of token \"" + c.token_label + "\" is locked");
  } else {
    result = P11Error("C_Login(CKU_USER) on token \"" + c.token_label + "\"", rv);
  }
  SecureWipe(pin);
  if (result.ok()) ++login.open_sessions;
  if (login.open_sessions == 0) module.logins().erase(slot);
  return result;
}

}  // namespace

Result<std::unique_ptr<KeyStore>> OpenPkcs11KeyStore(const Pkcs11Config& config) {
  auto module = Module::Load(config.module_path);
  if (!module.ok()) return module.error();
  CK_FUNCTION_LIST* fn = (*module)->fn();
  auto slot = FindToken(fn, config);
  if (!slot.ok()) return slot.error();
  if (Status ok = CheckMechanisms(fn, *slot, config.token_label); !ok.ok()) return ok.error();
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  if (CK_RV rv =
          fn->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session);
      rv != CKR_OK) {
    return P11Error("C_OpenSession on token \"" + config.token_label + "\"", rv);
  }
  if (Status ok = Login(**module, session, *slot, config); !ok.ok()) {
    fn->C_CloseSession(session);
    return ok.error();
  }
  // From here the store owns the session (its destructor closes it and counts the login down).
  auto store = std::make_unique<Pkcs11KeyStore>(*module, *slot, session, config.token_label, false);
  if (Status marked = store->LoadTestOnlyMarking(config.mark_test_only); !marked.ok()) {
    return marked.error();
  }
  return std::unique_ptr<KeyStore>(std::move(store));
}

}  // namespace medcard::keys
