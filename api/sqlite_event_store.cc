// SQLiteEventStore (sqlite_event_store.h): our tables in an SQLite database,
// the append transaction (BEGIN IMMEDIATE, the shared judgement of
// append_rules.h, INSERT, COMMIT) and the reads, each on a connection of its
// own so that callbacks run with no lock held.
//
// Layout 1 (kSchema). One row per event. position is the INTEGER PRIMARY
// KEY (the rowid), 1-based and dense: assigned as max + 1 inside the write
// transaction, so an append that fails rolls back and leaves no gap. Every
// string of the envelope is a BLOB: stream types and ids, event types,
// tenants and actors are raw bytes (NUL and invalid UTF-8 included), which a
// BLOB keeps byte-identical and compares with memcmp, as the engine does
// (cast them AS TEXT to read them in the sqlite3 shell). A nil correlation or
// causation id is NULL; "no tenant" is the empty BLOB. The unique index on
// (stream_type, stream_id, version) is the optimistic lock, the one on id
// keeps ids unique in the store, and the (column, position) indexes serve
// the type, category and tenant feeds. eventsource_meta's 'layout' row says
// which layout the tables follow.
#include "eventsource/sqlite_event_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "append_rules.h"
#include "clock.h"
#include "sqlite_connection.h"

namespace eventsource {
namespace {

using api_internal::Binder;
using api_internal::catch_all;
using api_internal::clamp_to_int64;
using api_internal::column_bytes;
using api_internal::Connection;
using api_internal::StatementUse;
using api_internal::WriteTransaction;

static_assert(SQLiteEventStore::kLayoutVersion == 1, "kSchema writes layout 1");

// Creates whatever is missing of layout 1 (run under the write lock).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS eventsource_meta(
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(
  position INTEGER PRIMARY KEY,
  id BLOB NOT NULL,
  stream_type BLOB NOT NULL,
  stream_id BLOB NOT NULL,
  version INTEGER NOT NULL CHECK(version >= 1),
  type BLOB NOT NULL,
  schema_version INTEGER NOT NULL,
  tenant BLOB NOT NULL,
  timestamp_us INTEGER NOT NULL,
  correlation_id BLOB,
  causation_id BLOB,
  actor BLOB NOT NULL,
  metadata BLOB NOT NULL,
  payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events(id);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events(stream_type, stream_id, version);
CREATE INDEX IF NOT EXISTS events_by_type ON events(type, position);
CREATE INDEX IF NOT EXISTS events_by_stream_type ON events(stream_type, position);
CREATE INDEX IF NOT EXISTS events_by_tenant ON events(tenant, position);
INSERT OR IGNORE INTO eventsource_meta(name, value) VALUES('layout', 1);
)sql";

// The events table's columns in order: a table named events with other
// columns is not ours.
constexpr std::array<std::string_view, 14> kTableColumns = {
    "position",       "id",     "stream_type",  "stream_id",      "version",      "type",
    "schema_version", "tenant", "timestamp_us", "correlation_id", "causation_id", "actor",
    "metadata",       "payload"};

constexpr std::array<std::string_view, 5> kIndexes = {"events_by_id", "events_by_stream",
                                                      "events_by_type", "events_by_stream_type",
                                                      "events_by_tenant"};

constexpr api_internal::StoreTables kTables = {
    .store = "event store",
    .table = "events",
    .meta_table = "eventsource_meta",
    .columns = kTableColumns,
    .indexes = kIndexes,
    .layout_version = SQLiteEventStore::kLayoutVersion,
    .create_sql = kSchema,
    .reading_layout = "reading the layout version",
    .creating = "creating the tables",
};

constexpr api_internal::SqliteErrorHints kErrorHints = {
    .options = "SQLiteEventStoreOptions",
    .large_value = "payload",
};

// What a read selects, in the order of Column.
#define EVENTSOURCE_SELECT_EVENTS                                                      \
  "SELECT position, version, timestamp_us, schema_version, id, correlation_id, "       \
  "causation_id, stream_type, stream_id, type, tenant, actor, metadata, payload FROM " \
  "events"
enum Column : int {
  kPosition,
  kVersion,
  kTimestamp,
  kSchemaVersion,
  kId,
  kCorrelationId,
  kCausationId,
  kStreamType,
  kStreamId,
  kType,
  kTenant,
  kActor,
  kMetadata,
  kPayload,
};

constexpr const char* kReadStreamForward = EVENTSOURCE_SELECT_EVENTS
    " WHERE stream_type = ?1 AND stream_id = ?2 AND version BETWEEN ?3 AND ?4"
    " ORDER BY version LIMIT ?5";
constexpr const char* kReadStreamBackward = EVENTSOURCE_SELECT_EVENTS
    " WHERE stream_type = ?1 AND stream_id = ?2 AND version BETWEEN ?3 AND ?4"
    " ORDER BY version DESC LIMIT ?5";
constexpr const char* kStreamVersion =
    "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_type = ?1 AND stream_id = ?2";
constexpr const char* kLastPosition = "SELECT COALESCE(MAX(position), 0) FROM events";
constexpr const char* kFindId =
    "SELECT stream_type, stream_id, version, position FROM events WHERE id = ?1";
constexpr const char* kInsert =
    "INSERT INTO events(position, id, stream_type, stream_id, version, type, schema_version, "
    "tenant, timestamp_us, correlation_id, causation_id, actor, metadata, payload) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

// Idle read connections kept open for the next reads.
constexpr size_t kMaxIdleReaders = 4;

// LIMIT -1 is no limit.
int64_t sql_limit(uint64_t max_count) {
  return max_count == kNoLimit ? -1 : clamp_to_int64(max_count);
}

// A 16-byte id column; NULL is the nil id where `nullable`. False: malformed.
bool column_uuid(sqlite3_stmt* stmt, int column, bool nullable, Uuid* out) {
  *out = Uuid{};
  if (sqlite3_column_type(stmt, column) == SQLITE_NULL) return nullable;
  const std::string_view bytes = column_bytes(stmt, column);
  if (bytes.size() != out->bytes.size()) return false;
  std::memcpy(out->bytes.data(), bytes.data(), bytes.size());
  return true;
}

// The current row of `stmt` as a record whose views point into SQLite's
// column buffers (valid until the next step). The file's bytes are not
// trusted: a malformed row is kCorruption, never a crash.
Status decode_row(sqlite3_stmt* stmt, const std::string& path, EventRecord* out) {
  const int64_t position = sqlite3_column_int64(stmt, kPosition);
  auto bad = [&](std::string_view what) {
    return corruption(fmt::format("{}: the events row at position {}: {}; the table was changed "
                                  "outside eventsource (restore the database from a backup)",
                                  path, position, what),
                      -1, position);
  };
  const int64_t version = sqlite3_column_int64(stmt, kVersion);
  const int64_t schema_version = sqlite3_column_int64(stmt, kSchemaVersion);
  if (position < 1 || version < 1) return bad("position and version must be >= 1");
  if (schema_version < 1 || schema_version > std::numeric_limits<uint32_t>::max())
    return bad(fmt::format("schema_version {} is not in 1..2^32-1", schema_version));
  if (!column_uuid(stmt, kId, false, &out->id)) return bad("id is not 16 bytes");
  if (!column_uuid(stmt, kCorrelationId, true, &out->correlation_id) ||
      !column_uuid(stmt, kCausationId, true, &out->causation_id))
    return bad("a correlation or causation id is neither NULL nor 16 bytes");
  out->position = GlobalPosition(static_cast<uint64_t>(position));
  out->version = StreamVersion(static_cast<uint64_t>(version));
  out->timestamp_us = sqlite3_column_int64(stmt, kTimestamp);
  out->schema_version = static_cast<uint32_t>(schema_version);
  out->stream_type = column_bytes(stmt, kStreamType);
  out->stream_id = column_bytes(stmt, kStreamId);
  out->type = column_bytes(stmt, kType);
  out->tenant = column_bytes(stmt, kTenant);
  out->actor = column_bytes(stmt, kActor);
  out->metadata = column_bytes(stmt, kMetadata);
  out->payload = column_bytes(stmt, kPayload);
  return Status();
}

// Steps a bound read and hands each row to `fn` until the rows end or `fn`
// says stop.
Status deliver(const Connection& c, sqlite3_stmt* stmt, const RecordCallback& fn,
               std::string_view what) {
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) return Status();
    if (rc != SQLITE_ROW) return c.error(rc, what);
    EventRecord record;
    EVENTSOURCE_RETURN_IF_ERROR(decode_row(stmt, c.path(), &record));
    if (!fn(record)) return Status();
  }
}

