#include "eventsource/projection.h"

#include <fmt/format.h>

#include <algorithm>

namespace eventsource {

std::vector<std::string> DeclarativeProjection::event_types() const {
  std::vector<std::string> types;
  types.reserve(handlers_.size());
  for (const auto& [type, fn] : handlers_) types.push_back(type);
  std::sort(types.begin(), types.end());
  return types;
}

void DeclarativeProjection::on(std::string type, RawHandler fn) {
  handlers_[std::move(type)] = std::move(fn);
}

Status DeclarativeProjection::handle(const EventRecord& event) {
  if (tenant_ && event.tenant != *tenant_) {
    ++skipped_;
    return Status();
  }
  auto it = handlers_.find(event.type);
  if (it == handlers_.end() || !it->second) {
    ++skipped_;
    return Status();
  }
  Status s = it->second(event);
  if (s.ok()) ++handled_;
  return s;
}

Status DeclarativeProjection::check() const {
  if (!unregistered_.empty())
    return invalid_argument(fmt::format(
        "projection {}: on<E>() for a type its EventRegistry does not know ({}); register it "
        "with EventRegistry::add before building the projection",
        name_, unregistered_.front()));
  if (handlers_.empty())
    return invalid_argument(
        fmt::format("projection {}: no handler; add one with on<E>(registry, fn)", name_));
  return Status();
}

std::string checkpoint_name(const Projection& projection) {
  return fmt::format("{}@v{}", projection.name(), projection.version());
}

Status check_projection_name(std::string_view name) {
  if (name.empty() || name.size() > 200)
    return invalid_argument(fmt::format("a projection name must be 1..200 bytes, not {} ('{}')",
                                        name.size(), name.substr(0, 40)));
  if (name.front() == '$')
    return invalid_argument(fmt::format(
        "projection name '{}': names starting with '$' are reserved for the library", name));
  return Status();
}

}  // namespace eventsource
