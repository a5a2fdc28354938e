// The esbench workloads. Each one writes and/or reads through a Backend,
// times with steady_clock, and verifies what it reads back (counts, versions,
// positions and payload byte sums) so a broken store fails the run.
#include "bench/workloads.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <latch>
#include <thread>

#include "bench/api_workloads.h"
#include "bench/json.h"
#include "bench/sync_count.h"

namespace esbench {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxPoolBytes = 64ull << 20;
constexpr uint64_t kMaxPoolPayloads = 4096;

// Where reads deposit byte sums they do not otherwise check, so the compiler
// cannot skip touching the payloads.
volatile uint64_t g_sink = 0;

// What was read back (or counted) differs from what was written.
eventsource::Status failure(std::string message) {
  return eventsource::Status(eventsource::Code::kCorruption,
                             "read-back mismatch: " + std::move(message));
}

std::optional<double> rate(double amount, double seconds) {
  if (seconds <= 0) return std::nullopt;
  return amount / seconds;
}

uint64_t logical_bytes(const eventsource::StreamId& stream, std::string_view type,
                       std::string_view payload) {
  return payload.size() + type.size() + stream.type.size() + 1 + stream.id.size() +
         kFixedRecordBytes;
}

// What a write phase did, kept client-side to verify later reads.
struct WriteStats {
  std::vector<uint64_t> versions;     // per stream: its version after the phase
  std::vector<uint64_t> stream_sums;  // per stream: byte sum of its payloads
  uint64_t events = 0;
  uint64_t calls = 0;
  uint64_t payload_sum = 0;
  uint64_t payload_bytes = 0;
  uint64_t data_bytes = 0;  // logical record bytes (see ReadEvent::record_bytes)
  double seconds = 0;
  Samples latency;  // per append call
};

// Appends `n` events in batches of `batch`, batch k to stream k % streams,
// each with the exact expected version; event i gets type i % 5 and payload i.
// Stops early (ok) once `deadline` has passed, if one is given.
eventsource::Status write_events(Backend& backend, const PayloadPool& pool,
                                 const std::vector<eventsource::StreamId>& streams, uint64_t n,
                                 uint64_t batch, eventsource::Durability durability,
                                 WriteStats* out,
                                 std::optional<Clock::time_point> deadline = std::nullopt) {
  out->versions.assign(streams.size(), 0);
  out->stream_sums.assign(streams.size(), 0);
  out->latency.reserve((n + batch - 1) / batch);
  std::vector<BenchEvent> events(batch);
  const auto start = Clock::now();
  uint64_t i = 0;
  while (i < n) {
    const uint64_t count = std::min(batch, n - i);
    const uint64_t s = out->calls % streams.size();
    for (uint64_t k = 0; k < count; ++k) {
      const std::string& payload = pool.at(i + k);
      events[k].type = kEventTypes[(i + k) % kEventTypes.size()];
      events[k].payload = payload;
      out->stream_sums[s] += pool.sum_at(i + k);
      out->payload_sum += pool.sum_at(i + k);
      out->payload_bytes += payload.size();
      out->data_bytes += logical_bytes(streams[s], events[k].type, payload);
    }
    const auto t0 = Clock::now();
    eventsource::Status status =
        backend.append(streams[s], out->versions[s], std::span(events.data(), count), durability);
    out->latency.add_seconds(seconds_since(t0));
    if (!status.ok()) {
      return eventsource::Status(
          status.code(),
          fmt::format("append #{} ({} events to {} at version {}): {}", out->calls, count,
                      streams[s].name(), out->versions[s], status.to_string()));
    }
    out->versions[s] += count;
    out->events += count;
    ++out->calls;
    i += count;
    if (deadline && Clock::now() >= *deadline) break;
  }
  out->seconds = seconds_since(start);
  return eventsource::Status();
}

std::vector<eventsource::StreamId> order_streams(uint64_t count) {
  std::vector<eventsource::StreamId> ids;
  ids.reserve(count);
  for (uint64_t s = 0; s < count; ++s)
    ids.push_back(eventsource::StreamId{"Order", std::to_string(s)});
  return ids;
}

size_t pool_count(const Config& cfg) {
  uint64_t count = std::min<uint64_t>(std::max<uint64_t>(cfg.n, 1), kMaxPoolPayloads);
  if (cfg.payload > 0) count = std::min<uint64_t>(count, kMaxPoolBytes / cfg.payload);
  return std::max<uint64_t>(count, 1);
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

eventsource::Status make_fresh_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!fs::create_directories(dir, ec) || ec) {
    return eventsource::Status(eventsource::Code::kIoError,
                               "cannot create " + dir + ": " + ec.message());
  }
  return eventsource::Status();
}

std::string error_text(const eventsource::Status& status) { return status.to_string(); }

