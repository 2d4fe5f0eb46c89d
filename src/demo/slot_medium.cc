#include "demo/slot_medium.h"

#include <algorithm>

namespace medcard::demo {

Result<Bytes> SlotMedium::ReadAll() {
  if (high_.empty()) return low_;
  Bytes all(kSplit + high_.size(), 0);
  std::copy(low_.begin(), low_.end(), all.begin());
  std::copy(high_.begin(), high_.end(), all.begin() + static_cast<std::ptrdiff_t>(kSplit));
  return all;
}

Status SlotMedium::WriteAt(std::uint64_t offset, ByteView data) {
  while (!data.empty()) {
    const bool low = offset < kSplit;
    Bytes& part = low ? low_ : high_;
    const std::uint64_t at = low ? offset : offset - kSplit;
    // A write across kSplit goes in two pieces.
    const std::size_t n =
        low ? std::min<std::size_t>(data.size(), static_cast<std::size_t>(kSplit - offset))
            : data.size();
    if (part.size() < at + n) part.resize(static_cast<std::size_t>(at + n), 0);
    std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n),
              part.begin() + static_cast<std::ptrdiff_t>(at));
    data = data.subspan(n);
    offset += n;
  }
  return Status::Ok();
}

}  // namespace medcard::demo
