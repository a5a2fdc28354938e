// The SQLite plumbing both SQLite stores share (sqlite_connection.h): the
// connection and its statement cache, the error mapping, and the checks and
// setup every store's database goes through on open.
#include "sqlite_connection.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <exception>
#include <filesystem>
#include <limits>

namespace eventsource::api_internal {
namespace {

// Statements a connection keeps prepared at most. Only SQLiteEventStore's
// read_all builds SQL (one text per shape of filter), so only a program
// reading with many shapes reaches it; the cache then starts over.
constexpr size_t kMaxStatements = 64;

// What a database holds of a store's tables.
enum class Schema : uint8_t {
  kNone,        // none of its tables: a new store
  kIncomplete,  // its tables, but an index is missing (re-created)
  kReady,
};

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Looks at the schema. Errors: a `t.table` that is not ours, a newer
// layout, our tables altered.
Result<Schema> inspect_schema(Connection& c, const StoreTables& t) {
  const std::string& path = c.path();
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const std::vector<std::string> tables,
      c.rows(fmt::format("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                         "name IN ('{}', '{}')",
                         t.table, t.meta_table),
             "reading the schema"));
  if (!contains(tables, t.meta_table)) {
    if (!contains(tables, t.table)) return Schema::kNone;
    return invalid_argument(
        fmt::format("{}: the database holds a table named {} that eventsource did not create "
                    "(there is no {} table); open another file, or rename that table",
                    path, t.table, t.meta_table));
  }
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const std::vector<std::string> layout,
      c.rows(fmt::format("SELECT value FROM {} WHERE name = 'layout' AND typeof(value) = "
                         "'integer'",
                         t.meta_table),
             t.reading_layout));
  int64_t version = 0;
  if (layout.size() != 1 ||
      std::from_chars(layout[0].data(), layout[0].data() + layout[0].size(), version).ec !=
          std::errc() ||
      version < 1)
    return corruption(fmt::format("{}: table {} has no valid 'layout' row; the tables were "
                                  "changed outside eventsource (restore the database from a "
                                  "backup)",
                                  path, t.meta_table),
                      -1, -1);
  if (version > t.layout_version)
    return not_supported(
        fmt::format("{}: the {} table has layout {}, newer than this library's {}; open it with "
                    "a newer eventsource",
                    path, t.table, version, t.layout_version));
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const std::vector<std::string> columns,
      c.rows(fmt::format("SELECT name FROM pragma_table_info('{}')", t.table),
             fmt::format("reading the {} table", t.table)));
  if (!std::equal(columns.begin(), columns.end(), t.columns.begin(), t.columns.end()))
    return corruption(fmt::format("{}: the {} table has columns ({}), not those of layout {}; it "
                                  "was changed outside eventsource (restore the database from "
                                  "a backup)",
                                  path, t.table, fmt::join(columns, ", "), version),
                      -1, -1);
  // A store without indexes of its own asks nothing more.
  if (t.indexes.empty()) return Schema::kReady;
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const std::vector<std::string> indexes,
      c.rows(fmt::format("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = "
                         "'{}'",
                         t.table),
             "reading the indexes"));
  for (std::string_view index : t.indexes)
    if (!contains(indexes, index)) return Schema::kIncomplete;
  return Schema::kReady;
}

Status no_store(const std::string& path, const StoreTables& t) {
  return not_found(
      fmt::format("{}: no {} here (create_if_missing is off); check the path, or open with "
                  "create_if_missing",
                  path, t.store));
}

Status use_wal(Connection& c) {
  EVENTSOURCE_ASSIGN_OR_RETURN(const std::vector<std::string> mode,
                               c.rows("PRAGMA journal_mode=WAL", "switching to WAL mode"));
  if (mode.size() == 1 && (mode[0] == "wal" || mode[0] == "WAL")) return Status();
  return not_supported(
      fmt::format("{}: SQLite cannot put this database in WAL mode (the "
                  "journal mode stays {}); keep it on a local file system",
                  c.path(), mode.empty() ? "unknown" : mode[0]));
}

// Makes sure the database is in WAL mode and holds the store's tables,
// creating them when allowed. It looks before it writes anything, so a file
// it refuses (not a database, a table not ours, no store and
// !create_if_missing) is left as it was. Creating takes the write lock and
// looks again under it: another connection or process may have created
// them meanwhile.
Status prepare_database(Connection& c, bool create_if_missing, const StoreTables& t) {
  EVENTSOURCE_ASSIGN_OR_RETURN(const Schema found, inspect_schema(c, t));
  if (found == Schema::kNone && !create_if_missing) return no_store(c.path(), t);
  EVENTSOURCE_RETURN_IF_ERROR(use_wal(c));
  if (found == Schema::kReady) return Status();
  WriteTransaction txn(c);
  EVENTSOURCE_RETURN_IF_ERROR(txn.begin(t.creating));
  EVENTSOURCE_ASSIGN_OR_RETURN(const Schema now, inspect_schema(c, t));
  if (now != Schema::kReady) EVENTSOURCE_RETURN_IF_ERROR(c.exec_script(t.create_sql, t.creating));
  return txn.commit(t.creating);
}

