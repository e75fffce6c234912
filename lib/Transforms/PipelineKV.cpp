// --attn-pipeline-kv{stages=N}: the key loop's K/V tiles are staged in
// workgroup memory by `attn.tile.copy_kv` and read from there
// (`attn.tile.load ... stage(%s)`).
//   stages=1: each tile is copied, waited for and computed in turn
//     (barrier; copy unless EMPTY; wait; compute).
//   stages=2: tile t + 1 is copied asynchronously into the other slot while
//     tile t is computed (a prologue copies the first tile; in the loop:
//     wait for tile t, then start tile t + 1's copy unless it is EMPTY,
//     then compute tile t).
// The class of tile t + 1 is computed by a copy of the code that classifies
// tile t, so EMPTY tiles are never copied.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

namespace heed {
#define GEN_PASS_DEF_ATTNPIPELINEKV
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// A key loop and what its tiles need.
struct KeyLoop {
  scf::ForOp loop;
  TileSpanOp span;            ///< the key tile's span, from the induction variable
  TileLoadOp k, v;            ///< the tile's K and V loads
  TileClassifyOp classify;    ///< its class, where the tiles are classified
  Operation *firstUse;        ///< the op of the loop body holding the loads
};

FailureOr<KeyLoop> match(TileLoadOp k) {
  KeyLoop key;
  key.k = k;
  key.span = k.getSpan().getDefiningOp<TileSpanOp>();
  if (!key.span || key.span.getSide() != Side::KV || key.span.getCoords().size() != 1 ||
      key.span.getTiling().isPatched())
    return failure();
  auto iv = dyn_cast<BlockArgument>(key.span.getCoords()[0]);
  key.loop = iv ? dyn_cast<scf::ForOp>(iv.getOwner()->getParentOp()) : scf::ForOp();
  if (!key.loop || key.loop.getInductionVar() != iv)
    return failure();
  for (Operation *user : key.span->getUsers()) {
    if (auto load = dyn_cast<TileLoadOp>(user);
        load && cast<TileType>(load.getResult().getType()).getRole() == TileRole::V)
      key.v = load;
    if (auto box = dyn_cast<TileSpanBoxOp>(user))
      for (Operation *boxUser : box->getUsers())
        if (auto cls = dyn_cast<TileClassifyOp>(boxUser))
          key.classify = cls;
  }
  if (!key.v || key.v->getBlock() != k->getBlock())
    return failure();
  key.firstUse = key.loop.getBody()->findAncestorOpInBlock(*k);
  return key;
}

/// The ops of the loop body that the span (and the class) of tile `iv` are
/// computed with, cloned at the builder's insertion point for tile `tile`;
/// returns the clone's span and class (null without a classifier).
std::pair<Value, Value> cloneTileHeader(OpBuilder &b, KeyLoop key, Value tile) {
  llvm::SetVector<Operation *> slice;
  SmallVector<Operation *> work = {key.span};
  if (key.classify)
    work.push_back(key.classify);
  Block *body = key.loop.getBody();
  while (!work.empty()) {
    Operation *op = work.pop_back_val();
    if (op->getBlock() != body || !slice.insert(op))
      continue;
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp())
        work.push_back(def);
  }
  IRMapping map;
  map.map(key.loop.getInductionVar(), tile);
  for (Operation &op : *body)
    if (slice.contains(&op))
      b.clone(op, map);
  return {map.lookup(key.span.getResult()),
          key.classify ? map.lookup(key.classify.getResult()) : Value()};
}

/// attn.tile.copy_kv of `span` into slot `stage`, unless `cls` is EMPTY.
void copyUnlessEmpty(OpBuilder &b, KeyLoop key, Value span, Value cls, Value stage,
                     int64_t stages) {
  Location loc = key.k.getLoc();
  OpBuilder::InsertionGuard guard(b);
  if (cls) {
    Value empty = arith::ConstantIntOp::create(b, loc, static_cast<int64_t>(BlockClass::Empty), 8);
    auto ifOp = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, cls, empty), false);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  }
  TileCopyKVOp::create(b, loc, key.k.getTensor(), key.v.getTensor(), key.k.getBatch(),
                       key.k.getHead(), span, stage, b.getI64IntegerAttr(stages),
                       /*async=*/stages > 1 ? b.getUnitAttr() : UnitAttr(), key.k.getLayoutAttr());
}

void pipeline(KeyLoop key, int64_t stages) {
  OpBuilder b(key.loop);
  Location loc = key.k.getLoc();
  Value iv = key.loop.getInductionVar();
  auto slotOf = [&](Value t) -> Value {
    if (stages == 1)
      return arith::ConstantIndexOp::create(b, loc, 0);
    return arith::RemUIOp::create(b, loc, t, arith::ConstantIndexOp::create(b, loc, stages));
  };
  if (stages > 1) {
    // The prologue: every thread is done with what the slots held (the
    // query tile may have been staged there), then tile `first`'s copies.
    TileBarrierOp::create(b, loc);
    Value first = key.loop.getLowerBound(), end = key.loop.getUpperBound();
    auto any = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, first, end), false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&any.getThenRegion().front());
    auto [span, cls] = cloneTileHeader(b, key, first);
    copyUnlessEmpty(b, key, span, cls, slotOf(first), stages);
  }
  b.setInsertionPoint(key.firstUse);
  Value slot = slotOf(iv);
  if (stages == 1) {
    TileBarrierOp::create(b, loc); // the previous tile is consumed
    // (No classifier without --attn-analyze-mask: every tile is copied.)
    copyUnlessEmpty(b, key, key.span, key.classify ? key.classify.getResult() : Value(), slot,
                    stages);
    TileWaitKVOp::create(b, loc);
  } else {
    // Tile t's copies are done everywhere and every thread is past tile
    // t - 1, whose slot tile t + 1 takes.
    TileWaitKVOp::create(b, loc);
    Value next = arith::AddIOp::create(b, loc, iv, arith::ConstantIndexOp::create(b, loc, 1));
    auto more = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, next, key.loop.getUpperBound()),
        false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&more.getThenRegion().front());
    auto [span, cls] = cloneTileHeader(b, key, next);
    copyUnlessEmpty(b, key, span, cls, slotOf(next), stages);
  }
  key.k.getStageMutable().assign(slot);
  key.v.getStageMutable().assign(slot);
}

struct AttnPipelineKVPass : heed::impl::AttnPipelineKVBase<AttnPipelineKVPass> {
  using Base::Base;
  void runOnOperation() override {
    if (stages != 1 && stages != 2) {
      getOperation().emitError() << "attn-pipeline-kv: stages must be 1 or 2, not "
                                 << stages.getValue();
      return signalPassFailure();
    }
    SmallVector<TileLoadOp> keys;
    getOperation().walk([&](TileLoadOp op) {
      if (cast<TileType>(op.getResult().getType()).getRole() == TileRole::K && !op.getStage())
        keys.push_back(op);
    });
    for (TileLoadOp k : keys) {
      FailureOr<KeyLoop> key = match(k);
      if (failed(key)) {
        k.emitOpError() << "is not the key tile of a flat key loop: --attn-pipeline-kv "
                           "cannot stage it";
        return signalPassFailure();
      }
      pipeline(*key, stages);
    }
  }
};

} // namespace
