// A SoftHSM2 token of a test's own (docs/keys-pkcs11.md "Preparing a SoftHSM2 token"): its own
// softhsm2.conf and token directory under the test's directory, so tests never share a token.
// SoftHSM2 not installed is a test failure saying "apt-get install softhsm2".
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace medcard::test_support {

// The SoftHSM2 PKCS#11 module, or "" when it is not installed.
inline std::string SoftHsmModule() {
  for (const char* path :
       {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so"}) {
    if (std::filesystem::exists(path)) return path;
  }
  return "";
}

// Writes DIR/softhsm2.conf and initialises a token `label` in DIR/tokens (SO PIN 123456, user
// PIN `pin`). Returns the conf file for SOFTHSM2_CONF, or "" when softhsm2-util failed.
inline std::string NewSoftHsmToken(const std::filesystem::path& dir, const std::string& label,
                                   const std::string& pin) {
  std::filesystem::create_directories(dir / "tokens");
  const std::string conf = (dir / "softhsm2.conf").string();
  std::ofstream(conf) << "directories.tokendir = " << (dir / "tokens").string() << "\n"
                      << "objectstore.backend = file\nlog.level = ERROR\n";
  const std::string command = "SOFTHSM2_CONF='" + conf +
                              "' softhsm2-util --init-token --free --label '" + label +
                              "' --so-pin 123456 --pin '" + pin + "' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0 ? conf : "";
}

}  // namespace medcard::test_support
