// heed's pass pipelines per target, and the registration shared by every tool.
#ifndef HEED_PIPELINES_PIPELINES_H
#define HEED_PIPELINES_PIPELINES_H

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"

#include <cstdint>

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

} // namespace heed

#endif
