// Fuzzes the API's request path without a network (api/routes.h, api/json_request.h): the input's
// first line is "METHOD /path?query", the rest the body. It goes through Router::Dispatch (route
// matching, 404/405/413/415, request ids) to handlers that validate the body with schemas shaped
// like the endpoints' (nested authorisation, money, ASN, dates, pagination). Invariants: every
// answer has a request id; every error is {"error": {"code", "message", "field"}}; a body a
// schema accepted, serialised again, is accepted again with the same values.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/json_request.h"
#include "api/routes.h"

namespace {

using medcard::api::HttpRequest;
using medcard::api::HttpResponse;
using medcard::api::JsonRequest;
using medcard::api::Pattern;
using medcard::api::Presence;
using medcard::api::Schema;
using nlohmann::json;

void Check(bool condition) {
  if (!condition) std::abort();
}

const Schema& Authorisation() {
  static const Schema schema = Schema()
                                   .String("login", Presence::kRequired, 3, 32, Pattern::kLogin)
                                   .String("password", Presence::kRequired, 1, 200);
  return schema;
}

const Schema& CardAction() {
  static const Schema schema =
      Schema()
          .Integer("expected_version", Presence::kOptional, 0, std::int64_t{1} << 53)
          .String("reason", Presence::kOptional, 0, 200)
          .Money("amount", Presence::kOptional, 1'000'000'000)
          .String("valid_to", Presence::kOptional, 10, 10, Pattern::kDate)
          .String("challenge", Presence::kOptional, 8, 16, Pattern::kHex)
          .Boolean("urgent", Presence::kOptional)
          .Object("authorisation", Presence::kOptional, Authorisation());
  return schema;
}

HttpResponse Validate(const HttpRequest& request, const medcard::api::PathParams& params) {
  if (!medcard::api::MatchesPattern(params.at("asn"), Pattern::kAsn)) {
    return medcard::api::ErrorResponse(400, "invalid", "20 hex digits", "asn");
  }
  auto parsed = medcard::api::ParseJsonRequest(request.body, CardAction());
  if (!parsed.ok()) return medcard::api::ErrorResponse(parsed.error());
  // Accepted once: accepted again after a round trip, with the same values.
  const std::string again = parsed->json().dump();
  auto reparsed = medcard::api::ParseJsonRequest(again, CardAction());
  Check(reparsed.ok());
  Check(reparsed->json() == parsed->json());
  if (auto amount = parsed->OptionalInteger("amount")) Check(*amount >= 0);
  return medcard::api::JsonResponse(200, again);
}

const medcard::api::Router& TheRouter() {
  static const medcard::api::Router router = [] {
    medcard::api::Router r;
    r.Add("POST", "/v1/cards/{asn}/loss", Validate);
    r.Add("DELETE", "/v1/cards/{asn}/loss", Validate);
    r.Add("GET", "/v1/cards/{asn}/transactions",
          [](const HttpRequest& request, const medcard::api::PathParams&) {
            auto page = medcard::api::ParsePage(request);
            if (!page.ok()) return medcard::api::ErrorResponse(page.error());
            Check(page->limit >= 1 && page->limit <= medcard::api::kMaxPageLimit);
            return medcard::api::JsonResponse(200, R"({"items": [], "next": null})");
          });
    return r;
  }();
  return router;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  std::string_view line = input.substr(0, newline);
  HttpRequest request;
  request.body = newline == std::string_view::npos ? "" : std::string(input.substr(newline + 1));
  const std::size_t space = line.find(' ');
  request.method = std::string(line.substr(0, space));
  std::string_view target = space == std::string_view::npos ? "" : line.substr(space + 1);
  const std::size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      const std::size_t eq = pair.find('=');
      request.query[std::string(pair.substr(0, eq))] =
          eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  request.headers["content-type"] = "application/json";
  request.headers["x-request-id"] = "fuzz-1";

  const HttpResponse response = TheRouter().Dispatch(request);
  Check(response.request_id == "fuzz-1");
  if (response.status >= 400) {
    const json body = json::parse(response.body, nullptr, false);
    Check(body.is_object() && body.contains("error"));
    Check(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    Check(body["error"]["field"].is_null() || body["error"]["field"].is_string());
  }
  return 0;
}
