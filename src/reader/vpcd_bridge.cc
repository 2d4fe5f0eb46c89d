// VpcdBridge: serves an Icc to vsmartcard's vpcd driver inside pcscd over TCP (plain POSIX
// sockets, non-blocking, every wait also watching the Stop() pipe).
//
// vpcd protocol (vsmartcard, src/vpcd/vpcd.c): vpcd listens on port 35963 + slot; the virtual
// card connects. Each message, both ways: 2-byte big-endian length || payload. A 1-byte payload
// from vpcd is a control code (00 power off, 01 power on, 02 reset, 04 get ATR — answered with
// the ATR as a message); a longer one is a C-APDU, answered with the R-APDU. Closing the
// connection removes the card.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "reader/reader.h"

namespace medcard::reader {

namespace {

constexpr std::uint8_t kControlPowerOff = 0x00;
constexpr std::uint8_t kControlPowerOn = 0x01;
constexpr std::uint8_t kControlReset = 0x02;
constexpr std::uint8_t kControlGetAtr = 0x04;
constexpr std::size_t kMaxPayload = 0xFFFF;  // the 2-byte length prefix

enum class Io { kOk, kStopped, kClosed };

// Waits until `fd` is ready for `events` or Stop() wrote to the wake pipe. timeout_ms < 0: no
// limit. Returns kOk when fd is ready, kStopped when stopped, kClosed on timeout or poll error.
Io WaitReady(int fd, short events, int wake_fd, int timeout_ms) {
  pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
  for (;;) {
    const int n = poll(fds, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Io::kClosed;
    if ((fds[1].revents & POLLIN) != 0) return Io::kStopped;
    return Io::kOk;  // ready, or POLLERR/POLLHUP which the next recv/send reports
  }
}

Io ReadExact(int fd, int wake_fd, std::uint8_t* buffer, std::size_t length) {
  std::size_t done = 0;
  while (done < length) {
    // vpcd writes a message's length and its bytes separately, so with Nagle on its side the
    // bytes wait for our ACK of the length; delayed, that ACK costs ~40 ms per APDU. Linux
    // clears QUICKACK after it acts, hence before every read.
    const int quick_ack = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &quick_ack, sizeof quick_ack);
    const ssize_t n = recv(fd, buffer + done, length - done, 0);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Io::kClosed;
    if (Io ready = WaitReady(fd, POLLIN, wake_fd, -1); ready != Io::kOk) return ready;
  }
  return Io::kOk;
}

Io WriteAll(int fd, int wake_fd, const std::uint8_t* buffer, std::size_t length) {
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n = send(fd, buffer + done, length - done, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Io::kClosed;
    if (Io ready = WaitReady(fd, POLLOUT, wake_fd, -1); ready != Io::kOk) return ready;
  }
  return Io::kOk;
}

Io SendMessage(int fd, int wake_fd, ByteView payload) {
  Bytes message;
  message.reserve(2 + payload.size());
  AppendU16(message, static_cast<std::uint16_t>(payload.size()));
  Append(message, payload);
  return WriteAll(fd, wake_fd, message.data(), message.size());
}

}  // namespace

std::string VpcdReaderName(unsigned slot) {
  return "Virtual PCD 00 " + std::string(slot < 10 ? "0" : "") + std::to_string(slot);
}

VpcdBridge::VpcdBridge(std::shared_ptr<iso7816::Icc> card, Options options)
    : card_(std::move(card)), options_(std::move(options)) {
  if (pipe2(wake_pipe_, O_NONBLOCK | O_CLOEXEC) != 0) {
    wake_pipe_[0] = -1;
    wake_pipe_[1] = -1;
  }
}

namespace {
VpcdBridge::Options ForSlot(unsigned slot) {
  VpcdBridge::Options options;
  options.slot = slot;
  return options;
}
}  // namespace

VpcdBridge::VpcdBridge(std::shared_ptr<iso7816::Icc> card, unsigned slot)
    : VpcdBridge(std::move(card), ForSlot(slot)) {}

VpcdBridge::~VpcdBridge() {
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
}

void VpcdBridge::Stop() noexcept {
  const int saved_errno = errno;  // a signal handler must leave errno as it found it
  stop_.store(true);
  if (wake_pipe_[1] >= 0) {
    const std::uint8_t byte = 1;
    // Stays readable from now on: every later wait sees the stop. EAGAIN (pipe full) is fine.
    [[maybe_unused]] const ssize_t written = write(wake_pipe_[1], &byte, 1);
  }
  errno = saved_errno;
}

void VpcdBridge::Event(std::string_view message) const {
  if (options_.on_event) options_.on_event(message);
}

bool VpcdBridge::SleepUnlessStopped(std::chrono::milliseconds duration) {
  pollfd wake = {wake_pipe_[0], POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + duration;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return !stop_.load();
    const int n = poll(&wake, 1, static_cast<int>(left.count()));
    if (n > 0 || stop_.load()) return false;
    if (n == 0) return true;
    // EINTR: wait out the rest.
  }
}

int VpcdBridge::ConnectOnce() {
  const std::string port = std::to_string(options_.base_port + options_.slot);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  if (getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &addresses) != 0) return -1;
  int connected_fd = -1;
  for (addrinfo* a = addresses; a != nullptr && connected_fd < 0; a = a->ai_next) {
    const int fd =
        socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    bool ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    if (!ok && errno == EINPROGRESS &&
        WaitReady(fd, POLLOUT, wake_pipe_[0], static_cast<int>(options_.connect_timeout.count())) ==
            Io::kOk) {
      int error = 0;
      socklen_t error_length = sizeof error;
      ok = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length) == 0 && error == 0;
    }
    if (ok) {
      const int yes = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof yes);
      connected_fd = fd;
    } else {
      close(fd);
    }
  }
  freeaddrinfo(addresses);
  return connected_fd;
}

