// The issuance log and issuance.json (docs/issuance.md, "The issuance log", "ASN allocation").
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "issuance/issuer.h"

namespace medcard::issuance {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::size_t kSerialHexDigits = 20;  // ASN and PSAM serial: 10 bytes
constexpr std::size_t kFactorHexDigits = 16;  // the rightmost 8 bytes diversify the keys

std::string SystemError(const std::string& what) { return what + ": " + std::strerror(errno); }

// Holds the log's flock for one operation.
class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError(SystemError("writing " + path));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Status::Ok();
}

Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return MakeError(SystemError("opening " + dir));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return MakeError(SystemError("fsync of " + dir));
  return Status::Ok();
}

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}
std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
bool AllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

const char* SerialField(DeviceKind kind) {
  return kind == DeviceKind::kCard ? "asn" : "psam_serial";
}
const char* SerialName(DeviceKind kind) {
  return kind == DeviceKind::kCard ? "ASN" : "PSAM serial";
}

Result<std::string> HexPrefix(std::string_view text, const std::string& what) {
  if (text.empty() || text.size() > kFactorHexDigits || !IsHex(text)) {
    return MakeError(what + " must be 1 to 16 hex digits (the rest of the 20 is the counter)");
  }
  return Upper(std::string(text));
}

}  // namespace

const char* DeviceKindName(DeviceKind kind) { return kind == DeviceKind::kCard ? "card" : "psam"; }

// ---- issuance.json ------------------------------------------------------------------------

Result<IssuanceConfig> IssuanceConfig::Parse(std::string_view json_text) {
  const std::string where = std::string(kFileName) + ": ";
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return MakeError(where + "not a JSON object");
  IssuanceConfig config;
  for (const auto& [key, value] : doc.items()) {
    if (key == "asn_prefix" || key == "psam_serial_prefix") {
      if (!value.is_string()) return MakeError(where + key + ": not a string");
      auto prefix = HexPrefix(value.get<std::string>(), where + key);
      if (!prefix.ok()) return prefix.error();
      (key == "asn_prefix" ? config.asn_prefix : config.psam_serial_prefix) = *prefix;
    } else if (key == "issuer_id") {
      auto id = value.is_string() ? FromHex(value.get<std::string>()) : std::nullopt;
      if (!id || id->size() != 8) return MakeError(where + "issuer_id: must be 16 hex digits");
      config.issuer_id = *id;
    } else if (key == "validity_years") {
      if (!value.is_number_integer() || value.get<std::int64_t>() < 1 ||
          value.get<std::int64_t>() > 30) {
        return MakeError(where + "validity_years: must be an integer 1 to 30");
      }
      config.validity_years = static_cast<int>(value.get<std::int64_t>());
    } else {
      return MakeError(where + key + ": unknown field");
    }
  }
  return config;
}

Result<IssuanceConfig> IssuanceConfig::Load(const std::string& dir) {
  const fs::path path = fs::path(dir) / kFileName;
  std::error_code ec;
  if (!fs::exists(path, ec)) return IssuanceConfig{};
  std::ifstream in(path);
  if (!in) return MakeError(path.string() + ": cannot read");
  std::stringstream text;
  text << in.rdbuf();
  auto config = Parse(text.str());
  if (!config.ok()) return MakeError(path.string() + ": " + config.error().message);
  return config;
}

// ---- The log ------------------------------------------------------------------------------

Result<std::unique_ptr<IssuanceLog>> IssuanceLog::Open(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (!fs::create_directories(dir, ec) && ec) {
      return MakeError("cannot create the issuance log directory " + dir + ": " + ec.message());
    }
    ::chmod(dir.c_str(), 0700);
  }
  const std::string path = (fs::path(dir) / kFileName).string();
  const bool existed = fs::exists(path, ec);
  // The log holds holders' social-security numbers: readable by the station account only.
  const int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return MakeError(SystemError("cannot open the issuance log " + path));
  std::unique_ptr<IssuanceLog> log(new IssuanceLog(path, fd));
  if (!existed) {
    if (Status s = SyncDirectory(dir); !s.ok()) return s.error();
  }
  FileLock lock(fd);
  if (Status s = log->CatchUp(); !s.ok()) return s.error();
  return log;
}

IssuanceLog::~IssuanceLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status IssuanceLog::CatchUp() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return MakeError(SystemError("stat of " + path_));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size <= read_offset_) return Status::Ok();
  std::string chunk(size - read_offset_, '\0');
  std::size_t got = 0;
  while (got < chunk.size()) {
    const ssize_t n = ::pread(fd_, chunk.data() + got, chunk.size() - got,
                              static_cast<off_t>(read_offset_ + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return MakeError(SystemError("reading " + path_));
    got += static_cast<std::size_t>(n);
  }
  // Only whole lines; a tail without a newline is a write torn by a crash (every writer holds
  // the lock), terminated by the next append.
  std::size_t start = 0;
  for (std::size_t end = chunk.find('\n'); end != std::string::npos;
       start = end + 1, end = chunk.find('\n', start)) {
    const std::string_view line(chunk.data() + start, end - start);
    json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded() || !record.is_object()) {
      ++skipped_lines_;
    } else {
      Index(record);
    }
  }
  read_offset_ += start;
  return Status::Ok();
}

