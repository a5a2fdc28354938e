// esdump: inspect, export, import, verify and repair an eventsource store from
// the shell. Exit codes: 0 ok, 1 damage found (verify), a failed read or a
// missing dead letter (dlq show/retry/resolve), 2 usage or I/O error. Uses
// only the engine's public API (engine/store.h).
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventsource/store.h"
#include "tools/args.h"
#include "tools/event_text.h"
#include "tools/json_event.h"
#include "tools/rfc3339.h"

namespace eventsource::tools {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitDamage = 1;  // verify found problems, or a read failed
constexpr int kExitError = 2;   // usage or I/O error

constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kDefaultImportBatch = 100;
constexpr uint64_t kMaxImportBatch = 32767;     // the engine's per-append limit
constexpr uint64_t kBackwardChunk = 4096;       // positions per backward read_all step
constexpr long kFollowPollNanos = 200'000'000;  // 200 ms between refreshes

volatile sig_atomic_t g_interrupted = 0;

void on_sigint(int) { g_interrupted = 1; }

// ---------------------------------------------------------------- output --

void out_line(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
}

template <class... Args>
void err(fmt::format_string<Args...> format, Args&&... args) {
  std::string text = fmt::format(format, std::forward<Args>(args)...);
  text.push_back('\n');
  std::fwrite(text.data(), 1, text.size(), stderr);
}

// Flushes stdout; a failed write (disk full, closed pipe) is an I/O error.
int finish_output(int code) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    err("esdump: error writing to standard output");
    return kExitError;
  }
  return code;
}

// "1 event", "2 events", "3 batches".
std::string plural(uint64_t n, std::string_view noun) {
  std::string_view suffix = n == 1 ? "" : (noun.ends_with("ch") ? "es" : "s");
  return fmt::format("{} {}{}", n, noun, suffix);
}

std::string human_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {} ({} bytes)", v, kUnits[unit], bytes);
}

// ---------------------------------------------------------------- commands --

struct Command {
  std::string_view name;
  std::string_view summary;
  std::string_view usage;  // full help text
  std::span<const OptionSpec> options;
  size_t min_positionals;
  size_t max_positionals;
  int (*run)(const ParsedArgs& args);
};

int usage_error(std::string_view command, std::string_view message) {
  err("esdump {}: {}", command, message);
  err("(see 'esdump {} --help')", command);
  return kExitError;
}

// Opens `path` read-only (must exist). On failure prints why and sets *exit_code.
std::unique_ptr<Store> open_read_only(std::string_view command, const std::string& path,
                                      int* exit_code) {
  StoreOptions options;
  options.mode = OpenMode::kReadOnly;
  options.create = CreateMode::kMustExist;
  Result<std::unique_ptr<Store>> store = Store::open(path, options);
  if (store.ok()) return std::move(store).value();
  const Status& s = store.status();
  err("esdump {}: cannot open {}: {}", command, path, s.to_string());
  if (s.code() == Code::kCorruption) {
    err("(run 'esdump verify {}' for a full report, 'esdump repair {}' to cut the damage)", path,
        path);
    *exit_code = kExitDamage;
  } else {
    *exit_code = kExitError;
  }
  return nullptr;
}

void close_quietly(Store& store, std::string_view command) {
  Status s = store.close();
  if (!s.ok()) err("esdump {}: warning: closing {}: {}", command, store.path(), s.to_string());
}

int read_failed(std::string_view command, const Store& store, const Status& s) {
  err("esdump {}: reading {} failed: {}", command, store.path(), s.to_string());
  return kExitDamage;
}

// -------------------------------------------------------------------- info --

constexpr OptionSpec kInfoOptions[] = {{"json", OptionKind::kFlag}};

int run_info(const ParsedArgs& args) {
  const std::string& path = args.positionals[0];
  int code = kExitOk;
  std::unique_ptr<Store> store = open_read_only("info", path, &code);
  if (!store) return code;
  StoreStats st = store->stats();
  close_quietly(*store, "info");

  double ratio = st.stored_record_bytes == 0 ? 1.0
                                             : static_cast<double>(st.raw_record_bytes) /
                                                   static_cast<double>(st.stored_record_bytes);
  if (args.has("json")) {
    Json j = Json::object();
    j["store"] = path;
    j["format_version"] = st.format_version;
    j["segment_size"] = st.segment_size;
    j["segments"] = {
        {"event", st.event_segments}, {"index", st.index_segments}, {"free", st.free_segments}};
    j["events"] = st.events;
    j["streams"] = st.streams;
    j["first_position"] = st.first_position.value;
    j["last_position"] = st.last_position.value;
    j["file_bytes"] = st.file_bytes;
    j["log_bytes"] = st.log_bytes;
    j["compressed_frames"] = st.compressed_frames;
    j["raw_record_bytes"] = st.raw_record_bytes;
    j["stored_record_bytes"] = st.stored_record_bytes;
    j["compression_ratio"] = ratio;
    j["index_persisted_position"] = st.index_persisted_position;
    j["checkpoint_failures"] = st.checkpoint_failures;
    j["checkpoint_failures_in_row"] = st.checkpoint_failures_in_row;
    j["last_checkpoint_error"] = st.last_checkpoint_error;
    j["snapshots"] = st.snapshots;
    j["snapshot_streams"] = st.snapshot_streams;
    j["dead_letters"] = st.dead_letters;
    j["projection_states"] = st.projection_states;
    j["aux_segments"] = st.aux_segments;
    j["aux_bytes"] = st.aux_bytes;
    j["aux_live_bytes"] = st.aux_live_bytes;
    out_line(dump_json(j));
    return finish_output(kExitOk);
  }

  const auto row = [](std::string_view label, const std::string& value) {
    out_line(fmt::format("{:<17}{}", label, value));
  };
  row("store", printable(path));
  row("format version", fmt::format("{}", st.format_version));
  row("segment size", human_bytes(st.segment_size));
  row("segments", fmt::format("{} event, {} index, {} free", st.event_segments, st.index_segments,
                              st.free_segments));
  row("events", fmt::format("{}", st.events));
  row("streams", fmt::format("{}", st.streams));
  row("positions", st.events == 0
                       ? std::string("none (empty store)")
                       : fmt::format("{} .. {}", st.first_position.value, st.last_position.value));
  row("size on disk", human_bytes(st.file_bytes));
  row("log", human_bytes(st.log_bytes));
  row("compression",
      fmt::format("{:.2f}x (records {} raw, {} stored; {} compressed frames)", ratio,
                  st.raw_record_bytes, st.stored_record_bytes, st.compressed_frames));
  uint64_t unindexed = st.last_position.value > st.index_persisted_position
                           ? st.last_position.value - st.index_persisted_position
                           : 0;
  row("persisted index",
      st.index_persisted_position == 0
          ? fmt::format("none ({} events are scanned on open)", unindexed)
          : fmt::format("through position {} ({} events past it are scanned on open)",
                        st.index_persisted_position, unindexed));
  row("snapshots", fmt::format("{} (of {})", st.snapshots, plural(st.snapshot_streams, "stream")));
  row("dead letters", fmt::format("{}", st.dead_letters));
  row("projections", fmt::format("{} saved states", st.projection_states));
  row("aux records",
      fmt::format("{} in {} ({} live)", human_bytes(st.aux_bytes),
                  plural(st.aux_segments, "aux segment"), human_bytes(st.aux_live_bytes)));
  // The writer's own handle counts failed checkpoints; seen from another
  // process, a failing writer shows as a persisted index that lags.
  if (st.checkpoint_failures > 0)
    row("checkpoints",
        fmt::format("{} failed ({} in a row): {}", st.checkpoint_failures,
                    st.checkpoint_failures_in_row, printable(st.last_checkpoint_error)));
  return finish_output(kExitOk);
}

