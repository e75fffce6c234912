// What --attn-to-tile (forward) and --attn-backward-to-tile build alike:
// logical dims of the attention's rank-4 tensors, tile types and fills.
#ifndef HEED_LIB_CONVERSION_ATTNTOTILE_TILEBUILDING_H
#define HEED_LIB_CONVERSION_ATTNTOTILE_TILEBUILDING_H

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"

namespace heed::attn_to_tile {

/// Logical dim `logical` (0 batch, 1 heads, 2 sequence) of a rank-4 tensor
/// stored BHSD, or BSHD when `bshd`.
inline mlir::Value logicalDim(mlir::OpBuilder &b, mlir::Location loc, mlir::Value tensor,
                              bool bshd, unsigned logical) {
  unsigned physical = bshd && logical != 0 ? 3 - logical : logical;
  return mlir::memref::DimOp::create(b, loc, tensor, physical);
}

/// A rows x cols tile of `role` (a row or col statistics tile has rows
/// only).
inline attn::TileType tileType(mlir::MLIRContext *ctx, int64_t rows, int64_t cols,
                               mlir::Type elt, attn::TileRole role) {
  if (role == attn::TileRole::Row || role == attn::TileRole::Col)
    return attn::TileType::get(ctx, {rows}, elt, role);
  return attn::TileType::get(ctx, {rows, cols}, elt, role);
}

inline mlir::Value fillTile(mlir::OpBuilder &b, mlir::Location loc, attn::TileType type,
                            double value) {
  return attn::TileFillOp::create(b, loc, type, b.getF32FloatAttr(static_cast<float>(value)));
}

/// Whether `op`'s `tiling` and `variant`'s grid agree (an error on `op`
/// if not): patches must be of the grid the variant's classifier decodes
/// (--attn-choose-tiling before --attn-analyze-mask), and a classifier that
/// decodes grid boxes must not see flat tiles (a flat tile crossing a grid
/// row is no box of the grid: it could be called EMPTY wrongly).
inline mlir::LogicalResult checkTilingMatchesGrid(mlir::Operation *op, attn::TilingAttr tiling,
                                                  attn::VariantOp variant) {
  if (tiling.isPatched() && (!variant.getGridAttr() ||
                             variant.getGridAttr().getExtents() != tiling.getGrid()))
    return op->emitOpError() << "is tiled by patches of a grid its variant's classifier does "
                                "not use (run --attn-choose-tiling before --attn-analyze-mask)";
  if (!tiling.isPatched() && variant.getGridAttr() && !variant.getBlocks().empty())
    return op->emitOpError() << "is tiled flat, but its variant's classifier decodes boxes of a "
                                "grid (run --attn-choose-tiling with patches before "
                                "--attn-analyze-mask, or without patches)";
  return mlir::success();
}

/// The builder both lowerings build their loops with, and its helpers.
class TileBuilder {
protected:
  TileBuilder(mlir::Operation *anchor, bool bshd) : b(anchor), loc(anchor->getLoc()), bshd(bshd) {}

  mlir::Value idx(int64_t v) { return mlir::arith::ConstantIndexOp::create(b, loc, v); }
  /// Logical dim (0 batch, 1 heads, 2 sequence) of a rank-4 tensor.
  mlir::Value dim(mlir::Value tensor, unsigned logical) {
    return logicalDim(b, loc, tensor, bshd, logical);
  }
  attn::TileType tile(int64_t rows, int64_t cols, mlir::Type elt, attn::TileRole role) {
    return tileType(b.getContext(), rows, cols, elt, role);
  }
  mlir::Value fill(attn::TileType type, double value) { return fillTile(b, loc, type, value); }
  /// Batch entry `batch`'s length from `lens` (kv_lens or q_lens, i32
  /// [B]), clamped to [0, capacity].
  mlir::Value entryLength(mlir::Value lens, mlir::Value batch, mlir::Value capacity);
  /// Entry `batch` of packed sequences: (its first row, its length
  /// clamped to [0, capacity]) from the offsets `cu` (i32 [B+1]).
  std::pair<mlir::Value, mlir::Value> packedEntry(mlir::Value cu, mlir::Value batch,
                                                  mlir::Value capacity);
  /// `tensor` (batch stride 0: packed sequences) seen from row `start` of
  /// its dim `seqDim` on.
  mlir::Value rowsFrom(mlir::Value tensor, mlir::Value start, unsigned seqDim);
  /// One side (queries or keys) of batch entry `batch`, from the operands an
  /// attention op has for it (either may be null): its length (`lens`, or
  /// the length the packed offsets `cu` give, clamped to `capacity`; the
  /// capacity where neither) and, packed, its first row (else null).
  struct EntrySide {
    mlir::Value length, first;
  };
  EntrySide entrySide(mlir::Value lens, mlir::Value cu, mlir::Value batch, mlir::Value capacity);
  /// Whether `variant`'s regions read run-time sizes (attn.shape): then the
  /// loop binds them (attn.tile.bind_shapes) where the regions are inlined.
  static bool readsShapes(attn::VariantOp variant) {
    return variant->walk([](attn::ShapeOp) { return mlir::WalkResult::interrupt(); })
        .wasInterrupted();
  }

  mlir::OpBuilder b;
  mlir::Location loc;
  bool bshd;
};

} // namespace heed::attn_to_tile

#endif
