// What a run of esbench leaves behind besides stdout: a description of the
// machine and the date (for plot titles and kept results), and the whole run
// as one JSON document (--json FILE).
#pragma once

#include <string>
#include <vector>

#include "bench/workloads.h"
#include "eventsource/status.h"

namespace esbench {

// The machine a run measured, read once at the start of the run.
struct Machine {
  unsigned cpus = 0;      // online CPUs (what nproc prints)
  std::string cpu_model;  // "model name" of /proc/cpuinfo ("unknown CPU" if absent)
  std::string kernel;     // uname: sysname release
  std::string date;       // local time of the run, "2025-06-01 14:03 +0200"
  std::string date_iso;   // the same as ISO 8601, "2025-06-01T14:03:07+0200"
  std::string hostname;

  // "2 CPUs, Intel(R) Xeon(R) ..., Linux 6.1.0-18-amd64, 2025-06-01 14:03 +0200"
  std::string summary() const;
};

Machine describe_machine();

// The run's flags as one line ("n=1000000 payload=200 ...").
std::string config_summary(const Config& cfg);

// Writes {"esbench":1,"date","machine":{..},"config":{..},"results":[..]} to
// `path` (replacing it), one result per line, failed results with "error".
// Errors: kIoError naming the path.
eventsource::Status write_json_report(const std::string& path, const Machine& machine,
                                      const Config& cfg, const std::vector<Measurement>& results);

}  // namespace esbench
