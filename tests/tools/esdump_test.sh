#!/usr/bin/env bash
# End-to-end test of esdump and es_example: example run, verify, export ->
# import -> export round trip, import errors, JSON output, a flipped byte
# found by verify, filters, dead letters marked for retry and resolved, and
# usage errors. Usage: esdump_test.sh ESDUMP ES_EXAMPLE DLQ_FIXTURE
set -uo pipefail

# meson passes paths relative to the build directory; this script cd's away.
esdump=$(realpath "$1")
example=$(realpath "$2")
fixture=$(realpath "$3")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# run WANT_EXIT CMD...: runs CMD with stdout in out, stderr in err; checks its exit status.
run() {
  local want=$1
  shift
  local got=0
  "$@" >out 2>err || got=$?
  if [ "$got" != "$want" ]; then
    fail "'$*' exited $got, want $want"
    sed 's/^/  stdout: /' out | head -n 20 >&2
    sed 's/^/  stderr: /' err | head -n 20 >&2
    return 1
  fi
  return 0
}

# expect FILE PATTERN WHAT: FILE contains PATTERN (grep -E).
expect() {
  grep -Eq -- "$2" "$1" || fail "$3: '$2' not found in $1: $(head -c 400 "$1")"
}

# json_lines FILE: every line of FILE is a JSON object.
json_lines() {
  python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    assert isinstance(json.loads(line), dict), line
    n += 1
print(n)' "$1"
}

echo "== es_example"
run 0 "$example" demo.evs && {
  expect out 'conflict' "example shows a conflict"
  expect out 'deduplicated=true' "example shows an idempotent retry"
}
[ -f demo.evs ] || {
  echo "FAIL: es_example wrote no demo.evs" >&2
  exit 1
}

echo "== verify clean"
run 0 "$esdump" verify demo.evs && expect out ': clean$' "verify summary"

echo "== info"
run 0 "$esdump" info demo.evs && expect out '^events +[1-9]' "info shows events"
run 0 "$esdump" info demo.evs --json && python3 -c '
import json, sys
info = json.load(open("out"))
assert info["events"] > 20 and info["streams"] == 20, info
assert info["last_position"] == info["events"], info' || fail "info --json"

echo "== aux records: info counts, snapshots, dlq"
run 0 "$esdump" info demo.evs && {
  expect out '^snapshots +1 \(of 1 stream\)' "info counts snapshots"
  expect out '^dead letters +1$' "info counts dead letters"
  expect out '^projections +1 saved states' "info counts projection states"
  expect out '^aux records +.* in 1 aux segment ' "info counts aux segments"
}
run 0 "$esdump" info demo.evs --json && python3 -c '
import json
info = json.load(open("out"))
assert info["snapshots"] == 1 and info["dead_letters"] == 1, info
assert info["projection_states"] == 1 and info["aux_segments"] == 1, info
assert info["aux_bytes"] > 0 and info["format_version"] == 2, info' || fail "info --json aux counts"
run 0 "$esdump" snapshots demo.evs && {
  [ "$(wc -l <out)" = 1 ] || fail "snapshots: want 1 line, got $(wc -l <out)"
  expect out '^Order-order-0001 +version [0-9]+ +schema 1 +[0-9]+ bytes .*\(versions [0-9]+\)$' "snapshots line"
}
run 0 "$esdump" snapshots demo.evs --stream Order-nope && [ ! -s out ] || fail "snapshots --stream filters"
run 0 "$esdump" snapshots demo.evs --json && {
  [ "$(json_lines out)" = 1 ] || fail "snapshots --json is not one JSON line"
  expect out '"schema_version":1' "snapshots --json schema"
}
run 2 "$esdump" snapshots demo.evs --stream bad
run 0 "$esdump" dlq demo.evs && expect out '^#[0-9]+ mailer position 3 attempts 5 last .*: smtp: connection refused$' "dlq list line"
dl_id=$(sed -n 's/^#\([0-9]*\) .*/\1/p' out | head -n 1)
run 0 "$esdump" dlq demo.evs list --json && {
  [ "$(json_lines out)" = 1 ] || fail "dlq list --json"
  expect out '"projection":"mailer"' "dlq --json projection"
}
run 0 "$esdump" dlq demo.evs list --projection other && [ ! -s out ] || fail "dlq --projection filters"
run 0 "$esdump" dlq demo.evs show "$dl_id" && {
  expect out '^error +smtp: connection refused$' "dlq show error"
  expect out '^attempts +5$' "dlq show attempts"
}
run 0 "$esdump" dlq demo.evs show "$dl_id" --json && expect out '"error":"smtp: connection refused"' "dlq show --json"
run 1 "$esdump" dlq demo.evs show 999999 && expect err '999999' "dlq show of a missing id names it"
run 2 "$esdump" dlq demo.evs frobnicate
cp demo.evs dlq.evs
cp demo.evs.ckpt dlq.evs.ckpt 2>/dev/null
run 0 "$esdump" dlq dlq.evs purge --projection other && expect out '^purged 0 dead letters of other$' "purge of another projection"
run 0 "$esdump" dlq dlq.evs purge --json && expect out '"purged":1' "purge --json"
run 0 "$esdump" dlq dlq.evs && [ ! -s out ] || fail "purged dead letters are gone"
run 0 "$esdump" info dlq.evs && expect out '^dead letters +0$' "info after purge"
run 0 "$esdump" verify dlq.evs