// ----------------------------------------------------------------- streams --

constexpr OptionSpec kStreamsOptions[] = {{"json", OptionKind::kFlag},
                                          {"type", OptionKind::kValue}};

int run_streams(const ParsedArgs& args) {
  const std::string& path = args.positionals[0];
  int code = kExitOk;
  std::unique_ptr<Store> store = open_read_only("streams", path, &code);
  if (!store) return code;
  std::vector<StreamInfo> streams = store->list_streams();
  close_quietly(*store, "streams");

  const std::string* type = args.get("type");
  std::vector<std::pair<std::string, uint64_t>> rows;
  size_t width = 0;
  for (const StreamInfo& s : streams) {
    if (type != nullptr && s.type != *type) continue;
    if (args.has("json")) {
      Json j = Json::object();
      put_text(j, "stream", s.type + "-" + s.id);
      put_text(j, "type", s.type);
      put_text(j, "id", s.id);
      j["version"] = s.version.value;
      out_line(dump_json(j));
      continue;
    }
    std::string name = printable(s.type + "-" + s.id);
    width = std::max(width, name.size());
    rows.emplace_back(std::move(name), s.version.value);
  }
  for (const auto& [name, version] : rows) {
    out_line(fmt::format("{:<{}}  version {}", name, width, version));
  }
  return finish_output(kExitOk);
}

// ------------------------------------------------------------------ events --

constexpr OptionSpec kEventsOptions[] = {
    {"stream", OptionKind::kValue},  {"from", OptionKind::kValue},
    {"type", OptionKind::kRepeated}, {"stream-type", OptionKind::kValue},
    {"tenant", OptionKind::kValue},  {"limit", OptionKind::kValue},
    {"backward", OptionKind::kFlag}, {"json", OptionKind::kFlag},
    {"exact", OptionKind::kFlag},    {"follow", OptionKind::kFlag},
};

struct EventsQuery {
  std::optional<StreamId> stream;
  std::optional<uint64_t> from;
  ReadFilter filter;
  uint64_t limit = kUnlimited;
  bool backward = false;
  bool json = false;
  bool follow = false;
  ExportOptions export_options;
};

bool matches(const ReadFilter& filter, const RecordedEvent& e) {
  if (!filter.stream_type.empty() && e.stream_type != filter.stream_type) return false;
  if (filter.tenant && e.tenant != *filter.tenant) return false;
  if (filter.event_types.empty()) return true;
  for (const std::string& t : filter.event_types) {
    if (e.type == t) return true;
  }
  return false;
}

std::string render(const EventsQuery& q, const RecordedEvent& e) {
  return q.json ? dump_json(event_to_json(e, q.export_options)) : format_event_line(e);
}

// Runs one query; `command` names it in messages.
class EventsPrinter {
 public:
  EventsPrinter(const EventsQuery& q, Store& store, std::string_view command)
      : q_(q), store_(store), command_(command) {}

  int run() {
    if (q_.follow) {
      // Installed before the first read so that an early Ctrl-C still ends cleanly.
      struct sigaction action = {};
      action.sa_handler = on_sigint;
      sigemptyset(&action.sa_mask);
      sigaction(SIGINT, &action, nullptr);
      sigaction(SIGTERM, &action, nullptr);
    }
    int code = q_.stream ? (q_.backward ? stream_backward() : stream_forward())
                         : (q_.backward ? all_backward() : all_forward());
    if (code == kExitOk && q_.follow) code = follow();
    return finish_output(code);
  }

 private:
  bool done() const { return printed_ >= q_.limit; }

  void print(const RecordedEvent& e) {
    out_line(render(q_, e));
    ++printed_;
  }

  int stream_forward() {
    uint64_t from = q_.from.value_or(1);
    if (from == 0) from = 1;
    Status s =
        store_.read_stream(*q_.stream, {.from = StreamVersion(from)}, [&](const RecordedEvent& e) {
          last_version_ = e.version.value;
          if (matches(q_.filter, e)) print(e);
          return !done();
        });
    if (!s.ok()) return read_failed(command_, store_, s);
    if (last_version_ == 0) last_version_ = from - 1;
    return kExitOk;
  }

  int stream_backward() {
    // 0 (or past the end) starts at the stream's last event.
    Status s = store_.read_stream(
        *q_.stream,
        {.from = StreamVersion(q_.from.value_or(0)), .direction = ReadDirection::kBackward},
        [&](const RecordedEvent& e) {
          if (matches(q_.filter, e)) print(e);
          return !done();
        });
    return s.ok() ? kExitOk : read_failed(command_, store_, s);
  }

  int all_forward() {
    uint64_t from = q_.from.value_or(1);
    if (from == 0) from = 1;
    scanned_to_ = from - 1;
    return read_all_from(from);
  }