// Runs this program with `args` (after argv[0]) and a pipe on which the child
// reports; returns the child's pid and sets *read_fd.
eventsource::Result<pid_t> spawn_child(const Config& cfg, std::vector<std::string> args,
                                       int* read_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return eventsource::io_error("pipe2", errno);
  // The write end must survive exec: dup it without O_CLOEXEC.
  const int child_fd = ::fcntl(fds[1], F_DUPFD, 3);
  if (child_fd < 0) {
    const int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return eventsource::io_error("fcntl(F_DUPFD)", e);
  }
  args.push_back("--result-fd");
  args.push_back(std::to_string(child_fd));
  std::vector<std::string> all = {cfg.self_exe};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    for (int fd : {fds[0], fds[1], child_fd}) ::close(fd);
    return eventsource::io_error("fork", e);
  }
  if (pid == 0) {
    ::execv(cfg.self_exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  ::close(child_fd);
  *read_fd = fds[0];
  return pid;
}

// Reads from `fd` until EOF, or until a newline when `line_only`.
std::string read_report(int fd, bool line_only) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
    if (line_only && out.find('\n') != std::string::npos) break;
  }
  return out;
}

std::string wait_text(int wstatus) {
  if (WIFEXITED(wstatus)) return fmt::format("exit status {}", WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) return fmt::format("killed by signal {}", WTERMSIG(wstatus));
  return "unknown wait status";
}

// Runs this program with `args` in a child process and waits for it. Returns
// the rest of its report after "ok ", or an error naming `what`, the child's
// exit and its report.
eventsource::Result<std::string> run_child(const Config& cfg, std::vector<std::string> args,
                                           const char* what) {
  int fd = -1;
  auto pid = spawn_child(cfg, std::move(args), &fd);
  if (!pid.ok()) return pid.take_status();
  std::string report = read_report(fd, false);
  ::close(fd);
  int wstatus = 0;
  ::waitpid(*pid, &wstatus, 0);
  while (!report.empty() && report.back() == '\n') report.pop_back();
  if (report.rfind("ok ", 0) == 0 && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
    return report.substr(3);
  }
  return eventsource::Status(eventsource::Code::kIoError,
                             fmt::format("{} child failed ({}): {}", what, wait_text(wstatus),
                                         report.empty() ? "no report" : report));
}

void write_report(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::vector<std::string> child_args(const Config& cfg, const char* mode, const std::string& backend,
                                    const std::string& dir, uint64_t n) {
  return {mode,
          "--backend",
          backend,
          "--store",
          dir,
          "--n",
          std::to_string(n),
          "--payload",
          std::to_string(cfg.payload),
          "--streams",
          std::to_string(cfg.streams),
          "--batch",
          std::to_string(cfg.batch),
          "--seed",
          std::to_string(cfg.seed)};
}

// Event counts for `open`: 10^4 .. 10^6 (10^7 only when n >= 10^7), never more than n.
std::vector<uint64_t> open_sizes(uint64_t n) {
  std::vector<uint64_t> sizes;
  for (uint64_t size : {10000ull, 100000ull, 1000000ull, 10000000ull}) {
    if (size <= n) sizes.push_back(size);
  }
  if (sizes.empty()) sizes.push_back(std::max<uint64_t>(n, 1));
  return sizes;
}

// Stream counts for open_streams: --open-streams as given, else
// kOpenStreamCounts capped at n.
std::vector<uint64_t> open_stream_counts(const Config& cfg) {
  if (!cfg.open_streams.empty()) return cfg.open_streams;
  std::vector<uint64_t> counts;
  for (uint64_t count : kOpenStreamCounts) {
    const uint64_t capped = std::min(count, cfg.n);
    if (counts.empty() || counts.back() != capped) counts.push_back(capped);
  }
  return counts;
}

std::string mb(uint64_t bytes) {
  return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6);
}

// File sizes in the units of allocation: "12.0 KiB", "64.0 MiB".
std::string kib_or_mib(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  return b < 1024 * 1024 ? fmt::format("{:.1f} KiB", b / 1024)
                         : fmt::format("{:.1f} MiB", b / (1024 * 1024));
}

// Writes `n` events into a fresh store in `dir`, one event per append,
// round-robin over `streams` (untimed, durability none), and closes it
// cleanly. Checks the store's count before closing.
eventsource::Status write_closed_store(Backend& b, const PayloadPool& pool, const std::string& dir,
                                       uint64_t n, uint64_t streams, WriteStats* w) {
  EVENTSOURCE_RETURN_IF_ERROR(make_fresh_dir(dir));
  EVENTSOURCE_RETURN_IF_ERROR(b.open(dir, false));
  eventsource::Status status;
  if (n > 0) {
    status = write_events(b, pool, order_streams(streams), n, 1, eventsource::Durability::kNone, w);
  }
  if (status.ok()) {
    auto last = b.last_position();
    if (!last.ok()) {
      status = last.take_status();
    } else if (*last != n) {
      status = failure(fmt::format("store reports {} events after appending {}", *last, n));
    }
  }
  eventsource::Status close_status = b.close();
  EVENTSOURCE_RETURN_IF_ERROR(status);
  return close_status;
}

// When `status` (of opening `b`) is ok, the value of `query(b)`; closes `b`
// either way. The first failure wins.
eventsource::Result<uint64_t> query_then_close(
    Backend& b, eventsource::Status status,
    const std::function<eventsource::Result<uint64_t>(Backend&)>& query) {
  uint64_t value = 0;
  if (status.ok()) {
    auto result = query(b);
    if (result.ok()) {
      value = *result;
    } else {
      status = result.take_status();
    }
  }
  eventsource::Status close_status = b.close();
  if (status.ok()) status = std::move(close_status);
  if (!status.ok()) return status;
  return value;
}