// A query of one integer row, bound by `bind`.
template <class Bind>
Result<int64_t> query_int(Connection& c, std::string_view sql, std::string_view what, Bind&& bind) {
  EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, c.statement(sql));
  StatementUse use(stmt);
  Binder binder(stmt);
  bind(binder);
  const int rc = binder.step();
  if (rc != SQLITE_ROW) return c.error(rc, what);
  return sqlite3_column_int64(stmt, 0);
}

Result<StreamVersion> query_stream_version(Connection& c, const StreamId& stream) {
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const int64_t v,
      query_int(c, kStreamVersion, fmt::format("reading the version of stream {}", stream.name()),
                [&](Binder& b) { b.bytes(stream.type).bytes(stream.id); }));
  return StreamVersion(static_cast<uint64_t>(std::max<int64_t>(v, 0)));
}

Result<GlobalPosition> query_last_position(Connection& c) {
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const int64_t p, query_int(c, kLastPosition, "reading the last position", [](Binder&) {}));
  return GlobalPosition(static_cast<uint64_t>(std::max<int64_t>(p, 0)));
}

// Where the event with this id is stored, if it is.
Result<std::optional<api_internal::IdLocation>> find_id(Connection& c, const Uuid& id) {
  const std::string what = fmt::format("looking up event id {}", id.to_string());
  EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, c.statement(kFindId));
  StatementUse use(stmt);
  const int rc = Binder(stmt).uuid(id).step();
  if (rc == SQLITE_DONE) return std::optional<api_internal::IdLocation>();
  if (rc != SQLITE_ROW) return c.error(rc, what);
  api_internal::IdLocation at;
  at.stream.type = std::string(column_bytes(stmt, 0));
  at.stream.id = std::string(column_bytes(stmt, 1));
  at.version = StreamVersion(static_cast<uint64_t>(sqlite3_column_int64(stmt, 2)));
  at.position = GlobalPosition(static_cast<uint64_t>(sqlite3_column_int64(stmt, 3)));
  return std::optional<api_internal::IdLocation>(std::move(at));
}

