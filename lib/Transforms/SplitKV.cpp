// --attn-split-kv: FlashDecoding's schedule on the tile IR. A work item
// that owns a long key range (decode over a long cache, one long sequence
// among short ones) is cut into `count` items over parts of its range, whose
// online-softmax states are merged by log-sum-exp in a second phase:
//
//   scf.index_switch %phase
//   case 1 {                       // partial states
//     attn.tile.work %B, %H, %T * %count {
//     ^bb0(%b, %h, %ts):
//       %t = %ts / %count, %s = %ts % %count
//       ... the item's code, its key loop over part %s of [first, end) ...
//       attn.tile.store_partial %acc, %max, %sum to %pacc, %pstats[%s, %b, %h] span(%rows)
//     }
//   }
//   case 2 {                       // merge
//     attn.tile.work %B, %H, %T {
//       ... the item's code up to its store, no key loop ...
//       %acc, %max, %sum = attn.tile.merge_partials %pacc, %pstats[%b, %h] splits(%count) span(%rows)
//       attn.tile.store %acc, %max, %sum to %O ...  // as before: sink, gate, lse
//     }
//   }
//   default {                      // phase 0: as it was
//     attn.tile.work %B, %H, %T { ... }
//   }
//
// The runtime picks `count` per call and runs phase 1 then 2, or 0 alone.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace heed {
#define GEN_PASS_DEF_ATTNSPLITKV
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// The two ops of a work item the split rewrites: its store, and the key
/// loop (directly in the item's block) whose results it stores.
struct SplitPoints {
  TileStoreOp store;
  scf::ForOp keys;
  explicit operator bool() const { return store && keys; }
};

SplitPoints findSplitPoints(Block &body) {
  auto stores = body.getOps<TileStoreOp>();
  if (!llvm::hasSingleElement(stores))
    return {};
  TileStoreOp store = *stores.begin();
  auto keys = store.getAcc().getDefiningOp<scf::ForOp>();
  if (!keys || keys->getBlock() != &body)
    return {};
  // Only the store may read the loop's results: the merge phase drops it.
  for (Value r : keys.getResults())
    for (Operation *user : r.getUsers())
      if (user != store)
        return {};
  return {store, keys};
}

/// A copy of `work` (without the split operands) before `b`'s insertion
/// point, over `tiles` query tiles; returns it and its split points.
std::pair<TileWorkOp, SplitPoints> copyWork(OpBuilder &b, TileWorkOp work, Value tiles) {
  IRMapping map;
  auto copy = cast<TileWorkOp>(b.clone(*work, map));
  copy.getTilesMutable().assign(tiles);
  copy.getSplitPhaseMutable().clear();
  copy.getSplitCountMutable().clear();
  copy.getPartialAccMutable().clear();
  copy.getPartialStatsMutable().clear();
  return {copy, findSplitPoints(copy.getBody().front())};
}