// The common end of a timed workload: records RSS, closes the backend (its
// failure counts when nothing failed before), and on success fills the
// throughput and latency fields of `m`. Returns false with m.error set.
bool finish(Measurement& m, Backend& b, eventsource::Status status, uint64_t events,
            uint64_t data_bytes, double seconds, Samples& latency, uint64_t store_bytes) {
  m.rss_bytes = rss_bytes();
  eventsource::Status close_status = b.close();
  if (status.ok()) status = std::move(close_status);
  if (!status.ok()) {
    m.error = error_text(status);
    return false;
  }
  m.n = events;
  m.seconds = seconds;
  m.ops_per_s = rate(static_cast<double>(events), seconds);
  m.mb_per_s = rate(static_cast<double>(data_bytes) / 1e6, seconds);
  m.p50_us = latency.percentile(50);
  m.p99_us = latency.percentile(99);
  m.store_bytes = store_bytes;
  return true;
}

}  // namespace

const char* durability_name(eventsource::Durability d) {
  switch (d) {
    case eventsource::Durability::kNone:
      return "none";
    case eventsource::Durability::kGroup:
      return "group";
    case eventsource::Durability::kEach:
      return "each";
  }
  return "?";
}

std::string Measurement::to_json() const {
  std::string out = fmt::format(
      R"({{"workload":{},"backend":{},"n":{},"seconds":{},"ops_per_s":{},"mb_per_s":{},)"
      R"("p50_us":{},"p99_us":{},"store_bytes":{},"rss_bytes":{})",
      json_string(workload), json_string(backend), n, json_number(seconds, 6),
      json_number(ops_per_s, 1), json_number(mb_per_s, 2), json_number(p50_us, 2),
      json_number(p99_us, 2), store_bytes, rss_bytes);
  for (const auto& [key, value] : extra) out += fmt::format(",{}:{}", json_string(key), value);
  if (failed()) out += fmt::format(",\"error\":{}", json_string(error));
  out += "}";
  return out;
}

namespace {
bool g_caller_event_ids = false;
}  // namespace

void set_caller_event_ids(bool on) { g_caller_event_ids = on; }
bool caller_event_ids() { return g_caller_event_ids; }

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "engine") return make_engine_backend();
  if (name == "sqlite") return make_sqlite_backend();
  return nullptr;
}

struct Runner::Dataset {
  std::string dir;
  WriteStats writes;
  uint64_t store_bytes = 0;
};

Runner::Runner(Config config, std::string base_dir)
    : cfg_(std::move(config)),
      base_(std::move(base_dir)),
      pool_(cfg_.seed, cfg_.payload, pool_count(cfg_)),
      stream_ids_(order_streams(cfg_.streams)) {}

Runner::~Runner() = default;

std::optional<Clock::time_point> Runner::deadline() const {
  if (cfg_.time_limit_s <= 0) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(cfg_.time_limit_s));
}

std::string Runner::fresh_dir(const std::string& name) { return base_ + "/" + name; }

Measurement Runner::start(const std::string& workload, const std::string& backend) const {
  Measurement m;
  m.workload = workload;
  m.backend = backend;
  m.extra.emplace_back("payload", std::to_string(cfg_.payload));
  return m;
}

std::vector<Measurement> Runner::run(const std::string& workload, const std::string& backend) {
  if (workload == "append") return {run_append(backend)};
  if (workload == "append_sync") return {run_append_sync(backend)};
  if (workload == "concurrent_append") return {run_concurrent_append(backend)};
  if (workload == "read_stream") return {run_read_stream(backend)};
  if (workload == "read_type") return {run_read_type(backend)};
  if (workload == "replay") return {run_replay(backend)};
  if (workload == "open") return run_open(backend);
  if (workload == "open_streams") return run_open_streams(backend);
  if (workload == "store_size") return run_store_size(backend);
  if (workload == "bytes_per_event") return {run_bytes_per_event(backend)};
  if (is_api_workload(workload)) {
    const std::string dir = fresh_dir(backend + "-" + workload);
    if (eventsource::Status s = make_fresh_dir(dir); !s.ok()) {
      Measurement m = start(workload, backend);
      m.error = error_text(s);
      return {m};
    }
    std::vector<Measurement> out = run_api_workload(cfg_, workload, backend, dir);
    if (!cfg_.keep_store) remove_dir(dir);
    return out;
  }
  Measurement m = start(workload, backend);
  m.error = "unknown workload";
  return {m};
}

Measurement Runner::run_append(const std::string& backend) {
  Measurement m = start("append", backend);
  auto ds = std::make_unique<Dataset>();
  ds->dir = fresh_dir(backend + "-append");
  if (eventsource::Status s = make_fresh_dir(ds->dir); !s.ok()) {
    m.error = error_text(s);
    return m;
  }
  std::unique_ptr<Backend> b = make_backend(backend);
  eventsource::Status status = b->open(ds->dir, false);
  if (status.ok()) {
    status = write_events(*b, pool_, stream_ids_, cfg_.n, cfg_.batch, cfg_.durability, &ds->writes);
  }
  if (status.ok()) {
    auto last = b->last_position();
    if (!last.ok()) {
      status = last.take_status();
    } else if (*last != ds->writes.events) {
      status = failure(
          fmt::format("store reports {} events after appending {}", *last, ds->writes.events));
    }
  }
  WriteStats& w = ds->writes;
  if (!finish(m, *b, std::move(status), w.events, w.data_bytes, w.seconds, w.latency, 0)) return m;
  ds->store_bytes = dir_allocated_bytes(ds->dir);
  m.store_bytes = ds->store_bytes;
  m.extra.emplace_back("batch", std::to_string(cfg_.batch));
  m.extra.emplace_back("durability", json_string(durability_name(cfg_.durability)));
  m.extra.emplace_back("streams", std::to_string(cfg_.streams));
  m.extra.emplace_back("calls", std::to_string(w.calls));
  datasets_[backend] = std::move(ds);
  return m;
}

