// `medcard host run` as an operator runs it (docs/host.md "Running the host"): the real binary
// on a data directory prepared through the library (host_directory.h), driven by a terminal's
// HostLink over plain TCP and over TLS; stopped with SIGTERM, also with a frame half received;
// refusing a bad configuration, a port in use and a directory that was never initialised.
// SQLite only (host_crash_test runs the same process on PostgreSQL too).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "host_directory.h"
#include "iso8583/iso8583.h"
#include "keys/key_store.h"
#include "terminal/host_link.h"
#include "test_database.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

constexpr char kPassphrase[] = "host run test passphrase";
constexpr char kTestTmk[] = "3B5D7F9102C4E6081B3D5F7193A5C7E9";  // TEST key, both sides
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kShutdownGrace = std::chrono::seconds(10);  // host_run.cc's grace period

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

// `medcard host run ARGS...` as a child process: stdout through a pipe (read line by line, as an
// operator's terminal shows it), stderr into a file.
class HostRun {
 public:
  HostRun(const std::vector<std::string>& args, fs::path stderr_file)
      : stderr_file_(std::move(stderr_file)) {
    int out[2];
    if (::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      const int err = ::open(stderr_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(err, 2);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<char*> argv = {const_cast<char*>("medcard"), const_cast<char*>("host"),
                                 const_cast<char*>("run")};
      for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
      argv.push_back(nullptr);
      ::execv(MEDCARD_CLI, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    stdout_fd_ = out[0];
  }
  ~HostRun() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
  }
  HostRun(const HostRun&) = delete;
  HostRun& operator=(const HostRun&) = delete;

  // Reads stdout until a whole line contains `text` (true) or end of output / the deadline.
  bool WaitForLine(const std::string& text, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const std::size_t at = out_.find(text);
      if (at != std::string::npos && out_.find('\n', at) != std::string::npos) return true;
      if (!ReadSome(deadline)) return false;
    }
  }
  // The exit status after at most `timeout`; nullopt if still running (or killed by a signal).
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (ReadSome(deadline)) {
    }
    while (pid_ > 0) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        if (!WIFEXITED(status)) return std::nullopt;
        return WEXITSTATUS(status);
      }
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }
  void Signal(int signal_number) {
    if (pid_ > 0) ::kill(pid_, signal_number);
  }

  const std::string& out() const { return out_; }
  std::string err() const { return ReadText(stderr_file_); }

 private:
  // One read from stdout; false at end of output or at the deadline.
  bool ReadSome(Clock::time_point deadline) {
    if (stdout_fd_ < 0) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd ready{stdout_fd_, POLLIN, 0};
    if (::poll(&ready, 1, static_cast<int>(left)) <= 0) return false;
    char buffer[4096];
    const ssize_t n = ::read(stdout_fd_, buffer, sizeof buffer);
    if (n <= 0) {
      ::close(stdout_fd_);
      stdout_fd_ = -1;
      return false;
    }
    out_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }
  fs::path stderr_file_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string out_;
};

// Records every exchange (request frame, answer frame) of the transport it wraps.
class RecordingTransport final : public terminal::Transport {
 public:
  explicit RecordingTransport(std::unique_ptr<terminal::Transport> inner)
      : inner_(std::move(inner)) {}
  Result<Bytes> Exchange(ByteView frame) override {
    auto answer = inner_->Exchange(frame);
    if (answer.ok()) exchanges.emplace_back(Bytes(frame.begin(), frame.end()), *answer);
    return answer;
  }
  void Reset() override { inner_->Reset(); }

  std::vector<std::pair<Bytes, Bytes>> exchanges;

 private:
  std::unique_ptr<terminal::Transport> inner_;
};

