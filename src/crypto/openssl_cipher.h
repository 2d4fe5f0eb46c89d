// Private to src/crypto: the OpenSSL 3 EVP plumbing every algorithm of the component shares.
// Ciphers are fetched from the default provider once per process; contexts are keyed once and
// then reused (only the IV is reset), so the hot path does no allocation and no key schedule.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::crypto::internal {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

// DES always runs as DES-EDE3 (single DES = K||K||K, 2-key 3DES = K1||K2||K1): only the default
// provider is needed.
enum class Mode { kTdesEcb, kTdesCbc, kSm4Ecb, kSm4Cbc };

// A context for one mode, key and direction, padding off. key: 24 bytes (DES-EDE3) or 16 (SM4).
// The IV of a CBC context starts at zero; change it with ResetIv.
Result<CipherCtx> MakeContext(Mode mode, ByteView key, bool encrypt);

// Runs whole blocks through a prepared context (CBC contexts carry the chaining value from one
// call to the next). REQUIRES: n is a multiple of the block size. in and out may be equal.
void RunBlocks(EVP_CIPHER_CTX* ctx, const std::uint8_t* in, std::uint8_t* out, std::size_t n);

// Restarts a CBC context at `iv` without touching its key schedule.
void ResetIv(EVP_CIPHER_CTX* ctx, const std::uint8_t* iv);

// The 24-byte DES-EDE3 key for an 8-, 16- or 24-byte DES key. REQUIRES: one of those lengths.
// The caller wipes the result (OPENSSL_cleanse) when done.
std::array<std::uint8_t, 24> ExpandDesKey(ByteView key);

// A broken precondition or an OpenSSL failure on an already prepared context: stops the program
// (a wrong MAC or key must never be returned). `what` must not contain secrets.
[[noreturn]] void Fail(const char* what);

}  // namespace medcard::crypto::internal
