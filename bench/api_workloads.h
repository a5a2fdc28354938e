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

namespace esbench {

inline constexpr std::array<std::string_view, 5> kApiWorkloads = {
    "api_append", "api_load", "api_aggregate", "api_save", "json_codec"};

bool is_api_workload(std::string_view name);

// Runs one api/ workload on `backend` ("engine": EngineEventStore, "sqlite":
// SQLiteEventStore) in the fresh directory `dir`. Events are ~200-byte JSON
// orders; api_append and api_load also measure the raw engine (engine
// backend only), json_codec runs once (engine backend only).
std::vector<Measurement> run_api_workload(const Config& config, const std::string& workload,
                                          const std::string& backend, const std::string& dir);

}  // namespace esbench
