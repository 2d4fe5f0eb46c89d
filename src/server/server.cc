#include "server/server.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <array>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "iso8583/iso8583.h"

namespace medcard::server {
namespace detail {
namespace {

using asio::ip::tcp;
using TlsStream = asio::ssl::stream<tcp::socket>;

// The 2-byte length prefix caps what a reply can be (docs/protocol.md 2).
constexpr std::size_t kMaxEncodableFrame = 0xFFFF;
// How long an accept that failed (e.g. out of file descriptors) waits before the next one.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
// After the grace period, how long Shutdown waits for the forced closes to run.
constexpr std::chrono::seconds kForcedCloseWait{5};

}  // namespace

// What the processing thread and the shutdown see of a connection. Every member function runs
// on the connection's strand (post to executor()).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  virtual ~Connection() = default;
  virtual asio::any_io_executor executor() = 0;
  virtual void Begin() = 0;
  // The processing thread's answer to the connection's request in flight.
  virtual void Deliver(Reply reply) = 0;
  // Shutdown began: close now when idle, else after the answer in flight is written.
  virtual void BeginShutdown() = 0;
  virtual void ForceClose() = 0;
};

class ServerState {
 public:
  ServerState(Options options, GroupHandler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        io_(options_.io_threads),
        work_(asio::make_work_guard(io_)),
        acceptor_(asio::make_strand(io_)),
        accept_retry_timer_(acceptor_.get_executor()) {}

  Status Open();
  void Run();
  void Shutdown(std::chrono::milliseconds grace);
  std::uint16_t port() const { return port_; }
  Stats stats() const;

  // For connections.
  const Options& options() const { return options_; }
  void Submit(std::shared_ptr<Connection> connection, Bytes frame);
  void Unregister(std::uint64_t id);
  void CountFrame() { frames_received_.fetch_add(1, std::memory_order_relaxed); }
  void CountReply() { replies_sent_.fetch_add(1, std::memory_order_relaxed); }
  void CountFramingError() { framing_errors_.fetch_add(1, std::memory_order_relaxed); }
  void CountTimeout() { timeouts_.fetch_add(1, std::memory_order_relaxed); }

 private:
  struct Pending {
    std::shared_ptr<Connection> connection;
    Bytes frame;
  };

  void Accept();
  void OnAccept(const std::error_code& error, tcp::socket socket);
  void ProcessGroups();
  std::vector<std::shared_ptr<Connection>> LiveConnections();
  // Waits until no connection is registered or `deadline`; true when none is left.
  bool WaitForNoConnections(std::chrono::steady_clock::time_point deadline);

  const Options options_;
  const GroupHandler handler_;
  // Declared before everything that holds sockets or timers: destroyed last.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::optional<asio::ssl::context> tls_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  std::uint16_t port_ = 0;
  std::vector<std::thread> io_threads_;
  std::thread processing_thread_;

  std::mutex queue_mutex_;
  std::condition_variable queue_changed_;
  std::deque<Pending> queue_;
  bool stop_processing_ = false;

  mutable std::mutex connections_mutex_;
  std::condition_variable connections_changed_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections_;
  std::uint64_t next_connection_id_ = 1;

  std::atomic<bool> shutting_down_{false};
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;

  std::atomic<std::uint64_t> connections_accepted_{0}, frames_received_{0}, replies_sent_{0},
      groups_{0}, framing_errors_{0}, timeouts_{0}, connections_refused_{0}, largest_group_{0},
      handler_wall_us_{0}, handler_cpu_us_{0};
};

namespace {

// The calling thread's CPU time so far, µs.
std::uint64_t ThreadCpuMicroseconds() {
  timespec now{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0) return 0;
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000u +
         static_cast<std::uint64_t>(now.tv_nsec) / 1'000u;
}

std::string PeerText(const tcp::socket& socket) {
  std::error_code error;
  const tcp::endpoint peer = socket.remote_endpoint(error);
  if (error) return "?";
  return peer.address().to_string() + ":" + std::to_string(peer.port());
}

}  // namespace

// One terminal connection over Stream (tcp::socket, or TlsStream around the same bytes).
// Per connection one request at a time (docs/protocol.md 1): the next frame is not handed on
// before the answer to the previous one was written, so answers go out in request order.
template <typename Stream>
class StreamConnection final : public Connection {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  StreamConnection(ServerState& server, Stream stream, std::uint64_t id, std::string peer)
      : server_(server),
        stream_(std::move(stream)),
        timer_(stream_.get_executor()),
        deframer_(server.options().max_frame),
        id_(id),
        peer_(std::move(peer)) {}

