// How the engine backend keeps the envelope fields the engine's record has
// no place for (schema version, actor, user metadata): in the record's
// metadata bytes, as a JSON object that esdump shows as it is.
//
//   {"schema_version":2,"actor":"alice","metadata":{...user's object...}}
//
// Every key is optional and the whole object is left out (zero bytes) when
// the event has schema version 1, no actor and no metadata, the common case,
// so reading it then costs nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "eventsource/status.h"

namespace eventsource::api_internal {

// Empty, or the text of one JSON object, at most 64 KiB - 1 KiB (the rest
// of the engine's 64 KiB metadata limit is the envelope's).
Status check_metadata(std::string_view metadata);

// The engine metadata bytes for these fields (see above).
std::string encode_envelope(uint32_t schema_version, std::string_view actor,
                            std::string_view metadata);

struct EnvelopeFields {
  uint32_t schema_version = 1;
  std::string_view actor;
  std::string_view metadata;
};

// Parses encode_envelope's bytes. One decoder per read: the views it gives
// stay valid until its next decode, and nested reads use their own.
class EnvelopeDecoder {
 public:
  EnvelopeDecoder();
  ~EnvelopeDecoder();
  EnvelopeDecoder(const EnvelopeDecoder&) = delete;
  EnvelopeDecoder& operator=(const EnvelopeDecoder&) = delete;

  // kCorruption (message without location: the caller adds the position)
  // when the bytes are not such an object.
  Status decode(std::string_view bytes, EnvelopeFields* out);

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

}  // namespace eventsource::api_internal
