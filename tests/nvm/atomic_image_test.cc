#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "nvm/nvm.h"

namespace medcard::nvm {
namespace {

constexpr std::size_t kSlot = AtomicImage::kSlotCapacity;
constexpr std::size_t kHeader = AtomicImage::kHeaderSize;
constexpr std::size_t kSector = FaultInjectionMedium::kSectorSize;

// Image number k: every byte differs from image k-2 at the same offset (202 mod 256 != 0), so a
// torn write can never leave a slot that happens to hold a complete valid image.
Bytes MakeImage(int k, std::size_t size) {
  Bytes image(size);
  for (std::size_t i = 0; i < size; ++i) {
    image[i] = static_cast<std::uint8_t>(i * 31 + static_cast<std::size_t>(k) * 101 + 7);
  }
  return image;
}

// Opens an AtomicImage over a fault-injection medium holding `content`; `medium` is left
// pointing at the medium, which the image owns.
AtomicImage MustOpen(Bytes content, FaultInjectionMedium** medium = nullptr) {
  auto owned = std::make_unique<FaultInjectionMedium>(std::move(content));
  if (medium != nullptr) *medium = owned.get();
  auto image = AtomicImage::Open(std::move(owned));
  if (!image.ok()) {
    ADD_FAILURE() << image.error().message;
    std::abort();
  }
  return std::move(image).value();
}

Result<AtomicImage> OpenContent(Bytes content) {
  return AtomicImage::Open(std::make_unique<FaultInjectionMedium>(std::move(content)));
}

// The medium after committing each image in turn to a fresh medium.
Bytes ContentAfter(const std::vector<Bytes>& images) {
  FaultInjectionMedium* medium = nullptr;
  AtomicImage store = MustOpen({}, &medium);
  for (const Bytes& image : images) EXPECT_TRUE(store.Commit(View(image)).ok());
  return medium->SurvivingContent();
}

TEST(AtomicImage, EmptyMediumIsAnEmptyImageAtSequence0) {
  AtomicImage store = MustOpen({});
  EXPECT_TRUE(store.image().empty());
  EXPECT_EQ(store.sequence(), 0u);
}

TEST(AtomicImage, CommitReplacesTheImageAndAdvancesTheSequence) {
  AtomicImage store = MustOpen({});
  ASSERT_TRUE(store.Commit(View(MakeImage(1, 100))).ok());
  EXPECT_EQ(store.image(), MakeImage(1, 100));
  EXPECT_EQ(store.sequence(), 1u);
  ASSERT_TRUE(store.Commit(View(MakeImage(2, 50))).ok());
  EXPECT_EQ(store.image(), MakeImage(2, 50));
  EXPECT_EQ(store.sequence(), 2u);
}

TEST(AtomicImage, CommitsAlternateBetweenSlotAAndSlotB) {
  const Bytes after_one = ContentAfter({MakeImage(1, 10)});
  EXPECT_EQ(after_one.size(), kHeader + 10) << "first commit goes to slot A at offset 0";
  const Bytes after_two = ContentAfter({MakeImage(1, 10), MakeImage(2, 20)});
  EXPECT_EQ(after_two.size(), kSlot + kHeader + 20) << "second commit goes to slot B";
  EXPECT_TRUE(std::equal(after_one.begin(), after_one.end(), after_two.begin()))
      << "slot A is untouched by the second commit";
  const Bytes after_three = ContentAfter({MakeImage(1, 10), MakeImage(2, 20), MakeImage(3, 10)});
  EXPECT_EQ(after_three.size(), after_two.size());
  EXPECT_FALSE(std::equal(after_one.begin(), after_one.end(), after_three.begin()))
      << "the third commit overwrites slot A";
}

TEST(AtomicImage, SlotHeaderLayoutMatchesTheDocumentedFormat) {
  const Bytes content = ContentAfter({HexToBytes("CAFE")});
  ASSERT_EQ(content.size(), kHeader + 2);
  EXPECT_EQ(std::string(content.begin(), content.begin() + 6), "MCIMG1");
  EXPECT_EQ(ToHex(Bytes(content.begin() + 6, content.begin() + 20)),
            "0001"
            "0000000000000001"
            "00000002");
  // SHA-256(0000000000000001 ‖ 00000002 ‖ CAFE), computed independently (Python hashlib).
  EXPECT_EQ(ToHex(Bytes(content.begin() + 20, content.begin() + 52)),
            "DC09797F1E0C43064C8D64DE21C003DB60C1C4905F94DD034C8BE5A0EDD2481A");
  EXPECT_EQ(ToHex(Bytes(content.begin() + 52, content.end())), "CAFE");
}

TEST(AtomicImage, ImageSurvivesReopenWithItsSequence) {
  const Bytes content = ContentAfter({MakeImage(1, 700), MakeImage(2, 900), MakeImage(3, 5)});
  AtomicImage reopened = MustOpen(content);
  EXPECT_EQ(reopened.image(), MakeImage(3, 5));
  EXPECT_EQ(reopened.sequence(), 3u);
  ASSERT_TRUE(reopened.Commit(View(MakeImage(4, 64))).ok());
  EXPECT_EQ(MustOpen(reopened.medium().ReadAll().value()).image(), MakeImage(4, 64));
}

TEST(AtomicImage, EmptyImageIsAValidCommit) {
  const Bytes content = ContentAfter({MakeImage(1, 10), Bytes{}});
  AtomicImage reopened = MustOpen(content);
  EXPECT_TRUE(reopened.image().empty());
  EXPECT_EQ(reopened.sequence(), 2u);
}

// The exhaustive power-cut test: for each commit of a sequence (sizes below, within and across
// sectors, growing and shrinking, up to the maximum), cut the power at every sector write of
// that commit, reinsert the card, and check it holds exactly the old image; a cut after the
// last sector leaves the new one. The recovered store must also accept the next commit.
TEST(AtomicImage, EveryPowerCutLeavesExactlyTheOldOrTheNewImage) {
  const std::vector<std::size_t> sizes = {10,
                                          kSector - kHeader,
                                          kSector - kHeader + 1,
                                          1500,
                                          5000,
                                          100,
                                          0,
                                          3 * kSector,
                                          40000,
                                          AtomicImage::MaxImageSize(),
                                          2000};
  Bytes durable;  // the medium before the commit under test
  Bytes old_image;
  std::uint64_t old_sequence = 0;
  int cuts = 0;
  int expected_cuts = 0;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const Bytes new_image = MakeImage(static_cast<int>(k) + 1, sizes[k]);
    const int expected_points = static_cast<int>((kHeader + sizes[k] + kSector - 1) / kSector);

    FaultInjectionMedium* probe = nullptr;
    AtomicImage uncut = MustOpen(durable, &probe);
    ASSERT_TRUE(uncut.Commit(View(new_image)).ok());
    const int write_points = probe->sector_writes();
    ASSERT_EQ(write_points, expected_points) << "commit " << k;
    expected_cuts += expected_points;

    for (int n = 1; n <= write_points; ++n) {
      SCOPED_TRACE("commit " + std::to_string(k) + " of " + std::to_string(sizes[k]) +
                   " bytes, power cut at sector write " + std::to_string(n));
      FaultInjectionMedium* medium = nullptr;
      AtomicImage store = MustOpen(durable, &medium);
      medium->CutPowerAtWrite(n);
      EXPECT_FALSE(store.Commit(View(new_image)).ok());
      EXPECT_TRUE(medium->power_lost());
      EXPECT_EQ(store.image(), old_image) << "in-memory image unchanged";

      auto recovered = AtomicImage::Open(medium->Reopen());
      ASSERT_TRUE(recovered.ok()) << recovered.error().message;
      EXPECT_EQ(recovered->image(), old_image);
      EXPECT_EQ(recovered->sequence(), old_sequence);

      ASSERT_TRUE(recovered->Commit(View(new_image)).ok());
      auto after_retry = OpenContent(recovered->medium().ReadAll().value());
      ASSERT_TRUE(after_retry.ok()) << after_retry.error().message;
      EXPECT_EQ(after_retry->image(), new_image);
      EXPECT_EQ(after_retry->sequence(), old_sequence + 1);
      ++cuts;
    }

    // A cut scheduled after the last sector never happens inside the commit.
    FaultInjectionMedium* late = nullptr;
    AtomicImage store = MustOpen(durable, &late);
    late->CutPowerAtWrite(write_points + 1);
    ASSERT_TRUE(store.Commit(View(new_image)).ok());
    EXPECT_FALSE(late->power_lost());
    AtomicImage reopened = MustOpen(late->SurvivingContent());
    EXPECT_EQ(reopened.image(), new_image);
    EXPECT_EQ(reopened.sequence(), old_sequence + 1);

    durable = probe->SurvivingContent();
    old_image = new_image;
    old_sequence += 1;
  }
  EXPECT_EQ(cuts, expected_cuts);
  EXPECT_EQ(cuts, 236) << "1+1+2+4+10+1+1+4+79+128+5 sectors";
}

TEST(AtomicImage, FailedCommitLeavesTheStoreDeadUntilReopened) {
  FaultInjectionMedium* medium = nullptr;
  AtomicImage store = MustOpen(ContentAfter({MakeImage(1, 10)}), &medium);
  medium->CutPowerAtWrite(1);
  EXPECT_FALSE(store.Commit(View(MakeImage(2, 10))).ok());
  // Even on a medium that works again, the store refuses: its slot choice is no longer known.
  auto fresh = std::make_unique<FaultInjectionMedium>(medium->SurvivingContent());
  Status again = store.Commit(View(MakeImage(3, 10)));
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("reopen"), std::string::npos) << again.error().message;
  auto reopened = AtomicImage::Open(std::move(fresh));
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE(reopened->Commit(View(MakeImage(3, 10))).ok());
}

