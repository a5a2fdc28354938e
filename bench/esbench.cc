// esbench: runs event-store workloads (append, reads, replay, open, sizes)
// against the eventsource engine and SQLite, printing one JSON object per
// result on stdout and a human-readable table on stderr; optionally keeps the
// run as a JSON file and draws it as a PNG. Exits non-zero if anything fails.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/api_workloads.h"
#include "bench/plot.h"
#include "bench/report.h"
#include "bench/workloads.h"

namespace esbench {
namespace {

constexpr const char* kUsage = R"(usage: esbench [flags]

Runs event-store workloads and prints one JSON object per result line on
stdout: {"workload","backend","n","seconds","ops_per_s","mb_per_s","p50_us",
"p99_us","store_bytes","rss_bytes", plus extra keys}. A human-readable table
and progress notes go to stderr, so stdout stays machine-readable.
Exits 1 if any workload fails (an error, or a read that returns other events
than were written), 2 on bad flags.

flags:
  --backend engine|sqlite|all   store to measure (default engine; all = both,
                                side by side)
  --workload NAME[,NAME..]|api|all  default all: append, append_sync,
                                concurrent_append, read_stream, read_type,
                                replay, open, open_streams, store_size,
                                bytes_per_event, then the api/ workloads (api =
                                only those): api_append, api_load,
                                api_aggregate, api_save, json_codec,
                                bus_dispatch_sync, bus_dispatch_async,
                                projection_catchup, live_latency,
                                live_latency_xproc
  --n N               events (default 1000000; 1e6 notation accepted)
  --payload BYTES     payload size, exact (default 200)
  --streams N         streams, written round-robin (default 10000)
  --batch N           events per append in append (default 100, max 32767)
  --durability none|group|each   durability of append (default none)
  --threads N         threads of concurrent_append (default 16)
  --store PATH        directory for the stores (default: a fresh temp dir in
                      $TMPDIR or /tmp, removed at the end; a given PATH is kept)
  --seed N            seed of payloads and random reads (default 42)
  --event-ids         every appended event carries an id of the caller's: the
                      engine checks each against its event-id table, SQLite
                      keeps a UNIQUE index on ids (default: store-made ids)
  --compress BYTES    engine: zstd-compress frames of at least BYTES (default
                      0 = off); `esdump info` on a kept --store shows the ratio
  --time-limit S      append_sync and concurrent_append stop after S seconds
                      (default 10, 0 = none) and report the n they reached,
                      with "time_limited":true
  --open-streams N[,N..]  stream counts of open_streams (default 1000,1000000,
                      each capped at --n)
  --json FILE         also write the run (date, machine, flags, every result,
                      failures with "error") to FILE as one JSON document
  --plot FILE.png     after the run, draw engine/SQLite ratios per workload
                      and the open-time, size-on-disk and RSS scaling curves
                      into FILE.png, titled with the machine and the date;
                      needs gnuplot (Debian package gnuplot-nox), checked
                      before the run starts
  --help

workloads:
  append             n events in batches of --batch, each with the exact
                     expected version; ops = events/s, latency per append call
  append_sync        one event per append, durability each; n capped at 2000
                     (and by --time-limit)
  concurrent_append  --threads threads appending single events to their own
                     streams, durability each (group commit); n capped at 20000
                     (and by --time-limit); latency per append
  read_stream        all events of min(streams, 1000) random streams of the
                     append store, opened afresh; latency per stream. Appends go
                     round-robin, --batch events to one stream each: at the
                     defaults a stream is one frame of 100 events; --batch 1
                     spreads each stream over n/streams frames
  read_type          min(1000, n/100) pages of 100 events of one type (5 types
                     round-robin) from a random position; latency per page
  replay             a fresh process opens the store read-only and reads every
                     event in global order; ops = events/s
  open               open after a killed writer (open_crashed) and after a clean
                     close (open_clean) of 10^4, 10^5, 10^6 events (10^7 when
                     n >= 10^7; never more than n); p50/p99 of 3 opens,
                     seconds = p50, ops_per_s and mb_per_s null
  open_streams       for each --open-streams count S: a store of S streams with
                     one event each (one append per event), closed cleanly,
                     then opened by 3 fresh processes; seconds = p50 open time,
                     rss_bytes = RSS after open (rss_before_open_bytes before)
  store_size         size on disk (st_blocks*512 of every file: data file and
                     checkpoint file, or SQLite's database file) of a cleanly
                     closed empty store and of one with 100 events (one per
                     append, 10 streams); per-file sizes under "files"
  bytes_per_event    bytes per event of the append store: engine
                     StoreStats::log_bytes, SQLite database file size
                     (bytes_per_event), and allocated bytes on disk
                     (file_bytes_per_event)

api/ workloads of the event bus and subscriptions (--backend engine also
adds backend "memory" rows, InMemoryEventStore, where marked *):
  bus_dispatch_sync  InMemoryEventBus publish, one event per call, to 4 no-op
  bus_dispatch_async subscribers; async: 2 workers, queue 1024, timed until
                     wait_idle returns. n capped at 300000; ns_per_event, and
                     batch100_ns_per_event for 100 events per call; p50/p99 per
                     event over chunks of 1000. Run once (engine pass), no store
  projection_catchup* n events (capped at 300000, SQLite and memory 50000),
                     then medians of 3 interleaved rounds of: catchup_read_all
                     (EventStore::read_all, no-op callback), catchup_handler
                     (Subscription from the beginning, no-op handler),
                     catchup_checkpoint (the same, checkpoint per batch of
                     1000: engine records with durability group, also none;
                     memory: InMemoryProjectionStore; not SQLite),
                     catchup_batched (start_batched); to_raw = share of
                     read_all's rate
  live_latency*      a live Subscription in this process; 2000 events appended
                     one at a time, one per 200 us, each stamped with its
                     append start (CLOCK_MONOTONIC); latency = handler time -
                     stamp, p50/p99 and p999_us. The store's default durability
                     (engine group, SQLite synchronous=FULL); the engine also
                     as live_latency_none (durability none)
  live_latency_xproc the same, followed by a forked process that opens the
                     store read-only (SQLite: a connection of its own) with
                     poll_interval 1 ms (live_latency_xproc_2ms: 2 ms, the
                     default) and sends its percentiles back; durability none,
                     so that the writer keeps its pace; live_latency_xproc_group:
                     1000 events at the store's default durability, poll 1 ms

concurrent_append also reports "syncs" and "appends_per_sync": fdatasync and
fsync calls of the process during the run, counted by esbench's own wrappers
of those two libc functions (null if they were not called through them).

Every read touches every payload byte. mb_per_s counts logical record bytes:
payload, type, stream name, tenant, metadata and 72 bytes of fixed fields.
Payloads cycle through a pool of up to 4096 distinct JSON order events.
SQLite runs in WAL mode, synchronous=OFF for durability none and FULL
otherwise, 64 MiB page cache, 256 MiB mmap, an index on (type, position),
and one connection serialized by a mutex (also for concurrent_append).
)";

struct Flags {
  Config cfg;
  // "", "--internal-replay", "--internal-open" or "--internal-crash-writer"
  std::string mode;
  int result_fd = -1;
  bool help = false;
  std::string json_path;  // --json
  std::string plot_path;  // --plot
};

bool parse_count(const std::string& text, uint64_t* out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno == 0 && *end == '\0' && text[0] != '-') {
    *out = v;
    return true;
  }
  // Scientific notation: 1e6, 2.5e5.
  errno = 0;
  const double d = std::strtod(text.c_str(), &end);
  if (errno != 0 || *end != '\0' || !(d >= 0) || d > 1e18 || d != std::floor(d)) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t comma = text.find(',', begin);
    const size_t end = comma == std::string::npos ? text.size() : comma;
    if (end > begin) out.push_back(text.substr(begin, end - begin));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  return out;
}

// Returns "" on success, else the problem.
std::string parse_flags(int argc, char** argv, Flags* flags) {
  Config& cfg = flags->cfg;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    if (arg == "--help" || arg == "-h") {
      flags->help = true;
      continue;
    }
    if (arg == "--event-ids") {
      esbench::set_caller_event_ids(true);
      continue;
    }
    if (arg == "--internal-replay" || arg == "--internal-open" ||
        arg == "--internal-crash-writer") {
      flags->mode = arg;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) return arg + " needs a value";
      value = argv[++i];
    }
    uint64_t number = 0;
    auto need_count = [&](uint64_t min, uint64_t max) -> std::string {
      if (!parse_count(value, &number) || number < min || number > max) {
        return fmt::format("{} wants a number in {}..{}, got '{}'", arg, min, max, value);
      }
      return "";
    };
    std::string problem;
    if (arg == "--backend") {
      if (value == "all") {
        cfg.backends = {"engine", "sqlite"};
      } else if (value == "engine" || value == "sqlite") {
        cfg.backends = {value};
      } else {
        return "--backend wants engine, sqlite or all, got '" + value + "'";
      }
    } else if (arg == "--workload") {
      cfg.workloads.clear();
      for (const std::string& w : split(value)) {
        if (w == "all" || w == "api") {
          if (w == "all")
            cfg.workloads.insert(cfg.workloads.end(), kWorkloads.begin(), kWorkloads.end());
          cfg.workloads.insert(cfg.workloads.end(), kApiWorkloads.begin(), kApiWorkloads.end());
          continue;
        }
        bool known = is_api_workload(w);
        for (std::string_view k : kWorkloads) known = known || k == w;
        if (!known) return "unknown workload '" + w + "' (see --help)";
        cfg.workloads.push_back(w);
      }
      if (cfg.workloads.empty()) return "--workload is empty";
    } else if (arg == "--n") {
      if (problem = need_count(1, 1ull << 40); problem.empty()) cfg.n = number;
    } else if (arg == "--payload") {
      if (problem = need_count(0, 16ull << 20); problem.empty()) cfg.payload = number;
    } else if (arg == "--streams") {
      if (problem = need_count(1, 100000000); problem.empty()) cfg.streams = number;
    } else if (arg == "--batch") {
      if (problem = need_count(1, 32767); problem.empty()) cfg.batch = number;
    } else if (arg == "--threads") {
      if (problem = need_count(1, 4096); problem.empty()) cfg.threads = number;
    } else if (arg == "--compress") {
      if (problem = need_count(0, 1u << 30); problem.empty())
        esbench::set_engine_compression(static_cast<uint32_t>(number));
    } else if (arg == "--seed") {
      if (problem = need_count(0, UINT64_MAX); problem.empty()) cfg.seed = number;
    } else if (arg == "--result-fd") {
      if (problem = need_count(0, 32767); problem.empty())
        flags->result_fd = static_cast<int>(number);
    } else if (arg == "--time-limit") {
      char* end = nullptr;
      const double seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(seconds >= 0) || seconds > 1e6) {
        return "--time-limit wants seconds >= 0, got '" + value + "'";
      }
      cfg.time_limit_s = seconds;
    } else if (arg == "--durability") {
      if (value == "none") {
        cfg.durability = eventsource::Durability::kNone;
      } else if (value == "group") {
        cfg.durability = eventsource::Durability::kGroup;
      } else if (value == "each") {
        cfg.durability = eventsource::Durability::kEach;
      } else {
        return "--durability wants none, group or each, got '" + value + "'";
      }
    } else if (arg == "--open-streams") {
      cfg.open_streams.clear();
      for (const std::string& item : split(value)) {
        if (!parse_count(item, &number) || number < 1 || number > 100000000) {
          return "--open-streams wants counts in 1..100000000, got '" + item + "'";
        }
        cfg.open_streams.push_back(number);
      }
      if (cfg.open_streams.empty()) return "--open-streams is empty";
    } else if (arg == "--json") {
      if (value.empty()) return "--json is empty";
      flags->json_path = value;
    } else if (arg == "--plot") {
      if (value.empty()) return "--plot is empty";
      flags->plot_path = value;
    } else if (arg == "--store") {
      if (value.empty()) return "--store is empty";
      cfg.store = value;
      cfg.keep_store = true;
    } else {
      return "unknown flag '" + arg + "' (see --help)";
    }
    if (!problem.empty()) return problem;
  }
  if (cfg.workloads.empty()) {
    cfg.workloads.assign(kWorkloads.begin(), kWorkloads.end());
    cfg.workloads.insert(cfg.workloads.end(), kApiWorkloads.begin(), kApiWorkloads.end());
  }
  return "";
}