// Why an INSERT broke a constraint although the judgement passed: another
// writer got in between (which BEGIN IMMEDIATE should rule out), or the
// table was changed outside eventsource.
Status constraint_failure(Connection& c, int rc, const StreamId& stream, ExpectedVersion expected,
                          size_t index, const Uuid& id) {
  const std::string reason = sqlite3_errmsg(c.db());
  if (rc == SQLITE_CONSTRAINT_UNIQUE && reason.find("events.id") != std::string::npos)
    return Status(Code::kDuplicateEvent,
                  fmt::format("{}: stream {}: event {} of the batch has id {}, which another "
                              "writer stored meanwhile; nothing was written. Read the store and "
                              "decide again",
                              c.path(), stream.name(), index, id.to_string()));
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    // The optimistic lock fired: report the version that is there now.
    EVENTSOURCE_ASSIGN_OR_RETURN(const StreamVersion actual, query_stream_version(c, stream));
    return api_internal::version_conflict(stream, expected, actual);
  }
  return c.error(rc,
                 fmt::format("stream {}: inserting event {} of the batch", stream.name(), index));
}

// Inserts `events` as versions current+1.. at positions last+1.. .
Status insert_events(Connection& c, const StreamId& stream, ExpectedVersion expected,
                     StreamVersion current, GlobalPosition last, std::span<const NewEvent> events) {
  EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const insert, c.statement(kInsert));
  const int64_t now = api_internal::now_us();
  for (size_t i = 0; i < events.size(); ++i) {
    const NewEvent& e = events[i];
    const Uuid id = e.id.is_nil() ? Uuid::random() : e.id;
    StatementUse use(insert);
    Binder b(insert);
    b.integer(clamp_to_int64(last.value + 1 + i))
        .uuid(id)
        .bytes(stream.type)
        .bytes(stream.id)
        .integer(clamp_to_int64(current.value + 1 + i))
        .bytes(e.type)
        .integer(e.schema_version)
        .bytes(e.tenant)
        .integer(e.timestamp_us != 0 ? e.timestamp_us : now)
        .uuid_or_null(e.correlation_id)
        .uuid_or_null(e.causation_id)
        .bytes(e.actor)
        .bytes(e.metadata)
        .bytes(e.payload);
    const int rc = b.step();
    if (rc == SQLITE_DONE) continue;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) return constraint_failure(c, rc, stream, expected, i, id);
    return c.error(rc, fmt::format("stream {}: inserting event {} of the batch ({})", stream.name(),
                                   i, e.type));
  }
  return Status();
}

