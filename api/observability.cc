#include "eventsource/observability.h"

#include <fmt/format.h>

#include <utility>

namespace eventsource {

// User code runs inside these calls: whatever it throws stops here. A span
// that threw is dropped: nothing more is sent to it, end() included.
template <class Fn>
static void guarded(std::unique_ptr<TraceSpan>& span, Fn&& fn) noexcept {
  if (!span) return;
  try {
    fn(*span);
  } catch (...) {
    span.reset();
  }
}

Span::Span(Tracer* tracer, std::string_view name) {
  if (tracer == nullptr) return;
  try {
    span_ = tracer->start_span(name);
  } catch (...) {
    span_.reset();
  }
}

Span::~Span() { end(); }

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    end();
    span_ = std::move(other.span_);
  }
  return *this;
}

void Span::set_attribute(std::string_view key, std::string_view value) {
  guarded(span_, [&](TraceSpan& s) { s.set_attribute(key, value); });
}

void Span::set_attribute(std::string_view key, int64_t value) {
  guarded(span_, [&](TraceSpan& s) { s.set_attribute(key, value); });
}

void Span::record_error(std::string_view message) {
  guarded(span_, [&](TraceSpan& s) { s.record_error(message); });
}

void Span::end() {
  guarded(span_, [](TraceSpan& s) { s.end(); });
  span_.reset();
}

void Metrics::count_append(uint64_t events, uint64_t bytes) {
  appends_.fetch_add(1, std::memory_order_relaxed);
  events_appended_.fetch_add(events, std::memory_order_relaxed);
  bytes_appended_.fetch_add(bytes, std::memory_order_relaxed);
}

void Metrics::count_read(uint64_t events, uint64_t bytes) {
  reads_.fetch_add(1, std::memory_order_relaxed);
  events_read_.fetch_add(events, std::memory_order_relaxed);
  bytes_read_.fetch_add(bytes, std::memory_order_relaxed);
}

void Metrics::count_sync() { syncs_.fetch_add(1, std::memory_order_relaxed); }
void Metrics::count_conflict() { conflicts_.fetch_add(1, std::memory_order_relaxed); }
void Metrics::count_snapshot_hit() { snapshot_hits_.fetch_add(1, std::memory_order_relaxed); }

