// The bank host's network server: accepts terminal connections (TCP, optionally TLS 1.2+),
// cuts the byte streams into frames (docs/protocol.md 2) and hands them, in groups, to one
// processing thread that answers them and commits once per group (group commit). It moves
// frames and knows nothing of their content: the host's protocol layer is the GroupHandler.
// Threads, timeouts, TLS and shutdown: docs/server.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::server {
namespace detail {
class ServerState;
}

// One answer for one request frame (TPDU ‖ header ‖ message, without the 2-byte length).
// A frame must be 1..65535 bytes (the length prefix's range); anything else closes the
// connection without an answer (logged).
struct Reply {
  std::optional<Bytes> frame;  // nullopt: nothing to send
  bool close = false;          // close the connection after sending `frame`
};

// Called on the server's ONE processing thread with the requests that arrived since the last
// call (at most Options::max_group, from any connections, in arrival order); returns one Reply
// per frame, same order. It commits before returning (group commit): the server sends nothing
// of a group before the handler returned. A handler that throws or returns the wrong number of
// replies gets the group's connections closed without an answer (logged).
using GroupHandler = std::function<std::vector<Reply>(std::span<const Bytes> frames)>;

struct TlsOptions {
  std::string certificate_chain_file;  // PEM
  std::string private_key_file;        // PEM
};

struct Options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port (see port())
  std::optional<TlsOptions> tls;
  std::size_t max_frame = 8192;                     // docs/protocol.md 2
  std::chrono::milliseconds idle_timeout{120'000};  // no request for this long: close
  std::chrono::milliseconds read_timeout{30'000};   // a frame started but not finished: close
  std::size_t max_group = 256;
  std::size_t max_connections = 10'000;  // more: accepted and closed at once
  int io_threads = 1;
};

struct Stats {  // since Start
  std::uint64_t connections_accepted = 0, connections_open = 0, frames_received = 0,
                replies_sent = 0, groups = 0, framing_errors = 0, timeouts = 0;
  // Accepted beyond max_connections and closed at once (also counted in connections_accepted).
  std::uint64_t connections_refused = 0;
  // The largest group handed to the handler.
  std::uint64_t largest_group = 0;
  // Time the processing thread spent in the handler (group commit included): wall clock, and the
  // thread's CPU time (the rest of the wall time is waiting, e.g. for the commit's fsync). With
  // frames_received they give the host's own cost per request, whatever else the machine runs.
  std::uint64_t handler_wall_us = 0, handler_cpu_us = 0;
};

class Server {
 public:
  // Binds, listens and starts the I/O threads and the processing thread. Errors: bad address,
  // port in use, unreadable certificate or key, options out of range.
  static Result<std::unique_ptr<Server>> Start(Options options, GroupHandler handler);
  ~Server();  // Shutdown(0)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const;
  Stats stats() const;
  // Graceful: stop accepting; requests already received are processed and their answers sent;
  // then every connection is closed. Waits at most `grace` for the in-flight ones, then closes
  // them (and for the handler call in progress to return). Idempotent.
  // REQUIRES: not called from the handler (it waits for the processing thread).
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds{10'000});

 private:
  explicit Server(std::unique_ptr<detail::ServerState> state);
  std::unique_ptr<detail::ServerState> state_;
};

}  // namespace medcard::server
