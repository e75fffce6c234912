// heed's pass pipelines per target, and the registration shared by every tool.
#ifndef HEED_PIPELINES_PIPELINES_H
#define HEED_PIPELINES_PIPELINES_H

#include "heed/Conversion/HopperRegisters.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace heed {

/// Registers every dialect heed's IR may contain, with the interfaces the
/// lowering to LLVM needs.
void registerAllDialects(mlir::DialectRegistry &registry);

/// Registers heed's passes and pipelines plus the upstream passes they use.
void registerAllPasses();

struct CPUPipelineOptions {
  /// Query rows per tile; 0: by schedule (--attn-choose-tiling: 32-row flat
  /// tiles, 16-lane patches; the backward: 16 rows).
  int64_t blockQ = 0;
  int64_t blockKV = 16;
  bool analyzeMask = true; ///< run --attn-analyze-mask (skip EMPTY blocks)
  bool patchTiling = true; ///< let the analysis tile token grids by patches
  /// Rows of a packed GQA decode tile (--attn-pack-gqa), at most blockQ.
  int64_t packedRows = 16;
  /// The backward's loop: fused (one KV-major kernel), dq or dkdv (the
  /// GPUs' two, on the CPU: attn-backward-to-tile's `kernel`).
  std::string backwardKernel = "fused";
  /// The target has AVX-512 BF16 (convert-attn-tile-to-cpu's bf16-dot).
  bool bf16Dot = false;
  /// Split-KV in the GPU kernels' one-loop form (KernelConfig::splitOneLoop).
  bool splitOneLoop = false;

  /// Whether choose-tiling may tile token grids by patches (it needs the
  /// mask analysis).
  bool patches() const { return analyzeMask && patchTiling; }
  /// The rows --attn-pack-gqa gives its packed tile: packedRows, or blockQ
  /// where fewer (by schedule, flat tiles have 32 rows, more than 16).
  int64_t packedTileRows() const {
    return blockQ ? std::min(blockQ, packedRows) : packedRows;
  }
};

/// Adds --attn-choose-tiling with these options (0: chosen by the pass).
void addChooseTiling(mlir::OpPassManager &pm, int64_t blockQ, int64_t blockKV, bool patches);

/// attn (variant + attention ops) -> the tile IR after the CPU's schedule
/// passes: simplify, choose-tiling, analyze-mask, attn-to-tile, skip-tiles,
/// specialize-routes. Printable stage `--emit=tile`.
void buildCPUTilePipeline(mlir::OpPassManager &pm, const CPUPipelineOptions &options);

/// The tile IR -> scf/vector/memref code (convert-attn-tile-to-cpu,
/// canonicalize, CSE).
void buildTileToCPUPipeline(mlir::OpPassManager &pm, bool bf16Dot = false);

/// The two above: attn -> tiled scf/vector code. Printable stage
/// `--emit=tiled`.
void buildCPUTilingPipeline(mlir::OpPassManager &pm, const CPUPipelineOptions &options);

/// attn.attention_backward -> tiled scf/vector code: simplify,
/// analyze-mask, attn-differentiate, attn-backward-to-tile (flat tiles),
/// then the tile-to-CPU lowering (docs/backward.md).
void buildCPUBackwardTilingPipeline(mlir::OpPassManager &pm, const CPUPipelineOptions &options);

/// tiled scf/vector/memref code -> LLVM dialect. Printable stage `--emit=llvm`.
void buildCPUToLLVMPipeline(mlir::OpPassManager &pm);

/// Options of the GPU pipelines. The dtype and head dims come from the IR.

