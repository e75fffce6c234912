// RUN: heed-opt %s --split-input-file | heed-opt --split-input-file | FileCheck %s
// RUN: heed-opt %s --split-input-file --mlir-print-op-generic | heed-opt --split-input-file | FileCheck %s

// Round trips of the attn dialect's custom syntax (and, second RUN line, of
// the generic form): variants with and without buffers, attn.load on every
// buffer element type, and attn.attention in both layouts with its optional
// operands present and absent.

// A variant without buffers: identity score, mask always true.
// CHECK-LABEL: attn.variant @plain buffers([] : []) shapes [] params {} score {
// CHECK-NEXT: ^bb0(%[[S:.*]]: f32, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index):
// CHECK-NEXT: attn.yield %[[S]] : f32
// CHECK-NEXT: } mask {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index):
// CHECK-NEXT: %[[T:.*]] = arith.constant true
// CHECK-NEXT: attn.yield %[[T]] : i1
// CHECK-NEXT: }
// CHECK-NOT: blocks
attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Buffers of several ranks and every element type; shapes mix symbols and
// constants; params of each kind. Integer reads widen to i64, float reads to
// f32.
// CHECK-LABEL: attn.variant @buffers
// CHECK-SAME: buffers(["slopes", "doc", "layout", "bias", "table", "keep", "ids"] : [memref<?xf32>, memref<?xi32>, memref<?x?x?xi8>, memref<?x?xf16>, memref<4x?xbf16>, memref<?xi1>, memref<?xi64>])
// CHECK-SAME: shapes {{\[}}["H"], ["Skv"], ["Hkv", "4", "4"], ["Sq", "Skv"], ["4", "B"], ["Skv"], ["Sq"]]
// CHECK-SAME: params {scale2 = 5.000000e-01 : f32, use_bias = true, window = 128 : i64}
// CHECK: score {
// CHECK: attn.load %{{.*}}[%{{.*}}] : memref<?xf32> -> f32
// CHECK: attn.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<?x?xf16> -> f32
// CHECK: attn.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<4x?xbf16> -> f32
// CHECK: attn.yield %{{.*}} : f32
// CHECK: } mask {
// CHECK: attn.load %{{.*}}[%{{.*}}] : memref<?xi32> -> i64
// CHECK: attn.load %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x?xi8> -> i64
// CHECK: attn.load %{{.*}}[%{{.*}}] : memref<?xi1> -> i64
// CHECK: attn.load %{{.*}}[%{{.*}}] : memref<?xi64> -> i64
// CHECK: attn.yield %{{.*}} : i1
attn.variant @buffers buffers(["slopes", "doc", "layout", "bias", "table", "keep", "ids"]
    : [memref<?xf32>, memref<?xi32>, memref<?x?x?xi8>, memref<?x?xf16>, memref<4x?xbf16>, memref<?xi1>, memref<?xi64>])
    shapes [["H"], ["Skv"], ["Hkv", "4", "4"], ["Sq", "Skv"], ["4", "B"], ["Skv"], ["Sq"]]
    params {window = 128 : i64, scale2 = 0.5 : f32, use_bias = true} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index,
     %slopes: memref<?xf32>, %doc: memref<?xi32>, %layout: memref<?x?x?xi8>, %bias: memref<?x?xf16>,
     %table: memref<4x?xbf16>, %keep: memref<?xi1>, %ids: memref<?xi64>):
  %m = attn.load %slopes[%h] : memref<?xf32> -> f32
  %x = attn.load %bias[%q, %kv] : memref<?x?xf16> -> f32
  %c0 = arith.constant 0 : index
  %y = attn.load %table[%c0, %b] : memref<4x?xbf16> -> f32
  %r0 = arith.addf %s, %m : f32
  %r1 = arith.addf %r0, %x : f32
  %r2 = arith.addf %r1, %y : f32
  attn.yield %r2 : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index,
     %slopes: memref<?xf32>, %doc: memref<?xi32>, %layout: memref<?x?x?xi8>, %bias: memref<?x?xf16>,
     %table: memref<4x?xbf16>, %keep: memref<?xi1>, %ids: memref<?xi64>):
  %d = attn.load %doc[%kv] : memref<?xi32> -> i64
  %c0 = arith.constant 0 : index
  %l = attn.load %layout[%h, %c0, %c0] : memref<?x?x?xi8> -> i64
  %k = attn.load %keep[%kv] : memref<?xi1> -> i64
  %i = attn.load %ids[%q] : memref<?xi64> -> i64
  %z = arith.constant 0 : i64
  %m0 = arith.cmpi eq, %d, %i : i64
  %m1 = arith.cmpi ne, %l, %z : i64
  %m2 = arith.cmpi ne, %k, %z : i64
  %m3 = arith.andi %m0, %m1 : i1
  %m4 = arith.andi %m3, %m2 : i1
  attn.yield %m4 : i1
}

