// api/ observability: spans reach a tracer with the right names, attributes
// and one end; without a tracer nothing happens; a tracer or log sink that
// throws never lets the exception out; counters add up and read back as a
// struct and as Prometheus text.
#include "eventsource/observability.h"

#include <doctest/doctest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace eventsource {
namespace {

struct Recorded {
  std::string name;
  std::map<std::string, std::string> attributes;
  std::vector<std::string> errors;
  int ends = 0;
};

// Records every span; throws from the calls named in `throw_on`.
class RecordingTracer final : public Tracer {
 public:
  std::vector<Recorded> spans;
  std::string throw_on;  // "start", "attribute", "error", "end" or ""
  int destroyed = 0;

  std::unique_ptr<TraceSpan> start_span(std::string_view name) override {
    if (throw_on == "start") throw std::runtime_error("tracer down");
    spans.push_back(Recorded{std::string(name), {}, {}, 0});
    return std::make_unique<Recording>(this, spans.size() - 1);
  }

 private:
  class Recording final : public TraceSpan {
   public:
    Recording(RecordingTracer* t, size_t i) : t_(t), i_(i) {}
    ~Recording() override { ++t_->destroyed; }
    void set_attribute(std::string_view key, std::string_view value) override {
      if (t_->throw_on == "attribute") throw std::runtime_error("bad attribute");
      t_->spans[i_].attributes[std::string(key)] = std::string(value);
    }
    void set_attribute(std::string_view key, int64_t value) override {
      set_attribute(key, std::to_string(value));
    }
    void record_error(std::string_view message) override {
      if (t_->throw_on == "error") throw 42;  // not even a std::exception
      t_->spans[i_].errors.emplace_back(message);
    }
    void end() override {
      if (t_->throw_on == "end") throw std::runtime_error("cannot end");
      ++t_->spans[i_].ends;
    }

