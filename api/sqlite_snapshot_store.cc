// SQLiteSnapshotStore (sqlite_snapshot_store.h): the snapshot tables in an
// SQLite database, and save, get and prune, each one SQL statement on the
// store's one connection.
//
// Layout 1 (kSchema). Table snapshots: one row per (stream_type, stream_id,
// version), its PRIMARY KEY, so a save at a stored version replaces that row
// (INSERT OR REPLACE) and get walks the key's index backwards to the highest
// version. Stream types and ids and the state are BLOBs: raw bytes (NUL and
// invalid UTF-8 included), kept byte-identical and compared with memcmp, as
// SQLiteEventStore keeps them. eventsource_snapshot_meta's 'layout' row says
// which layout the table follows. It is a table of its own, not a row in
// SQLiteEventStore's eventsource_meta: the event store reads an
// eventsource_meta without its own 'layout' row as damage, so a snapshot
// store opened first on a new file would make it refuse the file. The two
// stores' tables share no name, so either may be opened first.
#include "eventsource/sqlite_snapshot_store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace eventsource {
namespace {

static_assert(SQLiteSnapshotStore::kLayoutVersion == 1, "kSchema writes layout 1");

// Creates whatever is missing of layout 1 (run under the write lock).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS eventsource_snapshot_meta(
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots(
  stream_type BLOB NOT NULL,
  stream_id BLOB NOT NULL,
  version INTEGER NOT NULL CHECK(version >= 1),
  schema_version INTEGER NOT NULL,
  timestamp_us INTEGER NOT NULL,
  state BLOB NOT NULL,
  PRIMARY KEY(stream_type, stream_id, version)
);
INSERT OR IGNORE INTO eventsource_snapshot_meta(name, value) VALUES('layout', 1);
)sql";

// The snapshots table's columns in order: a table named snapshots with
// other columns is not layout 1.
constexpr std::array<std::string_view, 6> kTableColumns = {
    "stream_type", "stream_id", "version", "schema_version", "timestamp_us", "state"};

constexpr const char* kSave =
    "INSERT OR REPLACE INTO snapshots(stream_type, stream_id, version, schema_version, "
    "timestamp_us, state) VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kGet =
    "SELECT version, schema_version, timestamp_us, state FROM snapshots "
    "WHERE stream_type = ?1 AND stream_id = ?2 ORDER BY version DESC LIMIT 1";
constexpr const char* kPrune =
    "DELETE FROM snapshots WHERE stream_type = ?1 AND stream_id = ?2 AND version <= ?3";

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

// A failed SQLite call as a Status: the code says what the caller can do
// next, the message names the file, the operation and SQLite's reason.
Status sqlite_error(int rc, sqlite3* db, const std::string& path, std::string_view what) {
  const std::string reason = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int sys_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(Code::kBusy,
                    fmt::format("{}: {}: {}: another connection or process held the database's "
                                "lock for longer than busy_timeout_ms; retry later, or raise "
                                "SQLiteSnapshotStoreOptions::busy_timeout_ms",
                                path, what, reason));
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
                      "(SQLITE_MAX_LENGTH); store a smaller state",
                      path, what, reason));
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

// One SQLite connection and the few statements prepared on it, each on
// first use, then kept and reset after every use until the connection
// closes. Callers serialize (the store's mutex), so it is opened
// SQLITE_OPEN_NOMUTEX.
class Connection {
 public:
  static Result<std::unique_ptr<Connection>> open(const std::string& path, int flags,
                                                  int busy_timeout_ms) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    // The handle is ours even when the open failed (it carries the reason).
    std::unique_ptr<Connection> c(new Connection(db, path));
    if (rc != SQLITE_OK) return c->error(rc, "opening the database");
    sqlite3_extended_result_codes(db, 1);
    // Wait for a writer of another connection instead of failing at once.
    sqlite3_busy_timeout(db, busy_timeout_ms);
    return c;
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { close().ignore_error(); }

  sqlite3* db() const { return db_; }
  const std::string& path() const { return path_; }
  Status error(int rc, std::string_view what) const { return sqlite_error(rc, db_, path_, what); }

  // The statement of `sql`, prepared on first use (the store runs only the
  // constant texts above, so the cache stays small).
  Result<sqlite3_stmt*> statement(std::string_view sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return error(rc, "preparing a statement");
    statements_.emplace(std::string(sql), stmt);
    return stmt;
  }

