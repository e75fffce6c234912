#!/usr/bin/env bash
# The AOT deployment path end to end (run by ctest as example-aot):
# export a kernel, build examples/aot against the package as a separate
# CMake project, run it, and check it links no MLIR/LLVM.
#   test.sh HEED_COMPILE SOURCE_DIR WORK_DIR
set -euo pipefail
compile="$1" src="$2" work="$3"
rm -rf "$work"
mkdir -p "$work"
"$compile" --aot --target=cpu "$src/examples/document.attn" -o "$work/package"
ls "$work/package"
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
