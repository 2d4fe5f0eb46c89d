// nvm: the non-volatile memory of virtual cards and PSAMs, with all-or-nothing commits.
//
// A card command either happens completely or not at all, even when power is cut in the middle
// of a write (DESIGN.md, Reliability). The card OS keeps its whole state as one image (a few KB)
// and commits a new image after every state-changing command through AtomicImage: two slots,
// A and B, each with a header (magic, format version, sequence number, length, SHA-256). A
// commit writes the slot that does NOT hold the current image, then syncs; the valid slot with
// the higher sequence number is the current image. A torn slot fails its checksum and the other
// slot wins. Layout: docs/card-image.md.
//
// Medium is the seam (like LevelDB's Env): the file backend in production, the fault-injection
// backend in the power-cut tests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::nvm {

class Medium {
 public:
  virtual ~Medium() = default;
  // The whole content as durable + written so far (a fresh medium is empty).
  virtual Result<Bytes> ReadAll() = 0;
  // Writes bytes at offset, extending the medium if needed.
  virtual Status WriteAt(std::uint64_t offset, ByteView data) = 0;
  // Makes every earlier write durable.
  virtual Status Sync() = 0;
};

enum class SyncMode {
  kFsync,  // fdatasync after every commit: a real card's EEPROM write
  kNone,   // no fsync (tmpfs benchmarks, throwaway cards)
};

// Opens (creating if missing, mode 0600) a file-backed medium.
Result<std::unique_ptr<Medium>> OpenFileMedium(const std::string& path,
                                               SyncMode mode = SyncMode::kFsync);

// A simulated medium for power-cut tests, modelled on a card's EEPROM or flash: there is no
// write cache, so every write is durable as soon as it happens and Sync is only a barrier. Every
// WriteAt is split at 512-byte sector boundaries of the medium and each piece is one numbered
// write point. CutPowerAtWrite(n) makes the n-th sector write (1-based, counted from the call)
// torn: only the first half of that piece reaches the medium (the sector ends up half new, half
// old); the torn WriteAt and every later WriteAt, Sync or ReadAll fail. This is harsher than a
// write-cache model (where a cut just drops everything unsynced): a half-written slot really is
// on the medium and recovery must reject it. Reopen() gives a medium holding exactly what
// survived, as a card reinserted after the cut would see it. docs/card-image.md.
class FaultInjectionMedium : public Medium {
 public:
  static constexpr std::size_t kSectorSize = 512;

  FaultInjectionMedium();
  explicit FaultInjectionMedium(Bytes durable_content);

  Result<Bytes> ReadAll() override;
  Status WriteAt(std::uint64_t offset, ByteView data) override;
  Status Sync() override;

  // REQUIRES: n >= 1.
  void CutPowerAtWrite(int n);
  bool power_lost() const { return power_lost_; }
  // Sector writes performed so far (including the torn one).
  int sector_writes() const { return sector_writes_; }
  // What a new power-on would read: every sector write that happened, the torn one half.
  Bytes SurvivingContent() const;
  std::unique_ptr<FaultInjectionMedium> Reopen() const;

 private:
  Bytes durable_;  // the medium's cells: written through, no cache
  int sector_writes_ = 0;
  int cut_at_ = -1;  // absolute sector write number that tears; -1 none
  bool power_lost_ = false;
};

class AtomicImage {
 public:
  // Recovers the current image from the medium: the valid slot with the highest sequence
  // number. An empty medium is a valid empty image (sequence 0), and so is a medium holding
  // only a torn first commit (slot A alone, with this format's magic and sequence 1, failing
  // its checksum): the state before that commit. Error when the medium has other content but
  // no valid slot (not an image, or both slots corrupt).
  static Result<AtomicImage> Open(std::unique_ptr<Medium> medium);

  // The chip's memory: each slot holds at most this much (header included). Slot A starts at
  // offset 0, slot B at kSlotCapacity. Commit of a larger image fails without writing anything
  // and the store stays usable (the card answers 6A84).
  static constexpr std::size_t kSlotCapacity = 64 * 1024;
  static constexpr std::size_t kHeaderSize = 52;  // docs/card-image.md
  static std::size_t MaxImageSize();

  AtomicImage(AtomicImage&&) noexcept = default;
  AtomicImage& operator=(AtomicImage&&) noexcept = default;

  const Bytes& image() const { return image_; }
  std::uint64_t sequence() const { return sequence_; }

  // Writes new_image durably. On success image() == new_image. On error (power cut, I/O error)
  // the in-memory image is unchanged and the medium holds either the old or the new image;
  // the store is dead: every later Commit fails until the medium is reopened with Open.
  Status Commit(ByteView new_image);

  Medium& medium() { return *medium_; }

 private:
  AtomicImage(std::unique_ptr<Medium> medium, Bytes image, std::uint64_t seq, int slot);
  std::unique_ptr<Medium> medium_;
  Bytes image_;
  std::uint64_t sequence_ = 0;
  int current_slot_ = -1;  // 0 = A, 1 = B, -1 = none yet
  bool dead_ = false;      // a Commit failed: the medium's state is unknown until reopened
};

}  // namespace medcard::nvm
