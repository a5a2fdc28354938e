// Tests compare the reasons the engine's codecs give: the message of a
// failed Status, or "" for ok.
#pragma once

#include <string>

#include "eventsource/status.h"

namespace eventsource::testing {

inline std::string why_of(const Status& s) { return s.ok() ? std::string() : s.message(); }

}  // namespace eventsource::testing
