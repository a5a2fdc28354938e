// Store::Impl: the engine's state and the helpers shared by store.cc (open,
// recovery, append, group commit, checkpoint) and verify.cc (verify, repair).
// Internal: include only from engine/ and tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "engine/aux_log.h"
#include "engine/checkpoint_file.h"
#include "engine/frame.h"
#include "engine/log_reader.h"
#include "engine/mutex.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "engine/stream_index.h"
#include "eventsource/store.h"

namespace eventsource {

// Most slots a store can have: 16384 x 64 MiB = 1 TiB by default.
inline constexpr size_t kMaxSlots = 16384;

inline std::string errno_text(int e) { return std::strerror(e); }

// Microseconds on the steady clock (for intervals, not timestamps).
inline int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Raises `a` to `v` unless it is already higher.
inline void store_max(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load();
  while (cur < v && !a.compare_exchange_weak(cur, v)) {
  }
}

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

// The aux segments among `slots`, in epoch order: the aux chain [F-38].
std::vector<EventSeg> aux_segments(const std::vector<SlotInfo>& slots);

// The writer's or a reader's log as a LogView: the event segments published
// when it was made, through the live mappings.
class MappedLog final : public LogView {
 public:
  explicit MappedLog(const Store::Impl& impl);
  size_t segment_count() const override { return segs_->size(); }
  const EventSeg& segment(size_t index) const override { return (*segs_)[index]; }
  const uint8_t* bytes(uint64_t slot, uint64_t* avail) const override;

 private:
  const Store::Impl& impl_;
  std::shared_ptr<const std::vector<EventSeg>> segs_;
};

class Store::Impl {
 public:
  Impl(std::string path, const StoreOptions& options);
  ~Impl();

  Status open() EVENTSOURCE_EXCLUDES(write_mu_);
  // Stops new operations (they get kClosed), waits for those in flight,
  // writes a checkpoint (read-write), then releases the files. Idempotent.
  // Errors: kInvalidArgument when called from inside a read callback of
  // this store (it would wait for itself).
  Status close() EVENTSOURCE_EXCLUDES(write_mu_);
  // Unmaps and closes the file (releasing the writer lock); writes a
  // checkpoint first when asked and possible. Idempotent.
  Status release(bool checkpoint) EVENTSOURCE_EXCLUDES(write_mu_);

  // An operation in flight; ok() is false once the store is closed (then
  // the operation must return closed_status()). Holds off release().
  class OpGuard {
   public:
    explicit OpGuard(const Impl& impl);
    ~OpGuard();
    OpGuard(const OpGuard&) = delete;
    OpGuard& operator=(const OpGuard&) = delete;
    bool ok() const { return ok_; }

   private:
    const Impl& impl_;
    bool ok_;
  };
  Status closed_status() const;

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
  // Makes [off, off+len) read as zeros and gives its space back.
  Status zero_range(uint64_t off, uint64_t len);

  // --- open / recovery (write_mu_ held, though nothing else runs yet) ---
  Status open_locked() EVENTSOURCE_REQUIRES(write_mu_);
  Status create_file();
  Status read_slots() EVENTSOURCE_REQUIRES(write_mu_);
  Status load_checkpoint_and_index(uint64_t* scan_seg, uint64_t* scan_off, uint64_t* expected)
      EVENTSOURCE_REQUIRES(write_mu_);
  // Scans frames from (segment seg_index, offset), indexing events, and
  // publishes what it indexed as committed. Stops at the end of the log or
  // the first bad frame (returned in *bad).
  Status scan_log(size_t seg_index, uint64_t offset, uint64_t expected,
                  std::optional<BadFrame>* bad) EVENTSOURCE_REQUIRES(write_mu_);
  // Whether the scan met a damaged persisted directory entry; then the
  // persisted index is dropped and the whole log scanned [F-21].
  bool index_damaged() const EVENTSOURCE_EXCLUDES(index_mu_);
  Status rescan_without_index(std::optional<BadFrame>* bad) EVENTSOURCE_REQUIRES(write_mu_)
      EVENTSOURCE_EXCLUDES(index_mu_);
  // True when some frame after `bad` proves that the bad frame had been durable.
  bool later_frame_proves_durable(const BadFrame& bad) const;
  struct Range {
    uint64_t off, len;
  };
  // Appends the bytes of `ranges` to the side file (created on first use).
  Status save_ranges(const std::vector<Range>& ranges, std::string* side_file,
                     uint64_t* bytes_saved);
  Status cut_log(const BadFrame& bad, std::string* side_file, uint64_t* bytes_cut,
                 bool save_side_file) EVENTSOURCE_REQUIRES(write_mu_);
  Status index_frame(const uint8_t* frame, const FrameHeader& h, uint64_t offset, uint64_t slot)
      EVENTSOURCE_REQUIRES(index_mu_);

