// scrypt password hashes in PHC-style strings (docs/access.md "Passwords").
#include "access/password.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstdlib>
#include <memory>

namespace medcard::access {

namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kHashBytes = 32;
constexpr std::string_view kPrefix = "$scrypt$";
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool ParametersInRange(const ScryptParameters& p) {
  return p.log2_n >= 1 && p.log2_n <= 20 && p.r >= 1 && p.r <= 32 && p.p >= 1 && p.p <= 16;
}

Result<Bytes> Scrypt(std::string_view password, ByteView salt, const ScryptParameters& p) {
  if (!ParametersInRange(p)) return MakeError("scrypt parameters out of range");
  struct KdfFree {
    void operator()(EVP_KDF* k) const { EVP_KDF_free(k); }
    void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
  };
  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, "SCRYPT", nullptr));
  if (!kdf) return MakeError("OpenSSL has no SCRYPT KDF");
  std::unique_ptr<EVP_KDF_CTX, KdfFree> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return MakeError("cannot create the SCRYPT context");
  std::uint64_t n = std::uint64_t{1} << p.log2_n;
  std::uint32_t r = static_cast<std::uint32_t>(p.r);
  std::uint32_t parallel = static_cast<std::uint32_t>(p.p);
  // 128·r·N bytes per lane, with room: OpenSSL's default ceiling (32 MiB) is what N=2^15, r=8
  // needs exactly and refuses.
  std::uint64_t max_memory = std::uint64_t{128} * r * n * parallel + (std::uint64_t{16} << 20);
  static char empty = '\0';
  char* password_data = password.empty() ? &empty : const_cast<char*>(password.data());
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, password_data, password.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &parallel),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &max_memory),
      OSSL_PARAM_construct_end(),
  };
  Bytes out(kHashBytes);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return MakeError("scrypt failed");
  }
  return out;
}

std::optional<int> ParseSmallInt(std::string_view text) {
  if (text.empty() || text.size() > 3 || text[0] == '0') return std::nullopt;
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

ScryptParameters DefaultScryptParameters() {
  const char* test = std::getenv("MEDCARD_PASSWORD_TEST_KDF");
  if (test != nullptr && std::string_view(test) == "fast") return {4, 8, 1};
  return {};
}

std::string Base64NoPad(ByteView bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v =
        (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::optional<Bytes> FromBase64NoPad(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  Bytes out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const char* at = std::char_traits<char>::find(kAlphabet, 64, c);
    if (at == nullptr) return std::nullopt;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(at - kAlphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((buffer >> bits) & 0xFF));
    }
  }
  // The unused low bits of the last character must be zero (one encoding per byte string).
  if ((buffer & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string EncodePasswordHash(const PasswordHash& h) {
  return std::string(kPrefix) + "ln=" + std::to_string(h.parameters.log2_n) +
         ",r=" + std::to_string(h.parameters.r) + ",p=" + std::to_string(h.parameters.p) + "$" +
         Base64NoPad(h.salt) + "$" + Base64NoPad(h.hash);
}

Result<PasswordHash> ParsePasswordHash(std::string_view encoded) {
  if (encoded.substr(0, kPrefix.size()) != kPrefix) {
    return MakeError("not a scrypt password hash");
  }
  std::string_view rest = encoded.substr(kPrefix.size());
  const auto first = rest.find('$');
  if (first == std::string_view::npos) return MakeError("password hash: missing salt");
  const std::string_view parameters = rest.substr(0, first);
  rest = rest.substr(first + 1);
  const auto second = rest.find('$');
  if (second == std::string_view::npos) return MakeError("password hash: missing hash");
  const std::string_view salt_text = rest.substr(0, second);
  const std::string_view hash_text = rest.substr(second + 1);

  PasswordHash h;
  const std::string_view names[3] = {"ln=", "r=", "p="};
  int* fields[3] = {&h.parameters.log2_n, &h.parameters.r, &h.parameters.p};
  std::string_view params = parameters;
  for (int i = 0; i < 3; ++i) {
    if (params.substr(0, names[i].size()) != names[i]) {
      return MakeError("password hash: parameters must be ln=,r=,p=");
    }
    params = params.substr(names[i].size());
    const auto comma = params.find(',');
    if ((i < 2) != (comma != std::string_view::npos)) {
      return MakeError("password hash: parameters must be ln=,r=,p=");
    }
    const auto value = ParseSmallInt(params.substr(0, comma));
    if (!value) return MakeError("password hash: a parameter is not a number");
    *fields[i] = *value;
    params = i < 2 ? params.substr(comma + 1) : std::string_view{};
  }
  if (!ParametersInRange(h.parameters)) return MakeError("password hash: parameters out of range");
  auto salt = FromBase64NoPad(salt_text);
  auto hash = FromBase64NoPad(hash_text);
  if (!salt || !hash) return MakeError("password hash: bad base64");
  if (salt->size() < kSaltBytes) return MakeError("password hash: salt shorter than 16 bytes");
  if (hash->size() != kHashBytes) return MakeError("password hash: hash is not 32 bytes");
  h.salt = std::move(*salt);
  h.hash = std::move(*hash);
  return h;
}

Result<std::string> HashPassword(std::string_view password) {
  return HashPassword(password, DefaultScryptParameters());
}

Result<std::string> HashPassword(std::string_view password, const ScryptParameters& parameters) {
  PasswordHash h;
  h.parameters = parameters;
  h.salt.resize(kSaltBytes);
  if (RAND_bytes(h.salt.data(), static_cast<int>(h.salt.size())) != 1) {
    return MakeError("no random bytes for the salt");
  }
  auto derived = Scrypt(password, h.salt, parameters);
  if (!derived) return derived.error();
  h.hash = std::move(*derived);
  return EncodePasswordHash(h);
}

Result<bool> VerifyPassword(std::string_view password, std::string_view encoded) {
  auto parsed = ParsePasswordHash(encoded);
  if (!parsed) return parsed.error();
  auto derived = Scrypt(password, parsed->salt, parsed->parameters);
  if (!derived) return derived.error();
  return CRYPTO_memcmp(derived->data(), parsed->hash.data(), kHashBytes) == 0;
}

}  // namespace medcard::access