// One append, all-or-nothing, in one write transaction.
Result<AppendResult> append_batch(Connection& c, const StreamId& stream, ExpectedVersion expected,
                                  std::span<const NewEvent> events) {
  const std::string what = fmt::format("appending to stream {}", stream.name());
  WriteTransaction txn(c);
  EVENTSOURCE_RETURN_IF_ERROR(txn.begin(what));
  EVENTSOURCE_ASSIGN_OR_RETURN(const StreamVersion current, query_stream_version(c, stream));
  const api_internal::IdLookup lookup = [&c](const Uuid& id) { return find_id(c, id); };
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const api_internal::AppendPlan plan,
      api_internal::judge_append(stream, expected, current, events, lookup));
  if (!plan.write) return plan.retry;  // nothing written; the transaction rolls back
  EVENTSOURCE_ASSIGN_OR_RETURN(const GlobalPosition last, query_last_position(c));
  EVENTSOURCE_RETURN_IF_ERROR(insert_events(c, stream, expected, current, last, events));
  EVENTSOURCE_RETURN_IF_ERROR(txn.commit(what));
  AppendResult result;
  result.version = StreamVersion(current.value + events.size());
  result.first_position = GlobalPosition(last.value + 1);
  result.last_position = GlobalPosition(last.value + events.size());
  return result;
}

class ReadPool;

// A read connection for the length of one call, given back when it ends.
class Lease {
 public:
  Lease(ReadPool* pool, std::unique_ptr<Connection> c) : pool_(pool), c_(std::move(c)) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  Connection& operator*() const { return *c_; }
  Connection* operator->() const { return c_.get(); }

 private:
  ReadPool* pool_;
  std::unique_ptr<Connection> c_;
};

// The read connections. A read leases one for its length and calls its
// callback with no lock held: reads run side by side, and a callback may
// start another read (it leases another connection) or append (on the
// writer's connection). We chose connections over copying rows out because
// the records then point into SQLite's buffers (no copy), and each read is
// one statement, so it sees one snapshot (WAL) from its first row to its
// last. Safe for concurrent use.
class ReadPool {
 public:
  ReadPool(std::string path, int busy_timeout_ms)
      : path_(std::move(path)), busy_timeout_ms_(busy_timeout_ms) {}

  Result<Lease> lease() {
    {
      std::lock_guard lock(mu_);
      if (closed_) return closed_error(path_);
      if (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(c));
      }
    }
    // Opened without the lock: opening may wait for a lock of the file.
    EVENTSOURCE_ASSIGN_OR_RETURN(
        std::unique_ptr<Connection> c,
        Connection::open(path_, SQLITE_OPEN_READWRITE, busy_timeout_ms_, kErrorHints));
    // A reader never writes; query_only makes sure of it.
    EVENTSOURCE_RETURN_IF_ERROR(c->exec_script("PRAGMA query_only=1", "opening a reader"));
    return Lease(this, std::move(c));
  }

  // Keeps `c` for the next read, or closes it (after close(), or when
  // enough are idle).
  void give_back(std::unique_ptr<Connection> c) noexcept {
    std::lock_guard lock(mu_);
    if (closed_ || idle_.size() >= kMaxIdleReaders) return;  // `c` closes
    try {
      idle_.push_back(std::move(c));
    } catch (...) {  // no memory: `c` closes
    }
  }

  // Closes the idle connections; leased ones close when given back.
  void close() {
    std::vector<std::unique_ptr<Connection>> idle;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      idle.swap(idle_);
    }
  }

  static Status closed_error(const std::string& path) {
    return closed(fmt::format("{}: the SQLite event store is closed; open it again", path));
  }

 private:
  const std::string path_;
  const int busy_timeout_ms_;
  std::mutex mu_;
  bool closed_ = false;                            // guarded by mu_
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
};

Lease::~Lease() {
  if (c_) pool_->give_back(std::move(c_));
}

