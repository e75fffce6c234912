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
//
// With `one-loop` (the GPU kernels' form) the three phases share one work
// loop, one key loop and one store, so the kernel holds each once: the
// runtime runs phase 0 with count = 1 (the item's one part is its whole
// range), and phase 2 over the loop's own items:
//
//   %parts = %phase == 2 ? 1 : %count
//   attn.tile.work %B, %H, %T * %parts {
//   ^bb0(%b, %h, %ts):
//     %t = %ts / %parts, %s = %ts % %parts
//     ... the item's code up to its key loop ...
//     %acc, %max, %sum = scf.if (%phase == 2) { merge_partials ... splits(%count) }
//                        else { the key loop over tiles first + %s, first + %s + %parts, ... }
//     scf.if (%phase == 1) { store_partial ... [%s, %b, %h] } else { store ... }
//   }
//
// A loop of another shape runs part 0 of its items whole (the other parts
// do nothing) in phases 0 and 1, nothing in phase 2.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cstdint>
#include <tuple>

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
  copy.getSplitPartKeysMutable().clear();
  copy.getPartialAccMutable().clear();
  copy.getPartialStatsMutable().clear();
  return {copy, findSplitPoints(copy.getBody().front())};
}

/// A copy of `work` over `tiles * count` items whose item (b, h, t * count
/// + s) sees tile t; returns it, its split points and s.
std::tuple<TileWorkOp, SplitPoints, Value> copyWorkPerPart(OpBuilder &b, TileWorkOp work,
                                                           Value tiles, Value count) {
  Location loc = work.getLoc();
  auto [copy, points] = copyWork(b, work, arith::MulIOp::create(b, loc, tiles, count));
  Block &body = copy.getBody().front();
  BlockArgument item = body.getArgument(2);
  OpBuilder inner = OpBuilder::atBlockBegin(&body);
  Value tile = arith::DivUIOp::create(inner, loc, item, count);
  Value split = arith::RemUIOp::create(inner, loc, item, count);
  item.replaceAllUsesExcept(tile, llvm::SmallPtrSet<Operation *, 2>{tile.getDefiningOp(),
                                                                    split.getDefiningOp()});
  return {copy, points, split};
}

/// The key tiles of a part of about `partKeys` keys (the call's parts of
/// equal work; 0: none) for the loop `keys`, whose kv spans give its keys
/// per tile; null where no span says (then the parts divide each range).
Value tilesPerPart(OpBuilder &b, scf::ForOp keys, Value partKeys) {
  if (!partKeys)
    return {};
  int64_t lanes = 0;
  keys.walk([&](TileSpanOp span) {
    if (!lanes && span.getSide() == Side::KV)
      lanes = span.getTiling().getTileSize(Side::KV);
  });
  if (lanes <= 0)
    return {};
  return arith::CeilDivUIOp::create(b, keys.getLoc(), partKeys,
                                    arith::ConstantIndexOp::create(b, keys.getLoc(), lanes));
}

/// Narrows `keys` to part `split` of its range [first, end): [first + s c,
/// min(end, first + (s + 1) c)), c = ceil((end - first) / count), or, with
/// `partKeys` (the runtime's parts of equal work; 0: none), c = max(that,
/// tiles of `partKeys` keys): every item's parts then take the same number
/// of tiles, a short item's later parts none.
void narrowToPart(scf::ForOp keys, Value split, Value count, Value partKeys) {
  Location loc = keys.getLoc();
  OpBuilder inner(keys);
  Value first = keys.getLowerBound();
  Value end = arith::MaxUIOp::create(inner, loc, keys.getUpperBound(), first); // empty: first
  Value length = arith::SubIOp::create(inner, loc, end, first);
  Value part = arith::CeilDivUIOp::create(inner, loc, length, count);
  if (Value tiles = tilesPerPart(inner, keys, partKeys)) {
    // (Clamped to the range first: any part keys, however large, leave
    // s * part and lo + part without wrapping.)
    Value wide = arith::MinUIOp::create(inner, loc, tiles, length);
    part = arith::MaxUIOp::create(inner, loc, part,
                                  arith::MulIOp::create(inner, loc, wide, keys.getStep()));
  }
  Value lo = arith::AddIOp::create(inner, loc, first,
                                   arith::MulIOp::create(inner, loc, split, part));
  Value hi = arith::MinUIOp::create(inner, loc, arith::AddIOp::create(inner, loc, lo, part), end);
  keys.getLowerBoundMutable().assign(arith::MinUIOp::create(inner, loc, lo, hi));
  keys.getUpperBoundMutable().assign(hi);
}

