// Randomized model test of engine::Store: thousands of seeded random appends,
// idempotent retries, conflicts, reads, checkpoints and reopens, each checked
// against a simple in-memory model of streams and the global log. Set
// ES_TEST_SEED=<n> to replay a failing run (the seed is printed on failure).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string expected_to_string(const ExpectedVersion& e) {
  switch (e.kind()) {
    case ExpectedVersion::Kind::kAny:
      return "any";
    case ExpectedVersion::Kind::kNoStream:
      return "no_stream";
    case ExpectedVersion::Kind::kStreamExists:
      return "exists";
    case ExpectedVersion::Kind::kExact:
      return "exact(" + std::to_string(e.version().value) + ")";
  }
  return "?";
}

const std::vector<std::string> kStreamTypes = {"Order", "Customer", "Cart", "Invoice", "Shipment"};
const std::vector<std::string> kEventTypes = {"Created", "Renamed", "ItemAdded", "ItemRemoved",
                                              "Closed"};
const std::vector<std::string> kTenants = {"", "acme", "globex"};

// The model: the global log in order and, per stream, its positions.
struct Model {
  std::vector<OwnedEvent> log;  // log[p - 1] is position p
  std::map<StreamId, std::vector<uint64_t>> streams;

  // The last successful (not deduplicated) append of each stream: always the
  // stream's tail, so retrying it must be deduplicated.
  struct LastBatch {
    ExpectedVersion expected = ExpectedVersion::any();
    std::vector<EventData> events;  // with the ids the engine stored
    AppendResult result;
  };
  std::map<StreamId, LastBatch> last_batch;

  uint64_t version(const StreamId& s) const {
    auto it = streams.find(s);
    return it == streams.end() ? 0 : it->second.size();
  }
  uint64_t committed() const { return log.size(); }

  std::vector<StreamInfo> list_streams() const {
    std::vector<StreamInfo> out;
    for (const auto& [id, positions] : streams) {
      out.push_back(StreamInfo{id.type, id.id, StreamVersion(positions.size())});
    }
    std::sort(out.begin(), out.end(), [](const StreamInfo& a, const StreamInfo& b) {
      return a.type + "-" + a.id < b.type + "-" + b.id;
    });
    return out;
  }

  bool matches(const OwnedEvent& e, const ReadFilter& f) const {
    if (!f.event_types.empty() &&
        std::find(f.event_types.begin(), f.event_types.end(), e.type) == f.event_types.end()) {
      return false;
    }
    if (!f.stream_type.empty() && e.stream_type != f.stream_type) return false;
    if (f.tenant && e.tenant != *f.tenant) return false;
    return true;
  }
};

void require_events_equal(const std::vector<OwnedEvent>& got, const std::vector<OwnedEvent>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("event #" << i << "\n  got  " << got[i].describe() << "\n  want " << want[i].describe());
    REQUIRE(got[i] == want[i]);
  }
}

class ModelRun {
 public:
  ModelRun(uint64_t seed, StoreOptions options, const std::string& path)
      : rng_(seed), options_(std::move(options)), path_(path) {
    for (size_t t = 0; t < kStreamTypes.size(); ++t) {
      for (int i = 0; i < 10; ++i) {
        std::string id = std::to_string(i);
        if (i == 7) id = "with-dashes-" + std::to_string(t);  // ids may contain '-'
        if (i == 8) id = std::string("bin\0\xff\x01", 6);     // ids may hold any bytes
        streams_.push_back(StreamId{kStreamTypes[t], id});
      }
    }
    store_ = open_or_fail(path_, options_);
  }

