// The API's HTTPS listener (docs/api.md "Running"): cpp-httplib with OpenSSL, TLS 1.2 or later,
// a thread pool, read/write timeouts, a body limit, one log line per request (method, path,
// status, duration, request id, user — never a body) and a graceful stop. Plain HTTP only on a
// loopback address (development); every request goes to a dispatch function (Api::Handle).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "api/routes.h"
#include "common/result.h"

namespace httplib {
class Server;
}

namespace medcard::api {

inline constexpr std::uint16_t kDefaultApiPort = 8080;

struct ServerOptions {
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = kDefaultApiPort;  // 0: any free port (tests; see Server::port())
  // PEM files; both empty: plain HTTP, refused unless listen_address is loopback.
  std::string tls_certificate;
  std::string tls_private_key;
  std::size_t threads = 8;
  std::chrono::seconds read_timeout{30};
  std::chrono::seconds write_timeout{30};
  std::chrono::seconds keep_alive_timeout{5};
};

// 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackAddress(const std::string& address);

using Dispatch = std::function<HttpResponse(const HttpRequest&)>;

class Server {
 public:
  // Binds and starts serving on a thread of its own. Fails (nothing listening) when plain HTTP
  // is asked for on a non-loopback address, the certificate or key cannot be loaded, or the
  // address cannot be bound.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options, Dispatch dispatch);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const { return port_; }
  bool tls() const { return tls_; }
  // Stops accepting, lets the requests in progress finish, joins the threads. Idempotent.
  void Stop();

 private:
  Server() = default;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  bool tls_ = false;
};

}  // namespace medcard::api
