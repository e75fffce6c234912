#!/usr/bin/env bash
# Packs what a GPU session needs into .gpu/ (git-ignored), here, after
# `./heed build`: the GPU machine has CUDA, PyTorch and Triton but no LLVM 22 or
# MLIR, and a device call carries at most 64 MiB. Nothing is compiled there
# that is not timed on purpose:
#   bin/heed-run, lib/libheed.so   stripped; RPATH $ORIGIN/../lib and $ORIGIN:
#                                  only heed's own processes (and libheed.so
#                                  where python loads it) see the bundled
#                                  libraries, no LD_LIBRARY_PATH
#   lib/                           every library they load that is not glibc or
#                                  the C++ runtime (libLLVM.so.22.1 above all)
#   lib/cxx/                       Debian's libstdc++ and libgcc_s, used only if
#                                  the image's are older than the bundle needs
#   bin/aot-document               examples/aot built against an export for
#                                  cpu,sm_80,sm_90: links no LLVM/MLIR
#   aot/<hash>.heedk               every case of cases.txt, precompiled
#   ptx/                           the PTX the compile step hands to ptxas
# compressed with xz (gzip where xz is missing) into .gpu/heed-gpu.tar.xz, and
# .gpu/requirements.txt: the highest GLIBC_/GLIBCXX_/CXXABI_ versions the
# bundle needs (objdump -T), which run.sh's first line checks.
#   bench/gpu-session/pack.sh             VALIDATE=0 skips the case checks,
#                                         EMULATE=0 only the emulated run
# Each case is first run here against the stand-in CUDA driver
# (unittests/CAPI/fake_cuda.c): its artifact must load and launch (the output
# stays NaN there: no kernel runs), so a wrong case fails here, not on the GPU.
# Then every case runs in the stand-in driver's PTX emulator (emulate.sh: the
# same kernels compiled here as PTX, checked against float64, races, bounds
# and waits checked; about 3 minutes): a kernel wrong by the PTX ISA stops the
# pack instead of spending device minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu-session/common.sh
build=${HEED_BUILD_DIR:-build}
out=.gpu
limit=$((60 * 1024 * 1024)) # the device call's 64 MiB, less the working tree's share
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/heed/bin" "$stage/heed/lib/cxx" "$stage/heed/aot" "$stage/heed/ptx" "$out"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> "$(git rev-parse --git-path info/exclude)"
say() { echo "pack: $*" >&2; }

if ! command -v patchelf > /dev/null; then
  say "installing patchelf (Debian package) to set the bundle's RPATH"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends patchelf >&2 ||
    { say "FAILED: patchelf is needed (apt-get install patchelf)"; exit 1; }
fi
ninja -C "$build" heed-run heed heed-compile heed-fake-cuda >&2
h=$stage/heed

# The programs and their libraries.
strip -o "$h/bin/heed-run" "$build/bin/heed-run"
strip -o "$h/lib/libheed.so.0" "$(readlink -f "$build/lib/libheed.so")"
ln -s libheed.so.0 "$h/lib/libheed.so"
for dep in $(ldd "$build/bin/heed-run" "$build/lib/libheed.so" | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$dep")" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|libresolv.so.*|ld-linux*) ;;
    libstdc++.so.*|libgcc_s.so.*) cp -L "$dep" "$h/lib/cxx/" ;;
    *) cp -L "$dep" "$h/lib/" ;;
  esac
done

# The deployed program (its export is for cpu,sm_80,sm_90); test.sh builds it,
# checks its ldd and runs it on the CPU.
examples/aot/test.sh "$build/bin/heed-compile" "$PWD" "$stage/aot-example" > "$stage/aot.log" 2>&1 ||
  { cat "$stage/aot.log" >&2; say "FAILED: examples/aot"; exit 1; }
strip -o "$h/bin/aot-document" "$stage/aot-example/build/aot-document"

