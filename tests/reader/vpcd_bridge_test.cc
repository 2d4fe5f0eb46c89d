// VpcdBridge against a stand-in for vpcd written here (a loopback TCP listener speaking the vpcd
// framing), so framing, partial I/O, back-off and Stop() are tested without pcscd. The same
// bridge against the real pcscd + vpcd is in pcsc_reader_test.cc.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "reader/reader.h"
#include "scripted_icc.h"

namespace medcard::reader {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedIcc;

constexpr milliseconds kLongEnough{5000};

// The vpcd side: binds 127.0.0.1 on a free port at once, listens when told to (until then a
// connect is refused, as when pcscd is not running).
class FakeVpcd {
 public:
  explicit FakeVpcd(int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    const int yes = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~FakeVpcd() {
    if (client_ >= 0) close(client_);
    close(fd_);
  }

  void Listen() { ASSERT_EQ(listen(fd_, 1), 0); }
  std::uint16_t port() const { return port_; }

  // Accepts the bridge's connection; false on timeout.
  bool Accept(milliseconds timeout = kLongEnough) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    if (client_ >= 0) close(client_);
    client_ = accept(fd_, nullptr, nullptr);
    const int yes = 1;
    setsockopt(client_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    return client_ >= 0;
  }
  void Hangup() {
    close(client_);
    client_ = -1;
  }

  // One vpcd message: 2-byte length || payload; `piecewise` writes it one byte at a time.
  void Send(const Bytes& payload, bool piecewise = false) {
    Bytes message;
    AppendU16(message, static_cast<std::uint16_t>(payload.size()));
    Append(message, View(payload));
    if (!piecewise) {
      ASSERT_EQ(write(client_, message.data(), message.size()),
                static_cast<ssize_t>(message.size()));
      return;
    }
    for (std::uint8_t byte : message) {
      ASSERT_EQ(write(client_, &byte, 1), 1);
      std::this_thread::sleep_for(milliseconds(1));
    }
  }
  void Control(std::uint8_t code) { Send({code}); }

  // Reads `n` bytes, in pieces of at most `piece` with `pause` in between; nullopt on EOF or
  // timeout.
  std::optional<Bytes> ReadBytes(std::size_t n, std::size_t piece = 65536,
                                 milliseconds pause = milliseconds(0)) {
    Bytes out;
    while (out.size() < n) {
      pollfd p{client_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(kLongEnough.count())) != 1) return std::nullopt;
      std::uint8_t buffer[65536];
      const std::size_t want = std::min({n - out.size(), piece, sizeof buffer});
      const ssize_t got = read(client_, buffer, want);
      if (got <= 0) return std::nullopt;
      out.insert(out.end(), buffer, buffer + got);
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
    return out;
  }
  std::optional<Bytes> Receive(std::size_t piece = 65536, milliseconds pause = milliseconds(0)) {
    std::optional<Bytes> header = ReadBytes(2);
    if (!header) return std::nullopt;
    return ReadBytes(ReadU16(View(*header)), piece, pause);
  }
  // Sends a C-APDU and returns the R-APDU (hex).
  std::string Exchange(std::string_view command_hex) {
    Send(HexToBytes(command_hex));
    std::optional<Bytes> response = Receive();
    return response ? ToHex(View(*response)) : "<closed>";
  }
  // True when the bridge closed the connection within the timeout.
  bool SeesClose(milliseconds timeout = kLongEnough) {
    pollfd p{client_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    std::uint8_t byte;
    return read(client_, &byte, 1) == 0;
  }

 private:
  int fd_ = -1;
  int client_ = -1;
  std::uint16_t port_ = 0;
};

// Polls a condition for at most kLongEnough (the bridge reports from another thread).
template <typename Predicate>
bool Eventually(Predicate predicate) {
  const auto deadline = std::chrono::steady_clock::now() + kLongEnough;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

VpcdBridge::Options OptionsFor(const FakeVpcd& vpcd) {
  VpcdBridge::Options options;
  options.host = "127.0.0.1";
  options.base_port = vpcd.port();
  options.slot = 0;
  options.initial_backoff = milliseconds(10);
  options.max_backoff = milliseconds(100);
  return options;
}

// Runs a bridge on a thread; stops it when destroyed.
class RunningBridge {
 public:
  RunningBridge(std::shared_ptr<iso7816::Icc> card, VpcdBridge::Options options)
      : bridge_(std::move(card), std::move(options)),
        result_(std::async(std::launch::async, [this] { return bridge_.Run(); })) {}
  ~RunningBridge() {
    bridge_.Stop();
    if (result_.valid()) result_.wait();
  }
  VpcdBridge& bridge() { return bridge_; }
  // The Status Run() returned, or an error if it is still running after the timeout.
  Status Finished(milliseconds timeout = kLongEnough) {
    if (result_.wait_for(timeout) != std::future_status::ready) {
      return MakeError("Run() still running");
    }
    return result_.get();
  }

 private:
  VpcdBridge bridge_;
  std::future<Status> result_;
};

TEST(VpcdBridge, AnswersAtrRequestsAndApdus) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>(testing::T1Atr("MEDCARD"));
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x04);
  EXPECT_EQ(vpcd.Receive(), testing::T1Atr("MEDCARD"));
  vpcd.Control(0x01);
  EXPECT_EQ(vpcd.Exchange("80EE000003010203"), "0102039000");
  EXPECT_EQ(vpcd.Exchange("80EE000002"), "00019000");
  vpcd.Control(0x04);  // between APDUs, too
  EXPECT_EQ(vpcd.Receive(), testing::T1Atr("MEDCARD"));
  EXPECT_TRUE(running.bridge().connected());
}

TEST(VpcdBridge, ControlCodes_PowerOnPowerOffAndResetTheCard) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  // Each control code is answered by nothing; the ATR request after it proves it was handled.
  vpcd.Control(0x01);
  vpcd.Control(0x04);
  ASSERT_TRUE(vpcd.Receive());
  EXPECT_EQ(card->power_ons(), 1);
  EXPECT_TRUE(card->powered());
  vpcd.Control(0x00);
  vpcd.Control(0x04);
  ASSERT_TRUE(vpcd.Receive());
  EXPECT_EQ(card->power_offs(), 1);
  EXPECT_FALSE(card->powered());
  vpcd.Control(0x02);
  vpcd.Control(0x04);
  ASSERT_TRUE(vpcd.Receive());
  EXPECT_EQ(card->power_ons(), 2);
  EXPECT_TRUE(card->powered());
}

TEST(VpcdBridge, UnknownControlCodesAndEmptyMessages_AreIgnored) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x01);
  vpcd.Control(0x09);
  vpcd.Send({});
  EXPECT_EQ(vpcd.Exchange("80EE0000"), "9000");
}