void IssuanceLog::Index(const json& record) {
  const auto kind = record.find("kind");
  if (kind == record.end() || !kind->is_string()) return;
  for (DeviceKind k : {DeviceKind::kCard, DeviceKind::kPsam}) {
    if (*kind != DeviceKindName(k)) continue;
    const auto serial = record.find(SerialField(k));
    if (serial == record.end() || !serial->is_string()) return;
    const std::string hex = Upper(serial->get<std::string>());
    if (hex.size() != kSerialHexDigits) return;
    Numbers& numbers = numbers_[static_cast<int>(k)];
    numbers.serials.insert(hex);
    numbers.factors.insert(hex.substr(kSerialHexDigits - kFactorHexDigits));
  }
}

Status IssuanceLog::AppendLocked(const json& record) {
  if (Status s = CatchUp(); !s.ok()) return s;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return MakeError(SystemError("stat of " + path_));
  std::string line = record.dump() + "\n";
  if (static_cast<std::uint64_t>(st.st_size) > read_offset_) {
    line.insert(line.begin(), '\n');  // ends the torn line a crash left behind
    ++skipped_lines_;
  }
  if (Status s = WriteAll(fd_, line, path_); !s.ok()) return s;
  if (::fsync(fd_) != 0) return MakeError(SystemError("fsync of " + path_));
  read_offset_ = static_cast<std::uint64_t>(st.st_size) + line.size();
  Index(record);
  return Status::Ok();
}

Status IssuanceLog::Append(const json& record) {
  FileLock lock(fd_);
  return AppendLocked(record);
}

Result<Bytes> IssuanceLog::Reserve(DeviceKind kind, const std::optional<Bytes>& serial,
                                   std::string_view prefix, const json& context) {
  FileLock lock(fd_);
  if (Status s = CatchUp(); !s.ok()) return s.error();
  Numbers& numbers = numbers_[static_cast<int>(kind)];
  const std::string name = SerialName(kind);
  std::string chosen;
  if (serial) {
    if (serial->size() != kSerialHexDigits / 2) {
      return MakeError(name + " must be 10 bytes (20 hex digits)");
    }
    chosen = ToHex(View(*serial));
    if (numbers.serials.contains(chosen)) {
      return MakeError("duplicate " + name + " " + chosen + ": the issuance log " + path_ +
                       " already has it (numbers are never reused)");
    }
    if (numbers.factors.contains(chosen.substr(kSerialHexDigits - kFactorHexDigits))) {
      return MakeError(name + " " + chosen + " has the same rightmost 8 bytes as one in " + path_ +
                       ": its keys (diversified by those bytes) would be the same");
    }
  } else {
    auto hex_prefix = HexPrefix(prefix, name + " prefix");
    if (!hex_prefix.ok()) return hex_prefix.error();
    const std::size_t width = kSerialHexDigits - hex_prefix->size();
    // The highest number under this prefix whose counter part is decimal.
    std::uint64_t highest = 0;
    auto it = numbers.serials.upper_bound(*hex_prefix + std::string(width, '9'));
    while (it != numbers.serials.begin()) {
      --it;
      if (!it->starts_with(*hex_prefix)) break;
      const std::string_view counter = std::string_view(*it).substr(hex_prefix->size());
      if (AllDigits(counter)) {
        highest = std::stoull(std::string(counter));
        break;
      }
    }
    std::uint64_t limit = 1;
    for (std::size_t i = 0; i < width; ++i) limit *= 10;
    for (std::uint64_t next = highest + 1;; ++next) {
      if (next >= limit) {
        return MakeError("no " + name + " left under prefix " + *hex_prefix + " (" +
                         std::to_string(width) + " counter digits used up)");
      }
      std::string counter = std::to_string(next);
      chosen = *hex_prefix + std::string(width - counter.size(), '0') + counter;
      if (!numbers.serials.contains(chosen) &&
          !numbers.factors.contains(chosen.substr(kSerialHexDigits - kFactorHexDigits))) {
        break;
      }
    }
  }
  json record = context;
  record["event"] = "reserved";
  record["kind"] = DeviceKindName(kind);
  record[SerialField(kind)] = chosen;
  if (Status s = AppendLocked(record); !s.ok()) return s.error();
  return HexToBytes(chosen);
}

Result<std::vector<json>> IssuanceLog::ReadAll() {
  FileLock lock(fd_);
  std::ifstream in(path_, std::ios::binary);
  if (!in) return MakeError("cannot read " + path_);
  std::vector<json> records;
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: torn by a crash, not a record
    json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_discarded() && record.is_object()) records.push_back(std::move(record));
  }
  return records;
}

}  // namespace medcard::issuance