// A self-signed certificate for "localhost" (subjectAltName DNS:localhost) and its P-256 key.
void WriteSelfSignedCertificate(const fs::path& certificate_file, const fs::path& key_file) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(key, nullptr);
  X509* certificate = X509_new();
  X509_set_version(certificate, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), 7);
  X509_gmtime_adj(X509_getm_notBefore(certificate), -60);
  X509_gmtime_adj(X509_getm_notAfter(certificate), 3600);
  X509_set_pubkey(certificate, key);
  X509_NAME* name = X509_get_subject_name(certificate);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(certificate, name);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name,
                                            const_cast<char*>("DNS:localhost"));
  ASSERT_NE(san, nullptr);
  X509_add_ext(certificate, san, -1);
  X509_EXTENSION_free(san);
  ASSERT_GT(X509_sign(certificate, key, EVP_sha256()), 0);
  FILE* out = std::fopen(certificate_file.c_str(), "w");
  ASSERT_NE(out, nullptr);
  PEM_write_X509(out, certificate);
  std::fclose(out);
  out = std::fopen(key_file.c_str(), "w");
  ASSERT_NE(out, nullptr);
  PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(out);
  X509_free(certificate);
  EVP_PKEY_free(key);
}

class HostRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", kPassphrase, 1);
    data_dir_ = test_support::NewTempDir("medcard-host-run");
    spec_.data_dir = data_dir_;
    spec_.passphrase = kPassphrase;
    spec_.terminal_number = HexToBytes("000000000801");
    spec_.psam_serial = HexToBytes("50000000000000000801");
    spec_.tmk = HexToBytes(kTestTmk);
    // The host process opens the directory itself: nothing of the library's stays open.
    auto directory = test_support::PrepareHostDirectory(spec_);
    ASSERT_TRUE(directory.ok()) << directory.error().message;
    auto terminal_keys = test_support::MakeTerminalKeyStore(
        spec_, test_support::NewTempDir("medcard-terminal") + "/keys");
    ASSERT_TRUE(terminal_keys.ok()) << terminal_keys.error().message;
    terminal_keys_ = std::move(terminal_keys).value();
  }
  void TearDown() override {
    ::unsetenv("MEDCARD_KEYSTORE_PASSPHRASE");
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  std::unique_ptr<HostRun> Start(const std::string& listen = "127.0.0.1:0") {
    return std::make_unique<HostRun>(
        std::vector<std::string>{"--data", data_dir_, "--listen", listen},
        fs::path(data_dir_) / "host.err");
  }
  // Waits for "medcard host listening on 127.0.0.1:PORT (MODE)"; the port (0 on failure).
  std::uint16_t ListeningPort(HostRun& host, const std::string& mode) {
    if (!host.WaitForLine("medcard host listening on", kStartTimeout)) {
      ADD_FAILURE() << "no listening line; stdout:\n" << host.out() << "stderr:\n" << host.err();
      return 0;
    }
    std::smatch match;
    const std::regex line(R"(medcard host listening on 127\.0\.0\.1:(\d+) \(([^)]*)\)\n)");
    if (!std::regex_search(host.out(), match, line)) {
      ADD_FAILURE() << "unexpected listening line:\n" << host.out();
      return 0;
    }
    EXPECT_EQ(match[2].str(), mode);
    return static_cast<std::uint16_t>(std::stoul(match[1].str()));
  }
  terminal::HostLinkConfig LinkConfig() const {
    terminal::HostLinkConfig link;
    link.terminal_id = spec_.terminal_id;
    link.merchant_id = spec_.merchant_id;
    link.terminal_number = spec_.terminal_number;
    link.max_retries = 0;
    return link;
  }
  std::unique_ptr<RecordingTransport> Transport(std::uint16_t port,
                                                std::optional<terminal::TlsConfig> tls = {}) {
    terminal::TcpConfig tcp;
    tcp.host = "127.0.0.1";
    tcp.port = port;
    tcp.tls = std::move(tls);
    tcp.timeout = std::chrono::seconds(5);
    auto transport = terminal::MakeTcpTransport(tcp);
    if (!transport.ok()) {
      ADD_FAILURE() << transport.error().message;
      return nullptr;
    }
    return std::make_unique<RecordingTransport>(std::move(transport).value());
  }

  std::string data_dir_;
  test_support::HostDirectorySpec spec_;
  std::unique_ptr<keys::KeyStore> terminal_keys_;
};

