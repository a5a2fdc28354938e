// Helpers shared by the api/ test files (conformance, the SQLite stores,
// the repository): one copy of each, so that the suites build events,
// append, read back and inspect SQLite databases the same way. Helpers that
// only one file needs stay in that file.
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstddef>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/sqlite_event_store.h"

namespace eventsource::testing {

// An event of type `type` with payload `payload` (everything else default).
inline NewEvent new_event(std::string type, std::string payload = "{}") {
  NewEvent e;
  e.type = std::move(type);
  e.payload = std::move(payload);
  return e;
}

// `e` with its id set to `id`.
inline NewEvent with_id(NewEvent e, const Uuid& id) {
  e.id = id;
  return e;
}

// Appends the one event `e` to `stream`.
inline Result<AppendResult> append_one(EventStore& s, const StreamId& stream,
                                       ExpectedVersion expected, NewEvent e) {
  return s.append_events(stream, expected, std::span<const NewEvent>(&e, 1));
}

// Every stored event that get_all(`o`) returns; aborts the test case if the
// read fails.
inline std::vector<StoredEvent> read_all_stored(const EventStore& s, const AllReadOptions& o = {}) {
  auto r = s.get_all(o);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// Opens the SQLiteEventStore at `path`, or aborts the test case with the
// Status printed.
inline std::unique_ptr<SQLiteEventStore> open_sqlite_events(
    const std::string& path, const SQLiteEventStoreOptions& options = {}) {
  auto r = SQLiteEventStore::open(path, options);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// Whether `s`'s message contains `text`.
inline bool mentions(const Status& s, std::string_view text) {
  return s.message().find(text) != std::string::npos;
}

// The whole content of the file at `path` (empty if it cannot be read).
inline std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A plain SQLite connection, to look at (or tamper with) the database.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    REQUIRE(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            nullptr) == SQLITE_OK);
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() { sqlite3_close_v2(db_); }

  // SQLite's result code of running `sql`.
  int try_exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }
  void exec(const std::string& sql) {
    REQUIRE_MESSAGE(try_exec(sql) == SQLITE_OK, sql, ": ", sqlite3_errmsg(db_));
  }
  // Column `column` of every row, as text.
  std::vector<std::string> rows(const std::string& sql, int column = 0) {
    sqlite3_stmt* stmt = nullptr;
    REQUIRE_MESSAGE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK, sql,
                    ": ", sqlite3_errmsg(db_));
    std::vector<std::string> out;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
      out.emplace_back(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
    }
    sqlite3_finalize(stmt);
    return out;
  }
  // The one row `sql` returns (its first column); aborts the test case
  // unless there is exactly one.
  std::string one(const std::string& sql) {
    auto r = rows(sql);
    REQUIRE_MESSAGE(r.size() == 1, sql);
    return r[0];
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace eventsource::testing
