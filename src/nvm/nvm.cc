#include "nvm/nvm.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>

namespace medcard::nvm {

namespace {

Error SystemError(std::string_view what, const std::string& path, int error_number) {
  return MakeError(std::string(what) + " " + path + ": " +
                   std::system_category().message(error_number));
}

// A file descriptor that closes itself.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

class FileMedium : public Medium {
 public:
  FileMedium(Fd fd, std::string path, SyncMode mode)
      : fd_(std::move(fd)), path_(std::move(path)), mode_(mode) {}

  Result<Bytes> ReadAll() override {
    Bytes content;
    std::array<std::uint8_t, 16 * 1024> buffer;
    for (;;) {
      const ssize_t n =
          ::pread(fd_.get(), buffer.data(), buffer.size(), static_cast<off_t>(content.size()));
      if (n < 0) {
        if (errno == EINTR) continue;
        return SystemError("read", path_, errno);
      }
      if (n == 0) return content;
      content.insert(content.end(), buffer.begin(), buffer.begin() + n);
    }
  }

  Status WriteAt(std::uint64_t offset, ByteView data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return SystemError("write", path_, errno);
      }
      done += static_cast<std::size_t>(n);  // a short write continues where it stopped
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (mode_ == SyncMode::kNone) return Status::Ok();
    while (::fdatasync(fd_.get()) != 0) {
      if (errno != EINTR) return SystemError("fdatasync", path_, errno);
    }
    return Status::Ok();
  }