TEST_F(HostRunTest, ServesATerminalOverTcpAndStopsOnSigterm) {
  // debug: also the whole messages, through Message::ToString() — still never a key.
  ASSERT_TRUE(test_support::WriteHostJson(spec_, {{"log_level", "debug"}}).ok());
  auto host = Start();
  const std::uint16_t port = ListeningPort(*host, "plain TCP");
  ASSERT_NE(port, 0);
  EXPECT_THAT(host->out(), HasSubstr("(TEST keys)"));

  auto transport = Transport(port);
  ASSERT_NE(transport, nullptr);
  terminal::HostLink link(LinkConfig(), *transport, *terminal_keys_);
  auto signed_on = link.SignOn();
  ASSERT_TRUE(signed_on.ok()) << signed_on.error().message << "\n" << host->err();
  ASSERT_TRUE(signed_on->approved()) << iso8583::ResponseCodeName(signed_on->code);
  EXPECT_TRUE(link.signed_on());
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
  EXPECT_TRUE(echo->host_time.has_value());
  auto parameters = link.DownloadParameters(0);
  ASSERT_TRUE(parameters.ok()) << parameters.error().message;
  ASSERT_TRUE(parameters->approved()) << iso8583::ResponseCodeName(parameters->code);
  EXPECT_EQ(parameters->parameters.merchant_name, std::optional<std::string>("City Hospital"));

  host->Signal(SIGTERM);
  EXPECT_EQ(host->WaitForExit(kShutdownGrace + std::chrono::seconds(5)), std::optional<int>(0))
      << host->err();
  EXPECT_THAT(host->out(), HasSubstr("medcard host stopped"));
  EXPECT_THAT(host->out(),
              HasSubstr(std::to_string(transport->exchanges.size()) + " request(s) answered"));

  // The log: the sign-on (trace 1) and the stop; never the working keys' cryptograms.
  const std::string log = ReadText(fs::path(data_dir_) / "host.log");
  EXPECT_THAT(log, HasSubstr("sign-on terminal=" + spec_.terminal_id + " trace=000001 code=00"));
  EXPECT_THAT(log, HasSubstr("host stopped"));
  ASSERT_FALSE(transport->exchanges.empty());
  auto sign_on_answer = iso8583::ParseFrame(transport->exchanges.front().second);
  ASSERT_TRUE(sign_on_answer.ok());
  auto key_block = sign_on_answer->message.GetBytes(62);
  ASSERT_TRUE(key_block.ok());
  ASSERT_EQ(key_block->size(), 38u);  // 5.6.2: two entries of cryptogram (16) ‖ KCV (3)
  for (std::size_t entry = 0; entry < 2; ++entry) {
    const std::string cryptogram = Upper(ToHex(ByteView(*key_block).subspan(entry * 19, 16)));
    EXPECT_THAT(Upper(log), Not(HasSubstr(cryptogram))) << "entry " << entry;
    EXPECT_THAT(Upper(host->err()), Not(HasSubstr(cryptogram)));
    EXPECT_THAT(Upper(host->out()), Not(HasSubstr(cryptogram)));
  }
  EXPECT_THAT(Upper(log), Not(HasSubstr(Upper(ToHex(*key_block)))));
}

TEST_F(HostRunTest, ServesTlsAndAPlainTcpTerminalGetsNoAnswer) {
  const fs::path certificate = fs::path(data_dir_) / "host-cert.pem";
  const fs::path key = fs::path(data_dir_) / "host-key.pem";
  ASSERT_NO_FATAL_FAILURE(WriteSelfSignedCertificate(certificate, key));
  ASSERT_TRUE(test_support::WriteHostJson(spec_, {{"tls_certificate", certificate.string()},
                                                  {"tls_private_key", key.string()}})
                  .ok());
  auto host = Start();
  const std::uint16_t port = ListeningPort(*host, "TLS");
  ASSERT_NE(port, 0);

  auto tls = Transport(port, terminal::TlsConfig{certificate.string(), "localhost"});
  ASSERT_NE(tls, nullptr);
  terminal::HostLink link(LinkConfig(), *tls, *terminal_keys_);
  auto signed_on = link.SignOn();
  ASSERT_TRUE(signed_on.ok()) << signed_on.error().message << "\n" << host->err();
  EXPECT_TRUE(signed_on->approved());
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());

  // The same terminal without TLS: the host never answers it.
  auto plain = Transport(port);
  ASSERT_NE(plain, nullptr);
  terminal::HostLink plain_link(LinkConfig(), *plain, *terminal_keys_);
  auto refused = plain_link.SignOn();
  EXPECT_FALSE(refused.ok()) << "a plain-TCP sign-on was answered by a TLS host";
  EXPECT_TRUE(plain->exchanges.empty());

  // And the TLS terminal is still served.
  auto again = link.EchoTest();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->approved());

  host->Signal(SIGTERM);
  EXPECT_EQ(host->WaitForExit(kShutdownGrace + std::chrono::seconds(5)), std::optional<int>(0))
      << host->err();
  EXPECT_THAT(host->out(), HasSubstr("medcard host stopped"));
}

