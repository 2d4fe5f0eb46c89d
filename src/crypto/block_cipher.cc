// BlockCipher and the shared EVP plumbing (openssl_cipher.h).
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "crypto/crypto.h"
#include "crypto/openssl_cipher.h"

namespace medcard::crypto {

namespace internal {

namespace {

struct CipherDeleter {
  void operator()(EVP_CIPHER* cipher) const { EVP_CIPHER_free(cipher); }
};
using FetchedCipher = std::unique_ptr<EVP_CIPHER, CipherDeleter>;

constexpr const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kTdesEcb:
      return "DES-EDE3-ECB";
    case Mode::kTdesCbc:
      return "DES-EDE3-CBC";
    case Mode::kSm4Ecb:
      return "SM4-ECB";
    case Mode::kSm4Cbc:
      return "SM4-CBC";
  }
  return "";
}

// Fetched once per process (thread-safe static initialisation); EVP_CIPHER objects are
// shareable between threads. nullptr where the provider lacks the algorithm.
const EVP_CIPHER* FetchedFor(Mode mode) {
  static const std::array<FetchedCipher, 4> kCiphers = {
      FetchedCipher(EVP_CIPHER_fetch(nullptr, ModeName(Mode::kTdesEcb), nullptr)),
      FetchedCipher(EVP_CIPHER_fetch(nullptr, ModeName(Mode::kTdesCbc), nullptr)),
      FetchedCipher(EVP_CIPHER_fetch(nullptr, ModeName(Mode::kSm4Ecb), nullptr)),
      FetchedCipher(EVP_CIPHER_fetch(nullptr, ModeName(Mode::kSm4Cbc), nullptr)),
  };
  return kCiphers[static_cast<std::size_t>(mode)].get();
}

}  // namespace

void Fail(const char* what) {
  std::fprintf(stderr, "medcard crypto: %s\n", what);
  std::abort();
}