  // Runs `sql`, any number of statements, without caching (setup, BEGIN,
  // COMMIT, ROLLBACK).
  Status exec_script(const char* sql, std::string_view what) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? Status() : error(rc, what);
  }

  // The first column of every row of `sql` as text (setup and schema
  // checks; prepared for this one use).
  Result<std::vector<std::string>> rows(const char* sql, std::string_view what) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
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

  // Finalizes the statements and closes the connection. Idempotent.
  Status close() {
    if (db_ == nullptr) return Status();
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    statements_.clear();
    Status s;
    if (const int rc = sqlite3_close(db_); rc != SQLITE_OK) {
      s = error(rc, "closing the database");
      sqlite3_close_v2(db_);  // closes as soon as whatever holds it is done
    }
    db_ = nullptr;
    return s;
  }

 private:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::string path_;
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
  Binder& integer(int64_t v) { return check(sqlite3_bind_int64(stmt_, next_++, v)); }

  int rc() const { return rc_; }

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
std::string_view column_bytes(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  const int size = sqlite3_column_bytes(stmt, column);
  return data != nullptr ? std::string_view(static_cast<const char*>(data), size)
                         : std::string_view();
}

// BEGIN IMMEDIATE .. COMMIT (setup only: save, get and prune are one
// statement each, atomic on their own). Rolls back unless committed.
class WriteTransaction {
 public:
  explicit WriteTransaction(Connection& c) : c_(c) {}
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;
  ~WriteTransaction() {
    // A failed COMMIT may have rolled back already (autocommit is then on).
    if (sqlite3_get_autocommit(c_.db()) == 0)
      c_.exec_script("ROLLBACK", "rolling back").ignore_error();
  }

  Status begin(std::string_view what) { return c_.exec_script("BEGIN IMMEDIATE", what); }
  Status commit(std::string_view what) { return c_.exec_script("COMMIT", what); }

 private:
  Connection& c_;
};

// What a database holds of ours.
enum class Schema : uint8_t {
  kNone,  // no snapshot tables: a new store
  kReady,
};

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Looks at the schema. Errors: a snapshots table that is not ours, a newer
// layout, our tables altered.
Result<Schema> inspect_schema(Connection& c) {
  const std::string& path = c.path();
  EVENTSOURCE_ASSIGN_OR_RETURN(const std::vector<std::string> tables,
                               c.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                      "name IN ('snapshots', 'eventsource_snapshot_meta')",
                                      "reading the schema"));
  if (!contains(tables, "eventsource_snapshot_meta")) {
    if (!contains(tables, "snapshots")) return Schema::kNone;
    return invalid_argument(
        fmt::format("{}: the database holds a table named snapshots that eventsource did not "
                    "create (there is no eventsource_snapshot_meta table); open another file, "
                    "or rename that table",
                    path));
  }
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const std::vector<std::string> layout,
      c.rows("SELECT value FROM eventsource_snapshot_meta WHERE name = 'layout' "
             "AND typeof(value) = 'integer'",
             "reading the snapshot layout version"));
  int64_t version = 0;
  if (layout.size() != 1 ||
      std::from_chars(layout[0].data(), layout[0].data() + layout[0].size(), version).ec !=
          std::errc() ||
      version < 1)
    return corruption(fmt::format("{}: table eventsource_snapshot_meta has no valid 'layout' "
                                  "row; the tables were changed outside eventsource (restore "
                                  "the database from a backup)",
                                  path),
                      -1, -1);
  if (version > SQLiteSnapshotStore::kLayoutVersion)
    return not_supported(
        fmt::format("{}: the snapshots table has layout {}, newer than this "
                    "library's {}; open it with a newer eventsource",
                    path, version, SQLiteSnapshotStore::kLayoutVersion));
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const std::vector<std::string> columns,
      c.rows("SELECT name FROM pragma_table_info('snapshots')", "reading the snapshots table"));
  if (!std::equal(columns.begin(), columns.end(), kTableColumns.begin(), kTableColumns.end()))
    return corruption(fmt::format("{}: the snapshots table has columns ({}), not those of "
                                  "layout {}; it was changed outside eventsource (restore the "
                                  "database from a backup)",
                                  path, fmt::join(columns, ", "), version),
                      -1, -1);
  return Schema::kReady;
}