std::string self_exe(const char* argv0) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return argv0;
  return std::string(buf, static_cast<size_t>(n));
}

// "" if a file `path` can be created or replaced, else the problem (checked
// before the run, so that a long run is not lost to a typo).
std::string check_writable(const char* flag, const std::string& path) {
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  if (::access(dir.c_str(), W_OK) != 0) {
    return fmt::format("{} {}: cannot create files in {}: {}", flag, path, dir,
                       std::strerror(errno));
  }
  return "";
}

std::string cell(std::optional<double> v, int precision) {
  return v ? fmt::format("{:.{}f}", *v, precision) : "-";
}

void print_table(const std::vector<Measurement>& results) {
  fmt::print(stderr, "\n{:<18} {:<7} {:>9} {:>9} {:>12} {:>8} {:>10} {:>10} {:>9} {:>8}  {}\n",
             "workload", "backend", "n", "seconds", "ops/s", "MB/s", "p50 us", "p99 us", "store MB",
             "RSS MB", "notes");
  for (const Measurement& m : results) {
    if (m.failed()) {
      fmt::print(stderr, "{:<18} {:<7} FAILED: {}\n", m.workload, m.backend, m.error);
      continue;
    }
    fmt::print(stderr,
               "{:<18} {:<7} {:>9} {:>9.3f} {:>12} {:>8} {:>10} {:>10} {:>9.1f} {:>8.1f}  {}\n",
               m.workload, m.backend, m.n, m.seconds, cell(m.ops_per_s, 0), cell(m.mb_per_s, 1),
               cell(m.p50_us, 1), cell(m.p99_us, 1), static_cast<double>(m.store_bytes) / 1e6,
               static_cast<double>(m.rss_bytes) / 1e6, m.note);
  }
}

