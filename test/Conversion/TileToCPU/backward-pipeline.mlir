// RUN: heed-opt %S/../AttnToTile/attn-backward-to-tile.mlir --heed-cpu-backward-pipeline="block-q=8 block-kv=4" | FileCheck %s

// --heed-cpu-backward-pipeline: simplify, analyze-mask, attn-differentiate,
// attn-backward-to-tile, the CPU patterns, then the LLVM dialect: only llvm
// ops remain, the score and its derivative vectorized over the 8 query rows.
// CHECK-LABEL: llvm.func @backward
// CHECK: llvm.intr.fma{{.*}} : (vector<8xf32>, vector<8xf32>, vector<8xf32>) -> vector<8xf32>
// CHECK-NOT: attn.
// CHECK-NOT: scf.
// (no vector dialect op; LLVM's vector intrinsics, llvm.intr.vector.*, are fine)
// CHECK-NOT: {{[^.]}}vector.
// CHECK-NOT: memref.
// CHECK-NOT: llvm.call
