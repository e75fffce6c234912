// --attn-skip-tiles: key tiles the mask empties are never visited. For each
// classified key tile (`attn.tile.classify` in the key loops of
// --attn-to-tile):
//   - each key loop (one per grid dim) is narrowed to the tile coordinates
//     whose boxes the classifier cannot prove EMPTY (`attn.tile.kv_range`:
//     two binary searches, since a box that is EMPTY stays EMPTY when it
//     shrinks);
//   - the tile's work runs only where its class is not EMPTY (and its box
//     starts before the sequence's end: a patch of holes), else the loop
//     carries its state unchanged.
// FULL tiles already skip the mask (attn.tile.apply's mask_if).
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"

namespace heed {
#define GEN_PASS_DEF_ATTNSKIPTILES
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// The key loops a classified tile's span is indexed by, outermost first.
FailureOr<SmallVector<scf::ForOp>> keyLoops(TileSpanOp span) {
  SmallVector<scf::ForOp> loops;
  for (Value c : span.getCoords()) {
    auto arg = dyn_cast<BlockArgument>(c);
    auto loop = arg ? dyn_cast<scf::ForOp>(arg.getOwner()->getParentOp()) : scf::ForOp();
    if (!loop || loop.getInductionVar() != c)
      return failure();
    loops.push_back(loop);
  }
  return loops;
}

/// The sequence length of the span whose box `corner` is a corner of, if
/// that span is a tile of a tiling (patches may be all holes).
Value spanSeq(Value corner) {
  auto box = corner.getDefiningOp<TileSpanBoxOp>();
  auto span = box ? box.getSpan().getDefiningOp<TileSpanOp>() : TileSpanOp();
  return span ? span.getSeq() : Value();
}

/// Moves the ops after `cls` in its loop body under `scf.if (cls != EMPTY &&
/// kvLo < Skv && qLo < Sq)`: patches past a sequence's end are all holes.
/// The else branch carries the loop state unchanged.
void guardTile(scf::ForOp loop, TileClassifyOp cls, Value seq) {
  Block *body = loop.getBody();
  auto yield = cast<scf::YieldOp>(body->getTerminator());
  OpBuilder b(yield);
  Location loc = cls.getLoc();
  Value empty = arith::ConstantIntOp::create(b, loc, static_cast<int64_t>(BlockClass::Empty), 8);
  Value visit = arith::AndIOp::create(
      b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, cls, empty),
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, cls.getKvLo(), seq));
  if (Value seqQ = spanSeq(cls.getQLo()))
    visit = arith::AndIOp::create(
        b, loc, visit, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, cls.getQLo(), seqQ));
  auto ifOp = scf::IfOp::create(b, loc, yield.getOperandTypes(), visit, /*withElseRegion=*/true);
  Block *then = &ifOp.getThenRegion().front();
  // Everything between the classifier's inputs and the yield is the tile's
  // work (the ops that make `visit` stay before the branch).
  SmallVector<Operation *> work;
  for (Operation *op = cls->getNextNode(); op != empty.getDefiningOp(); op = op->getNextNode())
    work.push_back(op);
  for (Operation *op : work)
    op->moveBefore(then, then->end());
  b.setInsertionPointToEnd(then);
  scf::YieldOp::create(b, loc, yield.getOperands());
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, loop.getRegionIterArgs());
  yield->setOperands(ifOp.getResults());
}

/// Bounds each key loop by attn.tile.kv_range.
void narrowLoops(ArrayRef<scf::ForOp> loops, TileClassifyOp cls, TileSpanOp span) {
  for (size_t k = 0; k < loops.size(); ++k) {
    scf::ForOp loop = loops[k];
    OpBuilder b(loop);
    SmallVector<Value> outer;
    for (size_t m = 0; m < k; ++m)
      outer.push_back(scf::ForOp(loops[m]).getInductionVar());
    auto range = TileKVRangeOp::create(
        b, cls.getLoc(), b.getIndexType(), b.getIndexType(), cls.getVariantAttr(),
        cls.getBatch(), cls.getHead(), cls.getQLo(), cls.getQHi(), span.getSeq(), outer,
        cls.getBuffers(), cls.getSummaries(), cls.getRoute(), span.getTiling(),
        b.getI64IntegerAttr(k));
    loop.getLowerBoundMutable().assign(range.getFirst());
    loop.getUpperBoundMutable().assign(range.getEnd());
  }
}

struct AttnSkipTilesPass : heed::impl::AttnSkipTilesBase<AttnSkipTilesPass> {
  void runOnOperation() override {
    SmallVector<TileClassifyOp> classified;
    getOperation().walk([&](TileClassifyOp op) { classified.push_back(op); });
    for (TileClassifyOp cls : classified) {
      auto box = cls.getKvLo().getDefiningOp<TileSpanBoxOp>();
      auto span = box ? box.getSpan().getDefiningOp<TileSpanOp>() : TileSpanOp();
      if (!span || span.getSide() != Side::KV)
        continue; // not a key tile of a loop: nothing to narrow
      FailureOr<SmallVector<scf::ForOp>> loops = keyLoops(span);
      if (failed(loops) || loops->empty() || cls->getBlock() != loops->back().getBody())
        continue;
      guardTile(loops->back(), cls, span.getSeq());
      // Per-dim narrowing needs per-dim coordinates (or flat tiles).
      if (loops->size() == span.getTiling().getKv().size())
        narrowLoops(*loops, cls, span);
    }
  }
};

} // namespace
