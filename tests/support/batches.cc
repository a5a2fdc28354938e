// Deterministic marked batches and the checker that recognizes a dense log of
// whole ones (see batches.h).
#include "tests/support/batches.h"

#include <map>

namespace eventsource::testing {

StreamId marked_stream(uint64_t batch) {
  return StreamId{"Batch", std::to_string(batch % kMarkedStreams)};
}

std::string marked_metadata(uint64_t batch, uint32_t event, uint32_t events) {
  return "batch=" + std::to_string(batch) + " event=" + std::to_string(event) + "/" +
         std::to_string(events);
}

std::string marked_payload(uint64_t batch, uint32_t event, uint32_t min_payload,
                           uint32_t max_payload) {
  const uint64_t mix = batch * 0x9e3779b97f4a7c15ull + event * 0xc2b2ae3d27d4eb4full;
  const uint32_t span = max_payload - min_payload + 1;
  const size_t size = min_payload + static_cast<uint32_t>((mix >> 17) % span);
  std::string head = "{\"batch\":" + std::to_string(batch) + ",\"event\":" + std::to_string(event) +
                     ",\"fill\":\"";
  std::string s = head;
  for (size_t i = 0; s.size() < size; ++i) {
    s += static_cast<char>('a' + (batch + event + i * 7) % 26);
  }
  s.resize(size);
  return s;
}

std::vector<EventData> make_marked_batch(uint64_t batch, uint32_t events, uint32_t min_payload,
                                         uint32_t max_payload) {
  std::vector<EventData> out;
  for (uint32_t i = 0; i < events; ++i) {
    EventData e;
    e.type = i == 0 ? "BatchOpened" : "BatchItem";
    e.payload = marked_payload(batch, i, min_payload, max_payload);
    e.metadata = marked_metadata(batch, i, events);
    e.id = make_uuid(batch, i);
    e.timestamp_us = 1'700'000'000'000'000 + static_cast<int64_t>(batch * 1000 + i);
    out.push_back(std::move(e));
  }
  return out;
}

std::string check_marked_log(const std::vector<OwnedEvent>& log, const MarkedBatchSpec& spec) {
  std::map<std::string, uint64_t> versions;
  for (size_t j = 0; j < log.size(); ++j) {
    const OwnedEvent& e = log[j];
    const uint64_t batch = j / spec.events + 1;
    const uint32_t i = static_cast<uint32_t>(j % spec.events);
    const std::string where = "event at index " + std::to_string(j) + " " + e.describe() + ": ";
    if (e.position != GlobalPosition(j + 1)) return where + "position is not dense";
    if (e.metadata != marked_metadata(batch, i, spec.events)) {
      return where + "expected marker '" + marked_metadata(batch, i, spec.events) + "'";
    }
    if (e.id != make_uuid(batch, i)) return where + "wrong event id";
    if (e.payload != marked_payload(batch, i, spec.min_payload, spec.max_payload)) {
      return where + "wrong payload";
    }
    const StreamId s = marked_stream(batch);
    if (e.stream_type != s.type || e.stream_id != s.id) return where + "wrong stream";
    const uint64_t version = ++versions[s.name()];
    if (e.version != StreamVersion(version)) {
      return where + "expected stream version " + std::to_string(version);
    }
  }
  if (log.size() % spec.events != 0) {
    return "log of " + std::to_string(log.size()) + " events ends in a partial batch of " +
           std::to_string(log.size() % spec.events) + " events";
  }
  return "";
}

}  // namespace eventsource::testing
