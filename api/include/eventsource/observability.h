// Observability for api/: a tracer interface (spans named as in the
// reference design), counters readable as a struct and as Prometheus text,
// and a callback for structured log lines. All three are off by default and
// cost one branch when off: a Span without a tracer allocates nothing.
//
// The library calls into user code here (a Tracer, a LogSink). Anything such
// code throws is caught at this boundary: the span is dropped, or the log
// line lost, and the library's own call goes on (no exception escapes).
//
// Thread safety: Metrics is safe for concurrent use. A Tracer and a LogSink
// must be safe for concurrent use when the components they are given to are
// used from several threads. A Span is used by one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace eventsource {

// Span names (the reference design's, so dashboards carry over).
namespace span_names {
inline constexpr std::string_view kAppendEvents = "event_store.append_events";
inline constexpr std::string_view kGetEvents = "event_store.get_events";
inline constexpr std::string_view kSnapshotSave = "snapshot_store.save";
inline constexpr std::string_view kSnapshotGet = "snapshot_store.get";
inline constexpr std::string_view kRepositoryLoad = "repository.load";
inline constexpr std::string_view kRepositorySave = "repository.save";
}  // namespace span_names

// One span as a tracer implements it (e.g. an OpenTelemetry adapter).
class TraceSpan {
 public:
  virtual ~TraceSpan() = default;
  virtual void set_attribute(std::string_view key, std::string_view value) = 0;
  virtual void set_attribute(std::string_view key, int64_t value) = 0;
  // The operation failed; `message` is the error's text.
  virtual void record_error(std::string_view message) = 0;
  // Called exactly once, when the operation is over.
  virtual void end() = 0;
};

class Tracer {
 public:
  virtual ~Tracer() = default;
  // A new span named `name` (one of span_names, or "event.dispatch.<Type>"
  // and the like). nullptr: not recorded.
  virtual std::unique_ptr<TraceSpan> start_span(std::string_view name) = 0;
};

// The handle the library holds for the length of an operation: starts a
// span on construction when there is a tracer, ends it on destruction.
// Without a tracer every call is a no-op and nothing is allocated.
class Span {
 public:
  Span() = default;
  Span(Tracer* tracer, std::string_view name);
  ~Span();
  Span(Span&& other) noexcept = default;
  Span& operator=(Span&& other) noexcept;
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

  bool recording() const { return span_ != nullptr; }
  void set_attribute(std::string_view key, std::string_view value);
  void set_attribute(std::string_view key, int64_t value);
  void record_error(std::string_view message);
  // Ends the span now (the destructor then does nothing).
  void end();

 private:
  std::unique_ptr<TraceSpan> span_;
};

// One projection's lag, as it last reported it (a gauge).
struct ProjectionLag {
  std::string projection;
  uint64_t events = 0;  // positions behind the head
  double seconds = 0;   // age of the last event handled while behind (0 when caught up)
  bool operator==(const ProjectionLag&) const = default;
};

// What the counters held at one moment. Monotonic: they only grow (except
// projection_lag, a gauge).
struct Counters {
  uint64_t appends = 0;          // append calls that stored events
  uint64_t events_appended = 0;  // events they stored
  uint64_t bytes_appended = 0;   // payload + metadata bytes of those events
  uint64_t reads = 0;            // read calls (stream, all, category)
  uint64_t events_read = 0;
  uint64_t bytes_read = 0;
  uint64_t syncs = 0;      // durable appends (each waited for an fdatasync)
  uint64_t conflicts = 0;  // appends refused for their expected version
  uint64_t snapshot_hits = 0;
  // Snapshot misses by reason: none stored, stored for another schema
  // version, or stored but not decodable (each falls back to a replay).
  uint64_t snapshot_misses_none = 0;
  uint64_t snapshot_misses_schema = 0;
  uint64_t snapshot_misses_decode = 0;
  // The bus, subscriptions and projections.
  uint64_t events_dispatched = 0;  // handler calls that succeeded (bus and projections)
  uint64_t handler_failures = 0;   // handler calls that failed (retries included)
  uint64_t dead_letters = 0;       // events projections dead-lettered
  std::vector<ProjectionLag> projection_lag = {};  // by projection name

  bool operator==(const Counters&) const = default;
};

// The live counters: lock-free increments from any thread.
class Metrics {
 public:
  void count_append(uint64_t events, uint64_t bytes);
  void count_read(uint64_t events, uint64_t bytes);
  void count_sync();
  void count_conflict();
  void count_snapshot_hit();
  enum class SnapshotMiss : uint8_t { kNone, kSchema, kDecode };
  void count_snapshot_miss(SnapshotMiss reason);
  void count_dispatched(uint64_t calls);
  void count_handler_failure();
  void count_dead_letter();
  void set_projection_lag(std::string_view projection, uint64_t events, double seconds);

  Counters counters() const;
  // Prometheus text exposition format (version 0.0.4): one counter family
  // per field, named `<prefix>_<field>_total` (snapshot misses as one family
  // with a `reason` label), each with # HELP and # TYPE lines; projection
  // lag as two gauge families with a `projection` label.
  std::string prometheus_text(std::string_view prefix = "eventsource") const;

 private:
  std::atomic<uint64_t> appends_{0}, events_appended_{0}, bytes_appended_{0};
  std::atomic<uint64_t> reads_{0}, events_read_{0}, bytes_read_{0};
  std::atomic<uint64_t> syncs_{0}, conflicts_{0}, snapshot_hits_{0};
  std::atomic<uint64_t> misses_none_{0}, misses_schema_{0}, misses_decode_{0};
  std::atomic<uint64_t> dispatched_{0}, handler_failures_{0}, dead_letters_{0};
  mutable std::mutex lag_mu_;
  std::map<std::string, ProjectionLag, std::less<>> lag_;
};

enum class LogLevel : uint8_t { kDebug, kInfo, kWarn, kError };
std::string_view log_level_name(LogLevel level);  // "debug" .. "error"

// One key/value of a structured log line (e.g. {"stream", "Order-42"}).
struct LogField {
  std::string_view key;
  std::string_view value;
};

// Receives structured log lines. The views are valid during the call only.
using LogSink =
    std::function<void(LogLevel level, std::string_view message, std::span<const LogField> fields)>;

// Sends one line to `sink` if there is one; a sink that throws loses the line.
void log_to(const LogSink& sink, LogLevel level, std::string_view message,
            std::span<const LogField> fields = {});

// What a component reports to; every member is optional.
struct Observability {
  Tracer* tracer = nullptr;    // not owned; must outlive the component
  Metrics* metrics = nullptr;  // not owned; must outlive the component
  LogSink log = {};
};

}  // namespace eventsource
