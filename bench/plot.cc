// esbench --plot (see plot.h): picks the engine/SQLite pairs and the scaling
// series out of a run's results, writes one data file per series and a
// gnuplot script into a temporary directory, and runs gnuplot on it.
#include "bench/plot.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>

extern char** environ;

namespace esbench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPlotPackage = "gnuplot-nox";
constexpr const char* kEngineColor = "#1f77b4";
constexpr const char* kSqliteColor = "#ff7f0e";
constexpr uint32_t kBetterColor = 0x2ca02c;
constexpr uint32_t kWorseColor = 0xd62728;
constexpr uint32_t kEvenColor = 0x7f7f7f;

// ---- Text for gnuplot ------------------------------------------------------

// `text` for the inside of a double-quoted gnuplot string in enhanced-text
// mode: quotes escaped, the enhanced-text markup characters made literal.
std::string gp_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += '/';  // a literal backslash is not worth four of them
        break;
      case '\n':
        out += "\\n";
        break;
      case '_':
      case '^':
      case '{':
      case '}':
      case '@':
      case '&':
      case '~':
        out += "\\\\";
        out += c;
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A single-quoted gnuplot string (no escapes inside; a quote is doubled).
std::string gp_path(const std::string& path) {
  std::string out = "'";
  for (char c : path) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// "10^{6}" (enhanced text) for powers of ten from 1000 on, else the number.
std::string count_label(uint64_t n) {
  int exponent = 0;
  uint64_t v = n;
  while (v >= 10 && v % 10 == 0) {
    v /= 10;
    ++exponent;
  }
  if (v == 1 && exponent >= 3) return fmt::format("10^{{{}}}", exponent);
  return std::to_string(n);
}

// 1250000 -> "1.25M", 173000 -> "173k", 4.2 -> "4.2".
std::string si(double v) {
  const double a = std::fabs(v);
  if (a >= 1e9) return fmt::format("{:.3g}G", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.3g}", v);
}

std::string rate_text(double per_s) { return si(per_s) + "/s"; }
std::string bytes_text(double bytes) { return si(bytes) + "B"; }
std::string seconds_text(double s) {
  if (s >= 1) return fmt::format("{:.3g} s", s);
  if (s >= 1e-3) return fmt::format("{:.3g} ms", s * 1e3);
  return fmt::format("{:.3g} us", s * 1e6);
}

// ---- Picking results -------------------------------------------------------

// The last successful result of `workload` on `backend` (with `n` if given).
const Measurement* find(const std::vector<Measurement>& results, std::string_view workload,
                        std::string_view backend, std::optional<uint64_t> n = std::nullopt) {
  const Measurement* found = nullptr;
  for (const Measurement& m : results) {
    if (!m.failed() && m.workload == workload && m.backend == backend && (!n || m.n == *n)) {
      found = &m;
    }
  }
  return found;
}

// The largest n for which both backends have a successful `workload` result.
std::optional<uint64_t> largest_common_n(const std::vector<Measurement>& results,
                                         std::string_view workload) {
  std::optional<uint64_t> best;
  for (const Measurement& m : results) {
    if (m.failed() || m.workload != workload || m.backend != "engine") continue;
    if (find(results, workload, "sqlite", m.n) != nullptr && (!best || m.n > *best)) best = m.n;
  }
  return best;
}

std::optional<double> extra_number(const Measurement& m, std::string_view key) {
  for (const auto& [k, value] : m.extra) {
    if (k != key) continue;
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (end != value.c_str() && *end == '\0' && std::isfinite(v)) return v;
  }
  return std::nullopt;
}

// ---- The ratio chart -------------------------------------------------------

enum class Better { kHigher, kLower };

struct Ratio {
  std::string label;  // enhanced text, lines separated by \n
  double engine = 0;
  double sqlite = 0;
  Better better = Better::kHigher;
};

using Format = std::string (*)(double);

std::vector<Ratio> collect_ratios(const std::vector<Measurement>& results) {
  std::vector<Ratio> out;
  auto add = [&](std::string title, std::string metric, std::optional<double> engine,
                 std::optional<double> sqlite, Better better, Format format) {
    if (!engine || !sqlite || !(*engine > 0) || !(*sqlite > 0)) return;
    out.push_back({fmt::format("{}\\n{}\\nE {}\\nS {}", title, metric, gp_escape(format(*engine)),
                               gp_escape(format(*sqlite))),
                   *engine, *sqlite, better});
  };
  for (const char* workload :
       {"append", "append_sync", "concurrent_append", "read_stream", "read_type", "replay"}) {
    const Measurement* e = find(results, workload, "engine");
    const Measurement* s = find(results, workload, "sqlite");
    if (e && s) {
      add(gp_escape(workload), "events/s", e->ops_per_s, s->ops_per_s, Better::kHigher, rate_text);
    }
  }
  for (auto [workload, title] :
       {std::pair{"open_clean", "open (clean)"}, std::pair{"open_crashed", "open (killed)"}}) {
    if (auto n = largest_common_n(results, workload)) {
      add(title, fmt::format("{} events", count_label(*n)),
          find(results, workload, "engine", n)->seconds,
          find(results, workload, "sqlite", n)->seconds, Better::kLower, seconds_text);
    }
  }
  if (auto n = largest_common_n(results, "open_streams")) {
    const Measurement* e = find(results, "open_streams", "engine", n);
    const Measurement* s = find(results, "open_streams", "sqlite", n);
    const std::string metric = fmt::format("{} streams", count_label(*n));
    add("open time", metric, e->seconds, s->seconds, Better::kLower, seconds_text);
    add("RSS after open", metric, static_cast<double>(e->rss_bytes),
        static_cast<double>(s->rss_bytes), Better::kLower, bytes_text);
  }
  for (uint64_t n : kSmallStoreEvents) {
    const Measurement* e = find(results, "store_size", "engine", n);
    const Measurement* s = find(results, "store_size", "sqlite", n);
    if (e && s) {
      add("size on disk", n == 0 ? std::string("empty store") : fmt::format("{} events", n),
          static_cast<double>(e->store_bytes), static_cast<double>(s->store_bytes), Better::kLower,
          bytes_text);
    }
  }
  const Measurement* e = find(results, "bytes_per_event", "engine");
  const Measurement* s = find(results, "bytes_per_event", "sqlite");
  if (e && s) {
    add("bytes/event", "log vs db file", extra_number(*e, "bytes_per_event"),
        extra_number(*s, "bytes_per_event"), Better::kLower, bytes_text);
  }
  return out;
}

// ---- Scaling panels --------------------------------------------------------

struct Series {
  std::string title;  // enhanced text, escaped
  std::string color;
  int point = 7;
  int dash = 1;
  std::map<double, double> points;  // x -> y
};

struct Panel {
  std::string name;  // data file prefix
  std::string title, xlabel, ylabel;
  bool log_y = true;
  std::string empty_hint;
  double x = 0, y = 0, w = 0, h = 0;  // origin and size in the canvas
  std::vector<Series> series;
};

const char* color_of(std::string_view backend) {
  return backend == "engine" ? kEngineColor : kSqliteColor;
}

// One kind of curve of a panel, drawn once per backend.
struct Curve {
  std::string label;                        // after "engine: ", enhanced text
  std::vector<std::string_view> workloads;  // whose results give its points
  int point = 7;
  int dash = 1;
  // The y of a result (x is its n); nullopt leaves the result out.
  std::optional<double> (*y)(const Measurement&) = nullptr;
};

// Adds a series per backend and curve: the points (n, curve.y(m)) of the
// backend's successful results of the curve's workloads with n > 0.
void add_curves(Panel* p, const std::vector<Measurement>& results,
                const std::vector<std::string>& backends, const std::vector<Curve>& curves) {
  for (const std::string& backend : backends) {
    for (const Curve& curve : curves) {
      Series s{backend + ": " + curve.label, color_of(backend), curve.point, curve.dash, {}};
      for (const Measurement& m : results) {
        if (m.failed() || m.backend != backend || m.n == 0) continue;
        if (std::find(curve.workloads.begin(), curve.workloads.end(), m.workload) ==
            curve.workloads.end()) {
          continue;
        }
        if (auto y = curve.y(m)) s.points[static_cast<double>(m.n)] = *y;
      }
      p->series.push_back(std::move(s));
    }
  }
}

std::optional<double> open_ms(const Measurement& m) {
  return m.seconds > 0 ? std::optional<double>(m.seconds * 1e3) : std::nullopt;
}
std::optional<double> store_mb(const Measurement& m) {
  return m.store_bytes > 0 ? std::optional<double>(static_cast<double>(m.store_bytes) / 1e6)
                           : std::nullopt;
}
std::optional<double> rss_mb(const Measurement& m) {
  return static_cast<double>(m.rss_bytes) / 1e6;
}
std::optional<double> rss_before_mb(const Measurement& m) {
  auto bytes = extra_number(m, "rss_before_open_bytes");
  return bytes ? std::optional<double>(*bytes / 1e6) : std::nullopt;
}

Panel open_time_panel(const std::vector<Measurement>& results,
                      const std::vector<std::string>& backends) {
  Panel p;
  p.name = "open_time";
  p.title = "open time (p50 of 3 opens)";
  p.xlabel = "events (open: in batches; open\\\\_streams: one per stream)";
  p.ylabel = "milliseconds";
  p.empty_hint = "no open or open\\\\_streams results";
  add_curves(&p, results, backends,
             {{"clean close", {"open_clean"}, 7, 1, open_ms},
              {"after kill -9", {"open_crashed"}, 9, 2, open_ms},
              {"open\\\\_streams", {"open_streams"}, 5, 3, open_ms}});
  return p;
}

Panel size_panel(const std::vector<Measurement>& results,
                 const std::vector<std::string>& backends) {
  Panel p;
  p.name = "size";
  p.title = "size on disk (allocated bytes, closed store)";
  p.xlabel = "events (open, append: in batches; others: one per append)";
  p.ylabel = "MB";
  p.empty_hint = "no open, open\\\\_streams, store\\\\_size or append results";
  // The empty store (store_size with n = 0) has no place on a log axis: the
  // ratio chart shows it.
  add_curves(&p, results, backends,
             {{"open, append", {"open_clean", "append"}, 7, 1, store_mb},
              {"open\\\\_streams", {"open_streams"}, 5, 3, store_mb},
              {"store\\\\_size", {"store_size"}, 13, 1, store_mb}});
  return p;
}

Panel rss_panel(const std::vector<Measurement>& results, const std::vector<std::string>& backends) {
  Panel p;
  p.name = "rss";
  p.title = "RSS of a fresh process after open";
  p.xlabel = "streams (one event each)";
  p.ylabel = "MB";
  p.log_y = false;
  p.empty_hint = "no open\\\\_streams results";
  add_curves(&p, results, backends,
             {{"after open", {"open_streams"}, 7, 1, rss_mb},
              {"before open", {"open_streams"}, 6, 2, rss_before_mb}});
  return p;
}

// ---- The script ------------------------------------------------------------

eventsource::Status write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return eventsource::io_error("write " + path.string(), errno);
  return eventsource::Status();
}

