#include "api/server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <fstream>

#include "api/json_request.h"

namespace medcard::api {
namespace {

HttpRequest FromHttplib(const httplib::Request& in) {
  HttpRequest out;
  out.method = in.method;
  out.path = in.path;
  for (const auto& [name, value] : in.params) out.query.emplace(name, value);
  for (const auto& [name, value] : in.headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers.emplace(std::move(lower), value);
  }
  out.body = in.body;
  out.remote_address = in.remote_addr;
  return out;
}

void ToHttplib(const HttpResponse& in, httplib::Response& out) {
  out.status = in.status;
  for (const auto& [name, value] : in.headers) out.set_header(name, value);
  out.set_content(in.body, in.content_type);
}

// The path only: query strings may carry names or cursors, bodies never reach the log.
void LogRequest(const std::string& method, const std::string& path, const HttpResponse& response,
                std::chrono::steady_clock::duration elapsed, const std::string& remote) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  const std::string& user = response.user.empty() ? std::string("-") : response.user;
  if (response.status >= 500) {
    spdlog::error("api: {} {} {} {}us id={} user={} from={}", method, path, response.status, micros,
                  response.request_id, user, remote);
  } else {
    spdlog::info("api: {} {} {} {}us id={} user={} from={}", method, path, response.status, micros,
                 response.request_id, user, remote);
  }
}

bool Readable(const std::string& path) {
  std::ifstream file(path);
  return file.good();
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  if (address == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options, Dispatch dispatch) {
  const bool tls = !options.tls_certificate.empty() || !options.tls_private_key.empty();
  if (!tls && !IsLoopbackAddress(options.listen_address)) {
    return MakeError(
        "api: plain HTTP is only allowed on a loopback address; configure a TLS "
        "certificate and key to listen on " +
        options.listen_address);
  }
  std::unique_ptr<Server> server(new Server());
  server->tls_ = tls;
  if (tls) {
    if (options.tls_certificate.empty() || options.tls_private_key.empty()) {
      return MakeError("api: TLS needs both a certificate and a private key");
    }
    if (!Readable(options.tls_certificate) || !Readable(options.tls_private_key)) {
      return MakeError("api: cannot read the TLS certificate or private key file");
    }
    auto ssl = std::make_unique<httplib::SSLServer>(options.tls_certificate.c_str(),
                                                    options.tls_private_key.c_str());
    if (!ssl->is_valid()) {
      return MakeError(
          "api: the TLS certificate or private key is not valid (PEM expected, the "
          "key must match the certificate)");
    }
    SSL_CTX_set_min_proto_version(ssl->ssl_context(), TLS1_2_VERSION);
    server->http_ = std::move(ssl);
  } else {
    server->http_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& http = *server->http_;
  const std::size_t threads = options.threads == 0 ? 1 : options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_read_timeout(options.read_timeout);
  http.set_write_timeout(options.write_timeout);
  http.set_keep_alive_timeout(options.keep_alive_timeout.count());
  http.set_payload_max_length(kMaxBodyBytes);

  auto handle = [dispatch](const httplib::Request& request, httplib::Response& response) {
    const auto started = std::chrono::steady_clock::now();
    HttpResponse answer = dispatch(FromHttplib(request));
    ToHttplib(answer, response);
    LogRequest(request.method, request.path, answer, std::chrono::steady_clock::now() - started,
               request.remote_addr);
  };
  // Every path goes to the dispatcher, which knows the routes (404/405 are its answers).
  const std::string all = R"(/.*)";
  http.Get(all, handle);
  http.Post(all, handle);
  http.Put(all, handle);
  http.Patch(all, handle);
  http.Delete(all, handle);
  http.Options(all, handle);
  // Errors cpp-httplib answers itself (413 above the body limit, 400 for a malformed request
  // line, a method it does not know) get the API's error body and a request id too.
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& request, httplib::Response& response) {
        if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        HttpResponse answer;
        switch (response.status) {
          case 413:
            answer = ErrorResponse(413, "payload_too_large", "the request body is too large");
            break;
          case 404:
            answer = ErrorResponse(404, "not_found", "no such resource");
            break;
          case 405:
            answer = ErrorResponse(405, "method_not_allowed", "method not allowed here");
            break;
          default:
            answer = ErrorResponse(response.status, response.status >= 500 ? "internal" : "invalid",
                                   "the request could not be processed");
            break;
        }
        answer.request_id = NewRequestId();
        answer.headers.emplace_back("X-Request-Id", answer.request_id);
        ToHttplib(answer, response);
        LogRequest(request.method, request.path, answer, {}, request.remote_addr);
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr) {
        HttpResponse answer = ErrorResponse(500, "internal", "internal error");
        ToHttplib(answer, response);
      });

  int port = 0;
  if (options.port == 0) {
    port = http.bind_to_any_port(options.listen_address);
  } else {
    port = http.bind_to_port(options.listen_address, options.port) ? options.port : -1;
  }
  if (port <= 0) {
    return MakeError("api: cannot listen on " + options.listen_address + ":" +
                     std::to_string(options.port));
  }
  server->port_ = static_cast<std::uint16_t>(port);
  server->thread_ = std::thread([&http] { http.listen_after_bind(); });
  spdlog::info("api: listening on {}:{} ({})", options.listen_address, server->port_,
               tls ? "HTTPS" : "plain HTTP, loopback only");
  return server;
}

void Server::Stop() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

Server::~Server() { Stop(); }

}  // namespace medcard::api
