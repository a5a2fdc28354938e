// The SQLite plumbing SQLiteEventStore and SQLiteSnapshotStore share: a
// connection with its cache of prepared statements, binding and reading
// columns, the write transaction, SQLite's result codes as our Status codes,
// and opening a store's database (WAL, its tables, PRAGMA synchronous).
// Internal: each store keeps its own SQL, rows and locking.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource::api_internal {

// The words of Connection::error's messages that name a store's own things
// (string literals: a Connection keeps the views).
struct SqliteErrorHints {
  std::string_view options;      // whose busy_timeout_ms to raise: "SQLiteEventStoreOptions"
  std::string_view large_value;  // what to store smaller past SQLITE_MAX_LENGTH: "payload"
};

// SQLite's integers are signed: a value past INT64_MAX becomes INT64_MAX
// (for a bound, "no bound").
int64_t clamp_to_int64(uint64_t v);

// One SQLite connection and the statements prepared on it: each prepared on
// first use, then kept and reset after every use until the connection
// closes. Callers serialize (it is opened SQLITE_OPEN_NOMUTEX).
class Connection {
 public:
  // Opens `path` with `flags` (SQLITE_OPEN_*), with extended result codes
  // and waiting up to `busy_timeout_ms` for another connection's lock.
  static Result<std::unique_ptr<Connection>> open(const std::string& path, int flags,
                                                  int busy_timeout_ms,
                                                  const SqliteErrorHints& hints);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { close().ignore_error(); }

  sqlite3* db() const { return db_; }
  const std::string& path() const { return path_; }
  // A failed SQLite call `rc` as a Status: the code says what the caller
  // can do next, the message names the file, the operation `what` and
  // SQLite's reason.
  Status error(int rc, std::string_view what) const;

  // The statement of `sql`, prepared on first use. A full cache starts over.
  // REQUIRES: no statement of this connection is in use when the cache is
  // full (only a read building SQL fills it, and it asks for its one
  // statement before using any).
  Result<sqlite3_stmt*> statement(std::string_view sql);

  // Runs one cached statement that returns no rows (BEGIN, COMMIT).
  Status run(std::string_view sql, std::string_view what);

  // Runs `sql`, any number of statements, without caching (setup).
  Status exec_script(const char* sql, std::string_view what);

  // The first column of every row of `sql` as text (setup and schema
  // checks; prepared for this one use).
  Result<std::vector<std::string>> rows(std::string_view sql, std::string_view what);

  // Finalizes the statements and closes the connection. Idempotent.
  Status close();

 private:
  Connection(sqlite3* db, std::string path, SqliteErrorHints hints)
      : db_(db), path_(std::move(path)), hints_(hints) {}

  void finalize_all();

  sqlite3* db_;
  std::string path_;
  const SqliteErrorHints hints_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
};

// One use of a cached statement: resets it and clears its bindings at the
// end, so the next use starts clean and no read transaction stays open.
class StatementUse {
 public:
  explicit StatementUse(sqlite3_stmt* stmt) : stmt_(stmt) {}
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  ~StatementUse() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_;
};

// Binds ?1, ?2, ... in turn and keeps the first failure. The bound bytes
// are not copied: they must outlive the statement's use.
class Binder {
 public:
  explicit Binder(sqlite3_stmt* stmt) : stmt_(stmt) {}

  Binder& bytes(std::string_view v) {
    // An empty view may have no data pointer, which SQLite would bind as
    // NULL: bind the empty BLOB instead.
    return check(v.empty()
                     ? sqlite3_bind_zeroblob(stmt_, next_++, 0)
                     : sqlite3_bind_blob64(stmt_, next_++, v.data(), v.size(), SQLITE_STATIC));
  }
  Binder& uuid(const Uuid& u) {
    return check(sqlite3_bind_blob(stmt_, next_++, u.bytes.data(), static_cast<int>(u.bytes.size()),
                                   SQLITE_STATIC));
  }
  // nil = NULL (no id).
  Binder& uuid_or_null(const Uuid& u) {
    return u.is_nil() ? check(sqlite3_bind_null(stmt_, next_++)) : uuid(u);
  }
  Binder& integer(int64_t v) { return check(sqlite3_bind_int64(stmt_, next_++, v)); }