Measurement Runner::run_append_sync(const std::string& backend) {
  Measurement m = start("append_sync", backend);
  const std::string dir = fresh_dir(backend + "-append_sync");
  if (eventsource::Status s = make_fresh_dir(dir); !s.ok()) {
    m.error = error_text(s);
    return m;
  }
  const uint64_t n = std::min(cfg_.n, kAppendSyncCap);
  WriteStats w;
  std::unique_ptr<Backend> b = make_backend(backend);
  eventsource::Status status = b->open(dir, false);
  if (status.ok()) {
    status =
        write_events(*b, pool_, stream_ids_, n, 1, eventsource::Durability::kEach, &w, deadline());
  }
  if (!finish(m, *b, std::move(status), w.events, w.data_bytes, w.seconds, w.latency, 0)) return m;
  m.store_bytes = dir_allocated_bytes(dir);
  m.extra.emplace_back("batch", "1");
  m.extra.emplace_back("durability", json_string("each"));
  m.extra.emplace_back("cap", std::to_string(kAppendSyncCap));
  m.extra.emplace_back("time_limited", w.events < n ? "true" : "false");
  if (!cfg_.keep_store) remove_dir(dir);
  return m;
}

Measurement Runner::run_concurrent_append(const std::string& backend) {
  Measurement m = start("concurrent_append", backend);
  const std::string dir = fresh_dir(backend + "-concurrent_append");
  if (eventsource::Status s = make_fresh_dir(dir); !s.ok()) {
    m.error = error_text(s);
    return m;
  }
  const uint64_t total = std::min(cfg_.n, kConcurrentCap);
  const uint64_t threads = std::max<uint64_t>(1, std::min(cfg_.threads, total));
  const uint64_t streams_per_thread = std::max<uint64_t>(1, cfg_.streams / threads);
  std::unique_ptr<Backend> b = make_backend(backend);
  eventsource::Status status = b->open(dir, false);
  if (!status.ok()) {
    m.error = error_text(status);
    return m;
  }

  struct PerThread {
    Samples latency;
    eventsource::Status status;
    uint64_t events = 0;
    uint64_t data_bytes = 0;
  };
  std::vector<PerThread> per(threads);
  std::latch start_line(static_cast<ptrdiff_t>(threads + 1));
  std::optional<Clock::time_point> stop_at;
  std::vector<std::thread> workers;
  for (uint64_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      PerThread& me = per[t];
      const uint64_t count = total / threads + (t < total % threads ? 1 : 0);
      std::vector<eventsource::StreamId> mine;
      for (uint64_t j = 0; j < streams_per_thread; ++j) {
        mine.push_back(eventsource::StreamId{"Conc", fmt::format("{}-{}", t, j)});
      }
      std::vector<uint64_t> versions(mine.size(), 0);
      me.latency.reserve(count);
      start_line.arrive_and_wait();
      for (uint64_t k = 0; k < count; ++k) {
        const uint64_t s = k % mine.size();
        const uint64_t index = t * total + k;
        BenchEvent event{kEventTypes[k % kEventTypes.size()], pool_.at(index)};
        const auto t0 = Clock::now();
        eventsource::Status st =
            b->append(mine[s], versions[s], std::span(&event, 1), eventsource::Durability::kEach);
        me.latency.add_seconds(seconds_since(t0));
        if (!st.ok()) {
          me.status = eventsource::Status(st.code(), fmt::format("thread {} append to {}: {}", t,
                                                                 mine[s].name(), st.to_string()));
          return;
        }
        ++versions[s];
        ++me.events;
        me.data_bytes += logical_bytes(mine[s], event.type, event.payload);
        if (stop_at && Clock::now() >= *stop_at) break;
      }
    });
  }
  stop_at = deadline();  // before the latch releases the workers
  const uint64_t syncs_before = sync_calls();
  start_line.arrive_and_wait();
  const auto t0 = Clock::now();
  for (std::thread& w : workers) w.join();
  const double seconds = seconds_since(t0);
  const uint64_t syncs = sync_calls() - syncs_before;

  Samples latency;
  uint64_t events = 0;
  uint64_t data_bytes = 0;
  for (PerThread& p : per) {
    if (status.ok() && !p.status.ok()) status = p.status;
    latency.merge(p.latency);
    events += p.events;
    data_bytes += p.data_bytes;
  }
  if (status.ok()) {
    auto last = b->last_position();
    if (!last.ok()) {
      status = last.take_status();
    } else if (*last != events) {
      status = failure(
          fmt::format("store reports {} events after {} concurrent appends", *last, events));
    }
  }
  if (!finish(m, *b, std::move(status), events, data_bytes, seconds, latency, 0)) return m;
  m.store_bytes = dir_allocated_bytes(dir);
  m.extra.emplace_back("threads", std::to_string(threads));
  m.extra.emplace_back("batch", "1");
  m.extra.emplace_back("durability", json_string("each"));
  m.extra.emplace_back("cap", std::to_string(kConcurrentCap));
  m.extra.emplace_back("time_limited", events < total ? "true" : "false");
  // Every durable append is covered by a sync, so syncs == 0 means the
  // counting wrappers were not linked in: report null rather than nonsense.
  const std::optional<double> per_sync =
      syncs > 0 ? std::optional<double>(static_cast<double>(events) / static_cast<double>(syncs))
                : std::nullopt;
  m.extra.emplace_back("syncs", syncs > 0 ? std::to_string(syncs) : "null");
  m.extra.emplace_back("appends_per_sync", json_number(per_sync, 2));
  if (per_sync) m.note = fmt::format("{:.2f} appends/sync ({} syncs)", *per_sync, syncs);
  if (!cfg_.keep_store) remove_dir(dir);
  return m;
}

