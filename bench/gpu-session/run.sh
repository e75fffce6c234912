#!/usr/bin/env bash
# The GPU session, on the lent GPU machine, in one device call that carries
# pack.sh's .gpu/ (docs/benchmarks.md, "Running on the GPU machine"):
#   run(command="bash bench/gpu-session/run.sh", carry=[".gpu"], timeout_s=480)
# Its first line says whether the bundle can run on the image (glibc, the C++
# runtime); then each step runs under its own time limit, appends its log and a
# JSON record under $OUT as soon as it ends, and a one-screen summary table is
# printed last. Steps, in order, with their budgets in seconds (BUDGET_<STEP>):
#   setup      20   unpack to /tmp/heed, what the machine has (GPU, driver,
#                   runtime, compute-sanitizer, ptxas, torch)
#   aot        15   the deployed program (no LLVM/MLIR) on CUDA device 0
#   numerics   90   cases.txt's numerics cases: heed-run against float64 on
#                   precompiled artifacts, both kernels
#   sanitizer 120   compute-sanitizer memcheck, racecheck, synccheck, initcheck
#                   on cases.txt's sanitize cases
#   backward  130   cases.txt's backward cases: heed-run --backward on CUDA
#                   (the forward, then the backward's dQ and dK/dV kernels:
#                   tensor-core ones, and Hopper's wgmma ones where asked,
#                   from the kernel cache pack.sh filled, else compiled there:
#                   no AOT for the backward yet) against float64, three runs
#                   whose gradients must be bitwise identical (the buffer
#                   gradients' fixed-point accumulators); memcheck and
#                   racecheck on the first one and the first wgmma one;
#                   then torch's CUDA forward and
#                   loss.backward() through the C API, packed sequences too,
#                   and serving calls on wgmma (test_torch.py, 90 s)
#   compile    20   a cold compile there (MLIR / NVPTX / ptxas), a disk hit,
#                   PTX through the driver's JIT, ptxas -O3..-O0
#   decode     35   bench/gpu_decode.py: decode (B=8 x 32K keys, B=64 ragged
#                   1K-32K; Hq=32, Hkv=8, D=128, bf16, kv_lens) as K/V GB/s
#                   against a device copy, heed / SDPA / flex, checked against
#                   float32; raw JSON as a line of cases.jsonl
#   bwbench    45   bench/gpu_backward.py: the backward (dQ, dK/dV; tensor
#                   cores and wgmma) against flex's, B=4 H=16 S=8192 D=128
#                   bf16, gradients checked against flex's; raw JSON as a
#                   line of cases.jsonl
#   bench    rest   bench/gpu_attention.py (raw JSON rewritten after each row):
#                   what the earlier steps left: at least 40 s when each used
#                   its whole budget (they rarely do: a step stops when its
#                   cases are done; more when the sanitizer is SKIPPED)
# TOTAL_BUDGET (420 s: with a machine start, one call of at most 9 minutes)
# caps the whole; a step gets what is left of it if that is less, and one
# with under 5 s left is NOT RUN. STEPS=numerics,bench selects (setup always
# runs), BENCH_ARGS passes options to the benchmark, SEED fixes the inputs.
# Exit status: 1 if a step FAILED or ran out of time, else 77 if one was
# SKIPPED or NOT RUN (no GPU, no compute-sanitizer...), else 0.
# $OUT gets 8 files (the device tool returns at most 8): summary.txt,
# steps.jsonl, cases.jsonl, misc.log, numerics.log, sanitizer.log, bench.log,
# bench.json.
set -uo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/../.."
source bench/gpu-session/common.sh
export OUT=${OUT:-/tmp/heed-out} HEED_DIR=${HEED_DIR:-/tmp/heed} WORK=${WORK:-/tmp/heed-session}
export SEED=${SEED:-$(date +%s)}
export HEED_CACHE_DIR=$WORK/cache # heed never writes to the machine's home

