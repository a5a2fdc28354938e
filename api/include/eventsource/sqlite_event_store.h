// SQLiteEventStore: the EventStore backend that keeps events in an SQLite
// database, one row per event with the whole envelope (WAL mode). For apps
// that already ship SQLite or want to query their events with SQL; the file
// engine (engine_event_store.h) appends and reads faster. The table layout
// is described at the top of sqlite_event_store.cc.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "eventsource/event_store.h"

namespace eventsource {

// (Every member has an initializer, so designated initializers may omit any.)
struct SQLiteEventStoreOptions {
  // Where spans, counters and log lines go (all off by default).
  Observability observability = {};
  // PRAGMA synchronous. true (the default): FULL, every append waits for an
  // fsync of the WAL, so an acknowledged append survives a power loss or an
  // OS crash; costs one fsync per append (a millisecond or more on a disk).
  // false: NORMAL, the WAL is synced at checkpoints only: appends are several
  // times faster and the database stays consistent, and a process crash
  // loses nothing, but a power loss or OS crash may roll back the appends
  // acknowledged since the last checkpoint.
  bool synchronous_full = true;
  // Create the database file and its tables when the file is missing or
  // holds no tables of ours (the default). false: open() returns kNotFound
  // instead, and creates nothing.
  bool create_if_missing = true;
  // How long a call waits for another connection or process that holds the
  // database's write lock before giving up with kBusy (milliseconds, the
  // default 5000; 0 or less: fail at once). Appends hold the lock for one
  // short transaction.
  int busy_timeout_ms = 5000;
};

// Thread safety: safe for concurrent use, close() included. Appends go
// through one connection, serialized by a mutex; reads take a connection of
// their own from a small pool and call their callback with no lock held, so
// a callback may read from or append to the store. Each read is one SQL
// statement on one connection, so it sees the events committed when it
// started and none appended while its callback runs. Several handles and
// processes may open one database file: SQLite's locks serialize their
// appends, and each sees the others' committed events.
class SQLiteEventStore final : public EventStore {
 public:
  // The layout of our tables this library writes and reads (the
  // eventsource_meta table's 'layout' row). A database with a newer layout
  // is refused with kNotSupported.
  static constexpr int kLayoutVersion = 1;

  // Opens (or creates, see options) the database file at `path`, a file
  // name (never read as an SQLite URI, even when it starts with "file:").
  // Errors: kNotFound (missing and !create_if_missing), kCorruption (not an
  // SQLite database, or our tables damaged), kInvalidArgument (an empty or
  // in-memory path, or the database holds an `events` table that is not
  // ours), kNotSupported (a newer layout, or a file system without WAL
  // support), kBusy, kIoError.
  static Result<std::unique_ptr<SQLiteEventStore>> open(
      const std::string& path, const SQLiteEventStoreOptions& options = {});

  ~SQLiteEventStore() override;

  std::string_view backend() const override { return "sqlite"; }
  // Finalizes the statements and closes the connections. A read running in
  // another thread (or in the callback that called close) finishes on its
  // own connection, which is closed when it ends. Idempotent.
  Status close() override;

  // The database file.
  const std::string& path() const;

 protected:
  Result<AppendResult> do_append(const StreamId& stream, ExpectedVersion expected,
                                 std::span<const NewEvent> events) override;
  Status do_read_stream(const StreamId& stream, const StreamReadOptions& options,
                        const RecordCallback& fn) const override;
  Status do_read_all(const AllReadOptions& options, const RecordCallback& fn) const override;
  Result<bool> do_event_exists(const Uuid& id) const override;
  Result<GlobalPosition> do_current_position() const override;
  Result<StreamVersion> do_stream_version(const StreamId& stream) const override;

 private:
  // The connections and their locks (sqlite_event_store.cc), so this header
  // needs no <sqlite3.h>.
  struct Impl;

  SQLiteEventStore(std::unique_ptr<Impl> impl, Observability obs);

  std::unique_ptr<Impl> impl_;
};

}  // namespace eventsource
