// A card's memory at city scale (docs/demo.md "City scale"): in the process only, and compact.
// nvm::AtomicImage writes its second slot at kSlotCapacity (64 KiB), so a flat in-memory medium
// (nvm::FaultInjectionMedium) holds 64 KiB + an image per card — 7 GB for 100,000 cards; this one
// keeps only what was written below and from that offset, so about two images.
//
//   auto card = issuance::IssueTestCard(keys, std::make_unique<demo::SlotMedium>(), holder);
#pragma once

#include <cstdint>

#include "common/bytes.h"
#include "common/result.h"
#include "nvm/nvm.h"

namespace medcard::demo {

class SlotMedium final : public nvm::Medium {
 public:
  // The whole content as a flat medium would hold it (the gap between the slots zero).
  Result<Bytes> ReadAll() override;
  Status WriteAt(std::uint64_t offset, ByteView data) override;
  Status Sync() override { return Status::Ok(); }  // memory: nothing to make durable

  std::size_t stored_bytes() const { return low_.size() + high_.size(); }

 private:
  static constexpr std::uint64_t kSplit = nvm::AtomicImage::kSlotCapacity;
  Bytes low_, high_;  // below kSplit; from kSplit on
};

}  // namespace medcard::demo
