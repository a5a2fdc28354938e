// Projection: a handler over the store's events in global order, building a
// read model. A Subscription (subscription.h) or a ProjectionRunner
// (projection_runner.h) feeds it: from its checkpoint, through the backlog,
// then live, with retries, dead letters and checkpoints around it.
//
//   class CustomerTotals : public DeclarativeProjection {
//    public:
//     explicit CustomerTotals(const EventRegistry& r) : DeclarativeProjection("customer-totals") {
//       on<OrderPlaced>(r, [this](const OrderPlaced& e, const EventRecord&) {
//         totals_[e.customer] += e.total;
//         return Status();
//       });
//     }
//   };
//
// Delivery is at least once: after a crash, the events handled since the
// last checkpoint are handled again (the at-least-once window, bounded by
// the checkpoint policy). A projection that keeps its checkpoint itself, in
// the same transaction as its read model (owns_checkpoint(); e.g.
// SQLiteReadModel), gets exactly-once effects.
//
// Calls: one at a time, from the thread running the projection; begin_batch,
// handle* and end_batch (or abort_batch) bracket each batch.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/events.h"
#include "eventsource/status.h"

namespace eventsource {

class Projection {
 public:
  virtual ~Projection() = default;

  // Names the projection in checkpoints, dead letters, spans, logs and
  // metrics: 1..200 bytes, not starting with '$'.
  virtual std::string_view name() const = 0;
  // The read model's version. Bumping it rebuilds the read model from the
  // first event under a new checkpoint (ProjectionRunner can keep the old
  // version serving until the new one has caught up).
  virtual uint32_t version() const { return 1; }

  // Handles one event. A non-ok Status (or a throw) is a failure: the
  // event is retried with backoff, then dead-lettered (or the projection
  // pauses), as its FailurePolicy says.
  virtual Status handle(const EventRecord& event) = 0;

  // Only events of these types are read and handled (empty: every type).
  // A filter, not a promise: handle() must skip what it does not want.
  virtual std::vector<std::string> event_types() const { return {}; }

  // Batch bracket. end_batch(through): every event up to `through` (a
  // position) has been handled or skipped; a non-ok Status fails the batch,
  // which is then rolled back with abort_batch() and handled again event by
  // event. Handlers that buffer (a batch handler, a transaction) commit here.
  virtual Status begin_batch() { return Status(); }
  virtual Status end_batch(GlobalPosition through) {
    (void)through;
    return Status();
  }
  virtual void abort_batch() {}

  // A projection that stores its checkpoint itself, atomically with its
  // read model, in end_batch(through), returns true and reports it from
  // own_checkpoint(). Then no checkpoint goes to the ProjectionStore.
  virtual bool owns_checkpoint() const { return false; }
  virtual Result<GlobalPosition> own_checkpoint() const { return GlobalPosition(); }

  // Clears the read model, before a reset or rebuild from the first event.
  virtual Status reset() { return Status(); }

  // Called once before the first event: an error (a misconfigured
  // projection) refuses to run it, with that error.
  virtual Status check() const { return Status(); }
};

// A projection with one handler per event type: on<E>(registry, fn) for a
// registered type decoded before the call, on(type, fn) for raw records.
// Events of other types are skipped (read past, not handled). An optional
// tenant filter skips other tenants' events.
class DeclarativeProjection : public Projection {
 public:
  using RawHandler = std::function<Status(const EventRecord&)>;

  explicit DeclarativeProjection(std::string name, uint32_t version = 1)
      : name_(std::move(name)), version_(version) {}

  std::string_view name() const override { return name_; }
  uint32_t version() const override { return version_; }
  std::vector<std::string> event_types() const override;
  Status handle(const EventRecord& event) override;
  // kInvalidArgument when on<E> named a type `registry` did not know.
  Status check() const override;

  // Only `tenant`'s events ("" = events without a tenant); nullopt: all.
  void set_tenant(std::optional<std::string> tenant) { tenant_ = std::move(tenant); }
  const std::optional<std::string>& tenant() const { return tenant_; }

  // Events handled and skipped (other types, other tenants) so far.
  uint64_t handled() const { return handled_; }
  uint64_t skipped() const { return skipped_; }

 protected:
  // Handles `type` with `fn`; a second handler for a type replaces the first.
  void on(std::string type, RawHandler fn);

  // Handles E's registered type: the payload is decoded (and upcast) with
  // `registry`, which must outlive this projection; a decode error is the
  // event's failure. F: Status(const E&, const EventRecord&).
  template <class E, class F>
  requires std::is_invocable_r_v<Status, F&, const E&, const EventRecord&>
  void on(const EventRegistry& registry, F fn) {
    const EventTypeInfo* info = registry.find<E>();
    if (info == nullptr) {
      unregistered_.push_back(typeid(E).name());
      return;
    }
    on(info->name, [&registry, fn = std::move(fn)](const EventRecord& record) mutable -> Status {
      Result<E> decoded = registry.decode<E>(record);
      if (!decoded.ok()) return decoded.take_status();
      return Status(fn(*decoded, record));
    });
  }

 private:
  std::string name_;
  uint32_t version_;
  std::optional<std::string> tenant_;
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, RawHandler, NameHash, std::equal_to<>> handlers_;
  std::vector<std::string> unregistered_;  // on<E> with E not registered (check() says so)
  uint64_t handled_ = 0;
  uint64_t skipped_ = 0;
};

// The checkpoint name of `projection` (name and version), as stored in a
// ProjectionStore: "<name>@v<version>".
std::string checkpoint_name(const Projection& projection);

// A projection's name is usable: 1..200 bytes, not starting with '$'.
Status check_projection_name(std::string_view name);

}  // namespace eventsource
