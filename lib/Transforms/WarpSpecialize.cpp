// --attn-warp-specialize{stages=N producer-registers=P consumer-registers=R}:
// FlashAttention-3's K/V schedule as a rearrangement of the tile loop.
//
// Before (one work item, the key loop unstaged):
//   attn.tile.work ... {
//     <prologue>                       // q tile, kv_range, ...
//     scf.for %t = %first to %end step %s {
//       <header>                       // span, class, the guard's test
//       scf.if %guard { k, v loads; qk; softmax; pv }
//     }
//     <epilogue>
//   }
// After:
//   attn.tile.work ... {
//     attn.tile.warp_specialize producer {
//       <the prologue's ops the loop's bounds need>      (clones)
//       scf.for %t = %first to %end step %s iter_args(%n = 0) {
//         <the header's ops the guard and span need>     (clones)
//         scf.if %guard {
//           attn.tile.acquire_kv stage(%n mod N) round(%n / N)
//           attn.tile.copy_kv K, V ... stage(%n mod N) of N async
//         }
//         yield %guard ? %n + 1 : %n
//       }
//     } consumer {
//       <prologue>
//       scf.for ... iter_args(..., %n = 0) {
//         <header>
//         scf.if %guard {
//           attn.tile.wait_kv stage(%n mod N) round(%n / N)
//           k, v loads from slot %n mod N; qk; softmax; pv
//           attn.tile.release_kv stage(%n mod N)
//         }
//         yield ..., %guard ? %n + 1 : %n
//       }
//       <epilogue>
//     }
//   }
// Both sides count the tiles whose code runs (the guard: not EMPTY, inside
// the sequences), so tile n of either is in slot n mod N, its (n / N)-th
// fill, and EMPTY tiles are never copied. Branches around the loop (split-KV's
// phases) are copied into the producer as branches without results.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"
#include "heed/Transforms/KeyLoop.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/SetVector.h"

namespace heed {
#define GEN_PASS_DEF_ATTNWARPSPECIALIZE
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;
using heed::KeyLoop;

namespace {

/// Whether the producer may run a copy of `op`: it writes nothing, or
/// only the status word, which the copy leaves to the consumers' original
/// (cloneForProducer).
bool copyable(Operation *op) {
  return isMemoryEffectFree(op) || isa<TileRouteOp>(op) ||
         hasSingleEffect<MemoryEffects::Read>(op);
}

/// A copy of `op` for the producer: a route value's copy does not report
/// its out-of-range reads (the consumers' original does).
void cloneForProducer(OpBuilder &b, Operation &op, IRMapping &map) {
  Operation *copy = b.clone(op, map);
  if (auto route = dyn_cast<TileRouteOp>(copy))
    route.getStatusMutable().clear();
}

/// The producer's copy of a work item's code: the ops of the blocks on the
/// way to the key loop (`blocks`) that `seeds` depend on.
class ProducerSlice {
public:
  ProducerSlice(KeyLoop &key, TileWorkOp workOp) : key(key), workOp(workOp) {
    Block *work = &workOp.getBody().front();
    for (Operation *op = key.loop; op->getBlock() != work; op = op->getParentOp())
      path.insert(op->getParentOp());
    path.insert(key.loop);
    for (Operation *op : path)
      blocks.insert(op->getBlock());
  }

  /// Adds the ops that `v` is computed with (in the loop body: the tile's
  /// header; on the way to the loop: the prologue).
  LogicalResult need(Value v) {
    Operation *def = v.getDefiningOp();
    if (auto arg = dyn_cast<BlockArgument>(v))
      if (arg.getOwner() == key.loop.getBody() && arg != key.loop.getInductionVar())
        return key.loop.emitOpError()
               << "carries a value a key tile's span or guard is computed with: "
                  "--attn-warp-specialize cannot copy it into the producer";
    if (!def || path.contains(def) || !workOp->isAncestor(def))
      return success(); // an argument or induction variable, or defined above
                        // the work item: visible to both sides
    bool inBody = def->getBlock() == key.loop.getBody();
    if (!inBody && !blocks.contains(def->getBlock()))
      return def->emitOpError()
             << "computes the key loop's bounds or a key tile's span or guard inside a region "
                "of its own: --attn-warp-specialize cannot copy it into the producer";
    if (!(inBody ? body : outer).insert(def))
      return success();
    if (!copyable(def))
      return def->emitOpError()
             << "computes the key loop's bounds or a key tile's span or guard, and writes "
                "memory: --attn-warp-specialize cannot copy it into the producer";
    for (Value operand : def->getOperands())
      if (failed(need(operand)))
        return failure();
    llvm::SetVector<Value> above;
    getUsedValuesDefinedAbove(def->getRegions(), above);
    for (Value used : above)
      if (failed(need(used)))
        return failure();
    return success();
  }

