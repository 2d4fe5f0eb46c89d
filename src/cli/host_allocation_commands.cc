// medcard host allocations import FILE: the bank's side of the agency's allocation batches
// (docs/insurance.md "Allocation batches"). The batch is verified whole (its HMAC under the key
// in $MEDCARD_ALLOCATION_KEY, format, counts, totals) before anything is credited; each line is
// credited to the person's medical account through host::Host::CreditMedicalAccount, which is
// idempotent on batch id + person, so a re-import posts nothing twice. The acknowledgement
// (credited / refused + reason per line) is written next to the batch, or to --ack.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "audit/audit_log.h"
#include "cli/commands.h"
#include "cli/host_session.h"
#include "common/money.h"
#include "host/host.h"
#include "insurance/allocation_batch.h"
#include "ledger/ledger.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;

struct ImportOptions {
  std::string data_dir;
  std::string batch_path;
  std::string ack_path;
};

// A line is refused when the person has no medical account at the bank (no card registered for
// them) or the host refuses the credit; a database failure stops the import.
insurance::CreditLine CreditThroughHost(HostSession& session) {
  return [&session](const std::string& batch_id,
                    const insurance::AllocationLine& line) -> Result<std::optional<std::string>> {
    ledger::Ledger ledger(session.connection());
    auto account = ledger.FindAccount(ledger::AccountId::Medical(line.person_id));
    if (!account.ok()) return MakeError("database: " + account.error().message);
    if (!account->has_value()) {
      return std::optional<std::string>("no medical account at the bank for this person");
    }
    // The credit and its audit entry in one transaction; a re-imported line (its transfer is
    // there already: host::Host::CreditMedicalAccount's id) posts nothing and writes no entry.
    auto credited = TryAudited(session, [&]() -> host::HostResult<std::vector<audit::Entry>> {
      auto posted_before = ledger.FindTransfer("allocation/" + batch_id + "/" + line.person_id);
      if (!posted_before.ok()) {
        host::HostError failure;
        failure.message = "database: " + posted_before.error().message;
        failure.retryable = posted_before.error().kind == ledger::ErrorKind::kStore &&
                            posted_before.error().store_kind == store::ErrorKind::kRetryable;
        return failure;
      }
      auto done = session.host().CreditMedicalAccount(batch_id, line.person_id, line.amount_fen);
      if (!done.ok()) return done.error();
      if (posted_before->has_value()) return std::vector<audit::Entry>{};
      return std::vector<audit::Entry>{HostCommandEntry(
          "allocation.credit", "person:" + line.person_id,
          nlohmann::json{{"batch", batch_id}, {"amount_fen", line.amount_fen}}.dump())};
    });
    if (credited.ok()) return std::optional<std::string>();
    if (credited.error().retryable ||
        credited.error().code == iso8583::ResponseCode::kSystemMalfunction) {
      return MakeError(credited.error().message);
    }
    return std::optional<std::string>(credited.error().message);
  };
}

void RunImport(const ImportOptions& options) {
  const char* hex = std::getenv(insurance::kBatchKeyEnvironment);
  if (hex == nullptr) {
    throw CommandFailed(std::string("the allocation batch key is not set: put its 64 hex digits"
                                    " in ") +
                        insurance::kBatchKeyEnvironment);
  }
  const insurance::BatchKey key = Check(insurance::BatchKey::FromHex(hex), "batch key");
  std::ifstream in(options.batch_path, std::ios::binary);
  if (!in) throw CommandFailed("cannot read " + options.batch_path);
  std::stringstream text;
  text << in.rdbuf();
  HostSession session = OpenHostSession(options.data_dir);
  const insurance::Acknowledgement ack =
      Check(insurance::ImportAllocationBatch(text.str(), key, CreditThroughHost(session)),
            "importing " + options.batch_path);

  const std::string ack_path =
      options.ack_path.empty() ? options.batch_path + ".ack" : options.ack_path;
  const std::string temporary = ack_path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << insurance::WriteAcknowledgement(ack, key);
    out.flush();
    if (!out) throw CommandFailed("cannot write " + temporary);
  }
  std::error_code ec;
  fs::rename(temporary, ack_path, ec);
  if (ec) throw CommandFailed("cannot write " + ack_path + ": " + ec.message());

  std::int64_t credited = 0, refused = 0;
  insurance::Fen credited_fen = 0, refused_fen = 0;
  for (const auto& line : ack.lines) {
    if (line.outcome == insurance::LineOutcome::kCredited) {
      ++credited;
      credited_fen += line.allocation.amount_fen;
    } else {
      ++refused;
      refused_fen += line.allocation.amount_fen;
    }
  }
  std::printf("batch %s (%s): %lld credited (%s), %lld refused (%s); acknowledgement %s\n",
              ack.batch_id.c_str(), insurance::MonthText(ack.month).c_str(),
              static_cast<long long>(credited), FormatFen(credited_fen).c_str(),
              static_cast<long long>(refused), FormatFen(refused_fen).c_str(), ack_path.c_str());
}

}  // namespace

void AddHostAllocationCommands(CLI::App& host) {
  CLI::App* allocations =
      host.add_subcommand("allocations", "The agency's allocation batches (key: $" +
                                             std::string(insurance::kBatchKeyEnvironment) + ")");
  allocations->require_subcommand(1);
  auto options = std::make_shared<ImportOptions>();
  CLI::App* import_batch = allocations->add_subcommand(
      "import", "Verify a batch, credit each medical account, write the acknowledgement");
  import_batch->add_option("file", options->batch_path, "The batch (JSON lines)")->required();
  import_batch->add_option("--data", options->data_dir, "The host's data directory")->required();
  import_batch->add_option("--ack", options->ack_path,
                           "Where the acknowledgement goes (default: FILE.ack)");
  import_batch->callback([options] { RunImport(*options); });
}

}  // namespace medcard::cli
