#include "cli/key_delivery.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "cli/commands.h"
#include "cli/host_session.h"

namespace medcard::cli {

std::string UtcNowIso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

Result<Bytes> DeliveryHexField(const nlohmann::json& object, const char* name, std::size_t size,
                               std::string_view file_kind) {
  const std::string prefix = std::string(file_kind) + ": \"" + name + "\" ";
  if (!object.contains(name) || !object[name].is_string()) {
    return MakeError(prefix + "missing or not a string");
  }
  auto bytes = FromHex(object[name].get<std::string>());
  if (!bytes || bytes->size() != size) {
    return MakeError(prefix + "must be " + std::to_string(size * 2) + " hex digits");
  }
  return *bytes;
}

Result<std::pair<std::uint8_t, std::string>> LatestKeyVersion(keys::KeyStore& store,
                                                              std::string_view name) {
  auto listed = store.List();
  if (!listed.ok()) return listed.error();
  std::pair<std::uint8_t, std::string> latest{0, ""};
  for (const keys::KeyInfo& k : *listed) {
    if (k.name == name && k.version > latest.first) latest = {k.version, k.kcv};
  }
  return latest;
}

void WriteAuditedDelivery(HostSession& session, const std::string& path, const std::string& text,
                          const std::string& action, const std::string& target,
                          nlohmann::json details) {
  bool written = false;
  try {
    RunAudited(session, "", [&]() -> host::HostResult<std::vector<audit::Entry>> {
      if (Status done = WriteDeliveryFile(path, text); !done.ok()) {
        throw CommandFailed("writing " + path + ": " + done.error().message);
      }
      written = true;
      details["out"] = std::filesystem::absolute(path).lexically_normal().string();
      return std::vector<audit::Entry>{HostCommandEntry(action, target, details.dump())};
    });
  } catch (const CommandFailed&) {
    std::error_code ignored;
    if (written) std::filesystem::remove(path, ignored);
    throw;
  }
}

Status WriteDeliveryFile(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return MakeError("cannot create " + path + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return MakeError("cannot write " + path + ": " + std::strerror(error));
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) return MakeError("cannot sync " + path);
  return Status::Ok();
}

}  // namespace medcard::cli
