// Read models: where projections put what they compute, for queries to read.
//
//   InMemoryKeyValueReadModel<V>  a thread-safe map that a projection writes
//                                 and queries read; effects at least once
//   SQLiteReadModel               a Projection whose read model is tables in
//                                 an SQLite file, its checkpoint committed in
//                                 the same transaction: effects exactly once
#pragma once

#include <array>
#include <cassert>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/events.h"
#include "eventsource/json.h"
#include "eventsource/projection.h"
#include "eventsource/status.h"
#include "eventsource/types.h"

// SQLite's statement handle, declared here so this header needs no <sqlite3.h>.
struct sqlite3_stmt;

namespace eventsource {

// ============================================================================
// InMemoryKeyValueReadModel
// ============================================================================

// A map from string keys to values of V that one projection writes while any
// number of threads read it (a std::shared_mutex: reads share, writes
// exclude). It is not a Projection: a projection writes into it.
//
//   InMemoryKeyValueReadModel<int64_t> balances;
//
//   class Balances : public DeclarativeProjection {
//    public:
//     Balances(const EventRegistry& r, InMemoryKeyValueReadModel<int64_t>& model)
//         : DeclarativeProjection("balances"), model_(model) {
//       // Not idempotent: each delivery adds again; apply_once skips a
//       // delivery the key has already had.
//       on<Deposited>(r, [this](const Deposited& e, const EventRecord& record) {
//         model_.apply_once(e.account, record.position, [&](int64_t& b) { b += e.amount; });
//         return Status();
//       });
//       // Idempotent as it is: a second delivery writes the same value.
//       on<BalanceSet>(r, [this](const BalanceSet& e, const EventRecord&) {
//         model_.put(e.account, e.balance);
//         return Status();
//       });
//     }
//     Status reset() override {  // before a rebuild from the first event
//       model_.clear();
//       return Status();
//     }
//
//    private:
//     InMemoryKeyValueReadModel<int64_t>& model_;
//   };
//
//   Balances projection(registry, balances);
//   auto sub = Subscription::start(events, projection, {.store = &checkpoints});
//   std::optional<int64_t> b = balances.get("acct-1");   // from any thread
//
// Delivery is at least once. The projection's checkpoint lives in the
// ProjectionStore, apart from this map, so an event may reach the handlers
// again: a handler that failed halfway and is retried, a batch handled again
// one event at a time, a second subscription started from the beginning over
// the same map. So handlers must be idempotent. put() and erase() are;
// update() (an increment, an append) is not: use apply_once(), which keeps,
// per key, the position of the last event applied to it and skips an event
// at or below it (erase_once() likewise). That relies on each key getting
// its events in position order (a subscription delivers in order) and on one
// apply_once per (key, event): put all of one event's changes to a key in one
// call.
//
// The map lives in memory only: after a restart it is empty while the
// ProjectionStore's checkpoint is not, so start the projection from the
// beginning (StartFrom::beginning(), or no checkpoint store) to rebuild it.
//
// Thread safety: safe for concurrent use. Readers see each write whole;
// snapshot() and read() see the whole map at one moment. The callbacks of
// update, apply_once and read run under the lock: they must not call back
// into this model.
//
// V: copyable, and default-constructible for update and apply_once.
template <class V>
class InMemoryKeyValueReadModel {
 public:
  using Map = std::map<std::string, V, std::less<>>;

  InMemoryKeyValueReadModel() = default;
  InMemoryKeyValueReadModel(const InMemoryKeyValueReadModel&) = delete;
  InMemoryKeyValueReadModel& operator=(const InMemoryKeyValueReadModel&) = delete;

  // ---------------------------------------------------------------- reads --