// Flips every byte of one slot's header and image in turn: recovery must fall back to the
// other slot (or, for the older slot, keep the newer one).
TEST(AtomicImage, CorruptingAnyByteOfTheNewerSlotRecoversTheOlderImage) {
  const Bytes older = MakeImage(1, 600);
  const Bytes newer = MakeImage(2, 700);
  const Bytes content = ContentAfter({older, newer});  // A = older (seq 1), B = newer (seq 2)
  for (std::size_t i = kSlot; i < kSlot + kHeader + newer.size(); ++i) {
    Bytes corrupt = content;
    corrupt[i] ^= 0x01;
    auto store = OpenContent(corrupt);
    ASSERT_TRUE(store.ok()) << "byte " << i << ": " << store.error().message;
    ASSERT_EQ(store->image(), older) << "byte " << i;
    ASSERT_EQ(store->sequence(), 1u) << "byte " << i;
  }
}

TEST(AtomicImage, CorruptingAnyByteOfTheOlderSlotKeepsTheNewerImage) {
  const Bytes older = MakeImage(1, 600);
  const Bytes newer = MakeImage(2, 700);
  const Bytes content = ContentAfter({older, newer});
  for (std::size_t i = 0; i < kHeader + older.size(); ++i) {
    Bytes corrupt = content;
    corrupt[i] ^= 0x80;
    auto store = OpenContent(corrupt);
    ASSERT_TRUE(store.ok()) << "byte " << i << ": " << store.error().message;
    ASSERT_EQ(store->image(), newer) << "byte " << i;
    ASSERT_EQ(store->sequence(), 2u) << "byte " << i;
  }
}

