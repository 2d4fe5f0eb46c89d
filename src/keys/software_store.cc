// The software key store: every key in one file, `keystore.mks`, encrypted at rest under a key
// derived from the passphrase. File format, KDF and update protocol: docs/keys.md.
//
//   header (clear, authenticated as GCM additional data; layout in WriteHeader)
//   AES-256-GCM ciphertext of the key records
//   GCM tag (16)
//
// While the store is open its keys are in memory (wiped on close). Several processes may have
// the same store open (the bank host's service and an operator's command): a write takes the
// directory's lock (flock, exclusive), first catches up with what others wrote, then appends, so
// no one loses another's key; a reader that misses a key catches up before it says "no key".
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "crypto/crypto.h"
#include "keys/key_policy.h"
#include "keys/key_store.h"

namespace medcard::keys {
namespace {

using internal::Family;
using internal::FamilyOfName;
using internal::IsoUtc;
using internal::Sha256;

constexpr internal::KeyPolicy kPolicy("key store");

constexpr char kStoreFileName[] = "keystore.mks";
constexpr char kTempFileName[] = "keystore.mks.tmp";
constexpr std::array<std::uint8_t, 8> kMagic = {'M', 'E', 'D', 'C', 'K', 'E', 'Y', 'S'};
constexpr std::uint16_t kFormatVersion = 1;
constexpr std::string_view kKdfName = "scrypt";
constexpr std::string_view kVerifierLabel = "medcard keystore verifier";
constexpr std::size_t kSaltSize = 16, kVerifierSize = 32, kNonceSize = 12, kDigestSize = 32;
constexpr std::size_t kKekSize = 32, kTagSize = 16;
constexpr std::uint8_t kFlagTestOnly = 0x01;
// magic ‖ version(2) ‖ kdf name length(1) ‖ "scrypt" ‖ N(8) ‖ r(4) ‖ p(4) ‖ salt(16) ‖ flags(1)
// ‖ verifier(32) ‖ nonce(12) ‖ SHA-256 of everything before it (32)
constexpr std::size_t kHeaderSize = kMagic.size() + 2 + 1 + kKdfName.size() + 8 + 4 + 4 +
                                    kSaltSize + 1 + kVerifierSize + kNonceSize + kDigestSize;
constexpr std::size_t kMaxFileSize = 16u << 20;
constexpr std::size_t kMinPassphraseLength = 8;

// scrypt cost. The production default costs ~0.1 s and 32 MiB per open; the test setting exists
// only so test suites that open hundreds of stores run in seconds (docs/keys.md).
struct KdfParams {
  std::uint64_t n = 0;
  std::uint32_t r = 0, p = 0;
};
constexpr KdfParams kProductionKdf{1u << 15, 8, 1};
constexpr KdfParams kTestKdf{1u << 10, 8, 1};
constexpr std::uint64_t kScryptMaxMemory = 512u << 20;

enum class Origin : std::uint8_t { kGenerated = 1, kComponents = 2, kTestSet = 3, kWrapped = 4 };

std::string OriginName(Origin origin) {
  switch (origin) {
    case Origin::kGenerated:
      return "generated";
    case Origin::kComponents:
      return "components";
    case Origin::kTestSet:
      return "test-set";
    case Origin::kWrapped:
      return "wrapped";
  }
  return "unknown";
}

struct StoredKey {
  std::string name;
  std::uint8_t version = 0;
  Origin origin = Origin::kGenerated;
  std::int64_t created = 0;  // Unix time, UTC
  Bytes value;               // 16 bytes (2-key 3DES)
  Bytes kcv;                 // 3 bytes
};

std::string KcvHex(const Bytes& kcv) { return ToHex(kcv); }

std::string SystemError(const std::string& what, const std::string& path, int error) {
  return "key store: " + what + " " + path + ": " + std::strerror(error);
}

// ---- OpenSSL primitives (none of their errors carries key material) ----------------------

Result<Bytes> Scrypt(std::string_view passphrase, ByteView salt, const KdfParams& kdf) {
  EVP_KDF* algorithm = EVP_KDF_fetch(nullptr, "SCRYPT", nullptr);
  if (algorithm == nullptr) return MakeError("key store: OpenSSL has no SCRYPT KDF");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(algorithm);
  EVP_KDF_free(algorithm);
  if (ctx == nullptr) return MakeError("key store: out of memory");
  std::uint64_t n = kdf.n, max_memory = kScryptMaxMemory;
  std::uint32_t r = kdf.r, p = kdf.p;
  // OSSL_PARAM wants non-const pointers; OpenSSL only reads these.
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                        const_cast<char*>(passphrase.data()), passphrase.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &max_memory),
      OSSL_PARAM_construct_end()};
  Bytes kek(kKekSize);
  const int ok = EVP_KDF_derive(ctx, kek.data(), kek.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (ok != 1) return MakeError("key store: scrypt key derivation failed");
  return kek;
}

Bytes Verifier(const Bytes& kek) {
  Bytes out(kVerifierSize);
  unsigned int length = 0;
  HMAC(EVP_sha256(), kek.data(), static_cast<int>(kek.size()),
       reinterpret_cast<const unsigned char*>(kVerifierLabel.data()), kVerifierLabel.size(),
       out.data(), &length);
  out.resize(length);
  return out;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// AES-256-GCM over `plain` with `aad`: ciphertext ‖ tag.
Result<Bytes> GcmSeal(const Bytes& kek, ByteView nonce, ByteView aad, ByteView plain) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  Bytes out(plain.size() + kTagSize);
  int length = 0, final_length = 0;
  if (!ctx ||
      EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), kek.data(), nonce.data(), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &length, aad.data(), static_cast<int>(aad.size())) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &length, plain.data(),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + length, &final_length) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                          out.data() + plain.size()) != 1) {
    SecureWipe(out);
    return MakeError("key store: AES-256-GCM encryption failed");
  }
  return out;
}