json_escape() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/ }
  printf '%s' "${s//$'\r'/}"
}
now() { date +%s; }
# Runs a heed program: the C++ runtime fallback only where the image's is too old.
heed_exec() {
  if [ -n "${HEED_CXX_FALLBACK:-}" ]; then
    LD_LIBRARY_PATH=$HEED_DIR/lib/cxx "$@" < /dev/null
  else
    "$@" < /dev/null
  fi
}
detail() { printf '%s' "$*" > "$WORK/detail.$STEP"; }
# One JSON line for a case into cases.jsonl.
case_record() { # step name status seconds [key value]...
  local line="{\"step\":\"$1\",\"case\":\"$(json_escape "$2")\",\"status\":\"$3\",\"seconds\":$4"
  shift 4
  while [ $# -ge 2 ]; do
    line+=",\"$1\":\"$(json_escape "$2")\""
    shift 2
  done
  echo "$line}" >> "$OUT/cases.jsonl"
}
left() { echo $((STEP_DEADLINE - $(now))); }
# A per-item limit inside a step: at most $1 s and what the step has left.
item_limit() {
  local l
  l=$(left)
  [ "$l" -lt "$1" ] && echo "$l" || echo "$1"
}

# ---- the steps (each runs as `run.sh --step NAME` under its own timeout) --------

step_aot() {
  local exe=$HEED_DIR/bin/aot-document log rc
  if ldd "$exe" | grep -Ei 'llvm|mlir'; then
    detail "the deployed program links LLVM/MLIR"
    return 1
  fi
  log=$(heed_exec timeout "$(item_limit 15)" "$exe" cuda "$SEED" 2>&1)
  rc=$?
  echo "$log"
  detail "aot-document cuda: $(grep -E 'max \||SKIPPED|FAILED|failed' <<< "$log" | head -1) (ldd: no LLVM/MLIR)"
  return $rc
}

step_numerics() {
  local name kopts ropts targets k r log rc t0 art passed=0 failed=0 notrun=0 failures=""
  local worst=0
  while IFS='|' read -r name kopts ropts targets; do
    if [ "$(left)" -lt 5 ]; then
      notrun=$((notrun + 1))
      case_record numerics "$name" NOT-RUN 0
      continue
    fi
    mapfile -t k < <(gpu_run_kopts "$kopts")
    read -ra r <<< "$ropts"
    art=$HEED_DIR/aot/$(gpu_artifact_name "$targets" "$kopts").heedk
    echo "== $name: heed-run $kopts $ropts (artifact for $targets)"
    t0=$(now)
    log=$(heed_exec timeout -k 5 "$(item_limit 45)" "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" \
            --target=cuda --repeat=1 --seed="$SEED" --artifact="$art" 2>&1)
    rc=$?
    echo "$log"
    if [ $rc -eq 77 ]; then
      detail "$(grep -m1 SKIPPED <<< "$log")"
      case_record numerics "$name" SKIPPED $(($(now) - t0))
      return 77
    fi
    local status=PASS
    [ $rc -eq 0 ] || status=FAIL
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=TIMEOUT
    if [ $status = PASS ]; then passed=$((passed + 1)); else
      failed=$((failed + 1))
      failures+=" $name"
    fi
    local rel
    rel=$(sed -n 's/.*(relative \([^,]*\),.*/\1/p' <<< "$log")
    [ -n "$rel" ] && worst=$(awk -v a="$worst" -v b="$rel" 'BEGIN {print (b + 0 > a + 0) ? b : a}')
    case_record numerics "$name" $status $(($(now) - t0)) rc $rc \
      kernel "$(sed -n 's/^target *//p' <<< "$log")" \
      max_error "$(sed -n 's/^max error \([^ ]*\).*/\1/p' <<< "$log")" relative "$rel" \
      lse_error "$(sed -n 's/^lse error //p' <<< "$log")" load "$(sed -n 's/^load *//p' <<< "$log")" \
      seed "$SEED"
  done < <(gpu_cases numerics)
  while IFS='|' read -r name why _; do
    echo "== $name: not run on the GPU: $why"
    case_record numerics "$name" "NOT-ON-GPU" 0 why "$why"
  done < <(gpu_cases skip)
  detail "$passed passed, $failed failed, $notrun not run (time); worst relative error $worst; seed $SEED${failures:+; failed:$failures}"
  [ $failed -gt 0 ] && return 1
  [ $notrun -gt 0 ] && return 124
  return 0
}

step_sanitizer() {
  if [ -z "${SANITIZER:-}" ]; then
    detail "compute-sanitizer not found (PATH, /usr/local/cuda/bin, /usr/local/cuda/compute-sanitizer)"
    echo "SKIPPED: $(cat "$WORK/detail.$STEP")"
    return 77
  fi
  if [ "${GPU_NAME:-}" = "" ]; then
    detail "no GPU ($GPU_WHY)"
    return 77
  fi
  case "$(uname -r)" in 4.4.0*)
    detail "gVisor (kernel $(uname -r)): compute-sanitizer refuses the device there (KINDS.md)"
    return 77 ;;
  esac
  local name kopts ropts targets k r art tool log rc t0 runs=0 clean=0 bad="" notrun=0 summary
  while IFS='|' read -r name kopts ropts targets; do
    mapfile -t k < <(gpu_run_kopts "$kopts")
    read -ra r <<< "$ropts"
    art=$HEED_DIR/aot/$(gpu_artifact_name "$targets" "$kopts").heedk
    for tool in memcheck racecheck synccheck initcheck; do
      if [ "$(left)" -lt 8 ]; then
        notrun=$((notrun + 1))
        case_record sanitizer "$name $tool" NOT-RUN 0
        continue
      fi
      echo "== $tool $name: heed-run $kopts $ropts"
      t0=$(now)
      log=$(heed_exec timeout -k 5 "$(item_limit 50)" "$SANITIZER" --tool "$tool" \
              --error-exitcode 9 --print-limit 20 "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" \
              --target=cuda --repeat=1 --seed="$SEED" --artifact="$art" 2>&1)
      rc=$?
      head -c 20000 <<< "$log"
      echo
      runs=$((runs + 1))
      summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' <<< "$log" | tail -1)
      if [ $rc -eq 0 ]; then
        clean=$((clean + 1))
        case_record sanitizer "$name $tool" PASS $(($(now) - t0)) summary "$summary"
      else
        bad+=" $name/$tool(rc $rc)"
        case_record sanitizer "$name $tool" FAIL $(($(now) - t0)) rc $rc summary "$summary"
      fi
    done
  done < <(gpu_cases sanitize)
  detail "$runs runs, $clean clean, $((runs - clean)) with errors or failures, $notrun not run (time)${bad:+:$bad}"
  [ -n "$bad" ] && return 1
  [ $notrun -gt 0 ] && return 124
  return 0
}

