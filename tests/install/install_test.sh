#!/usr/bin/env bash
# What an app outside this tree sees. Usage:
#   install_test.sh [SOURCE_DIR] [SCRATCH_PARENT]
# SOURCE_DIR defaults to the repository root; a scratch directory is made
# under SCRATCH_PARENT (default ${TMPDIR:-/tmp}) and removed on exit
# (ES_INSTALL_KEEP=1 keeps it for a look). Checks, one PASS/FAIL line each:
#   install     meson setup (tests, bench off; tools on) + meson install
#   headers     <prefix>/include holds exactly eventsource/{options,status,store,types}.h
#               and api/'s (event store, events, json, aggregates, repository, ...)
#   files       the libraries, esdump, eventsource.pc and eventsource-api.pc
#               are installed
#   pkg-config  eventsource.pc names the private deps a --static link needs
#   app         tests/install/app.cc, copied out of the tree, builds with -Werror
#               against `pkg-config --cflags --libs --static eventsource`, runs
#   esdump      the installed esdump reads (info) and verifies the app's store
#   subproject  a parent meson project gets eventsource through
#               dependency('eventsource') falling back to a subproject (a
#               symlink to SOURCE_DIR), builds app.cc with -Werror and runs it
# Exit 0 when every check passes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${1:-$here/../..}" && pwd)
scratch_parent=${2:-${TMPDIR:-/tmp}}
scratch=$(mktemp -d "$scratch_parent/es-install.XXXXXX")
cleanup() {
  if [ -n "${ES_INSTALL_KEEP:-}" ]; then
    echo "kept $scratch"
  else
    rm -rf "$scratch"
  fi
}
trap cleanup EXIT

prefix=$scratch/prefix
log=$scratch/logs
mkdir -p "$log"
failures=0
jobs=$(nproc 2>/dev/null || echo 2)

pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
indent() { sed 's/^/    | /'; }
# Shows the tail of a log after a failure.
show() { tail -n 40 "$1" | indent; }

# ------------------------------------------------------------------ install --
if meson setup "$scratch/build" "$src" --prefix="$prefix" --buildtype=release \
    -Dtests=false -Dbench=false -Dtools=true >"$log/setup.txt" 2>&1 &&
    meson install -C "$scratch/build" >"$log/install.txt" 2>&1; then
  pass "install: meson setup + meson install into $prefix"
else
  fail "install: meson setup or meson install failed"
  show "$log/setup.txt"
  [ -f "$log/install.txt" ] && show "$log/install.txt"
  echo "install_test: 1 failed (nothing else to check without an install)"
  exit 1
fi

# ------------------------------------------------------------------ headers --
expected_headers="eventsource/aggregate.h
eventsource/engine_event_store.h
eventsource/event_bus.h
eventsource/event_store.h
eventsource/events.h
eventsource/json.h
eventsource/memory_event_store.h
eventsource/observability.h
eventsource/options.h
eventsource/projection.h
eventsource/projection_runner.h
eventsource/projection_store.h
eventsource/read_model.h
eventsource/repository.h
eventsource/snapshot_store.h
eventsource/sqlite_event_store.h
eventsource/sqlite_snapshot_store.h
eventsource/status.h
eventsource/store.h
eventsource/subscription.h
eventsource/testing.h
eventsource/types.h"
installed_headers=""
if [ -d "$prefix/include" ]; then
  installed_headers=$(cd "$prefix/include" && find . -type f -o -type l | sed 's|^\./||' | sort)
fi
if [ "$installed_headers" = "$expected_headers" ]; then
  pass "headers: include/ holds exactly ${expected_headers//$'\n'/ }"
else
  fail "headers: include/ should hold exactly ${expected_headers//$'\n'/ }; it holds:"
  indent <<<"${installed_headers:-(nothing)}"
fi