  // Reads [from, committed] and remembers how far it got (for --follow).
  int read_all_from(uint64_t from) {
    uint64_t committed = store_.committed_position().value;
    if (from > committed) return kExitOk;
    Status s = store_.read_all(
        {.from = GlobalPosition(from), .max_count = q_.limit - printed_, .filter = q_.filter},
        [&](const RecordedEvent& e) {
          scanned_to_ = std::max(scanned_to_, e.position.value);
          print(e);
          return !done();
        });
    if (!s.ok()) return read_failed(command_, store_, s);
    if (!done()) scanned_to_ = std::max(scanned_to_, committed);
    return kExitOk;
  }

  // read_all has no backward direction: read windows of positions going
  // down, filter here, and print each window in reverse.
  int all_backward() {
    uint64_t hi = store_.committed_position().value;
    if (q_.from && *q_.from != 0) hi = std::min(hi, *q_.from);
    std::vector<std::string> window;
    while (hi >= 1 && !done()) {
      uint64_t lo = hi > kBackwardChunk ? hi - kBackwardChunk + 1 : 1;
      window.clear();
      Status s = store_.read_all({.from = GlobalPosition(lo), .max_count = hi - lo + 1},
                                 [&](const RecordedEvent& e) {
                                   if (e.position.value > hi) return false;
                                   if (matches(q_.filter, e)) window.push_back(render(q_, e));
                                   return true;
                                 });
      if (!s.ok()) return read_failed(command_, store_, s);
      for (auto it = window.rbegin(); it != window.rend() && !done(); ++it) {
        out_line(*it);
        ++printed_;
      }
      hi = lo - 1;
    }
    return kExitOk;
  }

  // Polls for events a live writer appends until SIGINT or the limit.
  int follow() {
    while (!g_interrupted && !done()) {
      std::fflush(stdout);
      if (std::ferror(stdout)) return kExitError;
      struct timespec pause = {0, kFollowPollNanos};
      nanosleep(&pause, nullptr);  // a signal cuts it short, which is what we want
      if (g_interrupted) break;
      Result<GlobalPosition> refreshed = store_.refresh();
      if (!refreshed.ok()) return read_failed(command_, store_, refreshed.status());
      int code = kExitOk;
      if (q_.stream) {
        uint64_t before = last_version_;
        last_version_ = 0;
        Status s = store_.read_stream(*q_.stream, {.from = StreamVersion(before + 1)},
                                      [&](const RecordedEvent& e) {
                                        last_version_ = e.version.value;
                                        if (matches(q_.filter, e)) print(e);
                                        return !done();
                                      });
        if (!s.ok()) return read_failed(command_, store_, s);
        if (last_version_ == 0) last_version_ = before;
      } else {
        code = read_all_from(scanned_to_ + 1);
      }
      if (code != kExitOk) return code;
    }
    return kExitOk;
  }

  const EventsQuery& q_;
  Store& store_;
  std::string_view command_;
  uint64_t printed_ = 0;
  uint64_t scanned_to_ = 0;    // read_all: every position <= this has been considered
  uint64_t last_version_ = 0;  // read_stream: last version seen
};

int run_events(const ParsedArgs& args) {
  constexpr std::string_view kCmd = "events";
  EventsQuery q;
  if (const std::string* s = args.get("stream")) {
    Result<StreamId> id = StreamId::parse(*s);
    if (!id.ok()) return usage_error(kCmd, "bad --stream '" + *s + "': " + id.status().message());
    q.stream = std::move(id).value();
  }
  if (const std::string* s = args.get("from")) {
    Result<uint64_t> v = parse_u64(*s, "--from");
    if (!v.ok()) return usage_error(kCmd, v.status().message());
    q.from = *v;
  }
  if (const std::string* s = args.get("limit")) {
    Result<uint64_t> v = parse_u64(*s, "--limit");
    if (!v.ok()) return usage_error(kCmd, v.status().message());
    q.limit = *v;
  }
  q.filter.event_types = args.all("type");
  if (const std::string* s = args.get("stream-type")) {
    if (q.stream) return usage_error(kCmd, "--stream-type cannot be combined with --stream");
    q.filter.stream_type = *s;
  }
  if (const std::string* s = args.get("tenant")) q.filter.tenant = *s;
  q.backward = args.has("backward");
  q.json = args.has("json");
  q.follow = args.has("follow");
  q.export_options.exact_bytes = args.has("exact");
  if (q.follow && q.backward)
    return usage_error(kCmd, "--follow cannot be combined with --backward");
  if (q.limit == 0) return kExitOk;

  int code = kExitOk;
  std::unique_ptr<Store> store = open_read_only(kCmd, args.positionals[0], &code);
  if (!store) return code;
  code = EventsPrinter(q, *store, kCmd).run();
  close_quietly(*store, kCmd);
  return code;
}

// ------------------------------------------------------------------ export --

constexpr OptionSpec kExportOptions[] = {{"exact", OptionKind::kFlag}};

int run_export(const ParsedArgs& args) {
  EventsQuery q;
  q.json = true;
  q.export_options.exact_bytes = args.has("exact");
  int code = kExitOk;
  std::unique_ptr<Store> store = open_read_only("export", args.positionals[0], &code);
  if (!store) return code;
  code = EventsPrinter(q, *store, "export").run();
  close_quietly(*store, "export");
  return code;
}

// ------------------------------------------------------------------ import --

constexpr OptionSpec kImportOptions[] = {{"batch", OptionKind::kValue},
                                         {"durability", OptionKind::kValue},
                                         {"segment-size", OptionKind::kValue}};

// Appends consecutive lines of one stream as batches and keeps the counts.
class Importer {
 public:
  Importer(Store& store, std::string input_name, uint64_t batch_limit, Durability durability)
      : store_(store), input_name_(std::move(input_name)), batch_limit_(batch_limit) {
    append_options_.durability = durability;
  }

  // Adds one parsed line; may append the pending batch first. Returns false
  // after printing an error when an append failed.
  bool add(ImportedEvent ev, uint64_t line) {
    bool same_stream = !events_.empty() && ev.stream == stream_;
    if (ev.expected || !same_stream || events_.size() >= batch_limit_) {
      if (!flush()) return false;
      stream_ = ev.stream;
      expected_ = ev.expected.value_or(ExpectedVersion::any());
    }
    events_.push_back(std::move(ev.data));
    lines_.push_back(line);
    return true;
  }