step_backward() {
  local name kopts ropts targets k r log rc t0 passed=0 failed=0 notrun=0 failures="" first=""
  local firstWgmma=""
  # pack.sh's kernel cache of these cases: hits where this machine's ptxas
  # is the packing machine's (the key names it), else they compile here.
  if [ -d "$HEED_DIR/cache" ]; then
    mkdir -p "$WORK/cache"
    cp -r "$HEED_DIR/cache/." "$WORK/cache/"
  fi
  while IFS='|' read -r name kopts ropts targets; do
    if [ "$(left)" -lt 10 ]; then
      notrun=$((notrun + 1))
      case_record backward "$name" NOT-RUN 0
      continue
    fi
    mapfile -t k < <(gpu_run_kopts "$kopts")
    read -ra r <<< "$ropts"
    [ -z "$first" ] && first="$name|$kopts|$ropts"
    [ -z "$firstWgmma" ] && [[ $kopts == *--gpu-kernel=wgmma* ]] && firstWgmma="$name|$kopts|$ropts"
    echo "== $name: heed-run $kopts $ropts --backward --target=cuda"
    t0=$(now)
    log=$(heed_exec timeout -k 5 "$(item_limit 30)" "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" \
            --backward --target=cuda --repeat=3 --seed="$SEED" 2>&1)
    rc=$?
    echo "$log"
    if [ $rc -eq 77 ]; then
      detail "$(grep -m1 SKIPPED <<< "$log")"
      case_record backward "$name" SKIPPED $(($(now) - t0))
      return 77
    fi
    local status=PASS
    [ $rc -eq 0 ] || status=FAIL
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=TIMEOUT
    if [ $status = PASS ]; then passed=$((passed + 1)); else
      failed=$((failed + 1))
      failures+=" $name"
    fi
    case_record backward "$name" $status $(($(now) - t0)) rc $rc \
      errors "$(grep -E 'relative error' <<< "$log" | awk '{print $1 "=" $4}' | tr '\n' ' ')" \
      time "$(sed -n 's/^backward *\([0-9.]* ms\).*/\1/p' <<< "$log")" seed "$SEED" \
      repeat "$(sed -n 's/^repeat *//p' <<< "$log")"
  done < <(gpu_cases backward)
  # The first case and the first wgmma case under compute-sanitizer (their
  # kernels now in the cache).
  local sanitized="" one
  for one in "$first" "$firstWgmma"; do
  if [ -n "${SANITIZER:-}" ] && [ -n "$one" ]; then
    IFS='|' read -r name kopts ropts <<< "$one"
    mapfile -t k < <(gpu_run_kopts "$kopts")
    read -ra r <<< "$ropts"
    for tool in memcheck racecheck; do
      [ "$(left)" -lt 10 ] && { notrun=$((notrun + 1)); continue; }
      echo "== $tool $name --backward"
      t0=$(now)
      log=$(heed_exec timeout -k 5 "$(item_limit 40)" "$SANITIZER" --tool "$tool" \
              --error-exitcode 9 --print-limit 20 "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" \
              --backward --target=cuda --repeat=1 --seed="$SEED" 2>&1)
      rc=$?
      head -c 20000 <<< "$log"
      echo
      local st=PASS
      [ $rc -eq 0 ] || { st=FAIL; failed=$((failed + 1)); failures+=" $name/$tool"; }
      sanitized+=" $name/$tool:$st"
      case_record backward "$name $tool" $st $(($(now) - t0)) rc $rc \
        summary "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' <<< "$log" | tail -1)"
    done
  fi
  done
  # The C API's GPU backward through torch (loss.backward() on CUDA tensors
  # against float64 autograd) and torch's CUDA forward, python/tests/test_torch.py.
  local torchrun="not run"
  if [ "$(left)" -ge 15 ]; then
    echo "== torch CUDA forward and autograd (python/tests/test_torch.py)"
    t0=$(now)
    log=$(HEED_LIBRARY=$HEED_DIR/lib/libheed.so.0 HEED_TEST_CACHE_DIR=$WORK/cache \
          timeout -k 5 "$(item_limit 90)" python3 python/tests/test_torch.py \
          FlexTorchTest.test_cuda FlexTorchTest.test_cuda_backward \
          FlexTorchTest.test_cuda_wgmma_backward FlexTorchTest.test_cuda_wgmma_serving \
          ServingBackwardTest.test_cuda_packed_sequences < /dev/null 2>&1)
    rc=$?
    echo "$log"
    local st=PASS
    case $rc in
      0) grep -q "skipped" <<< "$log" && st=SKIPPED ;;
      77) st=SKIPPED ;;
      124|137) st=TIMEOUT; notrun=$((notrun + 1)) ;;
      *) st=FAIL; failed=$((failed + 1)); failures+=" torch-cuda" ;;
    esac
    torchrun=$st
    case_record backward torch-cuda-autograd $st $(($(now) - t0)) rc $rc \
      errors "$(grep -E 'normwise error' <<< "$log" | tr '\n' ' ')"
  else
    notrun=$((notrun + 1))
  fi
  detail "$passed passed, $failed failed, $notrun not run (time);${sanitized:- no sanitizer}; torch CUDA autograd $torchrun; seed $SEED${failures:+; failed:$failures}"
  [ $failed -gt 0 ] && return 1
  [ $notrun -gt 0 ] && return 124
  return 0
}

