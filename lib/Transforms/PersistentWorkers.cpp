// --attn-persistent-workers{l2-bytes=N}: a persistent, longest-first
// schedule of --attn-warp-specialize's work items (FlashAttention-3's tile
// scheduler; issue 16).
//
// Before (one thread block per work item):
//   attn.tile.work %B, %H, %T {
//   ^bb0(%b, %h, %t):
//     attn.tile.warp_specialize producer {
//       <P(b, h, t)>   // its key loop counts the tiles it copies from 0
//     } consumer {
//       <C(b, h, t)>   // its key loop counts the tiles it computes from 0
//     }
//   }
// After (as many blocks as the device holds at once; each a worker walking
// the items worker, worker + workers, ...):
//   attn.tile.work %B, %H, %T {persistent} {
//   ^bb0(%worker, %workers):
//     %items = B x H x T; %section = the (b, h) pairs whose K/V fit l2-bytes
//     attn.tile.warp_specialize producer {
//       scf.for %i = %worker to %items step %workers iter_args(%n = 0) {
//         %b, %h, %t = attn.tile.work_item %i of %B, %H, %T section(%section)
//         <P(b, h, t), its key loop's count starting at %n>   -> %n'
//       }
//     } consumer {
//       scf.for %i = ... iter_args(%n = 0, %j = 0) {
//         %b, %h, %t = attn.tile.work_item ...
//         <C(b, h, t): count from %n; its q tile `round(%j)`>  -> %n', %j + 1
//       }
//     }
//   }
// Both sides carry their count of K/V tiles across items, so tile n of the
// whole walk is still in slot n mod N, fill n / N (what the producer and
// the consumers agree on). A count computed inside branches (split-KV's
// phases) leaves them as a new result of each branch (the other side
// passing it through). The q tile's round is how many q tiles the worker
// loaded before: a target that loads q asynchronously (Hopper's TMA) waits
// for that phase of its barrier and starts the load once the previous q
// tile's readers are done.
//
// The items go longest first: attn.tile.work_item walks the last query
// tiles first (under causal-like masks the longest), in sections of (b, h)
// pairs whose K and V take at most l2-bytes (0: one section), so that what
// runs together shares K/V in the L2 cache; the short items fill the
// workers' tails. The work range (the runtime ABI's) is dropped: a GPU runs
// every item. Work items it does not recognize (no warp_specialize, a
// counter it cannot find or that does not start at 0, a q load inside a
// loop, two q loads, split-KV's operands not yet consumed) stay one per
// block, and then every work item of the module does (the runtime launches
// the module's kernel one way or the other).
#include "heed/Transforms/BranchResults.h"
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"