  void run(int ops) {
    std::string what;
    int op = 0;
    INFO("op #" << op << ": " << what);
    for (op = 0; op < ops; ++op) {
      if (op == ops / 2 || one_in(400)) {
        what = "close + reopen";
        reopen();
        continue;
      }
      const int r = uniform(0, 99);
      if (r < 52) {
        append(what);
      } else if (r < 60) {
        retry(what);
      } else if (r < 70) {
        read_stream(what);
      } else if (r < 80) {
        read_all(what);
      } else if (r < 86) {
        what = "stream_version";
        for (int i = 0; i < 3; ++i) {
          const StreamId& s = pick_stream();
          INFO("stream " << s.name());
          REQUIRE(store_->stream_version(s) == StreamVersion(model_.version(s)));
        }
      } else if (r < 89) {
        what = "list_streams";
        check_list_streams(*store_);
      } else if (r < 93) {
        what = "committed_position + stats";
        check_counts(*store_);
      } else if (r < 94) {
        what = "checkpoint";
        EVENTSOURCE_REQUIRE_OK(store_->checkpoint());
        check_counts(*store_);
      } else {
        append(what);
      }
    }
    what = "final close + reopen";
    reopen();
    check_everything(*store_);
  }

  const Store& store() const { return *store_; }
  uint64_t appends() const { return appends_; }
  uint64_t conflicts() const { return conflicts_; }
  uint64_t dedups() const { return dedups_; }
  uint64_t reopens() const { return reopens_; }

