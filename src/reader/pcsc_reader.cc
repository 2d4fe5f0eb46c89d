// PcscReader: any reader pcscd knows, through the pcsc-lite client library (winscard.h).
#include <winscard.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <utility>

#include "reader/reader.h"

namespace medcard::reader {

namespace {

constexpr DWORD kPreferredProtocols = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1;
// Extended APDUs: 65536 data bytes + SW1 SW2 back; pcsc-lite's own limit going out.
constexpr std::size_t kMaxResponseSize = 65536 + 2;
constexpr std::size_t kMaxCommandSize = MAX_BUFFER_SIZE_EXTENDED;

std::string Quote(std::string_view name) { return "'" + std::string(name) + "'"; }

std::string Detail(const char* call, LONG rv) {
  char code[16];
  std::snprintf(code, sizeof code, "0x%08X", static_cast<unsigned>(rv));
  return std::string(" (") + call + ": " + pcsc_stringify_error(rv) + " " + code + ")";
}

// The PC/SC error as a message a user can act on.
Error PcscError(const char* call, LONG rv, std::string_view reader_name = {}) {
  const std::string reader = Quote(reader_name);
  std::string message;
  switch (rv) {
    case SCARD_E_NO_SERVICE:
    case SCARD_E_SERVICE_STOPPED:
      message = "pcscd not running — start it with `pcscd`";
      break;
    case SCARD_E_NO_SMARTCARD:
      message = "no card in reader " + reader;
      break;
    case SCARD_W_REMOVED_CARD:
      message = "card removed from reader " + reader;
      break;
    case SCARD_E_UNKNOWN_READER:
    case SCARD_E_READER_UNAVAILABLE:
      message = "reader " + reader + " not found";
      break;
    case SCARD_W_RESET_CARD:
      message = "the card in reader " + reader + " was reset by another application";
      break;
    case SCARD_E_SHARING_VIOLATION:
      message = "reader " + reader + " is in exclusive use by another application";
      break;
    case SCARD_W_UNRESPONSIVE_CARD:
    case SCARD_E_NOT_TRANSACTED:
      message = "the card in reader " + reader + " does not answer";
      break;
    case SCARD_E_NO_READERS_AVAILABLE:
      message = "no smart-card reader found";
      break;
    default:
      message = reader_name.empty() ? std::string("PC/SC error") : "reader " + reader;
      break;
  }
  return MakeError(message + Detail(call, rv));
}

// After pcscd restarts every context and handle of the old daemon is dead.
bool ServiceGone(LONG rv) {
  return rv == SCARD_E_NO_SERVICE || rv == SCARD_E_SERVICE_STOPPED || rv == SCARD_E_INVALID_HANDLE;
}

Result<SCARDCONTEXT> EstablishContext() {
  SCARDCONTEXT context = 0;
  const LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &context);
  if (rv != SCARD_S_SUCCESS) return PcscError("SCardEstablishContext", rv);
  return context;
}

void ReleaseContext(SCARDCONTEXT& context) {
  if (context != 0) (void)SCardReleaseContext(context);
  context = 0;
}

Result<std::vector<std::string>> ListReadersIn(SCARDCONTEXT context) {
  DWORD length = 0;
  LONG rv = SCardListReaders(context, nullptr, nullptr, &length);
  if (rv == SCARD_E_NO_READERS_AVAILABLE) return std::vector<std::string>{};
  if (rv != SCARD_S_SUCCESS) return PcscError("SCardListReaders", rv);
  std::string multi_string(length, '\0');
  rv = SCardListReaders(context, nullptr, multi_string.data(), &length);
  if (rv == SCARD_E_NO_READERS_AVAILABLE) return std::vector<std::string>{};
  if (rv != SCARD_S_SUCCESS) return PcscError("SCardListReaders", rv);
  // "name1\0name2\0\0"
  std::vector<std::string> names;
  std::size_t start = 0;
  while (start < multi_string.size() && multi_string[start] != '\0') {
    const std::size_t end = multi_string.find('\0', start);
    names.push_back(multi_string.substr(start, end - start));
    start = end + 1;
  }
  return names;
}

std::string JoinNames(const std::vector<std::string>& names) {
  if (names.empty()) return "no reader connected";
  std::string out = "readers: ";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(i) + " " + Quote(names[i]);
  }
  return out;
}

}  // namespace