TEST(VpcdBridge, MessagesArrivingByteByByte_AreReassembled) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Send({0x01}, /*piecewise=*/true);
  vpcd.Send(HexToBytes("80EE0000051122334455"), /*piecewise=*/true);
  std::optional<Bytes> response = vpcd.Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(ToHex(View(*response)), "11223344559000");
}

TEST(VpcdBridge, LargeResponse_ReachesASlowReaderComplete) {
  FakeVpcd vpcd(/*receive_buffer=*/4096);
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x01);
  Bytes data(60000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i % 251);
  iso7816::CommandApdu echo = iso7816::CommandApdu::Case4(0x80, 0xEE, 0, 0, data, 60000);
  vpcd.Send(echo.Serialize());
  // The bridge's writes block on a full socket many times over while we read slowly.
  std::optional<Bytes> response = vpcd.Receive(/*piece=*/2048, milliseconds(1));
  ASSERT_TRUE(response);
  ASSERT_EQ(response->size(), 60002u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), response->begin()));
  EXPECT_EQ(ToHex(Sub(View(*response), 60000, 2)), "9000");
}

TEST(VpcdBridge, ResponseTooLongForAVpcdMessage_IsAnswered6F00) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x01);
  // Le = 65536: the card answers 65536 bytes + 9000, one byte more than 16 bits can frame.
  EXPECT_EQ(vpcd.Exchange("80EE0000000000"), "6F00");
  EXPECT_EQ(vpcd.Exchange("80EE000003AABBCC"), "AABBCC9000");
}

TEST(VpcdBridge, DeadCard_ClosesTheConnectionAndRunSaysSo) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x01);
  card->Kill();
  vpcd.Send(HexToBytes("80EE0000"));
  EXPECT_TRUE(vpcd.SeesClose());
  Status result = running.Finished();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message,
            "vpcd bridge: the card answered nothing (dead card), removed from 127.0.0.1:" +
                std::to_string(vpcd.port()) + " (slot 0)");
  EXPECT_FALSE(running.bridge().connected());
}

TEST(VpcdBridge, DeadCardAtrRequest_ClosesTheConnection) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  card->Kill();
  RunningBridge running(card, OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x04);
  EXPECT_TRUE(vpcd.SeesClose());
  EXPECT_FALSE(running.Finished().ok());
}