  asio::any_io_executor executor() override { return stream_.get_executor(); }

  void Begin() override {
    spdlog::info("server: connection {} from {} open{}", id_, peer_, kTls ? " (TLS)" : "");
    if constexpr (kTls) {
      ArmTimer(server_.options().read_timeout, "TLS handshake");
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = Self()](const std::error_code& error) {
                                if (self->closed_) return;
                                if (error) {
                                  self->Close("TLS handshake failed: " + error.message());
                                  return;
                                }
                                self->NextRequest();
                              });
    } else {
      NextRequest();
    }
  }

  void Deliver(Reply reply) override {
    if (closed_) return;  // the peer left while the request was processed; nothing to send to
    if (!reply.frame) {
      in_flight_ = false;
      if (reply.close) {
        Close("closed by the handler");
      } else {
        NextRequest();
      }
      return;
    }
    if (reply.frame->empty() || reply.frame->size() > kMaxEncodableFrame) {
      spdlog::error("server: connection {}: handler reply of {} bytes cannot be framed", id_,
                    reply.frame->size());
      Close("unframeable reply");
      return;
    }
    write_buffer_.clear();
    AppendU16(write_buffer_, static_cast<std::uint16_t>(reply.frame->size()));
    Append(write_buffer_, *reply.frame);
    // A peer that stops reading must not hold the connection forever.
    ArmTimer(server_.options().read_timeout, "write");
    asio::async_write(
        stream_, asio::buffer(write_buffer_),
        [self = Self(), close = reply.close](const std::error_code& error, std::size_t) {
          if (self->closed_) return;
          if (error) {
            self->Close("write failed: " + error.message());
            return;
          }
          self->server_.CountReply();
          self->in_flight_ = false;
          if (close) {
            self->Close("closed by the handler after its answer");
            return;
          }
          self->NextRequest();
        });
  }

  void BeginShutdown() override {
    shutting_down_ = true;
    if (!in_flight_) Close("server shutting down");
  }

  void ForceClose() override { Close("shutdown grace period over"); }

 private:
  std::shared_ptr<StreamConnection> Self() {
    return std::static_pointer_cast<StreamConnection>(shared_from_this());
  }

  // Hands the next whole frame on, or reads more. REQUIRES: no request in flight.
  void NextRequest() {
    if (closed_) return;
    if (shutting_down_) {
      Close("server shutting down");
      return;
    }
    if (std::optional<Bytes> frame = deframer_.Next()) {
      timer_.cancel();
      timer_purpose_ = nullptr;
      in_flight_ = true;
      server_.CountFrame();
      server_.Submit(shared_from_this(), std::move(*frame));
      return;
    }
    if (deframer_.buffered() == 0) {
      ArmTimer(server_.options().idle_timeout, "idle");
    } else if (timer_purpose_ != kReadPurpose) {
      // The read timeout runs from the frame's first byte, not from the latest one.
      ArmTimer(server_.options().read_timeout, kReadPurpose);
    }
    stream_.async_read_some(asio::buffer(read_buffer_),
                            [self = Self()](const std::error_code& error, std::size_t count) {
                              self->OnRead(error, count);
                            });
  }

  void OnRead(const std::error_code& error, std::size_t count) {
    if (closed_) return;
    if (error) {
      Close(error == asio::error::eof ? std::string("closed by the peer")
                                      : "read failed: " + error.message());
      return;
    }
    const Status fed = deframer_.Feed(ByteView(read_buffer_.data(), count));
    if (!fed) {
      // docs/protocol.md 2: the stream cannot be resynchronised; close without answering.
      server_.CountFramingError();
      spdlog::warn("server: connection {} from {}: framing error: {}", id_, peer_,
                   fed.error().message);
      Close("framing error");
      return;
    }
    NextRequest();
  }