// -----

// The optional `blocks` region (as --attn-analyze-mask writes it) takes one
// summary per rank-1 integer buffer after the buffers; extra attributes go
// after `attributes`. The attention op passes the summaries.
// CHECK-LABEL: attn.variant @document
// CHECK-SAME: buffers(["doc"] : [memref<?xi32>]) shapes {{\[}}["Skv"]] params {} attributes {sparsity = #attn.sparsity<data_dependent>} score {
// CHECK: } mask {
// CHECK: } blocks {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?x?x2xi64>):
// CHECK: attn.yield %{{.*}} : i8
// CHECK-LABEL: func.func @with_summaries
// CHECK: attn.attention @document ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%{{.*}} : memref<?xi32>) summaries(%{{.*}} : memref<?x?x2xi64>) outs(%{{.*}} : memref<?x?x?x64xf32>) stats(%{{.*}} : memref<3xi64>) {scale = 1.250000e-01 : f32}
attn.variant @document buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {}
    attributes {sparsity = #attn.sparsity<data_dependent>} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  %x = attn.load %doc[%q] : memref<?xi32> -> i64
  %y = attn.load %doc[%kv] : memref<?xi32> -> i64
  %m = arith.cmpi eq, %x, %y : i64
  attn.yield %m : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index,
     %doc: memref<?xi32>, %summary: memref<?x?x2xi64>):
  %partial = arith.constant 1 : i8
  attn.yield %partial : i8
}

func.func @with_summaries(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %doc: memref<?xi32>,
                          %summary: memref<?x?x2xi64>, %stats: memref<3xi64>) {
  attn.attention @document ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      buffers(%doc : memref<?xi32>) summaries(%summary : memref<?x?x2xi64>)
      outs(%o : memref<?x?x?x64xf32>) stats(%stats : memref<3xi64>) {scale = 0.125 : f32}
  return
}

// -----

attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// No optional operand at all, static shapes, f16; the default layout "bhsd"
// is not printed.
// CHECK-LABEL: func.func @minimal
// CHECK: attn.attention @plain ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<2x4x128x64xf16>, memref<2x4x256x64xf16>, memref<2x4x256x64xf16>) outs(%{{.*}} : memref<2x4x128x64xf16>) {scale = 1.000000e+00 : f32}{{$}}
func.func @minimal(%q: memref<2x4x128x64xf16>, %k: memref<2x4x256x64xf16>, %o: memref<2x4x128x64xf16>) {
  attn.attention @plain ins(%q, %k, %k : memref<2x4x128x64xf16>, memref<2x4x256x64xf16>, memref<2x4x256x64xf16>)
      outs(%o : memref<2x4x128x64xf16>) {scale = 1.0 : f32, layout = #attn.layout<bhsd>}
  return
}

// GQA in bhsd (16 query heads over 4 key/value heads), a value head dim (64)
// different from the query/key one (128), bf16, lse present, status absent.
// CHECK-LABEL: func.func @gqa_bhsd
// CHECK: attn.attention @plain ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<?x16x?x128xbf16>, memref<?x4x?x128xbf16>, memref<?x4x?x64xbf16>) outs(%{{.*}} : memref<?x16x?x64xbf16>) lse(%{{.*}} : memref<?x16x?xf32>) {scale = 0.0883883461 : f32}{{$}}
func.func @gqa_bhsd(%q: memref<?x16x?x128xbf16>, %k: memref<?x4x?x128xbf16>, %v: memref<?x4x?x64xbf16>,
                    %o: memref<?x16x?x64xbf16>, %lse: memref<?x16x?xf32>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x16x?x128xbf16>, memref<?x4x?x128xbf16>, memref<?x4x?x64xbf16>)
      outs(%o : memref<?x16x?x64xbf16>) lse(%lse : memref<?x16x?xf32>) {scale = 0.0883883461 : f32}
  return
}

