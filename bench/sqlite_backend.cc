// esbench yardstick backend: SQLite in WAL mode, one database file
// (events.db) with an events table keyed by global position, UNIQUE(stream,
// version) for stream reads and the expected-version check, and an index on
// (type, position) for typed reads. Calls are serialized on one connection.
#include <sqlite3.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "bench/backend.h"
#include "bench/payload.h"

namespace esbench {
namespace {

constexpr const char* kFileName = "events.db";

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS events("
    " position INTEGER PRIMARY KEY,"
    " stream TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " type TEXT NOT NULL,"
    " id BLOB NOT NULL,"
    " tenant TEXT,"
    " ts INTEGER NOT NULL,"
    " data BLOB NOT NULL,"
    " UNIQUE(stream, version));"
    "CREATE INDEX IF NOT EXISTS events_type ON events(type, position);";

constexpr const char* kColumns = "position, version, type, data, stream, tenant";

class SqliteBackend final : public Backend {
 public:
  ~SqliteBackend() override { close().ignore_error(); }

  std::string_view name() const override { return "sqlite"; }

  eventsource::Status open(const std::string& dir, bool read_only) override {
    std::lock_guard lock(mu_);
    const std::string path = dir + "/" + kFileName;
    const int flags =
        read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
      eventsource::Status status = error("open " + path);
      sqlite3_close(db_);
      db_ = nullptr;
      return status;
    }
    // A tuned yardstick: 64 MiB page cache and memory-mapped reads.
    std::string setup =
        "PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;";
    if (!read_only) setup += "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;";
    EVENTSOURCE_RETURN_IF_ERROR(exec(setup));
    synchronous_ = eventsource::Durability::kNone;
    if (!read_only) EVENTSOURCE_RETURN_IF_ERROR(exec(kSchema));
    if (!read_only && caller_event_ids())
      EVENTSOURCE_RETURN_IF_ERROR(
          exec("CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id);"));
    EVENTSOURCE_RETURN_IF_ERROR(prepare(&begin_, "BEGIN IMMEDIATE"));
    EVENTSOURCE_RETURN_IF_ERROR(prepare(&commit_, "COMMIT"));
    EVENTSOURCE_RETURN_IF_ERROR(prepare(&rollback_, "ROLLBACK"));
    EVENTSOURCE_RETURN_IF_ERROR(
        prepare(&max_version_, "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?1"));
    EVENTSOURCE_RETURN_IF_ERROR(
        prepare(&insert_,
                "INSERT INTO events(stream, version, type, id, tenant, ts, data)"
                " VALUES(?1, ?2, ?3, ?4, NULL, ?5, ?6)"));
    EVENTSOURCE_RETURN_IF_ERROR(prepare(
        &read_stream_,
        std::string("SELECT ") + kColumns + " FROM events WHERE stream = ?1 ORDER BY version"));
    EVENTSOURCE_RETURN_IF_ERROR(prepare(&read_all_, std::string("SELECT ") + kColumns +
                                                        " FROM events WHERE position >= ?1"
                                                        " ORDER BY position LIMIT ?2"));
    EVENTSOURCE_RETURN_IF_ERROR(
        prepare(&read_type_, std::string("SELECT ") + kColumns +
                                 " FROM events WHERE type = ?3 AND position >= ?1"
                                 " ORDER BY position LIMIT ?2"));
    EVENTSOURCE_RETURN_IF_ERROR(
        prepare(&last_position_, "SELECT COALESCE(MAX(position), 0) FROM events"));
    // Opening is lazy in SQLite: read the schema (and recover the WAL) now.
    EVENTSOURCE_RETURN_IF_ERROR(query_last_position().status());
    return eventsource::Status();
  }

  eventsource::Status close() override {
    std::lock_guard lock(mu_);
    if (db_ == nullptr) return eventsource::Status();
    for (sqlite3_stmt** stmt : {&begin_, &commit_, &rollback_, &max_version_, &insert_,
                                &read_stream_, &read_all_, &read_type_, &last_position_}) {
      sqlite3_finalize(*stmt);
      *stmt = nullptr;
    }
    eventsource::Status status;
    if (sqlite3_close(db_) != SQLITE_OK) status = error("close");
    db_ = nullptr;
    return status;
  }

  eventsource::Status append(const eventsource::StreamId& stream, uint64_t expected_version,
                             std::span<const BenchEvent> events,
                             eventsource::Durability durability) override {
    std::lock_guard lock(mu_);
    const bool durable = durability != eventsource::Durability::kNone;
    if (durable != (synchronous_ != eventsource::Durability::kNone)) {
      EVENTSOURCE_RETURN_IF_ERROR(
          exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF"));
      synchronous_ = durability;
    }
    const std::string name = stream.name();
    EVENTSOURCE_RETURN_IF_ERROR(step_done(begin_, "BEGIN"));
    eventsource::Status status = append_in_transaction(name, expected_version, events);
    if (!status.ok()) {
      step_done(rollback_, "ROLLBACK").ignore_error();
      return status;
    }
    return step_done(commit_, "COMMIT");
  }

  eventsource::Status read_stream(const eventsource::StreamId& stream, const ReadFn& fn) override {
    std::lock_guard lock(mu_);
    const std::string name = stream.name();
    sqlite3_bind_text(read_stream_, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
    return run_read(read_stream_, fn);
  }

  eventsource::Status read_all(uint64_t from, std::string_view type, uint64_t max_count,
                               const ReadFn& fn) override {
    std::lock_guard lock(mu_);
    sqlite3_stmt* stmt = type.empty() ? read_all_ : read_type_;
    sqlite3_bind_int64(stmt, 1, static_cast<sqlite3_int64>(from));
    sqlite3_bind_int64(stmt, 2, max_count > INT64_MAX ? -1 : static_cast<sqlite3_int64>(max_count));
    if (!type.empty()) {
      sqlite3_bind_text(stmt, 3, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
    }
    return run_read(stmt, fn);
  }

  eventsource::Result<uint64_t> last_position() override {
    std::lock_guard lock(mu_);
    return query_last_position();
  }

  eventsource::Result<uint64_t> stored_bytes() override {
    std::lock_guard lock(mu_);
    auto pages = query_pragma("page_count");
    if (!pages.ok()) return pages.take_status();
    auto page_size = query_pragma("page_size");
    if (!page_size.ok()) return page_size.take_status();
    return *pages * *page_size;
  }

 private:
  eventsource::Status error(const std::string& what) const {
    return eventsource::Status(
        eventsource::Code::kIoError,
        "sqlite " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
  }

  eventsource::Status exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      eventsource::Status status(
          eventsource::Code::kIoError,
          "sqlite exec '" + sql + "': " + (message ? message : "unknown error"));
      sqlite3_free(message);
      return status;
    }
    return eventsource::Status();
  }

  eventsource::Status prepare(sqlite3_stmt** stmt, const std::string& sql) {
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr) !=
        SQLITE_OK) {
      return error("prepare '" + sql + "'");
    }
    return eventsource::Status();
  }

  // Steps a statement that returns no rows, then resets it.
  eventsource::Status step_done(sqlite3_stmt* stmt, const char* what) {
    const int rc = sqlite3_step(stmt);
    eventsource::Status status = rc == SQLITE_DONE ? eventsource::Status() : error(what);
    sqlite3_reset(stmt);
    return status;
  }

  eventsource::Status append_in_transaction(const std::string& name, uint64_t expected_version,
                                            std::span<const BenchEvent> events) {
    sqlite3_bind_text(max_version_, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
    if (sqlite3_step(max_version_) != SQLITE_ROW) {
      eventsource::Status status = error("select max(version)");
      sqlite3_reset(max_version_);
      return status;
    }
    const uint64_t current = static_cast<uint64_t>(sqlite3_column_int64(max_version_, 0));
    sqlite3_reset(max_version_);
    if (current != expected_version) {
      return eventsource::conflict("stream " + name + " is at version " + std::to_string(current) +
                                       ", expected " + std::to_string(expected_version),
                                   static_cast<int64_t>(current));
    }
    const int64_t ts = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    uint64_t version = expected_version;
    for (const BenchEvent& event : events) {
      uint64_t id[2] = {id_rng_.next(), id_rng_.next()};
      sqlite3_bind_text(insert_, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
      sqlite3_bind_int64(insert_, 2, static_cast<sqlite3_int64>(++version));
      sqlite3_bind_text(insert_, 3, event.type.data(), static_cast<int>(event.type.size()),
                        SQLITE_STATIC);
      sqlite3_bind_blob(insert_, 4, id, sizeof id, SQLITE_STATIC);
      sqlite3_bind_int64(insert_, 5, ts);
      sqlite3_bind_blob(insert_, 6, event.payload.data(), static_cast<int>(event.payload.size()),
                        SQLITE_STATIC);
      EVENTSOURCE_RETURN_IF_ERROR(step_done(insert_, "INSERT"));
    }
    return eventsource::Status();
  }

  eventsource::Status run_read(sqlite3_stmt* stmt, const ReadFn& fn) {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      ReadEvent event;
      event.position = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
      event.version = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
      event.type = std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2)),
                                    static_cast<size_t>(sqlite3_column_bytes(stmt, 2)));
      const void* data = sqlite3_column_blob(stmt, 3);
      event.payload = std::string_view(static_cast<const char*>(data),
                                       static_cast<size_t>(sqlite3_column_bytes(stmt, 3)));
      sqlite3_column_text(stmt, 4);
      sqlite3_column_text(stmt, 5);
      event.record_bytes = event.payload.size() + event.type.size() +
                           static_cast<uint64_t>(sqlite3_column_bytes(stmt, 4)) +
                           static_cast<uint64_t>(sqlite3_column_bytes(stmt, 5)) + kFixedRecordBytes;
      if (!fn(event)) {
        rc = SQLITE_DONE;
        break;
      }
    }
    eventsource::Status status = rc == SQLITE_DONE ? eventsource::Status() : error("read");
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return status;
  }

