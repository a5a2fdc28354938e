// Options for opening a store and for a single append. Every field has its
// default here and a comment on its meaning and its cost.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

namespace eventsource {

class Os;

// What an acknowledged append survives. See format-spec.md "Durability".
enum class Durability : uint8_t {
  // Written to the page cache before append returns. Survives a process crash
  // (kill -9); a power loss or kernel crash may lose the newest appends (never
  // half a batch). Cost: one pwrite per batch.
  kNone = 0,
  // Durable on return: an fdatasync that covers the batch has completed.
  // Concurrent appenders share one sync; when other appends are in flight the
  // sync leader first waits StoreOptions::group_commit_window_us for them to
  // join (a lone appender never waits).
  kGroup = 1,
  // Durable on return, like kGroup, without the fixed window: the sync leader
  // waits only for appends already in flight to write their batches, at most
  // as many as the last sync carried and for at most as long as it took
  // (a lone appender never waits). Concurrent appenders share syncs.
  kEach = 2,
};

enum class OpenMode : uint8_t {
  kReadWrite = 0,  // takes the writer lock; fails with kBusy if another process holds it
  kReadOnly = 1,   // no lock, no writes; sees the committed prefix, refresh() follows a live writer
};

enum class CreateMode : uint8_t {
  kCreateIfMissing = 0,
  kMustExist = 1,
};

struct StoreOptions {
  // Size of each segment, fixed when the store is created (ignored when
  // opening an existing store). Power of two, 1 MiB .. 1 GiB. Bigger segments
  // mean fewer mappings and segment rolls; a single batch must fit in one. Space
  // on disk grows with the log (in extents of 64 KiB, doubling), not per segment.
  uint64_t segment_size = 64ull << 20;

  // Default durability of appends (AppendOptions can override per append).
  Durability durability = Durability::kGroup;

  // Wait of a group-commit leader for more appenders (kGroup only, and only
  // while other appends are in flight). 0 makes kGroup gather as kEach does. Cost: up to this much
  // extra latency per durable append under concurrency; gain: fewer syncs.
  uint32_t group_commit_window_us = 100;

  // Frames (batches) whose encoded records reach this many bytes are zstd
  // compressed when that saves at least 1/8. 0 disables compression (default):
  // compressed frames are decoded whole on every read of one of their events,
  // which costs random reads (read_stream) far more than it saves on disk.
  uint32_t compress_min_bytes = 0;
  int compression_level = 1;

  OpenMode mode = OpenMode::kReadWrite;
  CreateMode create = CreateMode::kCreateIfMissing;

  // Permission bits for files the store creates.
  uint32_t file_mode = 0600;

  // After this many bytes of log since the last checkpoint, append writes a
  // checkpoint (persisted stream index + checkpoint file) so that the next
  // open scans at most this much log. 0: only on close() and checkpoint().
  uint64_t checkpoint_interval_bytes = 256ull << 20;

  // The file/OS layer every syscall goes through. nullptr: the real one.
  // Tests pass a fault-injecting layer.
  std::shared_ptr<Os> os;
};

struct AppendOptions {
  // Overrides StoreOptions::durability for this append when set.
  std::optional<Durability> durability;
};

}  // namespace eventsource