step_compile() {
  local k=(examples/causal.attn --dtype=bf16 --head-dim=128 --gpu-kernel=tensor-cores)
  local r=(--seq=333 --heads=2 --target=cuda --repeat=1 --seed="$SEED")
  local log cold disk ptx jit timing levels="" level rc
  rm -rf "$WORK"/cache-c*
  echo "== cold compile (fresh cache, HEED_TIMING=1)"
  log=$(HEED_TIMING=1 HEED_CACHE_DIR=$WORK/cache-c1 heed_exec timeout "$(item_limit 20)" \
          "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" 2>&1)
  rc=$?
  echo "$log"
  if [ $rc -eq 77 ]; then
    detail "$(grep -m1 SKIPPED <<< "$log")"
    return 77
  fi
  # A wrong result (rc 1) is the numerics step's to report; here the time counts.
  [ $rc -le 1 ] && grep -q '^heed timing' <<< "$log" ||
    { detail "heed-run failed (rc $rc) before timing the compile"; return 1; }
  timing=$(sed -n 's/^heed timing: //p' <<< "$log")
  cold=$(sed -n 's/^compile *\([0-9.]*\) s.*/\1/p' <<< "$log")
  echo "== disk hit (same cache, new process)"
  log=$(HEED_CACHE_DIR=$WORK/cache-c1 heed_exec timeout "$(item_limit 20)" \
          "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" 2>&1)
  echo "$log"
  disk=$(sed -n 's/^compile *\([0-9.]*\) s (disk cache hit).*/\1/p' <<< "$log")
  echo "== PTX only (HEED_PTXAS=none): the driver compiles it at load"
  log=$(HEED_PTXAS=none HEED_TIMING=1 HEED_CACHE_DIR=$WORK/cache-c2 heed_exec \
          timeout "$(item_limit 20)" "$HEED_DIR/bin/heed-run" "${k[@]}" "${r[@]}" 2>&1)
  echo "$log"
  ptx=$(sed -n 's/^compile *\([0-9.]*\) s.*/\1/p' <<< "$log")
  jit=$(sed -n 's/^load *\([0-9.]*\) s.*/\1/p' <<< "$log")
  if [ -n "${PTXAS:-}" ]; then
    for level in 3 2 1 0; do
      local t0 ms regs
      t0=$(date +%s%N)
      log=$(timeout "$(item_limit 20)" "$PTXAS" -arch=sm_90 -v -O$level \
              "$HEED_DIR/ptx/causal-bf16-d128-sm_90.ptx" -o "$WORK/k.cubin" 2>&1)
      ms=$((($(date +%s%N) - t0) / 1000000))
      regs=$(sed -n 's/.*Used \([0-9]*\) registers.*/\1/p' <<< "$log")
      echo "ptxas -O$level: $ms ms, $regs registers; $(grep -o '[0-9]* bytes spill stores' <<< "$log")"
      levels+=" -O$level ${ms}ms/${regs}r"
    done
  fi
  case_record compile causal-bf16-d128 PASS 0 cold_s "$cold" timing "$timing" disk_hit_s "$disk" \
    ptx_only_compile_s "$ptx" ptx_load_with_jit_s "$jit" ptxas_levels "${levels# }"
  local split
  split=$(sed -n 's/.*MLIR passes \([0-9]*\) .*NVPTX (gpu-module-to-binary) \([0-9]*\) + ptxas \([0-9a-z]*\) .*/MLIR \1, NVPTX \2, ptxas \3 ms/p' <<< "$timing")
  detail "cold ${cold:-?} s ($split), disk hit ${disk:-?} s, PTX only ${ptx:-?} s + load with JIT ${jit:-?} s; ptxas ms/registers:${levels:- not found}"
  return 0
}