struct GPUPipelineOptions {
  std::string chip;         ///< "sm_90", "gfx942", ...
  bool matrixCores = true;  ///< the tensor-core / MFMA kernel, else the SIMT one
  bool wgmma = false;       ///< NVIDIA matrix cores: the Hopper kernel (sm_90a; wgmma, TMA)
  bool analyzeMask = true;  ///< matrix cores: skip the KV tiles the mask empties
  /// NVIDIA mma.sync: 2-D/3-D token grids tiled by patches (docs/passes.md,
  /// "Patch tiling"); the wgmma, AMD and SIMT kernels take flat tiles
  bool patchTiling = true;
  /// The GPU backward's tiles (query rows, keys) where its mma.sync kernels
  /// may take patches of a token grid (with patchTiling); 0: the op's flat
  /// tiles as given
  int64_t backwardRows = 0, backwardKeys = 0;
  int64_t keysPerTile = 0;  ///< NVIDIA: keys per KV tile (0: by head dim)
  int64_t warps = 4;        ///< NVIDIA: warps per block, 16 query rows each
  int64_t kvStages = 2;     ///< NVIDIA: K/V tiles in flight (attn-pipeline-kv stages, 1..4)
  /// wgmma: a producer warpgroup stages K/V (attn-warp-specialize) for the
  /// warps / 4 consumer warpgroups, instead of attn-pipeline-kv
  bool warpSpecialize = true;
  /// wgmma, warp-specialized: the producer's registers per thread (the
  /// consumers get what is left of the block's 65536, at most 240)
  int64_t producerRegisters = kHopperProducerRegisters;
  /// wgmma, warp-specialized, several consumer warpgroups: they take turns at
  /// the matrix units (ping-pong)
  bool pingpong = true;
  /// wgmma, warp-specialized: each tile's softmax beside the previous tile's
  /// P V (attn-overlap-softmax: FlashAttention-3's intra-warpgroup overlap)
  bool overlapSoftmax = true;
  /// wgmma, warp-specialized: persistent workers walking the items longest
  /// first (attn-persistent-workers), as many as the device holds at once
  bool persistent = true;
  /// NVIDIA matrix cores: f16/bf16 O in 16-byte stores where aligned
  /// (convert-attn-tile-to-nvgpu/hopper's `wide-stores`)
  bool wideStores = true;
  int64_t mfma = 32;        ///< AMD: the MFMA shape, 32 or 16
  int64_t simtRows = 128;   ///< SIMT: query rows (threads) per block
};

/// attn -> a gpu.func kernel in `gpu.module @heed_gpu` for NVIDIA
/// (the tile schedule -- choose-tiling, attn-to-tile, skip-tiles,
/// pipeline-kv{stages=kvStages} (wgmma: warp-specialize), specialize-full-tiles -- then
/// --convert-attn-tile-to-nvgpu; or the SIMT schedule and --convert-attn-tile-to-simt), its launch shape
/// in `attn.launch`. Printable stage `--emit=gpu`.
void buildNVGPUKernelPipeline(mlir::OpPassManager &pm, const GPUPipelineOptions &options);


/// attn.attention_backward -> one of the GPU backward's tensor-core kernels
/// (`kernel` "dq" or "dkdv"; docs/backward.md, "GPU kernels"):
/// attn-simplify, the mask analysis where asked, attn-differentiate,
/// attn-backward-to-tile{kernel} with the op's tiles, attn-pipeline-kv
/// staging the loop's tiles, --convert-attn-tile-to-nvgpu.
void buildNVGPUBackwardKernelPipeline(mlir::OpPassManager &pm, const GPUPipelineOptions &options,
                                      const std::string &kernel);

/// The same for AMD: attn-pipeline-kv with one synchronous slot, then
/// --convert-attn-tile-to-amdgpu{mfma} (docs/backward.md, "On AMD").
void buildAMDGPUBackwardKernelPipeline(mlir::OpPassManager &pm, const GPUPipelineOptions &options,
                                       const std::string &kernel);

/// gpu-dialect kernels -> PTX for `chip` in a gpu.binary (MLIR's
/// gpu-lower-to-nvvm-pipeline: NVVM, LLVM's NVPTX backend; PTX ISA 8.0 so
/// that sm_90 can be targeted). ptxas then makes the cubin (heed::compileCUDA).
/// With `tensorMaps` (the wgmma kernel), the same passes with
/// --heed-tensor-map-params after convert-gpu-to-nvvm.
void buildNVVMBinaryPipeline(mlir::OpPassManager &pm, const std::string &chip,
                             bool tensorMaps = false);

/// attn -> a gpu.func kernel for AMD: the tile schedule (choose-tiling with
/// 4 waves of `mfma` rows, pipeline-kv with one synchronous slot, FULL-tile
/// specialization) and --convert-attn-tile-to-amdgpu, or the SIMT
/// schedule and --convert-attn-tile-to-simt.
void buildAMDGPUKernelPipeline(mlir::OpPassManager &pm, const GPUPipelineOptions &options);

/// gpu-dialect kernels (--convert-attn-tile-to-amdgpu or -simt) ->
/// AMDGCN assembly in a gpu.binary, for `chip` (gfx90a, gfx942, ...):
/// scf -> cf, rocdl-attach-target, math-expand-ops{ops=tanh}, convert-gpu-to-rocdl (amdgpu.mfma ->
/// rocdl intrinsics; math through LLVM intrinsics, so no ROCm device
/// library is linked), gpu-module-to-binary{format=isa} (LLVM's AMDGPU
/// backend). LLVM 22 has no one-shot ROCm pipeline, so heed assembles it.
/// The code object (HSACO) is then assembled and linked by lld (see
/// heed::compileAMDGPU).
void buildGPUToROCDLPipeline(mlir::OpPassManager &pm, const std::string &chip);

} // namespace heed

#endif
