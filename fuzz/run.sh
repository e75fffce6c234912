#!/usr/bin/env bash
# Builds heed's fuzz target under libFuzzer with clang-22
# (-fsanitize=fuzzer,address,undefined) in build-fuzz/ and runs it, then
# appends the run's counts to fuzz/runs.log and prints the sum over every run
# logged there (runs in other sessions included: commit the log).
#
#   fuzz/run.sh [--time=SECONDS] [--runs=N] [--no-build] [-- LIBFUZZER_FLAGS...]
#
# --time     stop after this many seconds (default 600)
# --runs     stop after this many inputs (default: no limit)
# --no-build run the binary already in build-fuzz/
# The corpus grows in build-fuzz/corpus (kept between runs on this machine);
# the seeds come from the folders in fuzz/seed-dirs.txt, regenerated each run;
# crashes, leaks, timeouts and out-of-memory inputs land in
# build-fuzz/artifacts/. The fuzzer runs under `nice` on one core.
# HEED_FUZZ_BUILD_DIR moves build-fuzz/. docs/testing.md has more.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${HEED_FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds=600
runs=-1
doBuild=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time=*) seconds="${1#--time=}" ;;
    --runs=*) runs="${1#--runs=}" ;;
    --no-build) doBuild=0 ;;
    --) shift; extra=("$@"); break ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  shift
done

install_clang() {
  local missing=()
  for p in clang-22 libclang-rt-22-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "fuzz/run.sh: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

if [ "$doBuild" = 1 ]; then
  install_clang
  if [ ! -f "$build/build.ninja" ]; then
    # Assertions stay on (no NDEBUG): heed's and the LLVM headers' checks are
    # findings too. Only heed's code is instrumented; Debian's libLLVM/libMLIR
    # are not (ASan still checks the memory they hand out).
    san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
    cmake -G Ninja -S "$root" -B "$build" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
      -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
      -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $san -fno-omit-frame-pointer" \
      -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $san -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" \
      -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir -DLLVM_USE_LINKER=lld \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DHEED_LIBFUZZER=ON >&2
  fi
  nice ninja -C "$build" heed-fuzz heed-fuzz-replay >&2
fi

mkdir -p "$build/corpus" "$build/artifacts"
rm -rf "$build/seeds"
"$build/bin/heed-fuzz-replay" --list-from="$root/fuzz/seed-dirs.txt" --root="$root" \
  --write-seeds="$build/seeds" >&2

log="$build/last-run.log"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
start=$(date +%s)
# allow_user_poisoning=0: MLIR's static libraries are not instrumented, and
# LLVM's BumpPtrAllocator poisons its slabs only where it is (a slab carved by
# uninstrumented code would then read as poisoned: false positives).
set +e
HEED_CACHE=off ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allow_user_poisoning=0}" \
  nice -n 10 "$build/bin/heed-fuzz" "$build/corpus" "$build/seeds" \
  -dict="$root/fuzz/heed.dict" -max_len=4096 -timeout=30 -rss_limit_mb=4096 \
  -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/" "${extra[@]}" 2>&1 | tee "$log" |
  grep -E '^#[0-9]+ +(INITED|DONE)|ERROR|^==[0-9]+==|^SUMMARY|artifact_prefix|Test unit written|stat::'
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
if [ -z "$execs" ]; then
  # No final stats (killed): the last progress line.
  execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
fi
execs=${execs:-0}
newUnits=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
corpus=$(find "$build/corpus" -type f | wc -l)
artifacts=$(find "$build/artifacts" -type f | wc -l)

runsLog="$root/fuzz/runs.log"
printf '%s commit=%s seconds=%s execs=%s exit=%s new_units=%s corpus=%s artifacts=%s host=%s\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$elapsed" "$execs" "$status" "${newUnits:-?}" \
  "$corpus" "$artifacts" "$(nproc)cpu" >> "$runsLog"
total=$(sed -n 's/.* execs=\([0-9]*\) .*/\1/p' "$runsLog" | awk '{s += $1} END {print s + 0}')
echo "this run: $execs executions in ${elapsed} s, exit status $status (full output: $log)"
echo "all runs in fuzz/runs.log: $total executions"
if [ "$artifacts" -gt 0 ]; then
  echo "artifacts in $build/artifacts (replay one with $build/bin/heed-fuzz-replay FILE):"
  ls "$build/artifacts"
fi
exit "$status"
