// RUN: heed-opt %s --heed-nvgpu-pipeline="chip=sm_80" | FileCheck %s
// RUN: heed-opt %s --heed-nvgpu-pipeline | FileCheck %s --check-prefix=SM90
// RUN: heed-opt %s --heed-nvgpu-pipeline="kernel=simt" | FileCheck %s --check-prefix=SIMT
// RUN: heed-opt %s --heed-nvgpu-pipeline="kv-stages=3" | FileCheck %s --check-prefix=THREE
// RUN: heed-opt %s --heed-nvgpu-pipeline="kv-stages=1" | FileCheck %s --check-prefix=ONE
// RUN: not heed-opt %s --heed-nvgpu-pipeline="kv-stages=5" 2>&1 | FileCheck %s --check-prefix=BAD
// heed-nvgpu-pipeline, by name: attn -> the tensor-core kernel -> NVVM ->
// PTX in a gpu.binary (what heed-compile --emit=ptx prints and ptxas takes).

// CHECK: gpu.binary @heed_gpu [#gpu.object<#nvvm.target<chip = "sm_80", features = "+ptx80">
// CHECK-SAME: .target sm_80
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// CHECK-SAME: cp.async.cg.shared.global
// CHECK-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// CHECK-NOT: attn.
// SM90: #nvvm.target<chip = "sm_90", features = "+ptx80">
// SM90-SAME: .target sm_90
// kv-stages=N: N K/V tiles in flight; the loop waits until at most N - 2
// copy groups are pending (1 stage: copy, then wait for all of it).
// THREE: cp.async.wait_group \091;
// ONE: cp.async.wait_group \090;
// BAD: attn-pipeline-kv: stages must be in [1, 4], not 5
// The SIMT kernel (kernel=simt: the tile IR through
// --convert-attn-tile-to-simt): scalar code, exponents on ex2.approx.
// SIMT: gpu.binary @heed_gpu
// SIMT-SAME: .visible .entry heed_kernel(
// SIMT-SAME: ex2.approx
// SIMT-NOT: mma.sync
// SIMT-NOT: attn.
attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}