/// The one-loop form's parts of equal work: the tiles of a part of
/// `partKeys` keys, at least 1, in 32 bits, computed once before the work
/// loop (null where no span gives the keys per tile). Part keys 0 give 1:
/// an item's tiles dealt to min(count, its tiles) parts, the parts as they
/// were without them (a tile each where tiles < count, the others empty).
Value equalPartTiles(OpBuilder &b, Location loc, scf::ForOp keys, Value partKeys) {
  Value tiles = tilesPerPart(b, keys, partKeys);
  if (!tiles)
    return {};
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value capped = arith::MinUIOp::create(b, loc, arith::MaxUIOp::create(b, loc, tiles, one),
                                        arith::ConstantIndexOp::create(b, loc, INT32_MAX));
  return arith::IndexCastUIOp::create(b, loc, b.getI32Type(), capped);
}

/// Part `split` of `count` of the loop's tiles [first, end) as the tiles
/// first + split, first + split + count, ...: every part gets its share of
/// any run of visited tiles, where contiguous parts would leave the
/// EMPTY tiles inside a range (a sink block and a distant window) to some
/// parts and the work to others. The one-loop (GPU) form's parts. With
/// `partTiles32` (parts of equal work, equalPartTiles), the item's n tiles
/// are dealt to min(count, max(1, ceil(n / partTiles32))) parts, the others
/// empty.
void strideByParts(scf::ForOp keys, Value split, Value count, Value partTiles32) {
  Location loc = keys.getLoc();
  OpBuilder inner(keys);
  Value first = keys.getLowerBound(), step = keys.getStep();
  Value end = arith::MaxUIOp::create(inner, loc, keys.getUpperBound(), first); // empty: first
  if (partTiles32) {
    Value one = arith::ConstantIndexOp::create(inner, loc, 1);
    Value tiles = arith::CeilDivUIOp::create(
        inner, loc, arith::SubIOp::create(inner, loc, end, first), step);
    // ceil(tiles / part tiles) in 32 bits (tile counts fit; a GPU divides
    // 64-bit integers in a subroutine that can take a stack frame).
    Value tiles32 = arith::IndexCastUIOp::create(
        inner, loc, inner.getI32Type(),
        arith::MinUIOp::create(inner, loc, tiles,
                               arith::ConstantIndexOp::create(inner, loc, INT32_MAX)));
    Value wanted = arith::IndexCastUIOp::create(
        inner, loc, inner.getIndexType(),
        arith::CeilDivUIOp::create(inner, loc, tiles32, partTiles32));
    Value used = arith::MinUIOp::create(inner, loc, count,
                                        arith::MaxUIOp::create(inner, loc, wanted, one));
    // Parts s >= used are empty (their range ends where it starts).
    Value idle = arith::CmpIOp::create(inner, loc, arith::CmpIPredicate::uge, split, used);
    end = arith::SelectOp::create(inner, loc, idle, first, end);
    count = used;
  }
  Value from = arith::AddIOp::create(inner, loc, first,
                                     arith::MulIOp::create(inner, loc, split, step));
  keys.getLowerBoundMutable().assign(arith::MinUIOp::create(inner, loc, from, end));
  keys.getUpperBoundMutable().assign(end);
  keys.getStepMutable().assign(arith::MulIOp::create(inner, loc, step, count));
}

/// The partial store of `store`'s state, for split `split`, before `b`'s
/// insertion point.
void storePartial(OpBuilder &b, TileWorkOp work, TileStoreOp store, Value split) {
  TileStorePartialOp::create(b, store.getLoc(), store.getAcc(), store.getMax(), store.getSum(),
                             work.getPartialAcc(), work.getPartialStats(), split,
                             store.getBatch(), store.getHead(), store.getSpan());
}

