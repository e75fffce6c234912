// --attn-overlap-softmax: FlashAttention-3's intra-warpgroup overlap, as a
// rearrangement of the warp-specialized consumers' key loop (Hopper).
//
// Before (--attn-warp-specialize's consumers; the tile's code runs for the
// n-th computed tile, in slot s = n mod N, fill r = n / N):
//   scf.for %t ... iter_args(%acc, %m, %l, ..., %n) {
//     scf.if %guard {
//       wait_kv stage(s) round(r) {part = 0}; k, v tiles; %S = qk
//       <the softmax part: apply, softmax, ...>          -> %P, %alpha
//       wait_kv stage(s) round(r) {part = 1}
//       %acc2 = pv %P, %V, %acc, %alpha
//       release_kv stage(s)
//     }
//   }
// After: the loop also carries the previous computed tile's P, alpha, slot,
// fill, key tile and whether there is one. A tile issues its Q K^T, then the
// previous tile's P V, and runs its softmax while both are in flight:
//   scf.for %t ... iter_args(..., %P', %alpha', %s', %r', %t', %has) {
//     scf.if %guard {
//       scf.if %has {
//         wait_kv part 0 (s, r); %S = qk {async}
//         wait_kv stage(s') round(r') {part = 1}      // the previous tile's V
//         %o = pv %P', V(t', s'), %acc, %alpha' {async}
//         pass_turn                                    // (ping-pong only)
//         %S2 = mma_wait %S {pending = 1}             // Q K^T done, P V may run
//         <the softmax part on %S2>                    -> %P, %alpha
//         %acc2 = mma_wait %o {pending = 0}
//         release_kv stage(s'); take_turn
//       } else {                                      // the first computed tile
//         wait_kv part 0 (s, r); %S = qk {async}; pass_turn
//         %S2 = mma_wait %S {pending = 0}; <the softmax part>; take_turn
//       }                                             -> acc, m, l, P, alpha, s, r, t
//     }
//   }
//   %acc_final = scf.if %has { the last computed tile's P V, waited, released }
// The softmax of tile n runs beside the P V of tile n - 1 on the matrix units
// (FlashAttention-3, section 3.2). The carried P is in V's type where V is
// 16-bit (attn.tile.convert after the softmax, as FlashAttention-3 converts
// it): the product reads it so, and f32 P would hold twice the registers
// across the back edge. Rescaling the accumulator by alpha' stays
// with the P V op (before its products are issued). Inside the loop the
// carried accumulator is one computed tile behind the row statistics (it
// holds the tiles before n - 1, scaled to tile n - 1's max), so the tile's
// other code may not read it (such a loop is left as it is); after the
// last P V, past the loop, it is in step again. A slot is released one tile later than before, so
// this needs two slots or more (with one, a tile's fill would wait for its
// own predecessor's release). With ping-pong the turns become explicit: a
// warpgroup holds its turn from the end of one tile's code (take_turn)
// through the next tile's issued products (pass_turn); the prologue's take
// and the epilogue's pass of the Hopper lowering bracket the loop as before.
//
// Loops it does not recognize (no guard, several P V ops -- routed variants
// specialized per route --, ops after the P V but its release) are left as
// they are.
#include "heed/Transforms/BranchResults.h"
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"