   private:
    RecordingTracer* t_;
    size_t i_;
  };
};

TEST_SUITE("api-observability") {
  TEST_CASE("a span reaches the tracer with its name and attributes, and ends exactly once") {
    RecordingTracer tracer;
    {
      Span span(&tracer, span_names::kAppendEvents);
      CHECK(span.recording());
      span.set_attribute("stream", "Order-42");
      span.set_attribute("events", int64_t{3});
      span.record_error("conflict: expected 2, found 3");
    }
    REQUIRE(tracer.spans.size() == 1);
    const Recorded& r = tracer.spans[0];
    CHECK(r.name == "event_store.append_events");
    CHECK(r.attributes ==
          std::map<std::string, std::string>{{"events", "3"}, {"stream", "Order-42"}});
    CHECK(r.errors == std::vector<std::string>{"conflict: expected 2, found 3"});
    CHECK(r.ends == 1);
    CHECK(tracer.destroyed == 1);

    // end() early: the destructor does not end it again; moves carry it.
    Span a(&tracer, span_names::kRepositoryLoad);
    Span b = std::move(a);
    CHECK_FALSE(a.recording());  // NOLINT(bugprone-use-after-move): a moved-from span is inert
    b.end();
    b.end();
    CHECK(tracer.spans[1].ends == 1);
    // Assigning over a live span ends it first.
    Span c(&tracer, span_names::kSnapshotGet);
    c = Span(&tracer, span_names::kSnapshotSave);
    CHECK(tracer.spans[2].ends == 1);
    c.end();
    CHECK(tracer.spans[3].ends == 1);
    CHECK(tracer.spans[3].name == "snapshot_store.save");
  }

  TEST_CASE("without a tracer a span does nothing") {
    Span span(nullptr, span_names::kGetEvents);
    CHECK_FALSE(span.recording());
    span.set_attribute("stream", "Order-1");
    span.record_error("x");
    span.end();
    Span empty;
    CHECK_FALSE(empty.recording());
  }

  TEST_CASE("a tracer that throws never lets the exception out; its span is dropped") {
    for (const char* where : {"start", "attribute", "error", "end"}) {
      CAPTURE(where);
      RecordingTracer tracer;
      tracer.throw_on = where;
      {
        Span span(&tracer, span_names::kRepositorySave);
        span.set_attribute("aggregate", "Order-7");
        span.record_error("boom");
        span.set_attribute("after", "more");
      }
      if (std::string(where) == "start") {
        CHECK(tracer.spans.empty());
        continue;
      }
      REQUIRE(tracer.spans.size() == 1);
      // Nothing reaches the span after it threw, not even end().
      const Recorded& r = tracer.spans[0];
      if (std::string(where) == "attribute") {
        CHECK(r.attributes.empty());
        CHECK(r.errors.empty());
        CHECK(r.ends == 0);
      }
      if (std::string(where) == "error") {
        CHECK(r.attributes.size() == 1);
        CHECK(r.ends == 0);
      }
      if (std::string(where) == "end") {
        CHECK(r.attributes.size() == 2);
        CHECK(r.ends == 0);
      }
      CHECK(tracer.destroyed == 1);  // dropped, not leaked
    }
  }

  TEST_CASE("counters add up and read back as a struct") {
    Metrics m;
    m.count_append(3, 600);
    m.count_append(1, 200);
    m.count_read(100, 20000);
    m.count_sync();
    m.count_conflict();
    m.count_snapshot_hit();
    m.count_snapshot_miss(Metrics::SnapshotMiss::kNone);
    m.count_snapshot_miss(Metrics::SnapshotMiss::kSchema);
    m.count_snapshot_miss(Metrics::SnapshotMiss::kSchema);
    m.count_snapshot_miss(Metrics::SnapshotMiss::kDecode);
    Counters want;
    want.appends = 2;
    want.events_appended = 4;
    want.bytes_appended = 800;
    want.reads = 1;
    want.events_read = 100;
    want.bytes_read = 20000;
    want.syncs = 1;
    want.conflicts = 1;
    want.snapshot_hits = 1;
    want.snapshot_misses_none = 1;
    want.snapshot_misses_schema = 2;
    want.snapshot_misses_decode = 1;
    CHECK(m.counters() == want);
  }

  TEST_CASE("counters read as Prometheus text: HELP and TYPE per family, a reason label") {
    Metrics m;
    m.count_append(3, 600);
    m.count_snapshot_miss(Metrics::SnapshotMiss::kSchema);
    m.set_projection_lag("totals\"v2", 7, 1.5);
    m.count_dead_letter();
    const std::string text = m.prometheus_text("shop");
    CHECK(text.find("# TYPE shop_projection_lag_events gauge\n"
                    "shop_projection_lag_events{projection=\"totals\\\"v2\"} 7\n") !=
          std::string::npos);
    CHECK(text.find("\nshop_projection_lag_seconds{projection=\"totals\\\"v2\"} 1.5\n") !=
          std::string::npos);
    CHECK(text.find("\nshop_dead_letters_total 1\n") != std::string::npos);
    CHECK(text.find("# HELP shop_appends_total Append calls that stored events.\n"
                    "# TYPE shop_appends_total counter\n"
                    "shop_appends_total 1\n") != std::string::npos);
    CHECK(text.find("\nshop_events_appended_total 3\n") != std::string::npos);
    CHECK(text.find("\nshop_bytes_appended_total 600\n") != std::string::npos);
    CHECK(text.find("\nshop_conflicts_total 0\n") != std::string::npos);
    CHECK(text.find("# TYPE shop_snapshot_misses_total counter\n"
                    "shop_snapshot_misses_total{reason=\"none\"} 0\n"
                    "shop_snapshot_misses_total{reason=\"schema\"} 1\n"
                    "shop_snapshot_misses_total{reason=\"decode\"} 0\n") != std::string::npos);
    // Every sample line belongs to a family declared above it, and the text ends a line.
    size_t families = 0, samples = 0;
    for (size_t at = 0; at < text.size();) {
      const size_t nl = text.find('\n', at);
      REQUIRE(nl != std::string::npos);
      const std::string line = text.substr(at, nl - at);
      if (line.rfind("# TYPE ", 0) == 0) ++families;
      if (line[0] != '#') ++samples;
      at = nl + 1;
    }
    CHECK(families == 15);
    CHECK(samples == 17);
    CHECK(Metrics().prometheus_text().rfind("# HELP eventsource_appends_total", 0) == 0);
  }

  TEST_CASE("log lines reach the sink with their fields; a sink that throws loses the line") {
    std::vector<std::string> lines;
    LogSink sink = [&](LogLevel level, std::string_view message, std::span<const LogField> fields) {
      std::string line = std::string(log_level_name(level)) + " " + std::string(message);
      for (const LogField& f : fields)
        line += " " + std::string(f.key) + "=" + std::string(f.value);
      lines.push_back(line);
    };
    const LogField fields[] = {{"stream", "Order-42"}, {"version", "3"}};
    log_to(sink, LogLevel::kWarn, "conflict on save", fields);
    log_to(sink, LogLevel::kInfo, "saved");
    log_to(LogSink(), LogLevel::kError, "nobody listens");
    CHECK(lines == std::vector<std::string>{"warn conflict on save stream=Order-42 version=3",
                                            "info saved"});
    LogSink throwing = [](LogLevel, std::string_view, std::span<const LogField>) {
      throw std::runtime_error("disk full");
    };
    log_to(throwing, LogLevel::kError, "lost");  // returns; nothing escapes
    CHECK(log_level_name(LogLevel::kDebug) == "debug");
    CHECK(log_level_name(LogLevel::kError) == "error");
  }
}

}  // namespace
}  // namespace eventsource
