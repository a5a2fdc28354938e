// Fuzz target: parse_checkpoint, and read_checkpoint_file through a file.
//
// Input: the bytes of a checkpoint file (PATH.ckpt). Tried three ways:
//  1. parse_checkpoint with seed kSeed (fuzz_util.h);
//  2. a copy with the checksum recomputed for kSeed (when 128 bytes long), so
//     mutations reach the checks behind the checksum;
//  3. written to a scratch file and read back with read_checkpoint_file, with
//     the store id the input names (its bytes 16..32 when present).
// A valid checkpoint is written again with write_checkpoint_file; the file
// must hold the same 128 bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "engine/checkpoint_file.h"
#include "engine/coding.h"
#include "engine/format.h"
#include "engine/os.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/support/codec_text.h"

namespace {

using namespace eventsource;
namespace ck = format::checkpoint;

std::string read_all_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void check_parse(const uint8_t* p, size_t n, uint64_t seed) {
  Checkpoint c;
  std::string why = testing::parse_checkpoint_text(p, n, seed, &c);
  if (!why.empty()) return;
  FUZZ_CHECK(n == ck::kSize, "valid checkpoint of the wrong size");
  // Writing it again gives the same bytes.
  eventsource::fuzz::ScratchDir& dir = eventsource::fuzz::ScratchDir::get();
  const std::string data_path = dir.file("w");
  Status s = write_checkpoint_file(*default_os(), data_path, c, seed, 0600);
  FUZZ_CHECK(s.ok(), "write_checkpoint_file failed: " + s.to_string());
  std::string again = read_all_file(checkpoint_path(data_path));
  FUZZ_CHECK(again.size() == n && std::memcmp(again.data(), p, n) == 0,
             "checkpoint does not round-trip through write_checkpoint_file");
  dir.clean();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint64_t seed = eventsource::fuzz::kSeed;
  check_parse(data, size, seed);

  if (size == ck::kSize) {
    std::vector<uint8_t> copy(data, data + size);
    put_u64(copy.data() + ck::kChecksum, checksum64(copy.data(), ck::kChecksum, seed));
    check_parse(copy.data(), copy.size(), seed);
  }

  if (size > 4096) return 0;  // the reader reads at most 129 bytes
  eventsource::fuzz::ScratchDir& dir = eventsource::fuzz::ScratchDir::get();
  const std::string data_path = dir.file("r");
  eventsource::fuzz::write_file(checkpoint_path(data_path), data, size);
  Uuid store_id = eventsource::fuzz::example_store_id();
  if (size >= ck::kStoreId + 16) std::memcpy(store_id.bytes.data(), data + ck::kStoreId, 16);
  std::string problem;
  Result<std::optional<Checkpoint>> r =
      testing::read_checkpoint_file_text(*default_os(), data_path, store_id, seed, &problem);
  FUZZ_CHECK(r.ok(), "reading a scratch checkpoint file failed: " + r.status().to_string());
  Checkpoint parsed;
  bool valid = testing::parse_checkpoint_text(data, size, seed, &parsed).empty() &&
               parsed.store_id == store_id;
  FUZZ_CHECK(r->has_value() == valid, "read_checkpoint_file and parse_checkpoint disagree");
  FUZZ_CHECK(r->has_value() == problem.empty(), "a checkpoint problem without a reason");
  if (valid)
    FUZZ_CHECK((*r)->durable_position == parsed.durable_position &&
                   (*r)->last_frame_offset == parsed.last_frame_offset &&
                   (*r)->index_slot == parsed.index_slot && (*r)->index_epoch == parsed.index_epoch,
               "read_checkpoint_file and parse_checkpoint read different fields");
  dir.clean();
  return 0;
}
