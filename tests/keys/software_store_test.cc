// The software key store: the shared suite, plus what only a file-backed store has — the
// passphrase, the file format on disk (docs/keys.md), tampering, atomic updates, file modes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "crypto/crypto.h"
#include "key_store_suite.h"
#include "keys/key_store.h"

namespace medcard::keys {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassphrase[] = "correct horse battery staple";
// docs/keys.md, "The store file": header offsets.
constexpr std::size_t kKdfNOffset = 17, kFlagsOffset = 49, kNonceOffset = 82, kHeaderSize = 126;

// Temporary directories made by this test binary, removed after each test.
std::vector<fs::path>& TempDirs() {
  static std::vector<fs::path> dirs;
  return dirs;
}

fs::path NewTempDir() {
  std::string pattern = (fs::path(::testing::TempDir()) / "medcard-keys-XXXXXX").string();
  const char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr);
  TempDirs().push_back(pattern);
  return pattern;
}

void RemoveTempDirs() {
  for (const auto& dir : TempDirs()) fs::remove_all(dir);
  TempDirs().clear();
}

// Every store here uses the cheap test KDF unless a test says otherwise (docs/keys.md).
void UseFastKdf() { ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1); }

std::string DirOf(const KeyStore& store) {
  const std::string description = store.Describe();
  EXPECT_TRUE(description.starts_with("software:")) << description;
  return description.substr(std::string("software:").size());
}

testing::KeyStoreBackend SoftwareBackend() {
  testing::KeyStoreBackend backend;
  backend.name = "Software";
  backend.create = [](bool test_only) {
    UseFastKdf();
    return CreateSoftwareKeyStore((NewTempDir() / "store").string(), kPassphrase, test_only);
  };
  backend.reopen = [](std::unique_ptr<KeyStore> store) {
    const std::string dir = DirOf(*store);
    store.reset();
    return OpenSoftwareKeyStore(dir, kPassphrase);
  };
  backend.cleanup = RemoveTempDirs;
  return backend;
}

using testing::KeyStoreSuite;
INSTANTIATE_TEST_SUITE_P(Software, KeyStoreSuite, ::testing::Values(SoftwareBackend()),
                         testing::KeyStoreBackendName);

Bytes ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const fs::path& path, ByteView content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(content.data()),
            static_cast<std::streamsize>(content.size()));
}

bool Contains(ByteView haystack, ByteView needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

unsigned Mode(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class SoftwareStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    UseFastKdf();
    dir_ = NewTempDir() / "store";
    file_ = dir_ / "keystore.mks";
  }
  void TearDown() override {
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
    RemoveTempDirs();
  }

  std::unique_ptr<KeyStore> Create(bool test_only = false) {
    auto store = CreateSoftwareKeyStore(dir_.string(), kPassphrase, test_only);
    EXPECT_TRUE(store.ok()) << store.error().message;
    return store.ok() ? std::move(store).value() : nullptr;
  }
  Result<std::unique_ptr<KeyStore>> Open(std::string_view passphrase = kPassphrase) {
    return OpenSoftwareKeyStore(dir_.string(), passphrase);
  }
  std::string OpenError() {
    auto store = Open();
    return store.ok() ? "(opened)" : store.error().message;
  }

  fs::path dir_, file_;
};

TEST_F(SoftwareStoreTest, WrongPassphraseIsReportedAsSuch) {
  {
    auto store = Create();
    ASSERT_TRUE(store->Generate("purchase").ok());
  }
  auto wrong = Open("correct horse battery stapler");
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.error().message, HasSubstr("wrong passphrase"));
  EXPECT_THAT(wrong.error().message, Not(HasSubstr("tampered")));
  auto right = Open();
  ASSERT_TRUE(right.ok()) << right.error().message;
  EXPECT_EQ((*right)->List()->size(), 1u);
}

TEST_F(SoftwareStoreTest, CreateRefusesShortPassphrasesAndAnExistingStore) {
  auto short_one = CreateSoftwareKeyStore(dir_.string(), "1234567");
  ASSERT_FALSE(short_one.ok());
  EXPECT_THAT(short_one.error().message, HasSubstr("8 characters"));
  Create().reset();
  auto again = CreateSoftwareKeyStore(dir_.string(), kPassphrase);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("already exists"));
}

