// The host's network server over loopback: round trips/s and p50/p99 latency with N concurrent
// clients and a trivial handler, beside the same clients against a bare Asio echo (no queue, no
// processing thread, no groups) measured in the same run. Figures only, no assertions.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rate_reporter.h"
#include "server/server.h"

namespace medcard {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr int kRoundTripsPerIteration = 2000;
constexpr int kClientCounts[] = {1, 16, 256};

// About the size of a purchase upload frame: TPDU ‖ header ‖ a 0200 message.
Bytes RequestFrame() {
  Bytes frame(120);
  for (std::size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<std::uint8_t>(i);
  return frame;
}

std::vector<server::Reply> ReverseEach(std::span<const Bytes> frames) {
  std::vector<server::Reply> replies;
  replies.reserve(frames.size());
  for (const Bytes& frame : frames) {
    replies.push_back(server::Reply{Bytes(frame.rbegin(), frame.rend())});
  }
  return replies;
}

// The baseline: each connection reads a frame and writes it back reversed, on one I/O thread.
class RawEcho {
 public:
  RawEcho() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    Accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RawEcho() {
    io_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    explicit Session(tcp::socket s) : socket(std::move(s)) {}
    void Read() {
      asio::async_read(socket, asio::buffer(length),
                       [self = shared_from_this()](std::error_code error, std::size_t) {
                         if (error) return;
                         self->frame.resize((std::size_t{self->length[0]} << 8) | self->length[1]);
                         asio::async_read(self->socket, asio::buffer(self->frame),
                                          [self](std::error_code body_error, std::size_t) {
                                            if (!body_error) self->Write();
                                          });
                       });
    }
    void Write() {
      std::reverse(frame.begin(), frame.end());
      out.assign(length.begin(), length.end());
      Append(out, frame);
      asio::async_write(socket, asio::buffer(out),
                        [self = shared_from_this()](std::error_code error, std::size_t) {
                          if (!error) self->Read();
                        });
    }
    tcp::socket socket;
    std::array<std::uint8_t, 2> length{};
    Bytes frame, out;
  };
  void Accept() {
    acceptor_.async_accept([this](std::error_code error, tcp::socket socket) {
      if (error) return;
      socket.set_option(tcp::no_delay(true));
      std::make_shared<Session>(std::move(socket))->Read();
      Accept();
    });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

// N connections on one client thread, each sending a frame and waiting for its answer, again
// and again, until `round_trips` answers came back in all. Latencies in microseconds.
class Clients {
 public:
  Clients(std::uint16_t port, int count) {
    for (int i = 0; i < count; ++i) {
      auto& connection = connections_.emplace_back(std::make_unique<Connection>(io_));
      connection->socket.connect({asio::ip::make_address("127.0.0.1"), port});
      connection->socket.set_option(tcp::no_delay(true));
      AppendU16(connection->request, static_cast<std::uint16_t>(RequestFrame().size()));
      Append(connection->request, RequestFrame());
    }
  }

  void Run(int round_trips, std::vector<double>& latencies_us) {
    remaining_ = round_trips;
    latencies_ = &latencies_us;
    for (auto& connection : connections_) Issue(*connection);
    io_.restart();
    io_.run();
  }

 private:
  struct Connection {
    explicit Connection(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    Bytes request, answer;
    std::array<std::uint8_t, 2> length{};
    Clock::time_point sent;
  };

  void Issue(Connection& connection) {
    if (remaining_ == 0) return;
    --remaining_;
    connection.sent = Clock::now();
    asio::async_write(connection.socket, asio::buffer(connection.request),
                      [this, &connection](std::error_code error, std::size_t) {
                        if (!error) ReadAnswer(connection);
                      });
  }

  void ReadAnswer(Connection& connection) {
    asio::async_read(
        connection.socket, asio::buffer(connection.length),
        [this, &connection](std::error_code error, std::size_t) {
          if (error) return;
          connection.answer.resize((std::size_t{connection.length[0]} << 8) | connection.length[1]);
          asio::async_read(connection.socket, asio::buffer(connection.answer),
                           [this, &connection](std::error_code body_error, std::size_t) {
                             if (body_error) return;
                             latencies_->push_back(std::chrono::duration<double, std::micro>(
                                                       Clock::now() - connection.sent)
                                                       .count());
                             Issue(connection);
                           });
        });
  }

  asio::io_context io_;
  std::vector<std::unique_ptr<Connection>> connections_;
  int remaining_ = 0;
  std::vector<double>* latencies_ = nullptr;
};

double Percentile(std::vector<double>& values, double fraction) {
  if (values.empty()) return 0;
  const auto nth =
      values.begin() + static_cast<long>(fraction * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), nth, values.end());
  return *nth;
}

void RunRoundTrips(benchmark::State& state, std::uint16_t port, int clients) {
  Clients driver(port, clients);
  std::vector<double> latencies_us;
  for (auto _ : state) driver.Run(kRoundTripsPerIteration, latencies_us);
  state.SetItemsProcessed(state.iterations() * kRoundTripsPerIteration);
  state.counters["p50_us"] = Percentile(latencies_us, 0.50);
  state.counters["p99_us"] = Percentile(latencies_us, 0.99);
}

void ServerRoundTrips(benchmark::State& state, int clients) {
  auto server = server::Server::Start(server::Options{}, ReverseEach);
  if (!server.ok()) {
    state.SkipWithError(server.error().message.c_str());
    return;
  }
  RunRoundTrips(state, (*server)->port(), clients);
  const server::Stats stats = (*server)->stats();
  state.counters["frames_per_group"] =
      stats.groups == 0
          ? 0.0
          : static_cast<double>(stats.frames_received) / static_cast<double>(stats.groups);
}

void RawEchoRoundTrips(benchmark::State& state, int clients) {
  RawEcho echo;
  RunRoundTrips(state, echo.port(), clients);
}

}  // namespace
}  // namespace medcard

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // one line per connection would drown the figures
  for (int clients : medcard::kClientCounts) {
    const std::string suffix = "_" + std::to_string(clients) + "_clients";
    benchmark::RegisterBenchmark(("server" + suffix).c_str(), medcard::ServerRoundTrips, clients)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("raw_echo" + suffix).c_str(), medcard::RawEchoRoundTrips, clients)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  for (int clients : medcard::kClientCounts) {
    const std::string suffix = "_" + std::to_string(clients) + "_clients";
    const std::string label =
        "server / raw echo round trips, " + std::to_string(clients) + " clients";
    reporter.PrintRatio(label.c_str(), "server" + suffix, "raw_echo" + suffix);
  }
  benchmark::Shutdown();
  return 0;
}