int run(int argc, char** argv) {
  Flags flags;
  if (std::string problem = parse_flags(argc, argv, &flags); !problem.empty()) {
    fmt::print(stderr, "esbench: {}\n", problem);
    return 2;
  }
  if (flags.help) {
    fmt::print("{}", kUsage);
    return 0;
  }
  Config& cfg = flags.cfg;
  cfg.self_exe = self_exe(argv[0]);
  if (!flags.mode.empty()) {
    if (flags.result_fd < 0 || cfg.store.empty() || cfg.backends.size() != 1) {
      fmt::print(stderr, "esbench: {} needs --result-fd, --store and one --backend\n", flags.mode);
      return 2;
    }
    if (flags.mode == "--internal-replay") {
      return replay_child(cfg, cfg.backends[0], cfg.store, flags.result_fd);
    }
    if (flags.mode == "--internal-open") {
      return open_child(cfg, cfg.backends[0], cfg.store, flags.result_fd);
    }
    return crash_writer_child(cfg, cfg.backends[0], cfg.store, flags.result_fd);
  }

  // A missing plotter or an unwritable output fails now, not after a long run.
  if (!flags.plot_path.empty()) {
    if (auto gnuplot = find_gnuplot(); !gnuplot.ok()) {
      fmt::print(stderr, "esbench: {}\n", gnuplot.status().message());
      return 2;
    }
  }
  for (auto [flag, path] :
       {std::pair{"--plot", flags.plot_path}, std::pair{"--json", flags.json_path}}) {
    if (path.empty()) continue;
    if (std::string problem = check_writable(flag, path); !problem.empty()) {
      fmt::print(stderr, "esbench: {}\n", problem);
      return 2;
    }
  }
  const Machine machine = describe_machine();

  std::string base = cfg.store;
  if (base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/esbench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      fmt::print(stderr, "esbench: mkdtemp {}: {}\n", pattern, std::strerror(errno));
      return 1;
    }
    base = pattern;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(base, ec);
    if (ec) {
      fmt::print(stderr, "esbench: cannot create {}: {}\n", base, ec.message());
      return 1;
    }
  }
  fmt::print(stderr, "esbench: {} time-limit={}s store={}\nesbench: on {}\n", config_summary(cfg),
             cfg.time_limit_s, base, machine.summary());

  std::vector<Measurement> results;
  {
    Runner runner(cfg, base);
    for (const std::string& workload : cfg.workloads) {
      for (const std::string& backend : cfg.backends) {
        for (Measurement& m : runner.run(workload, backend)) {
          if (m.failed()) {
            fmt::print(stderr, "esbench: FAILED {} on {}: {}\n", m.workload, m.backend, m.error);
          } else {
            fmt::print("{}\n", m.to_json());
            std::fflush(stdout);
          }
          results.push_back(std::move(m));
        }
      }
    }
  }
  print_table(results);
  if (!cfg.keep_store) {
    std::error_code ec;
    std::filesystem::remove_all(base, ec);
  }
  // A --json or --plot that cannot be written fails the run (after the table).
  int exit_code = 0;
  auto kept = [&exit_code](const char* flag, const std::string& path, eventsource::Status s) {
    if (s.ok()) {
      fmt::print(stderr, "esbench: wrote {} ({})\n", path, flag);
    } else {
      fmt::print(stderr, "esbench: {}: {}\n", flag, s.to_string());
      exit_code = 1;
    }
  };
  if (!flags.json_path.empty()) {
    kept("--json", flags.json_path, write_json_report(flags.json_path, machine, cfg, results));
  }
  if (!flags.plot_path.empty()) {
    kept("--plot", flags.plot_path, draw_plot(flags.plot_path, results, machine, cfg));
  }
  size_t failures = 0;
  for (const Measurement& m : results) failures += m.failed() ? 1 : 0;
  if (failures > 0) {
    fmt::print(stderr, "esbench: {} of {} results FAILED\n", failures, results.size());
    return 1;
  }
  return exit_code;
}

}  // namespace
}  // namespace esbench

int main(int argc, char** argv) { return esbench::run(argc, argv); }
