// The non-virtual parts of the key store interface: key names and MAC verification.
#include "keys/key_store.h"

#include <algorithm>

namespace medcard::keys {

bool IsIssuerRole(std::string_view role) {
  return std::find(std::begin(kIssuerRoles), std::end(kIssuerRoles), role) !=
         std::end(kIssuerRoles);
}

bool IsTerminalMasterKeyName(std::string_view name) {
  constexpr std::string_view kPrefix = "tmk/";
  if (name.size() != kPrefix.size() + 12 || !name.starts_with(kPrefix)) return false;
  return std::all_of(name.begin() + kPrefix.size(), name.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
}

namespace {
// prefix + 1..32 upper-case letters, digits or '-'.
bool IsLabelledKeyName(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.size() > prefix.size() + 32 ||
      !name.starts_with(prefix)) {
    return false;
  }
  return std::all_of(name.begin() + prefix.size(), name.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || c == '-';
  });
}
}  // namespace

bool IsPinEncryptionKeyName(std::string_view name) { return IsLabelledKeyName(name, "pek/"); }

bool IsPinVerificationKeyName(std::string_view name) { return IsLabelledKeyName(name, "pvk/"); }

bool IsValidKeyName(std::string_view name) {
  return IsIssuerRole(name) || IsTerminalMasterKeyName(name) || IsPinEncryptionKeyName(name) ||
         IsPinVerificationKeyName(name) || name == kTerminalKeyExchangeKey;
}

Status KeyStore::VerifyMac(KeyRef key, ByteView data, ByteView mac, ByteView iv) {
  auto expected = Mac(key, data, iv);
  if (!expected.ok()) return expected.error();
  if (!ConstantTimeEqual(*expected, mac)) return MakeError("MAC invalid");
  return Status::Ok();
}

}  // namespace medcard::keys
