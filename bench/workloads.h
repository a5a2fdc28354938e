// esbench's workloads: the run configuration, one measurement per result line,
// and the Runner that executes each workload against a Backend, verifying
// what it reads back. Child-process entry points serve replay, open_crashed and
// open_streams.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/backend.h"
#include "bench/payload.h"
#include "bench/stats.h"

namespace esbench {

// Every workload name, in the order `--workload all` runs them.
inline constexpr std::array<std::string_view, 10> kWorkloads = {
    "append", "append_sync", "concurrent_append", "read_stream", "read_type",
    "replay", "open",        "open_streams",      "store_size",  "bytes_per_event"};

inline constexpr uint64_t kAppendSyncCap = 2000;
inline constexpr uint64_t kConcurrentCap = 20000;
inline constexpr uint64_t kReadStreamCount = 1000;
inline constexpr uint64_t kReadTypePages = 1000;
inline constexpr uint64_t kReadTypePageSize = 100;
inline constexpr int kOpenTrials = 3;
// open_streams: stream counts when --open-streams is not given (each capped at n).
inline constexpr std::array<uint64_t, 2> kOpenStreamCounts = {1000, 1000000};
// store_size: the event counts of its stores, written one event per append
// round-robin to this many streams.
inline constexpr std::array<uint64_t, 2> kSmallStoreEvents = {0, 100};
inline constexpr uint64_t kSmallStoreStreams = 10;

struct Config {
  std::vector<std::string> backends = {"engine"};
  std::vector<std::string> workloads;  // empty = all
  uint64_t n = 1000000;
  uint64_t payload = 200;
  uint64_t streams = 10000;
  uint64_t batch = 100;
  eventsource::Durability durability = eventsource::Durability::kNone;
  uint64_t threads = 16;
  std::string store;        // base directory ("" = a fresh temp dir)
  bool keep_store = false;  // true when --store was given
  uint64_t seed = 42;
  // append_sync and concurrent_append stop after this long (0 = no limit).
  double time_limit_s = 10;
  // open_streams: the stream counts to measure (empty = kOpenStreamCounts,
  // each capped at n).
  std::vector<uint64_t> open_streams;
  std::string self_exe;  // this program, for fork+exec of child processes
};

const char* durability_name(eventsource::Durability d);

// One result line. Unset optionals print as null.
struct Measurement {
  std::string workload;
  std::string backend;
  uint64_t n = 0;
  double seconds = 0;
  std::optional<double> ops_per_s;
  std::optional<double> mb_per_s;
  std::optional<double> p50_us;
  std::optional<double> p99_us;
  uint64_t store_bytes = 0;
  uint64_t rss_bytes = 0;
  // Extra keys, values already JSON-encoded.
  std::vector<std::pair<std::string, std::string>> extra;
  std::string error;  // non-empty: the workload failed
  // A short human-readable summary of the extra keys for the table (not JSON).
  std::string note;

  bool failed() const { return !error.empty(); }
  std::string to_json() const;
};

std::unique_ptr<Backend> make_backend(const std::string& name);

// Runs workloads for a configuration. Keeps the store written by `append`
// (per backend) for the read workloads that follow.
class Runner {
 public:
  Runner(Config config, std::string base_dir);
  ~Runner();

  // Runs one workload on one backend; `open` yields several measurements.
  std::vector<Measurement> run(const std::string& workload, const std::string& backend);

 private:
  struct Dataset;

  Measurement run_append(const std::string& backend);
  Measurement run_append_sync(const std::string& backend);
  Measurement run_concurrent_append(const std::string& backend);
  Measurement run_read_stream(const std::string& backend);
  Measurement run_read_type(const std::string& backend);
  Measurement run_replay(const std::string& backend);
  std::vector<Measurement> run_open(const std::string& backend);
  std::vector<Measurement> run_open_streams(const std::string& backend);
  std::vector<Measurement> run_store_size(const std::string& backend);
  Measurement run_bytes_per_event(const std::string& backend);
  eventsource::Status crash_write(const std::string& backend, const std::string& dir,
                                  uint64_t size);

  // The store with cfg.n events for the read workloads (written by `append`,
  // or written now, untimed, when `append` did not run).
  eventsource::Result<Dataset*> dataset(const std::string& backend);
  // dataset(), or nullptr with m->error set.
  const Dataset* dataset_or_fail(const std::string& backend, Measurement* m);
  std::string fresh_dir(const std::string& name);
  // Now + cfg.time_limit_s, or nullopt without a limit.
  std::optional<Clock::time_point> deadline() const;
  Measurement start(const std::string& workload, const std::string& backend) const;

  Config cfg_;
  std::string base_;
  PayloadPool pool_;
  std::vector<eventsource::StreamId> stream_ids_;
  std::map<std::string, std::unique_ptr<Dataset>> datasets_;
};

// Child-process entry points (hidden flags); they report on `result_fd`.
int replay_child(const Config& config, const std::string& backend, const std::string& dir,
                 int result_fd);
// Opens the store once, reports open time and RSS before and after the open.
int open_child(const Config& config, const std::string& backend, const std::string& dir,
               int result_fd);
int crash_writer_child(const Config& config, const std::string& backend, const std::string& dir,
                       int result_fd);

}  // namespace esbench
