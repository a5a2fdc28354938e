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
#include <sqlite3.h>

#include <array>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include "sqlite_connection.h"

namespace eventsource {
namespace {

using api_internal::Binder;
using api_internal::catch_all;
using api_internal::column_bytes;
using api_internal::Connection;
using api_internal::StatementUse;

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

constexpr api_internal::StoreTables kTables = {
    .store = "snapshot store",
    .table = "snapshots",
    .meta_table = "eventsource_snapshot_meta",
    .columns = kTableColumns,
    .indexes = {},  // its PRIMARY KEY is the one index get and prune walk
    .layout_version = SQLiteSnapshotStore::kLayoutVersion,
    .create_sql = kSchema,
    .reading_layout = "reading the snapshot layout version",
    .creating = "creating the snapshot tables",
};

constexpr api_internal::SqliteErrorHints kErrorHints = {
    .options = "SQLiteSnapshotStoreOptions",
    .large_value = "state",
};

constexpr const char* kSave =
    "INSERT OR REPLACE INTO snapshots(stream_type, stream_id, version, schema_version, "
    "timestamp_us, state) VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kGet =
    "SELECT version, schema_version, timestamp_us, state FROM snapshots "
    "WHERE stream_type = ?1 AND stream_id = ?2 ORDER BY version DESC LIMIT 1";
constexpr const char* kPrune =
    "DELETE FROM snapshots WHERE stream_type = ?1 AND stream_id = ?2 AND version <= ?3";

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

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
    EVENTSOURCE_ASSIGN_OR_RETURN(
        std::unique_ptr<Connection> conn,
        api_internal::open_database(path, api_internal::open_options(options), kTables,
                                    kErrorHints));
    const std::string file = conn->path();
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
    const int rc = b.step();
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
    const int rc = b.step();
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
    const int64_t last_removed =
        keep_from.value == 0 ? 0 : api_internal::clamp_to_int64(keep_from.value - 1);
    EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, c.statement(kPrune));
    StatementUse use(stmt);
    Binder b(stmt);
    b.bytes(stream.type).bytes(stream.id).integer(last_removed);
    const int rc = b.step();
    if (rc != SQLITE_DONE) return c.error(rc, what);
    return static_cast<uint64_t>(sqlite3_changes64(c.db()));
  });
}

}  // namespace eventsource
