// Multi-row statements (store.h "Multi-row statements"): rows in chunks of a power of two.
#include <algorithm>
#include <bit>
#include <string>
#include <utility>

#include "store/store.h"

namespace medcard::store {
namespace {

// Both engines take at least 32,766 parameters per statement (SQLite's default limit).
constexpr std::size_t kMaxParameters = 32'000;

// Runs `run(sql, params)` per chunk of rows; the largest power of two that fits each time.
template <typename Run>
DbStatus ForEachChunk(std::string_view head, std::string_view row_sql, std::size_t columns,
                      Params values, std::string_view tail, const Run& run) {
  if (columns == 0 || values.size() % columns != 0) {
    return MakeDbError(ErrorKind::kOther, "multi-row statement: " + std::to_string(values.size()) +
                                              " values are not rows of " + std::to_string(columns) +
                                              ": " + std::string(head));
  }
  const std::size_t limit = std::bit_floor(
      std::max<std::size_t>(1, std::min(kMaxRowsPerStatement, kMaxParameters / columns)));
  std::size_t rows_left = values.size() / columns;
  std::size_t next = 0;
  Params chunk;
  std::string sql;
  while (rows_left > 0) {
    const std::size_t rows = std::bit_floor(std::min(rows_left, limit));
    sql.assign(head);
    for (std::size_t r = 0; r < rows; ++r) {
      if (r > 0) sql += ", ";
      sql += row_sql;
    }
    sql += tail;
    chunk.clear();
    chunk.reserve(rows * columns);
    for (std::size_t i = 0; i < rows * columns; ++i) chunk.push_back(std::move(values[next + i]));
    if (auto done = run(sql, chunk); !done) return done;
    next += rows * columns;
    rows_left -= rows;
  }
  return Done{};
}

}  // namespace

DbResult<std::int64_t> ExecuteRows(Connection& connection, std::string_view head,
                                   std::string_view row_sql, std::size_t columns, Params values,
                                   std::string_view tail) {
  std::int64_t changed = 0;
  auto done = ForEachChunk(head, row_sql, columns, std::move(values), tail,
                           [&](const std::string& sql, const Params& params) -> DbStatus {
                             auto n = connection.Execute(sql, params);
                             if (!n) return n.error();
                             changed += *n;
                             return Done{};
                           });
  if (!done) return done.error();
  return changed;
}

DbResult<Rows> QueryRows(Connection& connection, std::string_view head, std::string_view row_sql,
                         std::size_t columns, Params values, std::string_view tail) {
  Rows all;
  auto done = ForEachChunk(head, row_sql, columns, std::move(values), tail,
                           [&](const std::string& sql, const Params& params) -> DbStatus {
                             auto rows = connection.Query(sql, params);
                             if (!rows) return rows.error();
                             if (all.columns.empty()) all.columns = std::move(rows->columns);
                             for (Row& row : rows->rows) all.rows.push_back(std::move(row));
                             return Done{};
                           });
  if (!done) return done.error();
  return all;
}

}  // namespace medcard::store
