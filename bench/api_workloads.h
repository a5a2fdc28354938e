// esbench's api/ workloads: what an app pays per operation through the
// event-sourcing API (registry + JSON codec + EventStore + repository), on
// the engine-backed store and on SQLiteEventStore, beside the raw engine
// measured in the same run.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "bench/workloads.h"
#include "eventsource/event_store.h"
#include "eventsource/status.h"

namespace esbench {

// The last five, the event bus and subscriptions, live in
// projection_workloads.cc.
inline constexpr std::array<std::string_view, 10> kApiWorkloads = {
    "api_append",   "api_load",          "api_aggregate",      "api_save",
    "json_codec",   "bus_dispatch_sync", "bus_dispatch_async", "projection_catchup",
    "live_latency", "live_latency_xproc"};

bool is_api_workload(std::string_view name);

// Runs one api/ workload on `backend` ("engine": EngineEventStore, "sqlite":
// SQLiteEventStore) in the fresh directory `dir`. Events are ~200-byte JSON
// orders; api_append and api_load also measure the raw engine (engine
// backend only), json_codec runs once (engine backend only). The bus and
// subscription workloads go to run_projection_workload
// (projection_workloads.h).
std::vector<Measurement> run_api_workload(const Config& config, const std::string& workload,
                                          const std::string& backend, const std::string& dir);

// The api workloads' events: 1024 distinct ~270-byte JSON OrderPlaced
// events (two line items each), encoded through the registry; workloads
// cycle through them.
eventsource::Result<std::vector<eventsource::NewEvent>> order_events();

}  // namespace esbench