# Every case's kernel, ahead of time.
n=0
for step in numerics sanitize; do
  while IFS='|' read -r name kopts ropts targets; do
    art=$h/aot/$(gpu_artifact_name "$targets" "$kopts").heedk
    [ -f "$art" ] && continue
    read -ra k <<< "$kopts"
    rm -rf "$stage/x"
    "$build/bin/heed-compile" --aot --target="$targets" "${k[@]}" -o "$stage/x" > /dev/null ||
      { say "FAILED: case $name: heed-compile --aot --target=$targets $kopts"; exit 1; }
    mv "$stage"/x/*.heedk "$art"
    n=$((n + 1))
  done < <(gpu_cases $step)
done
say "$n artifacts for $(gpu_cases numerics | wc -l) numerics and $(gpu_cases sanitize | wc -l) sanitizer cases"
"$build/bin/heed-compile" examples/causal.attn --dtype=bf16 --head-dim=128 --emit=ptx \
  --target=sm_90 -o "$h/ptx/causal-bf16-d128-sm_90.ptx" 2> /dev/null

if [ "${VALIDATE:-1}" != 0 ]; then
  fake=$build/unittests/fake-cuda
  for step in numerics sanitize; do
    while IFS='|' read -r name kopts ropts targets; do
      mapfile -t k < <(gpu_run_kopts "$kopts")
      read -ra r <<< "$ropts"
      art=$h/aot/$(gpu_artifact_name "$targets" "$kopts").heedk
      log=$(LD_LIBRARY_PATH=$fake timeout 300 "$build/bin/heed-run" "${k[@]}" "${r[@]}" \
              --target=cuda --repeat=1 --artifact="$art" 2>&1) || true
      grep -q '^max error' <<< "$log" ||
        { echo "$log" >&2; say "FAILED: case $name does not load and launch its artifact"; exit 1; }
    done < <(gpu_cases $step)
  done
  say "every case loads and launches its artifact against the stand-in driver"
  # The backward cases compile here (no AOT backward yet) into the bundle's
  # kernel cache (cache/, which run.sh's backward step starts from: no
  # compile on the GPU machine where its ptxas is this one) and reach their
  # check against the stand-in driver (which computes nothing: FAILED is
  # expected here).
  rm -rf "$h/cache"
  while IFS='|' read -r name kopts ropts targets; do
    mapfile -t k < <(gpu_run_kopts "$kopts")
    read -ra r <<< "$ropts"
    log=$(LD_LIBRARY_PATH=$fake HEED_CACHE_DIR=$h/cache timeout 300 "$build/bin/heed-run" "${k[@]}" "${r[@]}" \
            --backward --target=cuda --repeat=1 2>&1) || true
    grep -qE '^backward +(PASSED|FAILED)' <<< "$log" ||
      { echo "$log" >&2; say "FAILED: backward case $name does not compile, load and launch"; exit 1; }
  done < <(gpu_cases backward)
  say "every backward case compiles, loads and launches against the stand-in driver"
  if [ "${EMULATE:-1}" != 0 ]; then
    bash bench/gpu-session/emulate.sh "$build" > "$stage/emulate.log" 2>&1 ||
      { cat "$stage/emulate.log" >&2; say "FAILED: a case fails in the PTX emulator"; exit 1; }
    say "every case passes in the PTX emulator: $(tail -1 "$stage/emulate.log")"
  fi
fi

# Only heed's own processes look in the bundle: RPATH (not RUNPATH, so that
# the libraries' own dependencies are found there too), no LD_LIBRARY_PATH.
for f in "$h"/bin/*; do patchelf --force-rpath --set-rpath '$ORIGIN/../lib' "$f"; done
for f in "$h"/lib/*.so* "$h"/lib/cxx/*.so*; do
  [ -L "$f" ] || patchelf --force-rpath --set-rpath '$ORIGIN' "$f"
done
# The bundled heed-run must find every library in the bundle (glibc and the
# C++ runtime aside), and run here on the CPU from it.
if ldd "$h/bin/heed-run" | awk '/=>/ {print $1, $3}' |
    grep -vE "^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so" | grep -v " $h/"; then
  say "FAILED: the bundled heed-run loads the libraries above from outside the bundle"
  exit 1
fi
"$h/bin/heed-run" examples/causal.attn --seq=64 --heads=2 --repeat=1 --seed=1 | grep -q 'check     PASSED' ||
  { say "FAILED: the bundled heed-run does not run here"; exit 1; }

# What the bundle needs of the image, read by run.sh before unpacking.
highest() { # the highest version of symbol prefix $1 a bundled ELF imports
  find "$h" -type f \( -name '*.so*' -o -path '*/bin/*' \) -print0 |
    xargs -0 objdump -T 2> /dev/null | grep '\*UND\*' | grep -o "$1[0-9.]*" |
    sed "s/^$1//" | sort -uV | tail -1
}
compression=xz
command -v xz > /dev/null || compression=gzip
{
  echo "glibc=$(highest GLIBC_)"
  echo "glibcxx=$(highest GLIBCXX_)"
  echo "cxxabi=$(highest CXXABI_)"
  echo "compression=$compression"
  echo "heed=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!.gpu' || echo +changes)"
  echo "packed=$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
} > "$out/requirements.txt"
rm -f "$out"/heed-gpu.tar.*
if [ "$compression" = xz ]; then
  tar -C "$stage" -cf - heed | xz -9 -T0 > "$out/heed-gpu.tar.xz" # (-6: 1.6 MB more)
else
  say "no xz here: gzip (larger)"
  tar -C "$stage" -cf - heed | gzip -9 > "$out/heed-gpu.tar.gz"
fi
echo "bundle_bytes=$(stat -c %s "$out"/heed-gpu.tar.*)" >> "$out/requirements.txt"
tree=$(git ls-files -z | xargs -0 du -cb 2> /dev/null | tail -1 | cut -f1)
total=$(( $(du -cb "$out"/* | tail -1 | cut -f1) + tree ))
cat "$out/requirements.txt" >&2
say "$(du -sh "$h" | cut -f1) unpacked; .gpu + working tree = $((total / 1048576)) MiB (limit 64)"
if [ "$total" -gt "$limit" ]; then
  say "FAILED: over the 60 MiB kept under the device call's 64 MiB"
  exit 1
fi
say "carry .gpu: run(command=\"bash bench/gpu-session/run.sh\", carry=[\".gpu\"], timeout_s=480)"
