// Readers: the one way the terminal, the teller station and the CLI talk to a card.
//
//   Reader            the interface (connect, transmit, power cycle, wait, transactions)
//   Send()            C-APDU -> R-APDU with the T=0 transport rules (61xx, 6Cxx) applied
//   InProcessReader   a virtual card object (iso7816::Icc) in this process
//   PcscReader        any PC/SC reader through pcsc-lite (pcscd)
//   VpcdBridge        serves an Icc to pcscd's vsmartcard-vpcd reader, so every PC/SC program
//                     sees the virtual card as a real one
//
// docs/readers.md describes the backends and the vpcd protocol.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/apdu.h"
#include "iso7816/icc.h"

namespace medcard::reader {

// kCold removes power and powers up again (SCARD_UNPOWER_CARD); kWarm resets the card with
// power kept (SCARD_RESET_CARD). Both clear the card's volatile state and answer an ATR.
enum class Reset { kCold, kWarm };

class Reader {
 public:
  virtual ~Reader() = default;

  virtual std::string Name() const = 0;

  // Powers the card up if needed and opens a connection; returns the ATR. Connecting while
  // connected returns the current ATR without resetting the card.
  virtual Result<Bytes> Connect() = 0;
  // Closes the connection and leaves the card powered (SCARD_LEAVE_CARD). No-op if not connected.
  virtual Status Disconnect() = 0;
  virtual bool Connected() const = 0;

  virtual Result<bool> CardPresent() = 0;
  // Block until a card is in the reader (true) or the timeout passes (false). Errors: the
  // reader or the PC/SC service went away.
  virtual Result<bool> WaitForCard(std::chrono::milliseconds timeout) = 0;
  // Block until the reader is empty (true) or the timeout passes (false).
  virtual Result<bool> WaitForRemoval(std::chrono::milliseconds timeout) = 0;

  // One C-APDU (serialized) in, the R-APDU (data || SW1 SW2) out, exactly as the card answered:
  // no transport rule applied (see Send). Errors: not connected, card removed, mute card.
  virtual Result<Bytes> Transmit(ByteView command_apdu) = 0;
  // Resets the card and returns its new ATR. Errors when not connected.
  virtual Result<Bytes> PowerCycle(Reset kind = Reset::kCold) = 0;

  // Exclusive access to the card for a sequence of APDUs (a purchase: INITIALIZE, DEBIT).
  // Other connections (other processes, other threads for the in-process reader) wait until
  // EndTransaction. Prefer the Transaction guard below.
  virtual Status BeginTransaction() = 0;
  virtual Status EndTransaction() = 0;
};

// RAII guard for Begin/EndTransaction:
//   auto txn = Transaction::Begin(reader); if (!txn) return txn.error(); ... txn->End();
// The destructor ends a transaction that End() did not (errors ignored there: a removed card
// has ended it already).
class [[nodiscard]] Transaction {
 public:
  static Result<Transaction> Begin(Reader& reader);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&& other) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  Status End();

 private:
  explicit Transaction(Reader* reader) : reader_(reader) {}
  Reader* reader_ = nullptr;  // null once ended or moved from
};

// Serializes the command, transmits it and applies the ISO 7816-3 T=0 transport rules (also
// used by T=1 cards that answer like T=0 ones), so callers see one complete R-APDU:
//   61xx: GET RESPONSE (00 C0 00 00 xx) and append its data, repeated while the card answers 61xx;
//   6Cxx: send the same command again once with Le = xx (00 means 256).
// A card that keeps answering 61xx past 65536 bytes of data is an error, not an endless loop.
Result<iso7816::ResponseApdu> Send(Reader& reader, const iso7816::CommandApdu& command);

// ---------------------------------------------------------------------------------------------
// In-process backend: a virtual card object in the same process, inserted and removed by code.
// Thread-safe: one thread may WaitForCard while another inserts.
class InProcessReader final : public Reader {
 public:
  explicit InProcessReader(std::string name);
  // The reader shares ownership of the card.
  InProcessReader(std::string name, std::shared_ptr<iso7816::Icc> card);
  // The caller keeps `card` alive while it is in this reader.
  InProcessReader(std::string name, iso7816::Icc* card);

  // Errors when a card is already in the reader.
  Status InsertCard(std::shared_ptr<iso7816::Icc> card);
  Status InsertCard(iso7816::Icc* card);  // non-owning, as the constructor above
  // Pulls the card out: it loses power, any transaction ends, the open connection answers
  // "card removed" until the next Connect. Returns the card, or null when the reader was empty.
  std::shared_ptr<iso7816::Icc> RemoveCard();

  std::string Name() const override { return name_; }
  Result<Bytes> Connect() override;
  Status Disconnect() override;
  bool Connected() const override;
  Result<bool> CardPresent() override;
  Result<bool> WaitForCard(std::chrono::milliseconds timeout) override;
  Result<bool> WaitForRemoval(std::chrono::milliseconds timeout) override;
  Result<Bytes> Transmit(ByteView command_apdu) override;
  Result<Bytes> PowerCycle(Reset kind = Reset::kCold) override;
  // The transaction belongs to the calling thread: other threads' Transmit, PowerCycle and
  // BeginTransaction wait until it ends. Nested Begin/End on one thread are counted.
  Status BeginTransaction() override;
  Status EndTransaction() override;