  void close() { EVENTSOURCE_REQUIRE_OK(store_->close()); }

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  uint64_t uniform64(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool one_in(int n) { return uniform(0, n - 1) == 0; }

  const StreamId& pick_stream() { return streams_[uniform(0, streams_.size() - 1)]; }

  Uuid random_uuid() { return make_uuid(rng_(), rng_()); }

  std::string random_payload() {
    const int kind = uniform(0, 99);
    if (kind < 5) return "";
    if (kind < 45) {
      return "{\"n\":" + std::to_string(rng_() % 100000) + ",\"note\":\"" +
             std::string(uniform(0, 60), static_cast<char>('a' + uniform(0, 25))) + "\"}";
    }
    if (kind < 75) {  // long and repetitive: compresses well
      std::string line = "{\"sku\":\"SKU-" + std::to_string(rng_() % 50) + "\",\"qty\":1},";
      std::string s = "[";
      const int target = uniform(200, 3000);
      while (static_cast<int>(s.size()) < target) s += line;
      return s + "]";
    }
    std::string s(uniform(1, 1500), '\0');  // binary, incompressible
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }

  EventData random_event() {
    EventData e;
    e.type = kEventTypes[uniform(0, kEventTypes.size() - 1)];
    e.payload = random_payload();
    if (!one_in(10)) e.id = random_uuid();  // else: the engine makes one
    e.tenant = kTenants[uniform(0, kTenants.size() - 1)];
    if (!one_in(10))
      e.timestamp_us = 1'600'000'000'000'000 + static_cast<int64_t>(rng_() % 1'000'000'000'000);
    if (one_in(3)) e.correlation_id = random_uuid();
    if (one_in(3)) e.causation_id = random_uuid();
    if (one_in(2)) {
      e.metadata = "{\"user\":\"u" + std::to_string(rng_() % 100) + "\"}";
    } else if (one_in(4)) {
      e.metadata = std::string("\0meta\xfe", 6);
    }
    return e;
  }

  void append(std::string& what) {
    const StreamId& s = pick_stream();
    const uint64_t cur = model_.version(s);
    ExpectedVersion expected = ExpectedVersion::any();
    bool accept = true;
    const int kind = uniform(0, 99);
    if (kind < 25) {
      expected = ExpectedVersion::any();
    } else if (kind < 40) {
      expected = ExpectedVersion::no_stream();
      accept = cur == 0;
    } else if (kind < 60) {
      expected = ExpectedVersion::exists();
      accept = cur > 0;
    } else if (kind < 85) {
      expected = ExpectedVersion::exact(StreamVersion(cur));
    } else {
      uint64_t wrong = cur + uniform64(1, 3);
      if (cur > 0 && one_in(2)) wrong = uniform64(0, cur - 1);
      expected = ExpectedVersion::exact(StreamVersion(wrong));
      accept = false;
    }
    std::vector<EventData> events(uniform(1, 5));
    for (EventData& e : events) e = random_event();
    what = "append " + std::to_string(events.size()) + " events to " + s.name() + " at version " +
           std::to_string(cur) + " expecting " + expected_to_string(expected);

    const uint64_t committed_before = model_.committed();
    const int64_t before_us = now_us();
    Result<AppendResult> r = store_->append(s, expected, events);
    const int64_t after_us = now_us();
    if (!accept) {
      INFO("append -> " << r.status().to_string());
      REQUIRE(r.status().code() == Code::kConflict);
      REQUIRE(r.status().actual_version() == static_cast<int64_t>(cur));
      REQUIRE(store_->committed_position() == GlobalPosition(committed_before));
      REQUIRE(store_->stream_version(s) == StreamVersion(cur));
      ++conflicts_;
      return;
    }
    EVENTSOURCE_REQUIRE_OK(r);
    REQUIRE_FALSE(r->deduplicated);
    REQUIRE(r->version == StreamVersion(cur + events.size()));
    REQUIRE(r->first_position == GlobalPosition(committed_before + 1));
    REQUIRE(r->last_position == GlobalPosition(committed_before + events.size()));
    REQUIRE(store_->committed_position() == r->last_position);
    ++appends_;

    // Read the batch back; learn the ids and timestamps the engine chose.
    ReadResult back = read_all_events(*store_, r->first_position, {}, events.size());
    EVENTSOURCE_REQUIRE_OK(back.status);
    REQUIRE(back.events.size() == events.size());
    auto& positions = model_.streams[s];
    for (size_t i = 0; i < events.size(); ++i) {
      EventData& sent = events[i];
      const OwnedEvent& got = back.events[i];
      INFO("read back " << got.describe());
      OwnedEvent want;
      want.position = GlobalPosition(committed_before + 1 + i);
      want.version = StreamVersion(cur + 1 + i);
      want.stream_type = s.type;
      want.stream_id = s.id;
      want.type = sent.type;
      want.tenant = sent.tenant;
      want.metadata = sent.metadata;
      want.payload = sent.payload;
      want.correlation_id = sent.correlation_id;
      want.causation_id = sent.causation_id;
      if (sent.id.is_nil()) {
        REQUIRE_FALSE(got.id.is_nil());
        sent.id = got.id;
      }
      want.id = sent.id;
      if (sent.timestamp_us == 0) {
        REQUIRE(got.timestamp_us >= before_us - 1'000'000);
        REQUIRE(got.timestamp_us <= after_us + 1'000'000);
        sent.timestamp_us = got.timestamp_us;
      }
      want.timestamp_us = sent.timestamp_us;
      REQUIRE(got == want);
      model_.log.push_back(want);
      positions.push_back(want.position.value);
    }
    model_.last_batch[s] = Model::LastBatch{expected, events, r.value()};
  }

  void retry(std::string& what) {
    if (model_.last_batch.empty()) return append(what);
    auto it = model_.last_batch.begin();
    std::advance(it, uniform(0, model_.last_batch.size() - 1));
    const auto& [s, batch] = *it;
    what = "retry the last batch of " + s.name() + " (" + std::to_string(batch.events.size()) +
           " events expecting " + expected_to_string(batch.expected) + ")";
    const uint64_t committed_before = model_.committed();
    Result<AppendResult> r = store_->append(s, batch.expected, batch.events);
    EVENTSOURCE_REQUIRE_OK(r);
    REQUIRE(r->deduplicated);
    REQUIRE(r->first_position == batch.result.first_position);
    REQUIRE(r->last_position == batch.result.last_position);
    REQUIRE(r->version == batch.result.version);
    REQUIRE(store_->committed_position() == GlobalPosition(committed_before));
    REQUIRE(store_->stream_version(s) == StreamVersion(model_.version(s)));
    ++dedups_;
  }

  void read_stream(std::string& what) {
    const StreamId s = one_in(10) ? StreamId{"Ghost", "nobody"} : pick_stream();
    const uint64_t ver = model_.version(s);
    const bool forward = one_in(2);
    const uint64_t from = forward ? uniform64(1, ver + 2) : uniform64(0, ver + 2);
    uint64_t max_count;
    const int m = uniform(0, 99);
    if (m < 5) {
      max_count = 0;
    } else if (m < 45) {
      max_count = uniform64(1, 5);
    } else if (m < 75) {
      max_count = uniform64(1, ver + 3);
    } else {
      max_count = kUnlimited;
    }
    const uint64_t stop_after = one_in(7) ? uniform64(1, 3) : kUnlimited;
    what = "read_stream " + s.name() + (forward ? " forward" : " backward") + " from " +
           std::to_string(from) + " max " + std::to_string(max_count) + " stop after " +
           std::to_string(stop_after) + " (version " + std::to_string(ver) + ")";

    std::vector<OwnedEvent> want;
    const auto it = model_.streams.find(s);
    auto take = [&](uint64_t v) { want.push_back(model_.log[it->second[v - 1] - 1]); };
    if (ver > 0) {
      if (forward) {
        for (uint64_t v = from; v <= ver && want.size() < max_count; ++v) take(v);
      } else {
        const uint64_t start = (from == 0 || from > ver) ? ver : from;
        for (uint64_t v = start; v >= 1 && want.size() < max_count; --v) take(v);
      }
    }
    if (want.size() > stop_after) want.resize(stop_after);

    std::vector<OwnedEvent> got;
    Status st = store_->read_stream(
        s,
        {.from = StreamVersion(from),
         .max_count = max_count,
         .direction = forward ? ReadDirection::kForward : ReadDirection::kBackward},
        [&](const RecordedEvent& e) {
          got.push_back(OwnedEvent::from(e));
          return got.size() < stop_after;
        });
    EVENTSOURCE_REQUIRE_OK(st);
    require_events_equal(got, want);
  }

  void read_all(std::string& what) {
    const uint64_t committed = model_.committed();
    const uint64_t from = uniform64(1, committed + 2);
    ReadFilter filter;
    if (!one_in(3)) {
      // Mostly unfiltered or lightly filtered reads, sometimes several filters.
    } else {
      const int n = uniform(1, 2);
      for (int i = 0; i < n; ++i) {
        filter.event_types.push_back(one_in(8) ? "NoSuchType"
                                               : kEventTypes[uniform(0, kEventTypes.size() - 1)]);
      }
    }
    if (one_in(3)) filter.stream_type = kStreamTypes[uniform(0, kStreamTypes.size() - 1)];
    if (one_in(2)) filter.tenant = kTenants[uniform(0, kTenants.size() - 1)];
    uint64_t max_count;
    const int m = uniform(0, 99);
    if (m < 30) {
      max_count = uniform64(1, 10);
    } else if (m < 75) {
      max_count = uniform64(1, 300);
    } else {
      max_count = kUnlimited;
    }
    const uint64_t stop_after = one_in(7) ? uniform64(1, 3) : kUnlimited;
    std::string types;
    for (const auto& t : filter.event_types) types += t + ",";
    what = "read_all from " + std::to_string(from) + " types [" + types + "] stream type '" +
           filter.stream_type + "' tenant " + (filter.tenant ? "'" + *filter.tenant + "'" : "-") +
           " max " + std::to_string(max_count) + " stop after " + std::to_string(stop_after) +
           " (committed " + std::to_string(committed) + ")";

    std::vector<OwnedEvent> want;
    for (uint64_t p = from; p <= committed && want.size() < max_count; ++p) {
      if (model_.matches(model_.log[p - 1], filter)) want.push_back(model_.log[p - 1]);
    }
    if (want.size() > stop_after) want.resize(stop_after);

    std::vector<OwnedEvent> got;
    Status st =
        store_->read_all({.from = GlobalPosition(from), .max_count = max_count, .filter = filter},
                         [&](const RecordedEvent& e) {
                           got.push_back(OwnedEvent::from(e));
                           return got.size() < stop_after;
                         });
    EVENTSOURCE_REQUIRE_OK(st);
    require_events_equal(got, want);
  }

  void check_list_streams(const Store& store) {
    const std::vector<StreamInfo> got = store.list_streams();
    const std::vector<StreamInfo> want = model_.list_streams();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("stream #" << i << " got " << got[i].type << "-" << got[i].id << " v"
                      << got[i].version.value << ", want " << want[i].type << "-" << want[i].id
                      << " v" << want[i].version.value);
      REQUIRE(got[i].type == want[i].type);
      REQUIRE(got[i].id == want[i].id);
      REQUIRE(got[i].version == want[i].version);
    }
  }

