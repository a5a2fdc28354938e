// The storage engine's front door: a single-file, segmented, checksummed,
// memory-mapped event log with a stream index and a checkpoint file.
// See format-spec.md for every byte it writes and README.md for a guide.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eventsource/options.h"
#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

struct AppendResult {
  StreamVersion version;  // the stream's version after the append
  // The positions of the batch's first and last event. A written batch is
  // one frame, so its positions are dense: first..last are all its own.
  GlobalPosition first_position;
  GlobalPosition last_position;
  // True when the batch was an idempotent retry of events already stored:
  // nothing was written, and first/last are the stored first and last
  // event's positions. Those events may have been stored by several appends,
  // so other streams' events can lie between them (read the stream to see
  // each event's own position).
  bool deduplicated = false;
};

enum class ReadDirection : uint8_t { kForward, kBackward };

// Filters for read_all. Empty fields match everything.
struct ReadFilter {
  // (Members have initializers so designated initializers may omit any.)
  std::vector<std::string> event_types = {};  // any of these types
  std::string stream_type = {};               // only streams of this type
  std::optional<std::string> tenant = {};     // only this tenant ("" = events without tenant)
};

// max_count for "as many as there are".
inline constexpr uint64_t kNoLimit = ~uint64_t{0};

// What read_stream reads. Example: {.from = StreamVersion(10), .max_count = 100}.
struct ReadStreamOptions {
  // Forward: the first version to read (0 or 1 = the first event).
  // Backward: the version to read back from (0 or past the end = the last).
  StreamVersion from = {};
  // At most this many events (0 reads nothing).
  uint64_t max_count = kNoLimit;
  ReadDirection direction = ReadDirection::kForward;
};

// What read_all reads, in global order. Example: {.from = GlobalPosition(1001)}.
struct ReadAllOptions {
  // The first position to read (0 or 1 = the first event).
  GlobalPosition from = {};
  // At most this many events that pass `filter` (0 reads nothing).
  uint64_t max_count = kNoLimit;
  ReadFilter filter = {};
};

// Return true to continue, false to stop the read early.
using EventCallback = std::function<bool(const RecordedEvent&)>;

// Where a committed event is stored.
struct EventLocation {
  GlobalPosition position;
  StreamId stream;
  StreamVersion version;
};

struct StreamInfo {
  std::string type;
  std::string id;
  StreamVersion version;  // number of events in the stream
};

struct StoreStats {
  uint32_t format_version = 0;
  uint64_t segment_size = 0;
  uint32_t event_segments = 0;
  uint32_t index_segments = 0;
  uint32_t free_segments = 0;
  uint64_t events = 0;  // == committed position
  uint64_t streams = 0;
  GlobalPosition first_position;  // 0 when empty
  GlobalPosition last_position;
  uint64_t file_bytes = 0;  // data file + checkpoint file, as allocated on disk (holes excluded)
  uint64_t log_bytes = 0;   // bytes of frames in event segments
  uint64_t compressed_frames = 0;
  uint64_t raw_record_bytes = 0;          // record bytes before compression
  uint64_t stored_record_bytes = 0;       // record bytes as stored (compressed or not)
  uint64_t index_persisted_position = 0;  // how far the persisted index reaches
  // Automatic checkpoints (StoreOptions::checkpoint_interval_bytes) that
  // failed since open, in all and in a row; after a failure the next one is
  // tried no sooner than 1, 2, 4 .. 64 s later (appends never wait for it).
  // A lagging checkpoint only makes the next open scan more log.
  uint64_t checkpoint_failures = 0;
  uint64_t checkpoint_failures_in_row = 0;
  std::string last_checkpoint_error;  // "" when the last checkpoint succeeded
  // Aux records (snapshots, dead letters, projection states): live counts
  // as of this handle's committed view, and the aux segments holding them.
  uint64_t snapshots = 0;         // live snapshots, all streams
  uint64_t snapshot_streams = 0;  // streams with at least one snapshot
  uint64_t dead_letters = 0;
  uint64_t projection_states = 0;  // saved states, reserved names (kRetryMarksName) not counted
  uint32_t aux_segments = 0;
  uint64_t aux_bytes = 0;        // bytes of aux frames in the aux chain
  uint64_t aux_live_bytes = 0;   // of which records still live (the rest compaction reclaims)
  uint64_t aux_compactions = 0;  // compactions of the aux chain since open
};

// A stream's snapshot: state of an aggregate at `version`, opaque to the
// engine. `schema_version` lets a code change invalidate old snapshots.
struct Snapshot {
  StreamVersion version;
  uint32_t schema_version = 0;
  int64_t timestamp_us = 0;  // when it was put (microseconds since the Unix epoch)
  std::string bytes;
};