eventsource::Result<Runner::Dataset*> Runner::dataset(const std::string& backend) {
  auto it = datasets_.find(backend);
  if (it != datasets_.end()) return it->second.get();
  fmt::print(stderr, "esbench: writing {} events to {} for the read workloads (untimed)\n", cfg_.n,
             backend);
  auto ds = std::make_unique<Dataset>();
  ds->dir = fresh_dir(backend + "-data");
  EVENTSOURCE_RETURN_IF_ERROR(make_fresh_dir(ds->dir));
  std::unique_ptr<Backend> b = make_backend(backend);
  EVENTSOURCE_RETURN_IF_ERROR(b->open(ds->dir, false));
  eventsource::Status status = write_events(*b, pool_, stream_ids_, cfg_.n, cfg_.batch,
                                            eventsource::Durability::kNone, &ds->writes);
  eventsource::Status close_status = b->close();
  EVENTSOURCE_RETURN_IF_ERROR(status);
  EVENTSOURCE_RETURN_IF_ERROR(close_status);
  ds->store_bytes = dir_allocated_bytes(ds->dir);
  Dataset* raw = ds.get();
  datasets_[backend] = std::move(ds);
  return raw;
}

const Runner::Dataset* Runner::dataset_or_fail(const std::string& backend, Measurement* m) {
  auto ds = dataset(backend);
  if (ds.ok()) return *ds;
  m->error = error_text(ds.status());
  return nullptr;
}

Measurement Runner::run_read_stream(const std::string& backend) {
  Measurement m = start("read_stream", backend);
  const Dataset* found = dataset_or_fail(backend, &m);
  if (found == nullptr) return m;
  const Dataset& ds = *found;
  std::unique_ptr<Backend> b = make_backend(backend);
  eventsource::Status status = b->open(ds.dir, false);
  if (!status.ok()) {
    m.error = error_text(status);
    return m;
  }
  // K distinct random streams (partial Fisher-Yates).
  std::vector<uint64_t> order(cfg_.streams);
  for (uint64_t s = 0; s < order.size(); ++s) order[s] = s;
  Rng rng(mix_seed(cfg_.seed, 0x5157));
  const uint64_t k = std::min<uint64_t>(cfg_.streams, kReadStreamCount);
  for (uint64_t i = 0; i < k; ++i) std::swap(order[i], order[i + rng.below(order.size() - i)]);

  Samples latency;
  latency.reserve(k);
  uint64_t events = 0;
  uint64_t data_bytes = 0;
  const auto start_time = Clock::now();
  for (uint64_t i = 0; i < k && status.ok(); ++i) {
    const uint64_t s = order[i];
    uint64_t count = 0;
    uint64_t sum = 0;
    bool in_order = true;
    const auto t0 = Clock::now();
    status = b->read_stream(stream_ids_[s], [&](const ReadEvent& e) {
      ++count;
      if (e.version != count) in_order = false;
      sum += byte_sum(e.payload);
      data_bytes += e.record_bytes;
      return true;
    });
    latency.add_seconds(seconds_since(t0));
    events += count;
    if (status.ok() &&
        (count != ds.writes.versions[s] || sum != ds.writes.stream_sums[s] || !in_order)) {
      status = failure(fmt::format(
          "read_stream {}: read {} events (byte sum {}, versions {}), wrote {} (byte sum {})",
          stream_ids_[s].name(), count, sum, in_order ? "in order" : "OUT OF ORDER",
          ds.writes.versions[s], ds.writes.stream_sums[s]));
    }
  }
  const double seconds = seconds_since(start_time);
  if (!finish(m, *b, std::move(status), events, data_bytes, seconds, latency, ds.store_bytes))
    return m;
  m.extra.emplace_back("calls", std::to_string(k));
  m.extra.emplace_back("store_events", std::to_string(ds.writes.events));
  return m;
}