  // Appends the pending batch. On kInvalidArgument for a batch of several
  // events, appends them one at a time so that the error names the line and
  // every line before it is committed.
  bool flush() {
    if (events_.empty()) return true;
    Result<AppendResult> r = store_.append(stream_, expected_, events_, append_options_);
    if (!r.ok() && r.status().code() == Code::kInvalidArgument && events_.size() > 1) {
      ExpectedVersion expected = expected_;  // then each event follows the one before
      for (size_t i = 0; i < events_.size(); ++i) {
        r = store_.append(stream_, expected, std::span<const EventData>(&events_[i], 1),
                          append_options_);
        if (!r.ok()) return fail(r.status(), lines_[i], lines_[i]);
        note(*r, 1);
        expected = ExpectedVersion::exact(r->version);
      }
    } else if (!r.ok()) {
      return fail(r.status(), lines_.front(), lines_.back());
    } else {
      note(*r, events_.size());
    }
    events_.clear();
    lines_.clear();
    return true;
  }

  void print_summary(std::string_view what) const {
    std::string range = imported_ == 0
                            ? std::string()
                            : fmt::format(", positions {} .. {}", first_position_, last_position_);
    err("esdump import: {} {} into {} of {} in {}{}{}", what, plural(imported_, "event"),
        plural(streams_.size(), "stream"), store_.path(), plural(batches_, "batch"), range,
        deduplicated_ == 0 ? std::string()
                           : fmt::format(" ({} were already stored and skipped)", deduplicated_));
  }

 private:
  void note(const AppendResult& r, size_t count) {
    ++batches_;
    imported_ += count;
    if (r.deduplicated) deduplicated_ += count;
    if (first_position_ == 0) first_position_ = r.first_position.value;
    last_position_ = std::max(last_position_, r.last_position.value);
    streams_.insert(stream_.name());
  }

  bool fail(const Status& s, uint64_t first_line, uint64_t last_line) {
    std::string lines = first_line == last_line
                            ? std::string()
                            : fmt::format(" (lines {}-{})", first_line, last_line);
    err("{}:{}: cannot append to {}{} (expected: {}): {}", input_name_, first_line,
        printable(stream_.name()), lines, expected_.to_string(), s.to_string());
    events_.clear();
    lines_.clear();
    return false;
  }

  Store& store_;
  std::string input_name_;
  uint64_t batch_limit_;
  AppendOptions append_options_;

  StreamId stream_;
  ExpectedVersion expected_ = ExpectedVersion::any();
  std::vector<EventData> events_;
  std::vector<uint64_t> lines_;

  uint64_t imported_ = 0;
  uint64_t deduplicated_ = 0;
  uint64_t batches_ = 0;
  uint64_t first_position_ = 0;
  uint64_t last_position_ = 0;
  std::set<std::string> streams_;
};

int run_import(const ParsedArgs& args) {
  constexpr std::string_view kCmd = "import";
  const std::string& path = args.positionals[0];
  std::string input = args.positionals.size() > 1 ? args.positionals[1] : "-";

  uint64_t batch = kDefaultImportBatch;
  if (const std::string* s = args.get("batch")) {
    Result<uint64_t> v = parse_u64(*s, "--batch");
    if (!v.ok()) return usage_error(kCmd, v.status().message());
    if (*v < 1 || *v > kMaxImportBatch) {
      return usage_error(kCmd, fmt::format("--batch must be 1 .. {}", kMaxImportBatch));
    }
    batch = *v;
  }
  Durability durability = Durability::kNone;  // the store is synced by close() at the end
  if (const std::string* s = args.get("durability")) {
    if (*s == "none") {
      durability = Durability::kNone;
    } else if (*s == "group") {
      durability = Durability::kGroup;
    } else if (*s == "each") {
      durability = Durability::kEach;
    } else {
      return usage_error(kCmd, "--durability must be none, group or each, not '" + *s + "'");
    }
  }
  StoreOptions options;
  options.mode = OpenMode::kReadWrite;
  options.create = CreateMode::kCreateIfMissing;
  options.durability = durability;
  std::optional<uint64_t> segment_size;
  if (const std::string* s = args.get("segment-size")) {
    Result<uint64_t> v = parse_byte_size(*s, "--segment-size");
    if (!v.ok()) return usage_error(kCmd, v.status().message());
    segment_size = *v;
    options.segment_size = *v;
  }

  std::ifstream file;
  std::istream* in = &std::cin;
  std::string input_name = "<stdin>";
  if (input != "-") {
    file.open(input, std::ios::binary);
    if (!file) {
      err("esdump {}: cannot open {}: {}", kCmd, input, std::strerror(errno));
      return kExitError;
    }
    in = &file;
    input_name = input;
  }

  struct stat st;
  bool existed = ::stat(path.c_str(), &st) == 0;
  Result<std::unique_ptr<Store>> opened = Store::open(path, options);
  if (!opened.ok()) {
    err("esdump {}: cannot open {}: {}", kCmd, path, opened.status().to_string());
    return kExitError;
  }
  std::unique_ptr<Store> store = std::move(opened).value();
  if (existed && segment_size && store->stats().segment_size != *segment_size) {
    err("esdump {}: note: --segment-size ignored, {} already exists with segments of {} bytes",
        kCmd, path, store->stats().segment_size);
  }

  Importer importer(*store, input_name, batch, durability);
  int code = kExitOk;
  std::string line;
  uint64_t line_no = 0;
  while (std::getline(*in, line)) {
    ++line_no;
    if (line_no == 1 && line.rfind("\xef\xbb\xbf", 0) == 0) line.erase(0, 3);  // UTF-8 BOM
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Result<ImportedEvent> ev = parse_import_line(line);
    if (!ev.ok()) {
      // Everything before this line stays committed: append it, then report.
      bool flushed = importer.flush();
      err("{}:{}: {}", input_name, line_no, printable(ev.status().message()));
      (void)flushed;
      code = kExitError;
      break;
    }
    if (!importer.add(std::move(ev).value(), line_no)) {
      code = kExitError;
      break;
    }
  }
  if (code == kExitOk && in->bad()) {
    err("esdump {}: error reading {}", kCmd, input_name);
    code = kExitError;
  }
  if (code == kExitOk && !importer.flush()) code = kExitError;
  Status closed = store->close();
  if (!closed.ok()) {
    err("esdump {}: closing {} failed: {}", kCmd, path, closed.to_string());
    code = kExitError;
  }
  importer.print_summary(code == kExitOk ? "imported" : "stopped; committed");
  return code;
}

