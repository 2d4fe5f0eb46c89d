// The medcard message catalogue and its validators (docs/protocol.md "Messages").
#include "iso8583/messages.h"

#include <algorithm>
#include <string>

namespace medcard::iso8583 {

namespace {

using enum Presence;

// Field rules per message; the order is the field order.
constexpr FieldRule kSignOnRequest[] = {{11, kMandatory}, {41, kMandatory}, {42, kMandatory},
                                        {60, kMandatory}, {62, kMandatory}, {63, kOptional},
                                        {64, kMandatory}};
constexpr FieldRule kSignOnResponse[] = {
    {11, kEcho}, {12, kIfApproved}, {13, kIfApproved}, {39, kMandatory},  {41, kEcho},
    {42, kEcho}, {53, kIfApproved}, {60, kEcho},       {62, kIfApproved}, {64, kWhenApproved}};
constexpr FieldRule kNetworkRequest[] = {{11, kMandatory}, {41, kMandatory}, {42, kMandatory},
                                         {53, kMandatory}, {60, kMandatory}, {64, kMandatory}};
constexpr FieldRule kNetworkResponse[] = {{11, kEcho}, {39, kMandatory}, {41, kEcho},
                                          {42, kEcho}, {60, kEcho},      {64, kWhenApproved}};
constexpr FieldRule kEchoTestResponse[] = {{11, kEcho},      {12, kIfApproved},  {13, kIfApproved},
                                           {39, kMandatory}, {41, kEcho},        {42, kEcho},
                                           {60, kEcho},      {64, kWhenApproved}};
constexpr FieldRule kDownloadRequest[] = {{11, kMandatory}, {41, kMandatory}, {42, kMandatory},
                                          {53, kMandatory}, {60, kMandatory}, {62, kMandatory},
                                          {64, kMandatory}};
constexpr FieldRule kDataResponse[] = {{11, kEcho},        {39, kMandatory}, {41, kEcho},
                                       {42, kEcho},        {60, kEcho},      {62, kIfApproved},
                                       {64, kWhenApproved}};
constexpr FieldRule kBalanceRequest[] = {
    {2, kWithPin},    {3, kMandatory},  {11, kMandatory}, {22, kMandatory}, {25, kMandatory},
    {26, kWithPin},   {41, kMandatory}, {42, kMandatory}, {49, kMandatory}, {52, kOptional},
    {53, kMandatory}, {60, kMandatory}, {62, kMandatory}, {64, kMandatory}};
constexpr FieldRule kBalanceResponse[] = {{3, kEcho},        {11, kEcho}, {39, kMandatory},
                                          {41, kEcho},       {42, kEcho}, {49, kEcho},
                                          {54, kIfApproved}, {60, kEcho}, {64, kWhenApproved}};
constexpr FieldRule kLoadRequest[] = {{3, kMandatory},  {4, kMandatory},  {11, kMandatory},
                                      {22, kMandatory}, {25, kMandatory}, {41, kMandatory},
                                      {42, kMandatory}, {49, kMandatory}, {53, kMandatory},
                                      {60, kMandatory}, {62, kMandatory}, {64, kMandatory}};
constexpr FieldRule kLoadResponse[] = {
    {3, kEcho},  {4, kEcho},        {11, kEcho},       {12, kIfApproved},  {13, kIfApproved},
    {25, kEcho}, {37, kIfApproved}, {39, kMandatory},  {41, kEcho},        {42, kEcho},
    {49, kEcho}, {60, kEcho},       {62, kIfApproved}, {64, kWhenApproved}};
constexpr FieldRule kConfirmationRequest[] = {{3, kMandatory},  {4, kMandatory},  {11, kMandatory},
                                              {25, kMandatory}, {41, kMandatory}, {42, kMandatory},
                                              {49, kMandatory}, {53, kMandatory}, {60, kMandatory},
                                              {61, kMandatory}, {62, kMandatory}, {64, kMandatory}};
constexpr FieldRule kConfirmationResponse[] = {
    {3, kEcho},  {4, kEcho},  {11, kEcho}, {25, kEcho}, {37, kIfApproved},  {39, kMandatory},
    {41, kEcho}, {42, kEcho}, {49, kEcho}, {60, kEcho}, {64, kWhenApproved}};
constexpr FieldRule kReversalRequest[] = {
    {3, kMandatory},  {4, kMandatory},  {11, kMandatory}, {25, kMandatory}, {39, kMandatory},
    {41, kMandatory}, {42, kMandatory}, {49, kMandatory}, {53, kMandatory}, {60, kMandatory},
    {61, kMandatory}, {62, kMandatory}, {64, kMandatory}};
constexpr FieldRule kReversalResponse[] = {
    {3, kEcho},  {4, kEcho},  {11, kEcho}, {25, kEcho}, {39, kMandatory},
    {41, kEcho}, {42, kEcho}, {49, kEcho}, {60, kEcho}, {64, kWhenApproved}};
constexpr FieldRule kBatchUploadRequest[] = {{11, kMandatory}, {41, kMandatory}, {42, kMandatory},
                                             {53, kMandatory}, {60, kMandatory}, {62, kMandatory},
                                             {64, kMandatory}};
constexpr FieldRule kSettlementRequest[] = {{11, kMandatory}, {41, kMandatory}, {42, kMandatory},
                                            {48, kMandatory}, {49, kMandatory}, {53, kMandatory},
                                            {60, kMandatory}, {62, kMandatory}, {64, kMandatory}};
constexpr FieldRule kSettlementResponse[] = {{11, kEcho}, {39, kMandatory},  {41, kEcho},
                                             {42, kEcho}, {48, kEcho},       {49, kEcho},
                                             {60, kEcho}, {62, kIfApproved}, {64, kWhenApproved}};

constexpr std::string_view kProcBalance = "310000";
constexpr std::string_view kProcLoadEd = "600001";
constexpr std::string_view kProcLoadEp = "600002";

using T = Transaction;
constexpr TransactionSpec kCatalogue[] = {
    {T::kSignOn,
     "sign-on",
     0x0800,
     {},
     kMessageTypeNetwork,
     {kNetworkSignOn, kNetworkSignOnWithDataKey},
     MacKeyUse::kTerminalMasterKey,
     kSignOnRequest,
     kSignOnResponse},
    {T::kSignOff,
     "sign-off",
     0x0820,
     {},
     kMessageTypeNetwork,
     {kNetworkSignOff, kNetworkSignOff},
     MacKeyUse::kWorkingMacKey,
     kNetworkRequest,
     kNetworkResponse},
    {T::kEchoTest,
     "echo test",
     0x0820,
     {},
     kMessageTypeNetwork,
     {kNetworkEchoTest, kNetworkEchoTest},
     MacKeyUse::kWorkingMacKey,
     kNetworkRequest,
     kEchoTestResponse},
    {T::kParameterDownload,
     "parameter download",
     0x0800,
     {},
     kMessageTypeNetwork,
     {kNetworkParameterDownload, kNetworkParameterDownload},
     MacKeyUse::kWorkingMacKey,
     kDownloadRequest,
     kDataResponse},
    {T::kBlacklistDownload,
     "blacklist download",
     0x0800,
     {},
     kMessageTypeNetwork,
     {kNetworkBlacklistDownload, kNetworkBlacklistDownload},
     MacKeyUse::kWorkingMacKey,
     kDownloadRequest,
     kDataResponse},
    {T::kSettlementChallenge,
     "settlement challenge",
     0x0800,
     {},
     kMessageTypeNetwork,
     {kNetworkSettlementChallenge, kNetworkSettlementChallenge},
     MacKeyUse::kWorkingMacKey,
     kNetworkRequest,
     kDataResponse},
    {T::kBalanceInquiry,
     "balance inquiry",
     0x0200,
     {kProcBalance, kProcBalance},
     kMessageTypeBalance,
     {0, 0},
     MacKeyUse::kWorkingMacKey,
     kBalanceRequest,
     kBalanceResponse},
    {T::kLoad,
     "online load",
     0x0200,
     {kProcLoadEd, kProcLoadEp},
     kMessageTypeLoad,
     {0, 0},
     MacKeyUse::kWorkingMacKey,
     kLoadRequest,
     kLoadResponse},
    {T::kLoadConfirmation,
     "load confirmation",
     0x0220,
     {kProcLoadEd, kProcLoadEp},
     kMessageTypeLoad,
     {0, 0},
     MacKeyUse::kWorkingMacKey,
     kConfirmationRequest,
     kConfirmationResponse},
    {T::kLoadReversal,
     "load reversal",
     0x0400,
     {kProcLoadEd, kProcLoadEp},
     kMessageTypeLoad,
     {0, 0},
     MacKeyUse::kWorkingMacKey,
     kReversalRequest,
     kReversalResponse},
    {T::kBatchUpload,
     "batch upload",
     0x0320,
     {},
     kMessageTypeBatchUpload,
     {0, 0},
     MacKeyUse::kWorkingMacKey,
     kBatchUploadRequest,
     kNetworkResponse},
    {T::kSettlement,
     "settlement",
     0x0500,
     {},
     kMessageTypeSettlement,
     {0, 0},
     MacKeyUse::kWorkingMacKey,
     kSettlementRequest,
     kSettlementResponse},
};

constexpr bool CatalogueInEnumOrder() {
  for (std::size_t i = 0; i < std::size(kCatalogue); ++i) {
    if (static_cast<std::size_t>(kCatalogue[i].transaction) != i) return false;
  }
  return true;
}
static_assert(CatalogueInEnumOrder(), "SpecOf indexes the catalogue by Transaction");

// What a refusal may carry back when the transaction could not be identified.
constexpr int kRefusalEcho[] = {3, 4, 11, 25, 41, 42, 48, 49, 60};

std::string Text(const Message& m, int field) {
  auto digits =
      FindField(field)->format == FieldFormat::kN || FindField(field)->format == FieldFormat::kZ
          ? m.GetDigits(field)
          : m.GetText(field);
  return digits.ok() ? *digits : std::string();
}

Bytes Binary(const Message& m, int field) {
  auto b = m.GetBytes(field);
  return b.ok() ? *b : Bytes();
}

// A nested error's text without its own "iso8583: " (the outer message adds one).
std::string Bare(const Error& error) {
  constexpr std::string_view kPrefix = "iso8583: ";
  const std::string& m = error.message;
  return m.rfind(kPrefix, 0) == 0 ? m.substr(kPrefix.size()) : m;
}

std::string Describe(const TransactionSpec& spec, bool response) {
  return std::string(spec.name) + (response ? " response " : " request ") +
         MtiText(response ? spec.response_mti() : spec.request_mti);
}

struct Refused {
  ResponseCode code;
  std::string reason;
};

// Checks the presence rules. `request` only for responses (echo comparison).
std::optional<Refused> CheckPresence(const Message& m, const TransactionSpec& spec, bool response,
                                     const Message* request) {
  const std::span<const FieldRule> rules = response ? spec.response_fields : spec.request_fields;
  const std::string what = Describe(spec, response);
  const bool approved = response && Text(m, 39) == "00";
  const bool pin = m.Has(52);
  for (const FieldRule& rule : rules) {
    const bool present = m.Has(rule.field);
    const std::string field = "field " + std::to_string(rule.field);
    bool must = false, must_not = false;
    switch (rule.presence) {
      case kMandatory:
        must = true;
        break;
      case kOptional:
        break;
      case kEcho:
      case kWhenApproved:
        must = approved;
        break;
      case kIfApproved:
        must = approved;
        must_not = !approved;
        break;
      case kWithPin:
        must = pin;
        must_not = !pin;
        break;
    }
    if (must && !present) {
      return Refused{ResponseCode::kFormatError, what + ": " + field + " missing"};
    }
    if (must_not && present) {
      return Refused{
          ResponseCode::kFormatError,
          what + ": " + field + " not allowed " +
              (rule.presence == kWithPin ? "without a PIN block (field 52)" : "when 39 is not 00")};
    }
    if (rule.presence == kEcho && present && request != nullptr) {
      const FieldDefinition& def = *FindField(rule.field);
      const bool same =
          def.format == FieldFormat::kB
              ? Binary(*request, rule.field) == Binary(m, rule.field)
              : request->Has(rule.field) && Text(*request, rule.field) == Text(m, rule.field);
      if (!same) {
        return Refused{ResponseCode::kFormatError,
                       what + ": " + field + " differs from the request's"};
      }
    }
  }
  for (int number : m.Fields()) {
    const bool listed = std::any_of(rules.begin(), rules.end(),
                                    [number](const FieldRule& r) { return r.field == number; });
    if (!listed) {
      return Refused{ResponseCode::kFormatError,
                     what + ": field " + std::to_string(number) + " not allowed"};
    }
  }
  return std::nullopt;
}

// REQUIRES: s holds decimal digits at [at, at + 2) (fields 12 and 13 are n).
int TwoDigitValue(const std::string& s, std::size_t at) {
  return (s[at] - '0') * 10 + (s[at + 1] - '0');
}

bool ValidTimeDigits(const std::string& t) {
  return t.size() == 6 && TwoDigitValue(t, 0) <= 23 && TwoDigitValue(t, 2) <= 59 &&
         TwoDigitValue(t, 4) <= 59;
}

// A month-day without a year: 29 February is valid.
bool ValidMonthDay(const std::string& d) {
  return d.size() == 4 && IsValidDate(Date{2000, TwoDigitValue(d, 0), TwoDigitValue(d, 2)});
}

std::string TwoDigits(int v) {
  return std::string{static_cast<char>('0' + v / 10 % 10), static_cast<char>('0' + v % 10)};
}

// Field 62 by transaction and direction.
Status CheckField62(const TransactionSpec& spec, bool response, const Message& m) {
  if (!m.Has(62)) return Status::Ok();
  const Bytes b = Binary(m, 62);
  const ByteView v = View(b);
  auto status = [](const auto& parsed) -> Status {
    if (!parsed.ok()) return parsed.error();
    return Status::Ok();
  };
  switch (spec.transaction) {
    case T::kSignOn: {
      if (!response) return status(SignOnRequest::Parse(v));
      auto keys = WorkingKeys::Parse(v);
      if (!keys.ok()) return keys.error();
      auto f60 = Field60::Parse(Text(m, 60));
      const bool with_data_key = f60.ok() && f60->network_code == kNetworkSignOnWithDataKey;
      if (keys->data_key.has_value() != with_data_key) {
        return MakeError("iso8583: working keys (field 62): sign-on " +
                         std::string(with_data_key ? "004 needs" : "003 has no") + " a data key");
      }
      return Status::Ok();
    }
    case T::kParameterDownload:
      return response ? status(ParameterPart::Parse(v)) : status(DownloadRequest::Parse(v));
    case T::kBlacklistDownload:
      return response ? status(BlacklistPart::Parse(v)) : status(DownloadRequest::Parse(v));
    case T::kSettlementChallenge:
      return status(ParseSettlementChallenge(v));
    case T::kBalanceInquiry:
    case T::kLoadReversal:
      return status(CardReference::Parse(v));
    case T::kLoad: {
      if (!response) return status(LoadRequest::Parse(v));
      auto auth = LoadAuthorisation::Parse(v);
      if (!auth.ok()) return auth.error();
      // The answer's 12/13 are the host time MAC2 covers.
      const std::string time =
          TwoDigits(auth->time.hour) + TwoDigits(auth->time.minute) + TwoDigits(auth->time.second);
      const std::string date = TwoDigits(auth->date.month) + TwoDigits(auth->date.day);
      if (Text(m, 12) != time || Text(m, 13) != date) {
        return MakeError(
            "iso8583: load authorisation (field 62): date and time differ from "
            "fields 12 and 13");
      }
      return Status::Ok();
    }
    case T::kLoadConfirmation:
      return status(LoadConfirmation::Parse(v));
    case T::kBatchUpload:
      return status(PurchaseBatch::Parse(v));
    case T::kSettlement:
      return response ? status(ParseClearTotalsMac(v)) : status(SamTotals::Parse(v));
    case T::kSignOff:
    case T::kEchoTest:
      break;
  }
  return Status::Ok();
}

// Field values and layouts, after CheckPresence.
std::optional<Refused> CheckValues(const Message& m, const TransactionSpec& spec, bool response) {
  const std::string what = Describe(spec, response);
  auto format_error = [&](const std::string& reason) {
    return Refused{ResponseCode::kFormatError, what + ": " + reason};
  };
  const bool pin = m.Has(52);
  for (int number : m.Fields()) {
    const std::string value = FindField(number)->format == FieldFormat::kB ? "" : Text(m, number);
    const std::string field = "field " + std::to_string(number);
    switch (number) {
      case 2: {
        auto card = CardReference::Parse(View(Binary(m, 62)));
        const auto pan = card.ok() ? PanFromAsn(View(card->asn)) : std::nullopt;
        if (!pan || *pan != value) {
          return format_error("field 2 is not the card's PAN (the ASN's digits)");
        }
        break;
      }
      case 4: {
        auto amount = m.GetNumber(4);
        if (!amount.ok() || *amount == 0 || *amount > 0xFFFFFFFFull) {
          return Refused{ResponseCode::kInvalidAmount,
                         what + ": amount " + value + " outside 1..4294967295 fen"};
        }
        break;
      }
      case 11:
        if (value == "000000") return format_error("trace number 000000");
        break;
      case 12:
        if (!ValidTimeDigits(value)) return format_error("field 12 is not a time hhmmss");
        break;
      case 13:
        if (!ValidMonthDay(value)) return format_error("field 13 is not a date MMDD");
        break;
      case 22:
        if (value != (pin ? "051" : "052")) {
          return format_error("field 22 must be " + std::string(pin ? "051" : "052") +
                              (pin ? " with" : " without") + " a PIN block");
        }
        break;
      case 25:
        if (value != "00") return format_error("field 25 must be 00");
        break;
      case 26:
        if (value != "12") return format_error("field 26 must be 12");
        break;
      case 39: {
        const auto code = ParseResponseCode(value);
        if (!code) return format_error("response code '" + value + "' unknown");
        if (!response && *code != ResponseCode::kNoResponse && *code != ResponseCode::kError &&
            *code != ResponseCode::kMacError) {
          return format_error("reversal reason " + value + " must be 98, 06 or A0");
        }
        break;
      }
      case 49:
        if (value != kCurrencyCny) return format_error("currency " + value + ", expected 156");
        break;
      case 53: {
        auto sc = SecurityControl::Parse(value);
        if (!sc.ok()) return format_error(Bare(sc.error()));
        if (!response && sc->pin_block != pin) {
          return format_error("field 53 PIN format digit disagrees with field 52");
        }
        if (response && sc->pin_block) return format_error("field 53 PIN format digit must be 0");
        break;
      }
      case 54: {
        auto balance = AvailableBalance::Parse(value);
        if (!balance.ok()) return format_error(Bare(balance.error()));
        break;
      }
      case 60: {
        auto f60 = Field60::Parse(value);
        if (!f60.ok()) return format_error(Bare(f60.error()));
        if (f60->message_type != spec.message_type) {
          return format_error("60.1 message type " + value.substr(0, 2) + ", expected " +
                              TwoDigits(spec.message_type));
        }
        if (f60->network_code != spec.network_codes[0] &&
            f60->network_code != spec.network_codes[1]) {
          return format_error("60.3 network management code " + value.substr(8, 3) +
                              " does not belong to this message");
        }
        break;
      }
      case 61: {
        auto original = OriginalTransaction::Parse(value);
        if (!original.ok()) return format_error(Bare(original.error()));
        break;
      }
      case 48: {
        auto totals = BatchTotals::Parse(value);
        if (!totals.ok()) return format_error(Bare(totals.error()));
        break;
      }
      case 62: {
        auto checked = CheckField62(spec, response, m);
        if (!checked.ok()) return format_error(Bare(checked.error()));
        break;
      }
      case 64: {
        auto mac = MacOf(m);
        if (!mac.ok()) return format_error(Bare(mac.error()));
        break;
      }
      default:
        break;
    }
  }
  return std::nullopt;
}

Status Fail(const Refused& refused, ResponseCode* code) {
  if (code != nullptr) *code = refused.code;
  const bool prefixed = refused.reason.rfind("iso8583: ", 0) == 0;
  return MakeError(prefixed ? refused.reason : "iso8583: " + refused.reason);
}

}  // namespace

std::span<const TransactionSpec> Catalogue() { return kCatalogue; }

const TransactionSpec& SpecOf(Transaction transaction) {
  return kCatalogue[static_cast<std::size_t>(transaction)];
}

Result<const TransactionSpec*> Identify(const Message& message, ResponseCode* code) {
  const bool response = IsResponseMti(message.mti());
  const Mti request_mti = response ? static_cast<Mti>(message.mti() - 0x10) : message.mti();
  auto fail = [&](ResponseCode c, const std::string& reason) -> Error {
    if (code != nullptr) *code = c;
    return MakeError("iso8583: " + MtiText(message.mti()) + ": " + reason);
  };
  std::vector<const TransactionSpec*> candidates;
  for (const TransactionSpec& spec : kCatalogue) {
    if (spec.request_mti == request_mti) candidates.push_back(&spec);
  }
  if (candidates.empty() || !IsKnownMti(message.mti())) {
    return fail(ResponseCode::kInvalidTransaction, "not a medcard message");
  }
  if (!candidates.front()->processing_codes[0].empty()) {  // told apart by field 3
    if (!message.Has(3)) return fail(ResponseCode::kFormatError, "field 3 missing");
    const std::string proc = Text(message, 3);
    for (const TransactionSpec* spec : candidates) {
      if (spec->processing_codes[0] == proc || spec->processing_codes[1] == proc) return spec;
    }
    return fail(ResponseCode::kInvalidTransaction,
                "processing code " + proc + " is not a medcard transaction");
  }
  if (candidates.size() == 1) return candidates.front();
  // Told apart by 60.3.
  if (!message.Has(60)) return fail(ResponseCode::kFormatError, "field 60 missing");
  auto f60 = Field60::Parse(Text(message, 60));
  if (!f60.ok()) return fail(ResponseCode::kFormatError, Bare(f60.error()));
  if (request_mti == 0x0800 && f60->network_code == kNetworkSignOnSingle) {
    return fail(ResponseCode::kInvalidTransaction,
                "sign-on with single-length keys (60.3 = 001) is not supported: use 003 or 004");
  }
  for (const TransactionSpec* spec : candidates) {
    if (spec->network_codes[0] == f60->network_code ||
        spec->network_codes[1] == f60->network_code) {
      return spec;
    }
  }
  return fail(ResponseCode::kInvalidTransaction,
              "network management code " + Text(message, 60).substr(8, 3) + " unknown");
}

Status ValidateRequest(const Message& request, ResponseCode* code) {
  if (IsResponseMti(request.mti())) {
    return Fail(Refused{ResponseCode::kInvalidTransaction,
                        "MTI " + MtiText(request.mti()) + " is a response, not a request"},
                code);
  }
  auto spec = Identify(request, code);
  if (!spec.ok()) return spec.error();
  if (auto refused = CheckPresence(request, **spec, false, nullptr)) return Fail(*refused, code);
  if (auto refused = CheckValues(request, **spec, false)) return Fail(*refused, code);
  return Status::Ok();
}

Status ValidateResponse(const Message& response, const Message* request) {
  if (!IsResponseMti(response.mti())) {
    return MakeError("iso8583: MTI " + MtiText(response.mti()) + " is not a response");
  }
  if (request != nullptr && response.mti() != ResponseMti(request->mti())) {
    return MakeError("iso8583: response MTI " + MtiText(response.mti()) + " does not answer " +
                     MtiText(request->mti()));
  }
  // A refusal may omit 3 and 60, which tell the transaction apart: then the request does.
  const bool refusal = Text(response, 39) != "00";
  auto spec = Identify(response);
  if (!spec.ok() && refusal && request != nullptr) spec = Identify(*request);
  if (!spec.ok()) return spec.error();
  if (request != nullptr) {
    auto request_spec = Identify(*request);
    if (!request_spec.ok() || *request_spec != *spec) {
      return MakeError("iso8583: the response belongs to another transaction than the request");
    }
  }
  if (auto refused = CheckPresence(response, **spec, true, request)) return Fail(*refused, nullptr);
  if (auto refused = CheckValues(response, **spec, true)) return Fail(*refused, nullptr);
  return Status::Ok();
}

Result<Message> StartResponse(const Message& request, ResponseCode code) {
  if (IsResponseMti(request.mti())) {
    return MakeError("iso8583: MTI " + MtiText(request.mti()) + " is not a request");
  }
  auto spec = Identify(request);
  if (!spec.ok()) return spec.error();
  Message response(ResponseMti(request.mti()));
  for (const FieldRule& rule : (*spec)->response_fields) {
    if (rule.presence != kEcho || !request.Has(rule.field)) continue;
    const FieldDefinition& def = *FindField(rule.field);
    // Values that parsed in the request fit the same field of the response.
    const Status copied = def.format == FieldFormat::kB
                              ? response.SetBytes(rule.field, View(Binary(request, rule.field)))
                          : def.format == FieldFormat::kN || def.format == FieldFormat::kZ
                              ? response.SetDigits(rule.field, Text(request, rule.field))
                              : response.SetText(rule.field, Text(request, rule.field));
    if (!copied.ok()) return copied.error();
  }
  const Status set = response.SetText(39, ResponseCodeText(code));
  if (!set.ok()) return set.error();
  return response;
}

Result<Message> Refusal(const Message& request, ResponseCode code) {
  if (!IsKnownMti(request.mti()) || IsResponseMti(request.mti())) {
    return MakeError("iso8583: MTI " + MtiText(request.mti()) +
                     " is not a medcard request: not answered");
  }
  auto spec = Identify(request);
  if (spec.ok()) return StartResponse(request, code);
  Message response(ResponseMti(request.mti()));
  for (int field : kRefusalEcho) {
    if (!request.Has(field)) continue;
    const FieldDefinition& def = *FindField(field);
    const Status copied = def.format == FieldFormat::kN
                              ? response.SetDigits(field, Text(request, field))
                              : response.SetText(field, Text(request, field));
    if (!copied.ok()) return copied.error();
  }
  const Status set = response.SetText(39, ResponseCodeText(code));
  if (!set.ok()) return set.error();
  return response;
}

}  // namespace medcard::iso8583
