// Self-describing batches for crash and live-reader tests: batch b's events
// carry deterministic ids, payloads and a "batch=b event=i/n" marker in their
// metadata, so a reader can tell a whole batch from a partial one and check
// every byte without knowing what the writer process got to do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eventsource/types.h"
#include "tests/support/store_helpers.h"

namespace eventsource::testing {

// Batch b (1-based) goes to stream "Batch-<b % kMarkedStreams>".
constexpr uint64_t kMarkedStreams = 7;
StreamId marked_stream(uint64_t batch);
// `events` events; payload sizes vary between min and max bytes by (b, i).
std::vector<EventData> make_marked_batch(uint64_t batch, uint32_t events, uint32_t min_payload,
                                         uint32_t max_payload);
std::string marked_metadata(uint64_t batch, uint32_t event, uint32_t events);
std::string marked_payload(uint64_t batch, uint32_t event, uint32_t min_payload,
                           uint32_t max_payload);

// Checks that `log` (read_all from position 1) is exactly batches 1..N made
// by make_marked_batch with the same parameters, each whole, at dense
// positions with the right stream versions. Returns "" or the first problem.
struct MarkedBatchSpec {
  uint32_t events = 3;
  uint32_t min_payload = 16;
  uint32_t max_payload = 256;
};
std::string check_marked_log(const std::vector<OwnedEvent>& log, const MarkedBatchSpec& spec);

}  // namespace eventsource::testing