// ------------------------------------------------------------------ verify --

int run_verify(const ParsedArgs& args) {
  const std::string& path = args.positionals[0];
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  int last_percent = -1;
  ProgressCallback progress;
  if (tty) {
    progress = [&](uint64_t done, uint64_t total) {
      int percent =
          total == 0 ? 100 : static_cast<int>(std::min<uint64_t>(done, total) * 100 / total);
      if (percent == last_percent) return;
      last_percent = percent;
      std::fprintf(stderr, "\rverifying %s: %3d%%", path.c_str(), percent);
      std::fflush(stderr);
    };
  }
  Result<VerifyReport> report = Store::verify(path, {.progress = progress});
  if (last_percent >= 0) std::fputs("\r\033[K", stderr);  // clear the progress line
  if (!report.ok()) {
    err("esdump verify: cannot verify {}: {}", path, report.status().to_string());
    return kExitError;
  }
  for (const VerifyProblem& p : report->problems) {
    std::string where;
    if (p.segment >= 0) where += fmt::format(" segment {}", p.segment);
    if (p.offset >= 0) where += fmt::format(" offset 0x{:x}", p.offset);
    if (!where.empty()) where = where.substr(1) + ":";
    out_line(fmt::format("{}: {}{}{}", printable(p.file.empty() ? path : p.file), where,
                         where.empty() ? "" : " ", printable(p.what)));
  }
  // The normal state after a crash: not damage, so it does not change the exit status.
  if (const std::optional<VerifyProblem>& t = report->torn_tail)
    out_line(fmt::format(
        "{}: torn tail at segment {} offset 0x{:x}: will be cut on next open (not damage; {})",
        printable(t->file.empty() ? path : t->file), t->segment, t->offset, printable(t->what)));
  std::string summary =
      fmt::format("{} frames, {} events, {} streams checked, {} bytes: ", report->frames,
                  report->events, report->streams, report->bytes_checked);
  if (report->clean()) {
    out_line(summary + "clean");
  } else {
    out_line(summary + plural(report->problems.size(), "problem"));
  }
  return finish_output(report->clean() ? kExitOk : kExitDamage);
}

// ------------------------------------------------------------------ repair --

int run_repair(const ParsedArgs& args) {
  const std::string& path = args.positionals[0];
  Result<RepairReport> report = Store::repair(path);
  if (!report.ok()) {
    err("esdump repair: cannot repair {}: {}", path, report.status().to_string());
    return kExitError;
  }
  for (const VerifyProblem& p : report->problems) {
    std::string where;
    if (p.segment >= 0) where += fmt::format(" segment {}", p.segment);
    if (p.offset >= 0) where += fmt::format(" offset 0x{:x}", p.offset);
    out_line(fmt::format("found: {}:{}: {}", printable(p.file.empty() ? path : p.file), where,
                         printable(p.what)));
  }
  if (!report->changed) {
    out_line(fmt::format("{}: nothing to repair", printable(path)));
  } else {
    out_line(fmt::format("{}: kept events through position {}, cut {} bytes", printable(path),
                         report->kept_through.value, report->bytes_cut));
    if (!report->side_file.empty()) {
      out_line(fmt::format("cut bytes saved to {}", printable(report->side_file)));
    }
  }
  return finish_output(kExitOk);
}

// --------------------------------------------------------------- snapshots --

constexpr OptionSpec kSnapshotsOptions[] = {{"json", OptionKind::kFlag},
                                            {"stream", OptionKind::kValue}};

std::string time_text(int64_t us) {
  std::optional<std::string> t = format_rfc3339_us(us);
  return t ? *t : fmt::format("{}us", us);
}

int run_snapshots(const ParsedArgs& args) {
  constexpr std::string_view kCmd = "snapshots";
  const std::string& path = args.positionals[0];
  std::optional<StreamId> only;
  if (const std::string* s = args.get("stream")) {
    Result<StreamId> id = StreamId::parse(*s);
    if (!id.ok()) return usage_error(kCmd, "bad --stream '" + *s + "': " + id.status().message());
    only = *id;
  }
  int code = kExitOk;
  std::unique_ptr<Store> store = open_read_only(kCmd, path, &code);
  if (!store) return code;
  Result<std::vector<std::pair<StreamId, Snapshot>>> list = store->list_snapshots();
  if (!list.ok()) return read_failed(kCmd, *store, list.status());
  for (const auto& [id, latest] : *list) {
    if (only && id != *only) continue;
    Result<std::vector<StreamVersion>> versions = store->snapshot_versions(id);
    if (!versions.ok()) return read_failed(kCmd, *store, versions.status());
    Result<std::optional<Snapshot>> snap = store->latest_snapshot(id);
    if (!snap.ok()) return read_failed(kCmd, *store, snap.status());
    const uint64_t size = *snap ? (*snap)->bytes.size() : 0;
    if (args.has("json")) {
      Json j = Json::object();
      put_text(j, "stream", id.type + "-" + id.id);
      j["version"] = latest.version.value;
      j["schema_version"] = latest.schema_version;
      j["time"] = time_text(latest.timestamp_us);
      j["bytes"] = size;
      Json vs = Json::array();
      for (StreamVersion v : *versions) vs.push_back(v.value);
      j["versions"] = vs;
      out_line(dump_json(j));
      continue;
    }
    std::string all;
    for (StreamVersion v : *versions) all += (all.empty() ? "" : ",") + std::to_string(v.value);
    out_line(fmt::format("{}  version {}  schema {}  {}  {}  (versions {})",
                         printable(id.type + "-" + id.id), latest.version.value,
                         latest.schema_version, plural(size, "byte"),
                         time_text(latest.timestamp_us), all));
  }
  close_quietly(*store, kCmd);
  return finish_output(kExitOk);
}

// --------------------------------------------------------------------- dlq --

constexpr OptionSpec kDlqOptions[] = {
    {"json", OptionKind::kFlag}, {"projection", OptionKind::kValue}, {"all", OptionKind::kFlag}};

