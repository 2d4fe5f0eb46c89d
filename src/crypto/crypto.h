// medcard crypto: DES/3DES/SM4 block ciphers through OpenSSL 3 and the PBOC algorithms built on
// them (pboc-ed-ep.md, "Cryptography"). Every function here is pure: keys in, bytes out.
//
// Single DES: OpenSSL 3 keeps DES-ECB/CBC in the legacy provider. medcard runs single DES as
// 3DES-EDE with K||K||K (mathematically identical) so that only the default provider is needed
// and FIPS-style deployments do not have to load "legacy". See docs/crypto.md.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::crypto {

enum class CipherKind { kDes, kTdes2, kTdes3, kSm4 };

// A block cipher with its key schedule prepared once (cheap to reuse; MAC speed matters at the
// host). Movable, not copyable. Thread-compatible: one instance per thread.
class BlockCipher {
 public:
  // key: 8 bytes (DES), 16 (2-key 3DES), 24 (3-key 3DES). Error on any other length.
  static Result<BlockCipher> Des(ByteView key);
  // key: 16 bytes.
  static Result<BlockCipher> Sm4(ByteView key);

  BlockCipher(BlockCipher&&) noexcept;
  BlockCipher& operator=(BlockCipher&&) noexcept;
  ~BlockCipher();

  CipherKind kind() const { return kind_; }
  std::size_t block_size() const;  // 8 for DES/3DES, 16 for SM4

  // REQUIRES: data.size() is a multiple of block_size(); iv.size() == block_size().
  Bytes EncryptEcb(ByteView data) const;
  Bytes DecryptEcb(ByteView data) const;
  Bytes EncryptCbc(ByteView data, ByteView iv) const;
  Bytes DecryptCbc(ByteView data, ByteView iv) const;
  // One block in place-free form: out and in may alias. REQUIRES: block_size() bytes each.
  void EncryptBlock(const std::uint8_t* in, std::uint8_t* out) const;
  void DecryptBlock(const std::uint8_t* in, std::uint8_t* out) const;

 private:
  struct Impl;
  BlockCipher(CipherKind kind, std::unique_ptr<Impl> impl);
  CipherKind kind_;
  std::unique_ptr<Impl> impl_;
};

// PBOC padding: 80 then 00 up to a multiple of `block` (a whole 80 00.. block if aligned).
Bytes PadIso9797M2(ByteView data, std::size_t block = 8);

// PBOC DES-MAC (ISO 9797-1 MAC algorithm 1 for 8-byte keys, algorithm 3 "retail MAC" for
// 16-byte keys). Returns the full 8-byte last block; the PBOC MAC is its leftmost 4 bytes.
// A prepared MAC key: the schedules of K_L (and K_R) are built once.
class MacKey {
 public:
  // key: 8 or 16 bytes.
  static Result<MacKey> Create(ByteView key);
  MacKey(MacKey&&) noexcept;
  MacKey& operator=(MacKey&&) noexcept;
  ~MacKey();

  // iv: 8 bytes; empty means zero IV.
  std::array<std::uint8_t, 8> Full(ByteView data, ByteView iv = {}) const;
  // Leftmost 4 bytes: what cards and PSAMs exchange as MAC1/MAC2/TAC.
  std::array<std::uint8_t, 4> Mac4(ByteView data, ByteView iv = {}) const;

 private:
  struct Impl;
  explicit MacKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One-shot convenience: PBOC 4-byte MAC. key 8 or 16 bytes, iv 8 bytes or empty (zero).
Result<Bytes> PbocMac(ByteView key, ByteView data, ByteView iv = {});

// Card key diversification: DK = 3DES(MK, D) || 3DES(MK, ~D), D = factor (8 bytes).
// mk: 16 bytes. (pboc-ed-ep.md, "Card key diversification")
Result<Bytes> Diversify(ByteView master_key, ByteView factor);
// Multi-level diversification (PSAM DELIVERY KEY, N = 1..3): applies the factors in order
// (first the top issuer level ... last the card ASN, as the caller orders them).
Result<Bytes> DiversifyChain(ByteView master_key, std::span<const Bytes> factors);
// The 8-byte diversification factor of a 10-byte ASN: its rightmost 8 bytes.
Bytes AsnFactor(ByteView asn);

// Session keys (8-byte single-DES keys).
// SESLK = 3DES(DLK, random(4) || onlineSerial(2) || 8000). Also used for unload (DULK).
Result<Bytes> LoadSessionKey(ByteView dlk, ByteView random, ByteView online_serial);
// SESPK = 3DES(DPK, random(4) || offlineSerial(2) || termTxnSerial[2..3]).
Result<Bytes> PurchaseSessionKey(ByteView dpk, ByteView random, ByteView offline_serial,
                                 ByteView term_txn_serial);
// TAC key: DTK_L xor DTK_R (8 bytes). dtk: 16 bytes.
Result<Bytes> TacKey(ByteView dtk);

// Key check value: leftmost 3 bytes of the key encrypting a zero block (DES/3DES/SM4 by length;
// pass kind for a 16-byte SM4 key).
Result<Bytes> Kcv(ByteView key, CipherKind kind = CipherKind::kTdes2);

// ISO 9564-1 PIN blocks (8 bytes, clear). pin: 4..12 decimal digits.
// Format 0: PIN field xor PAN field (pan: the 12 rightmost digits excluding the check digit,
// the caller passes the full PAN digit string and the function picks them).
// Format 1: PIN field with random fill (no PAN). Format 3: like 0 with random fill A..F.
enum class PinBlockFormat { kFormat0 = 0, kFormat1 = 1, kFormat3 = 3 };
Result<Bytes> MakePinBlock(PinBlockFormat format, std::string_view pin, std::string_view pan = {});
// Recovers the PIN digits; error on a malformed block.
Result<std::string> ParsePinBlock(PinBlockFormat format, ByteView block, std::string_view pan = {});

// Key transport for personalisation (docs/card-commands.md, WRITE KEY): a key travels to a card
// or PSAM only as cryptogram = 3DES-ECB(transport key, key) — the C_WrapKey(CKM_DES3_ECB) format
// of any PKCS#11 HSM — always accompanied by a MAC under the transport key that the receiver
// checks first. transport_key: 16 bytes; key and cryptogram: 8, 16 or 24 bytes.
Result<Bytes> EncryptKeyForTransport(ByteView transport_key, ByteView key);
Result<Bytes> DecryptKeyFromTransport(ByteView transport_key, ByteView cryptogram);

// Cryptographically secure random bytes (OpenSSL RAND_bytes).
Bytes RandomBytes(std::size_t n);

}  // namespace medcard::crypto