// Forward: from (0 = 1) up to to (0 = no bound). Backward: from (0 = the
// end) down to to (0 = 1). Either way a BETWEEN lo AND hi.
std::pair<int64_t, int64_t> version_range(const StreamReadOptions& o) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (o.direction == ReadDirection::kForward)
    return {std::max<int64_t>(clamp_to_int64(o.from.value), 1),
            o.to.value == 0 ? kMax : clamp_to_int64(o.to.value)};
  return {std::max<int64_t>(clamp_to_int64(o.to.value), 1),
          o.from.value == 0 ? kMax : clamp_to_int64(o.from.value)};
}

// A read_all's SQL: every filter is a WHERE term, so SQLite can walk the
// (type | stream_type | tenant, position) index rather than the table.
// Parameters: ?1 from, ?2 from_time_us, then the filters' values in the
// order bind_read_all binds them, then the limit.
std::string read_all_sql(const AllReadOptions& o) {
  std::string sql = EVENTSOURCE_SELECT_EVENTS " WHERE position >= ?1 AND timestamp_us >= ?2";
  int next = 3;
  auto any_of = [&](std::string_view column, size_t count) {
    if (count == 0) return;
    sql += fmt::format(" AND {} IN (", column);
    for (size_t i = 0; i < count; ++i) sql += fmt::format("{}?{}", i == 0 ? "" : ", ", next++);
    sql += ")";
  };
  any_of("type", o.event_types.size());
  any_of("stream_type", o.stream_types.size());
  if (o.tenant) sql += fmt::format(" AND tenant = ?{}", next++);
  sql += fmt::format(" ORDER BY position LIMIT ?{}", next);
  return sql;
}

int bind_read_all(sqlite3_stmt* stmt, const AllReadOptions& o) {
  Binder b(stmt);
  b.integer(std::max<int64_t>(clamp_to_int64(o.from.value), 1)).integer(o.from_time_us);
  for (const std::string& t : o.event_types) b.bytes(t);
  for (const std::string& t : o.stream_types) b.bytes(t);
  if (o.tenant) b.bytes(*o.tenant);
  return b.integer(sql_limit(o.max_count)).rc();
}

#undef EVENTSOURCE_SELECT_EVENTS

}  // namespace

struct SQLiteEventStore::Impl {
  Impl(std::string p, const SQLiteEventStoreOptions& o, std::unique_ptr<Connection> w)
      : path(std::move(p)),
        synchronous_full(o.synchronous_full),
        readers(path, o.busy_timeout_ms),
        writer(std::move(w)) {}

  const std::string path;
  const bool synchronous_full;
  ReadPool readers;
  // Serializes the appends of this handle (SQLite's write lock serializes
  // them across handles and processes). Held for one transaction, never
  // during a callback.
  std::mutex write_mu;
  std::unique_ptr<Connection> writer;  // guarded by write_mu; null once closed
};

Result<std::unique_ptr<SQLiteEventStore>> SQLiteEventStore::open(
    const std::string& path, const SQLiteEventStoreOptions& options) {
  return catch_all(path, "opening", [&]() -> Result<std::unique_ptr<SQLiteEventStore>> {
    // Each connection of ":memory:" (or "") is a database of its own: the
    // readers would not see the writer's events.
    if (path.empty() || path == ":memory:")
      return invalid_argument(
          fmt::format("'{}': an SQLite event store needs a file path (each "
                      "connection to an in-memory database sees its own); "
                      "use InMemoryEventStore for a store without a file",
                      path));
    EVENTSOURCE_ASSIGN_OR_RETURN(
        std::unique_ptr<Connection> writer,
        api_internal::open_database(path, api_internal::open_options(options), kTables,
                                    kErrorHints));
    // The readers open the name the writer's connection was given.
    const std::string file = writer->path();
    auto impl = std::make_unique<Impl>(file, options, std::move(writer));
    log_to(options.observability.log, LogLevel::kInfo, "sqlite event store opened",
           std::array<LogField, 1>{LogField{"path", path}});
    return std::unique_ptr<SQLiteEventStore>(
        new SQLiteEventStore(std::move(impl), options.observability));
  });
}

SQLiteEventStore::SQLiteEventStore(std::unique_ptr<Impl> impl, Observability obs)
    : EventStore(std::move(obs)), impl_(std::move(impl)) {}

SQLiteEventStore::~SQLiteEventStore() { close().ignore_error(); }

const std::string& SQLiteEventStore::path() const { return impl_->path; }