void Metrics::count_snapshot_miss(SnapshotMiss reason) {
  switch (reason) {
    case SnapshotMiss::kNone:
      misses_none_.fetch_add(1, std::memory_order_relaxed);
      break;
    case SnapshotMiss::kSchema:
      misses_schema_.fetch_add(1, std::memory_order_relaxed);
      break;
    case SnapshotMiss::kDecode:
      misses_decode_.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

void Metrics::count_dispatched(uint64_t calls) {
  dispatched_.fetch_add(calls, std::memory_order_relaxed);
}
void Metrics::count_handler_failure() { handler_failures_.fetch_add(1, std::memory_order_relaxed); }
void Metrics::count_dead_letter() { dead_letters_.fetch_add(1, std::memory_order_relaxed); }

void Metrics::set_projection_lag(std::string_view projection, uint64_t events, double seconds) {
  std::lock_guard lock(lag_mu_);
  auto it = lag_.find(projection);
  if (it == lag_.end())
    it = lag_.emplace(std::string(projection), ProjectionLag{std::string(projection)}).first;
  it->second.events = events;
  it->second.seconds = seconds;
}

Counters Metrics::counters() const {
  Counters c;
  c.events_dispatched = dispatched_.load(std::memory_order_relaxed);
  c.handler_failures = handler_failures_.load(std::memory_order_relaxed);
  c.dead_letters = dead_letters_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(lag_mu_);
    for (const auto& [name, lag] : lag_) c.projection_lag.push_back(lag);
  }
  c.appends = appends_.load(std::memory_order_relaxed);
  c.events_appended = events_appended_.load(std::memory_order_relaxed);
  c.bytes_appended = bytes_appended_.load(std::memory_order_relaxed);
  c.reads = reads_.load(std::memory_order_relaxed);
  c.events_read = events_read_.load(std::memory_order_relaxed);
  c.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  c.syncs = syncs_.load(std::memory_order_relaxed);
  c.conflicts = conflicts_.load(std::memory_order_relaxed);
  c.snapshot_hits = snapshot_hits_.load(std::memory_order_relaxed);
  c.snapshot_misses_none = misses_none_.load(std::memory_order_relaxed);
  c.snapshot_misses_schema = misses_schema_.load(std::memory_order_relaxed);
  c.snapshot_misses_decode = misses_decode_.load(std::memory_order_relaxed);
  return c;
}

namespace {

// A label value as the exposition format wants it: \\, \" and \n escaped.
std::string prometheus_label(std::string_view v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

}  // namespace

std::string Metrics::prometheus_text(std::string_view prefix) const {
  const Counters c = counters();
  std::string out;
  auto family = [&](std::string_view name, std::string_view help) {
    fmt::format_to(std::back_inserter(out), "# HELP {}_{}_total {}\n# TYPE {}_{}_total counter\n",
                   prefix, name, help, prefix, name);
  };
  auto counter = [&](std::string_view name, std::string_view help, uint64_t value) {
    family(name, help);
    fmt::format_to(std::back_inserter(out), "{}_{}_total {}\n", prefix, name, value);
  };
  counter("appends", "Append calls that stored events.", c.appends);
  counter("events_appended", "Events stored by appends.", c.events_appended);
  counter("bytes_appended", "Payload and metadata bytes of appended events.", c.bytes_appended);
  counter("reads", "Read calls.", c.reads);
  counter("events_read", "Events delivered by reads.", c.events_read);
  counter("bytes_read", "Payload and metadata bytes of events read.", c.bytes_read);
  counter("syncs", "Durable appends, each after an fdatasync.", c.syncs);
  counter("conflicts", "Appends refused for their expected version.", c.conflicts);
  counter("snapshot_hits", "Aggregate loads that started from a snapshot.", c.snapshot_hits);
  family("snapshot_misses", "Aggregate loads that replayed all events, by reason.");
  fmt::format_to(std::back_inserter(out),
                 "{0}_snapshot_misses_total{{reason=\"none\"}} {1}\n"
                 "{0}_snapshot_misses_total{{reason=\"schema\"}} {2}\n"
                 "{0}_snapshot_misses_total{{reason=\"decode\"}} {3}\n",
                 prefix, c.snapshot_misses_none, c.snapshot_misses_schema,
                 c.snapshot_misses_decode);
  counter("events_dispatched", "Handler calls that succeeded (bus and projections).",
          c.events_dispatched);
  counter("handler_failures", "Handler calls that failed, retries included.", c.handler_failures);
  counter("dead_letters", "Events projections dead-lettered.", c.dead_letters);
  auto gauge = [&](std::string_view name, std::string_view help, auto value_of) {
    fmt::format_to(std::back_inserter(out), "# HELP {0}_{1} {2}\n# TYPE {0}_{1} gauge\n", prefix,
                   name, help);
    for (const ProjectionLag& lag : c.projection_lag)
      fmt::format_to(std::back_inserter(out), "{}_{}{{projection=\"{}\"}} {}\n", prefix, name,
                     prometheus_label(lag.projection), value_of(lag));
  };
  gauge("projection_lag_events", "Positions a projection is behind the head.",
        [](const ProjectionLag& l) { return l.events; });
  gauge("projection_lag_seconds", "Age of the last event a lagging projection handled.",
        [](const ProjectionLag& l) { return l.seconds; });
  return out;
}

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

void log_to(const LogSink& sink, LogLevel level, std::string_view message,
            std::span<const LogField> fields) {
  if (!sink) return;
  try {
    sink(level, message, fields);
  } catch (...) {  // the line is lost; the caller's operation goes on
  }
}

}  // namespace eventsource