Result<std::vector<std::string>> ListReaders() {
  Result<SCARDCONTEXT> context = EstablishContext();
  if (!context) return context.error();
  Result<std::vector<std::string>> names = ListReadersIn(*context);
  ReleaseContext(*context);
  return names;
}

Result<std::string> ResolveReaderName(std::string_view name_or_index) {
  Result<std::vector<std::string>> names = ListReaders();
  if (!names) return names.error();
  for (const std::string& name : *names) {
    if (name == name_or_index) return name;
  }
  const bool is_index = !name_or_index.empty() && name_or_index.size() <= 3 &&
                        std::all_of(name_or_index.begin(), name_or_index.end(),
                                    [](char c) { return c >= '0' && c <= '9'; });
  if (is_index) {
    const std::size_t index = std::stoul(std::string(name_or_index));
    if (index < names->size()) return (*names)[index];
  }
  std::vector<std::string> matches;
  for (const std::string& name : *names) {
    if (!name_or_index.empty() && name.find(name_or_index) != std::string::npos) {
      matches.push_back(name);
    }
  }
  if (matches.size() == 1) return matches.front();
  if (matches.size() > 1) {
    return MakeError("reader name " + Quote(name_or_index) + " is ambiguous (" +
                     JoinNames(matches) + ")");
  }
  return MakeError("reader " + Quote(name_or_index) + " not found (" + JoinNames(*names) + ")");
}

struct PcscReader::Impl {
  std::string name;

  // Connection state, guarded by `mutex`.
  mutable std::mutex mutex;
  SCARDCONTEXT card_context = 0;  // connect, transmit, status, transactions
  SCARDHANDLE card = 0;
  DWORD protocol = SCARD_PROTOCOL_UNDEFINED;
  bool connected = false;

  // SCardGetStatusChange holds its context's lock while it waits, so waits get a context of
  // their own; guarded by `wait_mutex`.
  std::mutex wait_mutex;
  SCARDCONTEXT wait_context = 0;

  // REQUIRES: mutex held.
  Status EnsureCardContext() {
    if (card_context != 0) return Status::Ok();
    Result<SCARDCONTEXT> context = EstablishContext();
    if (!context) return context.error();
    card_context = *context;
    return Status::Ok();
  }

  // REQUIRES: mutex held. Forgets the connection (and the context when pcscd went away).
  void DropConnection(LONG rv) {
    connected = false;
    card = 0;
    protocol = SCARD_PROTOCOL_UNDEFINED;
    if (ServiceGone(rv)) ReleaseContext(card_context);
  }

  // REQUIRES: mutex held, connected.
  Result<Bytes> StatusAtr() {
    char reader_name[MAX_READERNAME];
    DWORD reader_length = sizeof reader_name;
    DWORD state = 0;
    DWORD active_protocol = 0;
    BYTE atr[MAX_ATR_SIZE];
    DWORD atr_length = sizeof atr;
    const LONG rv =
        SCardStatus(card, reader_name, &reader_length, &state, &active_protocol, atr, &atr_length);
    if (rv != SCARD_S_SUCCESS) return PcscError("SCardStatus", rv, name);
    protocol = active_protocol;
    return Bytes(atr, atr + atr_length);
  }

  // REQUIRES: mutex held.
  Status CheckConnected() const {
    if (!connected) return MakeError("not connected to reader " + Quote(name) + " (Connect first)");
    return Status::Ok();
  }