// The plaintext, or nullopt when the tag does not verify.
std::optional<Bytes> GcmOpen(const Bytes& kek, ByteView nonce, ByteView aad, ByteView sealed) {
  if (sealed.size() < kTagSize) return std::nullopt;
  const std::size_t body_size = sealed.size() - kTagSize;
  Bytes tag(sealed.end() - static_cast<std::ptrdiff_t>(kTagSize), sealed.end());
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  Bytes plain(body_size + 1);  // never zero-sized: OpenSSL wants a valid pointer
  int length = 0, final_length = 0;
  const bool ok =
      ctx &&
      EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), kek.data(), nonce.data(), nullptr) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &length, aad.data(), static_cast<int>(aad.size())) ==
          1 &&
      EVP_DecryptUpdate(ctx.get(), plain.data(), &length, sealed.data(),
                        static_cast<int>(body_size)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize),
                          tag.data()) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), plain.data() + length, &final_length) == 1;
  if (!ok) {
    SecureWipe(plain);
    return std::nullopt;
  }
  plain.resize(body_size);
  return plain;
}

// ---- Header and records --------------------------------------------------------------------

struct Header {
  KdfParams kdf;
  Bytes salt;  // 16
  bool test_only = false;
  Bytes verifier;  // 32
  Bytes nonce;     // 12
};

Bytes WriteHeader(const Header& h) {
  Bytes out;
  out.reserve(kHeaderSize);
  Append(out, kMagic);
  AppendU16(out, kFormatVersion);
  out.push_back(static_cast<std::uint8_t>(kKdfName.size()));
  out.insert(out.end(), kKdfName.begin(), kKdfName.end());
  AppendU64(out, h.kdf.n);
  AppendU32(out, h.kdf.r);
  AppendU32(out, h.kdf.p);
  Append(out, h.salt);
  out.push_back(h.test_only ? kFlagTestOnly : 0);
  Append(out, h.verifier);
  Append(out, h.nonce);
  Append(out, Sha256(out));
  return out;
}

bool IsAcceptedKdf(const KdfParams& kdf) {
  const bool n_power_of_two = kdf.n != 0 && (kdf.n & (kdf.n - 1)) == 0;
  return n_power_of_two && kdf.n >= kTestKdf.n && kdf.n <= (1u << 20) && kdf.r >= 1 &&
         kdf.r <= 32 && kdf.p >= 1 && kdf.p <= 16 && 128 * kdf.n * kdf.r <= kScryptMaxMemory;
}

Error Corrupt(const std::string& path) {
  return MakeError("key store file " + path + " is corrupt or has been tampered with");
}

Result<Header> ReadHeader(ByteView file, const std::string& path) {
  if (file.size() < kMagic.size() || !std::equal(kMagic.begin(), kMagic.end(), file.begin())) {
    return MakeError("key store: " + path + " is not a medcard key store file");
  }
  if (file.size() < kHeaderSize + kTagSize) return Corrupt(path);
  const std::uint16_t version = ReadU16(file, kMagic.size());
  if (version != kFormatVersion) {
    return MakeError("key store: " + path + " has format version " + std::to_string(version) +
                     "; this medcard reads version " + std::to_string(kFormatVersion));
  }
  ByteView header = file.first(kHeaderSize);
  if (!ConstantTimeEqual(Sha256(header.first(kHeaderSize - kDigestSize)),
                         header.last(kDigestSize))) {
    return Corrupt(path);
  }
  std::size_t at = kMagic.size() + 2;
  const std::size_t name_length = header[at++];
  if (name_length != kKdfName.size() ||
      !std::equal(kKdfName.begin(), kKdfName.end(), header.begin() + static_cast<long>(at))) {
    return MakeError("key store: " + path + " uses an unknown key derivation function");
  }
  at += name_length;
  Header h;
  h.kdf.n = ReadU64(header, at);
  h.kdf.r = ReadU32(header, at + 8);
  h.kdf.p = ReadU32(header, at + 12);
  at += 16;
  if (!IsAcceptedKdf(h.kdf)) return Corrupt(path);
  h.salt.assign(header.begin() + static_cast<long>(at),
                header.begin() + static_cast<long>(at + kSaltSize));
  at += kSaltSize;
  const std::uint8_t flags = header[at++];
  if ((flags & ~kFlagTestOnly) != 0) return Corrupt(path);
  h.test_only = (flags & kFlagTestOnly) != 0;
  h.verifier.assign(header.begin() + static_cast<long>(at),
                    header.begin() + static_cast<long>(at + kVerifierSize));
  at += kVerifierSize;
  h.nonce.assign(header.begin() + static_cast<long>(at),
                 header.begin() + static_cast<long>(at + kNonceSize));
  return h;
}