 private:
  // REQUIRES: mutex_ held. Waits until no other thread holds a transaction.
  void WaitForTurn(std::unique_lock<std::mutex>& lock);
  Status CheckConnected() const;  // REQUIRES: mutex_ held

  const std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::shared_ptr<iso7816::Icc> card_;
  // Each insertion or removal starts a new generation; a connection only talks to the card
  // of the generation it was opened on (a reinserted card needs a new Connect, as in PC/SC).
  std::uint64_t card_generation_ = 0;
  std::uint64_t connected_generation_ = 0;
  bool powered_ = false;
  bool connected_ = false;
  std::thread::id transaction_owner_;
  int transaction_depth_ = 0;
};

// ---------------------------------------------------------------------------------------------
// PC/SC backend (pcsc-lite). Each PcscReader owns its own PC/SC contexts, so a thread blocked in
// WaitForCard never holds up another thread's Transmit.

// Reader names known to pcscd, in its order. Empty when there is no reader.
Result<std::vector<std::string>> ListReaders();

// Picks a reader from ListReaders(): an exact name, else a decimal index into the list, else a
// unique substring ("PCD 00 01"). Errors: "reader 'X' not found (readers: ...)", ambiguous name.
Result<std::string> ResolveReaderName(std::string_view name_or_index);

class PcscReader final : public Reader {
 public:
  // Resolves the name (see ResolveReaderName) and prepares the reader; does not connect.
  static Result<std::unique_ptr<PcscReader>> Open(std::string_view name_or_index);
  ~PcscReader() override;
  PcscReader(const PcscReader&) = delete;
  PcscReader& operator=(const PcscReader&) = delete;

  std::string Name() const override;
  // SCardConnect, shared mode, T=0 or T=1 as the card offers.
  Result<Bytes> Connect() override;
  Status Disconnect() override;
  bool Connected() const override;
  Result<bool> CardPresent() override;
  Result<bool> WaitForCard(std::chrono::milliseconds timeout) override;
  Result<bool> WaitForRemoval(std::chrono::milliseconds timeout) override;
  Result<Bytes> Transmit(ByteView command_apdu) override;
  Result<Bytes> PowerCycle(Reset kind = Reset::kCold) override;
  Status BeginTransaction() override;
  Status EndTransaction() override;

  // "T=0" or "T=1" while connected, else "".
  std::string Protocol() const;

 private:
  struct Impl;
  explicit PcscReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// vpcd bridge: puts an Icc into one slot of pcscd's vsmartcard-vpcd reader.

// vpcd listens on TCP port 35963 + slot (vsmartcard's VPCDPORT).
inline constexpr std::uint16_t kVpcdBasePort = 35963;
// The PC/SC name of a vpcd slot with Debian's /etc/reader.conf.d/vpcd ("Virtual PCD 00 00").
std::string VpcdReaderName(unsigned slot);

class VpcdBridge {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    unsigned slot = 0;
    std::uint16_t base_port = kVpcdBasePort;  // the slot's port is base_port + slot
    // Reconnect back-off when vpcd is not listening: doubles from initial to max.
    std::chrono::milliseconds initial_backoff{50};
    std::chrono::milliseconds max_backoff{1000};
    std::chrono::milliseconds connect_timeout{2000};
    // Connection events ("connected to 127.0.0.1:35963", ...). Never carries APDU contents
    // (they may hold a PIN). Called on the Run() thread.
    std::function<void(std::string_view)> on_event;
  };

  // REQUIRES: card != null. While Run() runs, the bridge is the only user of the card.
  VpcdBridge(std::shared_ptr<iso7816::Icc> card, Options options);
  VpcdBridge(std::shared_ptr<iso7816::Icc> card, unsigned slot);
  ~VpcdBridge();  // REQUIRES: Run() has returned
  VpcdBridge(const VpcdBridge&) = delete;
  VpcdBridge& operator=(const VpcdBridge&) = delete;

  // Connects to vpcd (retrying with back-off while it is not listening) and serves the card
  // until Stop(); reconnects when pcscd restarts. Returns OK after Stop(), an error when the
  // card went dead (an empty ATR or R-APDU: the connection is closed, pcscd sees the card
  // removed) — Run() again reinserts it.
  Status Run();
  // Ends Run() and closes the connection (the card is removed from the reader). Safe from any
  // thread and from a signal handler. A stopped bridge stays stopped.
  void Stop() noexcept;

  bool connected() const { return connected_.load(); }
  // Connections to vpcd made so far (a reconnect after a pcscd restart counts again).
  std::uint64_t connections() const { return connections_.load(); }

 private:
  enum class Outcome { kStopped, kPeerClosed, kCardDead };
  int ConnectOnce();  // a connected non-blocking socket, or -1
  bool SleepUnlessStopped(std::chrono::milliseconds duration);
  Outcome Serve(int socket_fd);
  void Event(std::string_view message) const;

  std::shared_ptr<iso7816::Icc> card_;
  Options options_;
  int wake_pipe_[2] = {-1, -1};  // Stop() writes a byte: async-signal-safe wake-up
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> connections_{0};
};

}  // namespace medcard::reader