  // The integer value of `PRAGMA name`.
  eventsource::Result<uint64_t> query_pragma(const std::string& name) {
    sqlite3_stmt* stmt = nullptr;
    EVENTSOURCE_RETURN_IF_ERROR(prepare(&stmt, "PRAGMA " + name));
    const bool row = sqlite3_step(stmt) == SQLITE_ROW;
    const uint64_t value = row ? static_cast<uint64_t>(sqlite3_column_int64(stmt, 0)) : 0;
    eventsource::Status status = row ? eventsource::Status() : error("PRAGMA " + name);
    sqlite3_finalize(stmt);
    if (!status.ok()) return status;
    return value;
  }

  eventsource::Result<uint64_t> query_last_position() {
    if (sqlite3_step(last_position_) != SQLITE_ROW) {
      eventsource::Status status = error("select max(position)");
      sqlite3_reset(last_position_);
      return status;
    }
    const uint64_t last = static_cast<uint64_t>(sqlite3_column_int64(last_position_, 0));
    sqlite3_reset(last_position_);
    return last;
  }

  std::mutex mu_;
  sqlite3* db_ = nullptr;
  eventsource::Durability synchronous_ = eventsource::Durability::kNone;
  Rng id_rng_{0x5eed};
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
  sqlite3_stmt* max_version_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* read_stream_ = nullptr;
  sqlite3_stmt* read_all_ = nullptr;
  sqlite3_stmt* read_type_ = nullptr;
  sqlite3_stmt* last_position_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_sqlite_backend() { return std::make_unique<SqliteBackend>(); }

}  // namespace esbench
