#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "nvm/nvm.h"

namespace medcard::nvm {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device random;
    path_ = fs::temp_directory_path() / ("medcard-nvm-test-" + std::to_string(random()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::unique_ptr<Medium> MustOpen(const std::string& path, SyncMode mode = SyncMode::kFsync) {
  auto medium = OpenFileMedium(path, mode);
  EXPECT_TRUE(medium.ok()) << medium.error().message;
  return medium.ok() ? std::move(*medium) : nullptr;
}

TEST(FileMedium, CreatesAnEmptyOwnerOnlyFile) {
  TempDir dir;
  const std::string path = dir.File("card.img");
  auto medium = MustOpen(path);
  ASSERT_NE(medium, nullptr);
  auto content = medium->ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_TRUE(content->empty());
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
}

TEST(FileMedium, WritesReadBackAndSurviveReopen) {
  TempDir dir;
  const std::string path = dir.File("card.img");
  Bytes expected(70000);
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<std::uint8_t>(i);
  {
    auto medium = MustOpen(path);
    ASSERT_NE(medium, nullptr);
    ASSERT_TRUE(medium->WriteAt(0, View(expected)).ok());
    ASSERT_TRUE(medium->WriteAt(10, View(HexToBytes("CAFE"))).ok());
    ASSERT_TRUE(medium->Sync().ok());
  }
  expected[10] = 0xCA;
  expected[11] = 0xFE;
  auto reopened = MustOpen(path);
  ASSERT_NE(reopened, nullptr);
  auto content = reopened->ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, expected);
}

TEST(FileMedium, WritingPastTheEndExtendsWithZeros) {
  TempDir dir;
  auto medium = MustOpen(dir.File("card.img"), SyncMode::kNone);
  ASSERT_NE(medium, nullptr);
  ASSERT_TRUE(medium->WriteAt(4, View(HexToBytes("AABB"))).ok());
  ASSERT_TRUE(medium->Sync().ok());
  auto content = medium->ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(ToHex(*content), "00000000AABB");
}

TEST(FileMedium, OpensAnExistingFileWithoutTruncating) {
  TempDir dir;
  const std::string path = dir.File("existing.img");
  std::ofstream(path, std::ios::binary) << "hello";
  auto medium = MustOpen(path);
  ASSERT_NE(medium, nullptr);
  auto content = medium->ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(std::string(content->begin(), content->end()), "hello");
}

TEST(FileMedium, MissingDirectoryIsAnErrorNamingThePath) {
  TempDir dir;
  const std::string path = dir.File("no-such-dir/card.img");
  auto medium = OpenFileMedium(path);
  ASSERT_FALSE(medium.ok());
  EXPECT_NE(medium.error().message.find(path), std::string::npos) << medium.error().message;
}

TEST(FileMedium, CardImageSurvivesReopen) {
  TempDir dir;
  const std::string path = dir.File("card.img");
  const Bytes first = HexToBytes("0102030405");
  const Bytes second(3000, 0x42);
  {
    auto image = AtomicImage::Open(MustOpen(path));
    ASSERT_TRUE(image.ok()) << image.error().message;
    ASSERT_TRUE(image->Commit(View(first)).ok());
    ASSERT_TRUE(image->Commit(View(second)).ok());
  }
  auto reopened = AtomicImage::Open(MustOpen(path));
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  EXPECT_EQ(reopened->image(), second);
  EXPECT_EQ(reopened->sequence(), 2u);
}

TEST(FileMedium, AFileThatIsNotAnImageIsRejected) {
  TempDir dir;
  const std::string path = dir.File("notes.txt");
  std::ofstream(path, std::ios::binary) << "shopping list: rice, tea, 20 fen of ginger\n";
  auto image = AtomicImage::Open(MustOpen(path));
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.error().message, "not a medcard image or corrupt");
}

}  // namespace
}  // namespace medcard::nvm
