#!/usr/bin/env bash
# es_orders end to end (the README's main job): two runs on one store, the
# read side's output, the dead letter it leaves and esdump dlq on it, a
# retry marked from the shell and replayed by the next run, and a clean
# verify. Usage: es_orders_test.sh ES_ORDERS ESDUMP
set -euo pipefail
orders="$1"
esdump="$2"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
store="$dir/orders.evs"
fail() { echo "FAIL: $*" >&2; exit 1; }

out="$("$orders" "$store")" || fail "first run exited $?"
grep -q '\[bus\] notify acme: order acme-000000-1 ' <<<"$out" || fail "no bus notification"
grep -q '^customer totals (read model at position [0-9]*):' <<<"$out" || fail "no read model"
grep -q '^projection customer-totals  live' <<<"$out" || fail "customer-totals not live"
grep -q '^projection shipping-labels  live, .* 1 dead-lettered' <<<"$out" || fail "no dead letter counted"
grep -q '^dead letter #[0-9]*: shipping-labels at position [0-9]* after 3 attempts: corruption: cannot decode event "OrderShipped"' <<<"$out" \
  || fail "the dead letter line"

# The totals equal what the orders printed: placed minus cancelled, per customer.
placed=$(grep -c ' placed: ' <<<"$out")
cancelled=$(grep -c ' cancelled, ' <<<"$out")
sum=$(awk '/^  [a-z]+-c[0-9] +-?[0-9]+ orders, / {s += $2} END {print s + 0}' <<<"$out")
[ "$sum" -eq $((placed - cancelled)) ] || fail "totals hold $sum orders, the run placed $placed and cancelled $cancelled"

list="$("$esdump" dlq "$store")"
[ "$(wc -l <<<"$list")" -eq 1 ] || fail "esdump dlq lists $(wc -l <<<"$list") letters"
grep -q '^#[0-9]* shipping-labels position [0-9]* attempts 3 ' <<<"$list" || fail "esdump dlq line: $list"
"$esdump" dlq "$store" --json | grep -q '"projection":"shipping-labels"' || fail "esdump dlq --json"

"$esdump" dlq "$store" retry --all >/dev/null || fail "esdump dlq retry --all"
grep -q ' \[retry\] ' <<<"$("$esdump" dlq "$store")" || fail "the mark is not listed"
out2="$("$orders" "$store")" || fail "second run exited $?"
# The marked letter was retried (and failed again: attempts 4), the second
# run's legacy event added one more; no mark is left.
grep -q 'at position [0-9]* after 4 attempts' <<<"$out2" || fail "the marked letter was not retried"
[ "$("$esdump" dlq "$store" | wc -l)" -eq 2 ] || fail "two letters expected after the second run"
if "$esdump" dlq "$store" | grep -q '\[retry\]'; then fail "a mark is left after the retry"; fi
"$esdump" verify "$store" >/dev/null || fail "verify"
echo "ok"
