#!/usr/bin/env bash
# compile_fail.sh SOURCE INCLUDE_DIR... -- COMPILER...: SOURCE must fail to
# compile as it is, and compile with -DWITH_HANDLER (so it fails for the
# reason it was written for, not a typo). Prints what the compiler said.
set -u
src=$1; shift
incs=()
while [ "$1" != "--" ]; do incs+=("-I$1"); shift; done
shift
if out=$("$@" -std=c++20 -fsyntax-only "${incs[@]}" "$src" 2>&1); then
  echo "FAIL: $src compiled, but must not"; exit 1
fi
if ! grep -q "apply" <<<"$out"; then
  echo "FAIL: $src failed to compile for another reason:"; echo "$out" | head -20; exit 1
fi
if ! good=$("$@" -std=c++20 -fsyntax-only -DWITH_HANDLER "${incs[@]}" "$src" 2>&1); then
  echo "FAIL: $src with -DWITH_HANDLER does not compile:"; echo "$good" | head -20; exit 1
fi
echo "ok: $src does not compile without its handler, and compiles with it"