// count(4) ‖ per key: name length(1) ‖ name ‖ version(1) ‖ origin(1) ‖ created(8, Unix time)
// ‖ value length(1) ‖ value ‖ KCV(3)
Bytes WriteRecords(const std::vector<StoredKey>& keys) {
  std::size_t size = 4;
  for (const auto& k : keys) size += 1 + k.name.size() + 1 + 1 + 8 + 1 + k.value.size() + 3;
  Bytes out;
  out.reserve(size);  // one allocation: no stray copies of key bytes in freed memory
  AppendU32(out, static_cast<std::uint32_t>(keys.size()));
  for (const auto& k : keys) {
    out.push_back(static_cast<std::uint8_t>(k.name.size()));
    out.insert(out.end(), k.name.begin(), k.name.end());
    out.push_back(k.version);
    out.push_back(static_cast<std::uint8_t>(k.origin));
    AppendU64(out, static_cast<std::uint64_t>(k.created));
    out.push_back(static_cast<std::uint8_t>(k.value.size()));
    Append(out, k.value);
    Append(out, k.kcv);
  }
  return out;
}

std::optional<std::vector<StoredKey>> ReadRecords(ByteView in) {
  if (in.size() < 4) return std::nullopt;
  const std::uint32_t count = ReadU32(in, 0);
  std::size_t at = 4;
  std::vector<StoredKey> keys;
  auto fail = [&keys] {
    for (auto& k : keys) SecureWipe(k.value);
    return std::nullopt;
  };
  for (std::uint32_t i = 0; i < count; ++i) {
    if (at + 1 > in.size()) return fail();
    StoredKey k;
    const std::size_t name_length = in[at++];
    if (at + name_length + 11 > in.size()) return fail();
    k.name.assign(in.begin() + static_cast<long>(at),
                  in.begin() + static_cast<long>(at + name_length));
    at += name_length;
    k.version = in[at++];
    const std::uint8_t origin = in[at++];
    k.created = static_cast<std::int64_t>(ReadU64(in, at));
    at += 8;
    const std::size_t value_length = in[at++];
    if (!IsValidKeyName(k.name) || k.version == 0 || origin < 1 || origin > 4 ||
        value_length != 16 || at + value_length + 3 > in.size()) {
      return fail();
    }
    k.origin = static_cast<Origin>(origin);
    k.value.reserve(value_length);
    k.value.assign(in.begin() + static_cast<long>(at),
                   in.begin() + static_cast<long>(at + value_length));
    at += value_length;
    k.kcv.assign(in.begin() + static_cast<long>(at), in.begin() + static_cast<long>(at + 3));
    at += 3;
    auto kcv = crypto::Kcv(k.value);
    keys.push_back(std::move(k));
    if (!kcv.ok() || *kcv != keys.back().kcv) return fail();
  }
  if (at != in.size()) return fail();
  return keys;
}

// ---- Files ---------------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Close(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

Result<Fd> OpenDirectory(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return MakeError(SystemError("cannot open directory", dir, errno));
  return fd;
}

// flock on the store directory, held until destroyed: exclusive around a write (catch up, append,
// replace), shared around a catch-up read. Writes are short, so waiting is bounded.
class DirectoryLock {
 public:
  static Result<DirectoryLock> Take(int dir_fd, const std::string& dir, int operation) {
    while (::flock(dir_fd, operation) != 0) {
      if (errno != EINTR) return MakeError(SystemError("cannot lock", dir, errno));
    }
    return DirectoryLock(dir_fd);
  }
  DirectoryLock(DirectoryLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DirectoryLock& operator=(DirectoryLock&&) = delete;
  ~DirectoryLock() {
    if (fd_ >= 0) ::flock(fd_, LOCK_UN);
  }

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_;
};

// Which file the store was read from: every write renames a new file into place, so a different
// inode or modification time means another process has written since.
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  std::int64_t mtime_ns = 0;
  off_t size = 0;
  bool operator==(const FileIdentity&) const = default;
};

FileIdentity IdentityOf(const struct stat& st) {
  return FileIdentity{
      st.st_dev, st.st_ino,
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
      st.st_size};
}

Result<FileIdentity> IdentityOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return MakeError(SystemError("cannot stat", path, errno));
  return IdentityOf(st);
}

Status WriteAll(int fd, ByteView data, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError(SystemError("cannot write", path, errno));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

Status SyncFd(int fd, const std::string& path) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return MakeError(SystemError("cannot fsync", path, errno));
  }
  return Status::Ok();
}

