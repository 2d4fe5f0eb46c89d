// What an engine provides to Connection (private to src/store).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "store/store.h"

namespace medcard::store::detail {

struct StatementResult {
  std::int64_t rows_changed = 0;
  Rows rows;
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual Engine engine() const = 0;
  // One statement with `?` placeholders, prepared and cached per connection.
  virtual DbResult<StatementResult> Run(std::string_view sql, const Params& params) = 0;
  // Several statements, no parameters, not prepared.
  virtual DbStatus RunScript(std::string_view sql) = 0;
  virtual bool InTransaction() const = 0;
  // The rowid of the last row an INSERT of this connection added (SQLite); 0 where the engine
  // has no such notion (PostgreSQL: use RETURNING).
  virtual std::int64_t LastInsertRowId() const { return 0; }
  // SQL that opens a transaction of `mode`.
  virtual std::string_view BeginSql(TransactionMode mode) const = 0;
};

DbResult<std::unique_ptr<Driver>> OpenSqlite(const std::string& path, const OpenOptions& options);
DbResult<std::unique_ptr<Driver>> OpenPostgres(const std::string& url);

}  // namespace medcard::store::detail