Measurement Runner::run_read_type(const std::string& backend) {
  Measurement m = start("read_type", backend);
  const Dataset* found = dataset_or_fail(backend, &m);
  if (found == nullptr) return m;
  const Dataset& ds = *found;
  const uint64_t total = ds.writes.events;
  std::unique_ptr<Backend> b = make_backend(backend);
  eventsource::Status status = b->open(ds.dir, false);
  if (!status.ok()) {
    m.error = error_text(status);
    return m;
  }
  Rng rng(mix_seed(cfg_.seed, 0x7e9e));
  const uint64_t pages = std::min<uint64_t>(kReadTypePages, std::max<uint64_t>(1, total / 100));
  const uint64_t types = kEventTypes.size();
  // Events of type t among global indexes 0..x (event i has type i % types).
  auto count_upto = [types](uint64_t t, int64_t x) -> uint64_t {
    return x >= static_cast<int64_t>(t) ? (static_cast<uint64_t>(x) - t) / types + 1 : 0;
  };
  Samples latency;
  latency.reserve(pages);
  uint64_t events = 0;
  uint64_t data_bytes = 0;
  uint64_t touched = 0;
  const auto start_time = Clock::now();
  for (uint64_t page = 0; page < pages && status.ok() && total > 0; ++page) {
    const uint64_t t = rng.below(types);
    const uint64_t from = 1 + rng.below(total);
    const std::string_view type = kEventTypes[t];
    uint64_t count = 0;
    uint64_t last = 0;
    bool ok = true;
    const auto t0 = Clock::now();
    status = b->read_all(from, type, kReadTypePageSize, [&](const ReadEvent& e) {
      ++count;
      if (e.type != type || e.position < from || e.position <= last ||
          (e.position - 1) % types != t) {
        ok = false;
      }
      last = e.position;
      touched += byte_sum(e.payload);
      data_bytes += e.record_bytes;
      return true;
    });
    latency.add_seconds(seconds_since(t0));
    events += count;
    const uint64_t expected =
        std::min<uint64_t>(kReadTypePageSize, count_upto(t, static_cast<int64_t>(total) - 1) -
                                                  count_upto(t, static_cast<int64_t>(from) - 2));
    if (status.ok() && (count != expected || !ok)) {
      status =
          failure(fmt::format("read_all type {} from {}: read {} events ({}), expected {}", type,
                              from, count, ok ? "all matching" : "SOME WRONG", expected));
    }
  }
  const double seconds = seconds_since(start_time);
  g_sink = touched;
  if (!finish(m, *b, std::move(status), events, data_bytes, seconds, latency, ds.store_bytes))
    return m;
  m.extra.emplace_back("calls", std::to_string(pages));
  m.extra.emplace_back("page", std::to_string(kReadTypePageSize));
  m.extra.emplace_back("store_events", std::to_string(total));
  return m;
}

Measurement Runner::run_replay(const std::string& backend) {
  Measurement m = start("replay", backend);
  const Dataset* found = dataset_or_fail(backend, &m);
  if (found == nullptr) return m;
  const Dataset& ds = *found;
  auto report =
      run_child(cfg_, child_args(cfg_, "--internal-replay", backend, ds.dir, cfg_.n), "replay");
  if (!report.ok()) {
    m.error = error_text(report.status());
    return m;
  }
  uint64_t events = 0, sum = 0, bytes = 0, rss = 0;
  double seconds = 0, open_seconds = 0;
  if (std::sscanf(report->c_str(), "%" SCNu64 " %" SCNu64 " %" SCNu64 " %lf %lf %" SCNu64, &events,
                  &sum, &bytes, &seconds, &open_seconds, &rss) != 6) {
    m.error = "replay child sent a malformed report: " + *report;
    return m;
  }
  if (events != ds.writes.events || sum != ds.writes.payload_sum) {
    m.error = fmt::format("replay read {} events (payload byte sum {}), wrote {} (byte sum {})",
                          events, sum, ds.writes.events, ds.writes.payload_sum);
    return m;
  }
  m.n = events;
  m.seconds = seconds;
  m.ops_per_s = rate(static_cast<double>(events), seconds);
  m.mb_per_s = rate(static_cast<double>(bytes) / 1e6, seconds);
  m.store_bytes = ds.store_bytes;
  m.rss_bytes = rss;
  m.extra.emplace_back("open_s", json_number(open_seconds, 6));
  m.extra.emplace_back("process", json_string("fresh"));
  return m;
}

// Fills a fresh `dir` with `size` events from a child process that is
// SIGKILLed after its last append returned (no close, no final checkpoint).
eventsource::Status Runner::crash_write(const std::string& backend, const std::string& dir,
                                        uint64_t size) {
  EVENTSOURCE_RETURN_IF_ERROR(make_fresh_dir(dir));
  int fd = -1;
  auto pid =
      spawn_child(cfg_, child_args(cfg_, "--internal-crash-writer", backend, dir, size), &fd);
  if (!pid.ok()) return pid.take_status();
  const std::string report = read_report(fd, true);
  ::close(fd);
  const bool ready = report.rfind("ready", 0) == 0;
  if (ready) ::kill(*pid, SIGKILL);
  int wstatus = 0;
  ::waitpid(*pid, &wstatus, 0);
  if (ready) return eventsource::Status();
  std::string text = report;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return eventsource::Status(eventsource::Code::kIoError,
                             fmt::format("crash writer child failed ({}): {}", wait_text(wstatus),
                                         text.empty() ? "no report" : text));
}

