// The fault-harness workload and its checker.
#include "tests/faults/workload.h"

#include <fmt/format.h>

#include <map>
#include <set>

#include "eventsource/store.h"

namespace eventsource::testing {

namespace {
std::string payload_for(int batch, int i, int n, size_t bytes) {
  std::string p = fmt::format("b={} i={} n={};", batch, i, n);
  while (p.size() < bytes) p += static_cast<char>('a' + (p.size() * 7 + batch) % 26);
  return p;
}
}  // namespace

WorkloadResult run_workload(const std::string& path, const WorkloadConfig& config,
                            std::shared_ptr<Os> os) {
  WorkloadResult r;
  StoreOptions o;
  o.segment_size = 1 << 20;
  o.durability = config.durability;
  o.group_commit_window_us = 0;
  o.os = std::move(os);
  auto opened = Store::open(path, o);
  if (!opened.ok()) {
    r.open_failed = true;
    r.first_error = opened.status().to_string();
    return r;
  }
  std::unique_ptr<Store> store = std::move(opened).value();
  for (int b = 0; b < config.batches; ++b) {
    std::vector<EventData> events(config.events_per_batch);
    for (int i = 0; i < config.events_per_batch; ++i) {
      events[i].type = "Tested";
      events[i].id = Uuid::random();
      events[i].payload = payload_for(b, i, config.events_per_batch, config.payload_bytes);
    }
    auto a = store->append(StreamId{"S", std::to_string(b % 5)}, ExpectedVersion::any(), events);
    r.attempted = b + 1;
    r.acked.push_back(a.ok());
    if (!a.ok() && r.first_error.empty()) r.first_error = a.status().to_string();
    if (b + 1 == config.checkpoint_after) {
      Status s = store->checkpoint();
      if (!s.ok() && r.first_error.empty()) r.first_error = s.to_string();
    }
  }
  Status s = store->close();
  if (!s.ok() && r.first_error.empty()) r.first_error = s.to_string();
  return r;
}

std::string check_store(const std::string& path, const WorkloadConfig& config,
                        const WorkloadResult& result, bool require_acked) {
  StoreOptions o;
  o.create = CreateMode::kMustExist;
  auto opened = Store::open(path, o);
  if (!opened.ok()) {
    if (result.open_failed && opened.status().code() == Code::kNotFound) return "";
    return "reopen failed: " + opened.status().to_string();
  }
  std::unique_ptr<Store> store = std::move(opened).value();
  std::map<int, int> seen;  // batch -> events seen
  std::vector<int> order;
  std::set<Uuid> ids;
  std::string error;
  Status s = store->read_all({.from = GlobalPosition(1)}, [&](const RecordedEvent& e) {
    int b = -1, i = -1, n = -1;
    if (std::sscanf(std::string(e.payload.substr(0, 40)).c_str(), "b=%d i=%d n=%d;", &b, &i, &n) !=
            3 ||
        e.payload != payload_for(b, i, n, config.payload_bytes)) {
      error = fmt::format("position {} holds a payload the workload never wrote", e.position.value);
      return false;
    }
    if (!ids.insert(e.id).second) {
      error = fmt::format("event id {} appears twice", e.id.to_string());
      return false;
    }
    if (seen[b] != i) {
      error = fmt::format("batch {} event {} follows {} events of it", b, i, seen[b]);
      return false;
    }
    if (i == 0) order.push_back(b);
    seen[b] = i + 1;
    return true;
  });
  if (!s.ok()) return "read_all failed: " + s.to_string();
  if (!error.empty()) return error;
  for (size_t k = 1; k < order.size(); ++k)
    if (order[k] <= order[k - 1])
      return fmt::format("batch {} stored after batch {}", order[k], order[k - 1]);
  for (auto [b, n] : seen)
    if (n != config.events_per_batch)
      return fmt::format("batch {} is partial: {} of {} events", b, n, config.events_per_batch);
  if (require_acked)
    for (int b = 0; b < result.attempted; ++b)
      if (result.acked[b] && !seen.count(b)) return fmt::format("acked batch {} was lost", b);
  if (store->committed_position().value != ids.size())
    return fmt::format("committed position {} but {} events readable",
                       store->committed_position().value, ids.size());
  s = store->close();
  if (!s.ok()) return "close after check failed: " + s.to_string();
  auto v = Store::verify(path);
  if (!v.ok()) return "verify failed: " + v.status().to_string();
  if (!v->clean()) {
    const VerifyProblem& p = v->problems.front();
    return fmt::format("verify found {} problems, first: segment {} offset {}: {}",
                       v->problems.size(), p.segment, p.offset, p.what);
  }
  return "";
}

}  // namespace eventsource::testing