# A benchmark script of the step: `python3 SCRIPT ARGS --json $WORK/NAME.json`
# with heed's library and a fresh kernel cache, under `timeout LIMIT`, its
# output in $WORK/NAME.out; SKIPPED (77) becomes the step's detail; the raw
# JSON (the rows finished, if killed by the timeout) becomes one line of
# cases.jsonl with "step": NAME (the device tool brings back 8 files).
# Returns the script's exit status.
bench_script() {
  local name=$1 limit=$2 rc
  shift 2
  rm -rf "$WORK/cache-$name" "$WORK/$name.json"
  HEED_LIBRARY=$HEED_DIR/lib/libheed.so.0 HEED_CACHE_DIR=$WORK/cache-$name PYTHONUNBUFFERED=1 \
    timeout -k 3 "$limit" python3 "$@" --json "$WORK/$name.json" < /dev/null 2>&1 |
    tee "$WORK/$name.out"
  rc=${PIPESTATUS[0]}
  if [ $rc -eq 77 ]; then
    detail "$(grep -m1 SKIPPED "$WORK/$name.out")"
    return 77
  fi
  python3 -c 'import json, sys; d = json.load(open(sys.argv[2])); d["step"] = sys.argv[1]; print(json.dumps(d))' \
    "$name" "$WORK/$name.json" >> "$OUT/cases.jsonl" 2>/dev/null
  return $rc
}

step_decode() {
  local rc budget
  budget=$(($(left) - 10))
  [ $budget -lt 5 ] && budget=5
  bench_script decode "$(( $(left) - 8 ))" bench/gpu_decode.py --budget "$budget" --seed "$SEED"
  rc=$?
  [ $rc -eq 77 ] && return 77
  detail "$(python3 - "$WORK/decode.json" <<'EOF' 2>/dev/null || echo "no decode.json: $(tail -1 "$WORK/decode.out")"
import json, sys
d = json.load(open(sys.argv[1]))
parts = ["%s %s %.0f%%" % (r["shape"].split("-")[0], r["impl"], 100 * r["of_copy"])
         for r in d["rows"] if "of_copy" in r]
bad = [r["shape"] + " " + r["impl"] for r in d["rows"] if r.get("passed") is False or "error" in r]
print("copy %.0f GB/s; K/V of copy: %s%s" % (d["copy_gbps"], ", ".join(parts) or "-",
      ("; WRONG/ERROR: " + ", ".join(bad)) if bad else ""))
EOF
)"
  return $rc
}