// An event a projection gave up on: where, why, how often, when.
struct DeadLetter {
  uint64_t id = 0;         // assigned by add_dead_letter (ignored on input); unique, never reused
  std::string projection;  // 1..255 bytes
  GlobalPosition position;
  std::string error;  // 0..64 KiB
  uint32_t attempts = 0;
  int64_t first_failure_us = 0;
  int64_t last_failure_us = 0;
};

// A projection's checkpoint: the position it has handled, and an optional
// small opaque state (0..64 KiB).
struct ProjectionState {
  GlobalPosition position;
  std::string state;
  int64_t updated_us = 0;
};

// Projection names beginning with kReservedNamePrefix are the library's own
// records: save_projection_state, projection_state and add_dead_letter
// refuse them (kInvalidArgument), projection_names() and
// StoreStats::projection_states leave them out.
inline constexpr char kReservedNamePrefix = '$';
// The reserved projection-state record that holds the retry marks of dead
// letters (format-spec.md [F-47]).
inline constexpr std::string_view kRetryMarksName = "$dlq.retry";
// At most this many dead letters are marked for retry at once: the marks
// are one projection state (64 KiB) of 8-byte ids.
inline constexpr size_t kMaxRetryMarks = (64 << 10) / 8;

// One problem found by verify().
struct VerifyProblem {
  std::string file;
  int64_t segment = -1;  // -1 when not inside a segment (file header, checkpoint file)
  int64_t offset = -1;   // byte offset in the file
  std::string what;
};

struct VerifyReport {
  uint64_t frames = 0;
  uint64_t events = 0;
  uint64_t streams = 0;
  uint64_t bytes_checked = 0;
  std::vector<VerifyProblem> problems;  // damage; empty = clean
  // Where the log ends in a torn tail: batches written past the durable end
  // that never became whole (a crash mid-write, or a live writer's write in
  // progress). Not damage: no acknowledged event is in it, and the next
  // read-write open cuts the log there (format-spec.md [F-31]). A bad tail
  // holding a durable position is damage, in `problems`, never here.
  std::optional<VerifyProblem> torn_tail;
  // No damage (a torn tail is not damage).
  bool clean() const { return problems.empty(); }
};

// Progress callback for long operations: bytes done of total.
using ProgressCallback = std::function<void(uint64_t done, uint64_t total)>;

struct VerifyOptions {
  // Called as verify goes through the data file (optional).
  ProgressCallback progress = {};
  // The file/OS layer, as StoreOptions::os. nullptr: the real one.
  std::shared_ptr<Os> os = nullptr;
};

struct RepairOptions {
  // The file/OS layer, as StoreOptions::os. nullptr: the real one.
  std::shared_ptr<Os> os = nullptr;
  // Permission bits of the side file that keeps the cut bytes.
  uint32_t file_mode = 0600;
};

struct RepairReport {
  bool changed = false;         // false: nothing to repair
  GlobalPosition kept_through;  // last position kept
  uint64_t bytes_cut = 0;
  std::string side_file;                // where the cut bytes were saved ("" if none)
  std::vector<VerifyProblem> problems;  // what was found before repairing
};

// Thread safety: safe for concurrent use, close() included. Appends from
// many threads are serialized and group-committed; reads are concurrent with
// appends and with each other.
//
// The committed view: every read-side call (read_stream, read_all,
// stream_version, list_streams, stats, committed_position) reports the same
// committed prefix of the log. An append is committed when it is
// acknowledged: kNone once written, kGroup/kEach once its sync completed. A
// batch whose sync is pending, or failed, is invisible to all of them.
//
// close() stops new calls (they return kClosed, or an empty/zero answer
// where the call returns no Status), waits for calls in flight (reads and
// their callbacks, appends waiting for a sync) to finish, then releases the
// files. Destroying the Store while another thread is still inside one of its
// calls is a caller bug; close() first.
class Store {
 public:
  // Opens or creates the store at `path` (the data file; the checkpoint file
  // is `path` + ".ckpt"). Recovers from a crash: a torn batch at the tail is
  // cut off (read-write) or ignored (read-only). Damage before the durable end
  // is a kCorruption error naming segment and offset; run repair() then.
  // Errors: kBusy (another writer process, message has its pid), kIoError,
  // kCorruption, kNotSupported (newer format), kNotFound (kMustExist).
  static Result<std::unique_ptr<Store>> open(const std::string& path,
                                             const StoreOptions& options = {});

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Closes without reporting failure; prefer close().
  ~Store();

  // Waits for calls in flight, writes a checkpoint (read-write), releases
  // lock, mappings and files. Afterwards every call returns kClosed.
  // Idempotent. Errors: kInvalidArgument from inside a read callback of this
  // store (close would wait for itself); kIoError from the checkpoint or
  // close(2) (the files are released all the same).
  Status close();

