// Key derivation (pboc-ed-ep.md "Cryptography"), key transport and randomness.
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <string>

#include "crypto/crypto.h"
#include "crypto/openssl_cipher.h"

namespace medcard::crypto {

namespace {

constexpr std::array<std::uint8_t, 2> kLoadSessionSuffix = {0x80, 0x00};

Error LengthError(const char* what, std::size_t want, std::size_t got) {
  return MakeError(std::string("crypto: ") + what + " is " + std::to_string(want) + " bytes, got " +
                   std::to_string(got));
}

// 3DES-ECB under a 16-byte key for one-off use (diversification, session keys, key transport):
// keys only the one context needed rather than a whole BlockCipher. REQUIRES: key is 16 bytes,
// data whole blocks.
Result<Bytes> TdesEcb(ByteView key, ByteView data, bool encrypt) {
  auto ede3_key = internal::ExpandDesKey(key);
  auto ctx = internal::MakeContext(internal::Mode::kTdesEcb, ede3_key, encrypt);
  OPENSSL_cleanse(ede3_key.data(), ede3_key.size());
  if (!ctx.ok()) return ctx.error();
  Bytes out(data.size());
  internal::RunBlocks(ctx->get(), data.data(), out.data(), data.size());
  return out;
}

}  // namespace

Result<Bytes> Diversify(ByteView master_key, ByteView factor) {
  if (master_key.size() != 16) return LengthError("a master key", 16, master_key.size());
  if (factor.size() != 8) return LengthError("a diversification factor", 8, factor.size());
  // DK = 3DES(MK, D) || 3DES(MK, ~D)
  Bytes d_and_not_d(factor.begin(), factor.end());
  for (std::uint8_t b : factor) d_and_not_d.push_back(static_cast<std::uint8_t>(~b));
  return TdesEcb(master_key, d_and_not_d, true);
}

Result<Bytes> DiversifyChain(ByteView master_key, std::span<const Bytes> factors) {
  if (factors.empty() || factors.size() > 3) {
    return MakeError("crypto: diversification takes 1 to 3 factors, got " +
                     std::to_string(factors.size()));
  }
  Bytes key(master_key.begin(), master_key.end());
  for (const Bytes& factor : factors) {
    auto next = Diversify(key, factor);
    SecureWipe(key);
    if (!next.ok()) return next.error();
    key = std::move(next).value();
  }
  return key;
}

Bytes AsnFactor(ByteView asn) {
  if (asn.size() < 8) internal::Fail("AsnFactor: an ASN has at least 8 bytes");
  const ByteView rightmost = asn.last(8);
  return Bytes(rightmost.begin(), rightmost.end());
}

Result<Bytes> LoadSessionKey(ByteView dlk, ByteView random, ByteView online_serial) {
  if (dlk.size() != 16) return LengthError("a load key (DLK)", 16, dlk.size());
  if (random.size() != 4) return LengthError("the card random", 4, random.size());
  if (online_serial.size() != 2) return LengthError("the online serial", 2, online_serial.size());
  // SESLK = 3DES(DLK, random(4) || onlineSerial(2) || 8000)
  const Bytes input = Concat({random, online_serial, ByteView(kLoadSessionSuffix)});
  return TdesEcb(dlk, input, true);
}

Result<Bytes> PurchaseSessionKey(ByteView dpk, ByteView random, ByteView offline_serial,
                                 ByteView term_txn_serial) {
  if (dpk.size() != 16) return LengthError("a purchase key (DPK)", 16, dpk.size());
  if (random.size() != 4) return LengthError("the card random", 4, random.size());
  if (offline_serial.size() != 2) {
    return LengthError("the offline serial", 2, offline_serial.size());
  }
  if (term_txn_serial.size() != 4) {
    return LengthError("the terminal transaction serial", 4, term_txn_serial.size());
  }
  // SESPK = 3DES(DPK, random(4) || offlineSerial(2) || the last 2 bytes of termTxnSerial)
  const Bytes input = Concat({random, offline_serial, term_txn_serial.last(2)});
  return TdesEcb(dpk, input, true);
}

Result<Bytes> TacKey(ByteView dtk) {
  if (dtk.size() != 16) return LengthError("a TAC key (DTK)", 16, dtk.size());
  Bytes key(8);
  for (std::size_t i = 0; i < 8; ++i) key[i] = static_cast<std::uint8_t>(dtk[i] ^ dtk[8 + i]);
  return key;
}

Result<Bytes> EncryptKeyForTransport(ByteView transport_key, ByteView key) {
  if (transport_key.size() != 16) {
    return LengthError("a transport key", 16, transport_key.size());
  }
  if (key.size() != 8 && key.size() != 16 && key.size() != 24) {
    return MakeError("crypto: a transported key is 8, 16 or 24 bytes, got " +
                     std::to_string(key.size()));
  }
  // cryptogram = 3DES-ECB(transport key, key): exactly what an HSM's C_WrapKey(CKM_DES3_ECB)
  // produces, so a key can leave a PKCS#11 token for a card without ever being in clear.
  // Integrity comes from the MAC that accompanies every cryptogram (WRITE KEY).
  return TdesEcb(transport_key, key, true);
}

Result<Bytes> DecryptKeyFromTransport(ByteView transport_key, ByteView cryptogram) {
  if (transport_key.size() != 16) {
    return LengthError("a transport key", 16, transport_key.size());
  }
  if (cryptogram.size() != 8 && cryptogram.size() != 16 && cryptogram.size() != 24) {
    return MakeError("crypto: a key cryptogram is 8, 16 or 24 bytes, got " +
                     std::to_string(cryptogram.size()));
  }
  return TdesEcb(transport_key, cryptogram, false);
}

Bytes RandomBytes(std::size_t n) {
  Bytes out(n);
  std::size_t done = 0;
  while (done < n) {
    const std::size_t len = std::min<std::size_t>(n - done, INT_MAX);
    if (RAND_bytes(out.data() + done, static_cast<int>(len)) != 1) {
      internal::Fail("RAND_bytes failed: refusing to return weak randomness");
    }
    done += len;
  }
  return out;
}

}  // namespace medcard::crypto
