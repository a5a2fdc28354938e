#!/usr/bin/env bash
# Reliability target 7 on a real full file system: a 3 MiB tmpfs mounted in a
# private mount namespace (unshare -Urm, so no root needed). esdump import
# appends one event per batch until the disk is full: the error names the file
# and ENOSPC, everything before the failing line stays committed and readable,
# verify is clean, a reopen keeps it all, and a writer killed with -9 after the
# failure loses nothing acked.
set -euo pipefail
esdump=$(realpath "$1")
if ! unshare -Urm true 2>/dev/null && ! unshare -m true 2>/dev/null; then
  echo "SKIP: cannot create a mount namespace here"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/events.jsonl" <<'PY'
import json, sys, uuid
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        f.write(json.dumps({"stream": f"Order-{i % 50}", "type": "OrderPlaced",
                            "id": str(uuid.UUID(int=i + 1)),
                            "data": {"n": i, "pad": "x" * 300}}) + "\n")
PY
cat > "$work/inner.sh" <<'INNER'
set -uo pipefail
esdump=$1; work=$2
mnt=$work/mnt
mkdir -p "$mnt"
mount -t tmpfs -o size=3m tmpfs "$mnt" || { echo "SKIP: mount failed"; exit 77; }
store=$mnt/full.evs
fail() { echo "FAIL: $*"; exit 1; }

"$esdump" import "$store" "$work/events.jsonl" --batch 1 --segment-size 1M 2> "$work/err1"
rc=$?
[ $rc -ne 0 ] || fail "import into a 3 MiB tmpfs succeeded"
grep -q "No space left on device" "$work/err1" || fail "error does not say ENOSPC: $(cat "$work/err1")"
grep -q "full.evs" "$work/err1" || fail "error does not name the file: $(cat "$work/err1")"
line=$(grep -o 'events.jsonl:[0-9]*:' "$work/err1" | head -1 | tr -dc 0-9)
[ -n "$line" ] || fail "error has no line number: $(cat "$work/err1")"
acked=$((line - 1))
[ $acked -gt 100 ] || fail "only $acked events fit"

"$esdump" verify "$store" > "$work/verify1" 2>&1 || fail "verify after ENOSPC: $(cat "$work/verify1")"
n=$("$esdump" export "$store" | wc -l)
[ "$n" -eq "$acked" ] || fail "export has $n events, $acked were acked"
# Exported ids are exactly the first $acked input ids, in order.
"$esdump" export "$store" | python3 -c '
import json, sys, uuid
for i, line in enumerate(sys.stdin):
    if json.loads(line)["id"] != str(uuid.UUID(int=i + 1)): sys.exit(f"event {i} has the wrong id")
' || fail "exported events are not the acked prefix"

# Still full: a second import fails cleanly and changes nothing.
tail -n +$line "$work/events.jsonl" | head -50 > "$work/more.jsonl"
"$esdump" import "$store" "$work/more.jsonl" --batch 1 2> "$work/err2" && fail "second import succeeded on a full disk"
n2=$("$esdump" export "$store" | wc -l)
[ "$n2" -ge "$acked" ] || fail "second import lost events ($n2 < $acked)"

# kill -9 of a writer after the failure: nothing acked is lost.
( "$esdump" import "$store" "$work/more.jsonl" --batch 1 2>/dev/null & pid=$!; sleep 0.05; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null ) || true
n3=$("$esdump" export "$store" | wc -l)
[ "$n3" -ge "$n2" ] || fail "kill -9 lost events ($n3 < $n2)"
"$esdump" verify "$store" > "$work/verify2" 2>&1 || fail "verify after kill: $(cat "$work/verify2")"
echo "ok: $acked events acked before ENOSPC, $n3 after retries, verify clean"
INNER
if [ "$(id -u)" -eq 0 ]; then
  unshare -m bash "$work/inner.sh" "$esdump" "$work"
else
  unshare -Urm bash "$work/inner.sh" "$esdump" "$work"
fi