echo "== dlq retry, resolve; marks in list and show"
"$fixture" marks.evs add billing 3 >billing.ids || fail "dlq_fixture add billing"
"$fixture" marks.evs add mailer 2 >mailer.ids || fail "dlq_fixture add mailer"
b1=$(sed -n 1p billing.ids)
b2=$(sed -n 2p billing.ids)
b3=$(sed -n 3p billing.ids)
m1=$(sed -n 1p mailer.ids)
m2=$(sed -n 2p mailer.ids)
run 0 "$esdump" dlq marks.evs && {
  [ "$(wc -l <out)" = 5 ] || fail "dlq list before marks: want 5 lines, got $(wc -l <out)"
  if grep -q 'retry' out; then fail "no dead letter is marked yet: $(cat out)"; fi
}
run 0 "$esdump" dlq marks.evs retry "$b1" "$b3" &&
  expect out '^marked 2 dead letters for retry \(the app retries them on its next start\)$' "retry IDs"
run 0 "$esdump" dlq marks.evs list && {
  expect out "^#$b1 \[retry\] billing position 1 attempts 1 last .*: failure 1$" "marked line"
  expect out "^#$b2 billing position 2 " "unmarked line"
  expect out "^#$b3 \[retry\] billing " "second marked line"
  [ "$(grep -c '\[retry\]' out)" = 2 ] || fail "want 2 marked lines: $(cat out)"
}
run 0 "$esdump" dlq marks.evs list --json && python3 -c '
import json, sys
b1, b2, b3, m1, m2 = (int(a) for a in sys.argv[1:])
got = {d["id"]: d["marked_for_retry"] for d in map(json.loads, open("out"))}
assert got == {b1: True, b2: False, b3: True, m1: False, m2: False}, got' "$b1" "$b2" "$b3" "$m1" "$m2" ||
  fail "dlq list --json marked_for_retry"
run 0 "$esdump" dlq marks.evs show "$b1" && expect out '^retry +marked' "show of a marked dead letter"
run 0 "$esdump" dlq marks.evs show "$b2" && expect out '^retry +no$' "show of an unmarked dead letter"
run 0 "$esdump" dlq marks.evs show "$b3" --json && expect out '"marked_for_retry":true' "show --json marked"
run 0 "$esdump" dlq marks.evs show "$b2" --json && expect out '"marked_for_retry":false' "show --json unmarked"
# Marked already: counted 0, ids listed once.
run 0 "$esdump" dlq marks.evs retry "$b1" "$b1" --json &&
  expect out "^\{\"marked\":0,\"ids\":\[$b1\]\}$" "retry --json of a marked id"