  // --- writes ---
  Result<AppendResult> append(const StreamId& stream, ExpectedVersion expected,
                              std::span<const EventData> events, const AppendOptions& options)
      EVENTSOURCE_EXCLUDES(write_mu_);
  // The writer's view of stream `key`: its version counting pending
  // batches too (the expected-version check runs ahead of the committed
  // view).
  Result<uint64_t> writer_version(const std::string& key) EVENTSOURCE_REQUIRES(write_mu_)
      EVENTSOURCE_EXCLUDES(pending_mu_, index_mu_);
  // Where the caller-given ids of `events` are already stored (committed
  // or pending): found[i] is event i's stored record, if any.
  struct StoredEvent {
    StreamId stream;
    StreamVersion version;
    GlobalPosition position;
  };
  // `fps`: IdTable::fingerprint of each event's id (nil ids are skipped).
  Status find_stored_ids(std::span<const EventData> events, std::span<const uint64_t> fps,
                         std::vector<std::optional<StoredEvent>>* found)
      EVENTSOURCE_REQUIRES(write_mu_) EVENTSOURCE_EXCLUDES(pending_mu_, index_mu_);
  // The retry / duplicate / conflict rule for a batch some of whose ids are
  // stored (format-spec.md "Event ids"): an AppendResult for a retry, else
  // the error.
  Result<AppendResult> judge_stored_ids(const StreamId& stream, ExpectedVersion expected,
                                        uint64_t current,
                                        const std::vector<std::optional<StoredEvent>>& found) const;
  Result<uint64_t> allocate_slots(format::SegmentKind kind, uint64_t count, uint64_t first_position,
                                  uint64_t payload_len) EVENTSOURCE_REQUIRES(write_mu_);
  Status roll_segment(uint64_t first_position) EVENTSOURCE_REQUIRES(write_mu_);
  // Allocates the tail segment's next extent(s) so that [.., end) is
  // allocated: the allocated part doubles, or grows to `end` if more.
  // Errors: kIoError (ENOSPC, EFBIG) naming the file and offset.
  Status ensure_allocated(uint64_t end) EVENTSOURCE_REQUIRES(write_mu_);
  Status free_index_segment(uint64_t slot) EVENTSOURCE_REQUIRES(write_mu_);
  Status wait_durable(uint64_t position, Durability mode) EVENTSOURCE_EXCLUDES(sync_mu_);
  // Waits (group commit) until an fdatasync covers event `position` and aux
  // sequence `aux_seq` (0: nothing of that kind). Does not publish.
  // The sync leader's short wait for appenders still writing (group_commit.cc).
  void gather_riders(uint64_t covered_writes, uint64_t expected, int64_t last_sync_ns)
      EVENTSOURCE_EXCLUDES(sync_mu_);
  Status sync_until(uint64_t position, uint64_t aux_seq, Durability mode)
      EVENTSOURCE_EXCLUDES(sync_mu_);
  // Writes a checkpoint and keeps its outcome for stats() (failures in a
  // row set when the next automatic one may be tried).
  Status checkpoint_locked() EVENTSOURCE_REQUIRES(write_mu_);
  Status write_checkpoint_locked() EVENTSOURCE_REQUIRES(write_mu_);
  // The automatic checkpoint after an append, when due: skipped while
  // backing off after failures; its errors go to stats(), not the append.
  void auto_checkpoint_locked() EVENTSOURCE_REQUIRES(write_mu_);
  // Makes every batch up to `position` visible: moves pending batches into
  // the index and advances committed_, together under index_mu_.
  void publish_committed(uint64_t position) EVENTSOURCE_EXCLUDES(pending_mu_, index_mu_);
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
                     const EventCallback& fn) const EVENTSOURCE_EXCLUDES(index_mu_);
  Status read_all(const ReadAllOptions& options, const EventCallback& fn) const;
  Result<std::optional<EventLocation>> find_event(const Uuid& id) const
      EVENTSOURCE_EXCLUDES(index_mu_);
  Result<GlobalPosition> refresh() EVENTSOURCE_EXCLUDES(write_mu_);
  StreamVersion stream_version(const StreamId& stream) const EVENTSOURCE_EXCLUDES(index_mu_);
  std::vector<StreamInfo> list_streams() const EVENTSOURCE_EXCLUDES(index_mu_);
  Status checkpoint() EVENTSOURCE_EXCLUDES(write_mu_);
  StoreStats stats() const EVENTSOURCE_EXCLUDES(write_mu_, index_mu_, stats_mu_);