namespace heed {
#define GEN_PASS_DEF_ATTNOVERLAPSOFTMAX
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// One computed tile's code in the consumers' key loop, as --attn-warp-
/// specialize leaves it.
struct TileCode {
  scf::ForOp loop;
  Block *block = nullptr;      ///< holds the code, ends in a yield
  TileWaitKVOp waitK, waitV;   ///< parts 0 and 1 of the tile's fill
  TileLoadOp vLoad;            ///< the v tile P V reads
  TileSpanOp vSpan;            ///< its key span (one coordinate: the key tile)
  TileQKOp qk;
  TilePVOp pv;
  TileReleaseKVOp release;
  unsigned acc = 0;            ///< the loop's iter_arg P V accumulates into
  SmallVector<Operation *> before, softmax; ///< the ops before Q K^T, between it and P V
};

bool definedOutside(Value v, Operation *op) {
  Region *r = v.getParentRegion();
  return !op->getRegion(0).isAncestor(r);
}

/// The tile code around `pv`, or failure where the loop is not one this
/// pass rearranges.
FailureOr<TileCode> matchTileCode(TilePVOp pv) {
  TileCode code;
  code.pv = pv;
  code.block = pv->getBlock();
  code.loop = pv->getParentOfType<scf::ForOp>();
  if (!code.loop || code.block == code.loop.getBody())
    return failure(); // (no guard: the release sits at the body's end)
  auto yield = dyn_cast<scf::YieldOp>(code.block->getTerminator());
  Operation *next = pv->getNextNode();
  code.release = dyn_cast_or_null<TileReleaseKVOp>(next);
  if (!yield || !code.release || code.release->getNextNode() != yield.getOperation())
    return failure();
  for (Operation &op : code.block->without_terminator()) {
    if (auto qk = dyn_cast<TileQKOp>(op)) {
      if (code.qk || qk.getAsync())
        return failure();
      code.qk = qk;
    } else if (auto w = dyn_cast<TileWaitKVOp>(op)) {
      if (!w.getStage() || !w.getRound() || !w.getPart())
        return failure();
      (*w.getPart() == 0 ? code.waitK : code.waitV) = w;
    } else if (isa<TilePVOp>(op) && &op != pv.getOperation()) {
      return failure();
    }
  }
  if (!code.qk || !code.waitK || !code.waitV || pv.getAsync() ||
      !code.waitK->isBeforeInBlock(code.qk) || code.release.getStage() != code.waitK.getStage() ||
      code.waitV.getStage() != code.waitK.getStage() ||
      code.waitV.getRound() != code.waitK.getRound())
    return failure();
  code.vLoad = pv.getV().getDefiningOp<TileLoadOp>();
  if (!code.vLoad || code.vLoad->getBlock() != code.block || code.vLoad.getStage() != code.waitK.getStage())
    return failure();
  code.vSpan = code.vLoad.getSpan().getDefiningOp<TileSpanOp>();
  if (!code.vSpan || code.vSpan.getCoords().size() != 1)
    return failure();
  // The epilogue after the loop re-reads the last tile's V: what the load
  // and its span read (but the tile and the slot) must be there.
  for (OpOperand &o : code.vLoad->getOpOperands())
    if (o.get() != code.vLoad.getSpan() && o.get() != code.vLoad.getStage() &&
        !definedOutside(o.get(), code.loop))
      return failure();
  for (Value v : code.vSpan->getOperands())
    if (v != code.vSpan.getCoords()[0] && !definedOutside(v, code.loop))
      return failure();
  if (pv.getRows() && !definedOutside(pv.getRows(), code.loop))
    return failure();
  // The accumulator: a loop iter_arg in, its next value out through the
  // branches' yields.
  auto acc = dyn_cast<BlockArgument>(pv.getAcc());
  if (!acc || acc.getOwner() != code.loop.getBody() || acc.getArgNumber() == 0)
    return failure();
  code.acc = acc.getArgNumber() - 1;
  Value out = pv.getResult();
  for (Block *b = code.block;; b = b->getParentOp()->getBlock()) {
    if (!out.hasOneUse() || *out.getUsers().begin() != b->getTerminator())
      return failure();
    unsigned at = out.getUses().begin()->getOperandNumber();
    if (b == code.loop.getBody()) {
      if (at != code.acc)
        return failure();
      break;
    }
    auto parent = dyn_cast<scf::IfOp>(b->getParentOp());
    if (!parent || !parent.elseBlock())
      return failure();
    out = parent.getResult(at);
  }
  for (Operation &op : code.block->without_terminator()) {
    if (&op == pv.getOperation() || &op == code.release.getOperation() ||
        &op == code.waitV.getOperation() || &op == code.vLoad.getOperation() ||
        &op == code.qk.getOperation())
      continue;
    (op.isBeforeInBlock(code.qk) ? code.before : code.softmax).push_back(&op);
  }
  // The tile's other code may not read the v tile (it is the previous
  // tile's now) nor the accumulator (a tile behind, see the file comment),
  // at any depth.
  auto reads = [&](Operation *op, Value v) {
    return op->walk([&](Operation *inner) {
               return llvm::is_contained(inner->getOperands(), v) ? WalkResult::interrupt()
                                                                   : WalkResult::advance();
             }).wasInterrupted();
  };
  for (Operation *op : llvm::concat<Operation *>(code.before, code.softmax))
    if (reads(op, code.vLoad.getResult()) || reads(op, pv.getAcc()))
      return failure();
  return code;
}

/// What the loop carries from one computed tile to the next.
struct Carried {
  Value probs, alpha, slot, round, tile, has;
  SmallVector<Value> values() const {
    SmallVector<Value> v = {probs};
    if (alpha)
      v.push_back(alpha);
    llvm::append_range(v, ValueRange{slot, round, tile, has});
    return v;
  }
  static Carried of(ValueRange v, bool withAlpha) {
    Carried c;
    size_t i = 0;
    c.probs = v[i++];
    if (withAlpha)
      c.alpha = v[i++];
    c.slot = v[i++];
    c.round = v[i++];
    c.tile = v[i++];
    c.has = v[i++];
    return c;
  }
};

class Overlap {
public:
  Overlap(TileCode &code, bool pingpong) : code(code), pingpong(pingpong) {}

