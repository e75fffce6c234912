// Inlining a variant's regions (score, mask, blocks, route) into target
// code: what every target does alike, once. A target says only how an
// `attn.load` reads its buffer (scalar bounds-checked loads on GPUs and in
// scalar code, gathers on CPU vectors) and how wide the code is.
#ifndef HEED_LIB_CONVERSION_TILECOMMON_VARIANTREGIONS_H
#define HEED_LIB_CONVERSION_TILECOMMON_VARIANTREGIONS_H

#include "dialects/attn/AttnOps.h"

#include "mlir/IR/Builders.h"

namespace heed {

struct RegionInlining {
  /// The values of the region's leading (index/score) arguments.
  mlir::ValueRange leading;
  /// The run-time buffers, then (blocks region) the summaries.
  mlir::ValueRange buffers;
  /// The route value attn.route reads (routed variants), as the region's
  /// code sees it (a scalar i64, or a vector of them when vectorized).
  mlir::Value route;
  /// 0: scalar code; N: every value widened to vector<N x T>, constants
  /// splatted (the region's arguments must be given as such vectors).
  int64_t width = 0;
  /// Reads `buffer[indices]` for an attn.load (`which`: its buffer's
  /// position); null: the scalar bounds-checked read of scalarLoad().
  std::function<mlir::Value(mlir::OpBuilder &, attn::LoadOp, mlir::Value buffer,
                            mlir::ValueRange indices, unsigned which)>
      load;
  /// Where an out-of-range read records the buffer's 1-based number.
  mlir::Value status;
};

/// The variant `name` refers to, searched in every symbol table around `op`
/// (a GPU kernel's gpu.module is one: the variants stay in the module
/// around it).
attn::VariantOp lookupVariant(mlir::Operation *op, mlir::FlatSymbolRefAttr name);

/// The size `shape` as bound by the nearest attn.tile.bind_shapes before
/// the builder's insertion point (an index value), or null where none is.
mlir::Value boundShape(mlir::OpBuilder &b, attn::Shape shape);

/// Clones the ops of `region` at the builder's insertion point with the
/// mapping of `how`; returns the value its attn.yield yields.
mlir::Value inlineVariantRegion(mlir::OpBuilder &b, mlir::Location loc, mlir::Region &region,
                                const RegionInlining &how);

/// A scalar attn.load: buffer[indices] where every index is in range
/// (sign- or zero-extended to i64, or extended to f32, as attn.load
/// defines), else 0 and `status` (if any) set to `which + 1`.
mlir::Value scalarLoad(mlir::OpBuilder &b, mlir::Location loc, attn::LoadOp load,
                       mlir::Value buffer, mlir::ValueRange indices, unsigned which,
                       mlir::Value status);

/// Extends a value read from a buffer (scalar or vector) to attn.load's
/// result type: floats to f32, i1 zero-extended, other integers
/// sign-extended to i64.
mlir::Value extendLoaded(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v,
                         mlir::Type resultType);

} // namespace heed

#endif