// MQA in bshd (heads are dimension 2: 8 query heads over 1), status present,
// lse absent; out may hold another float type than q/k/v.
// CHECK-LABEL: func.func @mqa_bshd
// CHECK: attn.attention @plain ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<?x?x8x64xf16>, memref<?x?x1x64xf16>, memref<?x?x1x64xf16>) outs(%{{.*}} : memref<?x?x8x64xf32>) status(%{{.*}} : memref<1xi32>) {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}{{$}}
func.func @mqa_bshd(%q: memref<?x?x8x64xf16>, %k: memref<?x?x1x64xf16>, %v: memref<?x?x1x64xf16>,
                    %o: memref<?x?x8x64xf32>, %status: memref<1xi32>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x8x64xf16>, memref<?x?x1x64xf16>, memref<?x?x1x64xf16>)
      outs(%o : memref<?x?x8x64xf32>) status(%status : memref<1xi32>) {scale = 0.125 : f32, layout = #attn.layout<bshd>}
  return
}

// -----

attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %m = attn.load %slopes[%h] : memref<?xf32> -> f32
  %r = arith.addf %s, %m : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// Strided views (any strides, contiguous head dim: a slice of a packed QKV
// tensor), every optional operand present, in bshd.
// CHECK-LABEL: func.func @bshd_strided
// CHECK: attn.attention @alibi ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>)
// CHECK-SAME: buffers(%{{.*}} : memref<?xf32>)
// CHECK-SAME: outs(%{{.*}} : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>)
// CHECK-SAME: lse(%{{.*}} : memref<?x?x?xf32>) status(%{{.*}} : memref<1xi32>) stats(%{{.*}} : memref<3xi64>) work(%{{.*}}, %{{.*}})
// CHECK-SAME: {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}
func.func @bshd_strided(%q: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>,
                        %k: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>,
                        %v: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>,
                        %o: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>,
                        %slopes: memref<?xf32>, %lse: memref<?x?x?xf32>, %status: memref<1xi32>,
                        %stats: memref<3xi64>, %begin: index, %end: index) {
  attn.attention @alibi ins(%q, %k, %v : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>)
      buffers(%slopes : memref<?xf32>)
      outs(%o : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>)
      lse(%lse : memref<?x?x?xf32>) status(%status : memref<1xi32>) stats(%stats : memref<3xi64>)
      work(%begin, %end) {scale = 0.125 : f32, layout = #attn.layout<bshd>}
  return
}

// work(begin, end) alone, with the same tensor passed as q, k and v.
// CHECK-LABEL: func.func @work_only
// CHECK: attn.attention @alibi ins(%[[Q:.*]], %[[Q]], %[[Q]] : memref<1x2x3x32xf32>, memref<1x2x3x32xf32>, memref<1x2x3x32xf32>) buffers(%{{.*}} : memref<?xf32>) outs(%{{.*}} : memref<1x2x3x32xf32>) work(%{{.*}}, %{{.*}}) {scale = 2.500000e-01 : f32}{{$}}
func.func @work_only(%q: memref<1x2x3x32xf32>, %o: memref<1x2x3x32xf32>, %slopes: memref<?xf32>,
                     %begin: index, %end: index) {
  attn.attention @alibi ins(%q, %q, %q : memref<1x2x3x32xf32>, memref<1x2x3x32xf32>, memref<1x2x3x32xf32>)
      buffers(%slopes : memref<?xf32>) outs(%o : memref<1x2x3x32xf32>) work(%begin, %end) {scale = 0.25 : f32}
  return
}
