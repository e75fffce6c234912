// RUN: heed-opt %s | heed-opt | FileCheck %s
// RUN: heed-opt %s --mlir-print-op-generic | heed-opt | FileCheck %s

// CHECK-LABEL: attn.variant @plain
// CHECK: score {
// CHECK: attn.yield %{{.*}} : f32
// CHECK: } mask {
// CHECK: attn.yield %{{.*}} : i1
attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// CHECK-LABEL: attn.variant @buffers
// CHECK-SAME: buffers(["slopes", "doc", "layout"] : [memref<?xf32>, memref<?xi32>, memref<?x?x?xi8>])
// CHECK-SAME: params {window = 128 : i64}
// CHECK: attn.load %{{.*}}[%{{.*}}] : memref<?xf32> -> f32
// CHECK: attn.load %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x?xi8> -> i64
attn.variant @buffers buffers(["slopes", "doc", "layout"] : [memref<?xf32>, memref<?xi32>, memref<?x?x?xi8>])
    shapes [["H"], ["Skv"], ["H", "4", "4"]] params {window = 128 : i64} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>, %doc: memref<?xi32>, %layout: memref<?x?x?xi8>):
  %m = attn.load %slopes[%h] : memref<?xf32> -> f32
  %r = arith.addf %s, %m : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>, %doc: memref<?xi32>, %layout: memref<?x?x?xi8>):
  %c0 = arith.constant 0 : index
  %l = attn.load %layout[%h, %c0, %c0] : memref<?x?x?xi8> -> i64
  %z = arith.constant 0 : i64
  %m = arith.cmpi ne, %l, %z : i64
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @bhsd
// CHECK: attn.attention @plain ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<?x16x?x128xbf16>, memref<?x4x?x128xbf16>, memref<?x4x?x64xbf16>) outs(%{{.*}} : memref<?x16x?x64xbf16>) lse(%{{.*}} : memref<?x16x?xf32>) {scale = 0.0883883461 : f32}
func.func @bhsd(%q: memref<?x16x?x128xbf16>, %k: memref<?x4x?x128xbf16>, %v: memref<?x4x?x64xbf16>,
                %o: memref<?x16x?x64xbf16>, %lse: memref<?x16x?xf32>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x16x?x128xbf16>, memref<?x4x?x128xbf16>, memref<?x4x?x64xbf16>)
      outs(%o : memref<?x16x?x64xbf16>) lse(%lse : memref<?x16x?xf32>) {scale = 0.0883883461 : f32}
  return
}

// CHECK-LABEL: func.func @bshd_strided
// CHECK: attn.attention @buffers {{.*}} buffers(%{{.*}}, %{{.*}}, %{{.*}} : memref<?xf32>, memref<?xi32>, memref<?x?x?xi8>) outs
// CHECK-SAME: status(%{{.*}} : memref<1xi32>) stats(%{{.*}} : memref<3xi64>) work(%{{.*}}, %{{.*}})
// CHECK-SAME: layout = "bshd"
func.func @bshd_strided(%q: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>,
                        %k: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>,
                        %o: memref<?x?x?x64xf32>, %slopes: memref<?xf32>, %doc: memref<?xi32>,
                        %layout: memref<?x?x?xi8>, %status: memref<1xi32>, %stats: memref<3xi64>,
                        %begin: index, %end: index) {
  attn.attention @buffers ins(%q, %k, %k : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>)
      buffers(%slopes, %doc, %layout : memref<?xf32>, memref<?xi32>, memref<?x?x?xi8>)
      outs(%o : memref<?x?x?x64xf32>) status(%status : memref<1xi32>) stats(%stats : memref<3xi64>)
      work(%begin, %end) {scale = 1.250000e-01 : f32, layout = "bshd"}
  return
}
