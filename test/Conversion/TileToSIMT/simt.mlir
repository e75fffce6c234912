// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=1 patches=false" --attn-to-tile --convert-attn-tile-to-simt --canonicalize --cse --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=1 patches=false" --attn-to-tile --convert-attn-tile-to-simt --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=ROWS
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=4 patches=false" --attn-to-tile --convert-attn-tile-to-simt --canonicalize --cse --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=KEYS
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=16 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-simt --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=FULL
// RUN: not heed-opt %s --attn-choose-tiling="block-q=64 block-kv=16 patches=false" --attn-to-tile --attn-pipeline-kv --convert-attn-tile-to-simt --split-input-file 2>&1 | FileCheck %s --check-prefix=STAGED
// --convert-attn-tile-to-simt on .mlir input (through the SIMT schedule:
// choose-tiling, attn-to-tile): the SIMT baseline, one thread per query row,
// the variant inlined as scalar code with a bounds-checked buffer read.

attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %x = attn.load %slopes[%h] : memref<?xf32> -> f32
  %r = arith.addf %s, %x : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: gpu.module @heed_gpu
// CHECK: gpu.func @heed_kernel({{.*}}) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 128>}
// The query row and the accumulator in private memory, at the kernel's top.
// CHECK-DAG: memref.alloca() : memref<64xf32, #gpu.address_space<private>>
// CHECK-DAG: memref.alloca() : memref<64xf32, #gpu.address_space<private>>
// A thread past Sq leaves.
// CHECK: %[[BX:.*]] = gpu.block_id x
// CHECK: %[[FIRST:.*]] = arith.muli %[[BX]], %c128
// CHECK: %[[TX:.*]] = gpu.thread_id x
// CHECK: %[[ROW:.*]] = arith.addi %[[FIRST]], %[[TX]]
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[ROW]], %{{.*}}
// CHECK: scf.if %[[IN]] {
// The keys, one at a time: the mask first, the dot product only where the
// key is visible.
// CHECK: scf.for
// CHECK: %[[VIS:.*]] = arith.cmpi uge
// CHECK: %[[S:.*]] = scf.if %[[VIS]] -> (f32) {
// CHECK: scf.for {{.*}} iter_args
// CHECK: math.fma
// CHECK: } else {
// The slope read is bounds-checked: out of range gives 0 and sets status.
// CHECK: memref.dim %{{.*}}, %{{.*}} : memref<?xf32>
// CHECK: scf.if
// CHECK: memref.load %{{.*}} : memref<?xf32>
// CHECK: } else {
// CHECK: memref.store %c1_i32, %{{.*}} : memref<1xi32>
// CHECK: arith.select %[[VIS]], %{{.*}}, %cst
// The online softmax; P V in place, skipped where the weight is 0.
// CHECK: math.exp
// CHECK: %[[P:.*]] = math.exp
// CHECK: %[[NZ:.*]] = arith.cmpf une, %[[P]]
// CHECK: scf.if %[[NZ]] {
// CHECK: scf.for
// CHECK: math.fma %[[P]]
// CHECK: memref.store {{.*}} : memref<64xf32, #gpu.address_space<private>>
// The row normalized (0 where every key is masked) and written.
// CHECK: arith.cmpf ole
// CHECK: arith.divf
// CHECK: memref.store {{.*}} : memref<?x?x?x64xf16>
// CHECK: gpu.return
// CHECK-NOT: func.func @heed_kernel
// CHECK-NOT: attn.variant
// ROWS: attn.launch = #attn.launch<block_rows = 64, threads = 64>
// ROWS: arith.muli %{{.*}}, %c64
// Four keys per tile: one loop over the head dim carries the four dot
// products; keys past Skv read the last key and are masked; the dot products
// run where any of the four is visible.
// KEYS: scf.for %[[T:[a-z0-9]+]] = %c0 to %{{[0-9]+}} step %c1 iter_args
// KEYS: %[[K0:.*]] = arith.muli %[[T]], %c4
// KEYS: %[[K1:.*]] = arith.addi %[[K0]], %c1
// KEYS: %[[LAST:.*]] = arith.subi %{{.*}}, %c1
// KEYS: arith.minui %[[K1]], %[[LAST]]
// KEYS: arith.cmpi ult, %[[K1]]
// KEYS: %[[ANY:.*]] = arith.ori
// KEYS-NEXT: %[[ANY:.*]] = arith.ori
// KEYS-NEXT: %[[ANY:.*]] = arith.ori
// KEYS-NEXT: scf.if %[[ANY]] -> (f32, f32, f32, f32)
// KEYS: scf.for {{.*}} -> (f32, f32, f32, f32)
// KEYS-COUNT-4: math.fma
// KEYS: arith.maximumf
// KEYS: arith.maximumf
// KEYS: arith.maximumf
// KEYS: arith.maximumf
// With the mask analysis: the key range by binary search, EMPTY tiles
// skipped, and the mask evaluated only on PARTIAL tiles (a uniform branch).
// FULL: scf.while
// FULL: scf.for
// FULL: scf.if %{{.*}} -> (i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1)
// FULL-COUNT-16: arith.cmpi uge
// FULL: } else {
// FULL: scf.yield %true{{.*}}, %true
// K/V tiles are read where they are: staged tiles are refused.
// STAGED: error: 'attn.tile.copy_kv' op the SIMT kernel reads K/V from global memory: it takes no staged tiles (do not run --attn-pipeline-kv)
func.func @heed_kernel(%q: memref<?x?x?x64xf16>, %k: memref<?x?x?x64xf16>, %v: memref<?x?x?x64xf16>, %slopes: memref<?xf32>, %o: memref<?x?x?x64xf16>, %status: memref<1xi32>) {
  attn.attention @alibi ins(%q, %k, %v : memref<?x?x?x64xf16>, memref<?x?x?x64xf16>, memref<?x?x?x64xf16>) buffers(%slopes : memref<?xf32>) outs(%o : memref<?x?x?x64xf16>) status(%status : memref<1xi32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// bf16 storage, BSHD, lse, a value head dim of its own: the lse is m + log l
// (-inf where every key is masked).
attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// CHECK-LABEL: gpu.module @heed_gpu
// CHECK-DAG: memref.alloca() : memref<32xf32, #gpu.address_space<private>>
// CHECK-DAG: memref.alloca() : memref<48xf32, #gpu.address_space<private>>
// CHECK: memref.load %{{.*}}[%{{.*}}, %{{.*}}, %block_id_y, %{{.*}}] : memref<?x?x?x32xbf16>
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: %[[LOG:.*]] = math.log
// CHECK: %[[LSE:.*]] = arith.addf %{{.*}}, %[[LOG]]
// CHECK: %[[SEL:.*]] = arith.select %{{.*}}, %cst{{.*}}, %[[LSE]]
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %{{.*}}, %{{.*}}[%block_id_z, %{{.*}}, %block_id_y, %{{.*}}] : memref<?x?x?x48xbf16>
// CHECK: memref.store %[[SEL]], {{.*}} : memref<?x?x?xf32>
func.func @bshd_kernel(%q: memref<?x?x?x32xbf16>, %k: memref<?x?x?x32xbf16>, %v: memref<?x?x?x48xbf16>, %o: memref<?x?x?x48xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x32xbf16>, memref<?x?x?x32xbf16>, memref<?x?x?x48xbf16>) outs(%o : memref<?x?x?x48xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 0.17677669 : f32, layout = #attn.layout<bshd>}
  return
}

// -----

// A gated variant: thread x owns slot first + x of the head's routed-row list
// (its token read there), the stored row is scaled by its gate, and a 0 gate
// gives lse -inf.
// CHECK-LABEL: gpu.func @gated
// CHECK: %[[COUNT:.*]] = memref.load %arg4[%{{.*}}] : memref<?xi32>
// CHECK: %[[COUNTIDX:.*]] = arith.index_cast %[[COUNT]]
// CHECK: %[[IDLE:.*]] = arith.cmpi uge, %{{.*}}, %[[COUNTIDX]] : index
// CHECK: scf.if %[[IDLE]] {
// CHECK: memref.load %arg2[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x?xf32>
// CHECK: } else {
// CHECK: %[[SLOT:.*]] = arith.select
// CHECK: %[[ROW:.*]] = memref.load %arg3[%[[SLOT]]] : memref<?xi32>
// CHECK: %[[TOKEN:.*]] = arith.index_cast %[[ROW]]
// CHECK: memref.load %arg0[%{{.*}}, %{{.*}}, %[[TOKEN]], %{{.*}}]
// CHECK: scf.for
// CHECK: math.exp
// CHECK: %[[GATE:.*]] = memref.load %arg2
// CHECK: arith.mulf %{{.*}}, %[[GATE]] : f32
// CHECK: memref.store %{{.*}}, %arg1
attn.variant @moh buffers(["router"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %router: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %router: memref<?x?x?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
func.func @gated(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %router: memref<?x?x?xf32>, %rows: memref<?xi32>, %counts: memref<?xi32>) {
  attn.attention @moh ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%router : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) gate_rows(%rows : memref<?xi32>) gate_counts(%counts : memref<?xi32>) {scale = 1.250000e-01 : f32}
  return
}
