#!/usr/bin/env bash
# Packs what a GPU session needs to run heed's GPU checks on the lent GPU
# machine, which has CUDA, PyTorch and Triton but no LLVM 22 or MLIR: the
# stripped heed-run and libheed.so, every shared library they load that is not
# glibc (libLLVM.so.22.1 above all), xz-compressed into .gpu/ (about 50 MB,
# under the device tool's 64 MiB carry limit). Run here after `./heed build`:
#   bench/gpu-session/pack.sh          # -> .gpu/heed-gpu.tar.xz
# then on the device machine (carry .gpu):
#   bench/gpu-session/run.sh           # numerics, then the benchmark, logs in $OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${HEED_BUILD_DIR:-build}
out=.gpu
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$out"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
for tool in heed-run; do
  strip -o "$stage/bin/$tool" "$build/bin/$tool"
done
strip -o "$stage/lib/libheed.so.0" "$(readlink -f "$build/lib/libheed.so")"
ln -s libheed.so.0 "$stage/lib/libheed.so"
# Every non-glibc dependency, resolved here (Debian 12), goes along.
for dep in $(ldd "$build/bin/heed-run" "$build/lib/libheed.so" | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$dep")" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) continue ;;
  esac
  cp -L "$dep" "$stage/lib/"
done
tar -C "$stage" -cf - bin lib | xz -6 -T0 > "$out/heed-gpu.tar.xz"
ls -la "$out/heed-gpu.tar.xz"
