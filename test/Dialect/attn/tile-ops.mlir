// RUN: heed-opt %s | heed-opt | FileCheck %s
// The tile ops round-trip through the printer and the parser.

attn.variant @v buffers(["bias", "kind"] : [memref<?xf32>, memref<?xi32>]) shapes [["H"], ["H"]]
    params {} route_cases [0, 1] route {
^bb0(%b: index, %h: index, %bias: memref<?xf32>, %kind: memref<?xi32>):
  %k = attn.load %kind[%h] : memref<?xi32> -> i64
  attn.yield %k : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %bias: memref<?xf32>, %kind: memref<?xi32>):
  %x = attn.load %bias[%h] : memref<?xf32> -> f32
  %r = arith.addf %s, %x : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %bias: memref<?xf32>, %kind: memref<?xi32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
} blocks {
^bb0(%b: index, %h: index, %ql: index, %qh: index, %kl: index, %kh: index, %bias: memref<?xf32>, %kind: memref<?xi32>, %sum: memref<?x?x2xi64>):
  %p = arith.constant 1 : i8
  attn.yield %p : i8
}

// CHECK-LABEL: func.func @tile_ops
// CHECK: attn.tile.work %{{.*}}, %{{.*}}, %{{.*}} range(%{{.*}}, %{{.*}}) {
// CHECK: attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [16], kv = [16]> side <q> : <16>
// CHECK: attn.tile.routed_span %{{.*}}[%{{.*}}] lanes(%{{.*}}) routed(%{{.*}}) : memref<?xi32> -> <16>
// CHECK: attn.tile.span_box %{{.*}} : <16>
// CHECK: attn.tile.route @v[%{{.*}}, %{{.*}}] buffers(%{{.*}}, %{{.*}} : memref<?xf32>, memref<?xi32>) status(%{{.*}} : memref<1xi32>)
// CHECK: attn.tile.load %{{.*}}[%{{.*}}, %{{.*}}] span(%{{.*}}) {layout = #attn.layout<bshd>} : memref<?x?x?x64xbf16>, <16> -> !attn.tile<16x64xbf16, q>
// CHECK: attn.tile.fill 0xFF800000 : !attn.tile<16xf32, row>
// CHECK: attn.tile.kv_range @v[%{{.*}}, %{{.*}}] rows(%{{.*}}, %{{.*}}) of %{{.*}} outer[] {{.*}}summaries({{.*}}) route({{.*}}) tiling <q = [16], kv = [16]> dim 0
// CHECK: attn.tile.classify @v[%{{.*}}, %{{.*}}] box(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) buffers
// CHECK: attn.tile.count %{{.*}} class(%{{.*}}) : memref<3xi64>
// CHECK: attn.tile.qk %{{.*}}, %{{.*}} {scale = 1.250000e-01 : f32} : !attn.tile<16x64xbf16, q>, !attn.tile<16x64xbf16, k> -> !attn.tile<16x16xf32, s>
// CHECK: attn.tile.apply @v(%{{.*}}) [%{{.*}}, %{{.*}}] rows(%{{.*}}) cols(%{{.*}}) buffers({{.*}}) route(%{{.*}}) status(%{{.*}} : memref<1xi32>) mask_if(%{{.*}})
// CHECK: attn.tile.softmax %{{.*}}, %{{.*}}, %{{.*}} : !attn.tile<16x16xf32, s>, !attn.tile<16xf32, row>
// CHECK: %[[P16:.*]] = attn.tile.convert %{{.*}} : !attn.tile<16x16xf32, s> to !attn.tile<16x16xbf16, s>
// CHECK: attn.tile.pv %[[P16]], {{.*}} : !attn.tile<16x16xbf16, s>, !attn.tile<16x64xbf16, v>
// CHECK: attn.tile.store %{{.*}}, %{{.*}}, %{{.*}} to %{{.*}}[%{{.*}}, %{{.*}}] span(%{{.*}}) lse(%{{.*}} : memref<?x?x?xf32>) {layout = #attn.layout<bshd>}
func.func @tile_ops(%Q: memref<?x?x?x64xbf16>, %O: memref<?x?x?x64xbf16>, %L: memref<?x?x?xf32>,
                    %bias: memref<?xf32>, %kind: memref<?xi32>, %sum: memref<?x?x2xi64>,
                    %rows: memref<?xi32>, %st: memref<1xi32>, %stats: memref<3xi64>,
                    %n: index, %begin: index, %end: index) {
  attn.tile.work %n, %n, %n range(%begin, %end) {
  ^bb0(%b: index, %h: index, %t: index):
    %qs = attn.tile.span %n[%t] tiling <q = [16], kv = [16]> side <q> : !attn.span<16>
    %gs = attn.tile.routed_span %rows[%t] lanes(%n) routed(%n) : memref<?xi32> -> !attn.span<16>
    %lo, %hi = attn.tile.span_box %qs : !attn.span<16>
    %r = attn.tile.route @v[%b, %h] buffers(%bias, %kind : memref<?xf32>, memref<?xi32>) status(%st : memref<1xi32>)
    %q = attn.tile.load %Q[%b, %h] span(%qs) {layout = #attn.layout<bshd>} : memref<?x?x?x64xbf16>, !attn.span<16> -> !attn.tile<16x64xbf16, q>
    %acc = attn.tile.fill 0.0 : !attn.tile<16x64xf32, acc>
    %m = attn.tile.fill 0xFF800000 : !attn.tile<16xf32, row>
    %l = attn.tile.fill 0.0 : !attn.tile<16xf32, row>
    %first, %last = attn.tile.kv_range @v[%b, %h] rows(%lo, %hi) of %n outer[] buffers(%bias, %kind : memref<?xf32>, memref<?xi32>) summaries(%sum : memref<?x?x2xi64>) route(%r) tiling <q = [16], kv = [16]> dim 0
    %ks = attn.tile.span %n[%first] tiling <q = [16], kv = [16]> side <kv> : !attn.span<16>
    %klo, %khi = attn.tile.span_box %ks : !attn.span<16>
    %cls = attn.tile.classify @v[%b, %h] box(%lo, %hi, %klo, %khi) buffers(%bias, %kind : memref<?xf32>, memref<?xi32>) summaries(%sum : memref<?x?x2xi64>) route(%r)
    attn.tile.count %stats class(%cls) : memref<3xi64>
    %k = attn.tile.load %Q[%b, %h] span(%ks) {layout = #attn.layout<bshd>} : memref<?x?x?x64xbf16>, !attn.span<16> -> !attn.tile<16x64xbf16, k>
    %v = attn.tile.load %Q[%b, %h] span(%ks) {layout = #attn.layout<bshd>} : memref<?x?x?x64xbf16>, !attn.span<16> -> !attn.tile<16x64xbf16, v>
    %s = attn.tile.qk %q, %k {scale = 0.125 : f32} : !attn.tile<16x64xbf16, q>, !attn.tile<16x64xbf16, k> -> !attn.tile<16x16xf32, s>
    %p1 = arith.constant true
    %s2 = attn.tile.apply @v(%s) [%b, %h] rows(%qs) cols(%ks) buffers(%bias, %kind : memref<?xf32>, memref<?xi32>) route(%r) status(%st : memref<1xi32>) mask_if(%p1) : !attn.tile<16x16xf32, s>, !attn.span<16>, !attn.span<16>
    %m2, %l2, %p, %alpha = attn.tile.softmax %s2, %m, %l : !attn.tile<16x16xf32, s>, !attn.tile<16xf32, row>
    %p16 = attn.tile.convert %p : !attn.tile<16x16xf32, s> to !attn.tile<16x16xbf16, s>
    %acc2 = attn.tile.pv %p16, %v, %acc, %alpha : !attn.tile<16x16xbf16, s>, !attn.tile<16x64xbf16, v>, !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>
    attn.tile.store %acc2, %m2, %l2 to %O[%b, %h] span(%qs) lse(%L : memref<?x?x?xf32>) {layout = #attn.layout<bshd>} : !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>, memref<?x?x?x64xbf16>, !attn.span<16>
  }
  return
}
