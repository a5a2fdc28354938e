// esbench's event-bus and subscription workloads, part of `--workload api`:
// what InMemoryEventBus costs per event, how fast a Subscription catches up
// next to a raw read_all of the same store, and how long an appended event
// takes to reach a live subscription, in this process and in another one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bench/workloads.h"

namespace esbench {

// bus_dispatch_sync, bus_dispatch_async, projection_catchup, live_latency,
// live_latency_xproc (listed in kApiWorkloads).
bool is_projection_workload(std::string_view name);

// Runs one of them on `backend` ("engine" or "sqlite") in the fresh
// directory `dir`, which the caller removes. The bus workloads touch no
// store and run on the engine pass only. The engine pass also yields
// backend "memory" rows (InMemoryEventStore) for projection_catchup and
// live_latency, since --backend has no memory store.
std::vector<Measurement> run_projection_workload(const Config& config, const std::string& workload,
                                                 const std::string& backend,
                                                 const std::string& dir);

}  // namespace esbench