Status no_store(const std::string& path) {
  return not_found(
      fmt::format("{}: no snapshot store here (create_if_missing is off); check the "
                  "path, or open with create_if_missing",
                  path));
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

// Makes sure the database is in WAL mode and holds our tables, creating
// them when allowed. It looks before it writes anything, so a file it
// refuses (not a database, a snapshots table not ours, no store and
// !create_if_missing) is left as it was. Creating takes the write lock and
// looks again under it: another connection may have created them meanwhile.
Status prepare_database(Connection& c, bool create_if_missing) {
  EVENTSOURCE_ASSIGN_OR_RETURN(const Schema found, inspect_schema(c));
  if (found == Schema::kNone && !create_if_missing) return no_store(c.path());
  EVENTSOURCE_RETURN_IF_ERROR(use_wal(c));
  if (found == Schema::kReady) return Status();
  WriteTransaction txn(c);
  EVENTSOURCE_RETURN_IF_ERROR(txn.begin("creating the snapshot tables"));
  EVENTSOURCE_ASSIGN_OR_RETURN(const Schema now, inspect_schema(c));
  if (now != Schema::kReady)
    EVENTSOURCE_RETURN_IF_ERROR(c.exec_script(kSchema, "creating the snapshot tables"));
  return txn.commit("creating the snapshot tables");
}

// Runs `fn`, turning an exception (std::bad_alloc, most likely) into an
// error: none leaves the store.
template <class Fn>
auto catch_all(const std::string& path, std::string_view what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Status(Code::kIoError, fmt::format("{}: {}: {}", path, what, e.what()));
  } catch (...) {
    return Status(Code::kIoError, fmt::format("{}: {}: an unknown exception", path, what));
  }
}

Status closed_error(const std::string& path) {
  return closed(fmt::format("{}: the SQLite snapshot store is closed; open it again", path));
}

}  // namespace

struct SQLiteSnapshotStore::Impl {
  Impl(std::string p, std::unique_ptr<Connection> c) : path(std::move(p)), conn(std::move(c)) {}

  const std::string path;
  // Serializes this handle's calls on its one connection (SQLite's locks
  // serialize the writes across handles and processes).
  std::mutex mu;
  std::unique_ptr<Connection> conn;  // guarded by mu; null once closed
};

Result<std::unique_ptr<SQLiteSnapshotStore>> SQLiteSnapshotStore::open(
    const std::string& path, const SQLiteSnapshotStoreOptions& options) {
  return catch_all(path, "opening", [&]() -> Result<std::unique_ptr<SQLiteSnapshotStore>> {
    // An in-memory database cannot be put in WAL mode, and is shared with
    // no SQLiteEventStore (each connection has its own).
    if (path.empty() || path == ":memory:")
      return invalid_argument(
          fmt::format("'{}': an SQLite snapshot store needs a file path; use "
                      "InMemorySnapshotStore for a store without a file",
                      path));
    // Debian's SQLite reads "file:..." as a URI: "./" keeps it a file name.
    const std::string file = path.starts_with("file:") ? "./" + path : path;
    std::error_code ec;
    if (!options.create_if_missing && !std::filesystem::exists(file, ec)) return no_store(path);
    const int flags = SQLITE_OPEN_READWRITE | (options.create_if_missing ? SQLITE_OPEN_CREATE : 0);
    EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                                 Connection::open(file, flags, options.busy_timeout_ms));
    EVENTSOURCE_RETURN_IF_ERROR(prepare_database(*conn, options.create_if_missing));
    EVENTSOURCE_RETURN_IF_ERROR(conn->exec_script(
        options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
        "setting PRAGMA synchronous"));
    auto impl = std::make_unique<Impl>(file, std::move(conn));
    log_to(options.observability.log, LogLevel::kInfo, "sqlite snapshot store opened",
           std::array<LogField, 1>{LogField{"path", path}});
    return std::unique_ptr<SQLiteSnapshotStore>(
        new SQLiteSnapshotStore(std::move(impl), options.observability));
  });
}

SQLiteSnapshotStore::SQLiteSnapshotStore(std::unique_ptr<Impl> impl, Observability obs)
    : SnapshotStore(std::move(obs)), impl_(std::move(impl)) {}

SQLiteSnapshotStore::~SQLiteSnapshotStore() { close().ignore_error(); }

const std::string& SQLiteSnapshotStore::path() const { return impl_->path; }

Status SQLiteSnapshotStore::close() {
  std::lock_guard lock(impl_->mu);
  if (!impl_->conn) return Status();
  Status s = impl_->conn->close();
  impl_->conn.reset();
  if (!s.ok())
    log_to(observability().log, LogLevel::kWarn, "sqlite snapshot store close failed",
           std::array<LogField, 1>{LogField{"error", s.to_string()}});
  return s;
}

