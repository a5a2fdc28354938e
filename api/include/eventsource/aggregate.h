// Aggregates, in the two styles api/ supports alike:
//
// A decider (lead with it: it is the style that tests best) is a struct of
// types and pure functions, no base class and no I/O:
//
//   struct OrderDecider {
//     static constexpr std::string_view kAggregateType = "Order";
//     using State = OrderState;                               // JSON-mapped for snapshots
//     using Command = std::variant<PlaceOrder, AddItem, Ship>;
//     using Event = std::variant<OrderPlaced, ItemAdded, OrderShipped>;
//     static State initial_state();
//     static Result<std::vector<Event>> decide(const Command&, const State&);  // kRejected:
//     refused static State evolve(State, const Event&);
//   };
//   DeciderAggregate<OrderDecider> order("42");
//   Status s = order.handle(PlaceOrder{...});
//
// An aggregate root is a class whose commands check the rules and raise()
// events, and whose state changes only in its apply() handlers, one per
// event type. A missing handler does not compile (std::visit):
//
//   class Cart : public AggregateRoot<Cart, CartEvent, CartState> {
//    public:
//     static constexpr std::string_view kAggregateType = "Cart";
//     using AggregateRoot::AggregateRoot;
//     Status add(std::string sku) { if (state().closed) return rejected(...);
//     raise(ItemAdded{sku}); return {}; } void apply(const ItemAdded& e) {
//     mutable_state().items.push_back(e.sku); }
//     ...
//   };
//
// Both keep the same bookkeeping (AggregateBase): id, the version of the
// last stored event, the events raised since, and the state, so one
// AggregateRepository (repository.h) loads and saves either.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

// A command's refusal: Status(kRejected, why).
inline Status rejected(std::string why) { return Status(Code::kRejected, std::move(why)); }

template <class Derived, class EventT, class StateT>
class AggregateBase {
 public:
  using Event = EventT;  // a std::variant of the aggregate's event structs
  using State = StateT;

  const std::string& id() const { return id_; }
  // The version after every event applied, raised ones included.
  StreamVersion version() const { return StreamVersion(stored_.value + pending_.size()); }
  // The version of the last stored event (0: nothing stored yet).
  StreamVersion stored_version() const { return stored_; }
  const State& state() const { return state_; }
  // Raised and not yet saved, oldest first.
  const std::vector<Event>& pending_events() const { return pending_; }

  // --- For the repository and tests: building from stored events ---
  // Applies one stored event.
  void replay(const Event& event) {
    evolve(event);
    stored_ = StreamVersion(stored_.value + 1);
  }
  // Starts from a snapshot of the state at `version`.
  void restore(State state, StreamVersion version) {
    state_ = std::move(state);
    stored_ = version;
  }
  // The pending events are stored: they become history.
  void mark_saved() {
    stored_ = version();
    pending_.clear();
  }

 protected:
  explicit AggregateBase(std::string id, State initial = State{})
      : id_(std::move(id)), state_(std::move(initial)) {}

  // Applies `event` and keeps it for the next save.
  void raise_event(Event event) {
    evolve(event);
    pending_.push_back(std::move(event));
  }
  State& mutable_state() { return state_; }

 private:
  void evolve(const Event& event) { static_cast<Derived*>(this)->evolve_state(event); }

  std::string id_;
  StreamVersion stored_;
  std::vector<Event> pending_;
  State state_;
};

// The aggregate-root style: Derived declares `void apply(const E&)` for every
// alternative E of EventT (public, or befriend AggregateRoot).
template <class Derived, class EventT, class StateT>
class AggregateRoot : public AggregateBase<Derived, EventT, StateT> {
  using Base = AggregateBase<Derived, EventT, StateT>;
  friend Base;

 public:
  explicit AggregateRoot(std::string id) : Base(std::move(id)) {}

 protected:
  template <class E>
  void raise(E event) {
    this->raise_event(EventT(std::move(event)));
  }

 private:
  void evolve_state(const EventT& event) {
    std::visit([this](const auto& e) { static_cast<Derived*>(this)->apply(e); }, event);
  }
};

// The decider style, run as an aggregate.
template <class D>
class DeciderAggregate
    : public AggregateBase<DeciderAggregate<D>, typename D::Event, typename D::State> {
  using Base = AggregateBase<DeciderAggregate<D>, typename D::Event, typename D::State>;
  friend Base;

 public:
  using Decider = D;
  using Command = typename D::Command;
  static constexpr std::string_view kAggregateType = D::kAggregateType;

  explicit DeciderAggregate(std::string id) : Base(std::move(id), D::initial_state()) {}

  // decide(), then evolve() with each event it gave. A rejection (or any
  // error) changes nothing.
  Status handle(const Command& command) {
    Result<std::vector<typename D::Event>> events = D::decide(command, this->state());
    if (!events.ok()) return events.take_status();
    for (auto& e : *events) this->raise_event(std::move(e));
    return Status();
  }

 private:
  void evolve_state(const typename D::Event& event) {
    this->mutable_state() = D::evolve(std::move(this->mutable_state()), event);
  }
};

// The guard of a save: an event with an `aggregate_id` or `aggregate_type`
// member must name this aggregate (reference design's DomainEvent fields).
// Returns "" when it does, else what is wrong.
template <class E>
std::string foreign_name(const E& event, std::string_view type, std::string_view id) {
  if constexpr (requires { event.aggregate_id; }) {
    if constexpr (std::is_same_v<std::decay_t<decltype(event.aggregate_id)>, Uuid>) {
      if (event.aggregate_id.to_string() != id)
        return "its aggregate_id " + event.aggregate_id.to_string() + " names another aggregate";
    } else if (std::string_view(event.aggregate_id) != id) {
      return "its aggregate_id " + std::string(event.aggregate_id) + " names another aggregate";
    }
  }
  if constexpr (requires { event.aggregate_type; }) {
    if (std::string_view(event.aggregate_type) != type)
      return "its aggregate_type " + std::string(event.aggregate_type) +
             " names another aggregate type";
  }
  return {};
}

}  // namespace eventsource