/// The merged state of `store`'s rows, before `b`'s insertion point.
TileMergePartialsOp mergePartials(OpBuilder &b, TileWorkOp work, TileStoreOp store) {
  return TileMergePartialsOp::create(
      b, store.getLoc(), store.getAcc().getType(), store.getMax().getType(),
      store.getSum().getType(), work.getPartialAcc(), work.getPartialStats(),
      work.getSplitCount(), store.getBatch(), store.getHead(), store.getSpan(),
      store.isSigmoid());
}

/// Phase 1: item (b, h, t * count + s) runs part s of its key range and
/// stores its state.
void buildPartialPhase(OpBuilder &b, TileWorkOp work, Value tiles) {
  Value count = work.getSplitCount();
  auto [copy, points, split] = copyWorkPerPart(b, work, tiles, count);
  narrowToPart(points.keys, split, count, work.getSplitPartKeys());
  OpBuilder inner(points.store);
  storePartial(inner, work, points.store, split);
  points.store.erase();
}

/// One loop, a loop of another shape: part 0 of each tile's items runs the
/// item whole, the other parts nothing.
void buildWholeInPartZero(OpBuilder &b, TileWorkOp work, Value tiles) {
  Location loc = work.getLoc();
  auto [copy, points, split] = copyWorkPerPart(b, work, tiles, work.getSplitCount());
  Block &body = copy.getBody().front();
  OpBuilder inner(copy.getContext());
  inner.setInsertionPointAfterValue(split);
  Value first = arith::CmpIOp::create(inner, loc, arith::CmpIPredicate::eq, split,
                                      arith::ConstantIndexOp::create(inner, loc, 0));
  auto ifOp = scf::IfOp::create(inner, loc, first, /*withElseRegion=*/false);
  Block *then = ifOp.thenBlock();
  for (Operation &op : llvm::make_early_inc_range(
           llvm::make_range(std::next(ifOp->getIterator()), body.end())))
    op.moveBefore(then->getTerminator());
}

/// Phase 2: each item merges its splits' states and stores them.
void buildMergePhase(OpBuilder &b, TileWorkOp work, Value tiles) {
  auto [copy, points] = copyWork(b, work, tiles);
  TileStoreOp store = points.store;
  OpBuilder inner(store);
  TileMergePartialsOp merged = mergePartials(inner, work, store);
  store.getAccMutable().assign(merged.getAcc());
  store.getMaxMutable().assign(merged.getMax());
  store.getSumMutable().assign(merged.getSum());
  points.keys.erase();
}

/// The ops above `state` (split-KV's merge-or-compute branch) that only its
/// compute side uses and that write nothing -- the query tile's load, the key
/// range, their spans and the accumulators' fills -- moved into that side:
/// the merge phase's items then read no query tile (on Hopper: no TMA and no
/// barrier wait for it).
void sinkIntoComputeSide(scf::IfOp state) {
  Region &compute = state.getElseRegion();
  llvm::SmallPtrSet<Operation *, 16> sunk;
  SmallVector<Operation *> order;
  for (Operation *op = state->getPrevNode(); op; op = op->getPrevNode()) {
    if (op->getNumRegions() || op->use_empty() ||
        !(isMemoryEffectFree(op) || hasSingleEffect<MemoryEffects::Read>(op)))
      continue;
    bool onlyThere = llvm::all_of(op->getUsers(), [&](Operation *user) {
      return sunk.contains(user) || compute.isAncestor(user->getParentRegion());
    });
    if (onlyThere) {
      sunk.insert(op);
      order.push_back(op);
    }
  }
  Block *into = &compute.front();
  for (Operation *op : order) // (reverse order: each before the ones after it)
    op->moveBefore(into, into->begin());
}