# An id without a dead letter: exit 1, named, and nothing marked.
run 1 "$esdump" dlq marks.evs retry "$b2" 999999 && expect err '999999' "retry of a missing id names it"
run 0 "$esdump" dlq marks.evs show "$b2" --json && expect out '"marked_for_retry":false' "a failed retry marks nothing"
run 0 "$esdump" dlq marks.evs retry --all --projection mailer --json &&
  expect out "^\{\"marked\":2,\"ids\":\[$m1,$m2\]\}$" "retry --all --projection"
run 0 "$esdump" dlq marks.evs show "$b2" --json && expect out '"marked_for_retry":false' "--projection limits retry --all"
run 0 "$esdump" dlq marks.evs retry --all &&
  expect out '^marked 1 dead letter for retry ' "retry --all marks the rest"
run 0 "$esdump" dlq marks.evs list && [ "$(grep -c '\[retry\]' out)" = 5 ] || fail "all 5 marked: $(cat out)"
run 0 "$esdump" dlq marks.evs resolve "$b1" && expect out "^resolved #$b1$" "resolve"
run 1 "$esdump" dlq marks.evs resolve "$b1" && expect err "$b1" "resolve of a missing id names it"
run 0 "$esdump" dlq marks.evs resolve "$m1" --json && expect out "^\{\"resolved\":$m1\}$" "resolve --json"
run 0 "$esdump" dlq marks.evs list --json && python3 -c '
import json, sys
ids = [d["id"] for d in map(json.loads, open("out"))]
want = sorted(int(a) for a in sys.argv[1:])
assert ids == want, (ids, want)
assert all(d["marked_for_retry"] for d in map(json.loads, open("out")))' "$b2" "$b3" "$m2" ||
  fail "resolved dead letters are gone, the rest stay marked"
# The marks are a reserved record: not a projection state of the app.
run 0 "$esdump" info marks.evs && expect out '^projections +0 saved states' "info does not count the marks"
run 0 "$esdump" verify marks.evs
for args in "retry" "retry --all $b2" "retry x" "retry $b2 --projection billing" "resolve" \
  "resolve $b2 $b3" "resolve x" "list --all" "show $b2 --all" "purge --all" "list $b2"; do
  # shellcheck disable=SC2086 # word splitting wanted
  run 2 "$esdump" dlq marks.evs $args && expect err '^esdump dlq: ' "usage error: dlq $args"
done
run 0 "$esdump" dlq --help && {
  expect out 'retry ID \[ID \.\.\.\]' "dlq --help: retry"
  expect out 'resolve ID' "dlq --help: resolve"
}
# A writer holds the store: the writes fail with its pid, the reads work.
mkfifo hold.fifo
"$fixture" marks.evs hold <hold.fifo >hold.out 2>hold.err &
holder=$!
exec 3>hold.fifo
for _ in $(seq 100); do
  grep -q holding hold.out && break
  sleep 0.05
done
grep -q holding hold.out || fail "dlq_fixture hold did not start: $(cat hold.err)"
run 2 "$esdump" dlq marks.evs retry "$b2" && expect err "locked by process $holder" "retry names the writer's pid"
run 2 "$esdump" dlq marks.evs resolve "$b2" && expect err "locked by process $holder" "resolve names the writer's pid"
run 0 "$esdump" dlq marks.evs list && [ "$(wc -l <out)" = 3 ] || fail "list beside a writer"
exec 3>&-
wait "$holder" || fail "dlq_fixture hold exited $?: $(cat hold.err)"
run 0 "$esdump" dlq marks.evs show "$b2" && expect out '^retry +marked' "nothing changed while the writer held the store"

echo "== streams"
run 0 "$esdump" streams demo.evs && {
  [ "$(wc -l <out)" = 20 ] || fail "streams: want 20 lines, got $(wc -l <out)"
  expect out '^Order-order-0001 +version [0-9]+$' "streams line format"
}
run 0 "$esdump" streams demo.evs --type Nope && [ ! -s out ] || fail "streams --type filters"

