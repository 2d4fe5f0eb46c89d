// The bank a POS test needs before `medcard host run` opens: the host directory (test keys, the
// merchant, the terminal and its TMK), the terminal key-exchange key from the custodians'
// components (the tkek ceremony), and the cardholder's card with a credited medical account.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "host/host.h"
#include "host_directory.h"

namespace medcard::test_support {

// The TEST tkek components both sides enter in the tests' ceremonies.
inline constexpr char kTestTkekComponent1[] = "00112233445566778899AABBCCDDEEFF";
inline constexpr char kTestTkekComponent2[] = "13579BDF02468ACE1122334455667788";

inline Status PrepareBankForPos(const HostDirectorySpec& spec, const Bytes& asn,
                                const std::string& person, std::int64_t credit_fen) {
  auto directory = PrepareHostDirectory(spec);
  if (!directory.ok()) return directory.error();
  const std::vector<Bytes> components = {HexToBytes(kTestTkekComponent1),
                                         HexToBytes(kTestTkekComponent2)};
  if (auto tkek = directory->key_store->ImportComponents("tkek", components); !tkek.ok()) {
    return tkek.error();
  }
  host::Host host(*directory->connection, *directory->key_store);
  if (auto card = host.RegisterCard({asn, "holder", person}); !card.ok()) {
    return MakeError("registering the card: " + card.error().message);
  }
  if (auto credit = host.CreditMedicalAccount("2026-11", person, credit_fen); !credit.ok()) {
    return MakeError("crediting the medical account: " + credit.error().message);
  }
  return Status::Ok();
}

}  // namespace medcard::test_support