TEST_F(SoftwareStoreTest, OpeningWhereThereIsNoStoreSaysSo) {
  auto missing = OpenSoftwareKeyStore((dir_ / "nowhere").string(), kPassphrase);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("no key store"));
  fs::create_directories(dir_);
  auto empty_dir = Open();
  ASSERT_FALSE(empty_dir.ok());
  EXPECT_THAT(empty_dir.error().message, HasSubstr("no key store"));
}

TEST_F(SoftwareStoreTest, EveryFlippedByteIsCaughtAndNeverTakenForAWrongPassphrase) {
  {
    auto store = Create();
    ASSERT_TRUE(store->Generate("purchase").ok());
    ASSERT_TRUE(store->Generate("tmk/000000000101").ok());
  }
  const Bytes original = ReadFile(file_);
  ASSERT_GT(original.size(), kHeaderSize + 16);
  for (std::size_t at = 0; at < original.size(); ++at) {
    Bytes tampered = original;
    tampered[at] ^= 0x04;
    WriteFile(file_, tampered);
    const std::string error = OpenError();
    SCOPED_TRACE("byte " + std::to_string(at) + ": " + error);
    EXPECT_THAT(error, Not(HasSubstr("opened")));
    EXPECT_THAT(error, Not(HasSubstr("wrong passphrase")));
    if (at < 8) {
      EXPECT_THAT(error, HasSubstr("not a medcard key store"));
    } else if (at < 10) {
      EXPECT_THAT(error, HasSubstr("format version"));
    } else {  // KDF, salt, test_only flag, verifier, nonce, digest, body, tag
      EXPECT_THAT(error, HasSubstr("corrupt or has been tampered with"));
    }
  }
  WriteFile(file_, original);
  EXPECT_EQ(OpenError(), "(opened)");
}

TEST_F(SoftwareStoreTest, TruncatedOrExtendedFilesAreCorrupt) {
  {
    auto store = Create();
    ASSERT_TRUE(store->Generate("load").ok());
  }
  const Bytes original = ReadFile(file_);
  for (std::size_t size :
       {std::size_t{10}, kHeaderSize - 1, kHeaderSize, kHeaderSize + 16, original.size() - 1}) {
    WriteFile(file_, ByteView(original).first(size));
    EXPECT_THAT(OpenError(), HasSubstr("corrupt or has been tampered with")) << size;
  }
  WriteFile(file_, Bytes{});
  EXPECT_THAT(OpenError(), HasSubstr("not a medcard key store"));
  WriteFile(file_, Concat({original, HexToBytes("00")}));
  EXPECT_THAT(OpenError(), HasSubstr("corrupt or has been tampered with"));
}

TEST_F(SoftwareStoreTest, ACrashBeforeTheRenameLeavesTheOldStoreReadable) {
  {
    auto store = Create();
    ASSERT_TRUE(store->Generate("purchase").ok());
  }
  const Bytes before = ReadFile(file_);
  {
    auto store = Open();
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Generate("load").ok());
  }
  // The state a kill between "write and fsync keystore.mks.tmp" and "rename" leaves behind: the
  // new content complete in the temporary file, the old store in place.
  fs::rename(file_, dir_ / "keystore.mks.tmp");
  WriteFile(file_, before);
  {
    auto store = Open();
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto list = (*store)->List();
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].name, "purchase");
    EXPECT_FALSE(fs::exists(dir_ / "keystore.mks.tmp"));
    ASSERT_TRUE((*store)->Generate("tac").ok());
  }
  // A torn temporary file (a kill in the middle of its write) is just as harmless.
  WriteFile(dir_ / "keystore.mks.tmp", HexToBytes("4D4544434B455953"));
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ((*store)->List()->size(), 2u);
}

