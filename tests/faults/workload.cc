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

std::string aux_snapshot_bytes(int v) {
  std::string s = fmt::format("snapshot v{};", v);
  while (s.size() < 700) s += static_cast<char>('A' + (s.size() + v) % 26);
  return s;
}

namespace {

void run_aux_ops(Store& store, int b, WorkloadResult* r) {
  auto note = [&](AuxOp::Kind k, const Status& s) {
    r->aux.push_back(AuxOp{k, b, s.ok()});
    if (!s.ok() && r->first_error.empty()) r->first_error = s.to_string();
  };
  if (b % 3 == 0)
    note(AuxOp::kSave, store.save_projection_state("w", GlobalPosition(b), std::to_string(b)));
  if (b % 10 == 5)
    note(AuxOp::kSnapshot,
         store.put_snapshot(StreamId{"S", "0"}, StreamVersion(b), 1, aux_snapshot_bytes(b)));
  if (b % 10 == 7) {
    DeadLetter d;
    d.projection = "w";
    d.position = GlobalPosition(b);
    d.error = fmt::format("failed at batch {}", b);
    d.attempts = 2;
    note(AuxOp::kAddDeadLetter, store.add_dead_letter(d).status());
  }
  if (b == 40) {
    // Removes the dead letter of batch 7 (the first one), when it exists.
    auto all = store.dead_letters();
    if (all.ok() && !all->empty() && all->front().position == GlobalPosition(7))
      note(AuxOp::kRemoveDeadLetter, store.remove_dead_letter(all->front().id));
  }
}

std::string check_aux(const Store& store, const WorkloadResult& result, bool require_acked) {
  // Projection state: one of the attempted values, not older than the last acked.
  int last_acked = -1;
  std::set<int> attempted_saves, attempted_snaps, attempted_dls;
  std::set<int> acked_dls;
  bool removal_acked = false, removal_attempted = false;
  int last_acked_snap = -1;
  for (const AuxOp& op : result.aux) {
    switch (op.kind) {
      case AuxOp::kSave:
        attempted_saves.insert(op.batch);
        if (op.acked) last_acked = op.batch;
        break;
      case AuxOp::kSnapshot:
        attempted_snaps.insert(op.batch);
        if (op.acked) last_acked_snap = op.batch;
        break;
      case AuxOp::kAddDeadLetter:
        attempted_dls.insert(op.batch);
        if (op.acked) acked_dls.insert(op.batch);
        break;
      case AuxOp::kRemoveDeadLetter:
        removal_attempted = true;
        removal_acked |= op.acked;
        break;
    }
  }
  auto st = store.projection_state("w");
  if (!st.ok()) return "projection_state failed: " + st.status().to_string();
  if (st.value()) {
    const int p = static_cast<int>(st.value()->position.value);
    if (!attempted_saves.count(p) || st.value()->state != std::to_string(p))
      return fmt::format("projection state holds position {} that was never saved", p);
    if (require_acked && p < last_acked)
      return fmt::format("projection state at {} but {} was acked", p, last_acked);
  } else if (require_acked && last_acked >= 0) {
    return fmt::format("projection state lost (acked up to {})", last_acked);
  }
  auto snap = store.latest_snapshot(StreamId{"S", "0"});
  if (!snap.ok()) return "latest_snapshot failed: " + snap.status().to_string();
  if (snap.value()) {
    const int v = static_cast<int>(snap.value()->version.value);
    if (!attempted_snaps.count(v) || snap.value()->bytes != aux_snapshot_bytes(v))
      return fmt::format("snapshot version {} holds bytes never put", v);
    if (require_acked && v < last_acked_snap)
      return fmt::format("snapshot at {} but {} was acked", v, last_acked_snap);
  } else if (require_acked && last_acked_snap >= 0) {
    return fmt::format("snapshot lost (acked up to {})", last_acked_snap);
  }
  auto dls = store.dead_letters();
  if (!dls.ok()) return "dead_letters failed: " + dls.status().to_string();
  std::set<int> have;
  for (const DeadLetter& d : dls.value()) {
    const int b = static_cast<int>(d.position.value);
    if (!attempted_dls.count(b) || d.error != fmt::format("failed at batch {}", b))
      return fmt::format("dead letter {} was never added", b);
    if (!have.insert(b).second) return fmt::format("dead letter {} appears twice", b);
  }
  if (require_acked && removal_acked && have.count(7)) return "the removed dead letter is back";
  if (!removal_attempted && require_acked && acked_dls.count(7) && !have.count(7))
    return "acked dead letter 7 was lost";
  if (require_acked)
    for (int b : acked_dls)
      if (b != 7 && !have.count(b)) return fmt::format("acked dead letter {} was lost", b);
  return "";
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
    if (config.aux) run_aux_ops(*store, b, &r);
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
  if (std::string aux = check_aux(*store, result, require_acked); !aux.empty()) return aux;
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
