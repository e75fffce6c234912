// RUN: heed-opt %s --attn-choose-tiling="block-q=16" --attn-analyze-mask --attn-to-tile --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=32 block-kv=8" --attn-to-tile --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=NOBLOCKS
// --attn-to-tile: attn.attention becomes its FlashAttention loop in tile ops.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// The work items over (batch, head, query tile), the query tile loaded
// once, a loop over every key tile carrying (acc, max, sum), and the store.
// CHECK-LABEL: func.func @causal_kernel
// CHECK: %[[T:.*]] = attn.num_tiles %{{.*}} of @causal side <q> {tiling = #attn.tiling<q = [16], kv = [16]>}
// CHECK: attn.tile.work %{{.*}}, %{{.*}}, %[[T]] range(%{{.*}}, %{{.*}}) {
// CHECK: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[I:.*]]: index):
// GQA: the key/value head of query head h.
// CHECK: %[[G:.*]] = arith.divui
// CHECK: %[[HKV:.*]] = arith.divui %[[H]], %[[G]]
// CHECK: %[[QS:.*]] = attn.tile.span %{{.*}}[%[[I]]] tiling <q = [16], kv = [16]> side <q> : <16>
// CHECK: %[[QLO:.*]], %[[QHI:.*]] = attn.tile.span_box %[[QS]]
// CHECK: %[[Q:.*]] = attn.tile.load %{{.*}}[%[[B]], %[[H]]] span(%[[QS]]) {{.*}}-> !attn.tile<16x64xbf16, q>
// CHECK: %[[ACC:.*]] = attn.tile.fill 0.000000e+00 : !attn.tile<16x64xf32, acc>
// CHECK: %[[M:.*]] = attn.tile.fill 0xFF800000 : !attn.tile<16xf32, row>
// CHECK: scf.for %[[KT:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[A:.*]] = %[[ACC]], %[[MX:.*]] = %[[M]], %[[SM:.*]] = %{{.*}}) -> (!attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>) {
// CHECK: %[[KS:.*]] = attn.tile.span %{{.*}}[%[[KT]]] tiling <q = [16], kv = [16]> side <kv>
// Each key tile classified: FULL ones skip the mask.
// CHECK: %[[KLO:.*]], %[[KHI:.*]] = attn.tile.span_box %[[KS]]
// CHECK: %[[CLS:.*]] = attn.tile.classify @causal[%[[B]], %[[H]]] box(%[[QLO]], %[[QHI]], %[[KLO]], %[[KHI]])
// CHECK: %[[PARTIAL:.*]] = arith.cmpi eq, %[[CLS]], %c1_i8
// CHECK: attn.tile.count %{{.*}} class(%[[CLS]])
// CHECK: %[[K:.*]] = attn.tile.load %{{.*}}[%[[B]], %[[HKV]]] span(%[[KS]]) {{.*}}-> !attn.tile<16x64xbf16, k>
// CHECK: %[[V:.*]] = attn.tile.load %{{.*}}[%[[B]], %[[HKV]]] span(%[[KS]]) {{.*}}-> !attn.tile<16x64xbf16, v>
// CHECK: %[[S:.*]] = attn.tile.qk %[[Q]], %[[K]] {scale = 1.250000e-01 : f32}
// CHECK: %[[S2:.*]] = attn.tile.apply @causal(%[[S]]) [%[[B]], %[[H]]] rows(%[[QS]]) cols(%[[KS]]) status(%{{.*}}) mask_if(%[[PARTIAL]])
// CHECK: %[[NM:.*]], %[[NS:.*]], %[[P:.*]], %[[AL:.*]] = attn.tile.softmax %[[S2]], %[[MX]], %[[SM]]
// CHECK: %[[NA:.*]] = attn.tile.pv %[[P]], %[[V]], %[[A]], %[[AL]]
// CHECK: scf.yield %[[NA]], %[[NM]], %[[NS]]
// CHECK: attn.tile.store %{{.*}}#0, %{{.*}}#1, %{{.*}}#2 to %{{.*}}[%[[B]], %[[H]]] span(%[[QS]]) lse(%{{.*}} : memref<?x?x?xf32>)
// CHECK-NOT: attn.attention
// Without a blocks region nothing is classified: every tile is PARTIAL.
// NOBLOCKS-LABEL: func.func @causal_kernel
// NOBLOCKS-NOT: attn.tile.classify
// NOBLOCKS: attn.tile.load {{.*}}-> !attn.tile<32x64xbf16, q>
// NOBLOCKS: attn.tile.count %{{.*}} class(%c1_i8)
// NOBLOCKS: attn.tile.qk {{.*}}-> !attn.tile<32x8xf32, s>
// NOBLOCKS: attn.tile.apply @causal(%{{.*}}) [%{{.*}}, %{{.*}}] rows(%{{.*}}) cols(%{{.*}}) status(%{{.*}} : memref<1xi32>) :
func.func @causal_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>,
                  %st: memref<1xi32>, %stats: memref<3xi64>, %begin: index, %end: index) {
  attn.attention @causal ins(%q, %k, %k : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) lse(%lse : memref<?x?x?xf32>) status(%st : memref<1xi32>) stats(%stats : memref<3xi64>) work(%begin, %end) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A 2-D neighborhood on a ? x 24 grid: key tiles are 4 x 4 patches, walked
// by one loop per grid dim (ceil(ceil(Skv / 24) / 4) bands, 6 patches a
// band), the span taking both patch coordinates.
attn.variant @grid buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %w = arith.constant 24 : index
  %r = arith.constant 3 : index
  %qr = arith.floordivsi %q, %w : index
  %kr = arith.floordivsi %kv, %w : index
  %qm = arith.muli %qr, %w : index
  %qc = arith.subi %q, %qm : index
  %km = arith.muli %kr, %w : index
  %kc = arith.subi %kv, %km : index
  %dr = arith.subi %qr, %kr : index
  %dc = arith.subi %qc, %kc : index
  %adr = math.absi %dr : index
  %adc = math.absi %dc : index
  %a = arith.cmpi sle, %adr, %r : index
  %c = arith.cmpi sle, %adc, %r : index
  %m = arith.andi %a, %c : i1
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @grid_kernel
// CHECK: %[[ROWS:.*]] = arith.ceildivui %{{.*}}, %c24
// CHECK: %[[BANDS:.*]] = arith.ceildivui %[[ROWS]], %c4
// CHECK: scf.for %[[P0:.*]] = %{{.*}} to %[[BANDS]]
// CHECK: scf.for %[[P1:.*]] = %{{.*}} to %c6
// CHECK: attn.tile.span %{{.*}}[%[[P0]], %[[P1]]] tiling <q = [4, 4], kv = [4, 4], grid = [24]> side <kv>
func.func @grid_kernel(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @grid ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A gated variant (MoH): the query tile is read from the head's routed
// rows; a tile past them stores zeros (and lse -inf), scaled by the gate.
attn.variant @moh buffers(["router"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @gated
// CHECK: attn.tile.work
// CHECK: %[[COUNT:.*]] = memref.load %{{.*}} : memref<?xi32>
// CHECK: %[[IDLE:.*]] = arith.cmpi uge, %{{.*}}, %{{.*}}
// CHECK: %[[RS:.*]] = attn.tile.routed_span %{{.*}}[%{{.*}}] lanes(%{{.*}}) routed(%{{.*}}) : memref<?xi32> -> <16>
// CHECK: scf.if %[[IDLE]] {
// CHECK: attn.tile.store {{.*}} span(%[[RS]]) gate(%{{.*}} : memref<?x?x?xf32>) {gate_dims = array<i64: 0, 1, 2>}
// CHECK: } else {
// CHECK: scf.for
// CHECK: attn.tile.store {{.*}} span(%[[RS]]) gate(%{{.*}} : memref<?x?x?xf32>) {gate_dims = array<i64: 0, 1, 2>}
func.func @gated(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %router: memref<?x?x?xf32>, %rows: memref<?xi32>, %counts: memref<?xi32>) {
  attn.attention @moh ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%router : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) gate_rows(%rows : memref<?xi32>) gate_counts(%counts : memref<?xi32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A routed variant: the head's route value, read once per work item, goes
// to every op that inlines a region.
attn.variant @duo buffers(["kind"] : [memref<?xi32>]) shapes [["H"]] params {} route_cases [0, 1] route {
^bb0(%b: index, %h: index, %kind: memref<?xi32>):
  %k = attn.load %kind[%h] : memref<?xi32> -> i64
  attn.yield %k : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %kind: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %kind: memref<?xi32>):
  %r = attn.route : i64
  %zero = arith.constant 0 : i64
  %full = arith.cmpi eq, %r, %zero : i64
  %m = arith.cmpi uge, %q, %kv : index
  %x = arith.ori %full, %m : i1
  attn.yield %x : i1
}
// CHECK-LABEL: func.func @routed
// CHECK: %[[R:.*]] = attn.tile.route @duo[%{{.*}}, %{{.*}}] buffers(%{{.*}} : memref<?xi32>)
// CHECK: attn.tile.classify @duo{{.*}} summaries(%{{.*}} : memref<?x?x2xi64>) route(%[[R]])
// CHECK: attn.tile.apply @duo{{.*}} route(%[[R]])
func.func @routed(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %kind: memref<?xi32>, %sum: memref<?x?x2xi64>) {
  attn.attention @duo ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%kind : memref<?xi32>) summaries(%sum : memref<?x?x2xi64>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Serving layouts: kv_lens gives each batch entry its own keys (clamped to
// what the cache holds, max_pages * page size for a paged cache), which the
// key loop, the key spans and the variant's Skv (bound again per work item)
// all use; k and v tiles are read through the page table.
attn.variant @end_aligned buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %skv = attn.shape <Skv> : i64
  %sq = attn.shape <Sq> : i64
  %d = arith.subi %skv, %sq : i64
  %qi = arith.index_cast %q : index to i64
  %end = arith.addi %qi, %d : i64
  %kvi = arith.index_cast %kv : index to i64
  %m = arith.cmpi sge, %end, %kvi : i64
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @paged
// CHECK-SAME: %[[K:[^:]*]]: memref<?x16x?x64xf32>, %[[V:[^:]*]]: memref<?x16x?x64xf32>, %[[LENS:[^:]*]]: memref<?xi32>, %[[PT:[^:]*]]: memref<?x?xi32>
// CHECK: %[[PAGES:.*]] = memref.dim %[[PT]], %c1
// CHECK: %[[CAP:.*]] = arith.muli %[[PAGES]], %c16
// CHECK: attn.tile.bind_shapes {{.*}} Skv = %[[CAP]]
// CHECK: attn.tile.work
// CHECK: ^bb0(%[[B:.*]]: index, %{{.*}}: index, %{{.*}}: index):
// CHECK: %[[LEN:.*]] = memref.load %[[LENS]][%[[B]]]
// CHECK: %[[POS:.*]] = arith.maxsi %[[LEN]], %c0_i32
// CHECK: %[[IDX:.*]] = arith.index_castui %[[POS]]
// CHECK: %[[SKV:.*]] = arith.minui %[[IDX]], %[[CAP]]
// CHECK: attn.tile.bind_shapes {{.*}} Skv = %[[SKV]]
// CHECK: scf.for
// CHECK: %[[KS:.*]] = attn.tile.span %[[SKV]][%{{.*}}] {{.*}} side <kv>
// CHECK: attn.tile.load %[[K]][%[[B]], %{{.*}}] span(%[[KS]]) pages(%[[PT]] : memref<?x?xi32>) {layout = #attn.layout<bshd>}
// CHECK: attn.tile.load %[[V]][%[[B]], %{{.*}}] span(%[[KS]]) pages(%[[PT]] : memref<?x?xi32>) {layout = #attn.layout<bshd>}
// NOBLOCKS-LABEL: func.func @paged
// NOBLOCKS: attn.tile.load {{.*}} pages(
func.func @paged(%q: memref<?x?x?x64xf32>, %k: memref<?x16x?x64xf32>, %v: memref<?x16x?x64xf32>, %lens: memref<?xi32>, %pt: memref<?x?xi32>, %o: memref<?x?x?x64xf32>, %begin: index, %end: index) {
  attn.attention @end_aligned ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x16x?x64xf32>, memref<?x16x?x64xf32>) kv_lens(%lens : memref<?xi32>) page_table(%pt : memref<?x?xi32>) outs(%o : memref<?x?x?x64xf32>) work(%begin, %end) {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}
  return
}

// Packed sequences: each item reads its entry's offsets, its length is the
// difference (clamped to the capacity, the tensors' sequence dim), and q, k,
// v and out are viewed from the entry's first row (the runtime passes them
// with batch stride 0).
// CHECK-LABEL: func.func @packed
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[K:[^:]*]]: memref
// CHECK-SAME: %[[O:[^:]*]]: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[CQ:[^:]*]]: memref<?xi32>, %[[CK:[^:]*]]: memref<?xi32>
// CHECK: attn.tile.work
// CHECK: ^bb0(%[[B:.*]]: index, %{{.*}}: index, %{{.*}}: index):
// CHECK: %[[B1:.*]] = arith.addi %[[B]], %c1
// CHECK: %[[K0:.*]] = memref.load %[[CK]][%[[B]]]
// CHECK: memref.load %[[CK]][%[[B1]]]
// CHECK: arith.index_castui
// CHECK-NEXT: %[[KFIRST:.*]] = arith.index_castui
// CHECK-NEXT: arith.minui
// CHECK-NEXT: %{{.*}}, %{{.*}}, %{{.*}}:4, %[[KSTRIDES:.*]]:4 = memref.extract_strided_metadata %[[K]]
// CHECK-NEXT: arith.muli %[[KFIRST]], %[[KSTRIDES]]#1
// CHECK: %[[KVIEW:.*]] = memref.reinterpret_cast %[[K]] to offset: [%{{.*}}]
// CHECK: memref.load %[[CQ]][%[[B]]]
// CHECK: %[[QVIEW:.*]] = memref.reinterpret_cast %[[Q]]
// CHECK: %[[OVIEW:.*]] = memref.reinterpret_cast %[[O]]
// CHECK: attn.tile.load %[[QVIEW]][%[[B]], %{{.*}}]
// CHECK: attn.tile.load %[[KVIEW]][%[[B]], %{{.*}}]
// CHECK: attn.tile.store {{.*}} to %[[OVIEW]][%[[B]], %{{.*}}]
func.func @packed(%q: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, %k: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, %o: memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, %cq: memref<?xi32>, %ck: memref<?xi32>) {
  attn.attention @end_aligned ins(%q, %k, %k : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>) cu_seqlens_q(%cq : memref<?xi32>) cu_seqlens_kv(%ck : memref<?xi32>) outs(%o : memref<?x?x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>) {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}
  return
}

// q_lens: the grid covers the query capacity; each item binds its entry's
// Sq (and Skv), and an item past its entry's query tiles sees no keys.
// CHECK-LABEL: func.func @ragged
// CHECK-SAME: %[[KL:[^:]*]]: memref<?xi32>, %[[QL:[^:]*]]: memref<?xi32>
// CHECK: %[[SQCAP:.*]] = memref.dim %{{.*}}, %c2
// CHECK: %[[SKVCAP:.*]] = memref.dim %{{.*}}, %c2
// CHECK: %[[TILES:.*]] = attn.num_tiles %[[SQCAP]]
// CHECK: attn.tile.work {{.*}}, %[[TILES]]
// CHECK: ^bb0(%[[B:.*]]: index, %{{.*}}: index, %[[T:.*]]: index):
// CHECK: memref.load %[[KL]][%[[B]]]
// CHECK: %[[SKV:.*]] = arith.minui %{{.*}}, %[[SKVCAP]]
// CHECK: memref.load %[[QL]][%[[B]]]
// CHECK: %[[SQ:.*]] = arith.minui %{{.*}}, %[[SQCAP]]
// CHECK: %[[ITILES:.*]] = attn.num_tiles %[[SQ]]
// CHECK: %[[PAST:.*]] = arith.cmpi uge, %[[T]], %[[ITILES]]
// CHECK: %[[SKV2:.*]] = arith.select %[[PAST]], %{{.*}}, %[[SKV]]
// CHECK: attn.tile.bind_shapes {{.*}} Sq = %[[SQ]], Skv = %[[SKV2]]
// CHECK: attn.tile.span %[[SQ]][%[[T]]] {{.*}} side <q>
// CHECK: scf.for
// CHECK: attn.tile.span %[[SKV2]][%{{.*}}] {{.*}} side <kv>
func.func @ragged(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %kl: memref<?xi32>, %ql: memref<?xi32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @end_aligned ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) kv_lens(%kl : memref<?xi32>) q_lens(%ql : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// entry_order (the runtime's longest-first order of the entries): item b
// computes entry order[b], clamped to B - 1; the entry's lengths, loads and
// stores all take that entry.
// CHECK-LABEL: func.func @ordered
// CHECK-SAME: %[[KL:[^:]*]]: memref<?xi32>, %[[ORD:[^:]*]]: memref<?xi32>
// CHECK: attn.tile.work
// CHECK: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %{{.*}}: index):
// CHECK: %[[E:.*]] = memref.load %[[ORD]][%[[B]]]
// CHECK: %[[EI:.*]] = arith.index_castui %[[E]]
// CHECK: %[[ENTRY:.*]] = arith.minui %[[EI]], %{{.*}}
// CHECK: memref.load %[[KL]][%[[ENTRY]]]
// CHECK: attn.tile.load %{{.*}}[%[[ENTRY]], %[[H]]]
// CHECK: attn.tile.store {{.*}}[%[[ENTRY]], %[[H]]]
attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
func.func @ordered(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %kl: memref<?xi32>, %ord: memref<?xi32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) kv_lens(%kl : memref<?xi32>) entry_order(%ord : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
