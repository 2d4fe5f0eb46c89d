// The host's network server against clients written here with plain POSIX sockets (and Asio for
// TLS), with handlers written here: framing, one request at a time per connection, timeouts,
// TLS, group commit under concurrency, graceful shutdown, connection limits.
#include "server/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace medcard::server {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Bytes BytesOf(std::string_view text) { return Bytes(text.begin(), text.end()); }
std::string TextOf(const Bytes& bytes) { return std::string(bytes.begin(), bytes.end()); }

Bytes Framed(const Bytes& frame) {
  Bytes out;
  AppendU16(out, static_cast<std::uint16_t>(frame.size()));
  Append(out, frame);
  return out;
}

std::vector<Reply> ReverseEach(std::span<const Bytes> frames) {
  std::vector<Reply> replies;
  for (const Bytes& frame : frames) replies.push_back(Reply{Bytes(frame.rbegin(), frame.rend())});
  return replies;
}

std::unique_ptr<Server> StartOrDie(Options options, GroupHandler handler) {
  Result<std::unique_ptr<Server>> server = Server::Start(std::move(options), std::move(handler));
  EXPECT_TRUE(server.ok()) << (server.ok() ? "" : server.error().message);
  return server.ok() ? std::move(server).value() : nullptr;
}

// A terminal's side with plain blocking sockets; every wait has a deadline.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  bool SendRaw(const Bytes& bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  bool Send(std::string_view frame) { return SendRaw(Framed(BytesOf(frame))); }

  // The next whole frame (without its length), or nullopt when the connection closed or nothing
  // whole came before the deadline.
  std::optional<std::string> Receive(std::chrono::milliseconds timeout = 5s) {
    const Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      if (buffer_.size() >= 2) {
        const std::size_t length = (std::size_t{buffer_[0]} << 8) | buffer_[1];
        if (buffer_.size() >= 2 + length) {
          std::string frame(buffer_.begin() + 2, buffer_.begin() + 2 + static_cast<long>(length));
          buffer_.erase(buffer_.begin(), buffer_.begin() + 2 + static_cast<long>(length));
          return frame;
        }
      }
      if (!ReadSome(deadline)) return std::nullopt;
    }
  }

  // True when the server closed the connection before the deadline; bytes that arrive first
  // are kept in received().
  bool WaitClosed(std::chrono::milliseconds timeout = 5s) {
    const Clock::time_point deadline = Clock::now() + timeout;
    while (ReadSome(deadline)) {
    }
    return closed_;
  }

  const Bytes& received() const { return buffer_; }
  int fd() const { return fd_; }

 private:
  // False on close (closed_ set) or at the deadline.
  bool ReadSome(Clock::time_point deadline) {
    if (closed_) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd poll_fd{fd_, POLLIN, 0};
    if (poll(&poll_fd, 1, static_cast<int>(left.count())) <= 0) return false;
    std::uint8_t chunk[4096];
    const ssize_t count = recv(fd_, chunk, sizeof chunk, 0);
    if (count <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.insert(buffer_.end(), chunk, chunk + count);
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  Bytes buffer_;
};

// Waits until `condition` holds, at most `timeout`.
template <typename Condition>
bool Eventually(Condition condition, std::chrono::milliseconds timeout = 5s) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(Server, AnswersARequestOverPlainTcp) {
  auto server = StartOrDie({}, ReverseEach);
  ASSERT_NE(server, nullptr);
  EXPECT_NE(server->port(), 0);
  Client client(server->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("hello host"));
  EXPECT_EQ(client.Receive(), "tsoh olleh");
  ASSERT_TRUE(client.Send("second"));
  EXPECT_EQ(client.Receive(), "dnoces");
  ASSERT_TRUE(Eventually([&] { return server->stats().replies_sent == 2; }));
  const Stats stats = server->stats();
  EXPECT_EQ(stats.connections_accepted, 1u);
  EXPECT_EQ(stats.connections_open, 1u);
  EXPECT_EQ(stats.frames_received, 2u);
  EXPECT_EQ(stats.groups, 2u);
}

TEST(Server, CountsTheHandlersWallAndCpuTime) {
  // A handler that sleeps 30 ms (wall time, no CPU) and then spins for 30 ms of its CPU time.
  auto server = StartOrDie({}, [](std::span<const Bytes> frames) {
    std::this_thread::sleep_for(30ms);
    auto cpu_ms = [] {
      timespec now{};
      ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
      return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
    };
    const double spin_until = cpu_ms() + 30;
    while (cpu_ms() < spin_until) {
    }
    return ReverseEach(frames);
  });
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->stats().handler_wall_us, 0u);
  Client client(server->port());
  ASSERT_TRUE(client.Send("timed"));
  EXPECT_EQ(client.Receive(), "demit");
  const Stats stats = server->stats();
  EXPECT_GE(stats.handler_wall_us, 60'000u);
  EXPECT_GE(stats.handler_cpu_us, 30'000u);
  EXPECT_LE(stats.handler_cpu_us, stats.handler_wall_us - 30'000u);  // not the sleep
}

TEST(Server, SeveralFramesInOneWriteAreAnsweredOneAtATimeInOrder) {
  std::mutex mutex;
  std::vector<std::size_t> group_sizes;
  auto server = StartOrDie({}, [&](std::span<const Bytes> frames) {
    std::lock_guard lock(mutex);
    group_sizes.push_back(frames.size());
    return ReverseEach(frames);
  });
  Client client(server->port());
  Bytes three;
  for (const char* frame : {"one", "two", "three"}) Append(three, Framed(BytesOf(frame)));
  ASSERT_TRUE(client.SendRaw(three));
  EXPECT_EQ(client.Receive(), "eno");
  EXPECT_EQ(client.Receive(), "owt");
  EXPECT_EQ(client.Receive(), "eerht");
  std::lock_guard lock(mutex);
  // The next frame of a connection waits for the previous answer: never two in one group.
  EXPECT_EQ(group_sizes, (std::vector<std::size_t>{1, 1, 1}));
}

TEST(Server, AFrameSplitByteByByteIsAnswered) {
  auto server = StartOrDie({}, ReverseEach);
  Client client(server->port());
  for (std::uint8_t byte : Framed(BytesOf("split"))) {
    ASSERT_TRUE(client.SendRaw(Bytes{byte}));
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(client.Receive(), "tilps");
}

TEST(Server, LengthZeroClosesWithoutAnswerAndOthersCarryOn) {
  std::atomic<int> handler_frames{0};
  auto server = StartOrDie({}, [&](std::span<const Bytes> frames) {
    handler_frames += static_cast<int>(frames.size());
    return ReverseEach(frames);
  });
  Client good(server->port());
  ASSERT_TRUE(good.Send("before"));
  EXPECT_EQ(good.Receive(), "erofeb");

  Client bad(server->port());
  ASSERT_TRUE(bad.SendRaw(Bytes{0x00, 0x00, 'x', 'y'}));
  EXPECT_TRUE(bad.WaitClosed());
  EXPECT_TRUE(bad.received().empty());

  ASSERT_TRUE(good.Send("after"));
  EXPECT_EQ(good.Receive(), "retfa");
  EXPECT_EQ(handler_frames, 2);
  EXPECT_EQ(server->stats().framing_errors, 1u);
}

TEST(Server, LengthAboveMaxClosesAsSoonAsTheLengthArrives) {
  Options options;
  options.max_frame = 100;
  auto server = StartOrDie(options, ReverseEach);
  Client at_max(server->port());
  ASSERT_TRUE(at_max.Send(std::string(100, 'a')));
  EXPECT_EQ(at_max.Receive(), std::string(100, 'a'));

  Client above(server->port());
  ASSERT_TRUE(above.SendRaw(Bytes{0x00, 101}));  // the body never comes
  EXPECT_TRUE(above.WaitClosed(2s));
  EXPECT_TRUE(above.received().empty());
  EXPECT_EQ(server->stats().framing_errors, 1u);
  EXPECT_EQ(server->stats().frames_received, 1u);
}

TEST(Server, ReplyCloseClosesAfterTheAnswerOrWithoutOne) {
  auto server = StartOrDie({}, [](std::span<const Bytes> frames) {
    std::vector<Reply> replies;
    for (const Bytes& frame : frames) {
      if (TextOf(frame) == "bye") {
        replies.push_back(Reply{BytesOf("goodbye"), true});
      } else {
        replies.push_back(Reply{std::nullopt, true});
      }
    }
    return replies;
  });
  Client polite(server->port());
  ASSERT_TRUE(polite.Send("bye"));
  EXPECT_EQ(polite.Receive(), "goodbye");
  EXPECT_TRUE(polite.WaitClosed());

  Client silent(server->port());
  ASSERT_TRUE(silent.Send("anything"));
  EXPECT_TRUE(silent.WaitClosed());
  EXPECT_TRUE(silent.received().empty());
  EXPECT_EQ(server->stats().replies_sent, 1u);
}

TEST(Server, IdleConnectionIsClosedAfterIdleTimeout) {
  Options options;
  options.idle_timeout = 300ms;
  auto server = StartOrDie(options, ReverseEach);
  Client client(server->port());
  // Requests keep it open: each answer restarts the idle clock.
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(150ms);
    ASSERT_TRUE(client.Send("ping"));
    ASSERT_EQ(client.Receive(), "gnip");
  }
  const Clock::time_point idle_since = Clock::now();
  EXPECT_TRUE(client.WaitClosed(3s));
  EXPECT_GE(Clock::now() - idle_since, 250ms);
  EXPECT_EQ(server->stats().timeouts, 1u);
  EXPECT_TRUE(Eventually([&] { return server->stats().connections_open == 0; }));
}

TEST(Server, UnfinishedFrameIsClosedAfterReadTimeout) {
  Options options;
  options.read_timeout = 300ms;
  options.idle_timeout = 10s;
  auto server = StartOrDie(options, ReverseEach);
  Client idle(server->port());
  Client slow(server->port());
  ASSERT_TRUE(slow.SendRaw(Bytes{0x00, 0x10, 'a'}));
  // Dribbling bytes does not extend the read timeout.
  std::this_thread::sleep_for(150ms);
  ASSERT_TRUE(slow.SendRaw(Bytes{'b'}));
  const Clock::time_point sent = Clock::now();
  EXPECT_TRUE(slow.WaitClosed(3s));
  EXPECT_LT(Clock::now() - sent, 1s);
  EXPECT_TRUE(slow.received().empty());
  EXPECT_EQ(server->stats().timeouts, 1u);
  // The idle connection is governed by the idle timeout and still served.
  ASSERT_TRUE(idle.Send("still here"));
  EXPECT_EQ(idle.Receive(), "ereh llits");
}

TEST(Server, HandlerFailuresCloseWithoutAnswerAndTheServerCarriesOn) {
  auto server = StartOrDie({}, [](std::span<const Bytes> frames) {
    const std::string request = TextOf(frames.front());
    if (request == "throw") throw std::runtime_error("database gone");
    if (request == "no replies") return std::vector<Reply>{};
    if (request == "empty frame") return std::vector<Reply>{Reply{Bytes{}}};
    return ReverseEach(frames);
  });
  for (const char* failing : {"throw", "no replies", "empty frame"}) {
    Client client(server->port());
    ASSERT_TRUE(client.Send(failing));
    EXPECT_TRUE(client.WaitClosed()) << failing;
    EXPECT_TRUE(client.received().empty()) << failing;
  }
  Client fine(server->port());
  ASSERT_TRUE(fine.Send("fine"));
  EXPECT_EQ(fine.Receive(), "enif");
}

TEST(Server, WritingToAConnectionThePeerLeftDoesNotKillTheProcess) {
  // Without MSG_NOSIGNAL each case below raises SIGPIPE, which ends the process.
  std::atomic<int> handler_calls{0};
  auto server = StartOrDie({}, [&](std::span<const Bytes> frames) {
    ++handler_calls;
    std::this_thread::sleep_for(100ms);  // time for the peer's RST to arrive
    std::vector<Reply> replies;
    for (std::size_t i = 0; i < frames.size(); ++i) replies.push_back(Reply{Bytes(1000, 0x42)});
    return replies;
  });
  // The peer resets while its request is with the handler: the write fails (ECONNRESET).
  {
    Client resetting(server->port());
    ASSERT_TRUE(resetting.Send("request"));
    ASSERT_TRUE(Eventually([&] { return handler_calls.load() == 1; }));
    const linger reset{1, 0};
    setsockopt(resetting.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }
  // The peer sends two frames ahead and closes: the first answer draws an RST on a half-closed
  // connection, so the second answer's write fails with EPIPE, the SIGPIPE case.
  {
    Client leaving(server->port());
    ASSERT_TRUE(leaving.SendRaw([] {
      Bytes two = Framed(BytesOf("first"));
      Append(two, Framed(BytesOf("second")));
      return two;
    }()));
  }
  ASSERT_TRUE(Eventually([&] { return handler_calls.load() == 3; }));
  ASSERT_TRUE(Eventually([&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(server->stats().replies_sent, 1u);  // only the first answer of the second peer
  Client after(server->port());
  ASSERT_TRUE(after.Send("x"));
  EXPECT_EQ(after.Receive(), std::string(1000, 'B'));
}

TEST(Server, StartFailsOnAPortInUseAndOnBadOptions) {
  auto first = StartOrDie({}, ReverseEach);
  Options same;
  same.port = first->port();
  EXPECT_FALSE(Server::Start(same, ReverseEach).ok());
  Options bad_address;
  bad_address.address = "not an address";
  EXPECT_FALSE(Server::Start(bad_address, ReverseEach).ok());
  Options no_group;
  no_group.max_group = 0;
  EXPECT_FALSE(Server::Start(no_group, ReverseEach).ok());
  Options missing_certificate;
  missing_certificate.tls = TlsOptions{"/nonexistent/chain.pem", "/nonexistent/key.pem"};
  EXPECT_FALSE(Server::Start(missing_certificate, ReverseEach).ok());
}

// ---- TLS ------------------------------------------------------------------------------------

struct TlsFiles {
  std::filesystem::path directory, certificate, key;
};

// A self-signed P-256 certificate for "localhost" in a fresh temporary directory.
TlsFiles WriteSelfSignedCertificate() {
  TlsFiles files;
  files.directory = std::filesystem::temp_directory_path() /
                    ("medcard-server-test-" + std::to_string(getpid()) + "-" +
                     std::to_string(Clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(files.directory);
  files.certificate = files.directory / "chain.pem";
  files.key = files.directory / "key.pem";

  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* certificate = X509_new();
  X509_set_version(certificate, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1);
  X509_gmtime_adj(X509_getm_notBefore(certificate), 0);
  X509_gmtime_adj(X509_getm_notAfter(certificate), 3600);
  X509_set_pubkey(certificate, key);
  X509_NAME* name = X509_get_subject_name(certificate);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(certificate, name);
  X509_sign(certificate, key, EVP_sha256());

  FILE* out = std::fopen(files.certificate.c_str(), "w");
  PEM_write_X509(out, certificate);
  std::fclose(out);
  out = std::fopen(files.key.c_str(), "w");
  PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(out);
  X509_free(certificate);
  EVP_PKEY_free(key);
  return files;
}

class ServerTls : public ::testing::Test {
 protected:
  void SetUp() override { files_ = WriteSelfSignedCertificate(); }
  void TearDown() override { std::filesystem::remove_all(files_.directory); }
  Options TlsServerOptions() const {
    Options options;
    options.tls = TlsOptions{files_.certificate.string(), files_.key.string()};
    options.read_timeout = 2s;
    return options;
  }
  TlsFiles files_;
};

TEST_F(ServerTls, TlsClientGetsAnswersAndAPlainClientGetsNone) {
  std::atomic<int> handler_frames{0};
  auto server = StartOrDie(TlsServerOptions(), [&](std::span<const Bytes> frames) {
    handler_frames += static_cast<int>(frames.size());
    return ReverseEach(frames);
  });
  ASSERT_NE(server, nullptr);

  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.load_verify_file(files_.certificate.string());  // the client checks the host
  context.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<asio::ip::tcp::socket> tls(io, context);
  tls.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), server->port()});
  tls.handshake(asio::ssl::stream_base::client);
  EXPECT_GE(SSL_version(tls.native_handle()), TLS1_2_VERSION);
  for (std::string text : {"over tls", "again"}) {
    asio::write(tls, asio::buffer(Framed(BytesOf(text))));
    std::array<std::uint8_t, 2> length{};
    asio::read(tls, asio::buffer(length));
    std::string answer((std::size_t{length[0]} << 8) | length[1], '\0');
    asio::read(tls, asio::buffer(answer));
    std::reverse(text.begin(), text.end());
    EXPECT_EQ(answer, text);
  }

  Client plain(server->port());
  ASSERT_TRUE(plain.Send("plain text"));
  EXPECT_TRUE(plain.WaitClosed(3s));
  const std::string received = TextOf(plain.received());
  EXPECT_EQ(received.find("txet nialp"), std::string::npos);
  EXPECT_EQ(handler_frames, 2);
}

TEST_F(ServerTls, ClientThatDoesNotTrustTheCertificateFailsTheHandshake) {
  auto server = StartOrDie(TlsServerOptions(), ReverseEach);
  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.set_verify_mode(asio::ssl::verify_peer);  // no trusted roots
  asio::ssl::stream<asio::ip::tcp::socket> tls(io, context);
  tls.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), server->port()});
  std::error_code error;
  tls.handshake(asio::ssl::stream_base::client, error);
  EXPECT_TRUE(error);
}

// ---- Concurrency and group commit -----------------------------------------------------------

// kClients connections, each with its request out before any answer is read, kRounds times.
void EveryConnectionGetsItsOwnAnswers(const Options& options, int clients_count, int rounds) {
  auto server = StartOrDie(options, ReverseEach);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < clients_count; ++i) {
    clients.push_back(std::make_unique<Client>(server->port()));
    ASSERT_TRUE(clients.back()->connected()) << i;
  }
  for (int round = 0; round < rounds; ++round) {
    // Every client has its request out before any answer is read.
    for (int i = 0; i < clients_count; ++i) {
      ASSERT_TRUE(clients[i]->Send("c" + std::to_string(i) + "r" + std::to_string(round)));
    }
    for (int i = 0; i < clients_count; ++i) {
      std::string expected = "c" + std::to_string(i) + "r" + std::to_string(round);
      std::reverse(expected.begin(), expected.end());
      ASSERT_EQ(clients[i]->Receive(10s), expected) << "client " << i << " round " << round;
    }
  }
  ASSERT_TRUE(Eventually([&] {
    return server->stats().replies_sent == static_cast<std::uint64_t>(clients_count * rounds);
  }));
  const Stats stats = server->stats();
  EXPECT_EQ(stats.connections_open, static_cast<std::uint64_t>(clients_count));
  EXPECT_EQ(stats.frames_received, static_cast<std::uint64_t>(clients_count * rounds));
}

TEST(Server, AThousandConcurrentConnectionsGetTheirOwnAnswers) {
  EveryConnectionGetsItsOwnAnswers(Options{}, 1000, 3);
}

TEST(Server, SeveralIoThreadsKeepEachConnectionsAnswersStraight) {
  Options options;
  options.io_threads = 4;
  EveryConnectionGetsItsOwnAnswers(options, 300, 5);
}

TEST(Server, GroupsGrowUnderConcurrencyWhenTheHandlerIsSlow) {
  constexpr int kClients = 40;
  constexpr int kRounds = 3;
  std::mutex mutex;
  std::vector<std::vector<std::string>> groups;
  Options options;
  options.max_group = 16;
  auto server = StartOrDie(options, [&](std::span<const Bytes> frames) {
    std::this_thread::sleep_for(20ms);  // a commit's fsync
    std::lock_guard lock(mutex);
    auto& group = groups.emplace_back();
    for (const Bytes& frame : frames) group.push_back(TextOf(frame));
    return ReverseEach(frames);
  });
  std::vector<std::thread> terminals;
  std::atomic<int> right_answers{0};
  for (int i = 0; i < kClients; ++i) {
    terminals.emplace_back([&, i] {
      Client client(server->port());
      for (int round = 0; round < kRounds; ++round) {
        std::string request = "t" + std::to_string(i) + "/" + std::to_string(round);
        if (!client.Send(request)) return;
        std::reverse(request.begin(), request.end());
        if (client.Receive(10s) == request) ++right_answers;
      }
    });
  }
  for (std::thread& terminal : terminals) terminal.join();
  EXPECT_EQ(right_answers, kClients * kRounds);
  std::lock_guard lock(mutex);
  std::size_t largest = 0;
  for (const auto& group : groups) {
    largest = std::max(largest, group.size());
    EXPECT_LE(group.size(), 16u);
    std::set<std::string> terminals_in_group;
    for (const std::string& frame : group) {
      terminals_in_group.insert(frame.substr(0, frame.find('/')));
    }
    EXPECT_EQ(terminals_in_group.size(), group.size()) << "two requests of one connection";
  }
  EXPECT_GT(largest, 1u);
  EXPECT_LT(groups.size(), static_cast<std::size_t>(kClients * kRounds));
  EXPECT_EQ(server->stats().largest_group, largest);
}

// ---- Shutdown and limits --------------------------------------------------------------------

TEST(Server, GracefulShutdownAnswersTheRequestInFlightAndRefusesNewConnections) {
  std::atomic<bool> handler_entered{false}, handler_done{false};
  auto server = StartOrDie({}, [&](std::span<const Bytes> frames) {
    handler_entered = true;
    std::this_thread::sleep_for(1s);
    handler_done = true;
    return ReverseEach(frames);
  });
  const std::uint16_t port = server->port();
  Client idle(port);
  Client busy(port);
  ASSERT_TRUE(busy.Send("in flight"));
  ASSERT_TRUE(Eventually([&] { return handler_entered.load(); }));

  std::thread shutdown([&] { server->Shutdown(5s); });
  // New connections are refused while the request in flight is still being processed.
  EXPECT_TRUE(Eventually([&] { return !Client(port).connected(); }, 800ms));
  EXPECT_TRUE(idle.WaitClosed(800ms));
  EXPECT_FALSE(handler_done) << "the checks above must run while the request is in flight";
  EXPECT_EQ(busy.Receive(), "thgilf ni");
  EXPECT_TRUE(busy.WaitClosed());
  shutdown.join();
  EXPECT_EQ(server->stats().connections_open, 0u);
  server->Shutdown();  // idempotent
}

TEST(Server, ShutdownClosesConnectionsStillBusyAfterTheGracePeriod) {
  std::atomic<bool> handler_entered{false};
  auto server = StartOrDie({}, [&](std::span<const Bytes> frames) {
    handler_entered = true;
    std::this_thread::sleep_for(1500ms);
    return ReverseEach(frames);
  });
  Client busy(server->port());
  ASSERT_TRUE(busy.Send("too slow"));
  ASSERT_TRUE(Eventually([&] { return handler_entered.load(); }));
  std::thread shutdown([&] { server->Shutdown(100ms); });
  EXPECT_TRUE(busy.WaitClosed(1200ms));
  EXPECT_TRUE(busy.received().empty());
  shutdown.join();
}

TEST(Server, ConnectionsBeyondMaxConnectionsAreClosedAtOnce) {
  Options options;
  options.max_connections = 2;
  auto server = StartOrDie(options, ReverseEach);
  auto first = std::make_unique<Client>(server->port());
  Client second(server->port());
  ASSERT_TRUE(first->Send("1"));
  ASSERT_EQ(first->Receive(), "1");
  ASSERT_TRUE(second.Send("2"));
  ASSERT_EQ(second.Receive(), "2");

  Client third(server->port());
  EXPECT_TRUE(third.WaitClosed(2s));
  EXPECT_TRUE(third.received().empty());
  EXPECT_EQ(server->stats().connections_refused, 1u);

  first.reset();
  ASSERT_TRUE(Eventually([&] { return server->stats().connections_open == 1; }));
  Client fourth(server->port());
  ASSERT_TRUE(fourth.Send("4"));
  EXPECT_EQ(fourth.Receive(), "4");
}

}  // namespace
}  // namespace medcard::server
