// SQLiteReadModel (read_model.h): a projection whose read model is tables in
// an SQLite file, with its checkpoint a row committed with them. One write
// connection runs the batches (BEGIN IMMEDIATE .. COMMIT, a SAVEPOINT per
// event); a small pool of query_only connections serves query() (WAL).
// InMemoryKeyValueReadModel is a template, all in the header.
//
// Layout 1 (kSchema): eventsource_read_models holds one row per (name,
// version) whose schema has run: position is its checkpoint.
// eventsource_read_model_objects lists what each schema created, so reset()
// and drop() remove exactly that. eventsource_read_model_meta's 'layout' row
// says which layout the tables follow (a table of its own, as the snapshot
// store's: no other store's tables share a name with these).
#include "eventsource/read_model.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <exception>
#include <set>

#include "clock.h"
#include "sqlite_connection.h"

namespace eventsource {

using api_internal::catch_all;
using api_internal::Connection;
using api_internal::StatementUse;
using api_internal::WriteTransaction;

namespace read_model_detail {

// The prepared statements of the SQL that handlers, schemas, queries and
// the bookkeeping run on one connection, by SQL text. Kept apart from the
// Connection's own cache, which holds the transaction statements this file
// runs (BEGIN IMMEDIATE, COMMIT, ...): the authorizer refuses transaction
// statements in user SQL as it is prepared, and a hit in a shared cache
// would skip that check.
class StatementCache {
 public:
  StatementCache() = default;
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;
  ~StatementCache() { clear(); }

  // nullptr when `sql` is not prepared here.
  sqlite3_stmt* find(std::string_view sql) const {
    auto it = statements_.find(sql);
    return it == statements_.end() ? nullptr : it->second;
  }
  // Keeps `stmt` (now the cache's) for `sql`; a full cache starts over.
  // REQUIRES: no statement of the cache is in use.
  void add(std::string_view sql, sqlite3_stmt* stmt) {
    if (statements_.size() >= kMaxStatements) clear();
    statements_.emplace(std::string(sql), stmt);
  }
  // Finalizes every statement (before the connection closes).
  void clear() {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    statements_.clear();
  }