  // Waits until the reader state has all `wanted` bits (true) or the timeout passes (false).
  Result<bool> WaitForState(DWORD wanted, std::chrono::milliseconds timeout) {
    std::lock_guard lock(wait_mutex);
    bool fresh_context = false;
    if (wait_context == 0) {
      Result<SCARDCONTEXT> context = EstablishContext();
      if (!context) return context.error();
      wait_context = *context;
      fresh_context = true;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    SCARD_READERSTATE state{};
    state.szReader = name.c_str();
    state.dwCurrentState = SCARD_STATE_UNAWARE;  // first call answers the state now
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      const DWORD wait_ms = static_cast<DWORD>(std::max<std::int64_t>(0, left.count()));
      const LONG rv = SCardGetStatusChange(wait_context, wait_ms, &state, 1);
      if (rv == SCARD_E_TIMEOUT) return false;
      if (ServiceGone(rv) && !fresh_context) {
        // A context from a pcscd that has since restarted: go on with a fresh one.
        ReleaseContext(wait_context);
        Result<SCARDCONTEXT> context = EstablishContext();
        if (!context) return context.error();
        wait_context = *context;
        fresh_context = true;
        state.dwCurrentState = SCARD_STATE_UNAWARE;
        continue;
      }
      if (rv != SCARD_S_SUCCESS) {
        if (ServiceGone(rv)) ReleaseContext(wait_context);
        return PcscError("SCardGetStatusChange", rv, name);
      }
      if ((state.dwEventState & (SCARD_STATE_UNKNOWN | SCARD_STATE_IGNORE)) != 0) {
        return MakeError("reader " + Quote(name) + " not found");
      }
      if ((state.dwEventState & wanted) == wanted) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      state.dwCurrentState = state.dwEventState & ~static_cast<DWORD>(SCARD_STATE_CHANGED);
    }
  }
};

Result<std::unique_ptr<PcscReader>> PcscReader::Open(std::string_view name_or_index) {
  Result<std::string> name = ResolveReaderName(name_or_index);
  if (!name) return name.error();
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(*name);
  return std::unique_ptr<PcscReader>(new PcscReader(std::move(impl)));
}

PcscReader::PcscReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PcscReader::~PcscReader() {
  (void)Disconnect();
  std::lock_guard lock(impl_->mutex);
  std::lock_guard wait_lock(impl_->wait_mutex);
  ReleaseContext(impl_->card_context);
  ReleaseContext(impl_->wait_context);
}

std::string PcscReader::Name() const { return impl_->name; }

Result<Bytes> PcscReader::Connect() {
  Impl& d = *impl_;
  std::lock_guard lock(d.mutex);
  if (d.connected) {
    Result<Bytes> atr = d.StatusAtr();
    if (atr) return atr;
    // The card was pulled or reset since: start over with a fresh connection.
    (void)SCardDisconnect(d.card, SCARD_LEAVE_CARD);
    d.DropConnection(SCARD_W_REMOVED_CARD);
  }
  if (Status status = d.EnsureCardContext(); !status) return status.error();
  LONG rv = SCardConnect(d.card_context, d.name.c_str(), SCARD_SHARE_SHARED, kPreferredProtocols,
                         &d.card, &d.protocol);
  if (ServiceGone(rv)) {
    // A context from a pcscd that has since restarted: one retry with a fresh one.
    ReleaseContext(d.card_context);
    if (Status status = d.EnsureCardContext(); !status) return status.error();
    rv = SCardConnect(d.card_context, d.name.c_str(), SCARD_SHARE_SHARED, kPreferredProtocols,
                      &d.card, &d.protocol);
  }
  if (rv != SCARD_S_SUCCESS) {
    d.DropConnection(rv);
    return PcscError("SCardConnect", rv, d.name);
  }
  d.connected = true;
  Result<Bytes> atr = d.StatusAtr();
  if (!atr) {
    (void)SCardDisconnect(d.card, SCARD_LEAVE_CARD);
    d.DropConnection(SCARD_W_REMOVED_CARD);
  }
  return atr;
}

