// A key loop as the K/V staging schedules see it (--attn-pipeline-kv,
// --attn-warp-specialize): a loop over key tiles whose k and v tiles read
// two tensors through the tile's span, and the code a tile's span and class
// are computed with, which a schedule copies to issue a tile's copies ahead
// of (or apart from) the code that computes it.
#ifndef HEED_TRANSFORMS_KEYLOOP_H
#define HEED_TRANSFORMS_KEYLOOP_H

#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace heed {

/// A loop over tiles and what its staged tiles need.
struct KeyLoop {
  mlir::scf::ForOp loop;
  attn::TileSpanOp span;              ///< the tile's span, from the induction variable
  attn::TileLoadOp k;                 ///< the first k tile (its tensor is part 0)
  mlir::Value tensors[2];             ///< the slot's two tensors
  llvm::SmallVector<attn::TileLoadOp> loads; ///< every k and v tile of the span
  attn::TileClassifyOp classify;      ///< its class, where the tiles are classified
  mlir::Value pages;                  ///< a paged cache's table (the copies read it), or null
  mlir::Operation *firstUse;          ///< the op of the loop body holding the loads
};

/// The key loop of k tile `k` (unstaged), or failure if `k` is not a k
/// tile of a flat tile loop, or of the innermost loop of a patch's (its
/// outer digits defined outside it), whose k/v tiles read at most two
/// tensors.
mlir::FailureOr<KeyLoop> matchKeyLoop(attn::TileLoadOp k);

/// Clones, at the builder's insertion point, the ops of `key`'s loop body
/// that `values` (defined in the body or above it) are computed with, for
/// the tile `tile` instead of the loop's induction variable; `map` gets the
/// clones (values defined above the loop map to themselves).
void cloneTileSlice(mlir::OpBuilder &b, KeyLoop key, mlir::Value tile,
                    mlir::ValueRange values, mlir::IRMapping &map);

/// attn.tile.copy_kv of `span` into slot `stage` of `stages`: key's tensors,
/// batch, head, pages and layout (through `map` where given: a copy issued
/// from cloned code).
void copyKV(mlir::OpBuilder &b, KeyLoop key, mlir::Value span, mlir::Value stage,
            int64_t stages, bool async, const mlir::IRMapping *map = nullptr);

/// Every k/v tile of `key` reads slot `stage` (its part: 0 for the first
/// tensor, 1 for the other) instead of the tensor; the page table goes (the
/// copies read through it).
void readFromSlot(KeyLoop key, mlir::Value stage);

} // namespace heed

#endif