std::string panel_frame(const Panel& p) {
  return fmt::format(
      "reset\nset origin {},{}\nset size {},{}\nset title \"{}\" font \",12\"\n"
      "set xlabel \"{}\"\nset ylabel \"{}\"\nset grid\nset border lw 1\n",
      p.x, p.y, p.w, p.h, p.title, p.xlabel, p.ylabel);
}

std::string empty_panel(const std::string& hint) {
  return fmt::format(
      "set xrange [0:1]\nset yrange [0:1]\nunset xtics\nunset ytics\nunset grid\n"
      "set label 1 \"{}\" at graph 0.5,0.5 center font \",11\" tc rgb \"#555555\"\n"
      "plot NaN notitle\n",
      hint);
}

eventsource::Result<std::string> scaling_script(const fs::path& dir, const Panel& p) {
  std::string script = panel_frame(p);
  std::vector<std::string> plots;
  for (size_t i = 0; i < p.series.size(); ++i) {
    const Series& s = p.series[i];
    std::string data;
    for (const auto& [x, y] : s.points) {
      if (x > 0 && (!p.log_y || y > 0)) data += fmt::format("{} {}\n", x, y);
    }
    if (data.empty()) continue;
    const fs::path file = dir / fmt::format("{}-{}.dat", p.name, i);
    EVENTSOURCE_RETURN_IF_ERROR(write_file(file, data));
    plots.push_back(fmt::format(
        "{} using 1:2 with linespoints lw 2 ps 1.3 pt {} dt {} lc rgb \"{}\" title \"{}\"",
        gp_path(file.string()), s.point, s.dash, s.color, s.title));
  }
  if (plots.empty()) return script + empty_panel(p.empty_hint);
  script +=
      "set logscale x 10\nset format x \"10^{%L}\"\nset offsets graph 0.05, graph 0.05, 0, 0\n";
  script += p.log_y ? "set logscale y 10\n" : "set yrange [0:*]\n";
  // Below the graph: inside, it would hide points of curves that rise.
  script += "set key below left Left reverse maxrows 3 font \",9\"\nset bmargin 8\n";
  std::string plot = "plot ";
  for (size_t i = 0; i < plots.size(); ++i) plot += (i ? ", \\\n     " : "") + plots[i];
  return script + plot + "\n";
}

