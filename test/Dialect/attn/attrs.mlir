// RUN: heed-opt %s | heed-opt | FileCheck %s
// The typed attributes the passes exchange round-trip through the printer
// and the parser.

// CHECK-LABEL: func.func @attributes
// CHECK-SAME: flat = #attn.tiling<q = [16], kv = [64]>
// CHECK-SAME: grid = #attn.grid<[64, 128]>
// CHECK-SAME: launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 36864>
// CHECK-SAME: layout = #attn.layout<bshd>
// CHECK-SAME: patches = #attn.tiling<q = [1, 4, 4], kv = [2, 2, 4], grid = [64, 128]>
// CHECK-SAME: residues = #attn.grid<[4, 2], residues = [2]>
// CHECK-SAME: simt = #attn.launch<block_rows = 128, threads = 128>
// CHECK-SAME: sparsity = #attn.sparsity<data_dependent>
func.func @attributes() attributes {
    flat = #attn.tiling<q = [16], kv = [64]>,
    patches = #attn.tiling<q = [1, 4, 4], kv = [2, 2, 4], grid = [64, 128]>,
    grid = #attn.grid<[64, 128]>,
    residues = #attn.grid<[4, 2], residues = [2]>,
    launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 36864>,
    simt = #attn.launch<block_rows = 128, threads = 128, shared_bytes = 0>,
    layout = #attn.layout<bshd>,
    sparsity = #attn.sparsity<data_dependent>} {
  return
}

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %c = arith.cmpi uge, %q, %kv : index
  attn.yield %c : i1
}

// CHECK-LABEL: func.func @counts
// CHECK: attn.num_tiles %{{.*}} of @v side <q> : index
// CHECK: attn.num_tiles %{{.*}} of @v side <kv> {tiling = #attn.tiling<q = [16], kv = [16]>} : index
func.func @counts(%n: index) -> (index, index) {
  %a = attn.num_tiles %n of @v side <q> : index
  %b = attn.num_tiles %n of @v side <kv> {tiling = #attn.tiling<q = [16], kv = [16]>} : index
  return %a, %b : index, index
}
