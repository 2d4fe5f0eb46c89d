#include <gtest/gtest.h>

#include "nvm/nvm.h"

namespace medcard::nvm {
namespace {

constexpr std::size_t kSector = FaultInjectionMedium::kSectorSize;

TEST(FaultInjectionMedium, StartsEmptyOrWithTheGivenContent) {
  FaultInjectionMedium empty;
  auto content = empty.ReadAll();
  ASSERT_TRUE(content.ok());
  EXPECT_TRUE(content->empty());
  FaultInjectionMedium loaded(HexToBytes("010203"));
  EXPECT_EQ(ToHex(*loaded.ReadAll()), "010203");
}

TEST(FaultInjectionMedium, SplitsWritesAtSectorBoundaries) {
  FaultInjectionMedium medium;
  ASSERT_TRUE(medium.WriteAt(0, View(Bytes(kSector, 1))).ok());
  EXPECT_EQ(medium.sector_writes(), 1);
  ASSERT_TRUE(medium.WriteAt(0, View(Bytes(1300, 2))).ok());
  EXPECT_EQ(medium.sector_writes(), 1 + 3);
  // 100..512, 512..1024, 1024..1100
  ASSERT_TRUE(medium.WriteAt(100, View(Bytes(1000, 3))).ok());
  EXPECT_EQ(medium.sector_writes(), 4 + 3);
  ASSERT_TRUE(medium.WriteAt(kSector - 1, View(Bytes(2, 4))).ok());
  EXPECT_EQ(medium.sector_writes(), 7 + 2);
}

TEST(FaultInjectionMedium, WritesAreReadBackAndExtendWithZeros) {
  FaultInjectionMedium medium;
  ASSERT_TRUE(medium.WriteAt(2, View(HexToBytes("AABB"))).ok());
  EXPECT_EQ(ToHex(*medium.ReadAll()), "0000AABB");
  ASSERT_TRUE(medium.WriteAt(1, View(HexToBytes("CC"))).ok());
  EXPECT_EQ(ToHex(*medium.ReadAll()), "00CCAABB");
}

TEST(FaultInjectionMedium, WritesAreDurableWithoutSync) {
  // EEPROM model: no write cache, so what was written before a cut survives it.
  FaultInjectionMedium medium;
  ASSERT_TRUE(medium.WriteAt(0, View(HexToBytes("1122"))).ok());
  medium.CutPowerAtWrite(1);
  EXPECT_FALSE(medium.WriteAt(2, View(HexToBytes("33"))).ok());
  EXPECT_EQ(ToHex(medium.SurvivingContent()), "1122");
}

TEST(FaultInjectionMedium, TornSectorIsHalfNewHalfOld) {
  FaultInjectionMedium medium(Bytes(2 * kSector, 0x11));
  medium.CutPowerAtWrite(2);
  Status written = medium.WriteAt(0, View(Bytes(2 * kSector, 0xAB)));
  EXPECT_FALSE(written.ok());
  EXPECT_TRUE(medium.power_lost());
  EXPECT_EQ(medium.sector_writes(), 2);
  const Bytes survived = medium.SurvivingContent();
  ASSERT_EQ(survived.size(), 2 * kSector);
  for (std::size_t i = 0; i < survived.size(); ++i) {
    const std::uint8_t expected = i < kSector + kSector / 2 ? 0xAB : 0x11;
    ASSERT_EQ(survived[i], expected) << "byte " << i;
  }
}

TEST(FaultInjectionMedium, TornWritePastTheEndGrowsOnlyByTheHalfWritten) {
  FaultInjectionMedium medium;
  medium.CutPowerAtWrite(1);
  EXPECT_FALSE(medium.WriteAt(0, View(Bytes(100, 0x7E))).ok());
  EXPECT_EQ(medium.SurvivingContent(), Bytes(50, 0x7E));
}

TEST(FaultInjectionMedium, CutIsCountedFromTheCall) {
  FaultInjectionMedium medium;
  ASSERT_TRUE(medium.WriteAt(0, View(Bytes(3 * kSector, 1))).ok());
  medium.CutPowerAtWrite(2);
  ASSERT_TRUE(medium.WriteAt(0, View(Bytes(10, 2))).ok()) << "write point 1 after the call";
  EXPECT_FALSE(medium.WriteAt(0, View(Bytes(10, 3))).ok()) << "write point 2 tears";
  EXPECT_EQ(medium.sector_writes(), 5);
}

TEST(FaultInjectionMedium, EverythingFailsAfterThePowerIsLost) {
  FaultInjectionMedium medium;
  medium.CutPowerAtWrite(1);
  EXPECT_FALSE(medium.WriteAt(0, View(HexToBytes("01"))).ok());
  EXPECT_FALSE(medium.WriteAt(0, View(HexToBytes("02"))).ok());
  EXPECT_FALSE(medium.Sync().ok());
  EXPECT_FALSE(medium.ReadAll().ok());
  EXPECT_EQ(medium.sector_writes(), 1) << "no sector write happens without power";
}

TEST(FaultInjectionMedium, ReopenGivesAPoweredMediumWithWhatSurvived) {
  FaultInjectionMedium medium;
  ASSERT_TRUE(medium.WriteAt(0, View(HexToBytes("0102"))).ok());
  medium.CutPowerAtWrite(1);
  EXPECT_FALSE(medium.WriteAt(2, View(HexToBytes("AABBCCDD"))).ok());
  auto reopened = medium.Reopen();
  EXPECT_FALSE(reopened->power_lost());
  EXPECT_EQ(reopened->sector_writes(), 0);
  EXPECT_EQ(ToHex(*reopened->ReadAll()), "0102AABB");
  EXPECT_TRUE(reopened->WriteAt(0, View(HexToBytes("FF"))).ok());
  EXPECT_TRUE(reopened->Sync().ok());
}

}  // namespace
}  // namespace medcard::nvm