TEST_F(SoftwareStoreTest, TheFileNeverContainsAnyKeyOrHalfKeyOrThePassphrase) {
  auto store = Create(/*test_only=*/true);
  std::vector<Bytes> clear_keys;
  const Bytes transport = crypto::RandomBytes(16);
  ASSERT_TRUE(store->ImportTestKey("transport", transport).ok());
  clear_keys.push_back(transport);
  for (const char* role : {"purchase", "load"}) {
    const Bytes key = crypto::RandomBytes(16);
    ASSERT_TRUE(store->ImportTestKey(role, key).ok());
    clear_keys.push_back(key);
  }
  const std::vector<Bytes> components = {crypto::RandomBytes(16), crypto::RandomBytes(16)};
  ASSERT_TRUE(store->ImportComponents("settlement", components).ok());
  Bytes ceremony_key(16);
  for (std::size_t i = 0; i < 16; ++i) {
    ceremony_key[i] = static_cast<std::uint8_t>(components[0][i] ^ components[1][i]);
  }
  clear_keys.push_back(ceremony_key);
  clear_keys.insert(clear_keys.end(), components.begin(), components.end());
  auto transport_ref = store->Find("transport");
  ASSERT_TRUE(transport_ref.ok());
  for (const char* role : {"tac", "maintenance", "tmk/000000000101", "tac"}) {
    ASSERT_TRUE(store->Generate(role).ok());
    auto ref = store->Find(role);
    ASSERT_TRUE(ref.ok());
    auto wrapped = store->Wrap(*transport_ref, *ref);
    ASSERT_TRUE(wrapped.ok()) << wrapped.error().message;
    clear_keys.push_back(*crypto::DecryptKeyFromTransport(transport, *wrapped));
  }
  store.reset();
  const Bytes file = ReadFile(file_);
  ASSERT_GT(file.size(), kHeaderSize);
  for (const Bytes& key : clear_keys) {
    EXPECT_FALSE(Contains(file, key)) << ToHex(key);
    EXPECT_FALSE(Contains(file, ByteView(key).first(8))) << ToHex(key);
    EXPECT_FALSE(Contains(file, ByteView(key).last(8))) << ToHex(key);
  }
  const std::string_view passphrase = kPassphrase;
  EXPECT_FALSE(Contains(
      file, ByteView(reinterpret_cast<const std::uint8_t*>(passphrase.data()), passphrase.size())));
  // Key names are not in the file either: the records are encrypted as a whole.
  EXPECT_FALSE(Contains(file, ByteView(reinterpret_cast<const std::uint8_t*>("settlement"), 10)));
}

TEST_F(SoftwareStoreTest, DirectoryIs0700AndTheFileStays0600AcrossUpdates) {
  fs::create_directories(dir_);
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  auto store = Create();
  EXPECT_EQ(Mode(dir_), 0700u);
  EXPECT_EQ(Mode(file_), 0600u);
  ASSERT_TRUE(store->Generate("purchase").ok());
  EXPECT_EQ(Mode(file_), 0600u);
  EXPECT_FALSE(fs::exists(dir_ / "keystore.mks.tmp"));

  const fs::path fresh = NewTempDir() / "a" / "b";
  auto nested = CreateSoftwareKeyStore(fresh.string(), kPassphrase);
  ASSERT_TRUE(nested.ok()) << nested.error().message;
  EXPECT_EQ(Mode(fresh), 0700u);
  EXPECT_EQ(Mode(fresh / "keystore.mks"), 0600u);
}

TEST_F(SoftwareStoreTest, TestOnlyFlagIsInTheHeaderAndPersists) {
  Create(/*test_only=*/true).reset();
  EXPECT_EQ(ReadFile(file_)[kFlagsOffset], 0x01);
  auto store = Open();
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->test_only());
  EXPECT_TRUE((*store)->ImportTestKey("purchase", crypto::RandomBytes(16)).ok());
  store->reset();
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->test_only());
  EXPECT_EQ((*reopened)->List()->at(0).origin, "test-set");
}

TEST_F(SoftwareStoreTest, EveryWriteUsesAFreshNonceAndRewritesTheCiphertext) {
  auto store = Create();
  const Bytes first = ReadFile(file_);
  ASSERT_TRUE(store->Generate("purchase").ok());
  const Bytes second = ReadFile(file_);
  ASSERT_TRUE(store->Generate("load").ok());
  const Bytes third = ReadFile(file_);
  auto nonce = [](const Bytes& f) { return Bytes(f.begin() + kNonceOffset, f.begin() + 94); };
  EXPECT_NE(nonce(first), nonce(second));
  EXPECT_NE(nonce(second), nonce(third));
  EXPECT_GT(third.size(), second.size());
}

