// heed's pass pipelines per target, and the registration shared by every tool.
#ifndef HEED_PIPELINES_PIPELINES_H
#define HEED_PIPELINES_PIPELINES_H

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"

#include <cstdint>
#include <string>

namespace heed {

/// Registers every dialect heed's IR may contain, with the interfaces the
/// lowering to LLVM needs.
void registerAllDialects(mlir::DialectRegistry &registry);

/// Registers heed's passes and pipelines plus the upstream passes they use.
void registerAllPasses();

struct CPUPipelineOptions {
  int64_t blockQ = 16;
  int64_t blockKV = 16;
  bool analyzeMask = true; ///< run --attn-analyze-mask (skip EMPTY blocks)
  bool patchTiling = true; ///< let the analysis tile token grids by patches
};

/// attn (variant + attention ops) -> tiled scf/vector code. Printable stage
/// `--emit=tiled`.
void buildCPUTilingPipeline(mlir::OpPassManager &pm, const CPUPipelineOptions &options);

/// tiled scf/vector/memref code -> LLVM dialect. Printable stage `--emit=llvm`.
void buildCPUToLLVMPipeline(mlir::OpPassManager &pm);

/// gpu-dialect kernels (--attn-lower-to-gpu, --attn-lower-to-amdgpu) ->
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
