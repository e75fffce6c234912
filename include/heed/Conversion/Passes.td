// Lowerings of the attn dialect to target code.
#ifndef HEED_CONVERSION_PASSES
#define HEED_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def AttnLowerToCPU : Pass<"attn-lower-to-cpu", "mlir::ModuleOp"> {
  let summary = "Tile attn.attention into a KV-block loop with online softmax on vectors";
  let description = [{
    Replaces each `attn.attention` with loops over work items (batch, head,
    block of `block-q` query rows) and, inside, over KV blocks of `block-kv`
    keys. Vector lanes are query rows: the scores of one key for all rows of
    the item form a `vector<block-q x f32>`, so the softmax statistics of a
    row stay in its lane and no horizontal reduction is needed. The variant's
    score and mask regions are inlined at that tile level, vectorized over the
    rows; the running max, running sum and rescaled accumulator implement the
    online softmax (exponentials in base 2, log2(e) folded into the scores).
    Rows whose keys are all masked produce zeros and lse = -inf. Out-of-range
    buffer reads produce zero and record the buffer number in `status`.
    A variant with `patch_tiling` (from --attn-analyze-mask) is tiled by
    patches of its token grid: rows are gathered and scattered through the
    patch permutation and KV patches are walked by nested loops. Functions
    marked `attn.tile_count = {side = "q"|"kv", variant = @v}` get bodies
    that count the tiles of a sequence length under the tiling used.
    The referenced variants are erased once no attention op uses them.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect",
    "mlir::vector::VectorDialect"];
  let options = [
    Option<"blockQ", "block-q", "int64_t", "16",
           "query rows per work item: the vector width (a power of two)">,
    Option<"blockKV", "block-kv", "int64_t", "16",
           "keys per KV block">,
  ];
}

def AttnLowerToGPU : Pass<"attn-lower-to-gpu", "mlir::ModuleOp"> {
  let summary = "attn.attention as a portable SIMT GPU kernel (the GPU baseline)";
  let description = [{
    Each function holding one `attn.attention` becomes a `gpu.func` kernel
    with the same arguments in `gpu.module @heed_gpu`: one thread per query
    row (grid (ceil(Sq / block-rows), Hq, B), `block-rows` threads per
    block), the keys walked with an online softmax in f32, the variant's
    score, mask and route regions inlined as scalar code, buffer reads
    bounds-checked (0 and `status` set when out of range). Fully masked
    rows give zeros and lse -inf. No tensor cores, no shared memory, no block
    skipping: it is the reference the tensor-core lowering is checked
    against, and lowers through both NVVM and ROCDL. Gated variants are
    rejected.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect"];
  let options = [
    Option<"blockRows", "block-rows", "int64_t", "128",
           "threads (query rows) per block, recorded on the kernel as attn.block_rows">,
  ];
}

def AttnLowerToNVGPU : Pass<"attn-lower-to-nvgpu", "mlir::ModuleOp"> {
  let summary = "attn.attention as a FlashAttention-2 kernel on NVIDIA tensor cores (mma.sync)";
  let description = [{
    Like --attn-lower-to-gpu, but each block of 128 threads (4 warps) owns 64
    query rows: Q in registers as mma.sync A fragments (nvgpu.ldmatrix from
    shared memory), K/V tiles of 64 keys staged in padded shared memory,
    S = Q K^T and O += P V on mma.sync m16n8k16 (f16 or bf16 in, f32
    accumulate; V through ldmatrix.trans; f16 via nvgpu.mma.sync, bf16 via
    nvvm.mma.sync), the online softmax on the accumulator fragments with
    quad shuffles, the variant's score and mask per fragment element, P
    converted in registers and fed to the PV product, and only the KV tiles
    the mask analysis' classifier cannot prove EMPTY visited. Grid
    (ceil(Sq / 64), Hq, B). K/V tiles are copied by cp.async into two stages
    of dynamic shared memory (the next tile's copies overlap this tile's
    math); EMPTY tiles inside the range are skipped and FULL ones run without
    the mask. Head dims multiples of 16 up to 128. The tile loop is shared
    with --attn-lower-to-amdgpu.
  }];
  let options = [
    Option<"keysPerTile", "keys-per-tile", "int64_t", "0",
           "keys per KV tile: 32 or 64; 0 chooses by head dim (64 up to 64, else 32)">,
    Option<"warps", "warps", "int64_t", "4",
           "warps per block (1, 2, 4 or 8), 16 query rows each">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect",
    "mlir::nvgpu::NVGPUDialect", "mlir::NVVM::NVVMDialect", "mlir::LLVM::LLVMDialect",
    "mlir::vector::VectorDialect"];
}

def AttnLowerToAMDGPU : Pass<"attn-lower-to-amdgpu", "mlir::ModuleOp"> {
  let summary = "attn.attention as a FlashAttention-2 kernel on AMD matrix cores (MFMA)";
  let description = [{
    The tile loop of --attn-lower-to-nvgpu on MFMA (wave64, f16 or bf16 in,
    f32 accumulate; amdgpu.mfma 32x32x8 or 16x16x16): a block of 4 waves owns
    4 x `mfma` query rows; the kernel computes S^T = K Q^T so that each lane
    owns one query row (row statistics in-lane plus one or two shuffles) and
    the S^T accumulators are directly the B operand of O^T += V^T P^T; K tiles
    of 64 keys are staged in LDS, V tiles transposed, Q's operands are loaded
    from global memory once. Grid (ceil(Sq / (4 mfma)), Hq, B), 256 threads.
    Head dims: multiples of 16 (v: of `mfma`) up to 128.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect",
    "mlir::amdgpu::AMDGPUDialect", "mlir::vector::VectorDialect"];
  let options = [
    Option<"mfma", "mfma", "int64_t", "32",
           "MFMA shape: 32 (32x32x8) or 16 (16x16x16)">,
  ];
}

def HeedExternDynamicShared : Pass<"heed-extern-dynamic-shared", "mlir::ModuleOp"> {
  let summary = "Declare a GPU kernel's dynamic shared memory as an external zero-length array";
  let description = [{
    The upstream lowering of `gpu.dynamic_shared_memory` (convert-gpu-to-nvvm)
    addresses the kernel's dynamic shared memory through an *internal*
    zero-length `llvm.mlir.global` in the shared address space, which the
    NVPTX backend prints as a 1-byte `.shared .align 16 .b8 name;`: ptxas then
    reports "1 bytes smem", tens of kilobytes of tiles are addressed past a
    1-byte object (undefined behaviour for LLVM's optimizer), and a static
    shared variable could be placed over them. This pass makes every such
    zero-length global of each `gpu.module` an external declaration
    (`external addrspace(3) global [0 x i8], align 16`), which the NVPTX
    backend prints as `.extern .shared .align 16 .b8 name[];` (what CUDA C++
    writes `extern __shared__ char name[];`).

    It runs either after convert-gpu-to-nvvm (it then rewrites the global the
    lowering made) or before it: a `gpu.module` that still uses
    `gpu.dynamic_shared_memory` and has no suitable global gets the external
    declaration, which the lowering reuses (it takes an existing zero-length
    global of the shared address space and the right alignment). Globals of
    other address spaces, and shared arrays with a size, are left alone.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect"];
  let options = [
    Option<"addressSpace", "address-space", "unsigned", "3",
           "the shared (workgroup) address space: 3 for NVVM">,
    Option<"alignment", "alignment", "unsigned", "16",
           "alignment in bytes of a declaration the pass adds (convert-gpu-to-nvvm "
           "reuses a global of its own alignment, 16)">,
  ];
}

#endif // HEED_CONVERSION_PASSES