echo "== events"
run 0 "$esdump" events demo.evs --limit 5 && {
  [ "$(wc -l <out)" = 5 ] || fail "events --limit 5 printed $(wc -l <out) lines"
  expect out '^#1 Order-order-0001@1 OrderPlaced [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z acme \{' \
    "human event line"
}
run 0 "$esdump" events demo.evs --json && {
  n=$(json_lines out) || fail "events --json is not JSON lines"
  python3 -c '
import json
lines = [json.loads(l) for l in open("out")]
keys = list(lines[0].keys())
assert keys[:6] == ["position", "stream", "version", "type", "id", "time"], keys
assert [e["position"] for e in lines] == list(range(1, len(lines) + 1))
assert all(e["time"].endswith("Z") and len(e["time"]) == 27 for e in lines)
assert all(isinstance(e["data"], dict) for e in lines)
assert {e["tenant"] for e in lines} == {"acme", "globex"}' || fail "events --json content"
}
run 0 "$esdump" events demo.evs --stream Order-order-0001 --json && python3 -c '
import json
ev = [json.loads(l) for l in open("out")]
assert ev and all(e["stream"] == "Order-order-0001" for e in ev)
assert [e["version"] for e in ev] == list(range(1, len(ev) + 1))' || fail "events --stream"
run 0 "$esdump" events demo.evs --stream Order-order-0001 --backward --limit 2 --json && python3 -c '
import json
ev = [json.loads(l) for l in open("out")]
assert len(ev) == 2 and ev[0]["version"] == ev[1]["version"] + 1, ev' || fail "events --stream --backward"
run 0 "$esdump" events demo.evs --backward --limit 3 --json && python3 -c '
import json
ev = [json.loads(l) for l in open("out")]
assert [e["position"] for e in ev] == [ev[0]["position"], ev[0]["position"] - 1, ev[0]["position"] - 2], ev' ||
  fail "events --backward"
run 0 "$esdump" events demo.evs --tenant globex --type OrderPlaced --type OrderShipped --json && python3 -c '
import json
ev = [json.loads(l) for l in open("out")]
assert ev and all(e["tenant"] == "globex" and e["type"] in ("OrderPlaced", "OrderShipped") for e in ev)' ||
  fail "events --tenant --type"
run 0 "$esdump" events demo.evs --stream-type Nope && [ ! -s out ] || fail "events --stream-type filters"

echo "== export -> import -> export"
"$esdump" export demo.evs >export1.jsonl || fail "export"
run 0 "$esdump" import copy.evs export1.jsonl --segment-size 1M && expect err 'imported' "import summary"
"$esdump" export copy.evs >export2.jsonl || fail "export of the copy"
cmp -s export1.jsonl export2.jsonl || fail "export -> import -> export differs: $(diff export1.jsonl export2.jsonl | head -n 5)"
run 0 "$esdump" verify copy.evs
# From standard input, with small batches, the result is the same.
run 0 "$esdump" import copy2.evs - --batch 1 --durability each <export1.jsonl &&
  "$esdump" export copy2.evs >export3.jsonl && cmp -s export1.jsonl export3.jsonl ||
  fail "import from stdin with --batch 1 differs"

echo "== import: odd payloads, encodings, times, expected versions"
cat >odd.jsonl <<'EOF'
{"stream":"Cart-1","type":"Raw","data":"AAEC/w==","data_encoding":"base64","metadata":"bm90IGpzb24=","metadata_encoding":"base64","time":"2024-02-29T23:30:00.5+02:00","expected_version":"no_stream"}
{"stream":"Cart-1","type":"Json","data":{"b":1,"a":[1.5,"x",null,true]},"metadata":{"k":"v"},"tenant":"t1","id":"0b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f00","correlation_id":"1b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f01","time":"1969-12-31T23:59:59.999999Z"}
{"stream":"Cart-1","type":"Text","data":"just a string","expected_version":2}