  // A copy of `key`'s value; nullopt when absent.
  std::optional<V> get(std::string_view key) const {
    std::shared_lock lock(mu_);
    auto it = values_.find(key);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  bool contains(std::string_view key) const {
    std::shared_lock lock(mu_);
    return values_.find(key) != values_.end();
  }
  size_t size() const {
    std::shared_lock lock(mu_);
    return values_.size();
  }
  // A copy of every entry, all as of one moment.
  Map snapshot() const {
    std::shared_lock lock(mu_);
    return values_;
  }
  // fn(const Map&) under the shared lock, for a consistent look at several
  // entries without copying the map; returns what fn returns.
  template <class F>
  requires std::is_invocable_v<F&, const Map&>
  decltype(auto) read(F&& fn) const {
    std::shared_lock lock(mu_);
    return fn(static_cast<const Map&>(values_));
  }
  // The position of the last event apply_once or erase_once applied to
  // `key` (0 = none since the last clear()).
  GlobalPosition last_applied(std::string_view key) const {
    std::shared_lock lock(mu_);
    auto it = applied_.find(key);
    return it == applied_.end() ? GlobalPosition() : it->second;
  }

  // --------------------------------------------------------------- writes --

  // Sets `key` to `value` (idempotent).
  void put(std::string_view key, V value) {
    std::unique_lock lock(mu_);
    if (auto it = values_.find(key); it != values_.end()) {
      it->second = std::move(value);
    } else {
      values_.emplace(std::string(key), std::move(value));
    }
  }
  // Removes `key` (idempotent); whether it was there. Its last applied
  // position stays (see apply_once).
  bool erase(std::string_view key) {
    std::unique_lock lock(mu_);
    auto it = values_.find(key);
    if (it == values_.end()) return false;
    values_.erase(it);
    return true;
  }
  // Calls fn(V&) on `key`'s value, a value-initialized V when absent (which
  // is stored only if fn returns: a throw leaves an absent key absent).
  // Not idempotent when fn is not (an increment): see apply_once.
  template <class F>
  requires std::is_invocable_v<F&, V&>
  void update(std::string_view key, F&& fn) {
    std::unique_lock lock(mu_);
    update_locked(key, fn);
  }
  // update(key, fn) for the event at `position`, once: only when `position`
  // is past the key's last applied position, which then becomes `position`.
  // Returns whether fn ran. REQUIRES: position >= 1.
  template <class F>
  requires std::is_invocable_v<F&, V&>
  bool apply_once(std::string_view key, GlobalPosition position, F&& fn) {
    assert(position.value > 0 && "apply_once needs the event's position (1-based)");
    std::unique_lock lock(mu_);
    auto seen = applied_.find(key);
    if (seen != applied_.end() && position <= seen->second) return false;
    update_locked(key, fn);
    if (seen != applied_.end()) {
      seen->second = position;
    } else {
      applied_.emplace(std::string(key), position);
    }
    return true;
  }
  // erase(key) for the event at `position`, once, as apply_once. Returns
  // whether it ran (even if the key was already absent).
  bool erase_once(std::string_view key, GlobalPosition position) {
    assert(position.value > 0 && "erase_once needs the event's position (1-based)");
    std::unique_lock lock(mu_);
    auto seen = applied_.find(key);
    if (seen != applied_.end() && position <= seen->second) return false;
    if (auto it = values_.find(key); it != values_.end()) values_.erase(it);
    if (seen != applied_.end()) {
      seen->second = position;
    } else {
      applied_.emplace(std::string(key), position);
    }
    return true;
  }
  // Removes every entry and every last applied position (a projection's
  // reset(), before a rebuild from the first event).
  void clear() {
    std::unique_lock lock(mu_);
    values_.clear();
    applied_.clear();
  }

 private:
  template <class F>
  void update_locked(std::string_view key, F& fn) {
    if (auto it = values_.find(key); it != values_.end()) {
      fn(it->second);
      return;
    }
    V value{};
    fn(value);
    values_.emplace(std::string(key), std::move(value));
  }

  mutable std::shared_mutex mu_;
  Map values_;                                                  // guarded by mu_
  std::map<std::string, GlobalPosition, std::less<>> applied_;  // guarded by mu_
};

// ============================================================================
// SQLiteReadModel
// ============================================================================

class SQLiteReadModel;
class SQLiteRow;

namespace read_model_detail {
struct Session;  // a connection in use by one call (read_model.cc)
struct Access;   // read_model.cc's way in to the private parts below
}  // namespace read_model_detail

// One SQL parameter, bound to ?1, ?2, ... in order: NULL, an integer, a
// real, text (UTF-8) or a BLOB. It does not copy: text and BLOBs refer to
// the caller's bytes, which must outlive the call (they do for the
// arguments of exec and query).
class SQLiteValue {
 public:
  enum class Kind : uint8_t {
    kNull,
    kInteger,
    kReal,
    kText,
    kBlob,
    kOutOfRange,  // an unsigned integer past 2^63-1: binding it fails
  };