// The new content goes to keystore.mks.tmp (0600), is synced, then renamed over keystore.mks
// and the directory synced: a crash at any point leaves either the old or the new store.
Status ReplaceAtomically(const std::string& dir, int dir_fd, ByteView content) {
  const std::string temp = dir + "/" + kTempFileName, target = dir + "/" + kStoreFileName;
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return MakeError(SystemError("cannot create", temp, errno));
  Status written = ::fchmod(fd.get(), 0600) == 0
                       ? WriteAll(fd.get(), content, temp)
                       : Status(MakeError(SystemError("cannot chmod", temp, errno)));
  if (written.ok()) written = SyncFd(fd.get(), temp);
  fd.Close();
  if (written.ok() && ::rename(temp.c_str(), target.c_str()) != 0) {
    written = MakeError(SystemError("cannot rename to", target, errno));
  }
  if (!written.ok()) {
    ::unlink(temp.c_str());
    return written;
  }
  return SyncFd(dir_fd, dir);
}

Result<Bytes> ReadStoreFile(const std::string& path, FileIdentity* identity = nullptr) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return MakeError("key store: no key store at " + path);
    return MakeError(SystemError("cannot open", path, errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return MakeError(SystemError("cannot stat", path, errno));
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > kMaxFileSize) {
    return MakeError("key store: " + path + " is not a medcard key store file");
  }
  if (identity != nullptr) *identity = IdentityOf(st);
  Bytes content(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::read(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return MakeError(SystemError("cannot read", path, errno));
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  content.resize(done);
  return content;
}

Result<KdfParams> KdfForNewStore() {
  const char* setting = std::getenv("MEDCARD_KEYSTORE_TEST_KDF");
  if (setting == nullptr || *setting == '\0') return kProductionKdf;
  if (std::string_view(setting) == "fast") return kTestKdf;
  return MakeError("key store: MEDCARD_KEYSTORE_TEST_KDF must be \"fast\" or unset");
}

// Sets the DES parity bit (the low bit of each byte) so every byte has odd parity; DES ignores
// these bits, but HSMs and key-loading devices check them.
void AdjustDesParity(Bytes& key) {
  for (auto& b : key) {
    const std::uint8_t high = static_cast<std::uint8_t>(b & 0xFE);
    const bool even = std::popcount(static_cast<unsigned>(high)) % 2 == 0;
    b = static_cast<std::uint8_t>(high | (even ? 1 : 0));
  }
}

// ---- The store ------------------------------------------------------------------------------

class SoftwareKeyStore final : public KeyStore {
 public:
  SoftwareKeyStore(std::string dir, Fd dir_fd, Header header, Bytes kek,
                   std::vector<StoredKey> keys, FileIdentity identity)
      : dir_(std::move(dir)),
        dir_fd_(std::move(dir_fd)),
        header_(std::move(header)),
        kek_(std::move(kek)),
        keys_(std::move(keys)),
        identity_(identity) {
    next_id_ = internal::FirstRefId();
  }
  SoftwareKeyStore(const SoftwareKeyStore&) = delete;
  SoftwareKeyStore& operator=(const SoftwareKeyStore&) = delete;

  ~SoftwareKeyStore() override {
    for (auto& k : keys_) SecureWipe(k.value);
    for (auto& [id, handle] : handles_) SecureWipe(handle.value);
    SecureWipe(kek_);
  }

  bool test_only() const override { return header_.test_only; }
  std::string Describe() const override { return "software:" + dir_; }

  // Writes keys_ as the new store file. The caller holds the directory's exclusive lock.
  Status Persist() {
    header_.nonce = crypto::RandomBytes(kNonceSize);
    const Bytes header = WriteHeader(header_);
    Bytes records = WriteRecords(keys_);
    auto sealed = GcmSeal(kek_, header_.nonce, header, records);
    SecureWipe(records);
    if (!sealed.ok()) return sealed.error();
    if (Status ok = ReplaceAtomically(dir_, dir_fd_.get(), Concat({header, *sealed})); !ok.ok()) {
      return ok;
    }
    auto identity = IdentityOf(StorePath());
    if (!identity.ok()) return identity.error();
    identity_ = *identity;
    return Status::Ok();
  }

  Result<std::vector<KeyInfo>> List() override {
    if (Status ok = CatchUpIfChanged(); !ok.ok()) return ok.error();
    std::vector<KeyInfo> out;
    for (const auto& k : keys_) out.push_back(Info(k));
    internal::SortByNameAndVersion(out);
    return out;
  }

  Result<KeyInfo> Generate(std::string_view name) override {
    Bytes value = crypto::RandomBytes(16);
    AdjustDesParity(value);
    while (internal::HalvesEqual(value)) {  // 2^-56: a single-DES key in 3DES clothing
      SecureWipe(value);
      value = crypto::RandomBytes(16);
      AdjustDesParity(value);
    }
    return Add(name, std::move(value), Origin::kGenerated);
  }

  Result<KeyInfo> ImportComponents(std::string_view name,
                                   std::span<const Bytes> components) override {
    auto key = kPolicy.CombineComponents(components);
    if (!key.ok()) return key.error();
    return Add(name, std::move(key).value(), Origin::kComponents);
  }

  Result<KeyInfo> ImportTestKey(std::string_view name, ByteView key) override {
    if (Status ok = kPolicy.CheckTestKeyImport(header_.test_only, Describe(), key); !ok.ok()) {
      return ok.error();
    }
    return Add(name, Bytes(key.begin(), key.end()), Origin::kTestSet);
  }

  Result<KeyInfo> ImportWrapped(std::string_view name, KeyRef wrapping, ByteView cryptogram,
                                ByteView expected_kcv,
                                std::optional<std::uint8_t> version) override {
    auto w = Get(wrapping);
    if (!w.ok()) return w.error();
    if (Status ok = kPolicy.CheckImportWrapped((*w)->family, name, cryptogram, expected_kcv);
        !ok.ok()) {
      return ok.error();
    }
    auto value = crypto::DecryptKeyFromTransport(Value(**w), cryptogram);
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
    return Add(name, std::move(value).value(), Origin::kWrapped, version);
  }

  Result<KeyRef> Find(std::string_view name, std::optional<std::uint8_t> version) override {
    if (Status ok = kPolicy.CheckName(name); !ok.ok()) return ok.error();
    // "The latest" is the latest in the file, which another process may have rotated.
    if (!version) {
      if (Status ok = CatchUpIfChanged(); !ok.ok()) return ok.error();
    }
    auto found = FindLoaded(name, version);
    if (!found.ok() && version) {
      if (Status ok = CatchUpIfChanged(); !ok.ok()) return ok.error();
      found = FindLoaded(name, version);
    }
    if (!found.ok()) return found.error();
    Handle h;
    h.stored = *found;
    h.family = FamilyOfName(name);
    return NewRef(std::move(h));
  }

  Result<std::size_t> FindLoaded(std::string_view name, std::optional<std::uint8_t> version) const {
    std::optional<std::size_t> found;
    std::uint8_t latest = 0;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i].name != name) continue;
      latest = std::max(latest, keys_[i].version);
      if (version ? keys_[i].version == *version
                  : (!found || keys_[i].version > keys_[*found].version)) {
        found = i;
      }
    }
    if (latest == 0) {
      return MakeError("key store: no key \"" + std::string(name) + "\" in " + Describe());
    }
    if (!found) return kPolicy.NoSuchVersion(name, *version, latest);
    return *found;
  }

  Result<KeyRef> Diversify(KeyRef master, ByteView factor) override {
    auto h = Get(master);
    if (!h.ok()) return h.error();
    if (Status ok = kPolicy.CheckFactor(factor); !ok.ok()) return ok.error();
    const Bytes& mk = Value(**h);
    if (mk.size() != 16) return kPolicy.KeyLengthError("diversification", 16, mk.size());
    return Derived(crypto::Diversify(mk, factor), (*h)->family);
  }

  Result<KeyRef> DeriveSessionKey(KeyRef key, ByteView data) override {
    auto h = Get(key);
    if (!h.ok()) return h.error();
    if (Status ok = kPolicy.CheckDerivation((*h)->family, "derive a session key"); !ok.ok()) {
      return ok.error();
    }
    if (Status ok = kPolicy.CheckSessionKeyData(data); !ok.ok()) return ok.error();
    const Bytes& k = Value(**h);
    if (k.size() != 16) return kPolicy.KeyLengthError("a session key derivation", 16, k.size());
    auto cipher = crypto::BlockCipher::Des(k);
    if (!cipher.ok()) return cipher.error();
    return Derived(cipher->EncryptEcb(data), (*h)->family);
  }

  Result<KeyRef> DeriveTacKey(KeyRef dtk) override {
    auto h = Get(dtk);
    if (!h.ok()) return h.error();
    if (Status ok = kPolicy.CheckDerivation((*h)->family, "derive a TAC key"); !ok.ok()) {
      return ok.error();
    }
    const Bytes& k = Value(**h);
    if (k.size() != 16) return kPolicy.KeyLengthError("a TAC key derivation", 16, k.size());
    return Derived(crypto::TacKey(k), (*h)->family);
  }

  Result<KeyRef> Unwrap(KeyRef wrapping, ByteView cryptogram) override {
    auto h = Get(wrapping);
    if (!h.ok()) return h.error();
    if (Status ok = kPolicy.CheckUnwrap((*h)->family); !ok.ok()) return ok.error();
    return Derived(crypto::DecryptKeyFromTransport(Value(**h), cryptogram), Family::kReceived);
  }

  void Release(KeyRef key) override {
    auto it = handles_.find(key.id);
    if (it == handles_.end()) return;
    SecureWipe(it->second.value);
    handles_.erase(it);
  }

  Result<Bytes> Mac(KeyRef key, ByteView data, ByteView iv) override {
    auto h = Get(key);
    if (!h.ok()) return h.error();
    if (Status ok = kPolicy.CheckMac((*h)->family); !ok.ok()) return ok.error();
    if (!iv.empty() && iv.size() != 8) return crypto::PbocMac(Value(**h), data, iv);  // its error
    if (!(*h)->mac_key) {
      auto prepared = crypto::MacKey::Create(Value(**h));
      if (!prepared.ok()) return prepared.error();
      (*h)->mac_key = std::make_unique<crypto::MacKey>(std::move(prepared).value());
    }
    const auto mac = (*h)->mac_key->Mac4(data, iv);
    return Bytes(mac.begin(), mac.end());
  }

  Result<Bytes> Encrypt(KeyRef key, ByteView data, CipherMode mode, ByteView iv) override {
    return Cipher(key, data, mode, iv, true);
  }

  Result<Bytes> Decrypt(KeyRef key, ByteView data, CipherMode mode, ByteView iv) override {
    return Cipher(key, data, mode, iv, false);
  }

  Result<Bytes> Wrap(KeyRef wrapping, KeyRef key) override {
    auto w = Get(wrapping);
    if (!w.ok()) return w.error();
    auto k = Get(key);
    if (!k.ok()) return k.error();
    if (Status ok = kPolicy.CheckWrap((*w)->family, (*k)->family); !ok.ok()) return ok.error();
    return crypto::EncryptKeyForTransport(Value(**w), Value(**k));
  }

  Result<Bytes> Kcv(KeyRef key) override {
    auto h = Get(key);
    if (!h.ok()) return h.error();
    return crypto::Kcv(Value(**h));
  }

  // Everything in clear (the PIN block, the PIN, the card's plaintext) stays in this function
  // and is wiped before it returns.
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
    auto pek_cipher = crypto::BlockCipher::Des(Value(**pek));
    if (!pek_cipher.ok()) return pek_cipher.error();
    auto dpuk_cipher = crypto::BlockCipher::Des(Value(**card_key));
    if (!dpuk_cipher.ok()) return dpuk_cipher.error();
    Bytes clear_block = pek_cipher->DecryptEcb(encrypted_pin_block);
    auto plain = kPolicy.CardPinPlaintext(clear_block, pan);
    SecureWipe(clear_block);
    if (!plain.ok()) return plain.error();
    Bytes enc = dpuk_cipher->EncryptEcb(*plain);
    SecureWipe(*plain);
    Bytes iv(challenge.begin(), challenge.end());
    iv.resize(8, 0x00);
    Bytes mac_input = {0x84, 0x24, 0x00, 0x00, 0x0C};
    Append(mac_input, enc);
    auto mac = Mac(dpuk, mac_input, iv);
    if (!mac.ok()) return mac.error();
    Append(enc, *mac);
    return enc;
  }

  Result<std::string> PinOffset(KeyRef pvk, std::string_view pan, std::string_view pin) override {
    auto h = Get(pvk);
    if (!h.ok()) return h.error();
    if (Status ok = kPolicy.CheckPinOffset((*h)->family, pan, pin); !ok.ok()) return ok.error();
    auto enciphered = PvkEncipher(**h, pan);
    if (!enciphered.ok()) return enciphered.error();
    std::string offset = internal::KeyPolicy::PinOffsetOf(*enciphered, pin);
    SecureWipe(*enciphered);
    return offset;
  }

  // The clear PIN block and the natural PIN stay in this function and are wiped.
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
    auto pin_cipher = crypto::BlockCipher::Des(Value(**pk));
    if (!pin_cipher.ok()) return pin_cipher.error();
    auto enciphered = PvkEncipher(**vk, pan);
    if (!enciphered.ok()) return enciphered.error();
    Bytes clear_block = pin_cipher->DecryptEcb(encrypted_pin_block);
    const bool match = internal::KeyPolicy::PinBlockMatches(clear_block, pan, *enciphered, offset);
    SecureWipe(clear_block);
    SecureWipe(*enciphered);
    return match;
  }

  // The clear PIN block and the PIN stay in this function and KeyPolicy::PinOffsetOfBlock, and
  // are wiped.
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
    auto pin_cipher = crypto::BlockCipher::Des(Value(**pk));
    if (!pin_cipher.ok()) return pin_cipher.error();
    auto enciphered = PvkEncipher(**vk, pan);
    if (!enciphered.ok()) return enciphered.error();
    Bytes clear_block = pin_cipher->DecryptEcb(encrypted_pin_block);
    auto offset = kPolicy.PinOffsetOfBlock(clear_block, block_pan, *enciphered);
    SecureWipe(clear_block);
    SecureWipe(*enciphered);
    return offset;
  }

 private:
  struct Handle;
  // 3DES-ECB(pvk, the PAN's validation data): the natural PIN's source.
  Result<Bytes> PvkEncipher(const Handle& pvk, std::string_view pan) const {
    auto cipher = crypto::BlockCipher::Des(Value(pvk));
    if (!cipher.ok()) return cipher.error();
    return cipher->EncryptEcb(internal::KeyPolicy::PinValidationData(pan));
  }

  struct Handle {
    std::optional<std::size_t> stored;  // index into keys_ (never removed), or transient:
    Bytes value;
    Family family = Family::kIssuer;
    // Prepared on the first Mac: a terminal's working MAC key or a card's TAC key MACs many
    // messages, and a fresh key schedule per MAC was most of its cost. Freed with the handle.
    mutable std::unique_ptr<crypto::MacKey> mac_key;
  };

  static KeyInfo Info(const StoredKey& k) {
    return {k.name, k.version, KcvHex(k.kcv), OriginName(k.origin), IsoUtc(k.created)};
  }

  Result<KeyInfo> Add(std::string_view name, Bytes value, Origin origin,
                      std::optional<std::uint8_t> requested_version = std::nullopt) {
    if (Status ok = kPolicy.CheckName(name); !ok.ok()) {
      SecureWipe(value);
      return ok.error();
    }
    auto lock = DirectoryLock::Take(dir_fd_.get(), dir_, LOCK_EX);
    Status caught_up = lock.ok() ? CatchUp() : Status(lock.error());
    if (!caught_up.ok()) {
      SecureWipe(value);
      return caught_up.error();
    }
    std::uint8_t latest = 0;
    for (const auto& k : keys_) {
      if (k.name == name) latest = std::max(latest, k.version);
    }
    auto version = kPolicy.VersionOfNewKey(name, latest, requested_version);
    if (!version.ok()) {
      SecureWipe(value);
      return version.error();
    }
    auto kcv = crypto::Kcv(value);
    if (!kcv.ok()) {
      SecureWipe(value);
      return kcv.error();
    }
    StoredKey k;
    k.name = std::string(name);
    k.version = *version;
    k.origin = origin;
    k.created = static_cast<std::int64_t>(std::time(nullptr));
    k.value = std::move(value);
    k.kcv = std::move(kcv).value();
    // Handles hold indexes into keys_: reallocation moves the values (no copies to wipe).
    keys_.push_back(std::move(k));
    Status saved = Persist();
    if (!saved.ok()) {
      SecureWipe(keys_.back().value);
      keys_.pop_back();
      return saved.error();
    }
    return Info(keys_.back());
  }

  KeyRef NewRef(Handle h) {
    const std::uint64_t id = next_id_++;
    handles_.emplace(id, std::move(h));
    return KeyRef{id};
  }

  Result<KeyRef> Derived(Result<Bytes> value, Family family) {
    if (!value.ok()) return value.error();
    Handle h;
    h.value = std::move(value).value();
    h.family = family;
    return NewRef(std::move(h));
  }

  Result<const Handle*> Get(KeyRef ref) const {
    auto it = handles_.find(ref.id);
    if (it == handles_.end()) return kPolicy.UnknownRef();
    return &it->second;
  }

  const Bytes& Value(const Handle& h) const { return h.stored ? keys_[*h.stored].value : h.value; }

  Result<Bytes> Cipher(KeyRef key, ByteView data, CipherMode mode, ByteView iv, bool encrypt) {
    auto h = Get(key);
    if (!h.ok()) return h.error();
    if (Status ok = encrypt ? kPolicy.CheckEncrypt((*h)->family) : Status::Ok(); !ok.ok()) {
      return ok.error();
    }
    if (!encrypt) {
      if (Status ok = kPolicy.CheckDecrypt((*h)->family); !ok.ok()) return ok.error();
    }
    if (Status ok = kPolicy.CheckCipherInput(data, mode, iv, encrypt); !ok.ok()) {
      return ok.error();
    }
    auto cipher = crypto::BlockCipher::Des(Value(**h));
    if (!cipher.ok()) return cipher.error();
    if (mode == CipherMode::kEcb) {
      return encrypt ? cipher->EncryptEcb(data) : cipher->DecryptEcb(data);
    }
    const Bytes zero_iv(8, 0);
    ByteView chain = iv.empty() ? ByteView(zero_iv) : iv;
    return encrypt ? cipher->EncryptCbc(data, chain) : cipher->DecryptCbc(data, chain);
  }

  std::string StorePath() const { return dir_ + "/" + kStoreFileName; }

  // Another process wrote since this one last read or wrote the file: catch up (shared lock).
  Status CatchUpIfChanged() {
    auto now = IdentityOf(StorePath());
    if (!now.ok()) return now.error();
    if (*now == identity_) return Status::Ok();
    auto lock = DirectoryLock::Take(dir_fd_.get(), dir_, LOCK_SH);
    if (!lock.ok()) return lock.error();
    return CatchUp();
  }

  // Reads what other processes appended since (the caller holds the directory's lock). Keys are
  // only ever appended, so what this process holds must be the start of the file's list, and
  // the indexes that handles hold stay valid.
  Status CatchUp() {
    const std::string path = StorePath();
    FileIdentity identity;
    auto file = ReadStoreFile(path, &identity);
    if (!file.ok()) return file.error();
    if (identity == identity_) return Status::Ok();
    auto header = ReadHeader(*file, path);
    if (!header.ok()) return header.error();
    const Error replaced = MakeError("key store " + dir_ +
                                     " was replaced by another store since it was opened: "
                                     "open it again");
    if (header->salt != header_.salt || header->verifier != header_.verifier) return replaced;
    ByteView content(*file);
    auto plain =
        GcmOpen(kek_, header->nonce, content.first(kHeaderSize), content.subspan(kHeaderSize));
    if (!plain) return Corrupt(path);
    auto records = ReadRecords(*plain);
    SecureWipe(*plain);
    if (!records) return Corrupt(path);
    bool extends = records->size() >= keys_.size();
    for (std::size_t i = 0; extends && i < keys_.size(); ++i) {
      const StoredKey& ours = keys_[i];
      const StoredKey& theirs = (*records)[i];
      extends =
          ours.name == theirs.name && ours.version == theirs.version && ours.kcv == theirs.kcv;
    }
    for (std::size_t i = 0; i < records->size(); ++i) {
      if (!extends || i < keys_.size()) {
        SecureWipe((*records)[i].value);
      } else {
        keys_.push_back(std::move((*records)[i]));
      }
    }
    if (!extends) return replaced;
    header_ = std::move(header).value();
    identity_ = identity;
    return Status::Ok();
  }

  std::string dir_;
  Fd dir_fd_;
  Header header_;
  Bytes kek_;
  std::vector<StoredKey> keys_;
  FileIdentity identity_;
  std::unordered_map<std::uint64_t, Handle> handles_;
  std::uint64_t next_id_ = 1;
};

