// --attn-overlap-backward: the backward's two score products of a tile
// issued together, so that P is computed while dP runs (Hopper).
//
// A backward kernel's staged loop computes, per tile (the dK/dV kernel's
// transposed tiles alike):
//   %S  = qk %q0, %k0                  // S = Q K^T (S^T = K Q^T)
//   %P  = probs(%S) ...                // exp(S - lse) per element
//   ...                                // (dK/dV: dV += P^T dO)
//   %dP = qk %q1, %k1                  // dP = dO V^T (dP^T = V dO^T)
//   %dS = grad_scores(%S, %P, %dP) ...
// dP reads only the item's operand tile and the slot, so it is moved right
// after S and both are issued asynchronously; S is waited for with dP still
// in flight, and dP before its first use:
//   %S  = qk %q0, %k0 {async}
//   %dP = qk %q1, %k1 {async}
//   %S2 = mma_wait %S {pending = 1}    // S done, dP may run
//   %P  = probs(%S2) ...               // beside dP on the matrix units
//   ...
//   %dP2 = mma_wait %dP {pending = 0}
//   %dS = grad_scores(%S2, %P, %dP2) ...
// (FlashAttention-3's backward overlaps its softmax with the dP GEMM the
// same way.) Targets whose products are synchronous treat `async` as absent
// and the waits as nothing. A loop whose tile does not have this shape (a
// routed variant's several probs, an operand of dP computed after S) is left
// as it is.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"

namespace heed {
#define GEN_PASS_DEF_ATTNOVERLAPBACKWARD
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// The first op of `block` that uses `value` (or holds such a use), or null.
Operation *firstUser(Block *block, Value value) {
  Operation *first = nullptr;
  for (Operation *user : value.getUsers()) {
    Operation *at = block->findAncestorOpInBlock(*user);
    if (at && (!first || at->isBeforeInBlock(first)))
      first = at;
  }
  return first;
}

/// Whether every operand of `op` is available before `at` (defined outside
/// `at`'s block, or before `at` in it).
bool operandsBefore(Operation *op, Operation *at) {
  for (Value operand : op->getOperands()) {
    Operation *def = operand.getDefiningOp();
    if (!def)
      continue; // a block argument: available throughout its block
    Operation *inBlock = at->getBlock()->findAncestorOpInBlock(*def);
    if (inBlock && (inBlock == at || !inBlock->isBeforeInBlock(at)))
      return false;
  }
  return true;
}

void overlap(TileGradScoresOp grad) {
  auto s = grad.getScores().getDefiningOp<TileQKOp>();
  auto dp = grad.getDp().getDefiningOp<TileQKOp>();
  auto probs = grad.getProbs().getDefiningOp<TileProbsOp>();
  if (!s || !dp || !probs || s == dp || s.getAsync() || dp.getAsync())
    return;
  Block *block = s->getBlock();
  if (dp->getBlock() != block || probs->getBlock() != block || grad->getBlock() != block ||
      !s->isBeforeInBlock(probs) || !probs->isBeforeInBlock(dp) || !operandsBefore(dp, s))
    return;
  // Every use of S and dP in the block, after them (the waits replace them).
  Operation *firstDp = firstUser(block, dp.getResult());
  if (!firstDp)
    return;
  dp->moveAfter(s);
  s.setAsync(true);
  dp.setAsync(true);
  OpBuilder b(dp->getContext());
  b.setInsertionPointAfter(dp);
  auto waitS = TileMMAWaitOp::create(b, s.getLoc(), TypeRange{s.getType()},
                                     ValueRange{s.getResult()}, b.getI64IntegerAttr(1));
  s.getResult().replaceAllUsesExcept(waitS.getResult(0), waitS);
  b.setInsertionPoint(firstDp);
  auto waitDp = TileMMAWaitOp::create(b, dp.getLoc(), TypeRange{dp.getType()},
                                      ValueRange{dp.getResult()}, b.getI64IntegerAttr(0));
  dp.getResult().replaceAllUsesExcept(waitDp.getResult(0), waitDp);
}

struct AttnOverlapBackwardPass : heed::impl::AttnOverlapBackwardBase<AttnOverlapBackwardPass> {
  void runOnOperation() override {
    SmallVector<TileGradScoresOp> grads;
    getOperation().walk([&](TileGradScoresOp grad) { grads.push_back(grad); });
    for (TileGradScoresOp grad : grads)
      overlap(grad);
  }
};

} // namespace
