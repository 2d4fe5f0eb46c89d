// The command interpreter of the card OS: one C-APDU in, one answer out, on the in-memory
// state. Persistence (commit, rollback, death) is Card's business (card.cc); the engine only
// marks the state dirty when a command changed it. Internal to the card component.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <functional>
#include <optional>

#include "card/personalize.h"
#include "card/state.h"
#include "iso7816/apdu.h"
#include "iso7816/status.h"

namespace medcard::card::internal {

using iso7816::CommandApdu;
using iso7816::StatusWord;

struct Reply {
  Bytes data;
  StatusWord sw;
};
inline Reply Sw(StatusWord sw) { return Reply{{}, sw}; }

enum class PendingKind { kLoad, kPurchase, kCashWithdraw, kUnload, kOverdrawUpdate };

// An INITIALIZE waiting for its CREDIT / DEBIT / UPDATE (volatile).
struct Pending {
  PendingKind kind = PendingKind::kLoad;
  bool ed = true;  // the wallet: ED (P2 01) or EP (P2 02)
  std::uint8_t type = 0;
  std::uint8_t key_index = 0;
  std::uint32_t amount = 0;
  std::array<std::uint8_t, 6> terminal{};
  std::array<std::uint8_t, 4> random{};
  std::uint16_t serial = 0;
  Bytes session_key;  // load, unload, overdraw update: computed by INITIALIZE
};

// What a power cycle forgets. Selection and security states are snapshotted per command so a
// rolled-back command leaves them as they were.
struct Selection {
  int current_df = 0;
  int current_ef = kNoFile;
  int last_name_match = kNoFile;   // SELECT by name, P2 02 "next occurrence" continues after it
  bool pin_verified = false;       // the PIN of current_df
  std::bitset<256> external_auth;  // key indexes EXTERNAL AUTHENTICATEd in current_df
};

// One command being executed: its APDU and the volatile state it consumed.
struct Ctx {
  const CommandApdu& apdu;
  std::optional<Pending> pending;
  std::optional<Bytes> challenge;
  bool sm() const { return (apdu.cla & 0x04) != 0; }
};

class Engine {
 public:
  Engine(CardState state, std::function<Bytes(std::size_t)> random);

  // REQUIRES: a parsed APDU. Sets dirty() when the persistent state changed.
  Reply Execute(const CommandApdu& apdu);
  // An APDU that failed to parse still cancels a pending INITIALIZE and the challenge.
  void CancelVolatile();
  void PowerCycle();

  const CardState& state() const { return state_; }
  bool TakeDirty() { return std::exchange(dirty_, false); }
  // The command's changes are undone: persistent state from `committed`, selection as before.
  Status Rollback(ByteView committed);

 private:
  using Handler = Reply (Engine::*)(Ctx&);
  struct Command;
  static const Command* Lookup(std::uint8_t ins);

  // engine.cc: shared machinery
  File& df() { return state_.files[static_cast<std::size_t>(sel_.current_df)]; }
  File& file(int index) { return state_.files[static_cast<std::size_t>(index)]; }
  void MarkDirty() { dirty_ = true; }
  Bytes Random(std::size_t n);
  Key* FindKey(int df_index, KeyUsage usage, std::uint8_t index);
  Key* FirstKey(int df_index, KeyUsage usage);
  // 4-byte MAC check; a failure counts against `key`, a success clears its count.
  bool CheckMac(Key& key, ByteView expected, ByteView got);
  // Secure messaging (CLA 04/84): MAC over CLA INS P1 P2 Lc ‖ payload with `key`, IV = the
  // challenge. Answers 6984 without challenge, 6983 locked key, 6988 wrong MAC.
  StatusWord VerifySm(Ctx& ctx, Key& key, ByteView payload, ByteView mac);
  StatusWord VerifySmWithUsage(Ctx& ctx, int df_index, KeyUsage usage, ByteView payload,
                               ByteView mac);
  StatusWord VerifyTransportMac(Ctx& ctx, ByteView payload, ByteView mac);
  // Read or write access to an EF of the current DF; verifies the MAC of an SM command.
  StatusWord CheckAccess(Ctx& ctx, const AccessCondition& ac, bool write, ByteView payload,
                         ByteView mac);
  int FindSfi(std::uint8_t sfi);
  int FindChildEf(int df_index, std::uint8_t sfi);
  void ClearSecurity();
  bool PinMatches(const Pin& pin, std::string_view digits) const;
  void SetPin(Pin& pin, std::string_view digits);
  Reply Answer(const CommandApdu& apdu, Bytes data);  // 6Cxx when Le is short

  // fs.cc
  Reply Select(Ctx& ctx);
  Reply SelectFile(Ctx& ctx, int index);
  int FindByFid(std::uint16_t fid);
  Bytes Fci(int df_index);
  Bytes Fcp(int ef_index);
  Reply ReadBinary(Ctx& ctx);
  Reply UpdateBinary(Ctx& ctx);
  Reply ReadRecord(Ctx& ctx);
  Reply UpdateRecord(Ctx& ctx);
  Reply AppendRecord(Ctx& ctx);
  // Splits an SM command's data into payload and MAC; nullopt answer means OK.
  struct SmSplit {
    ByteView payload, mac;
    std::optional<StatusWord> error;
  };
  SmSplit SplitSm(const Ctx& ctx);

  // security.cc
  Reply GetChallenge(Ctx& ctx);
  Reply GetData(Ctx& ctx);
  Reply ExternalAuthenticate(Ctx& ctx);
  Reply InternalAuthenticate(Ctx& ctx);
  Reply Verify(Ctx& ctx);
  Reply ChangeOrReloadPin(Ctx& ctx);
  Reply PinUnblock(Ctx& ctx);
  Reply ApplicationBlock(Ctx& ctx);
  Reply ApplicationUnblock(Ctx& ctx);
  Reply CardBlock(Ctx& ctx);

  // purse.cc
  Reply Initialize(Ctx& ctx);
  Reply CreditForLoad(Ctx& ctx);
  Reply Debit(Ctx& ctx);
  Reply UpdateOverdrawLimit(Ctx& ctx);
  Reply GetBalance(Ctx& ctx);
  Reply GetTransactionProve(Ctx& ctx);
  // The SFI 18 record and the GET TRANSACTION PROVE answer of a completed transaction.
  void Record(const Pending& p, std::uint16_t serial, std::uint32_t overdraw_limit,
              std::uint32_t amount, ByteView date, ByteView time, const Proof& proof);

  // perso.cc
  Reply CreateFile(Ctx& ctx);
  Reply WriteKey(Ctx& ctx);
  Reply SetPinCommand(Ctx& ctx);
  Reply EndPersonalisation(Ctx& ctx);

  CardState state_;
  std::function<Bytes(std::size_t)> random_;
  Selection sel_;
  Selection saved_sel_;
  std::optional<Pending> pending_;
  std::optional<Bytes> challenge_;
  bool dirty_ = false;
};

// The PIN inside an 8-byte PIN block enciphered with `key` (3DES-ECB): len(1, bytes of packed
// PIN) ‖ packed BCD PIN ‖ 80 00... nullopt when malformed.
std::optional<std::string> ParseEncipheredPin(ByteView key, ByteView cryptogram);

// Answer lengths of fixed-length answers, for the 6Cxx check before execution.
std::optional<std::size_t> FixedAnswerLength(const CommandApdu& apdu);

}  // namespace medcard::card::internal
