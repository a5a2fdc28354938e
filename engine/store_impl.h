// Store::Impl: the engine's state and the helpers shared by store.cc (open,
// recovery, append, group commit, checkpoint) and verify.cc (verify, repair).
// Internal: include only from engine/ and tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "engine/checkpoint_file.h"
#include "engine/frame.h"
#include "engine/log_reader.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "engine/stream_index.h"
#include "eventsource/store.h"

namespace eventsource {

// Most slots a store can have: 16384 x 64 MiB = 1 TiB by default.
inline constexpr size_t kMaxSlots = 16384;

inline std::string errno_text(int e) { return std::strerror(e); }

// "<type>-<id>", the stream index's key.
std::string stream_key(const StreamId& s);

// What the slot scan found in each segment slot of the data file.
struct SlotInfo {
  format::SegmentKind kind = format::SegmentKind::kFree;
  uint64_t epoch = 0;
  uint64_t first_position = 0;
  uint64_t slot_count = 1;
  uint64_t payload_len = 0;
};

// The writer's or a reader's log as a LogView: the event segments published
// when it was made, through the live mappings.
class MappedLog final : public LogView {
 public:
  explicit MappedLog(const Store::Impl& impl);
  size_t segment_count() const override { return count_; }
  const EventSeg& segment(size_t index) const override;
  const uint8_t* bytes(uint64_t slot, uint64_t* avail) const override;

 private:
  const Store::Impl& impl_;
  size_t count_;
};

class Store::Impl {
 public:
  Impl(std::string path, const StoreOptions& options);
  ~Impl();

  Status open();
  Status close();
  // Unmaps and closes the file (releasing the writer lock); writes a
  // checkpoint first when asked and possible. Idempotent.
  Status release(bool checkpoint);

  // --- layout helpers ---
  uint64_t slot_offset(uint64_t slot) const { return format::kFileHeaderSize + slot * seg_size_; }
  uint64_t slot_of(uint64_t file_offset) const {
    return (file_offset - format::kFileHeaderSize) >> seg_shift_;  // seg_size_ is 2^seg_shift_
  }
  const uint8_t* slot_map(uint64_t slot) const {
    return slot < map_cap_ ? maps_[slot].load(std::memory_order_acquire) : nullptr;
  }
  std::string where(uint64_t slot, uint64_t offset) const;

  // --- I/O helpers (errors name the file and the operation) ---
  Status write_all(const void* p, size_t n, uint64_t off, const char* what);
  Status read_exact(void* p, size_t n, uint64_t off, const char* what);
  Status sync_data(const char* what);
  Status map_slot(uint64_t slot);
  enum class Space : uint8_t { kKeep, kRelease };
  Status zero_range(uint64_t off, uint64_t len, Space space);

  // --- open / recovery ---
  Status create_file();
  Status read_slots();
  Status load_checkpoint_and_index(uint64_t* scan_seg, uint64_t* scan_off, uint64_t* expected);
  // Scans frames from (segs_[seg_index], offset), indexing events. Stops at
  // the end of the log or the first bad frame (returned in *bad).
  Status scan_log(size_t seg_index, uint64_t offset, uint64_t expected,
                  std::optional<BadFrame>* bad);
  // True when some frame after `bad` proves that the bad frame had been durable.
  bool later_frame_proves_durable(const BadFrame& bad) const;
  struct Range {
    uint64_t off, len;
  };
  // Appends the bytes of `ranges` to the side file (created on first use).
  Status save_ranges(const std::vector<Range>& ranges, std::string* side_file,
                     uint64_t* bytes_saved);
  Status cut_log(const BadFrame& bad, std::string* side_file, uint64_t* bytes_cut,
                 bool save_side_file);
  Status index_frame(const uint8_t* frame, const FrameHeader& h, uint64_t offset, uint64_t slot);

