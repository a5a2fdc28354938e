// Must not compile: Cart's events include CartClosed, and Cart has no
// apply(const CartClosed&) (aggregate.h: a missing handler is a compile-time
// error). With -DWITH_HANDLER it must compile, so the failure is the one
// this test is about.
#include <variant>

#include "eventsource/aggregate.h"

struct CartOpened {};
struct CartClosed {};
struct CartState {
  bool open = false;
};

class Cart
    : public eventsource::AggregateRoot<Cart, std::variant<CartOpened, CartClosed>, CartState> {
 public:
  using AggregateRoot::AggregateRoot;
  void open() { raise(CartOpened{}); }
  void apply(const CartOpened&) { mutable_state().open = true; }
#ifdef WITH_HANDLER
  void apply(const CartClosed&) { mutable_state().open = false; }
#endif
};

int main() {
  Cart cart("1");
  cart.open();
  return cart.state().open ? 0 : 1;
}
