// Fuzz target: StreamIndex::load_blob (copy and no-copy), verify_entry and a
// locator() walk over every entry, the id table's lazy block checks, build_blob
// round trip.
//
// Input: the bytes of an index blob (what an index segment holds after its
// header), checked with seed kSeed (fuzz_util.h). Each input is tried as is
// and as a copy whose blob checksum and per-stream locator checksums are
// recomputed for kSeed wherever the layout allows, so mutations (and blobs
// cut from real stores, which have other seeds) reach the checks behind the
// checksums.
// Invariants: a failed load leaves the index empty; a copying load succeeds
// exactly when the no-copy load does and every entry and id block then verifies, with the
// same streams and locators; an index loaded from a blob rebuilds (build_blob)
// into a blob that loads into the same index.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/stream_index.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/resign.h"
#include "tests/support/status_text.h"

namespace {

using namespace eventsource;
namespace ih = format::index_header;
namespace ie = format::index_entry;

using Snapshot = std::map<std::string, std::pair<uint8_t, std::vector<uint64_t>>>;

// Every stream's locators (walking locator(v) for v = 1..version()).
Snapshot snapshot(const StreamIndex& ix) {
  Snapshot out;
  const std::string damage =
      testing::why_of(ix.for_each([&](const std::string& key, const auto& e) {
        std::vector<uint64_t> locs;
        locs.reserve(e.version());
        for (uint64_t v = 1; v <= e.version(); ++v) locs.push_back(e.locator(v));
        out.emplace(key, std::make_pair(e.type_len, std::move(locs)));
      }));
  FUZZ_CHECK(damage.empty(), "a loaded copy's directory is damaged: " + damage);
  return out;
}

bool same_info(const StreamIndex::BlobInfo& a, const StreamIndex::BlobInfo& b) {
  return a.covers_position == b.covers_position && a.log_end_offset == b.log_end_offset &&
         a.stream_count == b.stream_count && a.locator_count == b.locator_count;
}

void check_blob(const uint8_t* p, uint64_t n, uint64_t seed) {
  StreamIndex lazy;
  StreamIndex::BlobInfo lazy_info;
  std::string lazy_why = testing::why_of(lazy.load_blob(p, n, seed, /*copy=*/false, &lazy_info));
  bool all_verified = true;
  if (!lazy_why.empty()) {
    FUZZ_CHECK(lazy.stream_count() == 0 && lazy.event_count() == 0,
               "failed load left entries behind");
  } else {
    FUZZ_CHECK(lazy.stream_count() == lazy_info.stream_count, "stream count differs from blob");
    FUZZ_CHECK(lazy.event_count() == lazy_info.locator_count, "event count differs from blob");
    uint64_t total = 0;
    const std::string damage =
        testing::why_of(lazy.for_each([&](const std::string& key, const auto& e) {
          FUZZ_CHECK(e.type_len >= 1 && key.size() > e.type_len && key[e.type_len] == '-',
                     "stream key does not split at its type length");
          FUZZ_CHECK(key.find('-') == e.type_len, "stream type contains '-'");
          total += e.version();
          all_verified &= StreamIndex::verify_entry(e, seed).ok();
          // The walk reads the persisted locators in place (ASan checks bounds).
          uint64_t h = 0;
          for (uint64_t v = 1; v <= e.version(); ++v) h += e.locator(v);
          eventsource::fuzz::sink(h);
          // verify_entry answers the same the second time (cached).
          FUZZ_CHECK(StreamIndex::verify_entry(e, seed).ok() == e.verified->load(),
                     "verify_entry is not stable");
        }));
    all_verified &= damage.empty();
    FUZZ_CHECK(!damage.empty() || total == lazy_info.locator_count,
               "entries do not add up to the locator count");
    // The id table's blocks are checked on first use; the copying load
    // checks them all now.
    const std::string ids_why = testing::why_of(lazy.ids().verify_all());
    FUZZ_CHECK(ids_why == testing::why_of(lazy.ids().verify_all()),
               "id table verification is not stable");
    all_verified &= ids_why.empty();
  }

  StreamIndex copied;
  StreamIndex::BlobInfo copied_info;
  std::string copied_why =
      testing::why_of(copied.load_blob(p, n, seed, /*copy=*/true, &copied_info));
  if (!copied_why.empty()) {
    FUZZ_CHECK(copied.stream_count() == 0 && copied.event_count() == 0,
               "failed copying load left entries behind");
    FUZZ_CHECK(
        !lazy_why.empty() || !all_verified,
        "copying load failed where the lazy load and every verify_entry passed: " + copied_why);
    return;
  }
  FUZZ_CHECK(lazy_why.empty() && all_verified,
             "copying load passed where the lazy load or a verify_entry failed: " + lazy_why);
  FUZZ_CHECK(same_info(lazy_info, copied_info), "copying and lazy loads report different info");
  Snapshot snap = snapshot(copied);
  FUZZ_CHECK(snap == snapshot(lazy), "copying and lazy loads hold different locators");

  // Rebuild and reload.
  Result<std::string> built =
      copied.build_blob(copied_info.covers_position, copied_info.log_end_offset, seed);
  FUZZ_CHECK(built.ok(), "a loaded index does not rebuild: " + testing::why_of(built.status()));
  const std::string blob = *built;
  Result<std::string> lazy_built =
      lazy.build_blob(copied_info.covers_position, copied_info.log_end_offset, seed);
  FUZZ_CHECK(lazy_built.ok() && blob == *lazy_built,
             "lazy and copied indexes build different blobs");
  StreamIndex again;
  StreamIndex::BlobInfo again_info;
  std::vector<uint8_t> exact(blob.begin(), blob.end());
  std::string again_why =
      testing::why_of(again.load_blob(exact.data(), exact.size(), seed, true, &again_info));
  FUZZ_CHECK(again_why.empty(), "a rebuilt blob does not load: " + again_why);
  FUZZ_CHECK(same_info(again_info, copied_info), "a rebuilt blob reports different info");
  FUZZ_CHECK(snapshot(again) == snap, "a rebuilt blob holds different locators");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint64_t seed = eventsource::fuzz::kSeed;
  check_blob(data, size, seed);
  std::vector<uint8_t> copy(data, data + size);
  eventsource::fuzz::resign_index_blob(copy.data(), copy.size(), seed);
  if (size > 0 && std::memcmp(copy.data(), data, size) != 0)
    check_blob(copy.data(), copy.size(), seed);
  return 0;
}