  void check_counts(const Store& store) {
    REQUIRE(store.committed_position() == GlobalPosition(model_.committed()));
    const StoreStats stats = store.stats();
    REQUIRE(stats.events == model_.committed());
    REQUIRE(stats.streams == model_.streams.size());
    REQUIRE(stats.segment_size == kMiB);
    if (model_.committed() > 0) {
      REQUIRE(stats.first_position == GlobalPosition(1));
      REQUIRE(stats.last_position == GlobalPosition(model_.committed()));
    }
  }

  void check_everything(const Store& store) {
    check_counts(store);
    check_list_streams(store);
    ReadResult all = read_all_events(store);
    EVENTSOURCE_REQUIRE_OK(all.status);
    require_events_equal(all.events, model_.log);
    for (const StreamId& s : streams_) {
      INFO("stream " << s.name());
      REQUIRE(store.stream_version(s) == StreamVersion(model_.version(s)));
    }
  }

  void reopen() {
    EVENTSOURCE_REQUIRE_OK(store_->close());
    ++reopens_;
    {
      Result<VerifyReport> report = Store::verify(path_);
      EVENTSOURCE_REQUIRE_OK(report);
      INFO("first problem: " << (report->clean()
                                     ? std::string("-")
                                     : report->problems[0].file + " segment " +
                                           std::to_string(report->problems[0].segment) +
                                           " offset " + std::to_string(report->problems[0].offset) +
                                           ": " + report->problems[0].what));
      REQUIRE(report->clean());
      REQUIRE(report->events == model_.committed());
    }
    // segment_size is fixed at creation: a different value on reopen is ignored.
    StoreOptions reopen_options = options_;
    reopen_options.segment_size = 4 * kMiB;
    store_ = open_or_fail(path_, reopen_options);
    check_everything(*store_);

    // A read-only handle beside the writer sees the same committed state.
    StoreOptions ro = options_;
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path_, ro);
    check_counts(*reader);
    check_list_streams(*reader);
    EVENTSOURCE_REQUIRE_OK(reader->close());
  }

  std::mt19937_64 rng_;
  StoreOptions options_;
  std::string path_;
  std::vector<StreamId> streams_;
  std::unique_ptr<Store> store_;
  Model model_;
  uint64_t appends_ = 0;
  uint64_t conflicts_ = 0;
  uint64_t dedups_ = 0;
  uint64_t reopens_ = 0;
};