TEST_F(HostRunTest, SigtermWithAFrameHalfReceivedExitsWithinTheGracePeriod) {
  auto host = Start();
  const std::uint16_t port = ListeningPort(*host, "plain TCP");
  ASSERT_NE(port, 0);

  const int socket = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(socket, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(socket, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  // A length of 64 and 10 of those bytes: a frame the host has started and cannot finish.
  const unsigned char half_frame[] = {0x00, 0x40, 0x60, 0x00, 0x03, 0x00, 0x00,
                                      0x60, 0x01, 0x00, 0x00, 0x00, 0x00};
  ASSERT_EQ(::send(socket, half_frame, sizeof half_frame, 0),
            static_cast<ssize_t>(sizeof half_frame));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the host read it

  const auto signalled = Clock::now();
  host->Signal(SIGTERM);
  const std::optional<int> status = host->WaitForExit(kShutdownGrace + std::chrono::seconds(5));
  const auto took = Clock::now() - signalled;
  EXPECT_EQ(status, std::optional<int>(0)) << host->err();
  EXPECT_LT(took, kShutdownGrace) << "the host waited out its grace period for half a frame";
  EXPECT_THAT(host->out(), HasSubstr("medcard host stopped: 1 connection(s), 0 request(s)"));
  // The host closed the connection without an answer.
  pollfd readable{socket, POLLIN, 0};
  ASSERT_EQ(::poll(&readable, 1, 5000), 1);
  char byte = 0;
  EXPECT_LE(::recv(socket, &byte, 1, 0), 0);
  ::close(socket);
}

TEST_F(HostRunTest, UnknownConfigurationFieldIsRefusedByName) {
  std::ofstream(fs::path(data_dir_) / "host.json", std::ios::trunc)
      << R"({"key_store": ")" << (fs::path(data_dir_) / "keys").string()
      << R"(", "listen_port": 9000})";
  auto host = Start();
  EXPECT_EQ(host->WaitForExit(kStartTimeout), std::optional<int>(1));
  EXPECT_THAT(host->err(), HasSubstr("\"listen_port\" is not a known setting"));
  EXPECT_THAT(host->err(), HasSubstr("host.json"));
  EXPECT_THAT(host->out(), Not(HasSubstr("listening")));
}

TEST_F(HostRunTest, PortInUseIsRefusedClearly) {
  const int taken = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(taken, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t size = sizeof address;
  ASSERT_EQ(::getsockname(taken, reinterpret_cast<sockaddr*>(&address), &size), 0);
  const std::string listen = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));

  auto host = Start(listen);
  EXPECT_EQ(host->WaitForExit(kStartTimeout), std::optional<int>(1));
  EXPECT_THAT(host->err(), HasSubstr("cannot listen on " + listen));
  EXPECT_THAT(host->err(), HasSubstr("in use"));
  EXPECT_THAT(host->out(), Not(HasSubstr("listening")));
  ::close(taken);
}

TEST_F(HostRunTest, BadListenPortIsAUsageError) {
  auto host = Start("127.0.0.1:");
  EXPECT_EQ(host->WaitForExit(kStartTimeout), std::optional<int>(2));
  EXPECT_THAT(host->err(), HasSubstr("--listen: bad port"));
}

TEST(HostRunWithoutInit, DirectoryWithoutHostJsonTellsToRunHostInit) {
  const std::string empty = test_support::NewTempDir("medcard-host-run-empty");
  HostRun host({"--data", empty}, fs::path(empty) / "stderr");
  EXPECT_EQ(host.WaitForExit(kStartTimeout), std::optional<int>(1));
  EXPECT_THAT(host.err(), HasSubstr("no host.json"));
  EXPECT_THAT(host.err(), HasSubstr("medcard host init --data " + empty));
  EXPECT_FALSE(fs::exists(fs::path(empty) / "medcard.db")) << "host run created a database";
}

}  // namespace
}  // namespace medcard