std::vector<Measurement> Runner::run_open(const std::string& backend) {
  std::vector<Measurement> out;
  for (uint64_t size : open_sizes(cfg_.n)) {
    const std::string dir = fresh_dir(fmt::format("{}-open-{}", backend, size));
    Measurement crashed = start("open_crashed", backend);
    Measurement clean = start("open_clean", backend);
    crashed.n = clean.n = size;

    // open_crashed: each trial opens what a freshly killed writer left (its
    // unsynced pages included). open_clean: the last recovered store, closed
    // cleanly, opened again.
    auto timed_opens = [&](bool after_crash, Measurement* m) -> eventsource::Status {
      Samples samples;
      for (int trial = 0; trial < kOpenTrials; ++trial) {
        if (after_crash) EVENTSOURCE_RETURN_IF_ERROR(crash_write(backend, dir, size));
        std::unique_ptr<Backend> b = make_backend(backend);
        const auto t0 = Clock::now();
        eventsource::Status st = b->open(dir, false);
        samples.add_seconds(seconds_since(t0));
        if (!st.ok()) return st;
        auto last = b->last_position();
        m->rss_bytes = rss_bytes();
        eventsource::Status close_status = b->close();
        if (!last.ok()) return last.take_status();
        if (*last != size) {
          return failure(fmt::format("open found {} events, {} were written", *last, size));
        }
        EVENTSOURCE_RETURN_IF_ERROR(close_status);
      }
      m->p50_us = samples.percentile(50);
      m->p99_us = samples.percentile(99);
      m->seconds = *m->p50_us / 1e6;
      m->store_bytes = dir_allocated_bytes(dir);
      m->extra.emplace_back("trials", std::to_string(kOpenTrials));
      return eventsource::Status();
    };

    eventsource::Status status = timed_opens(true, &crashed);
    if (!status.ok()) crashed.error = error_text(status);
    out.push_back(std::move(crashed));
    if (status.ok()) status = timed_opens(false, &clean);
    if (!status.ok()) clean.error = error_text(status);
    out.push_back(std::move(clean));
    if (!cfg_.keep_store) remove_dir(dir);
  }
  return out;
}

std::vector<Measurement> Runner::run_open_streams(const std::string& backend) {
  std::vector<Measurement> out;
  for (uint64_t count : open_stream_counts(cfg_)) {
    Measurement m = start("open_streams", backend);
    m.n = count;
    const std::string dir = fresh_dir(fmt::format("{}-open_streams-{}", backend, count));
    std::unique_ptr<Backend> b = make_backend(backend);
    WriteStats w;
    eventsource::Status status = write_closed_store(*b, pool_, dir, count, count, &w);
    // Each trial: a fresh process opens the cleanly closed store once.
    Samples samples;
    uint64_t rss_before = 0, rss_after = 0;
    for (int trial = 0; trial < kOpenTrials && status.ok(); ++trial) {
      auto report =
          run_child(cfg_, child_args(cfg_, "--internal-open", backend, dir, count), "open");
      if (!report.ok()) {
        status = report.take_status();
        break;
      }
      double seconds = 0;
      uint64_t before = 0, after = 0, events = 0;
      if (std::sscanf(report->c_str(), "%lf %" SCNu64 " %" SCNu64 " %" SCNu64, &seconds, &before,
                      &after, &events) != 4) {
        status = failure("open child sent a malformed report: " + *report);
      } else if (events != count) {
        status = failure(fmt::format("open found {} events, {} were written", events, count));
      }
      samples.add_seconds(seconds);
      rss_before = std::max(rss_before, before);
      rss_after = std::max(rss_after, after);
    }
    if (!status.ok()) {
      m.error = error_text(status);
    } else {
      m.p50_us = samples.percentile(50);
      m.p99_us = samples.percentile(99);
      m.seconds = *m.p50_us / 1e6;
      m.rss_bytes = rss_after;
      m.store_bytes = dir_allocated_bytes(dir);
      m.extra.emplace_back("streams", std::to_string(count));
      m.extra.emplace_back("trials", std::to_string(kOpenTrials));
      m.extra.emplace_back("process", json_string("fresh"));
      m.extra.emplace_back("rss_before_open_bytes", std::to_string(rss_before));
      m.extra.emplace_back("write_s", json_number(w.seconds, 3));
      m.note = fmt::format("RSS {} after open, {} before", mb(rss_after), mb(rss_before));
    }
    out.push_back(std::move(m));
    if (!cfg_.keep_store) remove_dir(dir);
  }
  return out;
}

std::vector<Measurement> Runner::run_store_size(const std::string& backend) {
  std::vector<Measurement> out;
  for (uint64_t events : kSmallStoreEvents) {
    Measurement m = start("store_size", backend);
    m.n = events;
    const std::string dir = fresh_dir(fmt::format("{}-store_size-{}", backend, events));
    std::unique_ptr<Backend> b = make_backend(backend);
    WriteStats w;
    eventsource::Status status = write_closed_store(*b, pool_, dir, events, kSmallStoreStreams, &w);
    if (!status.ok()) {
      m.error = error_text(status);
    } else {
      std::string files = "{";
      std::string note;
      uint64_t length = 0;
      for (const FileBytes& f : dir_files(dir)) {
        m.store_bytes += f.allocated;
        length += f.length;
        files += fmt::format("{}{}:{{\"allocated\":{},\"length\":{}}}", files.size() > 1 ? "," : "",
                             json_string(f.name), f.allocated, f.length);
        note += fmt::format("{}{} {}", note.empty() ? "" : ", ", f.name, kib_or_mib(f.allocated));
      }
      files += "}";
      m.extra.emplace_back("streams", std::to_string(events > 0 ? kSmallStoreStreams : 0));
      m.extra.emplace_back("length_bytes", std::to_string(length));
      m.extra.emplace_back("files", files);
      m.note = note.empty() ? "no files" : note;
    }
    out.push_back(std::move(m));
    if (!cfg_.keep_store) remove_dir(dir);
  }
  return out;
}

