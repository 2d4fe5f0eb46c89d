// The PSAM image format: round trip, and every kind of corruption is an error, never a crash.
#include <gtest/gtest.h>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

// A state with every optional part present.
internal::State FullState() {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  EXPECT_EQ(Send(*t, Purchase{}.InitApdu()).sw, 0x9000);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x7A, 0x00, 0x00, HexToBytes("1122334455667788"), 22)).sw, 0x9000);
  internal::State s = StateOf(t);
  EXPECT_TRUE(s.signed_totals.has_value());
  EXPECT_EQ(s.pending.size(), 1u);
  EXPECT_EQ(s.completed.size(), 1u);
  return s;
}

TEST(PsamImage, roundTrip_givesTheSameState) {
  const internal::State s = FullState();
  auto decoded = internal::DecodeImage(View(internal::EncodeImage(s)));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(*decoded, s);
}

TEST(PsamImage, everyTruncation_isAnError) {
  const Bytes image = internal::EncodeImage(FullState());
  for (std::size_t n = 0; n < image.size(); ++n) {
    auto decoded = internal::DecodeImage(ByteView(image.data(), n));
    ASSERT_FALSE(decoded.ok()) << "truncated to " << n;
  }
}

TEST(PsamImage, trailingBytes_areAnError) {
  Bytes image = internal::EncodeImage(FullState());
  image.push_back(0);
  auto decoded = internal::DecodeImage(View(image));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message.find("trailing"), std::string::npos);
}

TEST(PsamImage, wrongMagicOrVersion_isNamed) {
  Bytes image = internal::EncodeImage(FullState());
  Bytes bad_magic = image;
  bad_magic[0] = 'X';
  EXPECT_NE(internal::DecodeImage(View(bad_magic)).error().message.find("magic"),
            std::string::npos);
  Bytes bad_version = image;
  bad_version[4] = 2;
  EXPECT_NE(internal::DecodeImage(View(bad_version)).error().message.find("version 2"),
            std::string::npos);
}

TEST(PsamImage, outOfRangeFields_areErrors) {
  const internal::State good = FullState();
  const auto rejects = [](const internal::State& s) {
    return !internal::DecodeImage(View(internal::EncodeImage(s))).ok();
  };
  internal::State s = good;
  s.lifecycle = static_cast<Lifecycle>(7);
  EXPECT_TRUE(rejects(s));
  s = good;
  s.transport_key = kTransportKey;  // operational PSAM with a transport key
  EXPECT_TRUE(rejects(s));
  s = good;
  s.transport_key_errors = 1;  // no transport key left to fail
  EXPECT_TRUE(rejects(s));
  s = good;
  s.keys[0].usage = static_cast<KeyUsage>(0x33);
  EXPECT_TRUE(rejects(s));
  s = good;
  s.keys[0].failures = 9;  // more failures than the limit
  EXPECT_TRUE(rejects(s));
  s = good;
  s.keys[0].error_limit = 0;
  EXPECT_TRUE(rejects(s));
  s = good;
  s.keys[0].value.pop_back();
  EXPECT_TRUE(rejects(s));
  s = good;
  s.keys.push_back(s.keys[0]);  // duplicate
  EXPECT_TRUE(rejects(s));
  s = good;
  s.pending.resize(9, s.pending[0]);
  EXPECT_TRUE(rejects(s));
  s = good;
  s.completed.resize(9, 1);
  EXPECT_TRUE(rejects(s));
}

TEST(PsamImage, everySingleByteFlip_decodesOrFailsWithoutCrashing) {
  const Bytes image = internal::EncodeImage(FullState());
  for (std::size_t i = 0; i < image.size(); ++i) {
    for (int x : {0x01, 0x80, 0xFF}) {
      Bytes bad = image;
      bad[i] = static_cast<std::uint8_t>(bad[i] ^ x);
      auto decoded = internal::DecodeImage(View(bad));
      if (decoded.ok()) {
        // Anything that still decodes re-encodes to the same bytes: no field is lost.
        EXPECT_EQ(internal::EncodeImage(*decoded), bad) << "byte " << i;
      }
    }
  }
}

TEST(PsamImage, corruptImageOnTheMedium_failsToOpen) {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  auto* raw = medium.get();
  auto image = nvm::AtomicImage::Open(std::move(medium));
  ASSERT_TRUE(image.ok());
  ASSERT_TRUE(image->Commit(View(HexToBytes("4D435053010203"))).ok());
  auto opened = Psam::Open(std::make_unique<nvm::FaultInjectionMedium>(raw->SurvivingContent()));
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("corrupt PSAM image"), std::string::npos)
      << opened.error().message;
}

}  // namespace
}  // namespace medcard::psam::testing