Result<CipherCtx> MakeContext(Mode mode, ByteView key, bool encrypt) {
  const EVP_CIPHER* cipher = FetchedFor(mode);
  if (cipher == nullptr) {
    return MakeError(std::string("crypto: OpenSSL cipher ") + ModeName(mode) +
                     " is not available in the default provider");
  }
  if (key.size() != static_cast<std::size_t>(EVP_CIPHER_get_key_length(cipher))) {
    Fail("internal key length mismatch");
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return MakeError("crypto: out of memory (EVP_CIPHER_CTX_new)");
  static constexpr std::array<std::uint8_t, 16> kZeroIv{};
  const std::uint8_t* iv = EVP_CIPHER_get_iv_length(cipher) > 0 ? kZeroIv.data() : nullptr;
  if (EVP_CipherInit_ex2(ctx.get(), cipher, key.data(), iv, encrypt ? 1 : 0, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1) {
    return MakeError(std::string("crypto: OpenSSL could not key ") + ModeName(mode));
  }
  return ctx;
}

void RunBlocks(EVP_CIPHER_CTX* ctx, const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  // EVP takes int lengths: feed huge inputs in slices (a multiple of every block size).
  constexpr std::size_t kSlice = std::size_t{1} << 30;
  while (n > 0) {
    const std::size_t len = std::min(n, kSlice);
    int out_len = 0;
    if (EVP_CipherUpdate(ctx, out, &out_len, in, static_cast<int>(len)) != 1 ||
        static_cast<std::size_t>(out_len) != len) {
      Fail("EVP_CipherUpdate failed on a prepared context");
    }
    in += len;
    out += len;
    n -= len;
  }
}

void ResetIv(EVP_CIPHER_CTX* ctx, const std::uint8_t* iv) {
  if (EVP_CipherInit_ex2(ctx, nullptr, nullptr, iv, -1, nullptr) != 1) {
    Fail("EVP_CipherInit_ex2 could not reset the IV");
  }
}

std::array<std::uint8_t, 24> ExpandDesKey(ByteView key) {
  std::array<std::uint8_t, 24> k{};
  switch (key.size()) {
    case 8:  // K||K||K: EDE with equal keys is single DES
      for (std::size_t i = 0; i < 3; ++i) std::memcpy(k.data() + 8 * i, key.data(), 8);
      break;
    case 16:  // K1||K2||K1: 2-key 3DES
      std::memcpy(k.data(), key.data(), 16);
      std::memcpy(k.data() + 16, key.data(), 8);
      break;
    case 24:
      std::memcpy(k.data(), key.data(), 24);
      break;
    default:
      Fail("DES key length must be 8, 16 or 24");
  }
  return k;
}

}  // namespace internal

using internal::CipherCtx;
using internal::Mode;

struct BlockCipher::Impl {
  // `key` is already in the form the EVP cipher takes (24 bytes for DES-EDE3, 16 for SM4).
  static Result<std::unique_ptr<Impl>> Make(Mode ecb, Mode cbc, ByteView key,
                                            std::size_t block_size);

  std::size_t block_size = 0;
  CipherCtx ecb_encrypt;
  CipherCtx ecb_decrypt;
  CipherCtx cbc_encrypt;
  CipherCtx cbc_decrypt;
};

Result<std::unique_ptr<BlockCipher::Impl>> BlockCipher::Impl::Make(Mode ecb, Mode cbc, ByteView key,
                                                                   std::size_t block_size) {
  auto impl = std::make_unique<Impl>();
  impl->block_size = block_size;
  struct Slot {
    CipherCtx* ctx;
    Mode mode;
    bool encrypt;
  };
  const Slot slots[] = {{&impl->ecb_encrypt, ecb, true},
                        {&impl->ecb_decrypt, ecb, false},
                        {&impl->cbc_encrypt, cbc, true},
                        {&impl->cbc_decrypt, cbc, false}};
  for (const Slot& slot : slots) {
    auto ctx = internal::MakeContext(slot.mode, key, slot.encrypt);
    if (!ctx.ok()) return ctx.error();
    *slot.ctx = std::move(ctx).value();
  }
  return impl;
}

namespace {

void RequireWholeBlocks(std::size_t size, std::size_t block_size) {
  if (size % block_size != 0) internal::Fail("BlockCipher: data is not a whole number of blocks");
}

}  // namespace

BlockCipher::BlockCipher(CipherKind kind, std::unique_ptr<Impl> impl)
    : kind_(kind), impl_(std::move(impl)) {}
BlockCipher::BlockCipher(BlockCipher&&) noexcept = default;
BlockCipher& BlockCipher::operator=(BlockCipher&&) noexcept = default;
BlockCipher::~BlockCipher() = default;

Result<BlockCipher> BlockCipher::Des(ByteView key) {
  CipherKind kind;
  switch (key.size()) {
    case 8:
      kind = CipherKind::kDes;
      break;
    case 16:
      kind = CipherKind::kTdes2;
      break;
    case 24:
      kind = CipherKind::kTdes3;
      break;
    default:
      return MakeError("crypto: a DES key is 8, 16 or 24 bytes, got " + std::to_string(key.size()));
  }
  auto ede3_key = internal::ExpandDesKey(key);
  auto impl = Impl::Make(Mode::kTdesEcb, Mode::kTdesCbc, ede3_key, 8);
  OPENSSL_cleanse(ede3_key.data(), ede3_key.size());
  if (!impl.ok()) return impl.error();
  return BlockCipher(kind, std::move(impl).value());
}

Result<BlockCipher> BlockCipher::Sm4(ByteView key) {
  if (key.size() != 16) {
    return MakeError("crypto: an SM4 key is 16 bytes, got " + std::to_string(key.size()));
  }
  auto impl = Impl::Make(Mode::kSm4Ecb, Mode::kSm4Cbc, key, 16);
  if (!impl.ok()) return impl.error();
  return BlockCipher(CipherKind::kSm4, std::move(impl).value());
}

std::size_t BlockCipher::block_size() const { return impl_->block_size; }

Bytes BlockCipher::EncryptEcb(ByteView data) const {
  RequireWholeBlocks(data.size(), impl_->block_size);
  Bytes out(data.size());
  internal::RunBlocks(impl_->ecb_encrypt.get(), data.data(), out.data(), data.size());
  return out;
}

Bytes BlockCipher::DecryptEcb(ByteView data) const {
  RequireWholeBlocks(data.size(), impl_->block_size);
  Bytes out(data.size());
  internal::RunBlocks(impl_->ecb_decrypt.get(), data.data(), out.data(), data.size());
  return out;
}

Bytes BlockCipher::EncryptCbc(ByteView data, ByteView iv) const {
  RequireWholeBlocks(data.size(), impl_->block_size);
  if (iv.size() != impl_->block_size) internal::Fail("BlockCipher: IV is not one block");
  internal::ResetIv(impl_->cbc_encrypt.get(), iv.data());
  Bytes out(data.size());
  internal::RunBlocks(impl_->cbc_encrypt.get(), data.data(), out.data(), data.size());
  return out;
}

Bytes BlockCipher::DecryptCbc(ByteView data, ByteView iv) const {
  RequireWholeBlocks(data.size(), impl_->block_size);
  if (iv.size() != impl_->block_size) internal::Fail("BlockCipher: IV is not one block");
  internal::ResetIv(impl_->cbc_decrypt.get(), iv.data());
  Bytes out(data.size());
  internal::RunBlocks(impl_->cbc_decrypt.get(), data.data(), out.data(), data.size());
  return out;
}

void BlockCipher::EncryptBlock(const std::uint8_t* in, std::uint8_t* out) const {
  internal::RunBlocks(impl_->ecb_encrypt.get(), in, out, impl_->block_size);
}

void BlockCipher::DecryptBlock(const std::uint8_t* in, std::uint8_t* out) const {
  internal::RunBlocks(impl_->ecb_decrypt.get(), in, out, impl_->block_size);
}

Result<Bytes> Kcv(ByteView key, CipherKind kind) {
  // A 16-byte key is 2-key 3DES unless the caller says SM4; 8 and 24 bytes are always DES.
  auto cipher = kind == CipherKind::kSm4 ? BlockCipher::Sm4(key) : BlockCipher::Des(key);
  if (!cipher.ok()) return cipher.error();
  const Bytes zero_block(cipher->block_size(), 0);
  Bytes check = cipher->EncryptEcb(zero_block);
  check.resize(3);
  return check;
}

}  // namespace medcard::crypto