  void ArmTimer(std::chrono::milliseconds timeout, const char* purpose) {
    timer_purpose_ = purpose;
    const std::uint64_t generation = ++timer_generation_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = Self(), generation](const std::error_code& error) {
      if (error || self->closed_ || generation != self->timer_generation_) return;
      self->server_.CountTimeout();
      spdlog::warn("server: connection {} from {}: {} timeout", self->id_, self->peer_,
                   self->timer_purpose_);
      self->Close(std::string(self->timer_purpose_) + " timeout");
    });
  }

  void Close(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    ++timer_generation_;
    timer_.cancel();
    std::error_code ignored;
    // No TLS close_notify: the terminal treats any close alike (docs/server.md).
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
    spdlog::info("server: connection {} from {} closed: {}", id_, peer_, reason);
    server_.Unregister(id_);
  }

  static constexpr const char* kReadPurpose = "read";

  ServerState& server_;
  Stream stream_;
  asio::steady_timer timer_;
  iso8583::Deframer deframer_;
  std::array<std::uint8_t, 4096> read_buffer_{};
  Bytes write_buffer_;
  const std::uint64_t id_;
  const std::string peer_;
  const char* timer_purpose_ = nullptr;
  std::uint64_t timer_generation_ = 0;
  bool in_flight_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
};

Status ServerState::Open() {
  if (options_.max_frame == 0 || options_.max_frame > kMaxEncodableFrame) {
    return MakeError("server: max_frame must be 1..65535");
  }
  if (options_.max_group == 0) return MakeError("server: max_group must be at least 1");
  if (options_.io_threads < 1) return MakeError("server: io_threads must be at least 1");
  if (options_.idle_timeout.count() <= 0 || options_.read_timeout.count() <= 0) {
    return MakeError("server: timeouts must be positive");
  }
  std::error_code error;
  if (options_.tls) {
    tls_.emplace(asio::ssl::context::tls_server);
    tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                          asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use,
                      error);
    if (!error && SSL_CTX_set_min_proto_version(tls_->native_handle(), TLS1_2_VERSION) != 1) {
      error = asio::error::invalid_argument;
    }
    if (error) return MakeError("server: TLS setup: " + error.message());
    tls_->use_certificate_chain_file(options_.tls->certificate_chain_file, error);
    if (error) {
      return MakeError("server: certificate chain " + options_.tls->certificate_chain_file + ": " +
                       error.message());
    }
    tls_->use_private_key_file(options_.tls->private_key_file, asio::ssl::context::pem, error);
    if (error || SSL_CTX_check_private_key(tls_->native_handle()) != 1) {
      return MakeError("server: private key " + options_.tls->private_key_file +
                       " unreadable or not the certificate's");
    }
  }
  const asio::ip::address address = asio::ip::make_address(options_.address, error);
  if (error) return MakeError("server: bad address " + options_.address);
  const tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(endpoint, error);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return MakeError("server: cannot listen on " + options_.address + ":" +
                     std::to_string(options_.port) + ": " + error.message());
  }
  port_ = acceptor_.local_endpoint().port();
  return Status::Ok();
}

void ServerState::Run() {
  Accept();
  for (int i = 0; i < options_.io_threads; ++i) {
    io_threads_.emplace_back([this] {
      try {
        io_.run();
      } catch (const std::exception& e) {
        spdlog::critical("server: I/O thread stopped: {}", e.what());
      }
    });
  }
  processing_thread_ = std::thread([this] { ProcessGroups(); });
  spdlog::info("server: listening on {}:{}{}", options_.address, port_, tls_ ? " (TLS)" : "");
}

void ServerState::Accept() {
  acceptor_.async_accept(asio::make_strand(io_),
                         [this](const std::error_code& error, tcp::socket socket) {
                           OnAccept(error, std::move(socket));
                         });
}

