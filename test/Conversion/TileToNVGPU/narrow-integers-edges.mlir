// RUN: heed-opt %s --split-input-file --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-to-tile --attn-pipeline-kv --convert-attn-tile-to-nvgpu --canonicalize --cse | FileCheck %s
// Edges of the 32-bit integer code (RegionInlining::narrow,
// lib/Conversion/TileCommon/VariantRegions.h), beside narrow-integers.mlir.

// An op with a region (written in MLIR; the spec language emits none) reads
// the region's values in their own type: kv - q inside the scf.if is 64-bit
// (its operands were narrowed for the compare; the clone would otherwise
// read values that are not there).
// CHECK-LABEL: gpu.func @heed_kernel
// CHECK: scf.if %{{.*}} -> (i1) {
// CHECK-NEXT: %[[D:.*]] = arith.subi %{{.*}}, %{{.*}} : i64
// CHECK-NEXT: arith.cmpi slt, %[[D]], %{{.*}} : i64
module {
  attn.variant @nest buffers([] : []) shapes [] params {} score {
  ^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
    attn.yield %s : f32
  } mask {
  ^bb0(%b: index, %h: index, %q: index, %kv: index):
    %qi = arith.index_cast %q : index to i64
    %kvi = arith.index_cast %kv : index to i64
    %c = arith.cmpi sge, %qi, %kvi : i64
    %r = scf.if %c -> i1 {
      %d = arith.subi %qi, %kvi : i64
      %c5 = arith.constant 5 : i64
      %w = arith.cmpi slt, %d, %c5 : i64
      scf.yield %w : i1
    } else {
      %f = arith.constant false
      scf.yield %f : i1
    }
    attn.yield %r : i1
  }
  func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
    attn.attention @nest ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
    return
  }
}

// -----

// A read at a constant index is shared by the tile's elements (the memo):
// its i32 index constant is made once, not per element.
// CHECK-LABEL: gpu.func @heed_kernel
// CHECK-COUNT-1: memref.load %arg3[%c1] : memref<?xf32>
// CHECK-NOT: memref.load %arg3
// CHECK: gpu.return
module {
  attn.variant @cidx buffers(["w"] : [memref<?xf32>]) shapes [["4"]] params {} score {
  ^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %w: memref<?xf32>):
    %c1 = arith.constant 1 : index
    %x = attn.load %w[%c1] : memref<?xf32> -> f32
    %y = arith.mulf %s, %x : f32
    attn.yield %y : f32
  } mask {
  ^bb0(%b: index, %h: index, %q: index, %kv: index, %w: memref<?xf32>):
    %t = arith.constant true
    attn.yield %t : i1
  }
  func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %w: memref<?xf32>, %o: memref<?x?x?x64xbf16>) {
    attn.attention @cidx ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) buffers(%w : memref<?xf32>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
    return
  }
}