eventsource::Result<std::string> ratio_script(const fs::path& dir, const std::vector<Ratio>& ratios,
                                              const Panel& frame) {
  std::string script = panel_frame(frame);
  if (ratios.empty()) return script + empty_panel(frame.empty_hint);
  double lo = 1, hi = 1;
  for (const Ratio& r : ratios) {
    lo = std::min(lo, r.engine / r.sqlite);
    hi = std::max(hi, r.engine / r.sqlite);
  }
  const bool log_y = hi / lo > 10;
  // Columns: x, ratio, bar color, value label, where the label goes (beyond
  // the end of the bar, which runs from 1.0 to the ratio).
  std::string data;
  std::string xtics;
  for (size_t i = 0; i < ratios.size(); ++i) {
    const Ratio& r = ratios[i];
    const double ratio = r.engine / r.sqlite;
    const bool even = std::fabs(std::log(ratio)) < 0.01;
    const bool engine_better = (r.better == Better::kHigher) == (ratio > 1);
    const uint32_t color = even ? kEvenColor : engine_better ? kBetterColor : kWorseColor;
    const double label_y = log_y ? (ratio >= 1 ? ratio * 1.4 : ratio / 1.4)
                                 : (ratio >= 1 ? ratio + hi * 0.04 : ratio - hi * 0.04);
    data += fmt::format("{} {} {} \"{}x\" {}\n", i, ratio, color,
                        ratio >= 100 ? fmt::format("{:.0f}", ratio) : fmt::format("{:.3g}", ratio),
                        label_y);
    xtics += fmt::format("{}\"{}\" {}", i ? ", " : "", r.label, i);
  }
  EVENTSOURCE_RETURN_IF_ERROR(write_file(dir / "ratios.dat", data));
  const std::string file = gp_path((dir / "ratios.dat").string());
  script += fmt::format("set xrange [-0.6:{}]\nset xtics ({}) font \",9\" nomirror\n",
                        static_cast<double>(ratios.size()) - 0.4, xtics);
  script += "set grid noxtics ytics\nset bmargin 7\nunset xlabel\n";
  if (log_y) {
    script += fmt::format("set logscale y 10\nset yrange [{}:{}]\n", lo / 3, hi * 3);
  } else {
    script += fmt::format("set yrange [0:{}]\n", hi * 1.25);
  }
  script +=
      "set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb \"black\" "
      "front\n";
  script += "set key top right opaque box font \",9\"\n";
  script += fmt::format(
      "plot {0} using 1:2:($1-0.36):($1+0.36):(1):2:3 with boxxyerror fs solid 0.85 "
      "lc rgb variable notitle, \\\n"
      "     {0} using 1:5:4 with labels font \",9\" notitle, \\\n"
      "     NaN with boxes fs solid 0.85 lc rgb \"#{1:06x}\" title \"engine better\", \\\n"
      "     NaN with boxes fs solid 0.85 lc rgb \"#{2:06x}\" title \"SQLite better\"\n",
      file, kBetterColor, kWorseColor);
  return script;
}

