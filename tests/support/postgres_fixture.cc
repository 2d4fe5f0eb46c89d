#include "postgres_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "store/store.h"

namespace medcard::test_support {

namespace {

namespace fs = std::filesystem;

constexpr char kInstallHint[] =
    "PostgreSQL 15 is not installed (the store's tests run on SQLite and PostgreSQL): "
    "apt-get install postgresql-15";
constexpr char kDefaultBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr char kDirPrefix[] = "medcard-pg-";
constexpr int kFirstPort = 55432;
constexpr int kPortRange = 1000;

struct Server {
  std::mutex mutex;
  pid_t owner = 0;  // the process that started (or attached to) it; forked children never stop it
  std::string dir;  // /tmp/medcard-pg-XXXXXX
  std::string bin_dir;
  int port = 0;
  int databases = 0;
  // Attached to ctest's shared server: this process drops its own databases and leaves the
  // server running.
  bool shared = false;
  std::vector<std::string> created;
  std::unique_ptr<store::Connection> admin;
};

// Set by ctest (tests/CMakeLists.txt) on every test: the file naming the server that the fixture
// postgres_server_start started for the whole run.
constexpr char kSharedServerEnv[] = "MEDCARD_TEST_PG_SERVER";

Server& Global() {
  static Server* server = new Server;  // never destroyed: atexit handlers still use it
  return *server;
}

std::string BinDir() {
  const char* dir = std::getenv("MEDCARD_PG_BINDIR");
  return dir != nullptr && *dir != '\0' ? dir : kDefaultBinDir;
}

bool RunningAsRoot() { return ::geteuid() == 0; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Tail(const std::string& text, std::size_t max = 1500) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

// Runs a PostgreSQL program (as the postgres user when we are root), output into log_path.
// Returns its exit status, or -1 when it could not run.
int RunAsPostgres(const std::vector<std::string>& program, const std::string& log_path) {
  std::vector<std::string> args;
  if (RunningAsRoot()) args = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  args.insert(args.end(), program.begin(), program.end());
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
    }
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Status GiveToPostgres(const std::string& path) {
  if (!RunningAsRoot()) return Status::Ok();
  const passwd* user = ::getpwnam("postgres");
  if (user == nullptr) {
    return MakeError(std::string("no `postgres` user on this machine. ") + kInstallHint);
  }
  if (::chown(path.c_str(), user->pw_uid, user->pw_gid) != 0) {
    return MakeError("cannot give " + path + " to the postgres user");
  }
  return Status::Ok();
}

bool PortFree(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool free = ::bind(s, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(s);
  return free;
}

void StopServerIn(const std::string& dir, const std::string& bin_dir) {
  if (fs::exists(dir + "/data/postmaster.pid")) {
    RunAsPostgres(
        {bin_dir + "/pg_ctl", "-D", dir + "/data", "-m", "immediate", "-w", "-t", "30", "stop"},
        "/dev/null");
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

// A test binary killed by a timeout leaves its server behind: stop servers whose owner is gone.
void RemoveAbandonedServers(const std::string& bin_dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/tmp", ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kDirPrefix)) continue;
    const std::string owner_text = ReadFile(entry.path().string() + "/owner.pid");
    const pid_t owner = static_cast<pid_t>(std::atol(owner_text.c_str()));
    bool abandoned = false;
    if (owner > 0) {
      abandoned = ::kill(owner, 0) != 0 && errno == ESRCH;
    } else {
      // No owner written yet: another binary may be between mkdtemp and writing it.
      const auto age = fs::file_time_type::clock::now() - fs::last_write_time(entry.path(), ec);
      abandoned = !ec && age > std::chrono::minutes(5);
    }
    if (abandoned) StopServerIn(entry.path().string(), bin_dir);
  }
}

void StopAtExit() { StopPostgres(); }

std::string UrlFor(const Server& s, const std::string& database) {
  return "postgresql://postgres@/" + database + "?host=" + s.dir +
         "&port=" + std::to_string(s.port);
}

Status StartServer(Server& s);

Status ConnectAdmin(Server& s) {
  auto admin = store::Database::Open(UrlFor(s, "postgres"));
  if (!admin) return MakeError("the test server does not answer: " + admin.error().message);
  auto connection = (*admin)->Connect();
  if (!connection) return MakeError(connection.error().message);
  s.admin = std::move(connection).value();
  return Status::Ok();
}

// The shared server's file holds two lines: its directory and its port.
Status AttachToSharedServer(Server& s, const std::string& server_file) {
  std::ifstream in(server_file);
  std::string dir;
  int port = 0;
  if (!(in >> dir >> port) || port <= 0) {
    return MakeError(std::string(kSharedServerEnv) + "=" + server_file +
                     " names no running server: ctest starts it in the test "
                     "postgres_server_start (run the tests through ctest, or unset " +
                     kSharedServerEnv + " to start a server for this binary)");
  }
  s.dir = dir;
  s.port = port;
  s.owner = ::getpid();
  s.shared = true;
  static const bool registered = (std::atexit(StopAtExit), true);
  (void)registered;
  return ConnectAdmin(s);
}

// A failed start leaves nothing behind, so the next test tries again from scratch.
Status StartLocked(Server& s) {
  if (s.admin) return Status::Ok();
  if (const char* shared = std::getenv(kSharedServerEnv); shared != nullptr && *shared != '\0') {
    Status attached = AttachToSharedServer(s, shared);
    if (!attached) {
      s.admin.reset();
      s.dir.clear();
      s.port = 0;
      s.shared = false;
    }
    return attached;
  }
  Status started = StartServer(s);
  if (!started && !s.dir.empty()) {
    s.admin.reset();
    StopServerIn(s.dir, s.bin_dir);
    s.dir.clear();
    s.port = 0;
  }
  return started;
}

Status StartServer(Server& s) {
  s.bin_dir = BinDir();
  for (const char* program : {"initdb", "pg_ctl", "postgres"}) {
    if (::access((s.bin_dir + "/" + program).c_str(), X_OK) != 0) {
      return MakeError(std::string(kInstallHint) + " (no " + s.bin_dir + "/" + program + ")");
    }
  }
  if (RunningAsRoot() && ::access("/usr/sbin/runuser", X_OK) != 0) {
    return MakeError("running as root needs /usr/sbin/runuser (util-linux) to start PostgreSQL");
  }
  RemoveAbandonedServers(s.bin_dir);

  std::string pattern = std::string("/tmp/") + kDirPrefix + "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return MakeError("cannot create " + pattern);
  s.dir = pattern;
  s.owner = ::getpid();
  static const bool registered = (std::atexit(StopAtExit), true);
  (void)registered;
  { std::ofstream(s.dir + "/owner.pid") << s.owner << "\n"; }
  if (auto given = GiveToPostgres(s.dir); !given) return given;

  const std::string initdb_log = s.dir + "/initdb.log";
  if (RunAsPostgres({s.bin_dir + "/initdb", "-D", s.dir + "/data", "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--locale=C", "--no-sync"},
                    initdb_log) != 0) {
    return MakeError("initdb failed:\n" + Tail(ReadFile(initdb_log)));
  }

  const int first = kFirstPort + static_cast<int>(s.owner % kPortRange);
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int port = kFirstPort + (first - kFirstPort + attempt * 37) % kPortRange;
    if (!PortFree(port)) continue;
    const std::string log = s.dir + "/server.log";
    const std::string options = "-p " + std::to_string(port) + " -k " + s.dir +
                                " -c listen_addresses=127.0.0.1 -c fsync=off"
                                " -c synchronous_commit=off -c full_page_writes=off"
                                " -c max_connections=200";
    if (RunAsPostgres({s.bin_dir + "/pg_ctl", "-D", s.dir + "/data", "-l", log, "-w", "-t", "60",
                       "-o", options, "start"},
                      s.dir + "/pg_ctl.log") == 0) {
      s.port = port;
      break;
    }
    // Another binary took the port between the check and the start: try the next one.
    if (ReadFile(log).find("could not bind") == std::string::npos) {
      return MakeError("pg_ctl start failed:\n" + Tail(ReadFile(log)) +
                       Tail(ReadFile(s.dir + "/pg_ctl.log")));
    }
  }
  if (s.port == 0) return MakeError("no free port for PostgreSQL near " + std::to_string(first));
  return ConnectAdmin(s);
}

}  // namespace

void PostgresEnvironment::TearDown() { StopPostgres(); }

::testing::Environment* RegisterPostgresEnvironment() {
  static ::testing::Environment* const environment =
      ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);
  return environment;
}

Status StartPostgres() {
  Server& s = Global();
  std::lock_guard lock(s.mutex);
  if (!s.dir.empty() && s.owner != ::getpid()) {
    return MakeError("the PostgreSQL test server belongs to process " + std::to_string(s.owner) +
                     " (call NewPostgresDatabase before fork)");
  }
  return StartLocked(s);
}

Result<std::string> NewPostgresDatabase() {
  if (auto started = StartPostgres(); !started) return started.error();
  Server& s = Global();
  std::lock_guard lock(s.mutex);
  // On the shared server a killed test leaves its databases behind: the random part keeps a
  // later process with the same pid from colliding with them.
  static const unsigned tag = std::random_device{}() % 100000;
  const std::string name = "medcard_test_" + std::to_string(s.owner) + "_" + std::to_string(tag) +
                           "_" + std::to_string(++s.databases);
  if (auto created = s.admin->ExecuteScript("CREATE DATABASE " + name); !created) {
    return MakeError("CREATE DATABASE " + name + ": " + created.error().message);
  }
  if (s.shared) s.created.push_back(name);
  return UrlFor(s, name);
}

Status StartSharedPostgres(const std::string& server_file) {
  Server& s = Global();
  std::lock_guard lock(s.mutex);
  if (auto started = StartLocked(s); !started) return started;
  // The server belongs to the ctest run that started this program: a server left by a killed
  // run is then removed by the next one (RemoveAbandonedServers).
  { std::ofstream(s.dir + "/owner.pid") << ::getppid() << "\n"; }
  const std::string temporary = server_file + ".new";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << s.dir << "\n" << s.port << "\n";
    if (!out.flush()) return MakeError("cannot write " + temporary);
  }
  std::error_code ec;
  fs::rename(temporary, server_file, ec);
  if (ec) return MakeError("cannot write " + server_file + ": " + ec.message());
  // This program exits now; the server runs on for the tests.
  s.admin.reset();
  s.owner = 0;
  return Status::Ok();
}

void StopSharedPostgres(const std::string& server_file) {
  std::ifstream in(server_file);
  std::string dir;
  if (in >> dir && dir.starts_with(std::string("/tmp/") + kDirPrefix)) StopServerIn(dir, BinDir());
  std::error_code ignored;
  fs::remove(server_file, ignored);
}

void StopPostgres() {
  Server& s = Global();
  std::lock_guard lock(s.mutex);
  if (s.dir.empty() || s.owner != ::getpid()) return;
  if (s.shared) {
    // Programs a test started may still be connected: FORCE ends their sessions.
    for (const auto& name : s.created) {
      (void)s.admin->ExecuteScript("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    }
    s.created.clear();
    s.admin.reset();
    s.dir.clear();
    s.port = 0;
    s.shared = false;
    return;
  }
  s.admin.reset();
  StopServerIn(s.dir, s.bin_dir);
  s.dir.clear();
  s.port = 0;
}

}  // namespace medcard::test_support