  // --- writes ---
  Result<AppendResult> append(const StreamId& stream, ExpectedVersion expected,
                              std::span<const EventData> events, const AppendOptions& options);
  Result<uint64_t> allocate_slots(format::SegmentKind kind, uint64_t count, uint64_t first_position,
                                  uint64_t payload_len);
  Status roll_segment(uint64_t first_position);
  Status free_index_segment(uint64_t slot);
  Status wait_durable(uint64_t position, Durability mode);
  Status checkpoint_locked();
  void publish_committed(uint64_t position);
  Status poison(Status why);

  // --- reads ---
  // The decoded body of the compressed frame a read saw last. One per read
  // call: the views a read hands out point into it.
  struct DecodeCache {
    std::string body;
    uint64_t frame = 0;
    uint64_t epoch = 0;
    bool valid = false;
  };
  // Reads the record a locator points to; views stay valid while the
  // mapping lives and `cache` is not used for another compressed frame.
  Status read_locator(uint64_t locator, RecordedEvent* ev, DecodeCache* cache) const;
  Status read_stream(const StreamId& stream, const ReadStreamOptions& options,
                     const EventCallback& fn) const;
  Status read_all(const ReadAllOptions& options, const EventCallback& fn) const;
  Result<GlobalPosition> refresh();
  StoreStats stats() const;

  // --- state ---
  std::string path_;
  StoreOptions opt_;
  std::shared_ptr<Os> os_;
  bool read_only_ = false;
  int fd_ = -1;
  std::atomic<bool> closed_{false};
  FileHeader header_;
  uint64_t seed_ = 0;
  uint64_t seg_size_ = 0;
  unsigned seg_shift_ = 0;

  std::vector<SlotInfo> slots_;  // guarded by write_mu_
  size_t map_cap_ = 0;
  std::unique_ptr<std::atomic<const uint8_t*>[]> maps_;
  std::unique_ptr<EventSeg[]> segs_;
  std::atomic<uint32_t> seg_count_{0};

  mutable std::shared_mutex index_mu_;
  StreamIndex index_;
  const uint8_t* index_map_ = nullptr;
  size_t index_map_len_ = 0;
  uint64_t index_slot_ = kNoSlot;
  uint64_t index_epoch_ = 0;
  uint64_t index_covers_ = 0;
  std::optional<Checkpoint> ckpt_;
  std::string ckpt_problem_;

  std::atomic<uint64_t> committed_{0};

  mutable std::mutex write_mu_;
  uint64_t next_position_ = 1;
  uint64_t tail_offset_ = 0;  // 0: no event segment yet
  uint64_t tail_slot_ = 0;
  uint64_t tail_epoch_ = 0;
  uint64_t next_epoch_ = 1;
  uint64_t last_frame_offset_ = 0;
  uint64_t bytes_since_checkpoint_ = 0;
  // stats(): frame totals up to a cursor (the frame after the last counted
  // one), so each frame is walked once per handle.
  struct LogTotals {
    uint64_t log_bytes = 0;
    uint64_t raw_record_bytes = 0;
    uint64_t stored_record_bytes = 0;
    uint64_t compressed_frames = 0;
    uint64_t slot = 0;
    uint64_t epoch = 0;
    uint64_t offset = 0;
    uint64_t expected = 1;  // 1: nothing counted yet
  };
  mutable std::mutex stats_mu_;
  mutable LogTotals totals_;  // guarded by stats_mu_

  std::atomic<bool> poisoned_{false};
  mutable std::mutex poison_mu_;
  Status poison_;  // guarded by poison_mu_
  std::string poison_message() const;
  // Repair mode (Store::repair): full scan, cut at the first bad frame, save the cut.
  bool repair_mode_ = false;
  RepairReport* repair_report_ = nullptr;
  FrameEncoder encoder_;

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> synced_{0};
  bool syncing_ = false;
  std::atomic<int> in_flight_{0};
};

}  // namespace eventsource