  SQLiteValue() = default;        // NULL
  SQLiteValue(std::nullptr_t) {}  // NOLINT: NULL
  SQLiteValue(std::nullopt_t) {}  // NOLINT: NULL
  template <std::integral T>      // bool binds 0 or 1
  SQLiteValue(T v) {              // NOLINT: implicit by design
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(int64_t)) {
      if (v > static_cast<T>(std::numeric_limits<int64_t>::max())) {
        kind_ = Kind::kOutOfRange;
        return;
      }
    }
    kind_ = Kind::kInteger;
    integer_ = static_cast<int64_t>(v);
  }
  template <std::floating_point T>
  SQLiteValue(T v) : kind_(Kind::kReal), real_(static_cast<double>(v)) {}  // NOLINT
  template <class Tag>
  SQLiteValue(Strong<Tag> v) : SQLiteValue(v.value) {}  // NOLINT: a position, a version
  SQLiteValue(std::string_view v) : kind_(Kind::kText), bytes_(v) {}    // NOLINT
  SQLiteValue(const std::string& v) : kind_(Kind::kText), bytes_(v) {}  // NOLINT
  SQLiteValue(const char* v) {  // NOLINT: nullptr binds NULL
    if (v != nullptr) {
      kind_ = Kind::kText;
      bytes_ = v;
    }
  }
  template <class T>
  SQLiteValue(const std::optional<T>& v) {  // NOLINT: nullopt binds NULL
    if (v) *this = SQLiteValue(*v);
  }
  // Raw bytes, bound as a BLOB (not text).
  static SQLiteValue blob(std::string_view bytes) {
    SQLiteValue v;
    v.kind_ = Kind::kBlob;
    v.bytes_ = bytes;
    return v;
  }

  Kind kind() const { return kind_; }
  int64_t integer() const { return integer_; }
  double real() const { return real_; }
  std::string_view bytes() const { return bytes_; }  // kText, kBlob

 private:
  Kind kind_ = Kind::kNull;
  int64_t integer_ = 0;
  double real_ = 0;
  std::string_view bytes_;
};

// The current row of a query, given to its row callback; valid during the
// callback only (so are the views it returns). Columns are 0-based.
class SQLiteRow {
 public:
  int size() const;  // columns
  bool is_null(int column) const;
  // The column as SQLite converts it (NULL: 0, 0.0, empty).
  int64_t integer(int column) const;
  double real(int column) const;
  std::string_view text(int column) const;
  std::string_view blob(int column) const;
  // The column's name in the result.
  std::string_view name(int column) const;

 private:
  friend struct read_model_detail::Access;
  explicit SQLiteRow(sqlite3_stmt* stmt) : stmt_(stmt) {}
  sqlite3_stmt* stmt_;
};

// A row callback: returns void (go on) or bool (false: stop the query).
using SQLiteRowFn = FunctionRef<bool(const SQLiteRow&)>;

namespace read_model_detail {

template <class F>
concept RowCallback = std::is_invocable_v<F&, const SQLiteRow&> &&
    (std::is_void_v<std::invoke_result_t<F&, const SQLiteRow&>> ||
     std::is_convertible_v<std::invoke_result_t<F&, const SQLiteRow&>, bool>);

// query(sql, params..., fn): binds the leading arguments as parameters and
// hands the last, the row callback, to `run` as an SQLiteRowFn.
template <class Run, class... Args>
Status split_query(Run&& run, Args&&... args) {
  static_assert(sizeof...(Args) >= 1,
                "query(sql, params..., fn): the last argument is the row callback");
  constexpr size_t kParams = sizeof...(Args) - 1;
  auto all = std::forward_as_tuple(std::forward<Args>(args)...);
  auto& fn = std::get<kParams>(all);
  using Fn = std::remove_reference_t<decltype(fn)>;
  static_assert(RowCallback<Fn>,
                "query(sql, params..., fn): the last argument must be callable as fn(const "
                "SQLiteRow&), returning void (go on) or bool (false stops)");
  auto each_row = [&fn](const SQLiteRow& row) -> bool {
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, const SQLiteRow&>>) {
      fn(row);
      return true;
    } else {
      return static_cast<bool>(fn(row));
    }
  };
  return [&]<size_t... I>(std::index_sequence<I...>) {
    const std::array<SQLiteValue, kParams> params{SQLiteValue(std::get<I>(all))...};
    return run(std::span<const SQLiteValue>(params), SQLiteRowFn(each_row));
  }
  (std::make_index_sequence<kParams>{});
}

}  // namespace read_model_detail

