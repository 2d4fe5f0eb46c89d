// A card's statement (docs/branch.md "Statements"): the History lines of a period with each
// wallet's opening and closing float, as CSV or as a hand-written PDF 1.4 (no dependency).
#include "branch/statement.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "common/money.h"

namespace medcard::branch {
namespace {

using access::ErrorCode;
using access::MakeServiceError;

bool IsIsoDay(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u}) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

struct WalletBalances {
  std::int64_t opening = 0;
  std::int64_t closing = 0;
};

struct Statement {
  CardRecord card;
  std::vector<HistoryLine> lines;                 // inside the period
  std::map<std::string, WalletBalances> wallets;  // "ED", "EP"
};

ServiceResult<Statement> Collect(BranchServices& services, const StatementRequest& request) {
  if (!IsIsoDay(request.from_day)) {
    return MakeServiceError(ErrorCode::kInvalid, "a day is YYYY-MM-DD", "from");
  }
  if (!IsIsoDay(request.to_day)) {
    return MakeServiceError(ErrorCode::kInvalid, "a day is YYYY-MM-DD", "to");
  }
  if (request.to_day < request.from_day) {
    return MakeServiceError(ErrorCode::kInvalid, "the period ends before it starts", "to");
  }
  auto card = services.FindCard(request.asn);
  if (!card.ok()) return card.error();
  Statement statement;
  statement.card = *card;
  statement.wallets["ED"];
  statement.wallets["EP"];
  std::optional<std::int64_t> cursor;
  for (;;) {
    auto page = services.History(card->asn, cursor, kMaxHistoryPage);
    if (!page.ok()) return page.error();
    for (HistoryLine& line : page->lines) {
      const std::string day = line.when.substr(0, 10);
      WalletBalances& wallet = statement.wallets[line.wallet];
      if (day < request.from_day) {
        wallet.opening = line.balance_after;
        wallet.closing = line.balance_after;
      } else if (day <= request.to_day) {
        wallet.closing = line.balance_after;
        statement.lines.push_back(std::move(line));
      }
    }
    if (!page->next_cursor) break;
    cursor = page->next_cursor;
  }
  // A purchase carries the card's time, which may be earlier than a load cleared before it.
  std::stable_sort(statement.lines.begin(), statement.lines.end(),
                   [](const HistoryLine& a, const HistoryLine& b) { return a.when < b.when; });
  return statement;
}

std::string CsvField(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

bool IsAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

std::string PdfText(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == '(' || c == ')' || c == '\\') escaped += '\\';
    escaped += (c >= 0x20 && c <= 0x7e) ? c : '?';
  }
  return escaped;
}

}  // namespace

ServiceResult<std::string> StatementCsv(BranchServices& services, const StatementRequest& request) {
  auto statement = Collect(services, request);
  if (!statement.ok()) return statement.error();
  std::string csv = "date,time,wallet,kind,amount,balance,merchant_id,merchant,reference\r\n";
  for (const auto& [wallet, balances] : statement->wallets) {
    csv +=
        request.from_day + ",," + wallet + ",opening,," + FormatFen(balances.opening) + ",,,\r\n";
  }
  for (const HistoryLine& line : statement->lines) {
    csv += line.when.substr(0, 10) + "," + line.when.substr(11) + "," + line.wallet + "," +
           CsvField(line.kind) + "," + FormatFen(line.amount) + "," +
           FormatFen(line.balance_after) + "," + CsvField(line.merchant_id) + "," +
           CsvField(line.merchant_name) + "," + CsvField(line.reference) + "\r\n";
  }
  for (const auto& [wallet, balances] : statement->wallets) {
    csv += request.to_day + ",," + wallet + ",closing,," + FormatFen(balances.closing) + ",,,\r\n";
  }
  return csv;
}

ServiceResult<std::string> StatementPdf(BranchServices& services, const StatementRequest& request) {
  auto statement = Collect(services, request);
  if (!statement.ok()) return statement.error();
  std::vector<std::string> text;
  text.push_back("Statement of card " + statement->card.asn);
  text.push_back("Period " + request.from_day + " to " + request.to_day);
  text.push_back("");
  for (const auto& [wallet, balances] : statement->wallets) {
    text.push_back(wallet + " opening balance " + FormatFen(balances.opening));
  }
  text.push_back("");
  char buffer[160];
  std::snprintf(buffer, sizeof buffer, "%-19s %-2s %-9s %11s %11s  %s", "Date", "W", "Kind",
                "Amount", "Balance", "Merchant");
  text.push_back(buffer);
  for (const HistoryLine& line : statement->lines) {
    const std::string merchant =
        IsAscii(line.merchant_name) ? line.merchant_name : line.merchant_id;
    std::snprintf(buffer, sizeof buffer, "%-19s %-2s %-9s %11s %11s  %s", line.when.c_str(),
                  line.wallet.c_str(), line.kind.substr(0, 9).c_str(),
                  FormatFen(line.amount).c_str(), FormatFen(line.balance_after).c_str(),
                  merchant.substr(0, 40).c_str());
    text.push_back(buffer);
  }
  text.push_back("");
  for (const auto& [wallet, balances] : statement->wallets) {
    text.push_back(wallet + " closing balance " + FormatFen(balances.closing));
  }

  // Objects: 1 catalog, 2 pages, 3 font, then a page and its content stream per page.
  constexpr std::size_t kLinesPerPage = 60;
  const std::size_t pages = (text.size() + kLinesPerPage - 1) / kLinesPerPage;
  std::vector<std::string> objects;
  objects.push_back("<< /Type /Catalog /Pages 2 0 R >>");
  std::string kids;
  for (std::size_t p = 0; p < pages; ++p) kids += std::to_string(4 + 2 * p) + " 0 R ";
  objects.push_back("<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(pages) + " >>");
  objects.push_back("<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>");
  for (std::size_t p = 0; p < pages; ++p) {
    objects.push_back(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R "
        ">> >> /Contents " +
        std::to_string(5 + 2 * p) + " 0 R >>");
    std::string content = "BT /F1 8 Tf 10 TL 40 800 Td\n";
    for (std::size_t i = p * kLinesPerPage; i < std::min(text.size(), (p + 1) * kLinesPerPage);
         ++i) {
      content += "(" + PdfText(text[i]) + ") Tj T*\n";
    }
    content += "ET\n";
    objects.push_back("<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content +
                      "endstream");
  }
  std::string pdf = "%PDF-1.4\n";
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const std::size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (std::size_t offset : offsets) {
    std::snprintf(buffer, sizeof buffer, "%010zu 00000 n \n", offset);
    pdf += buffer;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R >>\n";
  pdf += "startxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

}  // namespace medcard::branch
