// The city-scale demo's in-memory card medium (src/demo/slot_medium.h): what nvm::AtomicImage
// commits to it reads back as from a flat medium, and it keeps only the two slots.
#include "demo/slot_medium.h"

#include <gtest/gtest.h>

#include <memory>

#include "nvm/nvm.h"

namespace medcard::demo {
namespace {

Bytes Image(std::size_t size, std::uint8_t fill) { return Bytes(size, fill); }

TEST(DemoSlotMediumTest, CommittedImagesReadBackAsFromAFlatMedium) {
  auto owned = std::make_unique<SlotMedium>();
  SlotMedium* medium = owned.get();
  auto store = nvm::AtomicImage::Open(std::move(owned));
  ASSERT_TRUE(store.ok()) << store.error().message;
  // Slot A, then slot B (at 64 KiB), then A again: the latest wins.
  for (int fill : {0x11, 0x22, 0x33, 0x44}) {
    ASSERT_TRUE(store->Commit(Image(1200 + fill, static_cast<std::uint8_t>(fill))).ok());
  }
  auto content = medium->ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_GT(content->size(), nvm::AtomicImage::kSlotCapacity);  // both slots, the gap zero
  auto reopened = nvm::AtomicImage::Open(std::make_unique<nvm::FaultInjectionMedium>(*content));
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  EXPECT_EQ(reopened->image(), Image(1200 + 0x44, 0x44));
  EXPECT_EQ(reopened->sequence(), 4u);
  // Two images and their headers, not the 64 KiB before the second slot.
  EXPECT_LT(medium->stored_bytes(), 2 * (1200 + 0x44 + nvm::AtomicImage::kHeaderSize) + 1);
}

TEST(DemoSlotMediumTest, AWriteAcrossTheSlotBoundaryLandsOnBothSides) {
  SlotMedium medium;
  const std::uint64_t boundary = nvm::AtomicImage::kSlotCapacity;
  ASSERT_TRUE(medium.WriteAt(boundary - 2, Bytes{1, 2, 3, 4}).ok());
  auto content = medium.ReadAll();
  ASSERT_TRUE(content.ok());
  ASSERT_EQ(content->size(), boundary + 2);
  EXPECT_EQ((*content)[boundary - 3], 0);
  EXPECT_EQ((*content)[boundary - 2], 1);
  EXPECT_EQ((*content)[boundary - 1], 2);
  EXPECT_EQ((*content)[boundary], 3);
  EXPECT_EQ((*content)[boundary + 1], 4);
  EXPECT_EQ(medium.stored_bytes(), boundary + 2);  // only the low part is flat up to its end
}

TEST(DemoSlotMediumTest, AnEmptyMediumIsAnEmptyImage) {
  SlotMedium medium;
  auto content = medium.ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_TRUE(content->empty());
}

}  // namespace
}  // namespace medcard::demo