TEST(AtomicImage, AfterRecoveringFromACorruptSlotTheNextCommitOverwritesIt) {
  Bytes content = ContentAfter({MakeImage(1, 50), MakeImage(2, 50)});
  content[kSlot + kHeader] ^= 0xFF;  // slot B's image
  FaultInjectionMedium* medium = nullptr;
  AtomicImage store = MustOpen(content, &medium);
  ASSERT_EQ(store.sequence(), 1u);
  ASSERT_TRUE(store.Commit(View(MakeImage(3, 50))).ok());
  const Bytes after = medium->SurvivingContent();
  EXPECT_TRUE(std::equal(content.begin(), content.begin() + kHeader + 50, after.begin()))
      << "slot A, the only good copy, was not touched";
  AtomicImage reopened = MustOpen(after);
  EXPECT_EQ(reopened.image(), MakeImage(3, 50));
  EXPECT_EQ(reopened.sequence(), 2u);
}

TEST(AtomicImage, BothSlotsCorruptIsAnError) {
  Bytes content = ContentAfter({MakeImage(1, 100), MakeImage(2, 100)});
  content[kHeader + 5] ^= 0x01;
  content[kSlot + kHeader + 5] ^= 0x01;
  auto store = OpenContent(content);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().message, "not a medcard image or corrupt");
}

TEST(AtomicImage, ContentThatIsNotAnImageIsAnError) {
  for (const Bytes& content :
       {Bytes{0x00}, Bytes(10, 0x00), Bytes(3 * kSlot, 0xFF), HexToBytes("4D43494D4731"),
        HexToBytes("3B6800000073C84013009000")}) {
    auto store = OpenContent(content);
    ASSERT_FALSE(store.ok()) << ToHex(content).substr(0, 32);
    EXPECT_EQ(store.error().message, "not a medcard image or corrupt");
  }
}

TEST(AtomicImage, SlotOfAnotherFormatVersionIsNotAccepted) {
  Bytes content = ContentAfter({MakeImage(1, 20), MakeImage(2, 20)});
  content[kSlot + 7] = 0x02;  // slot B: format version 2, checksum still right
  auto store = OpenContent(content);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->sequence(), 1u) << "slot B ignored";
  content[7] = 0x02;
  EXPECT_FALSE(OpenContent(content).ok());
}

