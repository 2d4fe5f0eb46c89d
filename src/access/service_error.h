// Errors of the services people use (tellers, auditors, the agency's system account): a kind
// the HTTPS API maps to its status code, a message for the person, and the request field at
// fault when there is one. Shared by access, audit, branch and api.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "store/store.h"

namespace medcard::access {

enum class ErrorCode {
  kInvalid,          // 400: the request is malformed or a field is wrong (`field` names it)
  kUnauthenticated,  // 401: no session, a bad password, an expired or signed-out session
  kForbidden,        // 403: the role may not do this, or the authoriser may not authorise it
  kNotFound,         // 404: no such user, card, person...
  kConflict,         // 409: the state changed under the request (another teller won), a replay
  kLocked,           // 423: the user is locked out after too many failed sign-ins
  kUnprocessable,    // 422: well-formed, but the business rule says no (card already lost, ...)
  kInternal,         // 500: the database or key store failed; nothing was changed
};

// "invalid", "unauthenticated", ... (the API's error.code).
constexpr std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalid:
      return "invalid";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kForbidden:
      return "forbidden";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kLocked:
      return "locked";
    case ErrorCode::kUnprocessable:
      return "unprocessable";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

struct ServiceError : Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string field;  // the request field at fault, when there is one
};

inline ServiceError MakeServiceError(ErrorCode code, std::string message, std::string field = {}) {
  ServiceError e;
  e.message = std::move(message);
  e.code = code;
  e.field = std::move(field);
  return e;
}

template <typename T>
using ServiceResult = store::Expected<T, ServiceError>;

}  // namespace medcard::access