step_bench() {
  local rc budget wgmma=() wgnote=""
  budget=$(($(left) - 20))
  [ $budget -lt 10 ] && budget=10
  rm -rf "$WORK/cache-bench"
  # heed's Hopper kernel is benchmarked (after the default kernel's rows)
  # only where the numerics step ran its wg-* cases and all passed: a kernel
  # that hangs would take the rest of the step with it.
  if ! grep -q '"step":"numerics","case":"wg-' "$OUT/cases.jsonl" 2>/dev/null ||
     grep '"step":"numerics","case":"wg-' "$OUT/cases.jsonl" | grep -qv '"status":"PASS"'; then
    wgmma=(--wgmma off)
    wgnote="wgmma not benchmarked (its wg-* numerics cases did not all pass); "
    echo "$wgnote"
  fi
  HEED_LIBRARY=$HEED_DIR/lib/libheed.so.0 HEED_CACHE_DIR=$WORK/cache-bench PYTHONUNBUFFERED=1 \
    timeout -k 5 "$(left)" python3 bench/gpu_attention.py --json "$OUT/bench.json" \
    --budget "$budget" --seed "$SEED" "${wgmma[@]}" ${BENCH_ARGS:-} < /dev/null 2>&1 | tee "$WORK/bench.out"
  rc=${PIPESTATUS[0]}
  if [ $rc -eq 77 ]; then
    detail "$(grep -m1 SKIPPED "$WORK/bench.out")"
    return 77
  fi
  detail "$wgnote$(python3 - "$OUT/bench.json" <<'EOF' 2>/dev/null || echo "no bench.json: $(tail -1 "$WORK/bench.out")"
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["results"]
wrong = [r["variant"] + " D=%d" % r["D"] for r in rows if r.get("heed", {}).get("check") == "FAILED"]
err = [r["variant"] for r in rows if "error" in r.get("heed", {})]
wrong += [r["variant"] + " D=%d wgmma" % r["D"] for r in rows
          if r.get("heed_wgmma", {}).get("check") == "FAILED"]
best = ["%s D=%d %.0f/%s/%.0f" % (r["variant"], r["D"], r["heed"]["tflops"],
                                  "%.0f" % r["heed_wgmma"]["tflops"]
                                  if r.get("heed_wgmma", {}).get("tflops") else "-",
                                  r["flex"]["tflops"])
        for r in rows if r["variant"] == "causal" and r.get("heed", {}).get("tflops")
        and r.get("flex", {}).get("tflops")]
print("%d rows, %d WRONG%s, %d errors, %d not run; heed/wgmma/flex TFLOP/s: %s" % (
    len(rows), len(wrong), (" (" + ", ".join(wrong) + ")") if wrong else "", len(err),
    len(d.get("not_run", [])), "; ".join(best) or "-"))
EOF
)"
  return $rc
}

# The backward against flex's (bench/gpu_backward.py: issue 17's shape, B=4
# H=16 S=8192 D=128 bf16; causal, sliding window, document, 2-D neighborhood,
# ALiBi), the wgmma backward only where the backward step's bw-wgmma-* cases
# all passed.
step_bwbench() {
  local rc budget wgmma=() wgnote=""
  budget=$(($(left) - 15))
  [ $budget -lt 10 ] && budget=10
  if ! grep -q '"step":"backward","case":"bw-wgmma-' "$OUT/cases.jsonl" 2>/dev/null ||
     grep '"step":"backward","case":"bw-wgmma-' "$OUT/cases.jsonl" | grep -qv '"status":"PASS"'; then
    wgmma=(--wgmma off)
    wgnote="wgmma backward not benchmarked (its bw-wgmma-* cases did not all pass); "
    echo "$wgnote"
  fi
  # shellcheck disable=SC2086 # (BWBENCH_ARGS: words)
  bench_script bwbench "$(( $(left) - 3 ))" bench/gpu_backward.py --budget "$budget" \
    --seed "$SEED" "${wgmma[@]}" ${BWBENCH_ARGS:-}
  rc=$?
  [ $rc -eq 77 ] && return 77
  detail "$wgnote$(python3 - "$WORK/bwbench.json" <<'EOF' 2>/dev/null || echo "no bwbench.json: $(tail -1 "$WORK/bwbench.out")"
import json, sys
d = json.load(open(sys.argv[1]))
rows = [r for r in d["rows"] if "not_run" not in r]
def tf(r, k):
    t = (r.get(k) or {}).get("tflops")
    return "%.0f" % t if t else "-"
bad = [r["variant"] + " " + k for r in rows
       for k in ("heed", "heed_wgmma", "heed_wgmma_serial") if k in r and not r[k].get("passed")]
print("%d rows (%d not run), %d FAILED%s; heed/wgmma/wgmma-serial/flex backward TFLOP/s: %s" % (
    len(rows), len(d["rows"]) - len(rows), len(bad), (" (" + ", ".join(bad) + ")") if bad else "",
    "; ".join("%s D=%d %s/%s/%s/%s" % (r["variant"], r["D"], tf(r, "heed"), tf(r, "heed_wgmma"),
                                       tf(r, "heed_wgmma_serial"), tf(r, "flex"))
              for r in rows) or "-"))
EOF
)"
  return $rc
}

if [ "${1:-}" = --step ]; then
  STEP=$2
  "step_$STEP"
  exit $?
fi

# ---- the session ------------------------------------------------------------------
start=$(now)
total=${TOTAL_BUDGET:-420}
deadline=$((start + total))
rm -rf "$WORK"
mkdir -p "$OUT" "$WORK"
: > "$OUT/steps.jsonl"
: > "$OUT/cases.jsonl"
results=()
worst=0