Json letter_json(const DeadLetter& d, bool marked) {
  Json j = Json::object();
  j["id"] = d.id;
  put_text(j, "projection", d.projection);
  j["position"] = d.position.value;
  j["attempts"] = d.attempts;
  j["first_failure"] = time_text(d.first_failure_us);
  j["last_failure"] = time_text(d.last_failure_us);
  j["marked_for_retry"] = marked;
  put_text(j, "error", d.error);
  return j;
}

// list and show: a read-only open, so they work beside a live writer.
int run_dlq_read(const ParsedArgs& args, std::optional<uint64_t> show_id) {
  constexpr std::string_view kCmd = "dlq";
  const std::string& path = args.positionals[0];
  const std::string* projection = args.get("projection");
  const bool json = args.has("json");
  int code = kExitOk;
  std::unique_ptr<Store> store = open_read_only(kCmd, path, &code);
  if (!store) return code;
  // Malformed marks do not hide the dead letters: they are listed without
  // marks, and the exit status says a read failed.
  std::set<uint64_t> marked;
  Result<std::vector<uint64_t>> marks = store->dead_letters_marked_for_retry();
  if (marks.ok()) {
    marked.insert(marks->begin(), marks->end());
  } else {
    err("esdump {}: warning: the retry marks of {} cannot be read, shown as unmarked: {}", kCmd,
        path, marks.status().to_string());
    code = kExitDamage;
  }
  if (show_id) {
    Result<DeadLetter> d = store->dead_letter(*show_id);
    if (!d.ok()) {
      err("esdump {}: {}", kCmd, d.status().to_string());
      return d.status().code() == Code::kNotFound ? kExitDamage
                                                  : read_failed(kCmd, *store, d.status());
    }
    const bool is_marked = marked.contains(d->id);
    if (json) {
      out_line(dump_json(letter_json(*d, is_marked)));
    } else {
      out_line(fmt::format("id            {}", d->id));
      out_line(fmt::format("projection    {}", printable(d->projection)));
      out_line(fmt::format("position      {}", d->position.value));
      out_line(fmt::format("attempts      {}", d->attempts));
      out_line(fmt::format("first failure {}", time_text(d->first_failure_us)));
      out_line(fmt::format("last failure  {}", time_text(d->last_failure_us)));
      out_line(fmt::format("retry         {}",
                           is_marked ? "marked (the app retries it on its next start)" : "no"));
      out_line(fmt::format("error         {}", printable(d->error)));
    }
    close_quietly(*store, kCmd);
    return finish_output(code);
  }
  Result<std::vector<DeadLetter>> list =
      store->dead_letters(projection ? std::string_view(*projection) : std::string_view());
  if (!list.ok()) return read_failed(kCmd, *store, list.status());
  for (const DeadLetter& d : *list) {
    const bool is_marked = marked.contains(d.id);
    if (json) {
      out_line(dump_json(letter_json(d, is_marked)));
    } else {
      out_line(fmt::format("#{}{} {} position {} attempts {} last {}: {}", d.id,
                           is_marked ? " [retry]" : "", printable(d.projection), d.position.value,
                           d.attempts, time_text(d.last_failure_us), printable(d.error, 120)));
    }
  }
  close_quietly(*store, kCmd);
  return finish_output(code);
}

// retry, resolve, purge: they write, so they need the writer lock (a
// read-write open); a live writer's lock makes the open fail with its pid.
std::unique_ptr<Store> open_for_writing(const std::string& path, int* exit_code) {
  StoreOptions options;
  options.mode = OpenMode::kReadWrite;
  options.create = CreateMode::kMustExist;
  options.durability = Durability::kEach;
  Result<std::unique_ptr<Store>> opened = Store::open(path, options);
  if (opened.ok()) return std::move(opened).value();
  err("esdump dlq: cannot open {} for writing: {}", path, opened.status().to_string());
  *exit_code = opened.status().code() == Code::kCorruption ? kExitDamage : kExitError;
  return nullptr;
}

// Closes after a write; a failed close (the final checkpoint) is an error.
bool close_after_write(Store& store) {
  Status closed = store.close();
  if (closed.ok()) return true;
  err("esdump dlq: closing {}: {}", store.path(), closed.to_string());
  return false;
}

int run_dlq(const ParsedArgs& args) {
  constexpr std::string_view kCmd = "dlq";
  const std::string& path = args.positionals[0];
  const std::string action = args.positionals.size() > 1 ? args.positionals[1] : "list";
  const std::string* projection = args.get("projection");
  const bool json = args.has("json");
  const bool all = args.has("all");
  const size_t extra = args.positionals.size() > 2 ? args.positionals.size() - 2 : 0;
  if (all && action != "retry") return usage_error(kCmd, "--all goes with retry only");
  if (action == "list") {
    if (extra > 0) return usage_error(kCmd, "list takes no argument");
    return run_dlq_read(args, std::nullopt);
  }
  if (action == "show" || action == "resolve") {
    if (extra != 1) return usage_error(kCmd, action + " needs one ID");
    if (projection) return usage_error(kCmd, "--projection goes with list, retry --all and purge");
    Result<uint64_t> id = parse_u64(args.positionals[2], "ID");
    if (!id.ok()) return usage_error(kCmd, id.status().message());
    if (action == "show") return run_dlq_read(args, *id);
    int code = kExitOk;
    std::unique_ptr<Store> store = open_for_writing(path, &code);
    if (!store) return code;
    Status removed = store->remove_dead_letter(*id);
    if (!removed.ok()) {
      err("esdump {}: resolving #{} failed: {}", kCmd, *id, removed.to_string());
      return removed.code() == Code::kNotFound ? kExitDamage : kExitError;
    }
    if (!close_after_write(*store)) return kExitError;
    if (json) {
      Json j = Json::object();
      j["resolved"] = *id;
      out_line(dump_json(j));
    } else {
      out_line(fmt::format("resolved #{}", *id));
    }
    return finish_output(kExitOk);
  }
  if (action == "retry") {
    std::vector<uint64_t> ids;
    if (all) {
      if (extra > 0) return usage_error(kCmd, "retry takes IDs or --all, not both");
    } else {
      if (extra == 0) return usage_error(kCmd, "retry needs IDs or --all");
      if (projection) return usage_error(kCmd, "--projection goes with retry --all, not IDs");
      for (size_t i = 2; i < args.positionals.size(); ++i) {
        Result<uint64_t> id = parse_u64(args.positionals[i], "ID");
        if (!id.ok()) return usage_error(kCmd, id.status().message());
        ids.push_back(*id);
      }
    }
    int code = kExitOk;
    std::unique_ptr<Store> store = open_for_writing(path, &code);
    if (!store) return code;
    if (all) {
      // The writer lock is ours: no dead letter comes or goes until close.
      Result<std::vector<DeadLetter>> list =
          store->dead_letters(projection ? std::string_view(*projection) : std::string_view());
      if (!list.ok()) return read_failed(kCmd, *store, list.status());
      for (const DeadLetter& d : *list) ids.push_back(d.id);
    }
    Result<uint64_t> n = store->mark_dead_letters_for_retry(ids);
    if (!n.ok()) {
      err("esdump {}: marking for retry failed: {}", kCmd, n.status().to_string());
      switch (n.status().code()) {
        case Code::kNotFound:
        case Code::kCorruption:
          return kExitDamage;
        default:
          return kExitError;
      }
    }
    if (!close_after_write(*store)) return kExitError;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    if (json) {
      Json j = Json::object();
      j["marked"] = *n;
      j["ids"] = ids;
      out_line(dump_json(j));
    } else {
      out_line(fmt::format("marked {} for retry (the app retries them on its next start)",
                           plural(*n, "dead letter")));
    }
    return finish_output(kExitOk);
  }
  if (action != "purge")
    return usage_error(kCmd, "unknown action '" + printable(action) +
                                 "' (list, show ID, retry ID.../--all, resolve ID, purge)");
  if (extra > 0) return usage_error(kCmd, "purge takes no argument");
  int code = kExitOk;
  std::unique_ptr<Store> store = open_for_writing(path, &code);
  if (!store) return code;
  Result<uint64_t> n =
      store->purge_dead_letters(projection ? std::string_view(*projection) : std::string_view());
  if (!n.ok()) {
    err("esdump {}: purging {} failed: {}", kCmd, path, n.status().to_string());
    return kExitError;
  }
  if (!close_after_write(*store)) return kExitError;
  if (json) {
    Json j = Json::object();
    j["purged"] = *n;
    if (projection) put_text(j, "projection", *projection);
    out_line(dump_json(j));
  } else {
    out_line(fmt::format("purged {}{}", plural(*n, "dead letter"),
                         projection ? " of " + printable(*projection) : std::string()));
  }
  return finish_output(kExitOk);
}

