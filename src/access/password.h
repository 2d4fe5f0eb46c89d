// Password hashing (docs/access.md "Passwords"): scrypt through OpenSSL 3's EVP_KDF "SCRYPT",
// a 16-byte random salt, stored as a PHC-style string
//   $scrypt$ln=15,r=8,p=1$<salt, base64 without padding>$<32-byte hash, base64 without padding>
// and compared in constant time. MEDCARD_PASSWORD_TEST_KDF=fast lowers the cost (ln=4) for tests
// only; hashes keep their own parameters, so a fast hash still verifies without the variable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::access {

struct ScryptParameters {
  int log2_n = 15;  // N = 2^log2_n
  int r = 8;
  int p = 1;
};
// The parameters new hashes use: the defaults, or the test ones under
// MEDCARD_PASSWORD_TEST_KDF=fast.
ScryptParameters DefaultScryptParameters();

// A new encoded hash of `password` with a fresh random salt.
Result<std::string> HashPassword(std::string_view password);
Result<std::string> HashPassword(std::string_view password, const ScryptParameters& parameters);

// True when `password` matches `encoded`; an error when `encoded` is not a valid hash string.
Result<bool> VerifyPassword(std::string_view password, std::string_view encoded);

// The parts of an encoded hash (exposed for tests).
struct PasswordHash {
  ScryptParameters parameters;
  Bytes salt;
  Bytes hash;
};
// Refuses anything but the exact format: unknown algorithm, parameters out of range
// (ln 1..20, r 1..32, p 1..16), bad base64, salt shorter than 16 bytes, hash not 32 bytes.
Result<PasswordHash> ParsePasswordHash(std::string_view encoded);
std::string EncodePasswordHash(const PasswordHash& hash);

// Unpadded standard base64 (the PHC string's alphabet).
std::string Base64NoPad(ByteView bytes);
std::optional<Bytes> FromBase64NoPad(std::string_view text);

}  // namespace medcard::access
