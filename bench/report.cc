// The machine description and the JSON document of a run (see report.h).
#include "bench/report.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "bench/json.h"

namespace esbench {
namespace {

std::string trim(std::string s) {
  const size_t begin = s.find_first_not_of(" \t\n");
  if (begin == std::string::npos) return "";
  const size_t end = s.find_last_not_of(" \t\n");
  return s.substr(begin, end - begin + 1);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = trim(line.substr(0, colon));
    // x86 says "model name"; some arm64 kernels only "Hardware" or "CPU part".
    if (key == "model name" || key == "Hardware") return trim(line.substr(colon + 1));
  }
  return "unknown CPU";
}

std::string format_time(const std::tm& tm, const char* format) {
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const std::string& item : items) {
    if (out.size() > 1) out += ',';
    out += json_string(item);
  }
  out += ']';
  return out;
}

}  // namespace

std::string Machine::summary() const {
  return fmt::format("{} CPU{}, {}, {}, {}", cpus, cpus == 1 ? "" : "s", cpu_model, kernel, date);
}

Machine describe_machine() {
  Machine m;
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  m.cpus = cpus > 0 ? static_cast<unsigned>(cpus) : 0;
  m.cpu_model = cpu_model();
  struct utsname u;
  if (::uname(&u) == 0) {
    m.kernel = fmt::format("{} {}", u.sysname, u.release);
    m.hostname = u.nodename;
  } else {
    m.kernel = "unknown kernel";
  }
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  m.date = format_time(tm, "%Y-%m-%d %H:%M %z");
  m.date_iso = format_time(tm, "%Y-%m-%dT%H:%M:%S%z");
  return m;
}

std::string config_summary(const Config& cfg) {
  return fmt::format("n={} payload={} streams={} batch={} durability={} threads={} seed={}", cfg.n,
                     cfg.payload, cfg.streams, cfg.batch, durability_name(cfg.durability),
                     cfg.threads, cfg.seed);
}

eventsource::Status write_json_report(const std::string& path, const Machine& machine,
                                      const Config& cfg, const std::vector<Measurement>& results) {
  std::string open_streams;
  for (uint64_t count : cfg.open_streams) {
    if (!open_streams.empty()) open_streams += ',';
    open_streams += std::to_string(count);
  }
  std::string out = fmt::format(
      "{{\"esbench\":1,\"date\":{},\n\"machine\":{{\"cpus\":{},\"cpu_model\":{},\"kernel\":{},"
      "\"hostname\":{}}},\n\"config\":{{\"backends\":{},\"workloads\":{},\"n\":{},\"payload\":{},"
      "\"streams\":{},\"batch\":{},\"durability\":{},\"threads\":{},\"seed\":{},"
      "\"time_limit_s\":{},\"open_streams\":[{}]}},\n\"results\":[",
      json_string(machine.date_iso), machine.cpus, json_string(machine.cpu_model),
      json_string(machine.kernel), json_string(machine.hostname), json_list(cfg.backends),
      json_list(cfg.workloads), cfg.n, cfg.payload, cfg.streams, cfg.batch,
      json_string(durability_name(cfg.durability)), cfg.threads, cfg.seed, cfg.time_limit_s,
      open_streams);
  for (size_t i = 0; i < results.size(); ++i) {
    out += (i == 0 ? "\n" : ",\n") + results[i].to_json();
  }
  out += "\n]}\n";
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return eventsource::io_error("open " + path, errno);
  const bool written = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !written) {
    return eventsource::io_error("write " + path, written ? errno : write_errno);
  }
  return eventsource::Status();
}

}  // namespace esbench