// The handle a SQLiteReadModel's schema callback and handlers write through:
// their SQL runs on the model's write connection, inside the batch's
// transaction (a handler's inside a SAVEPOINT of its own event).
// Statements are prepared once and cached by SQL text, so pass values as
// parameters (?1, ?2, ...), never formatted into the text.
//
// Valid during the callback it is given to; callers serialize (the
// projection's thread). The model owns the transaction: BEGIN, COMMIT,
// ROLLBACK, SAVEPOINT and RELEASE are refused (kInvalidArgument).
class SQLiteTx {
 public:
  SQLiteTx(const SQLiteTx&) = delete;
  SQLiteTx& operator=(const SQLiteTx&) = delete;

  // Runs one SQL statement with `params` bound to ?1, ?2, ... (rows it
  // returns are stepped through and dropped). Errors (the message names the
  // file, the read model, the event and the SQL): kInvalidArgument (bad SQL,
  // more than one statement, the wrong number of parameters, a constraint
  // failed), kBusy, kIoError, kCorruption. A failed statement has no
  // effect; the handler decides whether its event fails.
  template <class... Params>
  Status exec(std::string_view sql, const Params&... params) {
    const std::array<SQLiteValue, sizeof...(Params)> values{SQLiteValue(params)...};
    return exec_values(sql, values);
  }
  // Runs one query with the leading arguments bound as parameters and calls
  // the last, fn(const SQLiteRow&), for each row (false stops). Sees the
  // batch's uncommitted writes. Errors as exec.
  //   int64_t total = 0;
  //   tx.query("SELECT total FROM totals_v1 WHERE customer = ?1", e.customer,
  //            [&](const SQLiteRow& row) { total = row.integer(0); });
  template <class... Args>
  Status query(std::string_view sql, Args&&... args) {
    return read_model_detail::split_query(
        [&](std::span<const SQLiteValue> params, SQLiteRowFn fn) {
          return query_values(sql, params, fn);
        },
        std::forward<Args>(args)...);
  }
  // Runs several statements without parameters (a schema's CREATEs).
  Status exec_script(std::string_view sql);

  // The compiled calls behind exec and query.
  Status exec_values(std::string_view sql, std::span<const SQLiteValue> params);
  Status query_values(std::string_view sql, std::span<const SQLiteValue> params, SQLiteRowFn fn);

  // Rows inserted, updated or deleted by the last exec.
  uint64_t changes() const;
  // The model's version, and `base` + "_v" + version: the name of one of
  // its tables (see SQLiteReadModel, "Tables").
  uint32_t version() const;
  std::string table(std::string_view base) const;

 private:
  friend struct read_model_detail::Access;
  explicit SQLiteTx(read_model_detail::Session* session) : session_(session) {}
  read_model_detail::Session* session_;
};

// (Every member has an initializer, so designated initializers may omit any.)
struct SQLiteReadModelOptions {
  // PRAGMA synchronous. true (the default): FULL, each batch's commit (its
  // rows and its checkpoint) waits for an fsync of the WAL and survives a
  // power loss; one fsync per batch. false: NORMAL, synced at WAL
  // checkpoints only: faster; a process crash loses nothing, a power loss
  // may roll back the latest batches, rows and checkpoint together (those
  // events are handled again: still exactly once).
  bool synchronous_full = true;
  // Create the database file and the read model's tables when missing (the
  // default). false: open() returns kNotFound instead, and creates nothing.
  bool create_if_missing = true;
  // How long a write waits for another connection or process holding the
  // database's write lock (another read model's batch in the same file,
  // say) before failing with kBusy (milliseconds, default 5000). Queries
  // never wait for writers (WAL).
  int busy_timeout_ms = 5000;
  // Read connections kept open between queries (default 4). More threads
  // querying at once open more; those beyond this are closed after use.
  size_t idle_readers = 4;
};