Status SQLiteEventStore::close() {
  // Readers first: a read that starts now gets kClosed. The writer's
  // connection closes last, so that it (the last one open, unless a read is
  // still running) checkpoints the WAL into the database file.
  impl_->readers.close();
  std::lock_guard lock(impl_->write_mu);
  if (!impl_->writer) return Status();
  Status s = impl_->writer->close();
  impl_->writer.reset();
  if (!s.ok())
    log_to(observability().log, LogLevel::kWarn, "sqlite event store close failed",
           std::array<LogField, 1>{LogField{"error", s.to_string()}});
  return s;
}

Result<AppendResult> SQLiteEventStore::do_append(const StreamId& stream, ExpectedVersion expected,
                                                 std::span<const NewEvent> events) {
  return catch_all(impl_->path, "appending", [&]() -> Result<AppendResult> {
    std::lock_guard lock(impl_->write_mu);
    if (!impl_->writer) return ReadPool::closed_error(impl_->path);
    Result<AppendResult> r = append_batch(*impl_->writer, stream, expected, events);
    if (r.ok() && !r->deduplicated && impl_->synchronous_full && observability().metrics)
      observability().metrics->count_sync();
    return r;
  });
}

Status SQLiteEventStore::do_read_stream(const StreamId& stream, const StreamReadOptions& options,
                                        const RecordCallback& fn) const {
  const std::string what = fmt::format("reading stream {}", stream.name());
  return catch_all(impl_->path, what, [&]() -> Status {
    EVENTSOURCE_ASSIGN_OR_RETURN(Lease lease, impl_->readers.lease());
    if (options.max_count == 0) return Status();
    const bool forward = options.direction == ReadDirection::kForward;
    EVENTSOURCE_ASSIGN_OR_RETURN(
        sqlite3_stmt* const stmt,
        lease->statement(forward ? kReadStreamForward : kReadStreamBackward));
    StatementUse use(stmt);
    const auto [lo, hi] = version_range(options);
    Binder b(stmt);
    b.bytes(stream.type)
        .bytes(stream.id)
        .integer(lo)
        .integer(hi)
        .integer(sql_limit(options.max_count));
    if (b.rc() != SQLITE_OK) return lease->error(b.rc(), what);
    return deliver(*lease, stmt, fn, what);
  });
}

Status SQLiteEventStore::do_read_all(const AllReadOptions& options,
                                     const RecordCallback& fn) const {
  const std::string what = fmt::format("reading all events from position {}", options.from.value);
  return catch_all(impl_->path, what, [&]() -> Status {
    EVENTSOURCE_ASSIGN_OR_RETURN(Lease lease, impl_->readers.lease());
    if (options.max_count == 0) return Status();
    EVENTSOURCE_ASSIGN_OR_RETURN(sqlite3_stmt* const stmt, lease->statement(read_all_sql(options)));
    StatementUse use(stmt);
    if (const int rc = bind_read_all(stmt, options); rc != SQLITE_OK) return lease->error(rc, what);
    return deliver(
        *lease, stmt,
        [&](const EventRecord& e) {
          // Invariant: the SQL applies exactly the filters matches() states.
          assert(matches(options, e));
          return fn(e);
        },
        what);
  });
}

Result<bool> SQLiteEventStore::do_event_exists(const Uuid& id) const {
  return catch_all(impl_->path, "looking up an event id", [&]() -> Result<bool> {
    EVENTSOURCE_ASSIGN_OR_RETURN(Lease lease, impl_->readers.lease());
    EVENTSOURCE_ASSIGN_OR_RETURN(const auto found, find_id(*lease, id));
    return found.has_value();
  });
}

Result<GlobalPosition> SQLiteEventStore::do_current_position() const {
  return catch_all(impl_->path, "reading the last position", [&]() -> Result<GlobalPosition> {
    EVENTSOURCE_ASSIGN_OR_RETURN(Lease lease, impl_->readers.lease());
    return query_last_position(*lease);
  });
}

Result<StreamVersion> SQLiteEventStore::do_stream_version(const StreamId& stream) const {
  return catch_all(impl_->path, "reading a stream's version", [&]() -> Result<StreamVersion> {
    EVENTSOURCE_ASSIGN_OR_RETURN(Lease lease, impl_->readers.lease());
    return query_stream_version(*lease, stream);
  });
}

}  // namespace eventsource