std::string AbsoluteDir(const std::string& dir) {
  std::error_code ec;
  auto absolute = std::filesystem::absolute(dir, ec);
  return ec ? dir : absolute.lexically_normal().string();
}

}  // namespace

Result<std::unique_ptr<KeyStore>> CreateSoftwareKeyStore(const std::string& dir_argument,
                                                         std::string_view passphrase,
                                                         bool test_only) {
  if (passphrase.size() < kMinPassphraseLength) {
    return MakeError("key store: a passphrase has at least " +
                     std::to_string(kMinPassphraseLength) + " characters");
  }
  auto kdf = KdfForNewStore();
  if (!kdf.ok()) return kdf.error();
  std::string dir = AbsoluteDir(dir_argument);
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    const auto parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return MakeError(SystemError("cannot create directory", dir, errno));
    }
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    return MakeError("key store: " + dir + " is not a directory");
  }
  if (::chmod(dir.c_str(), 0700) != 0) {
    return MakeError(SystemError("cannot restrict the mode of", dir, errno));
  }
  auto dir_fd = OpenDirectory(dir);
  if (!dir_fd.ok()) return dir_fd.error();
  auto lock = DirectoryLock::Take(dir_fd->get(), dir, LOCK_EX);
  if (!lock.ok()) return lock.error();
  const std::string path = dir + "/" + kStoreFileName;
  if (std::filesystem::exists(path, ec)) {
    return MakeError("key store: a key store already exists in " + dir);
  }
  Header header;
  header.kdf = *kdf;
  header.salt = crypto::RandomBytes(kSaltSize);
  header.test_only = test_only;
  auto kek = Scrypt(passphrase, header.salt, header.kdf);
  if (!kek.ok()) return kek.error();
  header.verifier = Verifier(*kek);
  auto store = std::make_unique<SoftwareKeyStore>(dir, std::move(dir_fd).value(), std::move(header),
                                                  std::move(kek).value(), std::vector<StoredKey>{},
                                                  FileIdentity{});
  Status saved = store->Persist();
  if (!saved.ok()) return saved.error();
  return std::unique_ptr<KeyStore>(std::move(store));
}