{"stream":"Cart-2","type":"Empty","data":"","data_encoding":"base64","expected_version":"any"}
EOF
run 0 "$esdump" import odd.evs odd.jsonl && run 0 "$esdump" export odd.evs && {
  cp out odd_export.jsonl
  python3 -c '
import json
ev = [json.loads(l) for l in open("odd_export.jsonl")]
assert len(ev) == 4, ev
assert ev[0]["data"] == "AAEC/w==" and ev[0]["data_encoding"] == "base64", ev[0]
assert ev[0]["metadata"] == "bm90IGpzb24=" and ev[0]["metadata_encoding"] == "base64", ev[0]
assert ev[0]["time"] == "2024-02-29T21:30:00.500000Z", ev[0]
assert ev[1]["data"] == {"b": 1, "a": [1.5, "x", None, True]} and list(ev[1]["data"]) == ["b", "a"], ev[1]
assert ev[1]["metadata"] == {"k": "v"} and ev[1]["tenant"] == "t1", ev[1]
assert ev[1]["id"] == "0b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f00", ev[1]
assert ev[1]["correlation_id"] == "1b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f01" and "causation_id" not in ev[1], ev[1]
assert ev[1]["time"] == "1969-12-31T23:59:59.999999Z", ev[1]
assert ev[2]["data"] == "just a string" and ev[2]["version"] == 3, ev[2]
assert ev[3]["stream"] == "Cart-2" and ev[3]["data"] == "" and ev[3]["data_encoding"] == "base64", ev[3]
assert "tenant" not in ev[0] and "metadata" not in ev[3], ev' || fail "odd payloads round trip"
  run 0 "$esdump" import odd2.evs odd_export.jsonl && "$esdump" export odd2.evs >odd_export2.jsonl &&
    cmp -s odd_export.jsonl odd_export2.jsonl || fail "odd payloads: export -> import -> export differs"
}
echo "== names and tenants are raw bytes: not-UTF-8 ones survive export -> import"
python3 - >raw.jsonl <<'EOF'
import base64, json
b64 = lambda raw: base64.b64encode(raw).decode()
print(json.dumps({"stream_b64": b64(b"Ord\xffr-4\xc3(2"), "type_b64": b64(b"Pl\xe9ced"),
                  "tenant_b64": b64(b"t\x80"), "data": {"n": 1},
                  "metadata": b64(b'{"k":"\xfe"}'), "metadata_encoding": "base64"}))
print(json.dumps({"stream": "Caf\u00e9-1", "type": "T\u0085", "tenant": "acme", "data": 2}))
EOF
run 0 "$esdump" import raw.evs raw.jsonl && run 0 "$esdump" events raw.evs && {
  expect out '^#1 Ord\\xffr-4\\xc3\(2@1 Pl\\xe9ced .* t\\x80 ' "stored bytes are the raw bytes"
  run 0 "$esdump" export raw.evs && cp out raw_export.jsonl && python3 -c '
import base64, json
ev = [json.loads(l) for l in open("raw_export.jsonl")]
raw = lambda e, k: base64.b64decode(e[k + "_b64"])
assert "stream" not in ev[0] and raw(ev[0], "stream") == b"Ord\xffr-4\xc3(2", ev[0]
assert raw(ev[0], "type") == b"Pl\xe9ced" and raw(ev[0], "tenant") == b"t\x80", ev[0]
assert base64.b64decode(ev[0]["metadata"]) == b"{\"k\":\"\xfe\"}", ev[0]
assert ev[1]["stream"] == "Caf\u00e9-1" and ev[1]["type"] == "T\u0085", ev[1]
assert not any(k.endswith("_b64") for k in ev[1]), ev[1]' || fail "raw names export"
  run 0 "$esdump" import raw2.evs raw_export.jsonl && "$esdump" export raw2.evs >raw_export2.jsonl &&
    cmp -s raw_export.jsonl raw_export2.jsonl || fail "raw names: export -> import -> export differs"
  run 0 "$esdump" streams raw.evs --json && python3 -c '
import base64, json
s = [json.loads(l) for l in open("out")]
assert s[0]["stream"] == "Caf\u00e9-1" and s[0]["id"] == "1", s
raw = lambda k: base64.b64decode(s[1][k + "_b64"])
assert raw("stream") == b"Ord\xffr-4\xc3(2" and raw("type") == b"Ord\xffr", s
assert raw("id") == b"4\xc3(2" and "stream" not in s[1], s' ||
    fail "streams --json with raw names"
}
# A stale expected version is a conflict naming the line; earlier lines stay.
printf '%s\n' '{"stream":"Cart-1","type":"Late","data":{},"expected_version":1}' >conflict.jsonl
run 2 "$esdump" import odd.evs conflict.jsonl && expect err 'conflict.jsonl:1:' "conflict names the line"

