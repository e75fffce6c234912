// --attn-pipeline-kv{stages=N}: the key loop's K/V tiles are staged in N
// slots of workgroup memory by `attn.tile.copy_kv` and read from there
// (`attn.tile.load ... stage(%s)`).
//   stages=1: each tile is copied, waited for and computed in turn
//     (barrier; copy unless EMPTY; wait; compute).
//   stages=N>1: the next N - 1 tiles of the loop are in flight
//     (asynchronously, in their slots) while tile t is computed: a prologue
//     issues the first N - 1 tiles, one commit (copy group) each; in the
//     loop, wait until at most N - 2 groups are in flight (tile t has
//     arrived, everyone is past the previous tile, whose slot is reused),
//     issue tile t + (N - 1) step and commit, then compute tile t. Tile t
//     takes slot (t / step) mod N: a strided loop (split-KV's GPU parts)
//     rotates its slots by iteration as a unit-step one does.
// A slot holds the rows of two tensors (part 0: the tensor of the first k
// tile, D wide; part 1: the other one): K and V in the forward; in the
// backward's kernels K and V (dQ, a loop over key tiles) or Q and dO (dK/dV,
// a loop over query tiles), each tensor read as k and/or v tiles. Every
// k/v tile of the span gets the slot and its part.
// Every prefetched tile commits a group, copied or not, so the count of
// groups in flight always means the same tiles. The class of a prefetched
// tile comes from a copy of the code that classifies a tile, so EMPTY tiles
// are never copied; with N > 1 the classes of the tiles in flight are
// carried through the loop, so a tile is classified once.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"
#include "heed/Transforms/KeyLoop.h"
#include "heed/Transforms/StagedKeyLoop.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"

namespace heed {
#define GEN_PASS_DEF_ATTNPIPELINEKV
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

using heed::KeyLoop;

/// The ops of the loop body that the span (and the class) of tile `iv` are
/// computed with, cloned at the builder's insertion point for tile `tile`;
/// returns the clone's span and class (null without a classifier).
std::pair<Value, Value> cloneTileHeader(OpBuilder &b, KeyLoop key, Value tile) {
  IRMapping map;
  SmallVector<Value> values = {key.span.getResult()};
  if (key.classify)
    values.push_back(key.classify.getResult());
  heed::cloneTileSlice(b, key, tile, values, map);
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
  heed::copyKV(b, key, span, stage, stages, /*async=*/stages > 1);
}

/// Whether the loop walks consecutive tiles (step 1, the usual case).
bool unitStep(KeyLoop key) { return getConstantIntValue(key.loop.getStep()) == 1; }

/// Issues tile `tile` into its slot if it is before the loop's end (and not
/// EMPTY), then commits a group either way. Returns the tile's class (EMPTY
/// past the end), or null without a classifier.
Value prefetch(OpBuilder &b, KeyLoop key, Value tile, int64_t stages) {
  Location loc = key.k.getLoc();
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, tile,
                                        key.loop.getUpperBound());
  TypeRange classType = key.classify ? TypeRange(b.getI8Type()) : TypeRange();
  auto ifOp = scf::IfOp::create(b, loc, classType, inRange, /*withElseRegion=*/!!key.classify);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    auto [span, cls] = cloneTileHeader(b, key, tile);
    Value slot = heed::stagedSlot(b, loc, key.loop, tile, stages);
    copyUnlessEmpty(b, key, span, cls, slot, stages);
    if (key.classify) {
      scf::YieldOp::create(b, loc, cls);
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(
          b, loc, Value(arith::ConstantIntOp::create(b, loc, static_cast<int64_t>(BlockClass::Empty), 8)));
    }
  }
  TileCommitKVOp::create(b, loc);
  return key.classify ? ifOp.getResult(0) : Value();
}