namespace heed {
#define GEN_PASS_DEF_ATTNPERSISTENTWORKERS
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

Value constIndex(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

/// A side's key loop and the iter_arg counting its tiles: the loop holding
/// a slot op (acquire_kv: producer; wait_kv: consumers) whose round is
/// count / N.
struct Counter {
  scf::ForOp loop;
  unsigned arg = 0;
};

template <typename SlotOp>
FailureOr<Counter> findCounter(Region &region) {
  Counter found;
  region.walk([&](SlotOp op) {
    Value round = op.getRound();
    auto div = round ? round.template getDefiningOp<arith::DivUIOp>() : arith::DivUIOp();
    auto arg = div ? dyn_cast<BlockArgument>(div.getLhs()) : BlockArgument();
    auto loop = arg ? dyn_cast<scf::ForOp>(arg.getOwner()->getParentOp()) : scf::ForOp();
    if (!loop || arg == loop.getInductionVar())
      return WalkResult::advance();
    found = {loop, unsigned(arg.getArgNumber() - 1)};
    return WalkResult::interrupt();
  });
  if (!found.loop)
    return failure();
  return found;
}

/// Whether the ops from `v`'s block up to `top` are scf.if branches only.
bool onlyBranchesBetween(Operation *op, Block *top) {
  for (; op->getBlock() != top; op = op->getParentOp())
    if (!isa<scf::IfOp>(op->getParentOp()))
      return false;
  return true;
}

/// `v` (an index defined in a block nested in scf.if branches below `top`)
/// carried out to `top`: each branch on the way gets one more result, its
/// other side yielding `passThrough`.
Value carryOut(Value v, Operation *from, Value passThrough, Block *top) {
  for (Operation *op = from; op->getBlock() != top;) {
    auto branch = cast<scf::IfOp>(op->getParentOp());
    bool inThen = branch.getThenRegion().isAncestor(op->getParentRegion());
    auto grown = heed::addBranchResults(branch, inThen ? v : passThrough,
                                        inThen ? passThrough : v);
    v = grown.getResults().back();
    op = grown;
  }
  return v;
}

struct AttnPersistentWorkers : heed::impl::AttnPersistentWorkersBase<AttnPersistentWorkers> {
  using Base::Base;

  /// The (b, h) pairs per section: those whose K and V fit l2-bytes (at
  /// least one; a GQA group's query heads share theirs).
  Value sectionPairs(OpBuilder &b, Location loc, TileWorkOp work, TileCopyKVOp copy) {
    Value pairs = arith::MulIOp::create(b, loc, work.getBatches(), work.getHeads());
    if (l2Bytes <= 0)
      return pairs;
    auto key = cast<MemRefType>(copy.getKey().getType());
    auto value = cast<MemRefType>(copy.getValue().getType());
    unsigned seqDim = copy.getLayout() == Layout::BSHD ? 1 : 2;
    unsigned headDim = copy.getLayout() == Layout::BSHD ? 2 : 1;
    int64_t rowBytes = key.getDimSize(3) * (key.getElementTypeBitWidth() / 8) +
                       value.getDimSize(3) * (value.getElementTypeBitWidth() / 8);
    // (A packed sequence's view, made in its item, has its tensor's sizes.)
    Value keys = copy.getKey();
    if (auto view = keys.getDefiningOp<memref::ReinterpretCastOp>())
      keys = view.getSource();
    Value seq = memref::DimOp::create(b, loc, keys, seqDim);
    // (A paged cache's: its page table's pages per entry x the page size.)
    if (Value table = copy.getPageTable())
      seq = arith::MulIOp::create(b, loc, memref::DimOp::create(b, loc, table, 1), seq);
    Value headsKV = memref::DimOp::create(b, loc, keys, headDim);
    Value one = constIndex(b, loc, 1);
    Value group = arith::MaxUIOp::create(
        b, loc, arith::DivUIOp::create(b, loc, work.getHeads(), arith::MaxUIOp::create(b, loc, headsKV, one)),
        one);
    Value perHead = arith::MaxUIOp::create(
        b, loc, arith::MulIOp::create(b, loc, seq, constIndex(b, loc, rowBytes)), one);
    Value fit = arith::DivUIOp::create(
        b, loc, arith::MulIOp::create(b, loc, constIndex(b, loc, l2Bytes), group), perHead);
    return arith::MaxUIOp::create(b, loc, arith::MinUIOp::create(b, loc, fit, pairs), one);
  }

  /// Wraps `block`'s ops in the worker's loop over the items. `counter`'s
  /// count starts at the loop's carried count; `q` (consumers), if any,
  /// gets its round.
  void walkItems(Block *block, Counter counter, TileLoadOp q, TileWorkOp work, Value worker,
                 Value workers, Value items, Value section) {
    Location loc = work.getLoc();
    OpBuilder b = OpBuilder::atBlockBegin(block);
    Value zero = constIndex(b, loc, 0);
    SmallVector<Value> inits = {zero};
    if (q)
      inits.push_back(zero);
    auto loop = scf::ForOp::create(b, loc, worker, items, workers, inits);
    Block *body = loop.getBody();
    // Everything after the loop moves into it.
    while (&block->back() != loop.getOperation())
      block->back().moveBefore(body, body->begin());
    b.setInsertionPointToStart(body);
    Type idx = b.getIndexType();
    auto item = TileWorkItemOp::create(b, loc, TypeRange{idx, idx, idx}, loop.getInductionVar(),
                                       work.getBatches(),
                                       work.getHeads(), work.getTiles(), section);
    Block *workBody = &work.getBody().front();
    for (unsigned i = 0; i < 3; ++i)
      workBody->getArgument(i).replaceUsesWithIf(item->getResult(i), [&](OpOperand &use) {
        return loop->isAncestor(use.getOwner());
      });
    Value count = loop.getRegionIterArgs()[0];
    counter.loop.getInitArgsMutable()[counter.arg].set(count);
    Value done = carryOut(counter.loop.getResult(counter.arg), counter.loop, count, body);
    // (The yield's operands follow the branches carryOut replaces.)
    OpBuilder yb = OpBuilder::atBlockEnd(body);
    auto yield = scf::YieldOp::create(yb, loc, ValueRange{done});
    if (q) {
      Value round = loop.getRegionIterArgs()[1];
      q.getRoundMutable().assign(round);
      OpBuilder after(q->getContext());
      after.setInsertionPointAfter(q);
      Value next = arith::AddIOp::create(after, loc, round, constIndex(after, loc, 1));
      yield.getResultsMutable().append(round);
      yield->setOperand(1, carryOut(next, next.getDefiningOp(), round, body));
    }
  }

  /// What the rewrite of one work item needs, found before anything changes.
  struct Plan {
    TileWorkOp work;
    TileWarpSpecializeOp ws;
    Counter produced, computed;
    TileCopyKVOp copy;
    TileLoadOp q;
  };

  /// The work item's plan, or failure where it is not one the pass takes.
  FailureOr<Plan> recognize(TileWorkOp work) {
    Block *workBody = &work.getBody().front();
    auto ws = dyn_cast<TileWarpSpecializeOp>(&workBody->front());
    if (!ws || workBody->getOperations().size() != 1 || work.getSplitPhase() ||
        work.getPersistent())
      return failure();
    FailureOr<Counter> produced = findCounter<TileAcquireKVOp>(ws.getProducer());
    FailureOr<Counter> computed = findCounter<TileWaitKVOp>(ws.getConsumer());
    TileCopyKVOp copy;
    ws.getProducer().walk([&](TileCopyKVOp op) { copy = op; });
    SmallVector<TileLoadOp> qs;
    ws.getConsumer().walk([&](TileLoadOp load) {
      if (cast<TileType>(load.getResult().getType()).getRole() == TileRole::Q)
        qs.push_back(load);
    });
    Block *producer = &ws.getProducer().front(), *consumer = &ws.getConsumer().front();
    // Each count starts at 0 (--attn-warp-specialize's): the carried count
    // takes its place.
    auto startsAtZero = [](Counter c) {
      return matchPattern(c.loop.getInitArgs()[c.arg], m_Zero());
    };
    if (failed(produced) || failed(computed) || !copy || qs.size() > 1 ||
        !startsAtZero(*produced) || !startsAtZero(*computed) ||
        !onlyBranchesBetween(produced->loop, producer) ||
        !onlyBranchesBetween(computed->loop, consumer) ||
        (!qs.empty() && !onlyBranchesBetween(qs.front(), consumer)))
      return failure();
    return Plan{work, ws, *produced, *computed, copy, qs.empty() ? TileLoadOp() : qs.front()};
  }

  void persist(Plan plan) {
    TileWorkOp work = plan.work;
    Block *workBody = &work.getBody().front();
    // The grid's operands come from outside the work item: both sides see them.
    Location loc = work.getLoc();
    OpBuilder b(plan.ws);
    Value worker = workBody->addArgument(b.getIndexType(), loc);
    Value workers = workBody->addArgument(b.getIndexType(), loc);
    Value items = arith::MulIOp::create(
        b, loc, arith::MulIOp::create(b, loc, work.getBatches(), work.getHeads()),
        work.getTiles());
    Value section = sectionPairs(b, loc, work, plan.copy);
    walkItems(&plan.ws.getProducer().front(), plan.produced, TileLoadOp(), work, worker, workers,
              items, section);
    walkItems(&plan.ws.getConsumer().front(), plan.computed, plan.q, work, worker, workers,
              items, section);
    // (Every use of the item's ids is inside the two walks now.)
    workBody->eraseArguments(0, 3);
    // (A GPU runs the whole grid: the work range is the runtime ABI's, all
    // items; the walks cover them.)
    work.getBeginMutable().clear();
    work.getEndMutable().clear();
    work.setPersistent(true);
  }

  void runOnOperation() override {
    // All or nothing: the runtime launches the module's kernel either as
    // workers or as a block per item (heed::kPersistentAttr).
    SmallVector<Plan> plans;
    WalkResult walk = getOperation().walk([&](TileWorkOp work) {
      FailureOr<Plan> plan = recognize(work);
      if (failed(plan))
        return WalkResult::interrupt();
      plans.push_back(*plan);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted() || plans.empty())
      return; // (each work item stays one per block)
    for (Plan &plan : plans)
      persist(plan);
    getOperation()->setAttr(heed::kPersistentAttr, UnitAttr::get(&getContext()));
  }
};

} // namespace