// The bank host's service keeps its store open while an operator's command registers a terminal
// (a new TMK) in the same store: neither may lose the other's key, and the service must find it.
TEST_F(SoftwareStoreTest, TwoOpenStoresSeeEachOthersKeysAndNeverLoseOne) {
  auto service = Create();
  auto second = Open();
  ASSERT_TRUE(second.ok()) << second.error().message;
  auto& command = **second;
  ASSERT_TRUE(service->Generate("purchase").ok());
  auto tmk = command.Generate("tmk/000000000001");  // the command has not seen "purchase" yet
  ASSERT_TRUE(tmk.ok()) << tmk.error().message;

  auto found = service->Find("tmk/000000000001", 1);  // a miss makes it catch up
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_EQ(ToHex(*service->Kcv(*found)), tmk->kcv);
  ASSERT_TRUE(command.Find("purchase").ok());

  // A rotation in one is the latest in the other.
  auto v2 = command.Generate("purchase");
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version, 2);
  auto latest = service->Find("purchase");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(ToHex(*service->Kcv(*latest)), v2->kcv);
  EXPECT_EQ(service->List()->size(), 3u);

  service.reset();
  second->reset();
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  auto listed = (*reopened)->List();
  ASSERT_TRUE(listed.ok());
  std::vector<std::string> names;
  for (const KeyInfo& k : listed.value())
    names.push_back(k.name + " v" + std::to_string(k.version));
  EXPECT_THAT(names,
              ::testing::UnorderedElementsAre("purchase v1", "purchase v2", "tmk/000000000001 v1"));
}

// Two processes writing at the same moment: the directory lock serialises them and each catches
// up before it appends, so all keys of both are in the file.
TEST_F(SoftwareStoreTest, ConcurrentWritersInTwoProcessesKeepEveryKey) {
  Create().reset();
  constexpr int kEach = 12;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  const bool in_child = child == 0;
  {
    auto store = Open();
    if (!store.ok()) {
      if (in_child) ::_exit(2);
      FAIL() << store.error().message;
    }
    for (int i = 0; i < kEach; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "tmk/%s%010d", in_child ? "C0" : "A0", i);
      if (!(*store)->Generate(name).ok()) {
        if (in_child) ::_exit(3);
        ADD_FAILURE() << "generating " << name;
      }
    }
  }
  if (in_child) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->List()->size(), 2u * kEach);
}

TEST_F(SoftwareStoreTest, AStoreReplacedUnderAnOpenOneIsNotWrittenOver) {
  auto old_store = Create();
  ASSERT_TRUE(old_store->Generate("purchase").ok());
  fs::remove(file_);
  Create().reset();  // a new store, a new salt, in the same directory
  auto write = old_store->Generate("load");
  ASSERT_FALSE(write.ok());
  EXPECT_THAT(write.error().message, HasSubstr("replaced by another store"));
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->List()->empty());
}

TEST_F(SoftwareStoreTest, KdfParametersComeFromCreationAndAreRecordedInTheHeader) {
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  Create().reset();
  EXPECT_EQ(ReadU64(ReadFile(file_), kKdfNOffset), 1u << 15);  // the production cost
  UseFastKdf();
  auto store = Open();  // the header's parameters, whatever the environment says now
  ASSERT_TRUE(store.ok()) << store.error().message;
  store->reset();

  const fs::path fast_dir = NewTempDir() / "fast";
  auto fast = CreateSoftwareKeyStore(fast_dir.string(), kPassphrase);
  ASSERT_TRUE(fast.ok());
  fast->reset();
  EXPECT_EQ(ReadU64(ReadFile(fast_dir / "keystore.mks"), kKdfNOffset), 1u << 10);
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  EXPECT_TRUE(OpenSoftwareKeyStore(fast_dir.string(), kPassphrase).ok());

  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "cheap", 1);
  auto refused = CreateSoftwareKeyStore((NewTempDir() / "x").string(), kPassphrase);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("MEDCARD_KEYSTORE_TEST_KDF"));
}

TEST_F(SoftwareStoreTest, DescribeNamesTheAbsoluteDirectory) {
  auto store = Create();
  EXPECT_EQ(store->Describe(), "software:" + dir_.string());
}

}  // namespace
}  // namespace medcard::keys