void ServerState::OnAccept(const std::error_code& error, tcp::socket socket) {
  if (!acceptor_.is_open() || error == asio::error::operation_aborted) return;
  if (error) {
    spdlog::error("server: accept failed: {}", error.message());
    accept_retry_timer_.expires_after(kAcceptRetryDelay);
    accept_retry_timer_.async_wait([this](const std::error_code& wait_error) {
      if (!wait_error && acceptor_.is_open()) Accept();
    });
    return;
  }
  connections_accepted_.fetch_add(1, std::memory_order_relaxed);
  std::string peer = PeerText(socket);
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(connections_mutex_);
    if (shutting_down_ || connections_.size() >= options_.max_connections) {
      connections_refused_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("server: connection from {} refused: {}", peer,
                   shutting_down_ ? "shutting down" : "too many connections");
      std::error_code ignored;
      socket.close(ignored);
      Accept();
      return;
    }
    std::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const std::uint64_t id = next_connection_id_++;
    if (tls_) {
      connection = std::make_shared<StreamConnection<TlsStream>>(
          *this, TlsStream(std::move(socket), *tls_), id, std::move(peer));
    } else {
      connection = std::make_shared<StreamConnection<tcp::socket>>(*this, std::move(socket), id,
                                                                   std::move(peer));
    }
    connections_.emplace(id, connection);
  }
  asio::post(connection->executor(), [connection] { connection->Begin(); });
  Accept();
}

void ServerState::Unregister(std::uint64_t id) {
  {
    std::lock_guard lock(connections_mutex_);
    connections_.erase(id);
  }
  connections_changed_.notify_all();
}

void ServerState::Submit(std::shared_ptr<Connection> connection, Bytes frame) {
  {
    std::lock_guard lock(queue_mutex_);
    queue_.push_back(Pending{std::move(connection), std::move(frame)});
  }
  queue_changed_.notify_one();
}

// The one processing thread: everything queued (at most max_group) goes to the handler at once,
// so under load the groups grow by themselves and one commit serves many terminals.
void ServerState::ProcessGroups() {
  std::vector<Pending> group;
  std::vector<Bytes> frames;
  for (;;) {
    group.clear();
    frames.clear();
    {
      std::unique_lock lock(queue_mutex_);
      queue_changed_.wait(lock, [this] { return !queue_.empty() || stop_processing_; });
      if (stop_processing_) return;
      const std::size_t count = std::min(queue_.size(), options_.max_group);
      for (std::size_t i = 0; i < count; ++i) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (Pending& pending : group) frames.push_back(std::move(pending.frame));
    groups_.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t largest = largest_group_.load(std::memory_order_relaxed);
    while (frames.size() > largest && !largest_group_.compare_exchange_weak(
                                          largest, frames.size(), std::memory_order_relaxed)) {
    }

    std::vector<Reply> replies;
    bool answered = false;
    const auto wall_start = std::chrono::steady_clock::now();
    const std::uint64_t cpu_start = ThreadCpuMicroseconds();
    try {
      replies = handler_(std::span<const Bytes>(frames));
      answered = replies.size() == frames.size();
      if (!answered) {
        spdlog::error("server: handler returned {} replies for {} frames; closing them",
                      replies.size(), frames.size());
      }
    } catch (const std::exception& e) {
      spdlog::error("server: handler failed: {}; closing the group's connections", e.what());
    } catch (...) {
      spdlog::error("server: handler failed; closing the group's connections");
    }
    handler_cpu_us_.fetch_add(ThreadCpuMicroseconds() - cpu_start, std::memory_order_relaxed);
    handler_wall_us_.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - wall_start)
                                       .count()),
        std::memory_order_relaxed);
    for (std::size_t i = 0; i < group.size(); ++i) {
      Reply reply = answered ? std::move(replies[i]) : Reply{std::nullopt, true};
      std::shared_ptr<Connection> connection = std::move(group[i].connection);
      asio::post(connection->executor(), [connection, reply = std::move(reply)]() mutable {
        connection->Deliver(std::move(reply));
      });
    }
  }
}