  // --- state ---
  // Lock order: write_mu_, then sync_mu_, then pending_mu_, then index_mu_,
  // then seg_mu_; stats_mu_, poison_mu_, close_mu_ and aux_mu_ are leaves.

  // Set by open() and constant until release(): no lock.
  std::string path_;
  StoreOptions opt_;
  std::shared_ptr<Os> os_;
  bool read_only_ = false;
  int fd_ = -1;
  FileHeader header_;
  uint64_t seed_ = 0;
  uint64_t seg_size_ = 0;
  unsigned seg_shift_ = 0;
  size_t map_cap_ = 0;
  // Mappings of event segments by slot, published with release stores and
  // unmapped only by release() once no operation is in flight.
  std::unique_ptr<std::atomic<const uint8_t*>[]> maps_;
  // A read-only handle of a file cut short inside its last slot reads that
  // slot as a read-write open sees it after padding the file: the bytes
  // there, then zeros. A mapping would fault past the end of the file, so
  // the slot is a heap copy (short_slot_, with short_len_ bytes of the file;
  // kNoSlot: none). Set by read_slots and map_slot (at open, or in refresh
  // under write_mu_); copies live until release(), as readers may hold them.
  uint64_t short_slot_ = kNoSlot;
  uint64_t short_len_ = 0;
  uint64_t copied_slot_ = kNoSlot;  // the slot maps_ holds a copy of, and how
  uint64_t copied_len_ = 0;         // many bytes of the file it has
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> slot_copies_;
  // Publish a slot's bytes in maps_ (replacing what is there): a copy of the
  // short slot, or a mapping of the file.
  Status copy_short_slot(uint64_t slot);
  Status map_file_slot(uint64_t slot);
  // Repair mode (Store::repair): full scan, cut at the first bad frame, save the cut.
  bool repair_mode_ = false;
  RepairReport* repair_report_ = nullptr;

  // close(): operations in flight (reads, appends, checkpoints, refresh,
  // stats) hold an OpGuard; release() waits for them to leave before it
  // unmaps, and every call that starts after closed_ is set gets kClosed.
  std::atomic<bool> closed_{false};
  mutable std::atomic<int> active_ops_{0};
  mutable Mutex close_mu_;
  mutable CondVar close_cv_;

