// --attn-specialize-full-tiles: a key tile the classifier proves FULL and
// that lies wholly inside the key sequence runs a copy of the tile's code
// in which the mask is not evaluated (`mask_if` false) and the key span is
// `in_bounds` (no hole to mask). A FULL patch of a token grid runs the copy
// without the mask too, its span not in bounds: its holes (lanes past the
// grid's inner edges or the sequence) stay masked by the bounds check.
// The whole tile's code is copied, not only
// the mask: on matrix cores, merging masked and unmasked scores at a join
// would keep every score of the tile live across it. (The CPU keeps one
// copy and branches around the mask alone: attn.tile.apply's mask_if.)
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace heed {
#define GEN_PASS_DEF_ATTNSPECIALIZEFULLTILES
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// The tile's class and key span behind `apply`'s mask_if = (cls == PARTIAL):
/// the class is an attn.tile.classify of the tile, or carried through the key
/// loop by --attn-pipeline-kv (an iter_arg of the loop).
std::pair<Value, TileSpanOp> tileOf(TileApplyOp apply) {
  auto cmp = apply.getMaskIf() ? apply.getMaskIf().getDefiningOp<arith::CmpIOp>() : nullptr;
  Value cls = cmp ? cmp.getLhs() : Value();
  auto carried = dyn_cast_or_null<BlockArgument>(cls);
  bool known = cls && (cls.getDefiningOp<TileClassifyOp>() ||
                       (carried && isa<scf::ForOp>(carried.getOwner()->getParentOp())));
  if (!known)
    return {};
  auto span = apply.getCols().getDefiningOp<TileSpanOp>();
  if (!span || span.getInBounds() ||
      (span.getCoords().size() != 1 && !span.getTiling().isPatched()))
    return {};
  return {cls, span};
}

/// Replaces the ops of `block` (but its terminator) by `scf.if (full) {a
/// copy with the mask off and the span in bounds (not a patch's)} else {the
/// ops}`.
void specialize(Block *block, TileApplyOp apply, Value cls, TileSpanOp span) {
  auto yield = cast<scf::YieldOp>(block->getTerminator());
  SmallVector<Operation *> ops;
  for (Operation &op : block->without_terminator())
    ops.push_back(&op);
  OpBuilder b(block, block->begin());
  Location loc = apply.getLoc();
  // FULL, and (flat tiles) every key of the tile before the sequence's end.
  auto index = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
  bool patched = span.getTiling().isPatched();
  Value end;
  if (!patched) {
    int64_t keys = span.getResult().getType().getSize();
    end = arith::MulIOp::create(
        b, loc, arith::AddIOp::create(b, loc, span.getCoords()[0], index(1)), index(keys));
  }
  Value full = arith::ConstantIntOp::create(b, loc, static_cast<int64_t>(BlockClass::Full), 8);
  Value cond = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cls, full);
  if (!patched)
    cond = arith::AndIOp::create(
        b, loc, cond, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, end, span.getSeq()));
  b.setInsertionPoint(yield);
  auto ifOp = scf::IfOp::create(b, loc, yield.getOperandTypes(), cond, /*withElseRegion=*/true);
  // Else: the ops as they are.
  Block *otherwise = &ifOp.getElseRegion().front();
  for (Operation *op : ops)
    op->moveBefore(otherwise, otherwise->end());
  OpBuilder inner = OpBuilder::atBlockEnd(otherwise);
  scf::YieldOp::create(inner, loc, yield.getOperands());
  // Then: a copy, the key span in bounds (but a patch's) and the mask off.
  inner.setInsertionPointToStart(&ifOp.getThenRegion().front());
  IRMapping map;
  if (!patched) {
    Operation *inBounds = inner.clone(*span);
    cast<TileSpanOp>(inBounds).setInBounds(true);
    map.map(span.getResult(), inBounds->getResult(0));
  }
  Value off = arith::ConstantIntOp::create(inner, loc, 0, 1);
  for (Operation *op : ops)
    inner.clone(*op, map);
  cast<TileApplyOp>(map.lookup(apply.getResult()).getDefiningOp()).getMaskIfMutable().assign(off);
  SmallVector<Value> results;
  for (Value v : yield.getOperands())
    results.push_back(map.lookupOrDefault(v));
  scf::YieldOp::create(inner, loc, results);
  yield->setOperands(ifOp.getResults());
}

struct AttnSpecializeFullTilesPass
    : heed::impl::AttnSpecializeFullTilesBase<AttnSpecializeFullTilesPass> {
  void runOnOperation() override {
    SmallVector<TileApplyOp> applies;
    getOperation().walk([&](TileApplyOp op) { applies.push_back(op); });
    for (TileApplyOp apply : applies) {
      auto [cls, span] = tileOf(apply);
      // The tile's code: a branch of an scf.if -- the then-branch of the
      // EMPTY check around it, or either form of it --attn-overlap-softmax
      // made (the first computed tile's, the others').
      if (!cls || !isa_and_nonnull<scf::IfOp>(apply->getParentOp()))
        continue;
      specialize(apply->getBlock(), apply, cls, span);
    }
  }
};

} // namespace