  void run() {
    Location loc = code.pv.getLoc();
    IRRewriter rewriter(code.loop.getContext());
    rewriter.setInsertionPoint(code.loop);
    bool withAlpha = static_cast<bool>(code.pv.getAlpha());
    Carried init;
    init.probs = TileFillOp::create(rewriter, loc, carriedProbs(), rewriter.getF32FloatAttr(0));
    if (withAlpha)
      init.alpha = TileFillOp::create(rewriter, loc, code.pv.getAlpha().getType(),
                                      rewriter.getF32FloatAttr(1));
    Value zero = arith::ConstantIndexOp::create(rewriter, loc, 0);
    init.slot = init.round = init.tile = zero;
    init.has = arith::ConstantIntOp::create(rewriter, loc, 0, 1);
    unsigned first = code.loop.getNumRegionIterArgs();
    auto loop = cast<scf::ForOp>(*code.loop.replaceWithAdditionalYields(
        rewriter, init.values(), /*replaceInitOperandUsesInLoop=*/false,
        [&](OpBuilder &, Location, ArrayRef<BlockArgument> args) {
          return SmallVector<Value>(args.begin(), args.end());
        }));
    code.loop = loop;
    Carried prev = Carried::of(loop.getRegionIterArgs().drop_front(first), withAlpha);
    Value acc = loop.getRegionIterArgs()[code.acc];

    // After the loop: the last computed tile's P V (built first: it clones
    // the tile's ops, which the rewrite below erases).
    OpBuilder b(loop->getContext());
    b.setInsertionPointAfter(loop);
    Carried last = Carried::of(loop.getResults().drop_front(first), withAlpha);
    Value result = loop.getResult(code.acc);
    auto tail = scf::IfOp::create(b, loc, result.getType(), last.has, /*withElseRegion=*/true);
    {
      OpBuilder tb = OpBuilder::atBlockBegin(tail.thenBlock());
      Value issued = previousPV(tb, result, last);
      Value done = wait(tb, issued, 0);
      cloneWithStage(tb, code.release, last.slot);
      scf::YieldOp::create(tb, loc, done);
      OpBuilder eb = OpBuilder::atBlockBegin(tail.elseBlock());
      scf::YieldOp::create(eb, loc, result);
    }
    result.replaceUsesWithIf(tail.getResult(0), [&](OpOperand &use) {
      return !tail->isAncestor(use.getOwner());
    });

    // The tile's code: both forms in a branch on whether a tile came before.
    auto yield = cast<scf::YieldOp>(code.block->getTerminator());
    SmallVector<Operation *> old; // (replaced by the branch below)
    for (Operation &op : code.block->without_terminator())
      old.push_back(&op);
    b.setInsertionPoint(yield);
    SmallVector<Type> types(yield.getOperandTypes());
    Carried next{code.pv.getProbs(), code.pv.getAlpha(), code.waitK.getStage(),
                 code.waitK.getRound(), code.vSpan.getCoords()[0], Value()};
    SmallVector<Value> nextValues = next.values();
    nextValues.pop_back(); // (whether a tile came: true, below)
    for (Value v : nextValues)
      types.push_back(v == next.probs ? carriedProbs() : v.getType());
    auto branch = scf::IfOp::create(b, loc, types, prev.has, /*withElseRegion=*/true);
    emitTile(OpBuilder::atBlockBegin(branch.thenBlock()), yield, acc, prev, next, true);
    emitTile(OpBuilder::atBlockBegin(branch.elseBlock()), yield, acc, prev, next, false);
    SmallVector<Value> out(branch.getResults());
    out.push_back(arith::ConstantIntOp::create(b, loc, 1, 1));
    // The tile's own values in place; the carried ones leave the
    // enclosing branches as more results (the other sides keep what came
    // in), into the loop's carried operands.
    SmallVector<Value> carriedIn = prev.values();
    size_t kept = out.size() - carriedIn.size();
    SmallVector<Value> extra(ArrayRef<Value>(out).drop_front(kept));
    yield->setOperands(ArrayRef<Value>(out).take_front(kept));
    for (Operation *op : llvm::reverse(old))
      op->erase();
    for (Block *block = code.block; block != loop.getBody();) {
      auto parent = cast<scf::IfOp>(block->getParentOp());
      bool inThen = block == parent.thenBlock();
      ValueRange mine(extra), theirs(carriedIn);
      auto grown = heed::addBranchResults(parent, inThen ? mine : theirs, inThen ? theirs : mine);
      block = grown->getBlock();
      ValueRange up = grown.getResults().take_back(carriedIn.size());
      if (block != loop.getBody()) {
        extra.assign(up.begin(), up.end());
        continue;
      }
      auto loopYield = cast<scf::YieldOp>(block->getTerminator());
      for (auto [i, v] : llvm::enumerate(up))
        loopYield->setOperand(first + i, v);
    }

  }

private:
  TileCode &code;
  bool pingpong;