TEST(AtomicImage, LengthFieldBeyondTheSlotIsRejected) {
  Bytes content = ContentAfter({MakeImage(1, 20), MakeImage(2, 20)});
  content[kSlot + 16] = 0xFF;  // slot B's length: FF000014
  auto store = OpenContent(content);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->sequence(), 1u) << "slot B ignored";
}

TEST(AtomicImage, TornFirstCommitRecoversTheEmptyImage) {
  // The card's first commit (personalisation) cut in its first sector: half a header.
  FaultInjectionMedium* medium = nullptr;
  AtomicImage store = MustOpen({}, &medium);
  medium->CutPowerAtWrite(1);
  EXPECT_FALSE(store.Commit(View(MakeImage(1, 10))).ok());
  ASSERT_EQ(medium->SurvivingContent().size(), (kHeader + 10) / 2);
  FaultInjectionMedium* reopened_medium = nullptr;
  AtomicImage reopened = MustOpen(medium->SurvivingContent(), &reopened_medium);
  EXPECT_TRUE(reopened.image().empty());
  EXPECT_EQ(reopened.sequence(), 0u);
  ASSERT_TRUE(reopened.Commit(View(MakeImage(1, 10))).ok());
  EXPECT_EQ(reopened_medium->SurvivingContent().size(), kHeader + 10) << "slot A rewritten";
  EXPECT_EQ(MustOpen(reopened_medium->SurvivingContent()).image(), MakeImage(1, 10));
}

TEST(AtomicImage, LoneCorruptSlotThatIsNotAFirstCommitIsAnError) {
  // Only slot A, corrupt, but claiming sequence 2: no power cut produces that.
  Bytes content = ContentAfter({MakeImage(1, 20)});
  content[15] = 0x02;
  auto store = OpenContent(content);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().message, "not a medcard image or corrupt");
}

TEST(AtomicImage, LoneSlotOfAnotherFormatIsAnError) {
  Bytes content = ContentAfter({MakeImage(1, 20)});
  content[7] = 0x02;
  EXPECT_FALSE(OpenContent(content).ok());
}

TEST(AtomicImage, TwoSlotsClaimingTheSameSequenceAreRejected) {
  Bytes content = ContentAfter({MakeImage(1, 30)});
  content.resize(kSlot, 0x00);
  const Bytes slot_a(content.begin(), content.begin() + kHeader + 30);
  Append(content, View(slot_a));
  auto store = OpenContent(content);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("both slots claim sequence 1"), std::string::npos);
}

TEST(AtomicImage, UnreadableMediumIsAnError) {
  auto medium = std::make_unique<FaultInjectionMedium>();
  medium->CutPowerAtWrite(1);
  EXPECT_FALSE(medium->WriteAt(0, View(HexToBytes("01"))).ok());
  auto store = AtomicImage::Open(std::move(medium));
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("power lost"), std::string::npos);
}

TEST(AtomicImage, ImageOfTheMaximumSizeFits) {
  FaultInjectionMedium* medium = nullptr;
  AtomicImage store = MustOpen({}, &medium);
  const Bytes biggest = MakeImage(1, AtomicImage::MaxImageSize());
  ASSERT_TRUE(store.Commit(View(biggest)).ok());
  ASSERT_TRUE(store.Commit(View(MakeImage(2, AtomicImage::MaxImageSize()))).ok());
  EXPECT_EQ(medium->SurvivingContent().size(), 2 * kSlot) << "the two slots exactly";
  EXPECT_EQ(MustOpen(medium->SurvivingContent()).image(),
            MakeImage(2, AtomicImage::MaxImageSize()));
}

TEST(AtomicImage, OversizeCommitIsRefusedAndChangesNothing) {
  FaultInjectionMedium* medium = nullptr;
  AtomicImage store = MustOpen(ContentAfter({MakeImage(1, 100)}), &medium);
  const Bytes before = medium->SurvivingContent();
  Status refused = store.Commit(View(Bytes(AtomicImage::MaxImageSize() + 1, 0x55)));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("exceeds"), std::string::npos);
  EXPECT_EQ(medium->sector_writes(), 0) << "nothing written";
  EXPECT_EQ(medium->SurvivingContent(), before);
  EXPECT_EQ(store.image(), MakeImage(1, 100));
  EXPECT_EQ(store.sequence(), 1u);
  // The card answered 6A84 and carries on: the store still commits.
  ASSERT_TRUE(store.Commit(View(MakeImage(2, 100))).ok());
  EXPECT_EQ(MustOpen(medium->SurvivingContent()).image(), MakeImage(2, 100));
}

}  // namespace
}  // namespace medcard::nvm