Result<std::unique_ptr<KeyStore>> OpenSoftwareKeyStore(const std::string& dir_argument,
                                                       std::string_view passphrase) {
  std::string dir = AbsoluteDir(dir_argument);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return MakeError("key store: no key store directory " + dir);
  }
  auto dir_fd = OpenDirectory(dir);
  if (!dir_fd.ok()) return dir_fd.error();
  const std::string path = dir + "/" + kStoreFileName;
  FileIdentity identity;
  auto file = ReadStoreFile(path, &identity);
  if (!file.ok()) return file.error();
  auto header = ReadHeader(*file, path);
  if (!header.ok()) return header.error();
  auto kek = Scrypt(passphrase, header->salt, header->kdf);
  if (!kek.ok()) return kek.error();
  if (!ConstantTimeEqual(Verifier(*kek), header->verifier)) {
    SecureWipe(*kek);
    return MakeError("key store: wrong passphrase for " + dir);
  }
  ByteView content(*file);
  auto plain =
      GcmOpen(*kek, header->nonce, content.first(kHeaderSize), content.subspan(kHeaderSize));
  if (!plain) {
    SecureWipe(*kek);
    return Corrupt(path);
  }
  auto keys = ReadRecords(*plain);
  SecureWipe(*plain);
  if (!keys) {
    SecureWipe(*kek);
    return Corrupt(path);
  }
  // A temporary file left by a write that never reached its rename is not the store; remove it
  // unless a write is under way in another process right now.
  if (::flock(dir_fd->get(), LOCK_EX | LOCK_NB) == 0) {
    ::unlink((dir + "/" + kTempFileName).c_str());
    ::flock(dir_fd->get(), LOCK_UN);
  }
  return std::unique_ptr<KeyStore>(std::make_unique<SoftwareKeyStore>(
      dir, std::move(dir_fd).value(), std::move(header).value(), std::move(kek).value(),
      std::move(keys).value(), identity));
}

}  // namespace medcard::keys