std::vector<std::shared_ptr<Connection>> ServerState::LiveConnections() {
  std::vector<std::shared_ptr<Connection>> live;
  std::lock_guard lock(connections_mutex_);
  for (const auto& [id, weak] : connections_) {
    if (std::shared_ptr<Connection> connection = weak.lock()) live.push_back(connection);
  }
  return live;
}

bool ServerState::WaitForNoConnections(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(connections_mutex_);
  return connections_changed_.wait_until(lock, deadline, [this] { return connections_.empty(); });
}

void ServerState::Shutdown(std::chrono::milliseconds grace) {
  std::lock_guard shutdown_lock(shutdown_mutex_);
  if (shut_down_) return;
  shut_down_ = true;
  {
    std::lock_guard lock(connections_mutex_);
    shutting_down_ = true;
  }
  // Stop accepting: from here on a connect is refused by the kernel.
  std::promise<void> acceptor_closed;
  asio::post(acceptor_.get_executor(), [this, &acceptor_closed] {
    std::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
    acceptor_closed.set_value();
  });
  acceptor_closed.get_future().wait();
  spdlog::info("server: shutting down (grace {} ms)", grace.count());

  for (const std::shared_ptr<Connection>& connection : LiveConnections()) {
    asio::post(connection->executor(), [connection] { connection->BeginShutdown(); });
  }
  if (!WaitForNoConnections(std::chrono::steady_clock::now() + grace)) {
    const std::vector<std::shared_ptr<Connection>> remaining = LiveConnections();
    spdlog::warn("server: closing {} connections still busy after the grace period",
                 remaining.size());
    for (const std::shared_ptr<Connection>& connection : remaining) {
      asio::post(connection->executor(), [connection] { connection->ForceClose(); });
    }
    WaitForNoConnections(std::chrono::steady_clock::now() + kForcedCloseWait);
  }
  {
    std::lock_guard lock(queue_mutex_);
    stop_processing_ = true;
    queue_.clear();
  }
  queue_changed_.notify_all();
  if (processing_thread_.joinable()) processing_thread_.join();
  work_.reset();
  io_.stop();
  for (std::thread& thread : io_threads_) thread.join();
  io_threads_.clear();
  spdlog::info("server: stopped");
}

Stats ServerState::stats() const {
  Stats stats;
  stats.connections_accepted = connections_accepted_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(connections_mutex_);
    stats.connections_open = connections_.size();
  }
  stats.frames_received = frames_received_.load(std::memory_order_relaxed);
  stats.replies_sent = replies_sent_.load(std::memory_order_relaxed);
  stats.groups = groups_.load(std::memory_order_relaxed);
  stats.framing_errors = framing_errors_.load(std::memory_order_relaxed);
  stats.timeouts = timeouts_.load(std::memory_order_relaxed);
  stats.connections_refused = connections_refused_.load(std::memory_order_relaxed);
  stats.largest_group = largest_group_.load(std::memory_order_relaxed);
  stats.handler_wall_us = handler_wall_us_.load(std::memory_order_relaxed);
  stats.handler_cpu_us = handler_cpu_us_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace detail

Result<std::unique_ptr<Server>> Server::Start(Options options, GroupHandler handler) {
  if (!handler) return MakeError("server: no handler");
  // Exceptions stay here: Asio and OpenSSL may throw while setting up.
  try {
    auto state = std::make_unique<detail::ServerState>(std::move(options), std::move(handler));
    if (Status opened = state->Open(); !opened) return opened.error();
    state->Run();
    return std::unique_ptr<Server>(new Server(std::move(state)));
  } catch (const std::exception& e) {
    return MakeError(std::string("server: cannot start: ") + e.what());
  }
}

Server::Server(std::unique_ptr<detail::ServerState> state) : state_(std::move(state)) {}

Server::~Server() { Shutdown(std::chrono::milliseconds{0}); }

std::uint16_t Server::port() const { return state_->port(); }

Stats Server::stats() const { return state_->stats(); }

void Server::Shutdown(std::chrono::milliseconds grace) { state_->Shutdown(grace); }

}  // namespace medcard::server
