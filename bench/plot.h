// esbench --plot: draws a run's results into a PNG with gnuplot (Debian
// package gnuplot-nox) from a generated script and data files: engine/SQLite
// ratios per workload, and open time, size on disk and RSS after open against
// the number of events or streams. The title names the machine and the date.
#pragma once

#include <string>
#include <vector>

#include "bench/report.h"
#include "bench/workloads.h"
#include "eventsource/status.h"

namespace esbench {

// The path of gnuplot on $PATH. Errors: kNotFound saying which Debian package
// to install.
eventsource::Result<std::string> find_gnuplot();

// Draws `results` into `png` (replacing it). The script and data files go to a
// temporary directory, removed on success and kept (and named in the error)
// when gnuplot fails. Errors: kNotFound (no gnuplot), kIoError (writing the
// files, or gnuplot failed: its own message).
eventsource::Status draw_plot(const std::string& png, const std::vector<Measurement>& results,
                              const Machine& machine, const Config& cfg);

}  // namespace esbench