// Connection::error; `db` is null when there is no handle to ask.
Status sqlite_error(int rc, sqlite3* db, const std::string& path, std::string_view what,
                    const SqliteErrorHints& hints) {
  const std::string reason = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int sys_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(Code::kBusy,
                    fmt::format("{}: {}: {}: another connection or process held the database's "
                                "lock for longer than busy_timeout_ms; retry later, or raise "
                                "{}::busy_timeout_ms",
                                path, what, reason, hints.options));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return corruption(fmt::format("{}: {}: {}: not an SQLite database, or a damaged one "
                                    "(check the path; 'sqlite3 {} \"PRAGMA integrity_check\"' "
                                    "reports damage)",
                                    path, what, reason, path),
                        -1, -1);
    case SQLITE_TOOBIG:
      return invalid_argument(
          fmt::format("{}: {}: {}: a value is larger than SQLite allows "
                      "(SQLITE_MAX_LENGTH); store a smaller {}",
                      path, what, reason, hints.large_value));
    case SQLITE_FULL:
      return io_error(
          fmt::format("{}: {}: {}: the disk is full; free space and retry", path, what, reason),
          sys_errno);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return io_error(fmt::format("{}: {}: {}: check that the file and its directory exist and "
                                  "are writable (SQLite writes -wal and -shm files beside it)",
                                  path, what, reason),
                      sys_errno);
    default:
      return io_error(fmt::format("{}: {}: {}", path, what, reason), sys_errno);
  }
}

}  // namespace

int64_t clamp_to_int64(uint64_t v) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  return v > static_cast<uint64_t>(kMax) ? kMax : static_cast<int64_t>(v);
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& path, int flags,
                                                     int busy_timeout_ms,
                                                     const SqliteErrorHints& hints) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  // The handle is ours even when the open failed (it carries the reason).
  std::unique_ptr<Connection> c(new Connection(db, path, hints));
  if (rc != SQLITE_OK) return c->error(rc, "opening the database");
  sqlite3_extended_result_codes(db, 1);
  // Wait for a writer of another connection instead of failing at once.
  sqlite3_busy_timeout(db, busy_timeout_ms);
  return c;
}

Status Connection::error(int rc, std::string_view what) const {
  return sqlite_error(rc, db_, path_, what, hints_);
}

Result<sqlite3_stmt*> Connection::statement(std::string_view sql) {
  if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
  if (statements_.size() >= kMaxStatements) finalize_all();
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return error(rc, "preparing a statement");
  statements_.emplace(std::string(sql), stmt);
  return stmt;
}

Status Connection::run(std::string_view sql, std::string_view what) {
  EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, statement(sql));
  StatementUse use(stmt);
  const int rc = sqlite3_step(stmt);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? Status() : error(rc, what);
}

Status Connection::exec_script(const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status() : error(rc, what);
}

Result<std::vector<std::string>> Connection::rows(std::string_view sql, std::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  std::vector<std::string> out;
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      out.emplace_back(text ? reinterpret_cast<const char*>(text) : "",
                       static_cast<size_t>(sqlite3_column_bytes(stmt, 0)));
    }
  }
  Status s = rc == SQLITE_DONE ? Status() : error(rc, what);
  sqlite3_finalize(stmt);
  if (!s.ok()) return s;
  return out;
}

Status Connection::close() {
  if (db_ == nullptr) return Status();
  finalize_all();
  Status s;
  if (const int rc = sqlite3_close(db_); rc != SQLITE_OK) {
    s = error(rc, "closing the database");
    sqlite3_close_v2(db_);  // closes as soon as whatever holds it is done
  }
  db_ = nullptr;
  return s;
}

void Connection::finalize_all() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
}

std::string_view column_bytes(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  const int size = sqlite3_column_bytes(stmt, column);
  return data != nullptr ? std::string_view(static_cast<const char*>(data), size)
                         : std::string_view();
}

WriteTransaction::~WriteTransaction() {
  // A failed COMMIT may have rolled back already (autocommit is then on).
  if (sqlite3_get_autocommit(c_.db()) == 0) c_.run("ROLLBACK", "rolling back").ignore_error();
}

Result<std::unique_ptr<Connection>> open_database(const std::string& path,
                                                  const OpenOptions& options,
                                                  const StoreTables& tables,
                                                  const SqliteErrorHints& hints) {
  // Debian's SQLite reads "file:..." as a URI: "./" keeps it a file name.
  const std::string file = path.starts_with("file:") ? "./" + path : path;
  std::error_code ec;
  if (!options.create_if_missing && !std::filesystem::exists(file, ec))
    return no_store(path, tables);
  const int flags = SQLITE_OPEN_READWRITE | (options.create_if_missing ? SQLITE_OPEN_CREATE : 0);
  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> c,
                               Connection::open(file, flags, options.busy_timeout_ms, hints));
  EVENTSOURCE_RETURN_IF_ERROR(prepare_database(*c, options.create_if_missing, tables));
  EVENTSOURCE_RETURN_IF_ERROR(c->exec_script(
      options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
      "setting PRAGMA synchronous"));
  return c;
}

Status current_exception_error(const std::string& path, std::string_view what) {
  try {
    throw;
  } catch (const std::exception& e) {
    return Status(Code::kIoError, fmt::format("{}: {}: {}", path, what, e.what()));
  } catch (...) {
    return Status(Code::kIoError, fmt::format("{}: {}: an unknown exception", path, what));
  }
}

}  // namespace eventsource::api_internal