# The first line: can the bundle run on this image?
req=.gpu/requirements.txt
need() { sed -n "s/^$1=//p" "$req" 2> /dev/null; }
glibc_here=$(ldd --version 2> /dev/null | head -1 | awk '{print $NF}')
stdcxx=$( (ldconfig -p 2> /dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}') )
[ -n "$stdcxx" ] || stdcxx=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
glibcxx_here=$(grep -ao 'GLIBCXX_3\.4\.[0-9]*' "$stdcxx" 2> /dev/null | sed 's/GLIBCXX_//' | sort -uV | tail -1)
verdict=OK
if [ ! -f "$req" ]; then
  verdict="CANNOT RUN: no .gpu/requirements.txt (run bench/gpu-session/pack.sh, carry .gpu)"
elif [ "$(printf '%s\n%s\n' "$(need glibc)" "$glibc_here" | sort -V | head -1)" != "$(need glibc)" ]; then
  verdict="CANNOT RUN: the bundle needs GLIBC_$(need glibc), this image has $glibc_here"
elif [ "$(printf '%s\n%s\n' "$(need glibcxx)" "${glibcxx_here:-0}" | sort -V | head -1)" != "$(need glibcxx)" ]; then
  export HEED_CXX_FALLBACK=1
  verdict="OK with the bundled libstdc++ for heed's own processes (the image's has GLIBCXX_${glibcxx_here:-none})"
fi
echo "heed-gpu: glibc ${glibc_here:-unknown} here ($(ldd --version 2>&1 | head -1)); bundle needs GLIBC_$(need glibc), GLIBCXX_$(need glibcxx) (here ${glibcxx_here:-none}): $verdict" |
  tee "$OUT/misc.log"

record() { # step status seconds budget
  local d=""
  [ -f "$WORK/detail.$1" ] && d=$(cat "$WORK/detail.$1")
  echo "{\"step\":\"$1\",\"status\":\"$2\",\"seconds\":$3,\"budget\":$4,\"detail\":\"$(json_escape "$d")\"}" >> "$OUT/steps.jsonl"
  results+=("$1|$2|$3|$4|$d")
  local rank=0
  case $2 in SKIPPED|NOT-RUN) rank=1 ;; FAIL|TIMEOUT) rank=2 ;; esac
  [ $rank -gt $worst ] && worst=$rank
}