  // The writer: slots, the tail of the log, positions, checkpoints.
  mutable Mutex write_mu_ EVENTSOURCE_ACQUIRED_BEFORE(sync_mu_);
  std::vector<SlotInfo> slots_ EVENTSOURCE_GUARDED_BY(write_mu_);
  uint64_t next_position_ EVENTSOURCE_GUARDED_BY(write_mu_) = 1;
  uint64_t tail_offset_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;  // 0: no event segment yet
  uint64_t tail_slot_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  uint64_t tail_epoch_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  // File offset up to which the tail segment's bytes are allocated [F-8].
  uint64_t alloc_end_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  uint64_t next_epoch_ EVENTSOURCE_GUARDED_BY(write_mu_) = 1;
  uint64_t last_frame_offset_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  uint64_t bytes_since_checkpoint_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  FrameEncoder encoder_ EVENTSOURCE_GUARDED_BY(write_mu_);
  std::optional<Checkpoint> ckpt_ EVENTSOURCE_GUARDED_BY(write_mu_);
  std::string ckpt_problem_ EVENTSOURCE_GUARDED_BY(write_mu_);
  // Checkpoints that failed; automatic ones back off: the next is tried no
  // sooner than checkpoint_retry_at_ (steady clock, microseconds).
  uint64_t checkpoint_failures_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  uint64_t checkpoint_failures_in_row_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  int64_t checkpoint_retry_at_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  std::string last_checkpoint_error_ EVENTSOURCE_GUARDED_BY(write_mu_);

  // Group commit.
  Mutex sync_mu_ EVENTSOURCE_ACQUIRED_BEFORE(pending_mu_);
  CondVar sync_cv_;
  bool syncing_ EVENTSOURCE_GUARDED_BY(sync_mu_) = false;
  std::atomic<uint64_t> written_{0};  // last position written to the file
  std::atomic<uint64_t> synced_{0};   // last position made durable
  std::atomic<int> in_flight_{0};     // appends in progress (group-commit window)
  std::atomic<uint64_t> writes_{0};   // batches and aux records written, ever
  // What the last sync carried, for the next leader (gather_riders).
  uint64_t synced_writes_ EVENTSOURCE_GUARDED_BY(sync_mu_) = 0;  // writes_ it covered
  uint64_t last_group_ EVENTSOURCE_GUARDED_BY(sync_mu_) = 0;     // writes it carried
  int64_t last_sync_ns_ EVENTSOURCE_GUARDED_BY(sync_mu_) = 0;    // how long it took
  static constexpr int64_t kMaxGatherNs = 1'000'000;

  // Batches written but not yet committed (their sync is pending), in
  // position order. Readers never see them: publish_committed() moves them
  // into the index and advances committed_ in one step under index_mu_.
  struct PendingBatch {
    uint64_t last_position;
    std::string key;
    uint8_t type_len;
    std::vector<uint64_t> locators;
    std::vector<uint64_t> fps;  // IdTable::fingerprint of each event's id
  };
  Mutex pending_mu_ EVENTSOURCE_ACQUIRED_BEFORE(index_mu_);
  std::deque<PendingBatch> pending_ EVENTSOURCE_GUARDED_BY(pending_mu_);

  // The committed view every read-side call reports: the stream index and
  // committed_ change together under index_mu_.
  mutable SharedMutex index_mu_ EVENTSOURCE_ACQUIRED_BEFORE(seg_mu_);
  StreamIndex index_ EVENTSOURCE_GUARDED_BY(index_mu_);
  const uint8_t* index_map_ EVENTSOURCE_GUARDED_BY(index_mu_) = nullptr;
  size_t index_map_len_ EVENTSOURCE_GUARDED_BY(index_mu_) = 0;
  uint64_t index_covers_ EVENTSOURCE_GUARDED_BY(index_mu_) = 0;
  uint64_t index_slot_ EVENTSOURCE_GUARDED_BY(index_mu_) = kNoSlot;  // the persisted index
  uint64_t index_epoch_ EVENTSOURCE_GUARDED_BY(index_mu_) = 0;
  bool index_damaged_ EVENTSOURCE_GUARDED_BY(index_mu_) = false;
  std::atomic<uint64_t> committed_{0};  // written only with index_mu_ held