  // Appends `events` (1 .. 32767 events, all-or-nothing) to `stream` if
  // `expected` accepts its current version.
  //
  // Event ids are unique in the store (format-spec.md [F-25]). An event
  // with a nil id gets a fresh random one. When some events carry ids
  // that are already stored (committed, or written by an append still
  // waiting for its sync), the batch is judged as a whole, and nothing is
  // written:
  //  - a retry, if every event's id is stored, all in `stream`, at
  //    consecutive versions in batch order, and `expected` accepts the
  //    version before the first of them: the result describes the stored
  //    events (deduplicated = true; it waits for their durability as an
  //    append would). With any(), a retry is recognized even after other
  //    appends landed in the stream.
  //  - kConflict, if they are stored that way but `expected` does not accept
  //    the version before them (actual_version() = current version);
  //  - kDuplicateEvent otherwise: some ids stored and some new ([E1, e2]
  //    after E1, [e_new, E1], partial overlaps), stored in another stream,
  //    or in another order. The message names the first stored id's stream,
  //    version and position.
  // Errors: kConflict (actual_version() = current version), kDuplicateEvent,
  // kInvalidArgument (also: two events of the batch share an id),
  // kReadOnly, kIoError naming file and operation. After a failed fdatasync
  // the store refuses writes (kClosed) until reopened; other I/O errors (e.g.
  // ENOSPC/EFBIG allocating a segment or its next extent) fail only that
  // append, nothing acked is lost, and appends may succeed again once space
  // is available.
  Result<AppendResult> append(const StreamId& stream, ExpectedVersion expected,
                              std::span<const EventData> events, const AppendOptions& options = {});

  // Calls `fn` for the committed events of `stream` that `options` select,
  // in version order (or reverse). A missing stream reads as empty (ok).
  // Stops early when fn returns false. fn may call any read on this store.
  Status read_stream(const StreamId& stream, const ReadStreamOptions& options,
                     const EventCallback& fn) const;

  // Calls `fn` for the committed events that `options` select, in global
  // order. Every committed position is delivered or the read fails with
  // kCorruption naming segment and offset. fn may call any read on this store.
  Status read_all(const ReadAllOptions& options, const EventCallback& fn) const;

  // The committed event with this id, if any: one probe of the store-wide
  // event-id table and one record read, no scan. Pending appends are not
  // seen (the committed view). Errors: kClosed, kCorruption (a damaged id
  // table or record, located).
  Result<std::optional<EventLocation>> find_event(const Uuid& id) const;
  // Whether a committed event has this id (find_event without the where).
  Result<bool> event_exists(const Uuid& id) const;
  // Committed version of a stream (0 if it does not exist, or closed).
  StreamVersion stream_version(const StreamId& stream) const;

  // Every stream with a committed event, in name order (empty once closed).
  std::vector<StreamInfo> list_streams() const;

  // The last committed position (0 = empty store).
  GlobalPosition committed_position() const;

  // False once close() has begun (every call then returns kClosed or an
  // empty answer). Tells an empty answer from a closed store's.
  bool is_open() const;

  // Read-only handles: picks up what a live writer committed since open/the
  // last refresh. Returns the new committed position. Read-write: a no-op.
  Result<GlobalPosition> refresh();

  // Persists the stream index and writes the checkpoint file, so that the next
  // open need not scan the log. Syncs the data first. Errors: kReadOnly,
  // kClosed, kIoError.
  Status checkpoint();

  // Counters and sizes. The first call walks every frame header of the log
  // (O(log size), outside the writer's lock); later calls walk only what
  // was committed since.
  StoreStats stats() const;
  const std::string& path() const;

  // Checks every checksum of the store at `path` without modifying it (works
  // while a writer is live). I/O failure to open is an error; damage is
  // reported in the VerifyReport.
  static Result<VerifyReport> verify(const std::string& path, const VerifyOptions& options = {});

  // Cuts the log after the last good frame, saving the cut bytes to a side
  // file (`path` + ".cut-<unix time>"), then rewrites the checkpoint. Needs
  // the writer lock. Use when open() reports corruption before the durable end.
  static Result<RepairReport> repair(const std::string& path, const RepairOptions& options = {});

  // --- Aux records: snapshots, dead letters, projection states ---
  // Each write below is one aux frame with the durability of `options`
  // (like an append: kNone returns after the write, kGroup/kEach after a
  // group-committed fdatasync that covers it) and is visible to reads of
  // this handle once it returns ok. Read-only handles see the aux state as
  // of open/refresh(). Lookups never scan: they use in-memory maps built at
  // open. Write errors: kReadOnly, kClosed (closed, or poisoned by a failed
  // fdatasync), kInvalidArgument (limits), kIoError naming file and offset.