  /// The type of the P the loop carries: V's where V is 16-bit (the
  /// product reads P so: half the registers of f32 P across the loop's
  /// back edge, the same rounded values), else P's own.
  TileType carriedProbs() const {
    auto p = cast<TileType>(code.pv.getProbs().getType());
    Type v = cast<TileType>(code.pv.getV().getType()).getElementType();
    if (!v.isF16() && !v.isBF16())
      return p;
    return TileType::get(p.getContext(), p.getShape(), v, p.getRole());
  }

  static Value wait(OpBuilder &b, Value v, int64_t pending) {
    return TileMMAWaitOp::create(b, v.getLoc(), TypeRange{v.getType()}, ValueRange{v},
                                 b.getI64IntegerAttr(pending))
        .getResult(0);
  }
  static Operation *cloneWithStage(OpBuilder &b, Operation *op, Value stage) {
    Operation *copy = b.clone(*op);
    if (auto w = dyn_cast<TileWaitKVOp>(copy))
      w.getStageMutable().assign(stage);
    else if (auto r = dyn_cast<TileReleaseKVOp>(copy))
      r.getStageMutable().assign(stage);
    else if (auto l = dyn_cast<TileLoadOp>(copy))
      l.getStageMutable().assign(stage);
    return copy;
  }

  /// The previous tile's P V (issued, not waited for) into `acc`: its V
  /// fill waited for, its v tile read from its slot.
  Value previousPV(OpBuilder &b, Value acc, const Carried &prev) {
    auto waitV = cast<TileWaitKVOp>(cloneWithStage(b, code.waitV, prev.slot));
    waitV.getRoundMutable().assign(prev.round);
    auto span = cast<TileSpanOp>(b.clone(*code.vSpan));
    span.getCoordsMutable().assign(prev.tile);
    span.setInBounds(false); // (whether that tile was FULL is not carried)
    auto v = cast<TileLoadOp>(cloneWithStage(b, code.vLoad, prev.slot));
    v.getSpanMutable().assign(span.getResult());
    auto pv = cast<TilePVOp>(b.clone(*code.pv));
    pv.getProbsMutable().assign(prev.probs);
    pv.getVMutable().assign(v.getResult());
    pv.getAccMutable().assign(acc);
    if (prev.alpha)
      pv.getAlphaMutable().assign(prev.alpha);
    pv.setAsync(true);
    return pv.getResult();
  }