summary() {
  {
    echo
    echo "== heed GPU session: ${GPU_NAME:-no GPU}${GPU_DRIVER:+ (driver $GPU_DRIVER)}, glibc ${glibc_here:-?}, seed $SEED, $(($(now) - start)) s of $total =="
    printf '%-10s %-8s %-9s %s\n' step status 's/budget' detail
    local r name status secs budget d
    for r in "${results[@]}"; do
      IFS='|' read -r name status secs budget d <<< "$r"
      printf '%-10s %-8s %-9s %s\n' "$name" "$status" "$secs/$budget" "${d:0:200}"
    done
    case $worst in
      0) echo "exit 0: every step passed" ;;
      1) echo "exit 77: nothing failed, but a step was SKIPPED or NOT RUN" ;;
      2) echo "exit 1: a step FAILED or ran out of time" ;;
    esac
    echo "logs: $OUT/{summary.txt,steps.jsonl,cases.jsonl,misc.log,numerics.log,sanitizer.log,bench.log,bench.json}"
  } | tee "$OUT/summary.txt"
  rm -f "$OUT"/*.tmp
}
finish() {
  summary
  case $worst in 0) exit 0 ;; 1) exit 77 ;; *) exit 1 ;; esac
}

# setup: unpack, and what the machine has.
STEP=setup
t0=$(now)
if [[ $verdict == CANNOT* ]]; then
  detail "$verdict"
  record setup FAIL 0 "${BUDGET_SETUP:-20}"
  finish
fi
{
  rm -rf "$HEED_DIR"
  mkdir -p "$(dirname "$HEED_DIR")"
  bundle=$(ls .gpu/heed-gpu.tar.* 2> /dev/null | head -1)
  case "$bundle" in
    *.xz)
      if command -v xz > /dev/null; then xz -dc "$bundle"
      else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$bundle"
      fi ;;
    *.gz) gzip -dc "$bundle" ;;
    *) echo "no bundle in .gpu/" >&2 ;;
  esac | tar -C "$(dirname "$HEED_DIR")" -xf - && [ -x "$HEED_DIR/bin/heed-run" ]
} >> "$OUT/misc.log" 2>&1
if [ ! -x "$HEED_DIR/bin/heed-run" ]; then
  detail "cannot unpack .gpu/heed-gpu.tar.* (xz: $(command -v xz || echo none); python3 lzma fallback)"
  record setup FAIL $(($(now) - t0)) "${BUDGET_SETUP:-20}"
  finish
fi
export GPU_NAME="" GPU_DRIVER="" GPU_WHY=""
if smi=$(timeout 15 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1); then
  GPU_NAME=$(head -1 <<< "$smi" | cut -d, -f1)
  GPU_DRIVER=$(head -1 <<< "$smi" | cut -d, -f2 | tr -d ' ')
else
  GPU_WHY="nvidia-smi: $(head -1 <<< "$smi")"
fi
export SANITIZER="" PTXAS=""
for s in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  if command -v "$s" > /dev/null 2>&1; then SANITIZER=$(command -v "$s"); break; fi
done
for p in "${HEED_PTXAS:-}" "${CUDA_HOME:-/nonexistent}/bin/ptxas" /usr/local/cuda/bin/ptxas ptxas; do
  if [ -n "$p" ] && command -v "$p" > /dev/null 2>&1; then PTXAS=$(command -v "$p"); break; fi
done
runtime=Firecracker
case "$(uname -r)" in 4.4.0*) runtime=gVisor ;; esac
{
  echo "== machine"
  echo "kernel $(uname -r) ($runtime), $(nproc) cores, seed $SEED"
  echo "nvidia-smi: ${smi:-}"
  echo "compute-sanitizer: ${SANITIZER:-not found}"
  echo "ptxas: ${PTXAS:-not found} $([ -n "$PTXAS" ] && "$PTXAS" --version | grep release)"
  echo "python3: $(command -v python3) $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
  echo "bundle: $(cat .gpu/requirements.txt | tr '\n' ' ')"
  echo "heed-run: $(ldd "$HEED_DIR/bin/heed-run" | grep -c "$HEED_DIR") libraries from the bundle"
} >> "$OUT/misc.log" 2>&1
yes_no() { [ -n "$1" ] && echo "$1" || echo "$2"; }
STEP=setup detail "${GPU_NAME:-no GPU ($GPU_WHY)}, $runtime, $(nproc) cores; compute-sanitizer $(yes_no "$SANITIZER" 'NOT FOUND'); ptxas $(yes_no "$PTXAS" 'not found'); bundle $(( $(need bundle_bytes) / 1048576 )) MiB"
record setup PASS $(($(now) - t0)) "${BUDGET_SETUP:-20}"

steps=${STEPS:-aot,numerics,sanitizer,backward,compile,decode,bwbench,bench}
echo "plan: $steps within ${total} s (budgets: aot ${BUDGET_AOT:-15}, numerics ${BUDGET_NUMERICS:-90}, sanitizer ${BUDGET_SANITIZER:-120}, backward ${BUDGET_BACKWARD:-130}, compile ${BUDGET_COMPILE:-20}, decode ${BUDGET_DECODE:-35}, bwbench ${BUDGET_BWBENCH:-45}, bench ${BUDGET_BENCH:-the rest}; s)" | tee -a "$OUT/misc.log"
for step in aot numerics sanitizer backward compile decode bwbench bench; do
  [[ ,$steps, == *,$step,* ]] || continue
  case $step in
    aot) budget=${BUDGET_AOT:-15}; log=misc.log ;;
    numerics) budget=${BUDGET_NUMERICS:-90}; log=numerics.log ;;
    sanitizer) budget=${BUDGET_SANITIZER:-120}; log=sanitizer.log ;;
    backward) budget=${BUDGET_BACKWARD:-130}; log=numerics.log ;;
    compile) budget=${BUDGET_COMPILE:-20}; log=misc.log ;;
    decode) budget=${BUDGET_DECODE:-35}; log=bench.log ;;
    bwbench) budget=${BUDGET_BWBENCH:-45}; log=bench.log ;;
    bench) budget=${BUDGET_BENCH:-$((deadline - $(now) - 5))}; log=bench.log ;; # what is left
  esac
  allowed=$((deadline - $(now) - 5))
  [ $allowed -gt $budget ] && allowed=$budget
  if [ $allowed -lt 5 ]; then
    STEP=$step detail "no time left of the ${total} s"
    record $step NOT-RUN 0 "$budget"
    continue
  fi
  echo "== $step (up to $allowed s)" | tee -a "$OUT/$log"
  t0=$(now)
  STEP=$step STEP_DEADLINE=$((t0 + allowed)) timeout -k 5 "$allowed" bash "$self" --step $step >> "$OUT/$log" 2>&1
  rc=$?
  case $rc in
    0) status=PASS ;;
    77) status=SKIPPED ;;
    124|137) status=TIMEOUT ;;
    *) status=FAIL ;;
  esac
  record $step $status $(($(now) - t0)) "$budget"
  echo "== $step: $status in $(($(now) - t0)) s: $(cat "$WORK/detail.$step" 2> /dev/null)"
done
finish