  // The event segments in log order: an immutable table, replaced whole.
  using SegTable = std::vector<EventSeg>;
  mutable Mutex seg_mu_;
  std::shared_ptr<const SegTable> segs_ EVENTSOURCE_GUARDED_BY(seg_mu_);
  std::shared_ptr<const SegTable> seg_table() const EVENTSOURCE_EXCLUDES(seg_mu_);
  void set_seg_table(SegTable table) EVENTSOURCE_EXCLUDES(seg_mu_);

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
  mutable Mutex stats_mu_;
  mutable LogTotals totals_ EVENTSOURCE_GUARDED_BY(stats_mu_);

  // --- the aux chain: snapshots, dead letters, projection states
  // (aux_store.cc; format-spec.md "Aux segments") ---
  // Open and refresh: collects, maps and walks the aux chain, cuts a torn
  // tail (read-write), and replaces the aux state.
  Status open_aux() EVENTSOURCE_REQUIRES(write_mu_) EVENTSOURCE_EXCLUDES(aux_mu_);
  AuxChainView aux_view(std::vector<EventSeg> segs) const;
  Status aux_cut(const AuxChainView& view, const BadFrame& bad, bool save_side_file)
      EVENTSOURCE_REQUIRES(write_mu_);
  Status aux_roll(uint64_t first_seq) EVENTSOURCE_REQUIRES(write_mu_);
  Status aux_ensure_allocated(uint64_t end) EVENTSOURCE_REQUIRES(write_mu_);
  // Writes one record as one aux frame; publishes it at once for kNone.
  Status aux_write_locked(const AuxRecord& r, Durability mode, uint64_t* seq)
      EVENTSOURCE_REQUIRES(write_mu_) EVENTSOURCE_EXCLUDES(aux_mu_);
  // Makes every written aux record durable and visible (one fdatasync if
  // any is pending), so the aux state is the writer's view.
  Status aux_flush_locked() EVENTSOURCE_REQUIRES(write_mu_) EVENTSOURCE_EXCLUDES(aux_mu_);
  Status aux_maybe_compact_locked() EVENTSOURCE_REQUIRES(write_mu_) EVENTSOURCE_EXCLUDES(aux_mu_);
  Status aux_compact_locked() EVENTSOURCE_REQUIRES(write_mu_) EVENTSOURCE_EXCLUDES(aux_mu_);
  void publish_aux(uint64_t seq) EVENTSOURCE_EXCLUDES(aux_mu_);
  // Common prologue of the aux writes: kClosed/kReadOnly.
  Status aux_writable() const;
  // The bytes of the live record at `offset` (`len` bytes), checksum verified.
  Status read_aux_record(uint64_t offset, uint32_t len, AuxRecord* r) const;

  std::vector<EventSeg> aux_segs_ EVENTSOURCE_GUARDED_BY(write_mu_);  // in epoch order
  uint64_t aux_next_seq_ EVENTSOURCE_GUARDED_BY(write_mu_) = 1;
  uint64_t aux_tail_offset_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;  // 0: no aux segment
  uint64_t aux_alloc_end_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  uint64_t aux_frame_bytes_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;  // frames in the chain
  uint64_t aux_compactions_ EVENTSOURCE_GUARDED_BY(write_mu_) = 0;
  std::atomic<uint64_t> aux_written_{0};  // last aux sequence written
  std::atomic<uint64_t> aux_synced_{0};   // last aux sequence made durable
  // The committed aux state (what reads see) and the records written but
  // waiting for their sync, in sequence order. A leaf lock.
  struct AuxPending {
    uint64_t seq;
    uint64_t offset;  // file offset of the record
    std::string record;
  };
  mutable Mutex aux_mu_;
  AuxState aux_state_ EVENTSOURCE_GUARDED_BY(aux_mu_);
  std::deque<AuxPending> aux_pending_ EVENTSOURCE_GUARDED_BY(aux_mu_);

  std::atomic<bool> poisoned_{false};
  mutable Mutex poison_mu_;
  Status poison_ EVENTSOURCE_GUARDED_BY(poison_mu_);
  std::string poison_message() const;
};

}  // namespace eventsource