  // SQLITE_OK, or the first bind's failure.
  int rc() const { return rc_; }
  // Steps the statement once, unless a bind failed: then that failure's
  // code, so the caller has one code to judge.
  int step() { return rc_ != SQLITE_OK ? rc_ : sqlite3_step(stmt_); }

 private:
  Binder& check(int rc) {
    if (rc_ == SQLITE_OK) rc_ = rc;
    return *this;
  }

  sqlite3_stmt* stmt_;
  int next_ = 1;
  int rc_ = SQLITE_OK;
};

// The bytes of a BLOB column, valid until the next step of `stmt`.
std::string_view column_bytes(sqlite3_stmt* stmt, int column);

// BEGIN IMMEDIATE .. COMMIT: takes the database's write lock at the start
// (waiting up to busy_timeout_ms), so what is read inside stays true until
// the commit. Rolls back unless committed: an error or an exception halfway
// leaves nothing written.
class WriteTransaction {
 public:
  explicit WriteTransaction(Connection& c) : c_(c) {}
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;
  ~WriteTransaction();

  Status begin(std::string_view what) { return c_.run("BEGIN IMMEDIATE", what); }
  Status commit(std::string_view what) { return c_.run("COMMIT", what); }

 private:
  Connection& c_;
};

// A store's tables as open_database checks and creates them, and the words
// its messages use for them.
struct StoreTables {
  std::string_view store;                     // "event store", as in "no event store here"
  std::string_view table;                     // the main table: "events"
  std::string_view meta_table;                // holds the 'layout' row: "eventsource_meta"
  std::span<const std::string_view> columns;  // `table`'s, in order
  // Indexes of `table` the store needs; one missing is re-created on open.
  std::span<const std::string_view> indexes;
  int64_t layout_version;           // the newest layout this library knows
  const char* create_sql;           // creates whatever is missing of it
  std::string_view reading_layout;  // `what` of reading the 'layout' row
  std::string_view creating;        // `what` of creating the tables
};

// How open_database opens: the fields both stores' options share, with
// their meaning (SQLiteEventStoreOptions, SQLiteSnapshotStoreOptions).
struct OpenOptions {
  bool create_if_missing = true;
  int busy_timeout_ms = 5000;
  bool synchronous_full = true;
};

// The OpenOptions of either store's options struct.
template <class StoreOptions>
OpenOptions open_options(const StoreOptions& o) {
  return {.create_if_missing = o.create_if_missing,
          .busy_timeout_ms = o.busy_timeout_ms,
          .synchronous_full = o.synchronous_full};
}

// Opens the database at `path` (a file name, never an SQLite URI: path()
// of the result is the name SQLite was given), puts it in WAL mode, makes
// sure it holds `tables` (creating them if allowed) and sets PRAGMA
// synchronous. It looks before it writes, so a file it refuses is left as
// it was. Errors: kNotFound (no store and !create_if_missing),
// kInvalidArgument (a `tables.table` that is not ours), kCorruption,
// kNotSupported (a newer layout, no WAL), kBusy, kIoError.
Result<std::unique_ptr<Connection>> open_database(const std::string& path,
                                                  const OpenOptions& options,
                                                  const StoreTables& tables,
                                                  const SqliteErrorHints& hints);

// The kIoError of an exception that reached a store's boundary.
// REQUIRES: called inside a catch block.
Status current_exception_error(const std::string& path, std::string_view what);

// Runs `fn`, turning an exception (std::bad_alloc, most likely) into an
// error: none leaves a store.
template <class Fn>
auto catch_all(const std::string& path, std::string_view what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    return current_exception_error(path, what);
  }
}

}  // namespace eventsource::api_internal