Status SQLiteSnapshotStore::do_save(const SnapshotRecord& snapshot) {
  const std::string what = fmt::format("saving the snapshot of stream {} at version {}",
                                       snapshot.stream.name(), snapshot.version.value);
  return catch_all(impl_->path, what, [&]() -> Status {
    // SQLite's integers are signed; no stream gets this far.
    if (snapshot.version.value > static_cast<uint64_t>(kMaxInt64))
      return invalid_argument(
          fmt::format("{}: {}: versions above 2^63-1 are not supported", impl_->path, what));
    std::lock_guard lock(impl_->mu);
    if (!impl_->conn) return closed_error(impl_->path);
    Connection& c = *impl_->conn;
    EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, c.statement(kSave));
    StatementUse use(stmt);
    Binder b(stmt);
    b.bytes(snapshot.stream.type)
        .bytes(snapshot.stream.id)
        .integer(static_cast<int64_t>(snapshot.version.value))
        .integer(snapshot.schema_version)
        .integer(snapshot.timestamp_us)
        .bytes(snapshot.state);
    const int rc = b.rc() != SQLITE_OK ? b.rc() : sqlite3_step(stmt);
    return rc == SQLITE_DONE ? Status() : c.error(rc, what);
  });
}

Result<std::optional<SnapshotRecord>> SQLiteSnapshotStore::do_get(const StreamId& stream) const {
  const std::string what = fmt::format("reading the snapshot of stream {}", stream.name());
  return catch_all(impl_->path, what, [&]() -> Result<std::optional<SnapshotRecord>> {
    std::lock_guard lock(impl_->mu);
    if (!impl_->conn) return closed_error(impl_->path);
    Connection& c = *impl_->conn;
    EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, c.statement(kGet));
    StatementUse use(stmt);
    Binder b(stmt);
    b.bytes(stream.type).bytes(stream.id);
    const int rc = b.rc() != SQLITE_OK ? b.rc() : sqlite3_step(stmt);
    if (rc == SQLITE_DONE) return std::optional<SnapshotRecord>();
    if (rc != SQLITE_ROW) return c.error(rc, what);
    // The file's bytes are not trusted: a malformed row is kCorruption.
    const int64_t version = sqlite3_column_int64(stmt, 0);
    const int64_t schema_version = sqlite3_column_int64(stmt, 1);
    if (version < 1 || schema_version < 0 ||
        schema_version > int64_t{std::numeric_limits<uint32_t>::max()})
      return corruption(
          fmt::format("{}: {}: the row at version {} has schema_version {} (versions must be "
                      ">= 1, schema versions in 0..2^32-1); the table was changed outside "
                      "eventsource (restore the database from a backup, or delete the row: a "
                      "snapshot is only a cache of the stream)",
                      impl_->path, what, version, schema_version),
          -1, -1);
    SnapshotRecord r;
    r.stream = stream;
    r.version = StreamVersion(static_cast<uint64_t>(version));
    r.schema_version = static_cast<uint32_t>(schema_version);
    r.timestamp_us = sqlite3_column_int64(stmt, 2);
    r.state = std::string(column_bytes(stmt, 3));
    return std::optional<SnapshotRecord>(std::move(r));
  });
}

Result<uint64_t> SQLiteSnapshotStore::do_prune(const StreamId& stream, StreamVersion keep_from) {
  const std::string what = fmt::format("pruning the snapshots of stream {} below version {}",
                                       stream.name(), keep_from.value);
  return catch_all(impl_->path, what, [&]() -> Result<uint64_t> {
    std::lock_guard lock(impl_->mu);
    if (!impl_->conn) return closed_error(impl_->path);
    Connection& c = *impl_->conn;
    // version < keep_from as version <= keep_from - 1, which fits SQLite's
    // signed integers for every keep_from (0 deletes nothing).
    const int64_t last_removed = keep_from.value == 0
                                     ? 0
                                     : static_cast<int64_t>(std::min<uint64_t>(
                                           keep_from.value - 1, static_cast<uint64_t>(kMaxInt64)));
    EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, c.statement(kPrune));
    StatementUse use(stmt);
    Binder b(stmt);
    b.bytes(stream.type).bytes(stream.id).integer(last_removed);
    const int rc = b.rc() != SQLITE_OK ? b.rc() : sqlite3_step(stmt);
    if (rc != SQLITE_DONE) return c.error(rc, what);
    return static_cast<uint64_t>(sqlite3_changes64(c.db()));
  });
}

}  // namespace eventsource
