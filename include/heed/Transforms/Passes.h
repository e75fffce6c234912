// Target-independent passes on the attn dialect (declared in Passes.td).
#ifndef HEED_TRANSFORMS_PASSES_H
#define HEED_TRANSFORMS_PASSES_H

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace heed {
#define GEN_PASS_DECL
#include "heed/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "heed/Transforms/Passes.h.inc"

/// The module attribute --attn-pack-gqa sets when it packed a loop: the
/// packed tile's rows (i64). The compiler records it (takePackedRows) in
/// KernelInfo::packedRows for CPU kernels (the runtime's item count and
/// order read it) and in GPULaunch::packedRows for GPU kernels (the grid).
inline constexpr llvm::StringLiteral kPackedRowsAttr = "heed.packed_rows";
/// Removes kPackedRowsAttr from `module`: its rows, or -1 where no loop was
/// packed (a mask reading h, routing, or a kernel without the pass).
inline int64_t takePackedRows(mlir::ModuleOp module) {
  auto rows = module->getAttrOfType<mlir::IntegerAttr>(kPackedRowsAttr);
  if (!rows)
    return -1;
  module->removeAttr(kPackedRowsAttr);
  return rows.getInt();
}
/// Set on the module by --attn-split-kv{one-loop} when a work loop runs
/// whole in phase 1 (its fallback): the runtime then never splits the kernel.
inline constexpr llvm::StringLiteral kSplitKVWholeAttr = "heed.split_kv_whole";
/// Set on the module by --attn-persistent-workers when it made a work item
/// persistent: the runtime launches (workers, 1, 1) blocks, as many as the
/// device holds at once and at most one per item (GPULaunch::persistent).
inline constexpr llvm::StringLiteral kPersistentAttr = "heed.persistent";
} // namespace heed

#endif