  /// One form of the tile's code at `b`: with the previous tile's P V
  /// overlapping this tile's softmax (`withPrevious`), or the first tile's.
  void emitTile(OpBuilder b, scf::YieldOp yield, Value acc, const Carried &prev,
                const Carried &next, bool withPrevious) {
    Location loc = code.pv.getLoc();
    IRMapping map;
    for (Operation *op : code.before)
      b.clone(*op, map);
    auto qk = cast<TileQKOp>(b.clone(*code.qk, map));
    qk.setAsync(true);
    Value issued = withPrevious ? previousPV(b, acc, prev) : Value();
    if (pingpong)
      TilePassTurnOp::create(b, loc);
    map.map(code.qk.getResult(), wait(b, qk.getResult(), withPrevious ? 1 : 0));
    for (Operation *op : code.softmax)
      b.clone(*op, map);
    Value accOut = acc;
    if (withPrevious) {
      accOut = wait(b, issued, 0);
      cloneWithStage(b, code.release, prev.slot);
    }
    // P narrowed once the previous P V is done: not before, where the new P
    // could take the registers of the P that product still reads (ptxas
    // then serializes every wgmma, C7513).
    Value probs = map.lookupOrDefault(next.probs);
    if (probs.getType() != carriedProbs())
      probs = TileConvertOp::create(b, loc, carriedProbs(), probs);
    if (pingpong)
      TileTakeTurnOp::create(b, loc);
    SmallVector<Value> out;
    for (Value v : yield.getOperands())
      out.push_back(v == code.pv.getResult() ? accOut : map.lookupOrDefault(v));
    SmallVector<Value> nextValues = next.values();
    nextValues.pop_back();
    for (Value v : nextValues)
      out.push_back(v == next.probs ? probs : map.lookupOrDefault(v));
    scf::YieldOp::create(b, loc, out);
  }
};

struct AttnOverlapSoftmax : heed::impl::AttnOverlapSoftmaxBase<AttnOverlapSoftmax> {
  void runOnOperation() override {
    SmallVector<std::pair<TilePVOp, TileWarpSpecializeOp>> found;
    getOperation().walk([&](TileWarpSpecializeOp ws) {
      // Two slots or more: a slot is released one tile later.
      int64_t stages = 0;
      ws.getProducer().walk([&](TileCopyKVOp copy) { stages = copy.getStages(); });
      if (stages < 2)
        return;
      SmallVector<TilePVOp> pvs;
      ws.getConsumer().walk([&](TilePVOp pv) { pvs.push_back(pv); });
      if (pvs.size() == 1)
        found.push_back({pvs.front(), ws});
    });
    for (auto [pv, ws] : found) {
      FailureOr<TileCode> code = matchTileCode(pv);
      if (failed(code))
        continue;
      Overlap(*code, ws.getPingpong()).run();
    }
  }
};

} // namespace
