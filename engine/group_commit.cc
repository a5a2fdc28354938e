// Group commit: appenders waiting for durability share one fdatasync; a
// failed sync is never retried and poisons the store until it is reopened.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

void Store::Impl::publish_committed(uint64_t position) {
  MutexLock pending(&pending_mu_);
  if (committed_.load(std::memory_order_acquire) >= position) return;
  // Batches are pending in position order, and `position` ends one of them.
  WriterLock ix(&index_mu_);
  while (!pending_.empty() && pending_.front().last_position <= position) {
    PendingBatch& b = pending_.front();
    StreamIndex::Entry& e = index_.get_or_add(b.key, b.type_len);
    e.delta.insert(e.delta.end(), b.locators.begin(), b.locators.end());
    index_.ids().add_batch(b.fps.data(), b.locators.data(), b.locators.size());
    index_.note_added(b.locators.size());
    pending_.pop_front();
  }
  committed_.store(position, std::memory_order_release);
}

Status Store::Impl::wait_durable(uint64_t position, Durability mode) {
  EVENTSOURCE_RETURN_IF_ERROR(sync_until(position, 0, mode));
  // Durable (by this sync, another appender's, or a segment roll's): visible.
  publish_committed(position);
  return Status();
}

void Store::Impl::gather_riders(uint64_t covered_writes, uint64_t expected, int64_t last_sync_ns) {
  // On few cores, appenders woken by the last sync come back one at a time:
  // the first to write would lead a sync that carries only itself, and the
  // rest would wait a whole sync for the next one. So the leader lets the
  // appenders still in flight write first, as many as the last sync carried
  // (a closed loop of N threads converges on N), for at most as long as the
  // last sync took (and 1 ms): an appender that misses this sync waits a
  // whole sync for the next one anyway, and a group that shrinks lowers the
  // next wait.
  if (expected <= 1 || in_flight_.load() <= 1) return;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::nanoseconds(std::min<int64_t>(last_sync_ns, kMaxGatherNs));
  for (;;) {
    const uint64_t unsynced = writes_.load() - covered_writes;
    if (unsynced >= expected || unsynced >= static_cast<uint64_t>(in_flight_.load())) return;
    if (std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::yield();
  }
}

Status Store::Impl::sync_until(uint64_t position, uint64_t aux_seq, Durability mode) {
  {
    MutexLock lock(&sync_mu_);
    // Aux writes (aux_store.cc) ride the same syncs: one fdatasync covers
    // both kinds of writes made before it started.
    while (synced_.load() < position || aux_synced_.load() < aux_seq) {
      if (poisoned_) return closed(fmt::format("{}: not durable: {}", path_, poison_message()));
      if (syncing_) {
        sync_cv_.wait(lock);
        continue;
      }
      // This thread leads the next sync; it covers everything written before
      // `target` is read, so appenders that wrote meanwhile ride along.
      syncing_ = true;
      const uint64_t covered_writes = synced_writes_;
      const uint64_t expected = last_group_;
      const int64_t last_sync_ns = last_sync_ns_;
      lock.unlock();
      if (mode == Durability::kGroup && opt_.group_commit_window_us > 0 && in_flight_.load() > 1)
        std::this_thread::sleep_for(std::chrono::microseconds(opt_.group_commit_window_us));
      else
        gather_riders(covered_writes, expected, last_sync_ns);
      // writes_ first: each write it counts has stored its position before.
      const uint64_t writes = writes_.load();
      const uint64_t target = written_.load();
      const uint64_t aux_target = aux_written_.load();
      const auto started = std::chrono::steady_clock::now();
      int r = os_->fdatasync(fd_);
      const auto took = std::chrono::steady_clock::now() - started;
      lock.lock();
      syncing_ = false;
      last_group_ = writes - covered_writes;
      synced_writes_ = writes;
      last_sync_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
      if (r < 0) {
        // Never retried: the kernel may have dropped the dirty pages.
        Status failed = io_error(fmt::format("{}: fdatasync failed: {}; the append is not "
                                             "acknowledged and the store refuses writes until it "
                                             "is reopened and recovered",
                                             path_, errno_text(-r)),
                                 -r);
        poison(failed).ignore_error();
        sync_cv_.notify_all();
        return failed;
      }
      store_max(synced_, target);
      store_max(aux_synced_, aux_target);
      sync_cv_.notify_all();
    }
  }
  return Status();
}

}  // namespace eventsource