echo "== import stops at a malformed line 3"
{
  sed -n 1,2p export1.jsonl
  echo '{"stream": "Order-x", "type": '
  sed -n 3,5p export1.jsonl
} >bad.jsonl
run 2 "$esdump" import bad.evs bad.jsonl && expect err 'bad\.jsonl:3:' "error names line 3"
run 0 "$esdump" events bad.evs --json && [ "$(json_lines out)" = 2 ] ||
  fail "lines 1-2 should be committed, got $(wc -l <out) events"
for line in '{"stream":"Order-1","type":"T"}' '{"stream":"NoDash","type":"T","data":1}' \
  '{"stream":"Order-1","type":"T","data":1,"time":"yesterday"}' '[1,2]' \
  '{"stream":"Order-1","type":"T","data":1,"id":"not-a-uuid"}' \
  '{"stream":"Order-1","type":"T","data":"%%","data_encoding":"base64"}' \
  '{"stream":"Order-1","type":"T","data":1,"expected_version":-3}' \
  '{"stream":"Order-1","type":"T","data":1,"colour":"red"}' \
  "$(python3 -c 'print("[" * 100000)')"; do
  printf '%s\n' "$line" >one.jsonl
  run 2 "$esdump" import reject.evs one.jsonl && expect err 'one\.jsonl:1: ' "bad line rejected: ${line:0:60}"
done

echo "== verify finds a flipped byte"
cp demo.evs flip.evs
[ -f demo.evs.ckpt ] && cp demo.evs.ckpt flip.evs.ckpt
python3 - <<'EOF'
# Flip one bit inside the first event's payload (the first '"customer"' key).
with open("flip.evs", "r+b") as f:
    data = f.read()
    at = data.find(b'"customer"')
    assert at > 0, "payload not found in the data file"
    f.seek(at + 3)
    f.write(bytes([data[at + 3] ^ 0x01]))
EOF
run 1 "$esdump" verify flip.evs && {
  expect out '^flip\.evs.*segment [0-9]+ offset 0x[0-9a-f]+: ' "problem line names segment and offset"
  expect out ' [1-9][0-9]* problems?$' "summary counts problems"
}
run 1 "$esdump" events flip.evs --json || true
run 1 "$esdump" export flip.evs || true
cp flip.evs fix.evs
[ -f flip.evs.ckpt ] && cp flip.evs.ckpt fix.evs.ckpt
run 0 "$esdump" repair fix.evs && {
  expect out 'cut' "repair says what it cut"
  run 0 "$esdump" verify fix.evs
  ls fix.evs.cut-* >/dev/null 2>&1 || fail "repair left no side file"
}

echo "== verify: a torn tail past the durable end is not damage"
# One event per frame, none synced before close (--durability none): no frame
# says an earlier one was durable. Without the checkpoint nothing was durable,
# so a bad second frame is a torn tail that open cuts: exit 0. With the
# checkpoint (which says all of it was durable) the same bytes are damage.
run 0 "$esdump" import torn.evs export1.jsonl --batch 1 --segment-size 1M
python3 - <<'EOF'
import struct
with open("torn.evs", "r+b") as f:
    first = 4096 + 64  # the first frame, in slot 0
    f.seek(first + 8)
    (frame_len,) = struct.unpack("<I", f.read(4))
    f.seek(first + frame_len)  # the second frame's checksum
    f.write(b"\x5a" * 8)
EOF
mv torn.evs.ckpt torn.ckpt.saved
run 0 "$esdump" verify torn.evs && {
  expect out '^torn\.evs: torn tail at segment 0 offset 0x[0-9a-f]+: will be cut on next open \(not damage' \
    "torn tail line"
  expect out ': clean$' "a torn tail is clean"
}
run 0 "$esdump" events torn.evs --json && [ "$(json_lines out)" = 1 ] ||
  fail "a read-only open should stop at the torn tail after 1 event, got $(wc -l <out)"
mv torn.ckpt.saved torn.evs.ckpt
run 1 "$esdump" verify torn.evs && {
  expect out '^torn\.evs: segment 0 offset 0x[0-9a-f]+: ' "durable damage names its place"
  if grep -q 'torn tail' out; then fail "damage reported as a torn tail"; fi
}

echo "== garbage files never crash"
head -c 100000 /dev/urandom >garbage.evs
for cmd in info streams events export verify snapshots dlq; do
  got=0
  "$esdump" "$cmd" garbage.evs >/dev/null 2>err || got=$?
  [ "$got" = 1 ] || [ "$got" = 2 ] || fail "esdump $cmd on garbage exited $got: $(head -c 300 err)"
done
: >empty.evs
got=0
"$esdump" events empty.evs >/dev/null 2>&1 || got=$?
[ "$got" -lt 3 ] || fail "esdump events on an empty file exited $got"

echo "== usage errors"
run 2 "$esdump"
run 2 "$esdump" frobnicate demo.evs && expect err 'unknown command' "unknown command"
run 2 "$esdump" events && expect err 'missing STORE' "missing store"
run 2 "$esdump" events demo.evs --limit lots && expect err '--limit' "bad number"
run 2 "$esdump" events demo.evs --bogus && expect err "unknown option '--bogus'" "unknown option"
run 2 "$esdump" events demo.evs --from && expect err 'needs a value' "missing value"
run 2 "$esdump" info demo.evs extra
run 2 "$esdump" import x.evs in.jsonl --durability sometimes
run 2 "$esdump" import x.evs in.jsonl --segment-size lots
run 2 "$esdump" info missing.evs && expect err 'missing\.evs' "error names the file"
run 2 "$esdump" verify missing.evs && expect err 'missing\.evs' "verify error names the file"
run 2 "$esdump" import x.evs no-such-input.jsonl && expect err 'no-such-input\.jsonl' "import names the input"
run 0 "$esdump" --help && expect out 'verify' "main help lists commands"
for cmd in info streams events export import verify repair; do
  run 0 "$esdump" "$cmd" --help && expect out "usage: esdump $cmd" "$cmd --help"
done

echo "== events --follow sees a live writer's appends, stops on SIGINT"
"$example" live.evs >/dev/null || fail "es_example live.evs"
before=$("$esdump" events live.evs | wc -l)
"$esdump" events live.evs --follow --json >follow.out 2>follow.err &
follower=$!
"$example" live.evs >/dev/null || fail "second es_example run on live.evs"
after=$("$esdump" events live.evs | wc -l)
for _ in $(seq 100); do
  [ "$(wc -l <follow.out)" -ge "$after" ] && break
  sleep 0.1
done
kill -INT "$follower"
got=0
wait "$follower" || got=$?
[ "$got" = 0 ] || fail "esdump events --follow exited $got after SIGINT: $(cat follow.err)"
[ "$after" -gt "$before" ] && [ "$(wc -l <follow.out)" = "$after" ] ||
  fail "--follow printed $(wc -l <follow.out) events, want $after"
[ "$(json_lines follow.out)" = "$after" ] || fail "--follow output is not JSON lines"

if [ "$failures" != 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all esdump tests passed"
