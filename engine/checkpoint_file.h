// The checkpoint file (PATH.ckpt): the durable end of the log and where the
// persisted stream index is. An accelerator and a watermark, never the only
// copy of anything. See format-spec.md "Checkpoint file".
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "engine/os.h"
#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

inline constexpr uint64_t kNoSlot = ~0ull;

struct Checkpoint {
  Uuid store_id;
  uint64_t durable_position = 0;   // every event <= this was synced before the file was written
  uint64_t last_frame_offset = 0;  // file offset of the frame holding durable_position (0: empty)
  uint64_t index_slot = kNoSlot;   // first slot of the persisted index segment
  uint64_t index_epoch = 0;
  int64_t written_us = 0;

  bool operator==(const Checkpoint&) const = default;
};

std::string checkpoint_path(const std::string& data_path);

// Writes PATH.ckpt atomically: temp file, fsync, rename, fsync(dir).
// A crash at any step leaves the old or the new checkpoint, both valid.
// `*renamed` (optional) tells a failure after the rename (the directory
// fsync) from one before it: then the new file is in place, and after a
// power loss either the old or the new one may be found.
Status write_checkpoint_file(Os& os, const std::string& data_path, const Checkpoint& c,
                             uint64_t seed, unsigned file_mode, bool* renamed = nullptr);

// Reads PATH.ckpt. Missing: nullopt, *problem ok. Unreadable/damaged/from
// another store: nullopt with *problem saying why (kCorruption naming the
// file; the caller falls back to a full scan). I/O errors other than ENOENT
// are returned.
Result<std::optional<Checkpoint>> read_checkpoint_file(Os& os, const std::string& data_path,
                                                       const Uuid& store_id, uint64_t seed,
                                                       Status* problem);

// Parses the bytes of a checkpoint file; fails (kCorruption, offset in the
// file) saying why they are not valid.
Status parse_checkpoint(const uint8_t* p, size_t n, uint64_t seed, Checkpoint* out);

}  // namespace eventsource
