// The host's terminal gateway: docs/protocol.md's rules (section 9) on top of the Host services
// (docs/host.md "The terminal gateway"). It takes the frames a connection's Deframer cut out and
// answers each: order of checks (9.1), sign-on with working keys born in the key store (9.2),
// the MAC (6), the retry cache (9.4), refusals (9.6), header flags (9.7), and every message of
// section 7 by calling Host. Frames of several terminals are committed as one group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "host/host.h"
#include "iso8583/iso8583.h"
#include "keys/key_store.h"
#include "store/store.h"

namespace medcard::host {

namespace gateway_internal {
struct Request;     // one frame of a group, in gateway.cc
struct GroupCache;  // what the requests of one group share, in gateway.cc
}  // namespace gateway_internal

struct GatewayOptions {
  std::function<std::int64_t()> clock_us;  // default: the system clock (UTC µs); host date/time
  std::size_t max_frame = 8192;            // docs/protocol.md 2
};

// What to send back for one received frame (TPDU ‖ header ‖ ISO 8583 message, without the
// 2-byte length): frame = the answer (also without the length), or nullopt for no answer;
// close = close the connection after sending it (docs/protocol.md 9.6).
struct GatewayReply {
  std::optional<Bytes> frame;
  bool close = false;
};

class TerminalGateway {
 public:
  // REQUIRES: connection migrated with ledger::Migrations() and host::Migrations().
  // Thread-compatible (one thread uses it; the server has one processing thread).
  TerminalGateway(store::Connection& connection, keys::KeyStore& key_store,
                  GatewayOptions options = {});
  ~TerminalGateway();
  TerminalGateway(const TerminalGateway&) = delete;
  TerminalGateway& operator=(const TerminalGateway&) = delete;

  // Group commit: the frames (of any terminals, in arrival order) are handled in ONE database
  // transaction, each request in its own savepoint; answers in the same order, made only after
  // the COMMIT succeeded. A retryable database error re-runs the whole group; if the group
  // cannot commit, every request gets a 96 refusal and nothing of it stays.
  std::vector<GatewayReply> HandleGroup(std::span<const Bytes> frames);
  GatewayReply Handle(ByteView frame);  // a group of one

 private:
  std::vector<GatewayReply> RunGroup(std::span<const Bytes> frames, bool* retry);
  void Process(gateway_internal::Request& request);
  std::int64_t Now() const;

  store::Connection& connection_;
  keys::KeyStore& key_store_;
  GatewayOptions options_;
  Host host_;
  // Working MAC keys unwrapped from their stored cryptograms, by terminal number ‖ key version ‖
  // cryptogram (the database is the truth; an entry is only ever a shortcut to Unwrap).
  std::map<std::string, keys::KeyRef> mac_keys_;
  // Emptied at the start of every group (and of every retry of one).
  std::unique_ptr<gateway_internal::GroupCache> group_cache_;
};

}  // namespace medcard::host