// --------------------------------------------------------------- the table --

constexpr Command kCommands[] = {
    {"info", "format, segments, counts, size and index reach of a store",
     R"(usage: esdump info STORE [--json]

Prints the format version, segment size, segments by kind (event/index/free),
event and stream counts, first/last position, size on disk, compression ratio
(raw/stored record bytes) and how far the persisted stream index reaches.

  --json    print one JSON object instead
)",
     kInfoOptions, 1, 1, run_info},
    {"streams", "list streams and their versions",
     R"(usage: esdump streams STORE [--type T] [--json]

One line per stream, in name order: "Order-42  version 3".

  --type T  only streams of type T (the part before the first '-')
  --json    JSON lines: {"stream","type","id","version"}; a name that is not
            UTF-8 comes as "stream_b64" (etc.): its raw bytes in base64
)",
     kStreamsOptions, 1, 1, run_streams},
    {"events", "print events (all, one stream, filtered; --follow a live store)",
     R"(usage: esdump events STORE [--stream S] [--from N] [--type T]... [--stream-type T]
                     [--tenant T] [--limit N] [--backward] [--json [--exact]] [--follow]

Without --stream, reads the whole log in global order from position --from
(default 1). With --stream S (e.g. Order-42), reads that stream from version
--from. Human output is one line per event:
  #<position> <stream>@<version> <type> <time> <tenant or -> <payload, cut to ~120 chars>

  --stream S       read only stream S
  --from N         first position (or version with --stream); with --backward
                   the position/version to start from (default: the last)
  --type T         only events of type T (repeat for several types)
  --stream-type T  only events of streams of type T (not with --stream)
  --tenant T       only events of tenant T (--tenant= for events without one)
  --limit N        print at most N events
  --backward       newest first
  --json           JSON lines, as 'esdump export' writes them
  --exact          with --json: payloads/metadata that are JSON but not in
                   compact form are written as base64, so import keeps the bytes
  --follow         keep polling (every 200 ms) for events a live writer appends;
                   stop with Ctrl-C
)",
     kEventsOptions, 1, 1, run_events},
    {"export", "write every event as JSON lines (input for import)",
     R"(usage: esdump export STORE [--exact]

Writes every event in global order as one JSON object per line (the same as
'esdump events STORE --json'). Keys: position, stream, version, type, id, time
(RFC 3339 UTC, microseconds), tenant (if any), metadata (if any),
correlation_id / causation_id (if set), data. Data and metadata that are not
JSON are written as base64 strings with "data_encoding"/"metadata_encoding":
"base64". The store keeps names and tenants as raw bytes: a stream name,
event type or tenant that is not valid UTF-8 is written as "stream_b64",
"type_b64" or "tenant_b64" instead, its bytes in base64. Importing the output
into an empty store reproduces every event (ids, data, metadata, names,
tenants, times, stream versions, positions).

  --exact   also write JSON payloads that are not in compact form as base64,
            so that the imported store holds byte-identical payloads
)",
     kExportOptions, 1, 1, run_export},
    {"import", "append JSON lines (as written by export) to a store",
     R"(usage: esdump import STORE [FILE|-] [--batch N] [--durability none|group|each]
                     [--segment-size BYTES]

Reads JSON lines from FILE (default: standard input), one event per line, and
appends them to STORE (created if missing). Keys:
  "stream"            required, e.g. "Order-42"
  "type"              required, e.g. "OrderPlaced"
  "data"              required, any JSON (stored as its compact form), or a
                      base64 string with "data_encoding": "base64"
  "id"                event UUID (default: a random one)
  "tenant"            tenant id
  "stream_b64", "type_b64", "tenant_b64"   instead of "stream", "type",
                      "tenant": the raw bytes in base64 (export writes these
                      for names that are not valid UTF-8)
  "metadata"          any JSON, or base64 with "metadata_encoding": "base64"
  "correlation_id", "causation_id"   UUIDs
  "time"              RFC 3339 with any offset (default: now; the engine takes
                      exactly 1970-01-01T00:00:00Z to mean now, too)
  "expected_version"  an exact version, or "any", "no_stream", "exists": starts a
                      new batch appended with that expectation
  "position", "version"   accepted and ignored (export writes them)
Consecutive lines of one stream are appended as one atomic batch (up to
--batch events) with expected version "any" unless the first line of the batch
says otherwise. A bad line stops the import with FILE:LINE: reason; every line
before it is committed, nothing after it is. Importing events a store already
holds appends them again: an event id is only recognised when it retries the
latest batch of its stream.

  --batch N             events per batch, 1 .. 32767 (default 100)
  --durability MODE     none (default; the store is synced once at the end),
                        group or each (sync every batch)
  --segment-size BYTES  segment size of a new store, e.g. 64M (default 64M)
)",
     kImportOptions, 1, 2, run_import},
    {"snapshots", "list snapshots (latest per stream, and the versions kept)",
     R"(usage: esdump snapshots STORE [--stream S] [--json]

One line per stream with a snapshot, in name order:
  Order-42  version 17  schema 2  311 bytes  <time>  (versions 10,17)

  --stream S  only stream S
  --json      JSON lines: {"stream","version","schema_version","time","bytes","versions"}
)",
     kSnapshotsOptions, 1, 1, run_snapshots},
    {"dlq", "list, show, retry, resolve or purge dead letters of projections",
     R"(usage: esdump dlq STORE [list] [--projection P] [--json]
       esdump dlq STORE show ID [--json]
       esdump dlq STORE retry ID [ID ...] [--json]
       esdump dlq STORE retry --all [--projection P] [--json]
       esdump dlq STORE resolve ID [--json]
       esdump dlq STORE purge [--projection P] [--json]

Dead letters are events a projection gave up on. esdump cannot run a
projection's code: 'retry' marks dead letters, and the app replays the
marked ones through their projection on its next start.

  list      (default) one line per dead letter, by id:
            #ID [retry] PROJECTION position N attempts N last <time>: <error>
            ("[retry]" when it is marked for retry)
  show ID   every field of one dead letter (exit 1 if there is none)
  retry ID...  marks these dead letters for retry (exit 1, nothing marked,
            if one of them does not exist); prints "marked N dead letters
            for retry" (N: newly marked). At most 8192 are marked at once.
  retry --all  marks every dead letter (of --projection P only, if given)
  resolve ID   removes one dead letter you handled by hand (exit 1 if there
            is none); its retry mark goes with it
  purge     removes all dead letters (of --projection P only, if given)
  retry, resolve and purge open the store read-write: they fail while an app
  has it open for writing (the message names its pid).

  --projection P  only dead letters of projection P (list, retry --all, purge)
  --all           retry: every dead letter (of --projection P)
  --json          list, show: JSON lines {"id","projection","position",
                  "attempts","first_failure","last_failure",
                  "marked_for_retry","error"}; retry: {"marked","ids"} (ids:
                  the ones asked for, all marked now); resolve: {"resolved"};
                  purge: {"purged"}
)",
     kDlqOptions, 1, std::numeric_limits<size_t>::max(), run_dlq},
    {"verify",
     "check every checksum; exit 1 when damage is found",
     R"(usage: esdump verify STORE

Checks every checksum of the data file and the checkpoint file without
changing anything (safe while a writer is live). Prints each problem as
"FILE: segment S offset 0xHEX: what" and a summary line. A torn tail (a
batch a crash left half-written past the durable end, which the next open
cuts) is not a problem: it is printed as "FILE: torn tail at segment S
offset 0xHEX: will be cut on next open", and why.
Exit 0 clean (a torn tail included), 1 problems found, 2 the check itself
failed (e.g. I/O error).
)",
     {},
     1,
     1,
     run_verify},
    {"repair",
     "cut damaged bytes off the log (saved to a side file)",
     R"(usage: esdump repair STORE

Cuts the log after the last good frame, saving the cut bytes to a side file
(STORE.cut-<unix time>), and rewrites the checkpoint. Needs the writer lock
(no other process may have the store open for writing). Use it when opening
reports corruption; run 'esdump verify STORE' first to see what is damaged.
Exit 0 repaired (or nothing to repair), 2 on error.
)",
     {},
     1,
     1,
     run_repair},
};