Measurement Runner::run_bytes_per_event(const std::string& backend) {
  Measurement m = start("bytes_per_event", backend);
  const Dataset* found = dataset_or_fail(backend, &m);
  if (found == nullptr) return m;
  const Dataset& ds = *found;
  std::unique_ptr<Backend> b = make_backend(backend);
  auto stored = query_then_close(*b, b->open(ds.dir, true),
                                 [](Backend& opened) { return opened.stored_bytes(); });
  const uint64_t events = ds.writes.events;
  if (!stored.ok() || events == 0) {
    m.error =
        stored.ok() ? error_text(failure("the store has no events")) : error_text(stored.status());
    return m;
  }
  const double n = static_cast<double>(events);
  const double per_event = static_cast<double>(*stored) / n;
  m.n = events;
  m.store_bytes = ds.store_bytes;
  m.extra.emplace_back("bytes_per_event", json_number(per_event, 2));
  m.extra.emplace_back("stored_bytes", std::to_string(*stored));
  m.extra.emplace_back("file_bytes_per_event",
                       json_number(static_cast<double>(ds.store_bytes) / n, 2));
  m.extra.emplace_back("payload_bytes_per_event",
                       json_number(static_cast<double>(ds.writes.payload_bytes) / n, 2));
  m.extra.emplace_back("batch", std::to_string(cfg_.batch));
  m.note = fmt::format("{:.1f} B/event stored, {:.1f} B/event on disk", per_event,
                       static_cast<double>(ds.store_bytes) / n);
  return m;
}

int replay_child(const Config& cfg, const std::string& backend, const std::string& dir,
                 int result_fd) {
  (void)cfg;
  std::unique_ptr<Backend> b = make_backend(backend);
  if (b == nullptr) {
    write_report(result_fd, "error unknown backend\n");
    return 2;
  }
  const auto open_start = Clock::now();
  eventsource::Status status = b->open(dir, true);
  const double open_seconds = seconds_since(open_start);
  uint64_t events = 0, sum = 0, bytes = 0;
  double seconds = 0;
  if (status.ok()) {
    bool in_order = true;
    const auto t0 = Clock::now();
    status = b->read_all(1, "", UINT64_MAX, [&](const ReadEvent& e) {
      ++events;
      if (e.position != events) in_order = false;
      sum += byte_sum(e.payload);
      bytes += e.record_bytes;
      return true;
    });
    seconds = seconds_since(t0);
    if (status.ok() && !in_order) status = failure("read_all returned positions out of order");
  }
  const uint64_t rss = rss_bytes();
  eventsource::Status close_status = b->close();
  if (status.ok()) status = std::move(close_status);
  if (!status.ok()) {
    write_report(result_fd, "error " + status.to_string() + "\n");
    return 1;
  }
  write_report(result_fd, fmt::format("ok {} {} {} {:.9f} {:.9f} {}\n", events, sum, bytes, seconds,
                                      open_seconds, rss));
  return 0;
}

int open_child(const Config& cfg, const std::string& backend, const std::string& dir,
               int result_fd) {
  (void)cfg;
  std::unique_ptr<Backend> b = make_backend(backend);
  if (b == nullptr) {
    write_report(result_fd, "error unknown backend\n");
    return 2;
  }
  const uint64_t rss_before = rss_bytes();
  const auto t0 = Clock::now();
  eventsource::Status status = b->open(dir, false);
  const double seconds = seconds_since(t0);
  const uint64_t rss_after = rss_bytes();
  auto events = query_then_close(*b, std::move(status),
                                 [](Backend& opened) { return opened.last_position(); });
  if (!events.ok()) {
    write_report(result_fd, "error " + events.status().to_string() + "\n");
    return 1;
  }
  write_report(result_fd,
               fmt::format("ok {:.9f} {} {} {}\n", seconds, rss_before, rss_after, *events));
  return 0;
}

int crash_writer_child(const Config& cfg, const std::string& backend, const std::string& dir,
                       int result_fd) {
  std::unique_ptr<Backend> b = make_backend(backend);
  if (b == nullptr) {
    write_report(result_fd, "error unknown backend\n");
    return 2;
  }
  const PayloadPool pool(cfg.seed, cfg.payload, pool_count(cfg));
  const std::vector<eventsource::StreamId> streams = order_streams(cfg.streams);
  WriteStats w;
  eventsource::Status status = b->open(dir, false);
  if (status.ok()) {
    status = write_events(*b, pool, streams, cfg.n, cfg.batch, eventsource::Durability::kNone, &w);
  }
  if (!status.ok()) {
    write_report(result_fd, "error " + status.to_string() + "\n");
    return 1;
  }
  write_report(result_fd, "ready\n");
  for (;;) ::pause();  // until SIGKILL: no close, no checkpoint
}

}  // namespace esbench