VpcdBridge::Outcome VpcdBridge::Serve(int socket_fd) {
  const int wake_fd = wake_pipe_[0];
  auto outcome_of = [](Io io) {
    return io == Io::kStopped ? Outcome::kStopped : Outcome::kPeerClosed;
  };
  Bytes payload;
  for (;;) {
    std::uint8_t header[2];
    if (Io io = ReadExact(socket_fd, wake_fd, header, sizeof header); io != Io::kOk) {
      return outcome_of(io);
    }
    payload.resize(ReadU16(ByteView(header, sizeof header)));
    if (Io io = ReadExact(socket_fd, wake_fd, payload.data(), payload.size()); io != Io::kOk) {
      return outcome_of(io);
    }
    if (payload.empty()) continue;  // vpcd never sends one; nothing to answer

    if (payload.size() == 1) {
      switch (payload[0]) {
        case kControlPowerOff:
          card_->PowerOff();
          break;
        case kControlPowerOn:
        case kControlReset:
          // vpcd asks for the ATR separately (04) after powering the card.
          (void)card_->PowerOn();
          break;
        case kControlGetAtr: {
          const Bytes atr = card_->Atr();
          if (atr.empty()) return Outcome::kCardDead;
          if (Io io = SendMessage(socket_fd, wake_fd, View(atr)); io != Io::kOk) {
            return outcome_of(io);
          }
          break;
        }
        default:
          Event("ignoring unknown vpcd control code " + std::to_string(payload[0]));
          break;
      }
      continue;
    }

    Bytes response = card_->Transmit(View(payload));
    if (response.empty()) return Outcome::kCardDead;
    // 65536 data bytes + SW cannot be framed in 16 bits: answer "no precise diagnosis".
    if (response.size() > kMaxPayload) response = iso7816::Respond(iso7816::sw::kUnknown);
    if (Io io = SendMessage(socket_fd, wake_fd, View(response)); io != Io::kOk) {
      return outcome_of(io);
    }
  }
}

Status VpcdBridge::Run() {
  if (card_ == nullptr) return MakeError("vpcd bridge: no card to serve");
  if (wake_pipe_[0] < 0) return MakeError("vpcd bridge: cannot create the stop pipe");
  if (running_.exchange(true)) return MakeError("vpcd bridge: Run() is already running");
  const std::string where = options_.host + ":" +
                            std::to_string(options_.base_port + options_.slot) + " (slot " +
                            std::to_string(options_.slot) + ")";
  std::chrono::milliseconds backoff = options_.initial_backoff;
  bool waiting_announced = false;
  Status result = Status::Ok();
  while (!stop_.load()) {
    const int fd = ConnectOnce();
    if (fd < 0) {
      if (!waiting_announced) Event("waiting for vpcd at " + where);
      waiting_announced = true;
      if (!SleepUnlessStopped(backoff)) break;
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    waiting_announced = false;
    backoff = options_.initial_backoff;
    connected_.store(true);
    connections_.fetch_add(1);
    Event("card inserted: connected to vpcd at " + where);
    const Outcome outcome = Serve(fd);
    close(fd);
    connected_.store(false);
    if (outcome == Outcome::kStopped) {
      Event("card removed: bridge stopped");
      break;
    }
    if (outcome == Outcome::kCardDead) {
      Event("card removed: the card answered nothing");
      result =
          MakeError("vpcd bridge: the card answered nothing (dead card), removed from " + where);
      break;
    }
    Event("vpcd closed the connection (pcscd stopped?); reconnecting");
  }
  running_.store(false);
  return result;
}

}  // namespace medcard::reader