 private:
  Fd fd_;
  std::string path_;
  SyncMode mode_;
};

// A new file only survives a power cut once its directory entry is durable too.
Status SyncParentDirectory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return SystemError("open directory", dir, errno);
  while (::fsync(fd.get()) != 0) {
    if (errno != EINTR) return SystemError("fsync directory", dir, errno);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Medium>> OpenFileMedium(const std::string& path, SyncMode mode) {
  bool created = true;
  int raw = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (raw < 0 && errno == EEXIST) {
    created = false;
    raw = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  }
  if (raw < 0) return SystemError("open", path, errno);
  Fd fd(raw);
  if (created && mode == SyncMode::kFsync) {
    if (Status synced = SyncParentDirectory(path); !synced) return synced.error();
  }
  return std::unique_ptr<Medium>(std::make_unique<FileMedium>(std::move(fd), path, mode));
}

// ---------------------------------------------------------------------------------------------
// FaultInjectionMedium

FaultInjectionMedium::FaultInjectionMedium() = default;

FaultInjectionMedium::FaultInjectionMedium(Bytes durable_content)
    : durable_(std::move(durable_content)) {}

Result<Bytes> FaultInjectionMedium::ReadAll() {
  if (power_lost_) return MakeError("power lost");
  return durable_;
}

Status FaultInjectionMedium::WriteAt(std::uint64_t offset, ByteView data) {
  if (power_lost_) return MakeError("power lost");
  std::size_t done = 0;
  while (done < data.size()) {
    const std::uint64_t position = offset + done;
    const std::size_t room_in_sector =
        kSectorSize - static_cast<std::size_t>(position % kSectorSize);
    const std::size_t piece = std::min(room_in_sector, data.size() - done);
    ++sector_writes_;
    const bool torn = sector_writes_ == cut_at_;
    const std::size_t reaching = torn ? piece / 2 : piece;
    const std::size_t end = static_cast<std::size_t>(position) + reaching;
    if (durable_.size() < end) durable_.resize(end, 0x00);
    std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(done), reaching,
                durable_.begin() + static_cast<std::ptrdiff_t>(position));
    if (torn) {
      power_lost_ = true;
      return MakeError("power lost during sector write " + std::to_string(sector_writes_));
    }
    done += piece;
  }
  return Status::Ok();
}

Status FaultInjectionMedium::Sync() {
  if (power_lost_) return MakeError("power lost");
  return Status::Ok();  // writes are already durable: Sync is only an ordering barrier
}

void FaultInjectionMedium::CutPowerAtWrite(int n) {
  assert(n >= 1);
  cut_at_ = sector_writes_ + n;
}

Bytes FaultInjectionMedium::SurvivingContent() const { return durable_; }

std::unique_ptr<FaultInjectionMedium> FaultInjectionMedium::Reopen() const {
  return std::make_unique<FaultInjectionMedium>(durable_);
}

// ---------------------------------------------------------------------------------------------
// AtomicImage: two slots, docs/card-image.md.

namespace {

constexpr std::string_view kMagic = "MCIMG1";
constexpr std::uint16_t kFormatVersion = 1;
// Slot header offsets (docs/card-image.md, "Slot header").
constexpr std::size_t kVersionOffset = 6;
constexpr std::size_t kSequenceOffset = 8;
constexpr std::size_t kLengthOffset = 16;
constexpr std::size_t kDigestOffset = 20;
constexpr std::size_t kDigestSize = 32;
static_assert(kDigestOffset + kDigestSize == AtomicImage::kHeaderSize);

using Digest = std::array<std::uint8_t, kDigestSize>;

// SHA-256(sequence ‖ length ‖ image), the integers big-endian as in the header.
Digest SlotDigest(std::uint64_t sequence, ByteView image) {
  Bytes prefix;
  AppendU64(prefix, sequence);
  AppendU32(prefix, static_cast<std::uint32_t>(image.size()));
  Digest digest{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, prefix.data(), prefix.size()) == 1 &&
                  EVP_DigestUpdate(ctx, image.data(), image.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest.data(), nullptr) == 1;
  EVP_MD_CTX_free(ctx);
  // SHA-256 in the default provider cannot fail short of memory exhaustion; an all-zero digest
  // would only make the slot unreadable, never accept a wrong one.
  if (!ok) digest.fill(0);
  return digest;
}

Bytes BuildSlot(std::uint64_t sequence, ByteView image) {
  Bytes slot(kMagic.begin(), kMagic.end());
  AppendU16(slot, kFormatVersion);
  AppendU64(slot, sequence);
  AppendU32(slot, static_cast<std::uint32_t>(image.size()));
  const Digest digest = SlotDigest(sequence, image);
  slot.insert(slot.end(), digest.begin(), digest.end());
  Append(slot, image);
  return slot;
}

struct SlotContent {
  std::uint64_t sequence = 0;
  ByteView image;
};

// The slot's image when its header and checksum hold; nullopt for a torn, corrupt or foreign one.
std::optional<SlotContent> ReadSlot(ByteView slot) {
  if (slot.size() < AtomicImage::kHeaderSize) return std::nullopt;
  if (!std::equal(kMagic.begin(), kMagic.end(), slot.begin())) return std::nullopt;
  if (ReadU16(slot, kVersionOffset) != kFormatVersion) return std::nullopt;
  SlotContent content;
  content.sequence = ReadU64(slot, kSequenceOffset);
  const std::size_t length = ReadU32(slot, kLengthOffset);
  if (length > slot.size() - AtomicImage::kHeaderSize) return std::nullopt;
  content.image = slot.subspan(AtomicImage::kHeaderSize, length);
  const Digest digest = SlotDigest(content.sequence, content.image);
  const ByteView stored = slot.subspan(kDigestOffset, kDigestSize);
  if (!std::equal(digest.begin(), digest.end(), stored.begin())) return std::nullopt;
  return content;
}

// A first commit cut by a power loss: nothing beyond slot A was ever written, and slot A starts
// with this format's magic and version and claims sequence 1 (a torn first sector still holds
// at least its first 26 bytes, the sequence included). The state before that commit was the
// empty image, exactly as a corrupt newer slot falls back to the older one.
bool IsTornFirstCommit(ByteView all) {
  if (all.size() > AtomicImage::kSlotCapacity) return false;
  if (all.size() < kSequenceOffset + 8) return false;
  return std::equal(kMagic.begin(), kMagic.end(), all.begin()) &&
         ReadU16(all, kVersionOffset) == kFormatVersion && ReadU64(all, kSequenceOffset) == 1;
}

}  // namespace

std::size_t AtomicImage::MaxImageSize() { return kSlotCapacity - kHeaderSize; }

AtomicImage::AtomicImage(std::unique_ptr<Medium> medium, Bytes image, std::uint64_t seq, int slot)
    : medium_(std::move(medium)), image_(std::move(image)), sequence_(seq), current_slot_(slot) {}

Result<AtomicImage> AtomicImage::Open(std::unique_ptr<Medium> medium) {
  auto content = medium->ReadAll();
  if (!content) return MakeError("reading the card image: " + content.error().message);
  const ByteView all = View(*content);
  if (all.empty()) return AtomicImage(std::move(medium), Bytes{}, 0, -1);

  const ByteView slot_a = all.first(std::min(all.size(), kSlotCapacity));
  const ByteView slot_b =
      all.size() > kSlotCapacity
          ? all.subspan(kSlotCapacity, std::min(all.size() - kSlotCapacity, kSlotCapacity))
          : ByteView();
  const std::optional<SlotContent> a = ReadSlot(slot_a);
  const std::optional<SlotContent> b = ReadSlot(slot_b);
  if (!a && !b) {
    if (IsTornFirstCommit(all)) return AtomicImage(std::move(medium), Bytes{}, 0, -1);
    return MakeError("not a medcard image or corrupt");
  }
  if (a && b && a->sequence == b->sequence) {
    // Commits always advance the sequence: two slots claiming the same one were not written by
    // this protocol.
    return MakeError("not a medcard image or corrupt: both slots claim sequence " +
                     std::to_string(a->sequence));
  }
  const bool pick_b = b && (!a || b->sequence > a->sequence);
  const SlotContent& chosen = pick_b ? *b : *a;
  return AtomicImage(std::move(medium), Bytes(chosen.image.begin(), chosen.image.end()),
                     chosen.sequence, pick_b ? 1 : 0);
}

Status AtomicImage::Commit(ByteView new_image) {
  if (dead_) return MakeError("card image store failed earlier; reopen it before committing");
  if (new_image.size() > MaxImageSize()) {
    return MakeError("card image of " + std::to_string(new_image.size()) + " bytes exceeds the " +
                     std::to_string(MaxImageSize()) + "-byte capacity");
  }
  const int target = current_slot_ == 0 ? 1 : 0;
  const std::uint64_t next_sequence = sequence_ + 1;
  const Bytes slot = BuildSlot(next_sequence, new_image);
  // One WriteAt: the medium splits it into sector writes; the header and checksum only match
  // once every sector of the slot holds the new bytes.
  if (Status written =
          medium_->WriteAt(static_cast<std::uint64_t>(target) * kSlotCapacity, View(slot));
      !written) {
    dead_ = true;
    return written;
  }
  if (Status synced = medium_->Sync(); !synced) {
    dead_ = true;
    return synced;
  }
  image_.assign(new_image.begin(), new_image.end());
  sequence_ = next_sequence;
  current_slot_ = target;
  return Status::Ok();
}

}  // namespace medcard::nvm
