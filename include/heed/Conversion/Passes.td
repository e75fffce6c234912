// Lowerings of the attn dialect to target code.
#ifndef HEED_CONVERSION_PASSES
#define HEED_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def AttnToTile : Pass<"attn-to-tile", "mlir::ModuleOp"> {
  let summary = "attn.attention -> its FlashAttention loop in tile ops";
  let description = [{
    Replaces each `attn.attention` (which must carry a `tiling`, from
    --attn-choose-tiling) with an `attn.tile.work` over its (batch, query
    head, query tile) items whose body loads the query tile, walks every key
    tile (one loop per grid dim for patches) carrying the accumulator and
    the running max and sum, and per key tile loads K and V, computes the
    scores, applies the variant, updates the online softmax and accumulates
    P V; then normalizes and stores. With a `blocks` region (from
    --attn-analyze-mask) each key tile is classified (`attn.tile.classify`)
    and FULL tiles skip the mask; narrowing the loops to the tiles the mask
    can reach is --attn-skip-tiles'. The variants stay (the target patterns
    inline their regions).
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::scf::SCFDialect"];
}

def AttnBackwardToTile : Pass<"attn-backward-to-tile", "mlir::ModuleOp"> {
  let summary = "attn.attention_backward -> its KV-major FlashAttention-2 loop in tile ops";
  let description = [{
    Replaces each `attn.attention_backward` with an `attn.tile.work` over its
    (batch, kv head, key tile) items (docs/backward.md): load K (and V as
    keys, K as values), then for every query head of the GQA group and every
    query tile the classifier does not prove EMPTY: recompute S, P from the
    lse (`attn.tile.probs`, the mask only on PARTIAL tiles), dV += P^T dO
    (`attn.tile.grad_kv`), dP = dO V^T (`attn.tile.qk`), dS
    (`attn.tile.grad_scores` with the derivative variant `@<variant>_grad`,
    which also accumulates the buffers' gradients), dK += dS^T Q, and the
    tile's dQ = dS K (`attn.tile.pv`) added into dq (`attn.tile.write_rows
    accumulate`); finally dK and dV are written. Needs the derivative
    variant (--attn-differentiate); tiles flat by `block-q` x `block-kv`
    unless the op has a `tiling`.

    `kernel=dq` and `kernel=dkdv` split that loop in two kernels for GPUs,
    whose threads cannot add into shared dq rows without atomics
    (docs/backward.md, "GPU kernels"): `dq`, one item per (batch, query
    head, query tile) looping over key tiles (dQ = sum dS K, written once;
    it also adds the buffers' gradients: its registers hold dQ only);
    `dkdv`, one item per (batch, kv head, key tile) looping over the
    group's query tiles with key-major tiles (S^T = K Q^T, attn.tile.probs
    and grad_scores `transposed`, dV += P^T dO and dK += dS^T Q as
    attn.tile.pv; its grad_scores `no_buffer_grads`). Both recompute
    S and dP; in each the loop's tiles are loaded as k and v tiles, for
    --attn-pipeline-kv to stage.
  }];
  let options = [
    Option<"blockQ", "block-q", "int64_t", "0",
           "query rows per tile (0: heed::kBackwardQueryRows, 16)">,
    Option<"blockKV", "block-kv", "int64_t", "0",
           "keys per tile (0: heed::kBackwardKeys, 64)">,
    Option<"kernel", "kernel", "std::string", "\"fused\"",
           "fused (one KV-major kernel, the CPU's), dq or dkdv (the GPUs' two)">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::scf::SCFDialect"];
}

def ConvertAttnTileToCPU : Pass<"convert-attn-tile-to-cpu", "mlir::ModuleOp"> {
  let summary = "Tile ops -> scf/vector/memref code for the CPU";
  let description = [{
    Lowers the tile ops of --attn-to-tile (and the schedule passes after it)
    by dialect conversion: the work items become a loop over [begin, end),
    tiles become stack buffers and vectors with the query rows in vector
    lanes (one lane per row: a row's softmax statistics stay in its lane),
    the variant's regions are inlined vectorized over the rows with
    bounds-checked gathers for buffer reads, the online softmax runs in base
    2 with a polynomial exp2, and the classifier, the key-range searches,
    route values, statistics and tile counts use the patterns every target
    shares (lib/Conversion/TileCommon). Variants no op refers to any more
    are erased.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::vector::VectorDialect",
    "mlir::x86vector::X86VectorDialect"];
  let options = [
    Option<"bf16Dot", "bf16-dot", "bool", /*default=*/"false",
           "the target has AVX-512 BF16: a packed decode tile's products read whole bf16 "
           "K/V tiles in place and run on vdpbf16ps (x86vector.avx512.dot)">,
  ];
}

def ConvertAttnTileToNVGPU : Pass<"convert-attn-tile-to-nvgpu", "mlir::ModuleOp"> {
  let summary = "Tile ops -> a FlashAttention-2 kernel on NVIDIA tensor cores (mma.sync)";
  let description = [{
    Each function holding an `attn.tile.work` becomes a `gpu.func` kernel of
    `gpu.module @heed_gpu` (one work item per block: grid (query tiles, Hq,
    B)), and its tile ops become the MatrixCoreTarget of mma.sync m16n8k16
    (lib/Conversion/TileToGPU holds the target-neutral patterns): 16 query
    rows per warp, Q in registers as A fragments (ldmatrix), K/V tiles in
    the slots of dynamic shared memory that `attn.tile.copy_kv` fills by
    cp.async (so the key loop must have gone through --attn-pipeline-kv),
    S = Q K^T and O += P V on mma.sync (f16 via nvgpu.mma.sync, bf16 via
    nvvm.mma.sync), the variant per fragment element, row statistics over
    quads. The kernel's `attn.launch` records the block shape and the
    dynamic shared memory. Head dims multiples of 16 up to 256.
  }];
  let options = [
    Option<"wideStores", "wide-stores", "bool", "true",
           "f16/bf16 O in 16-byte stores (a quad transpose by shuffles) where its rows are "
           "16-byte aligned at run time; false: element stores only">
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect",
    "mlir::nvgpu::NVGPUDialect", "mlir::NVVM::NVVMDialect", "mlir::LLVM::LLVMDialect",
    "mlir::vector::VectorDialect"];
}

def ConvertAttnTileToAMDGPU : Pass<"convert-attn-tile-to-amdgpu", "mlir::ModuleOp"> {
  let summary = "Tile ops -> a FlashAttention-2 kernel on AMD matrix cores (MFMA)";
  let description = [{
    Each function holding an `attn.tile.work` becomes a `gpu.func` kernel of
    `gpu.module @heed_gpu` (one work item per block: grid (query tiles, Hq,
    B)), and its tile ops become the MatrixCoreTarget of MFMA (wave64, f16 or
    bf16 in, f32 accumulate; amdgpu.mfma 32x32x8 or 16x16x16;
    lib/Conversion/TileToGPU holds the target-neutral patterns): a wave of
    64 lanes owns `mfma` query rows (so the query tile must be a multiple of
    `mfma` rows: 4 x `mfma` on heed-amdgpu-pipeline); the kernel computes
    S^T = K Q^T so that each lane owns one query row (row statistics
    in-lane plus one or two shuffles) and the S^T accumulators are directly
    the B operand of O^T += V^T P^T. K tiles are staged in LDS, V tiles
    transposed (workgroup attributions, one slot per staging slot of
    `attn.tile.copy_kv`, rows padded by 4 elements) by synchronous copies,
    so the key loop must have gone through --attn-pipeline-kv (stages=1 on
    heed-amdgpu-pipeline); Q's B operands are loaded from global memory once.
    Head dims: multiples of 16 (v: of `mfma`) up to 256, q/k and v apart
    (MLA's 192/128); the backward's kernels (attn.tile.probs) stage the slot
    parts each product reads (row by row for qk, transposed for pv) and need
    q/k head dims that are multiples of `mfma` too (dQ and dK are
    accumulators). The slots must fit `lds-bytes`.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect",
    "mlir::amdgpu::AMDGPUDialect", "mlir::vector::VectorDialect", "mlir::ROCDL::ROCDLDialect"];
  let options = [
    Option<"mfma", "mfma", "int64_t", "32",
           "MFMA shape: 32 (32x32x8) or 16 (16x16x16)">,
    Option<"ldsBytes", "lds-bytes", "int64_t", "65536",
           "LDS a workgroup may take (gfx90a, gfx942: 64 KiB; gfx950: 160 KiB)">,
  ];
}

def ConvertAttnTileToSIMT : Pass<"convert-attn-tile-to-simt", "mlir::ModuleOp"> {
  let summary = "Tile ops -> the portable SIMT GPU kernel (the GPU baseline)";
  let description = [{
    Each function holding an `attn.tile.work` becomes a `gpu.func` kernel of
    `gpu.module @heed_gpu` with the same arguments: one work item per block
    (grid (query tiles, Hq, B)), one thread per row of the query tile (the
    block has as many threads as the tile has rows, recorded in the kernel's
    `attn.launch`; a thread past Sq leaves). Each thread keeps its query row
    and its accumulator in private memory and walks the key tiles with an
    online softmax in f32: the dot products and P V read the keys' rows from
    global memory (no shared memory, no staging: run no --attn-pipeline-kv),
    the variant's score, mask and route regions are inlined as scalar code,
    buffer reads bounds-checked (0 and `status` set when out of range), P V
    is skipped where every weight is 0. Fully masked rows give zeros and lse
    -inf. Any dtype (f32, f16, bf16) and head dim; NVVM and ROCDL both lower
    it. Gated variants and patch tiles are rejected.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect"];
}

def ConvertAttnTileToHopper : Pass<"convert-attn-tile-to-hopper", "mlir::ModuleOp"> {
  let summary = "Tile ops -> a Hopper (sm_90a) kernel: wgmma, TMA, mbarriers";
  let description = [{
    Like --convert-attn-tile-to-nvgpu (kernels outlined into `gpu.module
    @heed_gpu`, the target-neutral patterns of lib/Conversion/TileToGPU), with
    the MatrixCoreTarget of Hopper's warpgroup instructions: one warpgroup per
    64 query rows; Q, K and V tiles by TMA (cp.async.bulk.tensor) into
    128B-swizzled dynamic shared memory, completing on mbarriers (Q once; one
    barrier per `attn.tile.copy_kv` slot); S = Q K^T as SS wgmma
    (nvvm.wgmma.mma_async with separate commit/wait), O += P V as RS wgmma
    (P from the S accumulators in registers; inline PTX). The tensor maps are
    three `!llvm.ptr` parameters appended to the kernel (Q, K, V; the kernel's
    `heed.tensor_maps` lists the parameter each describes), built by the
    runtime; --heed-tensor-map-params makes them byval grid constants after
    convert-gpu-to-nvvm. f16/bf16, head dims multiples of 64 up to 256, key
    tiles of a multiple of 16 keys. Needs sm_90a.
  }];
  let options = [
    Option<"wideStores", "wide-stores", "bool", "true",
           "f16/bf16 O in 16-byte stores (a quad transpose by shuffles) where its rows are "
           "16-byte aligned at run time; false: element stores only">
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect", "mlir::gpu::GPUDialect",
    "mlir::NVVM::NVVMDialect", "mlir::LLVM::LLVMDialect", "mlir::vector::VectorDialect"];
}

def HeedTensorMapParams : Pass<"heed-tensor-map-params", "mlir::ModuleOp"> {
  let summary = "A Hopper kernel's tensor-map parameters as byval nvvm.grid_constant";
  let description = [{
    convert-gpu-to-nvvm drops argument attributes, and `nvvm.grid_constant`
    may only sit on an llvm.func kernel's arguments: so after that lowering,
    the last N parameters of each llvm.func carrying `heed.tensor_maps` (N
    entries) get `llvm.byval = !llvm.array<128 x i8>`, `llvm.align = 64` and
    `nvvm.grid_constant`. The launch then passes each CUtensorMap by value
    and the kernel addresses it in parameter space (what CUDA C++ writes
    `const __grid_constant__ CUtensorMap`).
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::NVVM::NVVMDialect"];
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
