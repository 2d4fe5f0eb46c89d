// PBOC DES-MAC (pboc-ed-ep.md "Cryptography"; ISO 9797-1 padding method 2, MAC algorithms 1/3).
#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "crypto/crypto.h"
#include "crypto/openssl_cipher.h"

namespace medcard::crypto {

using internal::CipherCtx;
using internal::Mode;

Bytes PadIso9797M2(ByteView data, std::size_t block) {
  if (block == 0) internal::Fail("PadIso9797M2: block size 0");
  Bytes out;
  out.reserve((data.size() / block + 1) * block);
  Append(out, data);
  out.push_back(0x80);
  out.resize((out.size() + block - 1) / block * block, 0x00);
  return out;
}

// chain: CBC single DES with K_L, for every whole block of the input.
// last:  the padded tail block (xor the chaining value) through DES-EDE(K_L, K_R, K_L), which is
//        "encrypt with K_L, decrypt with K_R and encrypt with K_L" of algorithm 3 in one EVP
//        call; for an 8-byte key it is single DES with K, i.e. algorithm 1.
struct MacKey::Impl {
  CipherCtx chain;
  CipherCtx last;
  // The chaining value `chain` will xor into the next block it is given: zero after keying, then
  // the last block it produced. Knowing it lets each MAC start from its own IV without
  // re-initialising the context.
  std::array<std::uint8_t, 8> chain_state{};
};

MacKey::MacKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MacKey::MacKey(MacKey&&) noexcept = default;
MacKey& MacKey::operator=(MacKey&&) noexcept = default;
MacKey::~MacKey() = default;

Result<MacKey> MacKey::Create(ByteView key) {
  if (key.size() != 8 && key.size() != 16) {
    return MakeError("crypto: a MAC key is 8 or 16 bytes, got " + std::to_string(key.size()));
  }
  auto chain_key = internal::ExpandDesKey(key.first(8));  // K_L||K_L||K_L
  auto last_key = internal::ExpandDesKey(key);            // K_L||K_R||K_L (or K||K||K)
  auto chain = internal::MakeContext(Mode::kTdesCbc, chain_key, true);
  auto last = internal::MakeContext(Mode::kTdesEcb, last_key, true);
  OPENSSL_cleanse(chain_key.data(), chain_key.size());
  OPENSSL_cleanse(last_key.data(), last_key.size());
  if (!chain.ok()) return chain.error();
  if (!last.ok()) return last.error();
  auto impl = std::make_unique<Impl>();
  impl->chain = std::move(chain).value();
  impl->last = std::move(last).value();
  return MacKey(std::move(impl));
}

std::array<std::uint8_t, 8> MacKey::Full(ByteView data, ByteView iv) const {
  std::array<std::uint8_t, 8> chaining{};
  if (iv.size() == 8) {
    std::memcpy(chaining.data(), iv.data(), 8);
  } else if (!iv.empty()) {
    internal::Fail("MacKey: IV must be 8 bytes or empty");
  }

  // Padding method 2 only ever changes the last block: every whole block of the input goes
  // through CBC as it is, then the tail (0..7 bytes) gets 80 00.. (a whole 80 00.. block when
  // the input is aligned). No copy of the input is made.
  const std::size_t whole = data.size() / 8 * 8;
  if (whole > 0) {
    // CBC xors chain_state into the first block; pre-xoring (iv ^ chain_state) makes that
    // "xor iv", which is cheaper than resetting the IV through EVP_CipherInit_ex2 per call.
    std::array<std::uint8_t, 256> out;
    for (std::size_t i = 0; i < 8; ++i) {
      out[i] = static_cast<std::uint8_t>(data[i] ^ chaining[i] ^ impl_->chain_state[i]);
    }
    internal::RunBlocks(impl_->chain.get(), out.data(), out.data(), 8);
    std::size_t done = 8;
    std::size_t len = 8;
    while (done < whole) {
      len = std::min(out.size(), whole - done);
      internal::RunBlocks(impl_->chain.get(), data.data() + done, out.data(), len);
      done += len;
    }
    std::memcpy(chaining.data(), out.data() + len - 8, 8);
    impl_->chain_state = chaining;
  }

  std::array<std::uint8_t, 8> block{};
  const std::size_t tail = data.size() - whole;
  if (tail > 0) std::memcpy(block.data(), data.data() + whole, tail);
  block[tail] = 0x80;
  for (std::size_t i = 0; i < 8; ++i) block[i] ^= chaining[i];
  internal::RunBlocks(impl_->last.get(), block.data(), block.data(), 8);
  return block;
}

std::array<std::uint8_t, 4> MacKey::Mac4(ByteView data, ByteView iv) const {
  const auto full = Full(data, iv);
  return {full[0], full[1], full[2], full[3]};
}

Result<Bytes> PbocMac(ByteView key, ByteView data, ByteView iv) {
  if (!iv.empty() && iv.size() != 8) {
    return MakeError("crypto: a MAC IV is 8 bytes (or empty for zero), got " +
                     std::to_string(iv.size()));
  }
  auto mac_key = MacKey::Create(key);
  if (!mac_key.ok()) return mac_key.error();
  const auto mac = mac_key->Mac4(data, iv);
  return Bytes(mac.begin(), mac.end());
}

}  // namespace medcard::crypto