Status PcscReader::Disconnect() {
  Impl& d = *impl_;
  std::lock_guard lock(d.mutex);
  if (!d.connected) return Status::Ok();
  const LONG rv = SCardDisconnect(d.card, SCARD_LEAVE_CARD);
  d.DropConnection(rv);
  // A handle whose card or daemon is gone is closed all the same.
  if (rv != SCARD_S_SUCCESS && rv != SCARD_W_REMOVED_CARD && rv != SCARD_E_INVALID_HANDLE &&
      !ServiceGone(rv)) {
    return PcscError("SCardDisconnect", rv, d.name);
  }
  return Status::Ok();
}

bool PcscReader::Connected() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connected;
}

std::string PcscReader::Protocol() const {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->connected) return "";
  switch (impl_->protocol) {
    case SCARD_PROTOCOL_T0:
      return "T=0";
    case SCARD_PROTOCOL_T1:
      return "T=1";
    default:
      return "raw";
  }
}

Result<bool> PcscReader::CardPresent() {
  return impl_->WaitForState(SCARD_STATE_PRESENT, std::chrono::milliseconds(0));
}

Result<bool> PcscReader::WaitForCard(std::chrono::milliseconds timeout) {
  return impl_->WaitForState(SCARD_STATE_PRESENT, timeout);
}

Result<bool> PcscReader::WaitForRemoval(std::chrono::milliseconds timeout) {
  return impl_->WaitForState(SCARD_STATE_EMPTY, timeout);
}

Result<Bytes> PcscReader::Transmit(ByteView command_apdu) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mutex);
  if (Status status = d.CheckConnected(); !status) return status.error();
  if (command_apdu.size() > kMaxCommandSize) {
    return MakeError("C-APDU of " + std::to_string(command_apdu.size()) +
                     " bytes is longer than PC/SC allows");
  }
  const SCARD_IO_REQUEST* send_pci = d.protocol == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
  Bytes response(kMaxResponseSize);
  DWORD response_length = static_cast<DWORD>(response.size());
  const LONG rv =
      SCardTransmit(d.card, send_pci, command_apdu.data(), static_cast<DWORD>(command_apdu.size()),
                    nullptr, response.data(), &response_length);
  if (rv != SCARD_S_SUCCESS) {
    if (rv == SCARD_W_REMOVED_CARD || ServiceGone(rv)) d.DropConnection(rv);
    return PcscError("SCardTransmit", rv, d.name);
  }
  // vpcd answers a card that went silent with zero bytes and success.
  if (response_length < 2) {
    return MakeError("the card in reader " + Quote(d.name) + " did not answer (mute card)");
  }
  response.resize(response_length);
  return response;
}

Result<Bytes> PcscReader::PowerCycle(Reset kind) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mutex);
  if (Status status = d.CheckConnected(); !status) return status.error();
  const DWORD initialization = kind == Reset::kCold ? SCARD_UNPOWER_CARD : SCARD_RESET_CARD;
  const LONG rv =
      SCardReconnect(d.card, SCARD_SHARE_SHARED, kPreferredProtocols, initialization, &d.protocol);
  if (rv != SCARD_S_SUCCESS) {
    if (rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD || ServiceGone(rv)) {
      d.DropConnection(rv);
    }
    return PcscError("SCardReconnect", rv, d.name);
  }
  return d.StatusAtr();
}

Status PcscReader::BeginTransaction() {
  Impl& d = *impl_;
  SCARDHANDLE card = 0;
  {
    std::lock_guard lock(d.mutex);
    if (Status status = d.CheckConnected(); !status) return status;
    card = d.card;
  }
  // Not under `mutex`: this blocks while another application holds the card.
  const LONG rv = SCardBeginTransaction(card);
  if (rv != SCARD_S_SUCCESS) return PcscError("SCardBeginTransaction", rv, d.name);
  return Status::Ok();
}

Status PcscReader::EndTransaction() {
  Impl& d = *impl_;
  std::lock_guard lock(d.mutex);
  if (Status status = d.CheckConnected(); !status) return status;
  const LONG rv = SCardEndTransaction(d.card, SCARD_LEAVE_CARD);
  if (rv != SCARD_S_SUCCESS) return PcscError("SCardEndTransaction", rv, d.name);
  return Status::Ok();
}

}  // namespace medcard::reader