// A Projection whose read model is tables in an SQLite database file, and
// whose checkpoint is a row of that database written in the same transaction
// as the rows each batch changes: after a crash the tables and the
// checkpoint agree, so every event's effects are there exactly once.
//
//   SQLiteReadModel totals("customer-totals", 1, [](SQLiteTx& tx) {
//     return tx.exec("CREATE TABLE " + tx.table("totals") +  // totals_v1
//                    "(customer TEXT PRIMARY KEY, total INTEGER NOT NULL)");
//   });
//   totals.on<OrderPlaced>(registry, [](const OrderPlaced& e, const EventRecord&, SQLiteTx& tx) {
//     return tx.exec("INSERT INTO totals_v1(customer, total) VALUES(?1, ?2) "
//                    "ON CONFLICT(customer) DO UPDATE SET total = total + excluded.total",
//                    e.customer, e.total);
//   });
//   Status opened = totals.open("read-models.db");
//   auto sub = Subscription::start(events, totals, {.store = &dead_letters});
//   ...
//   totals.query("SELECT total FROM totals_v1 WHERE customer = ?1", "alice",
//                [&](const SQLiteRow& row) { total = row.integer(0); });  // any thread
//
// Transactions. begin_batch() runs BEGIN IMMEDIATE (taking the database's
// write lock); each handle() runs its handler inside SAVEPOINT, released on
// success and rolled back on failure, so a failing event leaves no write
// behind while the batch's other events keep theirs; end_batch(through)
// writes the checkpoint row and COMMITs; abort_batch() rolls the whole batch
// back. A crash anywhere leaves the last committed batch: rows and
// checkpoint. Increments need no apply_once here. That holds for a
// subscription started from the checkpoint (StartFrom::checkpoint(), the
// default); one started elsewhere (beginning() without reset(), say) hands
// events to the handlers again, and so does retry_dead_letter (on purpose).
//
// Tables. Every object the schema callback creates (tables, indexes, views,
// triggers) must be named with the suffix "_v<version>" (tx.table("totals")
// gives "totals_v1"): open() refuses a schema that creates other names, or
// no table. So two versions of one model (a rebuild running beside the old
// one) share a file without colliding; models of different names in one
// file must pick different base names (a CREATE TABLE of a name taken
// fails). The model records what its schema created, so reset() and drop()
// remove exactly that. Create tables in the schema only, never in handlers.
//
// Bookkeeping, in two tables of the file (layout 1, with a 'layout' row in
// eventsource_read_model_meta):
//   eventsource_read_models(name, version, position, created_us, updated_us)
//     one row per (name, version) whose schema has been created; position
//     is the checkpoint (0: nothing handled yet)
//   eventsource_read_model_objects(name, version, type, object)
//     what the schema created
// The schema runs in open() when the row is missing (a new model, or a new
// version), and again in reset(); each time with its row in one transaction.
//
// Queries. query() runs on read connections of its own (WAL: readers never
// wait for the writer, nor hold it up) and sees the last committed batch:
// rows and checkpoint as of one commit. Read connections are query_only.
//
// Errors are values; no exception escapes (one thrown by a handler fails its
// event; one from a row callback fails its query). Messages name the file
// and the read model.
//
// Thread safety: query() and own_checkpoint() are safe from any thread at
// any time (after close(): kClosed). The Projection calls come from the
// subscription's thread, one at a time. Register handlers (on) before
// starting a subscription. open(), close(), drop() and reset() must not run
// while a subscription runs this model (stop it first; reset() through
// Subscription::rebuild is fine: it runs on that thread). A handler must not
// call this model's open, close, drop or reset.
class SQLiteReadModel : public Projection {
 public:
  // Writes its read model with `schema`, which creates the tables of version
  // `version` (>= 1) through the SQLiteTx it is given, returning ok.
  using Schema = std::function<Status(SQLiteTx& tx)>;
  // Handles one event, writing through `tx`. A non-ok Status (or a throw)
  // fails the event: its writes are rolled back, and the subscription
  // retries it, then dead-letters it (or pauses), as its FailurePolicy says.
  using Handler = std::function<Status(const EventRecord& event, SQLiteTx& tx)>;

  // The bookkeeping tables (see "Bookkeeping" above).
  static constexpr std::string_view kModelsTable = "eventsource_read_models";
  static constexpr std::string_view kObjectsTable = "eventsource_read_model_objects";
  // Their layout (the meta table's 'layout' row); a newer one is refused.
  static constexpr int kLayoutVersion = 1;

  // No I/O: open() opens the file.
  SQLiteReadModel(std::string name, uint32_t version, Schema schema);
  ~SQLiteReadModel() override;  // close()
  SQLiteReadModel(const SQLiteReadModel&) = delete;
  SQLiteReadModel& operator=(const SQLiteReadModel&) = delete;