 private:
  // Only programs building SQL texts (values formatted into them) reach it.
  static constexpr size_t kMaxStatements = 64;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
};

// A connection in use by one call: the write connection (a batch, the
// schema, the bookkeeping) or a read connection (one query), with what its
// error messages name.
struct Session {
  Connection* conn = nullptr;
  StatementCache* cache = nullptr;
  const std::string* path = nullptr;   // the database file
  const std::string* label = nullptr;  // "read model customer-totals v1"
  uint32_t version = 1;
  bool reader = false;  // a query_only read connection
  // Running the user's SQL (a handler, the schema): the authorizer refuses
  // transaction statements.
  bool user = false;
  // A transaction must stay open around each statement (a handler's, the
  // schema's, the checkpoint's): a statement run without one would commit
  // on its own.
  bool in_transaction = false;
  // The transaction ended under a handler (SQLite rolls back by itself
  // after some errors: a full disk, an I/O error): the batch is lost.
  bool lost = false;
  // Queries running on this connection: the statements their row callbacks
  // run are prepared for one use (the cache may start over; the same SQL
  // may be the running query's).
  int depth = 0;
  const EventRecord* event = nullptr;  // the event being handled, for messages
  uint64_t changes = 0;                // rows changed by the last statement
};

struct Access {
  static SQLiteRow row(sqlite3_stmt* stmt) { return SQLiteRow(stmt); }
  static SQLiteTx tx(Session* session) { return SQLiteTx(session); }
};

}  // namespace read_model_detail

namespace {

using read_model_detail::Access;
using read_model_detail::Session;
using read_model_detail::StatementCache;

static_assert(SQLiteReadModel::kLayoutVersion == 1, "kSchema writes layout 1");

// Creates whatever is missing of layout 1 (run under the write lock).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS eventsource_read_model_meta(
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventsource_read_models(
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  position INTEGER NOT NULL,
  created_us INTEGER NOT NULL,
  updated_us INTEGER NOT NULL,
  PRIMARY KEY(name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventsource_read_model_objects(
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  type TEXT NOT NULL,
  object TEXT NOT NULL,
  PRIMARY KEY(name, version, object)
) WITHOUT ROWID;
INSERT OR IGNORE INTO eventsource_read_model_meta(name, value) VALUES('layout', 1);
)sql";

constexpr std::array<std::string_view, 5> kModelColumns = {"name", "version", "position",
                                                           "created_us", "updated_us"};

constexpr api_internal::StoreTables kTables = {
    .store = "read model database",
    .table = SQLiteReadModel::kModelsTable,
    .meta_table = "eventsource_read_model_meta",
    .columns = kModelColumns,
    .indexes = {},
    .layout_version = SQLiteReadModel::kLayoutVersion,
    .create_sql = kSchema,
    .reading_layout = "reading the read model layout version",
    .creating = "creating the read model bookkeeping tables",
};

constexpr api_internal::SqliteErrorHints kErrorHints = {
    .options = "SQLiteReadModelOptions",
    .large_value = "value",
};

constexpr const char* kSelectPosition =
    "SELECT position FROM eventsource_read_models WHERE name = ?1 AND version = ?2";
constexpr const char* kInsertModel =
    "INSERT INTO eventsource_read_models(name, version, position, created_us, updated_us) "
    "VALUES(?1, ?2, 0, ?3, ?3)";
constexpr const char* kSetPosition =
    "UPDATE eventsource_read_models SET position = ?3, updated_us = ?4 "
    "WHERE name = ?1 AND version = ?2";
constexpr const char* kDeleteModel =
    "DELETE FROM eventsource_read_models WHERE name = ?1 AND version = ?2";
constexpr const char* kInsertObject =
    "INSERT INTO eventsource_read_model_objects(name, version, type, object) "
    "VALUES(?1, ?2, ?3, ?4)";
constexpr const char* kSelectObjects =
    "SELECT type, object FROM eventsource_read_model_objects WHERE name = ?1 AND version = ?2";
constexpr const char* kDeleteObjects =
    "DELETE FROM eventsource_read_model_objects WHERE name = ?1 AND version = ?2";
// Every object of the main schema but SQLite's own (sqlite_autoindex_*,
// sqlite_sequence, ...).
constexpr const char* kSchemaObjects =
    "SELECT type, name FROM sqlite_master WHERE substr(name, 1, 7) <> 'sqlite_'";

constexpr std::string_view kSavepoint = "SAVEPOINT eventsource_event";
constexpr std::string_view kRelease = "RELEASE eventsource_event";
constexpr std::string_view kRollbackTo = "ROLLBACK TO eventsource_event";

// The start of `sql` on one line, for messages.
std::string excerpt(std::string_view sql) {
  std::string out;
  bool space = false;
  for (char c : sql) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
    if (out.size() >= 80) {
      out += "...";
      break;
    }
  }
  return out;
}

// "read model x v1: event 42 (Deposited): running 'INSERT ...'".
std::string context(const Session& s, std::string_view action, std::string_view sql) {
  std::string out = *s.label;
  if (s.event != nullptr)
    out += fmt::format(": event {} ({})", s.event->position.value, s.event->type);
  out += fmt::format(": {} '{}'", action, excerpt(sql));
  return out;
}

// Failures caused by the SQL or its values rather than the database: bad
// SQL, a missing table, a constraint, a type mismatch, a parameter index.
bool sql_fault(int rc) {
  switch (rc & 0xff) {
    case SQLITE_ERROR:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return true;
    default:
      return false;
  }
}

// Connection::error, with the SQL's own faults as kInvalidArgument.
Status sql_error(const Session& s, int rc, std::string_view action, std::string_view sql) {
  Status st = s.conn->error(rc, context(s, action, sql));
  if (sql_fault(rc)) return invalid_argument(st.message());
  return st;
}

Status lost_transaction(const Session& s, std::string_view sql) {
  return io_error(fmt::format("{}: {}: the batch's transaction has ended (SQLite rolls back by "
                              "itself after some errors: a full disk, an I/O error); the batch "
                              "is rolled back and handled again",
                              *s.path, context(s, "before", sql)),
                  0);
}

// Whether `rest`, what follows the first statement of some SQL, holds no
// other: only blanks, comments and semicolons.
bool only_noise(std::string_view rest) {
  size_t i = 0;
  while (i < rest.size()) {
    const char c = rest[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      ++i;
    } else if (rest.substr(i, 2) == "--") {
      const size_t end = rest.find('\n', i);
      i = end == std::string_view::npos ? rest.size() : end + 1;
    } else if (rest.substr(i, 2) == "/*") {
      const size_t end = rest.find("*/", i + 2);
      i = end == std::string_view::npos ? rest.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

Status bind_params(const Session& s, sqlite3_stmt* stmt, std::span<const SQLiteValue> params,
                   std::string_view sql) {
  const int want = sqlite3_bind_parameter_count(stmt);
  if (want != static_cast<int>(params.size()))
    return invalid_argument(fmt::format("{}: {}: the SQL takes {} parameter{}, {} given", *s.path,
                                        context(s, "binding", sql), want, want == 1 ? "" : "s",
                                        params.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const SQLiteValue& v = params[i];
    const int n = static_cast<int>(i) + 1;
    int rc = SQLITE_OK;
    switch (v.kind()) {
      case SQLiteValue::Kind::kNull:
        rc = sqlite3_bind_null(stmt, n);
        break;
      case SQLiteValue::Kind::kInteger:
        rc = sqlite3_bind_int64(stmt, n, v.integer());
        break;
      case SQLiteValue::Kind::kReal:
        rc = sqlite3_bind_double(stmt, n, v.real());
        break;
      case SQLiteValue::Kind::kText:
        // An empty view may have no data pointer, which SQLite would bind
        // as NULL: bind the empty text instead.
        rc = sqlite3_bind_text64(stmt, n, v.bytes().empty() ? "" : v.bytes().data(),
                                 v.bytes().size(), SQLITE_STATIC, SQLITE_UTF8);
        break;
      case SQLiteValue::Kind::kBlob:
        rc = v.bytes().empty()
                 ? sqlite3_bind_zeroblob(stmt, n, 0)
                 : sqlite3_bind_blob64(stmt, n, v.bytes().data(), v.bytes().size(), SQLITE_STATIC);
        break;
      case SQLiteValue::Kind::kOutOfRange:
        return invalid_argument(fmt::format(
            "{}: {}: parameter ?{} is an unsigned integer past 2^63-1, which SQLite cannot "
            "store (store it as text, or as a BLOB)",
            *s.path, context(s, "binding", sql), n));
    }
    if (rc != SQLITE_OK) return sql_error(s, rc, "binding the parameters of", sql);
  }
  return Status();
}

// A statement prepared for one use, apart from the cache.
struct OneOff {
  sqlite3_stmt* stmt = nullptr;
  OneOff() = default;
  OneOff(const OneOff&) = delete;
  OneOff& operator=(const OneOff&) = delete;
  ~OneOff() { sqlite3_finalize(stmt); }
};

struct DepthGuard {
  explicit DepthGuard(Session& session) : s(session) { ++s.depth; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;
  ~DepthGuard() { --s.depth; }
  Session& s;
};

// The write connection running the user's code (a handler, the schema) for
// its scope: inside the transaction, transaction statements refused.
struct UserCode {
  UserCode(Session& session, const EventRecord* event) : s(session) {
    s.in_transaction = true;
    s.user = true;
    s.event = event;
  }
  UserCode(const UserCode&) = delete;
  UserCode& operator=(const UserCode&) = delete;
  ~UserCode() {
    s.in_transaction = false;
    s.user = false;
    s.event = nullptr;
    s.depth = 0;
  }
  Session& s;
};

// SQLite's authorizer on every connection of a model: transaction
// statements are the model's, never the user's SQL. `session` is the write
// connection's Session (refused while it runs user SQL), or null for a read
// connection (always refused: a query left in a transaction would pin the
// pooled connection to an old snapshot).
int authorize(void* session, int action, const char*, const char*, const char*, const char*) {
  if (action != SQLITE_TRANSACTION && action != SQLITE_SAVEPOINT) return SQLITE_OK;
  const auto* s = static_cast<const Session*>(session);
  return s == nullptr || s->user ? SQLITE_DENY : SQLITE_OK;
}

Status prepare_error(const Session& s, int rc, std::string_view sql) {
  if ((rc & 0xff) == SQLITE_AUTH)
    return invalid_argument(fmt::format(
        "{}: {}: transaction statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) are not "
        "allowed here: {}",
        *s.path, context(s, "preparing", sql),
        s.reader ? "each query() runs in a read transaction of its own"
                 : "the model runs each batch in one transaction, with its checkpoint"));
  return sql_error(s, rc, "preparing", sql);
}

// Runs one statement of `sql` with `params`, calling `fn` (when given) for
// each row it returns. The one path every statement of this file takes but
// the transaction statements (Connection::run).
Status run(Session& s, std::string_view sql, std::span<const SQLiteValue> params,
           const SQLiteRowFn* fn) {
  sqlite3* db = s.conn->db();
  if (s.in_transaction && sqlite3_get_autocommit(db) != 0) {
    s.lost = true;
    return lost_transaction(s, sql);
  }
  OneOff own;  // declared before `use`: reset first, then finalized
  sqlite3_stmt* stmt = s.depth == 0 ? s.cache->find(sql) : nullptr;
  if (stmt == nullptr) {
    const char* tail = nullptr;
    const int rc =
        sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                           s.depth == 0 ? SQLITE_PREPARE_PERSISTENT : 0, &own.stmt, &tail);
    if (rc != SQLITE_OK) return prepare_error(s, rc, sql);
    if (own.stmt == nullptr)
      return invalid_argument(
          fmt::format("{}: {}: no SQL statement in it", *s.path, context(s, "preparing", sql)));
    // SQLite prepares the first statement only and would drop the rest.
    const size_t used = tail == nullptr ? sql.size() : static_cast<size_t>(tail - sql.data());
    if (!only_noise(sql.substr(std::min(used, sql.size()))))
      return invalid_argument(
          fmt::format("{}: {}: it holds more than one statement; run them one by one (or, without "
                      "parameters, with SQLiteTx::exec_script)",
                      *s.path, context(s, "preparing", sql)));
    if (s.reader && sqlite3_stmt_readonly(own.stmt) == 0)
      return invalid_argument(fmt::format(
          "{}: {}: query() runs on read-only connections; write in the model's handlers "
          "(SQLiteTx::exec)",
          *s.path, context(s, "preparing", sql)));
    stmt = own.stmt;
    if (s.depth == 0) s.cache->add(sql, std::exchange(own.stmt, nullptr));
  }
  StatementUse use(stmt);
  EVENTSOURCE_RETURN_IF_ERROR(bind_params(s, stmt, params, sql));
  while (true) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      if (s.in_transaction && sqlite3_get_autocommit(db) != 0) s.lost = true;
      return sql_error(s, rc, "running", sql);
    }
    if (fn == nullptr) continue;
    DepthGuard nested(s);
    if (!(*fn)(Access::row(stmt))) break;
  }
  s.changes = static_cast<uint64_t>(sqlite3_changes64(db));
  if (s.in_transaction && sqlite3_get_autocommit(db) != 0) {
    s.lost = true;
    return lost_transaction(s, sql);
  }
  return Status();
}

// A row callback that keeps the first column of each row as text and the
// second as text too (the bookkeeping's (type, name) pairs).
using Objects = std::set<std::pair<std::string, std::string>>;

Status read_pairs(Session& s, std::string_view sql, std::span<const SQLiteValue> params,
                  Objects& out) {
  auto each = [&out](const SQLiteRow& row) {
    out.emplace(std::string(row.text(0)), std::string(row.text(1)));
    return true;
  };
  const SQLiteRowFn fn(each);
  return run(s, sql, params, &fn);
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  s = s.substr(s.size() - suffix.size());
  for (size_t i = 0; i < s.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(suffix[i])))
      return false;
  return true;
}

// "name" quoted as an SQL identifier.
std::string quoted(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  out += '"';
  return out;
}

Status closed_error(const std::string& label) {
  return closed(fmt::format("{}: closed (or never opened); open() it first", label));
}

}  // namespace

// ----------------------------------------------------------------- SQLiteRow --

int SQLiteRow::size() const { return sqlite3_column_count(stmt_); }

bool SQLiteRow::is_null(int column) const {
  assert(column >= 0 && column < size() && "SQLiteRow: no such column");
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

int64_t SQLiteRow::integer(int column) const {
  assert(column >= 0 && column < size() && "SQLiteRow: no such column");
  return sqlite3_column_int64(stmt_, column);
}

double SQLiteRow::real(int column) const {
  assert(column >= 0 && column < size() && "SQLiteRow: no such column");
  return sqlite3_column_double(stmt_, column);
}

std::string_view SQLiteRow::text(int column) const {
  assert(column >= 0 && column < size() && "SQLiteRow: no such column");
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return std::string_view(reinterpret_cast<const char*>(text),
                          static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::string_view SQLiteRow::blob(int column) const {
  assert(column >= 0 && column < size() && "SQLiteRow: no such column");
  return api_internal::column_bytes(stmt_, column);
}

std::string_view SQLiteRow::name(int column) const {
  assert(column >= 0 && column < size() && "SQLiteRow: no such column");
  const char* name = sqlite3_column_name(stmt_, column);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

// ------------------------------------------------------------------ SQLiteTx --

Status SQLiteTx::exec_values(std::string_view sql, std::span<const SQLiteValue> params) {
  return run(*session_, sql, params, nullptr);
}

Status SQLiteTx::query_values(std::string_view sql, std::span<const SQLiteValue> params,
                              SQLiteRowFn fn) {
  return run(*session_, sql, params, &fn);
}

Status SQLiteTx::exec_script(std::string_view sql) {
  Session& s = *session_;
  sqlite3* db = s.conn->db();
  if (s.in_transaction && sqlite3_get_autocommit(db) != 0) {
    s.lost = true;
    return lost_transaction(s, sql);
  }
  const std::string text(sql);  // sqlite3_exec wants it NUL-terminated
  Status st = s.conn->exec_script(text.c_str(), context(s, "running", sql));
  if (!st.ok()) {
    const int rc = sqlite3_extended_errcode(db);
    if ((rc & 0xff) == SQLITE_AUTH) {
      st = prepare_error(s, rc, sql);
    } else if (sql_fault(rc)) {
      st = invalid_argument(st.message());
    }
  }
  if (s.in_transaction && sqlite3_get_autocommit(db) != 0) {
    s.lost = true;
    if (st.ok()) return lost_transaction(s, sql);
  }
  return st;
}

uint64_t SQLiteTx::changes() const { return session_->changes; }

uint32_t SQLiteTx::version() const { return session_->version; }

std::string SQLiteTx::table(std::string_view base) const {
  return fmt::format("{}_v{}", base, session_->version);
}

// ----------------------------------------------------------- SQLiteReadModel --

struct SQLiteReadModel::Impl {
  Impl(std::string n, uint32_t v, Schema s)
      : name(std::move(n)),
        version(v),
        schema(std::move(s)),
        label(fmt::format("read model {} v{}", name, version)) {}

  // The model's name and version as the bookkeeping rows' key.
  std::array<SQLiteValue, 2> key() const { return {SQLiteValue(name), SQLiteValue(version)}; }

  const std::string name;
  const uint32_t version;
  const Schema schema;
  const std::string label;
  // Set up before the subscription starts (on), read by its thread.
  std::map<std::string, Handler, std::less<>> handlers;
  std::vector<std::string> unregistered;  // on<E> with E not registered (check() says so)

  // The write side: the batch, the schema, the bookkeeping.
  mutable std::mutex write_mu;
  std::unique_ptr<Connection> writer;  // guarded by write_mu; null when closed
  StatementCache writer_cache;         // guarded by write_mu; cleared before writer closes
  std::string path;                    // guarded by write_mu; the file as given to open()
  std::string file;                    // guarded by write_mu; the name SQLite opened
  bool in_batch = false;               // guarded by write_mu
  Session session;                     // guarded by write_mu: the writer's

  // A read connection, query_only, with its statements.
  struct Reader {
    std::unique_ptr<Connection> conn;
    StatementCache cache;  // destroyed first: finalized before conn closes
  };

  // The read side: idle read connections.
  mutable std::mutex read_mu;
  bool open = false;                                  // guarded by read_mu
  uint64_t generation = 0;                            // guarded by read_mu; open, close bump it
  std::string read_file;                              // guarded by read_mu
  SQLiteReadModelOptions options;                     // guarded by read_mu
  mutable std::vector<std::unique_ptr<Reader>> idle;  // guarded by read_mu

  // A read connection lent to one query, given back (or closed) after it.
  struct Lease {
    explicit Lease(const Impl* i) : impl(i) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { impl->give_back(std::move(reader), generation); }

    const Impl* impl;
    std::unique_ptr<Reader> reader;
    uint64_t generation = 0;
    std::string file;
  };

  Result<std::unique_ptr<Lease>> take_reader() const {
    auto lease = std::make_unique<Lease>(this);
    int busy_timeout_ms = 0;
    {
      std::lock_guard lock(read_mu);
      if (!open) return closed_error(label);
      lease->generation = generation;
      lease->file = read_file;
      busy_timeout_ms = options.busy_timeout_ms;
      if (!idle.empty()) {
        lease->reader = std::move(idle.back());
        idle.pop_back();
        return lease;
      }
    }
    auto reader = std::make_unique<Reader>();
    EVENTSOURCE_ASSIGN_OR_RETURN(reader->conn, Connection::open(lease->file, SQLITE_OPEN_READWRITE,
                                                                busy_timeout_ms, kErrorHints));
    EVENTSOURCE_RETURN_IF_ERROR(
        reader->conn->exec_script("PRAGMA query_only=1", "making a read connection read-only"));
    sqlite3_set_authorizer(reader->conn->db(), authorize, nullptr);
    lease->reader = std::move(reader);
    return lease;
  }

  void give_back(std::unique_ptr<Reader> reader, uint64_t of_generation) const {
    if (!reader) return;
    {
      std::lock_guard lock(read_mu);
      if (open && of_generation == generation && idle.size() < options.idle_readers) {
        idle.push_back(std::move(reader));
        return;
      }
    }
    // Beyond the pool, or the model closed: destroyed here, outside the lock.
  }

  // Finalizes the writer's statements and closes it.
  Status close_writer_locked() {
    writer_cache.clear();
    Status s = writer->close();
    writer.reset();
    session.conn = nullptr;
    return s;
  }

  // What the main schema holds, but SQLite's own objects.
  Result<Objects> schema_objects() {
    Objects out;
    EVENTSOURCE_RETURN_IF_ERROR(read_pairs(session, kSchemaObjects, {}, out));
    return out;
  }

  Result<bool> has_row() {
    bool found = false;
    auto each = [&found](const SQLiteRow&) {
      found = true;
      return false;
    };
    const SQLiteRowFn fn(each);
    const auto k = key();
    EVENTSOURCE_RETURN_IF_ERROR(run(session, kSelectPosition, k, &fn));
    return found;
  }

  // Runs the schema and records what it created, with the model's row at
  // position 0. REQUIRES: inside a write transaction, no row for the model.
  Status create_locked() {
    EVENTSOURCE_ASSIGN_OR_RETURN(const Objects before, schema_objects());
    Status s;
    session.lost = false;
    {
      UserCode user(session, nullptr);
      try {
        SQLiteTx tx = Access::tx(&session);
        s = schema(tx);
      } catch (const std::exception& e) {
        s = invalid_argument(fmt::format("the schema threw: {}", e.what()));
      } catch (...) {
        s = invalid_argument("the schema threw a non-exception");
      }
    }
    // A failed statement's message names the file and the model already.
    if (!s.ok() && s.message().starts_with(path)) return s;
    if (!s.ok())
      return Status(s.code(),
                    fmt::format("{}: {}: creating its tables: {}", path, label, s.message()));
    if (session.lost || sqlite3_get_autocommit(writer->db()) != 0)
      return lost_transaction(session, "the end of the schema");
    EVENTSOURCE_ASSIGN_OR_RETURN(const Objects after, schema_objects());
    for (const auto& [type, object] : before)
      if (!after.count({type, object}))
        return invalid_argument(fmt::format(
            "{}: {}: the schema dropped {} '{}', which it did not create; a schema may only "
            "create its own objects",
            path, label, type, object));
    const std::string suffix = fmt::format("_v{}", version);
    int tables = 0;
    const auto k = key();
    for (const auto& [type, object] : after) {
      if (before.count({type, object})) continue;
      if (!ends_with_ci(object, suffix))
        return invalid_argument(fmt::format(
            "{}: {}: the schema created {} '{}', whose name does not end in '{}'; name every "
            "object of version {} with that suffix (SQLiteTx::table(\"{}\") gives '{}{}') so "
            "that versions sharing the file never collide",
            path, label, type, object, suffix, version, object, object, suffix));
      if (type == "table") ++tables;
      const std::array<SQLiteValue, 4> row = {k[0], k[1], SQLiteValue(type), SQLiteValue(object)};
      EVENTSOURCE_RETURN_IF_ERROR(run(session, kInsertObject, row, nullptr));
    }
    if (tables == 0)
      return invalid_argument(fmt::format(
          "{}: {}: the schema created no table (a CREATE TABLE IF NOT EXISTS of a table that "
          "is already there creates none: it belongs to another model or version); create the "
          "model's tables, named with the suffix '{}'",
          path, label, suffix));
    const std::array<SQLiteValue, 3> row = {k[0], k[1], SQLiteValue(api_internal::now_us())};
    return run(session, kInsertModel, row, nullptr);
  }

  // Drops what the schema created and the model's rows. REQUIRES: inside a
  // write transaction.
  Status drop_locked() {
    Objects objects;
    const auto k = key();
    EVENTSOURCE_RETURN_IF_ERROR(read_pairs(session, kSelectObjects, k, objects));
    for (const auto& [type, object] : objects)
      if (type != "trigger" && type != "view" && type != "index" && type != "table")
        return corruption(fmt::format("{}: {}: {} lists '{}' of type '{}', which is no SQLite "
                                      "object type; the table was changed outside eventsource",
                                      path, label, SQLiteReadModel::kObjectsTable, object, type),
                          -1, -1);
    // Triggers and views first (they may name the tables), then indexes,
    // then tables; IF EXISTS: dropping a table took its indexes and triggers.
    for (std::string_view type : {"trigger", "view", "index", "table"}) {
      for (const auto& [t, object] : objects) {
        if (t != type) continue;
        const std::string sql = fmt::format("DROP {} IF EXISTS {}", type, quoted(object));
        EVENTSOURCE_RETURN_IF_ERROR(writer->exec_script(
            sql.c_str(), fmt::format("{}: dropping {} '{}'", label, type, object)));
      }
    }
    EVENTSOURCE_RETURN_IF_ERROR(run(session, kDeleteObjects, k, nullptr));
    return run(session, kDeleteModel, k, nullptr);
  }

  // Rolls back whatever transaction the write connection has open.
  void rollback_locked() {
    if (sqlite3_get_autocommit(writer->db()) == 0)
      writer->run("ROLLBACK", "rolling back").ignore_error();
    in_batch = false;
    session.lost = false;
  }

  Status check_writer_locked() const {
    if (!writer) return closed_error(label);
    return Status();
  }
};

SQLiteReadModel::SQLiteReadModel(std::string name, uint32_t version, Schema schema)
    : impl_(std::make_unique<Impl>(std::move(name), version, std::move(schema))) {
  impl_->session.label = &impl_->label;
  impl_->session.path = &impl_->path;
  impl_->session.version = version;
}

SQLiteReadModel::~SQLiteReadModel() { close().ignore_error(); }

Status SQLiteReadModel::open(const std::string& path, const SQLiteReadModelOptions& options) {
  Impl& m = *impl_;
  return catch_all(path, "opening " + m.label, [&]() -> Status {
    std::lock_guard lock(m.write_mu);
    if (m.writer)
      return invalid_argument(
          fmt::format("{}: {}: already open (on {}); close() it first", path, m.label, m.path));
    if (Status s = check_projection_name(m.name); !s.ok())
      return invalid_argument(fmt::format("{}: {}", path, s.message()));
    if (m.version == 0)
      return invalid_argument(fmt::format(
          "{}: {}: versions start at 1 (tables are named with the suffix '_v<version>')", path,
          m.label));
    if (!m.schema)
      return invalid_argument(fmt::format(
          "{}: {}: no schema; give the constructor one that creates the tables", path, m.label));
    // Queries need connections of their own, and WAL a file.
    if (path.empty() || path == ":memory:")
      return invalid_argument(
          fmt::format("'{}': {}: an SQLite read model needs a file path", path, m.label));
    EVENTSOURCE_ASSIGN_OR_RETURN(
        std::unique_ptr<Connection> conn,
        api_internal::open_database(path, api_internal::open_options(options), kTables,
                                    kErrorHints));
    m.writer = std::move(conn);
    m.path = path;
    m.file = m.writer->path();
    m.session.conn = m.writer.get();
    m.session.cache = &m.writer_cache;
    m.in_batch = false;
    sqlite3_set_authorizer(m.writer->db(), authorize, &m.session);
    // The model's tables: look, then create under the write lock (another
    // connection or process may have created them meanwhile).
    Status created = [&]() -> Status {
      EVENTSOURCE_ASSIGN_OR_RETURN(const bool there, m.has_row());
      if (there) return Status();
      WriteTransaction txn(*m.writer);
      EVENTSOURCE_RETURN_IF_ERROR(txn.begin(m.label + ": creating its tables"));
      EVENTSOURCE_ASSIGN_OR_RETURN(const bool now, m.has_row());
      if (!now) EVENTSOURCE_RETURN_IF_ERROR(m.create_locked());
      return txn.commit(m.label + ": creating its tables");
    }();
    if (!created.ok()) {
      m.close_writer_locked().ignore_error();
      return created;
    }
    std::lock_guard read_lock(m.read_mu);
    m.open = true;
    ++m.generation;
    m.read_file = m.file;
    m.options = options;
    return Status();
  });
}

Status SQLiteReadModel::close() {
  Impl& m = *impl_;
  Status s;
  {
    std::lock_guard lock(m.write_mu);
    if (m.writer) {
      m.rollback_locked();
      s = m.close_writer_locked();
    }
  }
  std::vector<std::unique_ptr<Impl::Reader>> idle;
  {
    std::lock_guard lock(m.read_mu);
    m.open = false;
    ++m.generation;
    idle.swap(m.idle);
  }
  for (auto& r : idle) {
    r->cache.clear();
    Status closed = r->conn->close();
    if (s.ok() && !closed.ok()) s = closed;
  }
  return s;
}

bool SQLiteReadModel::is_open() const {
  std::lock_guard lock(impl_->read_mu);
  return impl_->open;
}

const std::string& SQLiteReadModel::path() const { return impl_->path; }

void SQLiteReadModel::on(std::string type, Handler fn) {
  impl_->handlers[std::move(type)] = std::move(fn);
}

void SQLiteReadModel::note_unregistered(const char* cpp_type) {
  impl_->unregistered.emplace_back(cpp_type);
}

std::string SQLiteReadModel::table(std::string_view base) const {
  return fmt::format("{}_v{}", base, impl_->version);
}

Status SQLiteReadModel::query_values(std::string_view sql, std::span<const SQLiteValue> params,
                                     SQLiteRowFn fn) const {
  const Impl& m = *impl_;
  try {
    EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<Impl::Lease> lease, m.take_reader());
    Session s;
    s.conn = lease->reader->conn.get();
    s.cache = &lease->reader->cache;
    s.path = &lease->file;
    s.label = &m.label;
    s.version = m.version;
    s.reader = true;
    return run(s, sql, params, &fn);
  } catch (const std::exception& e) {
    return invalid_argument(
        fmt::format("{}: query '{}' threw: {}", m.label, excerpt(sql), e.what()));
  } catch (...) {
    return invalid_argument(
        fmt::format("{}: query '{}' threw a non-exception", m.label, excerpt(sql)));
  }
}

Status SQLiteReadModel::drop() {
  Impl& m = *impl_;
  std::lock_guard lock(m.write_mu);
  EVENTSOURCE_RETURN_IF_ERROR(m.check_writer_locked());
  return catch_all(m.path, m.label + ": dropping", [&]() -> Status {
    m.rollback_locked();
    WriteTransaction txn(*m.writer);
    EVENTSOURCE_RETURN_IF_ERROR(txn.begin(m.label + ": dropping its tables"));
    EVENTSOURCE_RETURN_IF_ERROR(m.drop_locked());
    return txn.commit(m.label + ": dropping its tables");
  });
}

std::string_view SQLiteReadModel::name() const { return impl_->name; }

uint32_t SQLiteReadModel::version() const { return impl_->version; }

std::vector<std::string> SQLiteReadModel::event_types() const {
  std::vector<std::string> types;
  types.reserve(impl_->handlers.size());
  for (const auto& [type, fn] : impl_->handlers) types.push_back(type);
  return types;
}

Status SQLiteReadModel::handle(const EventRecord& event) {
  Impl& m = *impl_;
  std::lock_guard lock(m.write_mu);
  EVENTSOURCE_RETURN_IF_ERROR(m.check_writer_locked());
  if (!m.in_batch)
    return invalid_argument(
        fmt::format("{}: {}: handle() of event {} outside a batch (call begin_batch first)", m.path,
                    m.label, event.position.value));
  auto it = m.handlers.find(event.type);
  if (it == m.handlers.end() || !it->second) return Status();
  Session& s = m.session;
  return catch_all(m.path, m.label + ": handling an event", [&]() -> Status {
    if (s.lost || sqlite3_get_autocommit(m.writer->db()) != 0) {
      s.lost = true;
      s.event = &event;
      Status lost = lost_transaction(s, "the handler");
      s.event = nullptr;
      return lost;
    }
    EVENTSOURCE_RETURN_IF_ERROR(
        m.writer->run(kSavepoint, m.label + ": starting the savepoint of an event"));
    Status result;
    {
      UserCode user(s, &event);
      try {
        SQLiteTx tx = Access::tx(&s);
        result = it->second(event, tx);
      } catch (const std::exception& e) {
        result =
            invalid_argument(fmt::format("{}: {}: event {} ({}): the handler threw: {}", m.path,
                                         m.label, event.position.value, event.type, e.what()));
      } catch (...) {
        result =
            invalid_argument(fmt::format("{}: {}: event {} ({}): the handler threw a non-exception",
                                         m.path, m.label, event.position.value, event.type));
      }
    }
    if (s.lost || sqlite3_get_autocommit(m.writer->db()) != 0) {
      // The batch's transaction is gone: end_batch fails, and the batch is
      // rolled back and handled again.
      s.lost = true;
      s.event = &event;
      Status lost = lost_transaction(s, "the end of the handler");
      s.event = nullptr;
      return result.ok() ? lost : result;
    }
    if (result.ok()) {
      Status released = m.writer->run(kRelease, m.label + ": releasing the savepoint of an event");
      if (!released.ok()) s.lost = true;
      return released;
    }
    // This event's writes only: the batch's earlier events keep theirs.
    Status undone = m.writer->run(kRollbackTo, m.label + ": rolling back a failed event");
    if (undone.ok())
      undone = m.writer->run(kRelease, m.label + ": releasing the savepoint of a failed event");
    if (!undone.ok()) s.lost = true;
    return result;
  });
}

Status SQLiteReadModel::begin_batch() {
  Impl& m = *impl_;
  std::lock_guard lock(m.write_mu);
  EVENTSOURCE_RETURN_IF_ERROR(m.check_writer_locked());
  return catch_all(m.path, m.label + ": beginning a batch", [&]() -> Status {
    // A batch left open (no end_batch nor abort_batch) never moved the
    // checkpoint: roll it back, its events come again.
    if (m.in_batch || sqlite3_get_autocommit(m.writer->db()) == 0) m.rollback_locked();
    EVENTSOURCE_RETURN_IF_ERROR(m.writer->run("BEGIN IMMEDIATE", m.label + ": beginning a batch"));
    m.in_batch = true;
    m.session.lost = false;
    return Status();
  });
}

Status SQLiteReadModel::end_batch(GlobalPosition through) {
  Impl& m = *impl_;
  std::lock_guard lock(m.write_mu);
  EVENTSOURCE_RETURN_IF_ERROR(m.check_writer_locked());
  if (!m.in_batch)
    return invalid_argument(
        fmt::format("{}: {}: end_batch({}) without begin_batch", m.path, m.label, through.value));
  return catch_all(m.path, m.label + ": ending a batch", [&]() -> Status {
    Session& s = m.session;
    Status st = [&]() -> Status {
      if (s.lost || sqlite3_get_autocommit(m.writer->db()) != 0) {
        s.lost = true;
        return lost_transaction(s, "end_batch");
      }
      const auto k = m.key();
      const std::array<SQLiteValue, 4> row = {k[0], k[1], SQLiteValue(through),
                                              SQLiteValue(api_internal::now_us())};
      s.in_transaction = true;
      Status set = run(s, kSetPosition, row, nullptr);
      s.in_transaction = false;
      EVENTSOURCE_RETURN_IF_ERROR(set);
      if (s.changes != 1)
        return not_found(fmt::format(
            "{}: {}: its row in {} is gone (drop(), or another handle or process dropped the "
            "model); reset() or reopen it to create its tables again",
            m.path, m.label, SQLiteReadModel::kModelsTable));
      return m.writer->run("COMMIT", m.label + ": committing a batch");
    }();
    if (!st.ok()) {
      m.rollback_locked();
      return st;
    }
    m.in_batch = false;
    return Status();
  });
}

void SQLiteReadModel::abort_batch() {
  Impl& m = *impl_;
  std::lock_guard lock(m.write_mu);
  if (!m.writer) return;
  try {
    m.rollback_locked();
  } catch (...) {
    // Nothing to report to: the next begin_batch rolls back what is left.
  }
}

Result<GlobalPosition> SQLiteReadModel::own_checkpoint() const {
  const Impl& m = *impl_;
  int64_t position = 0;
  auto each = [&position](const SQLiteRow& row) {
    position = row.integer(0);
    return false;
  };
  const auto k = m.key();
  EVENTSOURCE_RETURN_IF_ERROR(query_values(kSelectPosition, k, each));
  if (position < 0)
    return corruption(fmt::format("{}: {}: its checkpoint in {} is {}; the table was changed "
                                  "outside eventsource (reset() rebuilds the model)",
                                  path(), m.label, SQLiteReadModel::kModelsTable, position),
                      -1, -1);
  return GlobalPosition(static_cast<uint64_t>(position));
}

Status SQLiteReadModel::reset() {
  Impl& m = *impl_;
  std::lock_guard lock(m.write_mu);
  EVENTSOURCE_RETURN_IF_ERROR(m.check_writer_locked());
  return catch_all(m.path, m.label + ": resetting", [&]() -> Status {
    m.rollback_locked();
    WriteTransaction txn(*m.writer);
    EVENTSOURCE_RETURN_IF_ERROR(txn.begin(m.label + ": resetting"));
    EVENTSOURCE_RETURN_IF_ERROR(m.drop_locked());
    EVENTSOURCE_RETURN_IF_ERROR(m.create_locked());
    return txn.commit(m.label + ": resetting");
  });
}

Status SQLiteReadModel::check() const {
  const Impl& m = *impl_;
  if (!m.unregistered.empty())
    return invalid_argument(
        fmt::format("{}: on<E>() for a type its EventRegistry does not know ({}); register it with "
                    "EventRegistry::add before adding the handler",
                    m.label, m.unregistered.front()));
  if (m.handlers.empty())
    return invalid_argument(
        fmt::format("{}: no handler; add one with on<E>(registry, fn) or on(type, fn)", m.label));
  if (!is_open())
    return invalid_argument(
        fmt::format("{}: not open; call open(path) before starting its subscription", m.label));
  return Status();
}

}  // namespace eventsource