/// Phase 1: item (b, h, t * count + s) runs part s of its key range and
/// stores its state.
void buildPartialPhase(OpBuilder &b, TileWorkOp work, Value tiles) {
  Location loc = work.getLoc();
  Value count = work.getSplitCount();
  auto [copy, points] = copyWork(b, work, arith::MulIOp::create(b, loc, tiles, count));
  Block &body = copy.getBody().front();
  BlockArgument item = body.getArgument(2);
  OpBuilder inner = OpBuilder::atBlockBegin(&body);
  Value tile = arith::DivUIOp::create(inner, loc, item, count);
  Value split = arith::RemUIOp::create(inner, loc, item, count);
  item.replaceAllUsesExcept(tile, llvm::SmallPtrSet<Operation *, 2>{tile.getDefiningOp(),
                                                                    split.getDefiningOp()});
  // Part s of [first, end): [first + s c, min(end, first + (s + 1) c)).
  scf::ForOp keys = points.keys;
  inner.setInsertionPoint(keys);
  Value first = keys.getLowerBound();
  Value end = arith::MaxUIOp::create(inner, loc, keys.getUpperBound(), first); // empty: first
  Value length = arith::SubIOp::create(inner, loc, end, first);
  Value part = arith::CeilDivUIOp::create(inner, loc, length, count);
  Value lo = arith::AddIOp::create(inner, loc, first,
                                   arith::MulIOp::create(inner, loc, split, part));
  Value hi = arith::MinUIOp::create(inner, loc, arith::AddIOp::create(inner, loc, lo, part), end);
  keys.getLowerBoundMutable().assign(arith::MinUIOp::create(inner, loc, lo, hi));
  keys.getUpperBoundMutable().assign(hi);
  TileStoreOp store = points.store;
  inner.setInsertionPoint(store);
  TileStorePartialOp::create(inner, loc, store.getAcc(), store.getMax(), store.getSum(),
                             work.getPartialAcc(), work.getPartialStats(), split,
                             store.getBatch(), store.getHead(), store.getSpan());
  store.erase();
}

/// Phase 2: each item merges its splits' states and stores them.
void buildMergePhase(OpBuilder &b, TileWorkOp work, Value tiles) {
  auto [copy, points] = copyWork(b, work, tiles);
  TileStoreOp store = points.store;
  OpBuilder inner(store);
  auto merged = TileMergePartialsOp::create(
      inner, store.getLoc(), store.getAcc().getType(), store.getMax().getType(),
      store.getSum().getType(), work.getPartialAcc(), work.getPartialStats(),
      work.getSplitCount(), store.getBatch(), store.getHead(), store.getSpan(),
      store.isSigmoid());
  store.getAccMutable().assign(merged.getAcc());
  store.getMaxMutable().assign(merged.getMax());
  store.getSumMutable().assign(merged.getSum());
  points.keys.erase();
}

void splitWork(TileWorkOp work) {
  OpBuilder b(work);
  Location loc = work.getLoc();
  Value phase = work.getSplitPhase();
  SplitPoints points = findSplitPoints(work.getBody().front());
  if (!points) {
    // A loop of another shape: computed whole in phases 0 and 1 (its items
    // past the grid do nothing), skipped in the merge phase.
    Value notMerge = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, phase,
                                           arith::ConstantIndexOp::create(b, loc, 2));
    auto ifOp = scf::IfOp::create(b, loc, notMerge, /*withElseRegion=*/false);
    Block *then = ifOp.thenBlock();
    work->moveBefore(then->getTerminator());
  } else {
    auto sw = scf::IndexSwitchOp::create(b, loc, TypeRange{}, phase,
                                         b.getDenseI64ArrayAttr({1, 2}), /*caseRegions=*/2);
    Value tiles = work.getTiles();
    for (auto [region, build] :
         {std::pair{&sw.getCaseRegions()[0], &buildPartialPhase},
          std::pair{&sw.getCaseRegions()[1], &buildMergePhase}}) {
      Block *block = b.createBlock(region);
      scf::YieldOp::create(b, loc);
      b.setInsertionPointToStart(block);
      build(b, work, tiles);
    }
    Block *fallback = b.createBlock(&sw.getDefaultRegion());
    scf::YieldOp::create(b, loc);
    work->moveBefore(fallback->getTerminator());
  }
  work.getSplitPhaseMutable().clear();
  work.getSplitCountMutable().clear();
  work.getPartialAccMutable().clear();
  work.getPartialStatsMutable().clear();
}

struct AttnSplitKVPass : heed::impl::AttnSplitKVBase<AttnSplitKVPass> {
  void runOnOperation() override {
    SmallVector<TileWorkOp> works;
    getOperation().walk([&](TileWorkOp work) {
      if (work.getSplitPhase())
        works.push_back(work);
    });
    for (TileWorkOp work : works)
      splitWork(work);
  }
};

} // namespace