void print_main_usage(std::FILE* to) {
  std::string text =
      "usage: esdump COMMAND STORE [options]\n\n"
      "Inspects an eventsource store (STORE is the data file, e.g. orders.evs).\n\n"
      "commands:\n";
  for (const Command& c : kCommands) text += fmt::format("  {:<9}{}\n", c.name, c.summary);
  text +=
      "\n'esdump COMMAND --help' describes a command.\n"
      "Exit status: 0 ok, 1 damage found or a read failed, 2 usage or I/O error.\n";
  std::fputs(text.c_str(), to);
}

int run_main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  if (argc < 2) {
    print_main_usage(stderr);
    return kExitError;
  }
  std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    if (name == "help" && argc > 2) {
      for (const Command& c : kCommands) {
        if (c.name == argv[2]) {
          std::fputs(std::string(c.usage).c_str(), stdout);
          return finish_output(kExitOk);
        }
      }
      err("esdump: unknown command '{}' (see 'esdump --help')", argv[2]);
      return kExitError;
    }
    print_main_usage(stdout);
    return finish_output(kExitOk);
  }
  const Command* command = nullptr;
  for (const Command& c : kCommands) {
    if (c.name == name) command = &c;
  }
  if (command == nullptr) {
    err("esdump: unknown command '{}' (see 'esdump --help')", printable(name));
    return kExitError;
  }
  Result<ParsedArgs> args =
      parse_args(std::span<char* const>(argv + 2, static_cast<size_t>(argc - 2)), command->options);
  if (!args.ok()) return usage_error(command->name, args.status().message());
  if (args->help) {
    std::fputs(std::string(command->usage).c_str(), stdout);
    return finish_output(kExitOk);
  }
  size_t n = args->positionals.size();
  if (n < command->min_positionals) return usage_error(command->name, "missing STORE argument");
  if (n > command->max_positionals) {
    return usage_error(command->name,
                       "unexpected argument '" + printable(args->positionals[n - 1]) + "'");
  }
  return command->run(*args);
}

}  // namespace
}  // namespace eventsource::tools

int main(int argc, char** argv) {
  try {
    return eventsource::tools::run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "esdump: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "esdump: internal error\n");
  }
  return 2;
}
