// Checkpoints: persist the stream index into a new index segment, then
// write the checkpoint file naming it and the durable end of the log.
#include <fmt/format.h>

#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

Status Store::Impl::checkpoint() {
  OpGuard guard(*this);
  if (!guard.ok()) return closed_status();
  if (read_only_)
    return Status(Code::kReadOnly,
                  fmt::format("{}: checkpoint() on a store opened read-only; only the writer "
                              "process writes checkpoints",
                              path_));
  MutexLock lock(&write_mu_);
  return checkpoint_locked();
}

Status Store::Impl::checkpoint_locked() {
  Status s = write_checkpoint_locked();
  if (s.ok()) {
    checkpoint_failures_in_row_ = 0;
    last_checkpoint_error_.clear();
    return s;
  }
  ++checkpoint_failures_;
  ++checkpoint_failures_in_row_;
  last_checkpoint_error_ = s.to_string();
  // 1, 2, 4 .. 64 s: a failing disk is not hammered with an fdatasync and a
  // full index blob after every append.
  const int64_t backoff_us = int64_t{1000000}
                             << std::min<uint64_t>(checkpoint_failures_in_row_ - 1, 6);
  checkpoint_retry_at_ = steady_us() + backoff_us;
  return s;
}

void Store::Impl::auto_checkpoint_locked() {
  if (poisoned_ || opt_.checkpoint_interval_bytes == 0 ||
      bytes_since_checkpoint_ < opt_.checkpoint_interval_bytes)
    return;
  if (checkpoint_failures_in_row_ > 0 && steady_us() < checkpoint_retry_at_) return;
  // A failed checkpoint does not undo the append; stats() reports it.
  checkpoint_locked().ignore_error();
}

Status Store::Impl::write_checkpoint_locked() {
  if (read_only_) return Status();
  if (poisoned_)
    return closed(
        fmt::format("{}: store refuses writes until reopened: {}", path_, poison_message()));
  uint64_t old_slot = kNoSlot;
  {
    ReaderLock ix(&index_mu_);
    if (next_position_ - 1 == index_covers_ && index_slot_ != kNoSlot && ckpt_ &&
        ckpt_->durable_position == index_covers_)
      return Status();  // nothing written since the last checkpoint
    old_slot = index_slot_;
  }
  {
    MutexLock lock(&sync_mu_);
    while (syncing_) sync_cv_.wait(lock);
    Status s = sync_data("checkpoint");
    if (!s.ok()) {
      poison(s).ignore_error();
      sync_cv_.notify_all();
      return s;
    }
    store_max(synced_, written_.load());
  }
  publish_committed(written_.load());  // durable now, so committed
  const uint64_t covers = next_position_ - 1;
  Result<std::string> built = std::string();
  {
    ReaderLock ix(&index_mu_);  // no batch is pending: the index holds them all
    built = index_.build_blob(covers, tail_offset_, seed_);
  }
  if (!built.ok())
    return corruption(fmt::format("{}: cannot write a checkpoint: index segment {}: {} (run "
                                  "'esdump verify {}'; the log itself is not affected)",
                                  path_, old_slot, built.status().message(), path_),
                      static_cast<int64_t>(old_slot), -1);
  const std::string& blob = *built;
  uint64_t count = (sh::kSize + blob.size() + seg_size_ - 1) / seg_size_;
  EVENTSOURCE_ASSIGN_OR_RETURN(uint64_t slot,
                               allocate_slots(SegmentKind::kIndex, count, covers, blob.size()));
  Status s = write_all(blob.data(), blob.size(), slot_offset(slot) + sh::kSize,
                       "writing the stream index");
  if (s.ok()) s = sync_data("stream index");
  if (!s.ok()) {
    for (uint64_t k = 0; k < count; ++k) slots_[slot + k] = SlotInfo{};
    if (s.code() == Code::kIoError) poison(s).ignore_error();
    return s;
  }
  Checkpoint c;
  c.store_id = header_.store_id;
  c.durable_position = covers;
  c.last_frame_offset = covers > 0 ? last_frame_offset_ : 0;
  c.index_slot = slot;
  c.index_epoch = slots_[slot].epoch;
  c.written_us = now_us();
  bool renamed = false;
  s = write_checkpoint_file(*os_, path_, c, seed_, opt_.file_mode, &renamed);
  if (!s.ok() && !renamed) {
    // The old checkpoint still names the old index: the new one is garbage.
    free_index_segment(slot).ignore_error();  // else freed at the next open
    return s;
  }
  // In place (even if its directory fsync failed): the checkpoint file now
  // names the new index, so it is the one in use.
  ckpt_ = c;
  // Swap the in-memory index onto the new persisted one.
  int err = 0;
  size_t len = count * seg_size_;
  const void* m = os_->map_read(fd_, slot_offset(slot), len, &err);
  if (m != nullptr) {
    WriterLock ix(&index_mu_);
    StreamIndex fresh;
    StreamIndex::BlobInfo info;
    if (fresh
            .load_blob(static_cast<const uint8_t*>(m) + sh::kSize, blob.size(), seed_, false, &info)
            .ok()) {
      index_ = std::move(fresh);
      if (index_map_ != nullptr) os_->unmap(index_map_, index_map_len_);
      index_map_ = static_cast<const uint8_t*>(m);
      index_map_len_ = len;
    } else {
      os_->unmap(m, len);
    }
    index_slot_ = slot;
    index_epoch_ = c.index_epoch;
    index_covers_ = covers;
  } else {
    WriterLock ix(&index_mu_);
    index_slot_ = slot;
    index_epoch_ = c.index_epoch;
    index_covers_ = covers;
  }
  // The directory fsync failed: after a power loss the old checkpoint file
  // may come back, naming the old index, so that one is kept too (the next
  // open frees whichever is not named). The checkpoint is not durable: the
  // next one is tried as if this one had not happened.
  if (!s.ok()) return s;
  // The previous index segment is no longer referenced: zero it (so no
  // stale header or blob byte outlives it) and free its slots.
  if (old_slot != kNoSlot && old_slot < slots_.size() && old_slot != slot)
    free_index_segment(old_slot).ignore_error();  // retried at the next open
  bytes_since_checkpoint_ = 0;
  return Status();
}

}  // namespace eventsource
