// Helpers local to the card component's own tests: custom layouts, and images crafted through
// the card's internal state model (for states no APDU sequence reaches quickly, such as a serial
// at FFFF).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "card/personalize.h"
#include "card/state.h"
#include "card_test_support.h"
#include "nvm/nvm.h"

namespace medcard::card_test {

// A blank card personalised with `layout` and the test keys (card keys by master-key name).
inline TestCard MakeCardWithLayout(const card::CardLayout& layout, card::KeyWrapper& keys,
                                   card::CardOptions options = {}) {
  TestCard out = MakeBlankCard(std::move(options));
  auto script = card::BuildPersonalisation(layout, keys);
  if (!script.ok()) {
    ADD_FAILURE() << script.error().message;
    return out;
  }
  if (Status run = card::RunPersonalisation(*script, keys, *out.card); !run.ok()) {
    ADD_FAILURE() << run.error().message;
  }
  out.card->PowerOn();
  return out;
}

inline card::ClearKeyWrapper TestWrapper() {
  auto made =
      card::ClearKeyWrapper::FromMasterKeys(TestTransportKey(), TestMasterKeys(), View(TestAsn()));
  return std::move(made).value();
}

inline card::FileSpec EfSpec(card::FileType type, std::uint16_t fid, std::uint8_t sfi,
                             card::AccessCondition read, card::AccessCondition write) {
  card::FileSpec spec;
  spec.type = type;
  spec.fid = fid;
  spec.sfi = sfi;
  spec.read = read;
  spec.write = write;
  return spec;
}

// The card image inside a medium's content, edited through the internal state model, written
// back as a fresh one-slot medium content.
inline Bytes EditImage(const Bytes& medium_content,
                       const std::function<void(card::internal::CardState&)>& edit) {
  auto image = nvm::AtomicImage::Open(std::make_unique<nvm::FaultInjectionMedium>(medium_content));
  EXPECT_TRUE(image.ok());
  auto state = card::internal::ParseState(View(image->image()));
  EXPECT_TRUE(state.ok());
  edit(*state);
  Bytes encoded;
  card::internal::SerializeState(*state, encoded);
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  nvm::FaultInjectionMedium* raw = medium.get();
  auto fresh = nvm::AtomicImage::Open(std::move(medium));
  EXPECT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->Commit(View(encoded)).ok());
  return raw->SurvivingContent();
}

// The card image (AtomicImage payload) of a medium content.
inline Bytes ImageOf(const Bytes& medium_content) {
  auto image = nvm::AtomicImage::Open(std::make_unique<nvm::FaultInjectionMedium>(medium_content));
  EXPECT_TRUE(image.ok());
  return image.ok() ? image->image() : Bytes{};
}

inline card::internal::File& FileByFid(card::internal::CardState& state, std::uint16_t fid) {
  for (auto& f : state.files) {
    if (f.fid == fid) return f;
  }
  ADD_FAILURE() << "no file " << fid;
  return state.files[0];
}

}  // namespace medcard::card_test
