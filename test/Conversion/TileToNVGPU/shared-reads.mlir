// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-nvgpu --canonicalize --cse | FileCheck %s
// A buffer element a whole tile shares is read once per tile, not once per
// fragment element (RegionMemo, lib/Conversion/TileCommon/VariantRegions.h):
// ALiBi's slopes[h] (%arg3) once in the partial tiles' code and once in the
// full tiles', where each thread's 32 scores of a 16 x 64 fragment used to
// read it 32 times, each read in its own bounds-check branch with a status
// store that LLVM cannot merge.

// CHECK-LABEL: gpu.func @heed_kernel
// CHECK-COUNT-2: memref.load %arg3[%block_id_y] : memref<?xf32>
// CHECK-NOT: memref.load %arg3
// CHECK: gpu.return

module {
  attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
  ^bb0(%arg0: f32, %arg1: index, %arg2: index, %arg3: index, %arg4: index, %arg5: memref<?xf32>):
    %0 = arith.index_cast %arg2 : index to i64
    %1 = arith.index_cast %0 : i64 to index
    %2 = attn.load %arg5[%1] : memref<?xf32> -> f32
    %3 = arith.index_cast %arg4 : index to i64
    %4 = arith.index_cast %arg3 : index to i64
    %5 = arith.subi %3, %4 : i64
    %6 = arith.sitofp %5 : i64 to f32
    %7 = arith.mulf %2, %6 : f32
    %8 = arith.addf %arg0, %7 : f32
    attn.yield %8 : f32
  } mask {
  ^bb0(%arg0: index, %arg1: index, %arg2: index, %arg3: index, %arg4: memref<?xf32>):
    %0 = arith.index_cast %arg2 : index to i64
    %1 = arith.index_cast %arg3 : index to i64
    %2 = arith.cmpi sge, %0, %1 : i64
    attn.yield %2 : i1
  }
  func.func @heed_kernel(%arg0: memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, %arg1: memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, %arg2: memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, %arg3: memref<?xf32>, %arg4: memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>) attributes {llvm.emit_c_interface} {
    attn.attention @alibi ins(%arg0, %arg1, %arg2 : memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>) buffers(%arg3 : memref<?xf32>) outs(%arg4 : memref<?x?x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>) {scale = 1.250000e-01 : f32}
    return
  }
}