# -------------------------------------------------------------------- files --
pc=$(find "$prefix" -name eventsource.pc -path '*/pkgconfig/*' -print -quit)
lib=$(find "$prefix" \( -name 'libeventsource.a' -o -name 'libeventsource.so*' \) -print -quit)
api_pc=$(find "$prefix" -name eventsource-api.pc -path '*/pkgconfig/*' -print -quit)
api_lib=$(find "$prefix" \( -name 'libeventsource-api.a' -o -name 'libeventsource-api.so*' \) \
  -print -quit)
missing=()
[ -n "$api_pc" ] || missing+=("lib/.../pkgconfig/eventsource-api.pc")
[ -n "$api_lib" ] || missing+=("lib/.../libeventsource-api.{a,so}")
[ -x "$prefix/bin/esdump" ] || missing+=("bin/esdump")
[ -n "$pc" ] || missing+=("lib/.../pkgconfig/eventsource.pc")
[ -n "$lib" ] || missing+=("lib/.../libeventsource.{a,so}")
if [ ${#missing[@]} -eq 0 ]; then
  pass "files: bin/esdump, ${lib#"$prefix"/}, ${pc#"$prefix"/}, ${api_lib#"$prefix"/}, ${api_pc#"$prefix"/}"
else
  fail "files: missing ${missing[*]}"
fi
# Anything installed that is not one of the above (e.g. es_example, a test).
extra=$(find "$prefix" -type f | sed "s|^$prefix/||" | { grep -v -e '^include/eventsource/' \
  -e '^bin/esdump$' -e 'pkgconfig/eventsource\(-api\)\?\.pc$' \
  -e 'libeventsource\(-api\)\?\.\(a\|so[.0-9]*\)$' || true; })
if [ -n "$extra" ]; then
  fail "files: installed more than expected:"
  indent <<<"$extra"
fi

# --------------------------------------------------------------- pkg-config --
pc_dir=$(dirname "${pc:-$prefix/lib/pkgconfig/eventsource.pc}")
pkgconf() { PKG_CONFIG_PATH="$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" pkg-config "$@"; }
# libeventsource is a static library by default, so a link needs the
# engine's own deps: pkg-config --static must yield them (meson lists them in
# Requires or Requires.private; either serves a static link).
if [ -n "$pc" ]; then
  requires=$( (pkgconf --print-requires eventsource; pkgconf --print-requires-private eventsource) \
    2>&1 | tr '\n' ' ' || true)
  static_libs=$(pkgconf --libs --static eventsource 2>&1 || true)
  missing=()
  for dep in libxxhash libzstd fmt; do
    grep -qw -- "$dep" <<<"$requires" || missing+=("$dep")
  done
  for flag in -leventsource -lxxhash -lzstd -lfmt; do
    grep -qw -- "$flag" <<<"$static_libs" || missing+=("$flag")
  done
  grep -q -e '-pthread' -e '-lpthread' <<<"$static_libs" || missing+=("threads (-pthread)")
  if [ ${#missing[@]} -eq 0 ]; then
    pass "pkg-config: requires ${requires% }; --libs --static: $static_libs"
  else
    fail "pkg-config: eventsource.pc lacks ${missing[*]}"
    indent <"$pc"
  fi
else
  fail "pkg-config: no eventsource.pc"
fi
# api/'s library links after the engine's, which its .pc requires.
if [ -n "$api_pc" ]; then
  api_libs=$(pkgconf --libs --static eventsource-api 2>&1 || true)
  if grep -qw -- -leventsource-api <<<"$api_libs" && grep -qw -- -leventsource <<<"$api_libs"; then
    pass "pkg-config: eventsource-api --libs --static: $api_libs"
  else
    fail "pkg-config: eventsource-api.pc does not link api/ and the engine: $api_libs"
    indent <"$api_pc"
  fi
fi

# --------------------------------------------------------------------- app --
# Built in the scratch directory from a copy, so nothing of the source tree
# (no -I, no relative include) can be reached: only what was installed.
mkdir -p "$scratch/app" "$scratch/app-store"
cp "$src/tests/install/app.cc" "$scratch/app/app.cc"
app_ok=0
flags=$(pkgconf --cflags --libs --static eventsource 2>"$log/pkg-config.txt" || true)
# $flags is deliberately unquoted: it is a list of compiler arguments.
# shellcheck disable=SC2086
if (cd "$scratch/app" && ${CXX:-c++} -std=c++20 -Werror -Wall -Wextra -O1 -o app app.cc $flags \
    >"$log/app-build.txt" 2>&1); then
  if "$scratch/app/app" "$scratch/app-store" >"$log/app-run.txt" 2>&1; then
    app_ok=1
    pass "app: built out of tree with pkg-config --static, ran: $(tail -n 1 "$log/app-run.txt")"
  else
    fail "app: built, but running it failed"
    show "$log/app-run.txt"
  fi
else
  fail "app: c++ -std=c++20 -Werror -Wall -Wextra app.cc \$(pkg-config --cflags --libs --static eventsource) failed"
  echo "    flags: $flags"
  show "$log/pkg-config.txt"
  show "$log/app-build.txt"
fi

# ------------------------------------------------------------------ esdump --
store=$scratch/app-store/app.evs
if [ $app_ok -eq 1 ]; then
  if "$prefix/bin/esdump" info "$store" >"$log/esdump-info.txt" 2>&1 &&
      grep -Eq '^events +2$' "$log/esdump-info.txt" &&
      grep -Eq '^streams +1$' "$log/esdump-info.txt"; then
    pass "esdump: info sees 2 events in 1 stream"
  else
    fail "esdump: 'esdump info $store' failed or did not report 2 events in 1 stream"
    show "$log/esdump-info.txt"
  fi
  if "$prefix/bin/esdump" verify "$store" >"$log/esdump-verify.txt" 2>&1; then
    pass "esdump: verify: $(tail -n 1 "$log/esdump-verify.txt")"
  else
    fail "esdump: 'esdump verify $store' failed"
    show "$log/esdump-verify.txt"
  fi
else
  fail "esdump: not run (the app wrote no store)"
fi

# -------------------------------------------------------------- subproject --
parent=$scratch/parent
mkdir -p "$parent/subprojects"
ln -s "$src" "$parent/subprojects/eventsource"
cp "$src/tests/install/app.cc" "$parent/app.cc"
cat >"$parent/meson.build" <<'EOF'
project('es_parent', 'cpp',
  default_options : ['cpp_std=c++20', 'warning_level=2', 'werror=true', 'buildtype=release'])
eventsource_dep = dependency('eventsource', fallback : 'eventsource')
executable('app', 'app.cc', dependencies : eventsource_dep)
EOF
# --force-fallback-for: use the subproject even if an eventsource.pc is on
# the pkg-config path, which is the case this check is about.
if (cd "$parent" && meson setup build --force-fallback-for=eventsource \
      -Deventsource:tests=false -Deventsource:bench=false -Deventsource:tools=false \
      >"$log/parent-setup.txt" 2>&1 &&
    ninja -C build -j "$jobs" app >"$log/parent-build.txt" 2>&1); then
  mkdir -p "$scratch/parent-store"
  if "$parent/build/app" "$scratch/parent-store" >"$log/parent-run.txt" 2>&1; then
    pass "subproject: dependency('eventsource') from subprojects/eventsource, app ran: $(tail -n 1 "$log/parent-run.txt")"
  else
    fail "subproject: built, but running the app failed"
    show "$log/parent-run.txt"
  fi
else
  fail "subproject: meson setup or build of the parent project failed"
  show "$log/parent-setup.txt"
  [ -f "$log/parent-build.txt" ] && show "$log/parent-build.txt"
fi

if [ $failures -eq 0 ]; then
  echo "install_test: all checks passed"
else
  echo "install_test: $failures check(s) failed"
  [ -n "${ES_INSTALL_KEEP:-}" ] || echo "(ES_INSTALL_KEEP=1 keeps the scratch directory and its logs)"
  exit 1
fi