  /// Emits the producer into `b`: the prologue's ops, the branches on the
  /// way and the loop (`emitLoop`, with the mapping of the copies so far).
  void emit(OpBuilder &b, Block *from, IRMapping &map,
            function_ref<void(OpBuilder &, IRMapping &)> emitLoop) {
    for (Operation &op : *from) {
      if (op.getNumRegions() && path.contains(&op)) {
        if (&op == key.loop.getOperation()) {
          emitLoop(b, map);
          return;
        }
        auto branch = cast<scf::IfOp>(op);
        bool inThen = branch.getThenRegion().isAncestor(key.loop->getParentRegion());
        auto copy = scf::IfOp::create(b, op.getLoc(), map.lookupOrDefault(branch.getCondition()),
                                      /*withElseRegion=*/!inThen);
        Block *dst = inThen ? &copy.getThenRegion().front() : &copy.getElseRegion().front();
        Block *src = inThen ? &branch.getThenRegion().front() : &branch.getElseRegion().front();
        OpBuilder inner = OpBuilder::atBlockTerminator(dst);
        emit(inner, src, map, emitLoop);
        return;
      }
      if (outer.contains(&op))
        cloneForProducer(b, op, map);
    }
  }

  /// Clones the header's ops (in order) for tile `tile`.
  void emitHeader(OpBuilder &b, Value tile, IRMapping &map) {
    map.map(key.loop.getInductionVar(), tile);
    for (Operation &op : *key.loop.getBody())
      if (body.contains(&op))
        cloneForProducer(b, op, map);
  }

  /// The key loop is now `loop` (rebuilt with another iter_arg).
  void replaceLoop(scf::ForOp loop) {
    path.remove(key.loop);
    path.insert(loop);
    key.loop = loop;
  }

