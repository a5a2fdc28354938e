// SQLiteSnapshotStore: the SnapshotStore that keeps snapshots in an SQLite
// database (WAL mode), one row per (stream, version). It may share the
// database file of a SQLiteEventStore: each opens its own connection, and
// their tables do not clash. The table layout is described at the top of
// sqlite_snapshot_store.cc.
#pragma once

#include <memory>
#include <string>

#include "eventsource/snapshot_store.h"

namespace eventsource {

// (Every member has an initializer, so designated initializers may omit any.)
struct SQLiteSnapshotStoreOptions {
  // Where spans, counters and log lines go (all off by default).
  Observability observability = {};
  // PRAGMA synchronous. true (the default): FULL, every save and prune waits
  // for an fsync of the WAL, so it survives a power loss or an OS crash;
  // costs one fsync per call. false: NORMAL, the WAL is synced at
  // checkpoints only: faster, the database stays consistent and a process
  // crash loses nothing, but a power loss may roll back the latest saves (a
  // repository then replays a little more, or loads an older snapshot).
  bool synchronous_full = true;
  // Create the database file and the snapshot tables when the file is
  // missing or holds none of them (the default). false: open() returns
  // kNotFound instead, and creates nothing.
  bool create_if_missing = true;
  // How long a call waits for another connection or process (a
  // SQLiteEventStore on the same file, say) that holds the database's write
  // lock before giving up with kBusy (milliseconds, the default 5000; 0 or
  // less: fail at once).
  int busy_timeout_ms = 5000;
};

// Thread safety: safe for concurrent use, close() included. Every call goes
// through one connection, serialized by a mutex (each is one short SQL
// statement and calls no user code). Several handles and processes may
// open one database file: SQLite's locks serialize their writes.
class SQLiteSnapshotStore final : public SnapshotStore {
 public:
  // The layout of the snapshot tables this library writes and reads (the
  // eventsource_snapshot_meta table's 'layout' row). A database with a
  // newer one is refused with kNotSupported.
  static constexpr int kLayoutVersion = 1;

  // Opens (or creates, see options) the database file at `path`, a file
  // name (never read as an SQLite URI, even when it starts with "file:"),
  // which may also hold a SQLiteEventStore's tables. Errors: kNotFound
  // (missing, or no snapshot tables, and !create_if_missing), kCorruption
  // (not an SQLite database, or our tables damaged), kInvalidArgument (an
  // empty or in-memory path, or the database holds a `snapshots` table that
  // is not ours), kNotSupported (a newer layout, or a file system without
  // WAL support), kBusy, kIoError.
  static Result<std::unique_ptr<SQLiteSnapshotStore>> open(
      const std::string& path, const SQLiteSnapshotStoreOptions& options = {});

  ~SQLiteSnapshotStore() override;

  // Finalizes the statements and closes the connection; later calls return
  // kClosed. Idempotent (a second close() returns ok).
  Status close();

  // The database file.
  const std::string& path() const;

 private:
  // The connection and its lock (sqlite_snapshot_store.cc), so this header
  // needs no <sqlite3.h>.
  struct Impl;

  SQLiteSnapshotStore(std::unique_ptr<Impl> impl, Observability obs);

  Status do_save(const SnapshotRecord& snapshot) override;
  Result<std::optional<SnapshotRecord>> do_get(const StreamId& stream) const override;
  Result<uint64_t> do_prune(const StreamId& stream, StreamVersion keep_from) override;

  std::unique_ptr<Impl> impl_;
};

}  // namespace eventsource