std::string title_line(const Machine& machine, const Config& cfg) {
  return fmt::format(
      "set multiplot title \"esbench: eventsource engine vs SQLite\\n{{/*0.8 {}}}\\n"
      "{{/*0.8 {} }}\" font \",15\"\n",
      gp_escape(machine.summary()), gp_escape(config_summary(cfg)));
}

eventsource::Status run_gnuplot(const std::string& gnuplot, const fs::path& dir,
                                const fs::path& script) {
  const std::string log = (dir / "gnuplot.log").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::string arg0 = "gnuplot";
  std::string arg1 = script.string();
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, gnuplot.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return eventsource::io_error("start " + gnuplot, rc);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return eventsource::Status();
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  std::string message = text.str();
  if (message.size() > 2000) message = "..." + message.substr(message.size() - 2000);
  return eventsource::Status(
      eventsource::Code::kIoError,
      fmt::format("gnuplot failed ({}); script and data kept in {}:\n{}",
                  WIFEXITED(wstatus) ? fmt::format("exit status {}", WEXITSTATUS(wstatus))
                                     : fmt::format("signal {}", WTERMSIG(wstatus)),
                  dir.string(), message));
}

}  // namespace

eventsource::Result<std::string> find_gnuplot() {
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= dirs.size()) {
    const size_t colon = std::min(dirs.find(':', begin), dirs.size());
    // An empty entry means the current directory.
    const std::string candidate =
        (colon == begin ? std::string(".") : dirs.substr(begin, colon - begin)) + "/gnuplot";
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    begin = colon + 1;
  }
  return eventsource::Status(
      eventsource::Code::kNotFound,
      fmt::format("--plot needs gnuplot, which is not on PATH: install the Debian package {} "
                  "(apt-get install {}, or run .ci/setup)",
                  kPlotPackage, kPlotPackage));
}