/// The one-loop form (see the header).
void splitWorkOneLoop(TileWorkOp work) {
  OpBuilder b(work);
  Location loc = work.getLoc();
  Value phase = work.getSplitPhase(), count = work.getSplitCount();
  Value tiles = work.getTiles();
  auto isPhase = [&](OpBuilder &at, int64_t n) -> Value {
    return arith::CmpIOp::create(at, loc, arith::CmpIPredicate::eq, phase,
                                 arith::ConstantIndexOp::create(at, loc, n));
  };
  Value merge = isPhase(b, 2);
  if (!findSplitPoints(work.getBody().front())) {
    // The runtime reads this off the module: such a kernel is never split.
    work->getParentOfType<ModuleOp>()->setAttr(heed::kSplitKVWholeAttr, b.getUnitAttr());
    auto ifOp = scf::IfOp::create(b, loc, merge, /*withElseRegion=*/true);
    b.setInsertionPoint(ifOp.elseBlock()->getTerminator());
    buildWholeInPartZero(b, work, tiles);
    work.erase();
    return;
  }
  // Phase 2 runs the loop's own items: one part each.
  Value parts = arith::SelectOp::create(b, loc, merge, arith::ConstantIndexOp::create(b, loc, 1),
                                        count);
  Value equal;
  if (Value partKeys = work.getSplitPartKeys())
    equal = equalPartTiles(b, loc, findSplitPoints(work.getBody().front()).keys, partKeys);
  auto [copy, points, split] = copyWorkPerPart(b, work, tiles, parts);
  scf::ForOp keys = points.keys;
  TileStoreOp store = points.store;
  strideByParts(keys, split, parts, equal);
  // The store's state: merged (phase 2) or computed over part s (phases 0
  // and 1; a sigmoid loop carries its accumulator only).
  OpBuilder inner(keys);
  SmallVector<Value> computed = {store.getAcc(), store.getMax(), store.getSum()};
  auto state = scf::IfOp::create(inner, loc, ValueRange(computed).getTypes(), merge,
                                 /*withElse=*/true);
  inner.setInsertionPointToStart(state.thenBlock());
  TileMergePartialsOp merged = mergePartials(inner, work, store);
  scf::YieldOp::create(inner, loc, merged.getResults());
  keys->moveBefore(state.elseBlock(), state.elseBlock()->end());
  inner.setInsertionPointToEnd(state.elseBlock());
  scf::YieldOp::create(inner, loc, computed);
  store.getAccMutable().assign(state.getResult(0));
  store.getMaxMutable().assign(state.getResult(1));
  store.getSumMutable().assign(state.getResult(2));
  // The store: partial in phase 1, final in phases 0 and 2.
  inner.setInsertionPoint(store);
  auto stores = scf::IfOp::create(inner, loc, isPhase(inner, 1), /*withElseRegion=*/true);
  store->moveBefore(stores.elseBlock()->getTerminator());
  inner.setInsertionPoint(stores.thenBlock()->getTerminator());
  storePartial(inner, work, store, split);
  sinkIntoComputeSide(state);
  work.erase();
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
    for (int phaseCase : {1, 2}) {
      Block *block = b.createBlock(&sw.getCaseRegions()[phaseCase - 1]);
      scf::YieldOp::create(b, loc);
      b.setInsertionPointToStart(block);
      if (phaseCase == 1)
        buildPartialPhase(b, work, tiles);
      else
        buildMergePhase(b, work, tiles);
    }
    Block *fallback = b.createBlock(&sw.getDefaultRegion());
    scf::YieldOp::create(b, loc);
    work->moveBefore(fallback->getTerminator());
  }
  work.getSplitPhaseMutable().clear();
  work.getSplitCountMutable().clear();
  work.getSplitPartKeysMutable().clear();
  work.getPartialAccMutable().clear();
  work.getPartialStatsMutable().clear();
}

struct AttnSplitKVPass : heed::impl::AttnSplitKVBase<AttnSplitKVPass> {
  using AttnSplitKVBase::AttnSplitKVBase;
  void runOnOperation() override {
    SmallVector<TileWorkOp> works;
    getOperation().walk([&](TileWorkOp work) {
      if (work.getSplitPhase())
        works.push_back(work);
    });
    for (TileWorkOp work : works)
      oneLoop ? splitWorkOneLoop(work) : splitWork(work);
  }
};

} // namespace
