#!/usr/bin/env bash
# Runs every libFuzzer target of a -Dfuzz=true build for SECONDS each (two
# processes per target, -jobs=2 -workers=2) on a scratch copy of its corpus,
# and fails on any crash, leak, UB report, timeout or OOM.
#
#   bash tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]
#
# Per target it prints the executions done; the last line is
# "fuzz: N targets, 0 crashes" (exit 0), or names the failing inputs (exit 1).
# Scratch corpora, logs and failing inputs stay in BUILD_DIR/fuzz-run/<target>/
# (artifacts/ holds crash-*, leak-*, timeout-*, oom-*); minimize one with
#   BUILD_DIR/tests/fuzz/fuzz_<target> -minimize_crash=1 -runs=10000 FILE
# and commit it under tests/fuzz/crashers/<target>/ once it is understood.
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame headers checkpoint index store)

max_len() {
  case $1 in
    frame) echo 16384 ;;
    headers) echo 1024 ;;
    checkpoint) echo 512 ;;
    index) echo 16384 ;;
    store) echo 4194304 ;;  # the target refuses larger inputs
    *) echo 4096 ;;
  esac
}

# The store target writes its inputs to files: keep them in memory when
# possible, and remove them whatever happens to the fuzzers.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch=$(mktemp -d /dev/shm/es-fuzz-run.XXXXXX)
else
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/es-fuzz-run.XXXXXX")
fi
trap 'rm -rf "$scratch"' EXIT
export ES_FUZZ_TMPDIR=$scratch
# UBSan only reports by default; make a report a crash libFuzzer saves.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

failures=()
ran=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    echo "fuzz $t: $bin is missing (configure with -Dfuzz=true and clang, then ninja -C $build fuzzers)" >&2
    failures+=("$t: binary missing")
    continue
  fi
  if [ ! -d "$here/corpus/$t" ]; then
    echo "fuzz $t: no corpus in $here/corpus/$t" >&2
    failures+=("$t: corpus missing")
    continue
  fi
  dir=$build/fuzz-run/$t
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -r "$here/corpus/$t/." "$dir/corpus/"
  seeds=$(find "$dir/corpus" -type f | wc -l)
  start=$(date +%s)
  (cd "$dir" && "$bin" -jobs=2 -workers=2 -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len="$(max_len "$t")" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" corpus >"$dir/run.log" 2>&1)
  rc=$?
  elapsed=$(($(date +%s) - start))
  ran=$((ran + 1))
  execs=0
  for log in "$dir"/fuzz-*.log; do
    [ -f "$log" ] || continue
    n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ -z "$n" ]; then  # a job that died early: its last status line
      n=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
    fi
    execs=$((execs + ${n:-0}))
  done
  corpus_now=$(find "$dir/corpus" -type f | wc -l)
  rate=$((execs / (elapsed > 0 ? elapsed : 1)))
  echo "fuzz $t: $execs execs in ${elapsed}s ($rate/s, 2 processes), corpus $seeds -> $corpus_now inputs"
  found=$(find "$dir/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | sort)
  if [ -n "$found" ] || [ $rc -ne 0 ]; then
    for log in "$dir"/fuzz-*.log; do
      [ -f "$log" ] || continue
      if grep -qE '^==[0-9]+==ERROR|^SUMMARY|runtime error|ALARM|out-of-memory|fuzz invariant failed' "$log"; then
        echo "---- $log (excerpt)"
        grep -nE -A40 '^==[0-9]+==ERROR|runtime error|ALARM: working|out-of-memory|fuzz invariant failed' "$log" | head -80
      fi
    done
    if [ -n "$found" ]; then
      while IFS= read -r f; do
        echo "fuzz $t: FAILING INPUT $f"
        failures+=("$t: $f")
      done <<<"$found"
    else
      echo "fuzz $t: libFuzzer exited with status $rc (see $dir/run.log and $dir/fuzz-*.log)"
      failures+=("$t: exit status $rc")
    fi
  fi
done

if [ ${#failures[@]} -eq 0 ]; then
  echo "fuzz: $ran targets, 0 crashes"
  exit 0
fi
echo "fuzz: $ran targets, ${#failures[@]} crashes:"
printf '  %s\n' "${failures[@]}"
exit 1