eventsource::Status draw_plot(const std::string& png, const std::vector<Measurement>& results,
                              const Machine& machine, const Config& cfg) {
  auto gnuplot = find_gnuplot();
  if (!gnuplot.ok()) return gnuplot.take_status();
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/esbench-plot-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    return eventsource::io_error("mkdtemp " + pattern, errno);
  const fs::path dir = pattern;

  Panel ratio_frame;
  ratio_frame.title =
      "engine / SQLite per workload (bar from 1.0 to the ratio; E = engine, S = SQLite)";
  ratio_frame.ylabel = "engine / SQLite";
  ratio_frame.empty_hint = "no engine/SQLite pairs: run with --backend all";
  ratio_frame.x = 0, ratio_frame.y = 0.45, ratio_frame.w = 1, ratio_frame.h = 0.45;
  Panel open_time = open_time_panel(results, cfg.backends);
  Panel size = size_panel(results, cfg.backends);
  Panel rss = rss_panel(results, cfg.backends);
  const double third = 1.0 / 3;
  for (auto [panel, column] : {std::pair{&open_time, 0}, std::pair{&size, 1}, std::pair{&rss, 2}}) {
    panel->x = third * column, panel->y = 0, panel->w = third, panel->h = 0.45;
  }

  std::string script =
      "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
      "  set terminal pngcairo size 1800,1300 enhanced font \"sans,10\"\n"
      "} else {\n"
      "  set terminal png size 1800,1300 enhanced\n"
      "}\n";
  script += "set output " + gp_path(png) + "\n";
  script += title_line(machine, cfg);
  auto ratios = ratio_script(dir, collect_ratios(results), ratio_frame);
  if (!ratios.ok()) return ratios.take_status();
  script += *ratios;
  for (const Panel* panel : {&open_time, &size, &rss}) {
    auto part = scaling_script(dir, *panel);
    if (!part.ok()) return part.take_status();
    script += *part;
  }
  script += "unset multiplot\nset output\n";
  const fs::path script_path = dir / "esbench.gp";
  EVENTSOURCE_RETURN_IF_ERROR(write_file(script_path, script));
  EVENTSOURCE_RETURN_IF_ERROR(run_gnuplot(*gnuplot, dir, script_path));
  std::error_code ec;
  if (fs::file_size(png, ec) == 0 || ec) {
    return eventsource::Status(
        eventsource::Code::kIoError,
        fmt::format("gnuplot wrote no {}; script and data kept in {}", png, dir.string()));
  }
  fs::remove_all(dir, ec);
  return eventsource::Status();
}

}  // namespace esbench