  llvm::SetVector<Operation *> path; ///< the branches to the loop, and the loop
  llvm::SetVector<Block *> blocks;   ///< the blocks holding them

private:
  KeyLoop &key;
  TileWorkOp workOp;
  llvm::SetVector<Operation *> outer, body;
};

Value constIndex(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

/// (n mod N, n / N): tile n's slot and fill.
std::pair<Value, Value> slotOf(OpBuilder &b, Location loc, Value n, int64_t stages) {
  Value count = constIndex(b, loc, stages);
  return {arith::RemUIOp::create(b, loc, n, count), arith::DivUIOp::create(b, loc, n, count)};
}

/// guard ? n + 1 : n (guard null: n + 1).
Value nextCount(OpBuilder &b, Location loc, Value n, Value guard) {
  Value inc = arith::AddIOp::create(b, loc, n, constIndex(b, loc, 1));
  return guard ? Value(arith::SelectOp::create(b, loc, guard, inc, n)) : inc;
}

struct AttnWarpSpecializePass : heed::impl::AttnWarpSpecializeBase<AttnWarpSpecializePass> {
  using Base::Base;

  LogicalResult specialize(TileWorkOp work, KeyLoop key) {
    Location loc = key.k.getLoc();
    Block *workBody = &work.getBody().front();
    // The guard: the branch of the loop body holding the loads (its then
    // side), whose test both sides evaluate.
    auto guardIf = dyn_cast<scf::IfOp>(key.firstUse);
    for (TileLoadOp load : key.loads)
      if (guardIf && !guardIf.getThenRegion().isAncestor(load->getParentRegion()))
        guardIf = {};
    Value guard = guardIf ? guardIf.getCondition() : Value();

    ProducerSlice slice(key, work);
    for (Operation *op : slice.path)
      if (op != key.loop.getOperation() && !isa<scf::IfOp>(op))
        return op->emitOpError() << "holds the key loop: --attn-warp-specialize takes a key loop "
                                    "inside branches (scf.if) of the work item only";
    SmallVector<Value> seeds = {key.loop.getLowerBound(), key.loop.getUpperBound(),
                                key.loop.getStep(), key.span.getResult(), key.tensors[0],
                                key.tensors[1], key.k.getBatch(), key.k.getHead()};
    if (key.pages)
      seeds.push_back(key.pages);
    if (guard)
      seeds.push_back(guard);
    for (Operation *op : slice.path)
      if (auto branch = dyn_cast<scf::IfOp>(op))
        seeds.push_back(branch.getCondition());
    for (Value v : seeds)
      if (failed(slice.need(v)))
        return failure();

    // The consumers: the work item's code, counting the tiles it computes.
    OpBuilder b(work.getContext());
    b.setInsertionPointToStart(workBody);
    auto ws = TileWarpSpecializeOp::create(b, loc, uint64_t(int64_t(producerRegisters)),
                                           uint64_t(int64_t(consumerRegisters)), bool(pingpong));
    Block *producer = b.createBlock(&ws.getProducer());
    Block *consumer = b.createBlock(&ws.getConsumer());
    while (&workBody->back() != ws.getOperation())
      workBody->back().moveBefore(consumer, consumer->begin());

    IRRewriter rewriter(work.getContext());
    rewriter.setInsertionPoint(key.loop);
    unsigned counter = key.loop.getNumRegionIterArgs();
    Value zero = constIndex(rewriter, loc, 0);
    auto loop = cast<scf::ForOp>(*key.loop.replaceWithAdditionalYields(
        rewriter, ValueRange{zero}, /*replaceInitOperandUsesInLoop=*/false,
        [&](OpBuilder &yb, Location, ArrayRef<BlockArgument> carried) -> SmallVector<Value> {
          return {nextCount(yb, loc, carried[0], guard)};
        }));
    slice.replaceLoop(loop);
    Value n = loop.getRegionIterArgs()[counter];
    b.setInsertionPoint(key.firstUse);
    auto [stage, round] = slotOf(b, loc, n, stages);
    heed::readFromSlot(key, stage);
    // K (part 0) before the tile's code, V (part 1) before the first op
    // that reads a v tile: Q K^T need not wait for V. Without a guard (no
    // classifier), both before the op holding the loads.
    auto waitFor = [&](int64_t part) {
      TileWaitKVOp::create(b, loc, /*pending=*/0, stage, round, b.getI64IntegerAttr(part));
    };
    if (guardIf) {
      Block *code = &guardIf.getThenRegion().front();
      b.setInsertionPointToStart(code);
      waitFor(0);
      Operation *firstRead = code->getTerminator();
      for (TileLoadOp load : key.loads)
        if (load.getPart() == 1)
          for (Operation *user : load->getUsers())
            if (Operation *at = code->findAncestorOpInBlock(*user);
                at && at->isBeforeInBlock(firstRead))
              firstRead = at;
      b.setInsertionPoint(firstRead);
      waitFor(1);
      b.setInsertionPoint(code->getTerminator());
    } else {
      // The loads' users may follow the op holding them anywhere in the
      // body: the slot is released at the body's end.
      waitFor(0);
      waitFor(1);
      b.setInsertionPoint(loop.getBody()->getTerminator());
    }
    TileReleaseKVOp::create(b, loc, stage);

    // The producer: the same tiles, each copied into its slot.
    IRMapping map;
    OpBuilder pb = OpBuilder::atBlockEnd(producer);
    slice.emit(pb, consumer, map, [&](OpBuilder &lb, IRMapping &m) {
      scf::ForOp::create(
          lb, loc, m.lookupOrDefault(loop.getLowerBound()),
          m.lookupOrDefault(loop.getUpperBound()), m.lookupOrDefault(loop.getStep()),
          ValueRange{constIndex(lb, loc, 0)},
          [&](OpBuilder &in, Location, Value tile, ValueRange carried) {
            slice.emitHeader(in, tile, m);
            Value count = carried[0];
            Value visit = guard ? m.lookupOrDefault(guard) : Value();
            {
              OpBuilder::InsertionGuard g(in);
              if (visit) {
                auto ifOp = scf::IfOp::create(in, loc, visit, /*withElseRegion=*/false);
                in.setInsertionPoint(ifOp.getThenRegion().front().getTerminator());
              }
              auto [slot, fill] = slotOf(in, loc, count, stages);
              TileAcquireKVOp::create(in, loc, slot, fill);
              heed::copyKV(in, key, m.lookupOrDefault(key.span.getResult()), slot, stages,
                           /*async=*/true, &m);
            }
            scf::YieldOp::create(in, loc, nextCount(in, loc, count, visit));
          });
    });
    return success();
  }

  void runOnOperation() override {
    if (stages < 1 || stages > 4) {
      getOperation().emitError() << "attn-warp-specialize: stages must be in [1, 4], not "
                                 << stages.getValue();
      return signalPassFailure();
    }
    llvm::MapVector<Operation *, SmallVector<TileLoadOp>> keysOf; // work item -> k tiles
    getOperation().walk([&](TileLoadOp op) {
      if (cast<TileType>(op.getResult().getType()).getRole() == TileRole::K && !op.getStage())
        if (auto work = op->getParentOfType<TileWorkOp>())
          keysOf[work].push_back(op);
    });
    for (auto &[op, ks] : keysOf) {
      auto work = cast<TileWorkOp>(op);
      FailureOr<KeyLoop> key = heed::matchKeyLoop(ks.front());
      if (succeeded(key) && key->span.getTiling().isPatched()) {
        ks.front().emitOpError() << "is a k tile of a patch: --attn-warp-specialize takes flat "
                                    "tiles (patch-tiling=false)";
        return signalPassFailure();
      }
      if (failed(key)) {
        ks.front().emitOpError() << "is not a k tile of a flat tile loop whose k/v tiles read two "
                                    "tensors: --attn-warp-specialize cannot stage it";
        return signalPassFailure();
      }
      for (TileLoadOp k : ks)
        if (!llvm::is_contained(key->loads, k)) {
          k.emitOpError() << "is a second key loop's: --attn-warp-specialize takes one key "
                             "loop per work item";
          return signalPassFailure();
        }
      if (failed(specialize(work, *key)))
        return signalPassFailure();
    }
  }
};

} // namespace
