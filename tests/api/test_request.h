// A request as the HTTPS server hands it to Router::Dispatch, for the API tests: the path's
// "?a=1&b=2" split into the query map (no percent-decoding: tests send plain values), a JSON
// content type when there is a body, the bearer token and any other headers (lower-case names).
#pragma once

#include <map>
#include <string>

#include "api/routes.h"

namespace medcard::api {

inline HttpRequest TestRequest(const std::string& method, const std::string& path_and_query,
                               const std::string& body, const std::string& token,
                               const std::map<std::string, std::string>& headers,
                               const std::string& remote_address) {
  HttpRequest request;
  request.method = method;
  const auto question = path_and_query.find('?');
  request.path = path_and_query.substr(0, question);
  if (question != std::string::npos) {
    const std::string query = path_and_query.substr(question + 1);
    std::size_t start = 0;
    while (start < query.size()) {
      std::size_t end = query.find('&', start);
      if (end == std::string::npos) end = query.size();
      const std::string pair = query.substr(start, end - start);
      const auto eq = pair.find('=');
      request.query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
      start = end + 1;
    }
  }
  request.body = body;
  request.remote_address = remote_address;
  if (!body.empty()) request.headers["content-type"] = "application/json";
  if (!token.empty()) request.headers["authorization"] = "Bearer " + token;
  for (const auto& [name, value] : headers) request.headers[name] = value;
  return request;
}

}  // namespace medcard::api
