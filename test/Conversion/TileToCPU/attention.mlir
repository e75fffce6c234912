// RUN: heed-opt %s --attn-choose-tiling="block-q=16" --attn-to-tile --attn-skip-tiles --attn-specialize-routes --convert-attn-tile-to-cpu --canonicalize --cse --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=16 block-kv=8" --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-cpu --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=KV8
// RUN: heed-opt %s --attn-choose-tiling="block-q=8 block-kv=4" --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-cpu --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=Q8
// attn.attention through the CPU's tile schedule (--attn-to-tile,
// --attn-skip-tiles, --attn-specialize-routes) and its patterns
// (--convert-attn-tile-to-cpu), end to end.

// The lowering puts query rows in vector lanes: with block-q = 16 the scores
// of one key for the 16 rows of a work item are a vector<16xf32>, the running
// max and sum of each row live in its lane, and `q` inside the inlined
// regions is a vector<16xindex> of row tokens. block-kv only sets the number
// of keys per KV tile (the K/V/score tiles and the unrolled dot products).

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
}

// Causal, GQA (8 query heads over 2 key/value heads), a value head dim (32)
// different from the query/key one (64), lse requested.
// CHECK-NOT: attn.variant
// CHECK-LABEL: func.func @lower_causal(
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x8x?x64xf32>, %[[K:[^:]*]]: memref<?x2x?x64xf32>, %[[V:[^:]*]]: memref<?x2x?x32xf32>, %[[O:[^:]*]]: memref<?x8x?x32xf32>, %[[LSE:[^:]*]]: memref<?x8x?xf32>)
// CHECK-NOT: attn.attention
// Tiles on the stack: Q^T, K, V, scores^T, the accumulator.
// CHECK-DAG: memref.alloca() : memref<64x16xf32>
// CHECK-DAG: memref.alloca() : memref<16x64xf32>
// CHECK-DAG: memref.alloca() : memref<16x16xf32>
// CHECK-DAG: memref.alloca() : memref<16x32xf32>
// Work items: (batch, query head, tile of 16 rows); kv head = h / (Hq / Hkv).
// CHECK: scf.for %[[ITEM:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-DAG: %[[REST:.*]] = arith.divui %[[ITEM]], %{{.*}} : index
// CHECK-DAG: %[[B:.*]] = arith.divui %[[REST]], %{{.*}} : index
// CHECK-DAG: %[[H:.*]] = arith.remui %[[REST]], %{{.*}} : index
// CHECK-DAG: %[[QB:.*]] = arith.remui %[[ITEM]], %{{.*}} : index
// CHECK: %[[HKV:.*]] = arith.divui %[[H]], %{{.*}} : index
// CHECK: %[[ROWS:.*]] = arith.addi %{{.*}}, %{{.*}} : vector<16xindex>
// The KV loop carries the running max and sum of every row (the
// accumulator is updated in place).
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (vector<16xf32>, vector<16xf32>) {
// CHECK: vector.load %[[K]][%[[B]], %[[HKV]], %{{.*}}, %{{.*}}] : memref<?x2x?x64xf32>, vector<64xf32>
// CHECK: vector.load %[[V]][%[[B]], %[[HKV]], %{{.*}}, %{{.*}}] : memref<?x2x?x32xf32>, vector<32xf32>
// Scores by outer products over the head dim, then the scale.
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// The mask inlined on a vector of query rows, positions in i32
// (RegionInlining::narrow); masked scores become -inf.
// CHECK: arith.cmpi sge, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : vector<16xi1>, vector<16xf32>
// The row max, key by key: s > m ? s : m (one vmaxps; a NaN score leaves it).
// CHECK: %[[GT:.*]] = arith.cmpf ogt, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NEXT: arith.select %[[GT]], %{{.*}}, %{{.*}} : vector<16xi1>, vector<16xf32>
// exp2 by range reduction (no libm call).
// CHECK: math.roundeven %{{.*}} : vector<16xf32>
// CHECK: arith.bitcast %{{.*}} : vector<16xi32> to vector<16xf32>
// P.V into the accumulator rows (value head dim 32).
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<32xf32>
// CHECK: scf.yield %{{.*}}, %{{.*}} : vector<16xf32>, vector<16xf32>
// Normalization, lse = max + log2(sum) ln 2, and the stores.
// CHECK: math.log2 %{{.*}} : vector<16xf32>
// CHECK: vector.store %{{.*}}, %[[O]][%[[B]], %[[H]], %{{.*}}, %{{.*}}] : memref<?x8x?x32xf32>, vector<32xf32>
// CHECK: memref.store %{{.*}}, %[[LSE]][%[[B]], %[[H]], %{{.*}}] : memref<?x8x?xf32>
// CHECK-NOT: {{^ *attn\.}}

// block-kv=8: 8-key tiles and 8 partial dot products per head-dim step.
// KV8-NOT: attn.variant
// KV8-LABEL: func.func @lower_causal
// KV8-DAG: memref.alloca() : memref<8x64xf32>
// KV8-DAG: memref.alloca() : memref<8x32xf32>
// KV8-DAG: memref.alloca() : memref<8x16xf32>
// KV8: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// KV8-COUNT-8: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// KV8-NOT: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// KV8: scf.yield

// block-q=8: 8 query rows per item, so vectors of 8 lanes; no horizontal
// reduction anywhere (there is no status operand here).
// Q8-LABEL: func.func @lower_causal
// Q8-NOT: vector.reduction
// Q8-NOT: vector<16x
// Q8: return
func.func @lower_causal(%q: memref<?x8x?x64xf32>, %k: memref<?x2x?x64xf32>, %v: memref<?x2x?x32xf32>,
                        %o: memref<?x8x?x32xf32>, %lse: memref<?x8x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x8x?x64xf32>, memref<?x2x?x64xf32>, memref<?x2x?x32xf32>)
      outs(%o : memref<?x8x?x32xf32>) lse(%lse : memref<?x8x?xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Buffer reads: attn.load becomes a vector.gather over the query-row lanes
// with an in-bounds mask (0 where out of range); a rank-2 buffer is read
// through a collapsed view with a linearized index. Each read that is out of
// range in a live lane stores the buffer's 1-based number into `status`.
attn.variant @buffers buffers(["slopes", "layout"] : [memref<?xf32>, memref<?x?xi8>]) shapes [["H"], ["4", "4"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>, %layout: memref<?x?xi8>):
  %m = attn.load %slopes[%h] : memref<?xf32> -> f32
  %d = arith.subi %q, %kv : index
  %di = arith.index_cast %d : index to i64
  %df = arith.sitofp %di : i64 to f32
  %bias = arith.mulf %m, %df : f32
  %r = arith.subf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>, %layout: memref<?x?xi8>):
  %c64 = arith.constant 64 : index
  %qb = arith.divui %q, %c64 : index
  %kb = arith.divui %kv, %c64 : index
  %l = attn.load %layout[%qb, %kb] : memref<?x?xi8> -> i64
  %z = arith.constant 0 : i64
  %m = arith.cmpi ne, %l, %z : i64
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @lower_buffers(
// CHECK-SAME: %[[SLOPES:[^:]*]]: memref<?xf32>, %[[LAYOUT:[^:]*]]: memref<?x?xi8>, %[[STATUS:[^:]*]]: memref<1xi32>)
// CHECK: %[[FLAT:.*]] = memref.collapse_shape %[[LAYOUT]] {{\[}}[0, 1]] : memref<?x?xi8> into memref<?xi8>
// ALiBi slope, read once per tile before the key loop (it does not depend
// on the key: ScoreColumns::hoistInvariants), and as one scalar read (h is
// the same in every lane): bounds check of h against the buffer size, a
// load, the status word where a real row's read misses.
// CHECK: %[[HIN:.*]] = arith.cmpi ult, %{{.*}}, %{{.*}} : index
// CHECK: scf.if %[[HIN]] -> (f32) {
// CHECK: memref.load %[[SLOPES]][%{{.*}}] : memref<?xf32>
// CHECK: %[[BAD:.*]] = vector.reduction <or>, %{{.*}} : vector<16xi1> into i1
// CHECK: scf.if %[[BAD]] {
// CHECK: memref.store %c1_i32, %[[STATUS]][%{{.*}}] : memref<1xi32>
// The key loop: the score modifier on vectors, q - kv in i32.
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NOT: %[[SLOPES]]
// CHECK: arith.subi %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.sitofp %{{.*}} : vector<16xi32> to vector<16xf32>
// The block-layout mask: kv / 64 in i32, two bounds checks (one unsigned
// compare each), a linear index, an i8 gather (q varies across the lanes)
// sign-extended (to i32: narrowed), and buffer number 2 on error.
// CHECK: arith.divui %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.muli %{{.*}}, %{{.*}} : vector<16xindex>
// CHECK: %[[LIN:.*]] = arith.addi %{{.*}}, %{{.*}} : vector<16xindex>
// CHECK: %[[G:.*]] = vector.gather %[[FLAT]][%{{.*}}] [%[[LIN]]], %{{.*}}, %{{.*}} : memref<?xi8>, vector<16xindex>, vector<16xi1>, vector<16xi8> into vector<16xi8>
// CHECK: vector.reduction <or>
// CHECK: memref.store %c2_i32, %[[STATUS]][%{{.*}}] : memref<1xi32>
// CHECK: arith.extsi %[[G]] : vector<16xi8> to vector<16xi32>
// CHECK: arith.cmpi ne, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK-NOT: {{^ *attn\.}}
// Q8-LABEL: func.func @lower_buffers
// Q8: memref.load {{.*}} : memref<?xf32>
// Q8: vector.reduction <or>, %{{.*}} : vector<8xi1> into i1
// Q8: vector.gather {{.*}} : memref<?xi8>, vector<8xindex>, vector<8xi1>, vector<8xi8> into vector<8xi8>
func.func @lower_buffers(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %slopes: memref<?xf32>,
                         %layout: memref<?x?xi8>, %status: memref<1xi32>) {
  attn.attention @buffers ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      buffers(%slopes, %layout : memref<?xf32>, memref<?x?xi8>) outs(%o : memref<?x?x?x64xf32>)
      status(%status : memref<1xi32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @dense buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// bshd in bf16, GQA (8 query heads over 2): heads are dimension 2, sequence
// dimension 1; elements widen to f32 on load and narrow on store. An
// identity score and an always-true mask are not inlined at all (no
// per-element mask region: only the bounds of the lanes remain).
// CHECK-LABEL: func.func @lower_bshd(
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x?x8x64xbf16>, %[[K:[^:]*]]: memref<?x?x2x64xbf16>, %[[V:[^:]*]]: memref<?x?x2x64xbf16>, %[[O:[^:]*]]: memref<?x?x8x64xbf16>)
// CHECK-DAG: %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG: memref.dim %[[Q]], %[[C1]] : memref<?x?x8x64xbf16>
// CHECK: scf.for %[[ITEM:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-DAG: %[[REST:.*]] = arith.divui %[[ITEM]], %{{.*}} : index
// CHECK-DAG: %[[B:.*]] = arith.divui %[[REST]], %{{.*}} : index
// CHECK-DAG: %[[H:.*]] = arith.remui %[[REST]], %{{.*}} : index
// CHECK: %[[HKV:.*]] = arith.divui %[[H]], %{{.*}} : index
// CHECK: %[[POS:.*]] = vector.extract %{{.*}}[%{{.*}}] : index from vector<16xindex>
// The query tile: rows as vectors, then 16 x 16 transposes into q^T.
// CHECK: %[[QROW:.*]] = vector.load %[[Q]][%[[B]], %[[POS]], %[[H]], %{{.*}}] : memref<?x?x8x64xbf16>, vector<64xbf16>
// CHECK: arith.extf %[[QROW]] : vector<64xbf16> to vector<64xf32>
// CHECK-COUNT-64: vector.shuffle %{{.*}}, %{{.*}} [{{.*}}] : vector<16xf32>, vector<16xf32>
// A prefill's K/V rows are reused by every query tile (from cache): no
// prefetches (decode's streaming loads have them: pipeline.mlir, paged.mlir).
// CHECK-NOT: memref.prefetch
// CHECK: %[[KROW:.*]] = vector.load %[[K]][%[[B]], %{{.*}}, %[[HKV]], %{{.*}}] : memref<?x?x2x64xbf16>, vector<64xbf16>
// CHECK: arith.extf %[[KROW]] : vector<64xbf16> to vector<64xf32>
// CHECK: vector.load %[[V]][%[[B]], %{{.*}}, %[[HKV]], %{{.*}}] : memref<?x?x2x64xbf16>, vector<64xbf16>
// CHECK-NOT: -> (vector<16xi1>)
// CHECK: %[[OUT:.*]] = arith.truncf %{{.*}} : vector<64xf32> to vector<64xbf16>
// CHECK: vector.store %[[OUT]], %[[O]][%[[B]], %{{.*}}, %[[H]], %{{.*}}] : memref<?x?x8x64xbf16>, vector<64xbf16>
// CHECK-NOT: {{^ *attn\.}}
// Q8-LABEL: func.func @lower_bshd
// Q8-DAG: memref.alloca() : memref<64x8xf32>
// Q8-DAG: memref.alloca() : memref<4x64xf32>
// Q8-DAG: memref.alloca() : memref<4x8xf32>
// Q8-DAG: memref.alloca() : memref<8x64xf32>
// Q8: arith.addi %{{.*}}, %{{.*}} : vector<8xindex>
// Q8: iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (memref<8x64xf32>, vector<8xf32>, vector<8xf32>)
// Q8-COUNT-4: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<8xf32>
// Q8: arith.cmpf ogt, %{{.*}}, %{{.*}} : vector<8xf32>
func.func @lower_bshd(%q: memref<?x?x8x64xbf16>, %k: memref<?x?x2x64xbf16>, %v: memref<?x?x2x64xbf16>,
                      %o: memref<?x?x8x64xbf16>) {
  attn.attention @dense ins(%q, %k, %v : memref<?x?x8x64xbf16>, memref<?x?x2x64xbf16>, memref<?x?x2x64xbf16>)
      outs(%o : memref<?x?x8x64xbf16>) {scale = 1.250000e-01 : f32, layout = #attn.layout<bshd>}
  return
}

// -----

// A variant with a `blocks` classifier (as --attn-analyze-mask writes it):
// the KV range of each item is narrowed by two binary searches (scf.while),
// EMPTY blocks are skipped, FULL blocks skip the mask, and `stats` counts
// visited / FULL / PARTIAL blocks. `work` bounds the item loop.
attn.variant @classified buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index):
  %empty = arith.cmpi slt, %qhi, %kvlo : index
  %full = arith.cmpi sge, %qlo, %kvhi : index
  %c0 = arith.constant 0 : i8
  %c1 = arith.constant 1 : i8
  %c2 = arith.constant 2 : i8
  %fp = arith.select %full, %c2, %c1 : i8
  %r = arith.select %empty, %c0, %fp : i8
  attn.yield %r : i8
}

// CHECK-LABEL: func.func @lower_classified(
// CHECK-SAME: %[[STATS:[^:]*]]: memref<3xi64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index)
// CHECK: %[[LAST:.*]] = arith.minui %[[END]], %{{.*}} : index
// CHECK: scf.for %{{.*}} = %[[BEGIN]] to %[[LAST]] step %{{.*}} {
// CHECK: %[[FIRST:.*]]:2 = scf.while
// CHECK: %[[STOP:.*]]:2 = scf.while
// CHECK: scf.for %{{.*}} = %[[FIRST]]#0 to %[[STOP]]#0 step %{{.*}} iter_args(
// CHECK: %[[FP:.*]] = arith.select %{{.*}}, %{{.*}}, %{{.*}} : i8
// CHECK: %[[CLS:.*]] = arith.select %{{.*}}, %{{.*}}, %[[FP]] : i8
// CHECK: %[[NONEMPTY:.*]] = arith.cmpi ne, %[[CLS]], %{{.*}} : i8
// CHECK: scf.if %{{.*}} -> (vector<16xf32>, vector<16xf32>) {
// CHECK: %[[PARTIAL:.*]] = arith.cmpi eq, %[[CLS]], %{{.*}} : i8
// CHECK: memref.load %[[STATS]][%{{.*}}] : memref<3xi64>
// CHECK: memref.store %{{.*}}, %[[STATS]][%{{.*}}] : memref<3xi64>
// CHECK: scf.if %[[PARTIAL]] -> (vector<16xi1>) {
// CHECK: arith.cmpi sge, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: } else {
// CHECK: scf.yield %{{.*}}, %{{.*}} : vector<16xf32>, vector<16xf32>
// CHECK-NOT: {{^ *attn\.}}
// Q8-LABEL: func.func @lower_classified
// Q8: arith.cmpi sge, %{{.*}}, %{{.*}} : vector<8xi32>
func.func @lower_classified(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %stats: memref<3xi64>,
                            %begin: index, %end: index) {
  attn.attention @classified ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) stats(%stats : memref<3xi64>) work(%begin, %end) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Errors. Only elementwise arith/math ops, constants and attn.load can be
// widened to vectors of query rows.
attn.variant @bad_if buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %c = arith.cmpi sge, %q, %kv : index
  // expected-error @+1 {{'scf.if' op in the 'mask' region cannot be lowered to the CPU: only elementwise arith/math ops, constants and attn.load are supported}}
  %r = scf.if %c -> i1 {
    scf.yield %c : i1
  } else {
    scf.yield %c : i1
  }
  attn.yield %r : i1
}
func.func @lower_bad_if(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @bad_if ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

func.func private @bias(f32, index) -> f32
attn.variant @bad_call buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  // expected-error @+1 {{'func.call' op in the 'score' region cannot be lowered to the CPU}}
  %r = func.call @bias(%s, %kv) : (f32, index) -> f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
func.func @lower_bad_call(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @bad_call ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// A buffer read with memref.load instead of attn.load (no bounds check).
attn.variant @bad_load buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  // expected-error @+1 {{'memref.load' op in the 'mask' region cannot be lowered to the CPU}}
  %x = memref.load %doc[%kv] : memref<?xi32>
  %z = arith.constant 0 : i32
  %m = arith.cmpi ne, %x, %z : i32
  attn.yield %m : i1
}
func.func @lower_bad_load(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %doc: memref<?xi32>) {
  attn.attention @bad_load ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      buffers(%doc : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
// The head dimension must be contiguous (rows are loaded as vectors).
func.func @lower_strided_head(%q: memref<?x?x?x64xf32, strided<[?, ?, ?, 2], offset: ?>>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{'attn.tile.load' op needs tensors whose head dimension is contiguous}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32, strided<[?, ?, ?, 2], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 2], offset: ?>>, memref<?x?x?x64xf32, strided<[?, ?, ?, 2], offset: ?>>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

attn.variant @doc buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  %x = attn.load %doc[%q] : memref<?xi32> -> i64
  %y = attn.load %doc[%kv] : memref<?xi32> -> i64
  %m = arith.cmpi eq, %x, %y : i64
  attn.yield %m : i1
}
// Buffers must have the identity layout (they are read through flat views).
func.func @lower_strided_buffer(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %doc: memref<?xi32, strided<[2]>>) {
  // expected-error @+1 {{'attn.tile.apply' op needs contiguous (identity layout) buffers on the CPU}}
  attn.attention @doc ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      buffers(%doc : memref<?xi32, strided<[2]>>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

attn.variant @doc_blocks buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
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
// A classifier that reads buffer summaries needs them as operands.
func.func @lower_missing_summaries(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %doc: memref<?xi32>) {
  // expected-error @+1 {{'attn.attention' op needs the summaries of the variant's rank-1 integer buffers for its block classifier (run --attn-runtime-abi, or run without --attn-analyze-mask)}}
  attn.attention @doc_blocks ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      buffers(%doc : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// A rank-0 buffer is read as a scalar; an i1 buffer reads true as 1
// (zero-extended), not -1.
attn.variant @scalar_and_bits buffers(["bias", "on"] : [memref<f32>, memref<?xi1>]) shapes [[], ["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %bias: memref<f32>, %on: memref<?xi1>):
  %x = attn.load %bias[] : memref<f32> -> f32
  %r = arith.addf %s, %x : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %bias: memref<f32>, %on: memref<?xi1>):
  %x = attn.load %on[%h] : memref<?xi1> -> i64
  %one = arith.constant 1 : i64
  %m = arith.cmpi eq, %x, %one : i64
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @lower_scalar_and_bits
// CHECK: memref.load %{{.*}}[] : memref<f32>
// CHECK: %[[ON:.*]] = scf.if %{{.*}} -> (i1) {
// CHECK: memref.load %{{.*}}[%{{.*}}] : memref<?xi1>
// CHECK: %[[ONS:.*]] = vector.broadcast %[[ON]] : i1 to vector<16xi1>
// CHECK: arith.extui %[[ONS]] : vector<16xi1> to vector<16xi32>
func.func @lower_scalar_and_bits(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %bias: memref<f32>, %on: memref<?xi1>) {
  attn.attention @scalar_and_bits ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      buffers(%bias, %on : memref<f32>, memref<?xi1>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}
