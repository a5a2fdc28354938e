// A fixed append workload for the fault harnesses (batches of 3 events over
// 5 streams, a segment roll, an explicit checkpoint, close) and the checker
// that holds a reopened store to every promise: it opens, holds every acked
// batch whole, holds only whole batches in attempt order, no duplicate ids,
// and esdump-style verify is clean.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/os.h"
#include "eventsource/options.h"

namespace eventsource::testing {

// One aux write of the workload (format-spec.md "Aux segments"): after some
// batches it saves projection state "w" = the batch number, puts a snapshot
// of S-0 at version = the batch number, adds a dead letter with position =
// the batch number, or removes the first dead letter.
struct AuxOp {
  enum Kind : uint8_t { kSave, kSnapshot, kAddDeadLetter, kRemoveDeadLetter } kind;
  int batch;
  bool acked;
};

struct WorkloadResult {
  int attempted = 0;        // batches attempted (0..attempted-1)
  std::vector<bool> acked;  // per attempted batch
  std::vector<AuxOp> aux;   // aux writes attempted, in order
  bool open_failed = false;
  std::string first_error;  // first non-ok status seen (for messages)
};

struct WorkloadConfig {
  int batches = 120;
  int events_per_batch = 3;
  size_t payload_bytes = 1500;
  Durability durability = Durability::kGroup;
  int checkpoint_after = 60;  // explicit checkpoint after this batch
  bool aux = true;            // interleave aux writes (see AuxOp)
};

// The snapshot bytes the workload puts at version `v`.
std::string aux_snapshot_bytes(int v);

// Runs the workload on `path` through `os`. Never throws; stops early only if
// open fails.
WorkloadResult run_workload(const std::string& path, const WorkloadConfig& config,
                            std::shared_ptr<Os> os);

// Reopens with the real OS layer and checks the promises. Returns "" when all
// hold, else what broke. `require_acked`: every acked batch must be present.
std::string check_store(const std::string& path, const WorkloadConfig& config,
                        const WorkloadResult& result, bool require_acked);

}  // namespace eventsource::testing