TEST_SUITE("model") {
  TEST_CASE("random appends, retries, conflicts and reads match the model across segment rolls") {
    const uint64_t seed = seed_from_env_or_random();
    CAPTURE(seed);
    TempDir dir("es-model");
    ModelRun run(seed, small_store_options(), dir.file("model.evs"));
    run.run(4000);
    const StoreStats stats = run.store().stats();
    MESSAGE(run.appends() << " appends, " << run.conflicts() << " conflicts, " << run.dedups()
                          << " retries, " << run.reopens() << " reopens, " << stats.event_segments
                          << " event segments");
    CHECK(stats.event_segments >= 2);  // the workload must have rolled segments
    CHECK(run.appends() > 1000);
    CHECK(run.conflicts() > 50);
    CHECK(run.dedups() > 50);
    CHECK(run.reopens() >= 2);
    run.close();
  }

  TEST_CASE("random workload with compressed frames matches the model") {
    const uint64_t seed = seed_from_env_or_random();
    CAPTURE(seed);
    TempDir dir("es-model-zstd");
    StoreOptions options = small_store_options();
    options.compress_min_bytes = 512;
    ModelRun run(seed, options, dir.file("model.evs"));
    run.run(5000);
    const StoreStats stats = run.store().stats();
    MESSAGE(run.appends() << " appends, " << stats.compressed_frames << " compressed frames, "
                          << stats.stored_record_bytes << " of " << stats.raw_record_bytes
                          << " record bytes stored, " << stats.event_segments << " event segments");
    CHECK(stats.compressed_frames > 0);
    CHECK(stats.stored_record_bytes < stats.raw_record_bytes);
    CHECK(stats.event_segments >= 2);
    run.close();
  }
}

}  // namespace
}  // namespace eventsource::testing
