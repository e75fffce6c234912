#!/usr/bin/env bash
# The AOT deployment path end to end (run by ctest as example-aot): export a
# kernel for the CPU and GPUs (NVIDIA sm_80 and sm_90, AMD gfx942 where ld.lld
# is), build examples/aot against the package as a separate CMake project,
# check it links no MLIR/LLVM and that the artifact holds every target, and run
# it on the CPU. example-aot-gpu then runs the same program on CUDA device 0
# (SKIPPED without a GPU).
#   test.sh HEED_COMPILE SOURCE_DIR WORK_DIR
set -euo pipefail
compile="$1" src="$2" work="$3"
rm -rf "$work"
mkdir -p "$work"
targets=cpu,sm_80,sm_90
if "$compile" --emit=hsaco --target=gfx942 "$src/examples/document.attn" -o /dev/null 2>/dev/null; then
  targets+=,gfx942
fi
"$compile" --aot --target="$targets" "$src/examples/document.attn" -o "$work/package" \
  | tee "$work/export.txt"
ls "$work/package"
# Every target has its entry: cubins (PTX without ptxas) and the newest chip's PTX.
for want in 'cpu:x86_64' 'cuda:sm_80' 'cuda:sm_90' 'cuda:sm_90 (ptx)'; do
  grep -qF "$want" "$work/export.txt" || { echo "FAILED: no $want entry" >&2; exit 1; }
done
if [[ $targets == *gfx942* ]] && ! grep -qF 'hip:gfx942 (hsaco)' "$work/export.txt"; then
  echo "FAILED: no hip:gfx942 entry" >&2
  exit 1
fi
grep -q 'heed_document_run_device' "$work/package/document.h" ||
  { echo "FAILED: no GPU launch function in document.h" >&2; exit 1; }
cmake -S "$src/examples/aot" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dheed_aot_DIR="$work/package" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
exe="$work/build/aot-document"
echo "ldd $exe:"
ldd "$exe" | tee "$work/ldd.txt"
if grep -Ei 'llvm|mlir' "$work/ldd.txt"; then
  echo "FAILED: the deployed program links LLVM/MLIR" >&2
  exit 1
fi
"$exe"