  // Stores a snapshot of `stream` at `version` (>= 1). A second put at the
  // same version replaces the first. Errors as above; kInvalidArgument when
  // the stream name is invalid or the bytes do not fit in one segment.
  Status put_snapshot(const StreamId& stream, StreamVersion version, uint32_t schema_version,
                      std::string_view bytes, const AppendOptions& options = {});
  // The snapshot with the highest version of `stream`, or nullopt. kCorruption
  // (segment, offset) if its bytes no longer pass their checksum.
  Result<std::optional<Snapshot>> latest_snapshot(const StreamId& stream) const;
  // Versions of `stream`'s live snapshots, ascending.
  Result<std::vector<StreamVersion>> snapshot_versions(const StreamId& stream) const;
  // Every stream with a snapshot and its latest snapshot's version,
  // schema version and size (bytes left empty), in name order.
  Result<std::vector<std::pair<StreamId, Snapshot>>> list_snapshots() const;
  // Removes `stream`'s snapshots older than `keep_from`; returns how many.
  // Their space is reclaimed when the aux chain is next compacted.
  Result<uint64_t> prune_snapshots(const StreamId& stream, StreamVersion keep_from,
                                   const AppendOptions& options = {});

  // Records a dead letter (letter.id is ignored) and returns its id.
  // letter.projection: 1..255 bytes, not beginning with kReservedNamePrefix.
  Result<uint64_t> add_dead_letter(const DeadLetter& letter, const AppendOptions& options = {});
  // Dead letters, by id; only `projection`'s when it is not empty.
  Result<std::vector<DeadLetter>> dead_letters(std::string_view projection = {}) const;
  // One dead letter; kNotFound if there is none with that id.
  Result<DeadLetter> dead_letter(uint64_t id) const;
  // Removes one dead letter; kNotFound if absent. Stays removed after a crash
  // once acknowledged. Its retry mark, if any, goes stale (below).
  Status remove_dead_letter(uint64_t id, const AppendOptions& options = {});
  // Removes all dead letters (of `projection` when not empty); returns how many.
  Result<uint64_t> purge_dead_letters(std::string_view projection = {},
                                      const AppendOptions& options = {});

  // Retry marks: ids of dead letters an operator wants retried ('esdump dlq
  // STORE retry'). The app's projection runner replays marked letters
  // through their projection on its next start and then unmarks them.
  // Stored as the projection-state record named kRetryMarksName
  // (format-spec.md [F-47]); each call below that changes the marks writes
  // that record whole, once, as an aux write (durability, errors as above).
  // Calls are atomic with respect to each other: the marks are read and
  // rewritten under the write lock. A mark whose dead letter is removed
  // (remove_dead_letter, purge_dead_letters) is stale: never reported, and
  // dropped by the next write of the marks. Ids are never reused, so a
  // stale mark cannot come back to life.
  //
  // Marks `ids` (duplicates and ids marked already count once) and returns
  // how many were newly marked; writes nothing when that is 0 and no stale
  // mark is to be dropped. Errors: kNotFound naming the first id (in `ids`
  // order) without a dead letter: nothing is marked then; kInvalidArgument
  // when the marks would exceed kMaxRetryMarks (the message says how many
  // are marked: let the app retry them, or resolve or purge dead letters,
  // first); kCorruption (located) when the stored marks are malformed.
  Result<uint64_t> mark_dead_letters_for_retry(std::span<const uint64_t> ids,
                                               const AppendOptions& options = {});
  // Marked ids that still have a dead letter, ascending. Read-only handles
  // see the marks as of open/refresh(). Errors: kClosed; kCorruption
  // (located) when the stored marks are malformed.
  Result<std::vector<uint64_t>> dead_letters_marked_for_retry() const;
  // Removes these ids' marks; ids not marked are ignored. Writes nothing
  // when no mark changes. Errors as mark_dead_letters_for_retry's, but
  // never kNotFound or kInvalidArgument.
  Status unmark_dead_letters(std::span<const uint64_t> ids, const AppendOptions& options = {});

  // Saves `name`'s position (and state). Costs what an append in the same
  // durability mode costs: one frame, and for kGroup/kEach a share of a
  // group-committed fdatasync. name: 1..255 bytes, not beginning with
  // kReservedNamePrefix.
  Status save_projection_state(std::string_view name, GlobalPosition position,
                               std::string_view state = {}, const AppendOptions& options = {});
  // The latest saved state of `name`, or nullopt. kInvalidArgument for a
  // reserved name.
  Result<std::optional<ProjectionState>> projection_state(std::string_view name) const;
  // Names with a saved state, in byte order; reserved names are left out.
  Result<std::vector<std::string>> projection_names() const;

  class Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace eventsource