TEST(VpcdBridge, Stop_ClosesTheConnectionAndRunReturnsOk) {
  FakeVpcd vpcd;
  vpcd.Listen();
  RunningBridge running(std::make_shared<ScriptedIcc>(), OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  ASSERT_TRUE(Eventually([&] { return running.bridge().connected(); }));
  running.bridge().Stop();
  EXPECT_TRUE(vpcd.SeesClose());
  EXPECT_TRUE(running.Finished().ok());
  EXPECT_FALSE(running.bridge().connected());
  EXPECT_EQ(running.bridge().connections(), 1u);
}

TEST(VpcdBridge, StopWhileVpcdIsNotListening_EndsRunPromptly) {
  FakeVpcd vpcd;  // bound, not listening: connections are refused
  VpcdBridge::Options options = OptionsFor(vpcd);
  options.initial_backoff = milliseconds(5000);  // Stop must cut the back-off short
  RunningBridge running(std::make_shared<ScriptedIcc>(), options);
  std::this_thread::sleep_for(milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  running.bridge().Stop();
  EXPECT_TRUE(running.Finished(milliseconds(1000)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  EXPECT_EQ(running.bridge().connections(), 0u);
}

TEST(VpcdBridge, StopBeforeRun_RunReturnsAtOnce) {
  VpcdBridge bridge(std::make_shared<ScriptedIcc>(), 0);
  bridge.Stop();
  EXPECT_TRUE(bridge.Run().ok());
  EXPECT_EQ(bridge.connections(), 0u);
}

TEST(VpcdBridge, ConnectsWhenVpcdStartsListening_AndReconnectsAfterVpcdHangsUp) {
  FakeVpcd vpcd;
  std::mutex events_mutex;
  std::vector<std::string> events;
  VpcdBridge::Options options = OptionsFor(vpcd);
  options.on_event = [&](std::string_view event) {
    std::lock_guard lock(events_mutex);
    events.emplace_back(event);
  };
  RunningBridge running(std::make_shared<ScriptedIcc>(), options);
  std::this_thread::sleep_for(milliseconds(100));  // a few refused attempts
  EXPECT_EQ(running.bridge().connections(), 0u);
  vpcd.Listen();
  ASSERT_TRUE(vpcd.Accept());
  EXPECT_EQ(vpcd.Exchange("0001"), "6F00");  // the card is not powered yet
  vpcd.Hangup();                             // pcscd going away
  ASSERT_TRUE(vpcd.Accept());                // ... and coming back
  vpcd.Control(0x01);
  EXPECT_EQ(vpcd.Exchange("80EE000001AA"), "AA9000");
  EXPECT_EQ(running.bridge().connections(), 2u);
  running.bridge().Stop();
  ASSERT_TRUE(running.Finished().ok());
  const std::string where = "127.0.0.1:" + std::to_string(vpcd.port()) + " (slot 0)";
  std::lock_guard lock(events_mutex);
  EXPECT_EQ(events, (std::vector<std::string>{
                        "waiting for vpcd at " + where,
                        "card inserted: connected to vpcd at " + where,
                        "vpcd closed the connection (pcscd stopped?); reconnecting",
                        "card inserted: connected to vpcd at " + where,
                        "card removed: bridge stopped",
                    }));
}

TEST(VpcdBridge, SlotSelectsThePortAboveTheBase) {
  FakeVpcd vpcd;
  vpcd.Listen();
  VpcdBridge::Options options = OptionsFor(vpcd);
  options.base_port = static_cast<std::uint16_t>(vpcd.port() - 1);
  options.slot = 1;
  RunningBridge running(std::make_shared<ScriptedIcc>(), options);
  EXPECT_TRUE(vpcd.Accept());
}

VpcdBridge* g_bridge_to_stop = nullptr;
extern "C" void StopBridgeOnSignal(int) { g_bridge_to_stop->Stop(); }

TEST(VpcdBridge, StopFromASignalHandler_EndsRun) {
  FakeVpcd vpcd;
  vpcd.Listen();
  RunningBridge running(std::make_shared<ScriptedIcc>(), OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  g_bridge_to_stop = &running.bridge();
  struct sigaction action {};
  struct sigaction previous {};
  action.sa_handler = StopBridgeOnSignal;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &action, &previous), 0);
  ASSERT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
  EXPECT_TRUE(running.Finished().ok());
  EXPECT_TRUE(vpcd.SeesClose());
  sigaction(SIGUSR1, &previous, nullptr);
  g_bridge_to_stop = nullptr;
}

TEST(VpcdBridge, RunWhileRunning_Fails) {
  FakeVpcd vpcd;
  vpcd.Listen();
  RunningBridge running(std::make_shared<ScriptedIcc>(), OptionsFor(vpcd));
  ASSERT_TRUE(vpcd.Accept());
  Status second = running.bridge().Run();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().message, "vpcd bridge: Run() is already running");
}

TEST(VpcdBridge, AfterADeadCard_RunAgainReinsertsIt) {
  FakeVpcd vpcd;
  vpcd.Listen();
  auto card = std::make_shared<ScriptedIcc>();
  card->Kill();
  VpcdBridge bridge(card, OptionsFor(vpcd));
  auto first = std::async(std::launch::async, [&] { return bridge.Run(); });
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x04);
  ASSERT_EQ(first.wait_for(kLongEnough), std::future_status::ready);
  EXPECT_FALSE(first.get().ok());

  card->Revive();
  auto second = std::async(std::launch::async, [&] { return bridge.Run(); });
  ASSERT_TRUE(vpcd.Accept());
  vpcd.Control(0x04);
  EXPECT_EQ(vpcd.Receive(), testing::T1Atr("MEDCARD"));
  bridge.Stop();
  ASSERT_EQ(second.wait_for(kLongEnough), std::future_status::ready);
  EXPECT_TRUE(second.get().ok());
  EXPECT_EQ(bridge.connections(), 2u);
}

}  // namespace
}  // namespace medcard::reader