  // Opens (or creates, see options) the database file at `path` (a file
  // name, never an SQLite URI; not ":memory:": queries use connections of
  // their own), its bookkeeping tables, and this model's tables (running
  // the schema when (name, version) has no row yet). Errors:
  // kInvalidArgument (already open, a bad name, version 0, no schema, an
  // empty or in-memory path; a schema that fails, creates no table, names
  // an object without the "_v<version>" suffix or drops one), kNotFound (no
  // file and !create_if_missing), kCorruption (not an SQLite database, the
  // bookkeeping damaged), kNotSupported (a newer layout, no WAL), kBusy,
  // kIoError. On error nothing is created for this model and it stays
  // closed.
  Status open(const std::string& path, const SQLiteReadModelOptions& options = {});
  // Rolls back a batch in progress, then closes the connections (read
  // connections in use close when their query ends). Later calls return
  // kClosed. Idempotent.
  Status close();
  bool is_open() const;
  // The database file ("" until open()).
  const std::string& path() const;

  // Handles `type` with `fn` (a second handler for a type replaces the
  // first).
  void on(std::string type, Handler fn);
  // Handles E's registered type: the payload is decoded (and upcast) with
  // `registry`, which must outlive this model; a decode error is the
  // event's failure. F: Status(const E&, const EventRecord&, SQLiteTx&).
  template <class E, class F>
  requires std::is_invocable_r_v<Status, F&, const E&, const EventRecord&, SQLiteTx&>
  void on(const EventRegistry& registry, F fn) {
    const EventTypeInfo* info = registry.find<E>();
    if (info == nullptr) {
      note_unregistered(typeid(E).name());
      return;
    }
    on(info->name,
       [&registry, fn = std::move(fn)](const EventRecord& record, SQLiteTx& tx) mutable -> Status {
         Result<E> decoded = registry.decode<E>(record);
         if (!decoded.ok()) return decoded.take_status();
         return Status(fn(*decoded, record, tx));
       });
  }

  // `base` + "_v" + version(): the name of one of this model's tables.
  std::string table(std::string_view base) const;

  // Runs one query on a read connection: the leading arguments are bound to
  // ?1, ?2, ..., the last, fn(const SQLiteRow&), is called for each row
  // (return false to stop). Sees the last committed batch. Errors:
  // kClosed, kInvalidArgument (bad SQL, a statement that writes, a row
  // callback that threw), kBusy, kIoError, kCorruption.
  template <class... Args>
  Status query(std::string_view sql, Args&&... args) const {
    return read_model_detail::split_query(
        [&](std::span<const SQLiteValue> params, SQLiteRowFn fn) {
          return query_values(sql, params, fn);
        },
        std::forward<Args>(args)...);
  }
  Status query_values(std::string_view sql, std::span<const SQLiteValue> params,
                      SQLiteRowFn fn) const;

  // Removes this version's tables and its checkpoint row (a retired version,
  // after a newer one took over), in one transaction. The model stays open;
  // reset() creates the tables again.
  Status drop();

  // ----------------------------------------------------------- Projection --
  std::string_view name() const final;
  uint32_t version() const final;
  // The types with a handler.
  std::vector<std::string> event_types() const override;
  // Runs the event's handler inside a SAVEPOINT (no handler: skipped).
  // kInvalidArgument outside begin_batch .. end_batch.
  Status handle(const EventRecord& event) override;
  // BEGIN IMMEDIATE (a batch left open is rolled back first: its checkpoint
  // never moved, so its events come again).
  Status begin_batch() override;
  // The checkpoint row := through, then COMMIT. On error the batch is rolled
  // back: rows and checkpoint as before it.
  Status end_batch(GlobalPosition through) override;
  // ROLLBACK.
  void abort_batch() override;
  bool owns_checkpoint() const final { return true; }
  // The committed checkpoint (0: none, or dropped). Errors: kClosed, ...
  Result<GlobalPosition> own_checkpoint() const override;
  // Drops the tables the schema created, runs the schema again and sets the
  // checkpoint to 0, in one transaction (all or nothing).
  Status reset() override;
  // kInvalidArgument: not open, no handler, on<E> with a type the registry
  // did not know.
  Status check() const override;

 private:
  struct Impl;

  void note_unregistered(const char* cpp_type);

  std::unique_ptr<Impl> impl_;
};

}  // namespace eventsource