/// The classes of the tiles in flight ride along the loop (tile t's first),
/// so that each tile is classified once, when it is prefetched, instead of
/// again when it is computed: the loop gets N - 1 i8 iter_args, shifted by
/// one each iteration, and the loop body's classifier is replaced by the
/// first.
void carryClasses(KeyLoop &key, ArrayRef<Value> inFlight, Value next) {
  IRRewriter rewriter(key.loop.getContext());
  rewriter.setInsertionPoint(key.loop);
  unsigned first = key.loop.getNumRegionIterArgs();
  auto loop = cast<scf::ForOp>(*key.loop.replaceWithAdditionalYields(
      rewriter, inFlight, /*replaceInitOperandUsesInLoop=*/false,
      [&](OpBuilder &, Location, ArrayRef<BlockArgument> carried) {
        SmallVector<Value> yielded(carried.begin() + 1, carried.end());
        yielded.push_back(next);
        return yielded;
      }));
  Value current = loop.getRegionIterArgs()[first];
  rewriter.replaceAllUsesWith(key.classify.getResult(), current);
  rewriter.eraseOp(key.classify);
  key.classify = {};
  key.loop = loop;
}

void pipeline(KeyLoop key, int64_t stages) {
  OpBuilder b(key.loop);
  Location loc = key.k.getLoc();
  Value iv = key.loop.getInductionVar();
  // Tile k iterations after t: t + k step.
  auto offset = [&](Value t, int64_t k) -> Value {
    if (!k)
      return t;
    Value by = arith::ConstantIndexOp::create(b, loc, k);
    if (!unitStep(key))
      by = arith::MulIOp::create(b, loc, key.loop.getStep(), by);
    return arith::AddIOp::create(b, loc, t, by);
  };
  SmallVector<Value> inFlight; // the classes of the prologue's tiles
  if (stages > 1) {
    // The prologue: every thread is done with what the slots held (the
    // query tile may have been staged there), then tiles first .. first +
    // N - 2 are issued.
    TileBarrierOp::create(b, loc);
    for (int64_t k = 0; k + 1 < stages; ++k)
      inFlight.push_back(prefetch(b, key, offset(key.loop.getLowerBound(), k), stages));
  }
  b.setInsertionPoint(key.firstUse);
  Value slot = stages == 1 ? Value(arith::ConstantIndexOp::create(b, loc, 0))
                           : heed::stagedSlot(b, loc, key.loop, iv, stages);
  heed::readFromSlot(key, slot);
  if (stages == 1) {
    TileBarrierOp::create(b, loc); // the previous tile is consumed
    // (No classifier without --attn-analyze-mask: every tile is copied.)
    copyUnlessEmpty(b, key, key.span, key.classify ? key.classify.getResult() : Value(), slot,
                    stages);
    TileCommitKVOp::create(b, loc);
    TileWaitKVOp::create(b, loc, /*pending=*/0, Value(), Value(), IntegerAttr());
    return;
  }
  // Tile t's copies are done everywhere and every thread is past tile
  // t - 1, whose slot tile t + N - 1 takes.
  TileWaitKVOp::create(b, loc, /*pending=*/stages - 2, Value(), Value(), IntegerAttr());
  Value next = prefetch(b, key, offset(iv, stages - 1), stages);
  if (key.classify)
    carryClasses(key, inFlight, next);
}

struct AttnPipelineKVPass : heed::impl::AttnPipelineKVBase<AttnPipelineKVPass> {
  using Base::Base;
  void runOnOperation() override {
    if (stages < 1 || stages > 4) {
      getOperation().emitError() << "attn-pipeline-kv: stages must be in [1, 4], not "
                                 << stages.getValue();
      return signalPassFailure();
    }
    SmallVector<TileLoadOp> keys;
    getOperation().walk([&](TileLoadOp op) {
      if (cast<TileType>(op.getResult().getType()).getRole() == TileRole::K && !op.getStage())
        keys.push_back(op);
    });
    for (TileLoadOp k : keys) {
      if (k.getStage()) // staged with an earlier k tile of its span
        continue;
      FailureOr<KeyLoop> key = heed::matchKeyLoop(k);
      if (failed(key)) {
        k.emitOpError() << "is not a k tile of a flat tile loop (or of a patch's innermost "
                           "loop) whose k/v tiles read two tensors: --attn-pipeline-kv cannot "
                           "stage it";
        return signalPassFailure();
      }
      pipeline(*key, stages);
    }
  }
};

} // namespace
