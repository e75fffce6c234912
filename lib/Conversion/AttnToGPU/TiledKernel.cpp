// The FlashAttention-2 tile loop both matrix-core kernels share (see
// GPUKernel.h): grid (ceil(Sq / blockRows), Hq, B); each block loads its Q
// rows once, walks the KV tiles the mask analysis cannot rule out, and per
// tile computes S on the matrix cores, evaluates the variant's score and
// mask per accumulator element (with (q, kv) from the fragment layout),
// updates the online softmax (row max and sum across the lanes holding a
// row), and accumulates O += P V; then normalizes and writes O and lse.
// Masked rows give zeros and lse -inf, like the CPU kernel.
#include "GPUKernel.h"

#include "../TileCommon/BlockSearch.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"

#include <cmath>

using namespace mlir;
using heed::attn::VariantOp;

namespace heed::gpu_kernel {

void TiledKernelLowering::stageTile(Value global, Value smem, ValueRange prefix, Value hd,
                                    Value row0, Value seq, int64_t rows, int64_t width,
                                    bool transposed) {
  int64_t chunks = rows * width / 8;
  auto loop = scf::ForOp::create(b, loc, tid, idx(chunks), idx(shape.threads()));
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = loop.getInductionVar();
  Value r = arith::DivUIOp::create(b, loc, i, idx(width / 8));
  Value c = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, i, idx(width / 8)), idx(8));
  Value pos = arith::AddIOp::create(b, loc, row0, r);
  Value in = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, pos, seq);
  VectorType v8 = VectorType::get({8}, elt);
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{v8}, in, true);
  {
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, loc,
                         vector::LoadOp::create(b, loc, v8, global, at(batch, hd, pos, c)).getResult());
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(
        b, loc,
        arith::ConstantOp::create(b, loc, DenseElementsAttr::get(v8, b.getZeroAttr(elt)))
            .getResult());
  }
  SmallVector<Value> indices(prefix.begin(), prefix.end());
  if (!transposed) {
    indices.append({r, c});
    vector::StoreOp::create(b, loc, ifOp.getResult(0), smem, indices);
    return;
  }
  for (int64_t e = 0; e < 8; ++e) {
    SmallVector<Value> at = indices;
    at.append({arith::AddIOp::create(b, loc, c, idx(e)), r});
    memref::StoreOp::create(
        b, loc, vector::ExtractOp::create(b, loc, ifOp.getResult(0), ArrayRef<int64_t>{e}), smem,
        at);
  }
}

Value TiledKernelLowering::classify(Value qLo, Value qHi, Value kvLo, Value kvHi) {
  // Summaries (document ids) come from the runtime as kernel arguments.
  if (variant.getBlocks().empty() ||
      op.getSummaries().size() != variant.getSummarizedBuffers().size())
    return {};
  Block &block = variant.getBlocks().front();
  IRMapping map;
  Value args[] = {batch, head, qLo, qHi, kvLo, kvHi};
  for (unsigned i = 0; i < VariantOp::kBlocksIndexArgs; ++i)
    map.map(block.getArgument(i), args[i]);
  for (auto [i, buf] : llvm::enumerate(op.getBuffers()))
    map.map(block.getArgument(VariantOp::kBlocksIndexArgs + i), buf);
  for (auto [i, summary] : llvm::enumerate(op.getSummaries()))
    map.map(block.getArgument(VariantOp::kBlocksIndexArgs + op.getBuffers().size() + i), summary);
  for (Operation &inner : block.without_terminator()) {
    if (auto r = dyn_cast<heed::attn::RouteOp>(inner)) {
      map.map(r.getResult(), route);
      continue;
    }
    b.clone(inner, map);
  }
  return map.lookup(cast<heed::attn::YieldOp>(block.getTerminator()).getValue());
}

LogicalResult TiledKernelLowering::emit() {
  Value q = op.getQuery(), k = op.getKey(), v = op.getValue(), out = op.getOut();
  Value lse = op.getLse();
  auto qType = cast<MemRefType>(q.getType());
  D = qType.getDimSize(3);
  Dv = cast<MemRefType>(v.getType()).getDimSize(3);
  elt = qType.getElementType();
  if (variant.isGated())
    return op.emitOpError() << "gated variants are not lowered to the GPU yet";
  if (std::string why = unsupported(); !why.empty())
    return op.emitOpError() << why << "; use --attn-lower-to-gpu";

  seqQ = dim(q, 2);
  seqKV = dim(k, 2);
  Value headsQ = dim(q, 1), headsKV = dim(k, 1);
  Value group = arith::DivUIOp::create(b, loc, headsQ, headsKV);
  Value qTile = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  head = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  batch = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  headKV = arith::DivUIOp::create(b, loc, head, group);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  wave = arith::DivUIOp::create(b, loc, tid, idx(shape.waveSize));
  lane = arith::RemUIOp::create(b, loc, tid, idx(shape.waveSize));
  Value q0 = arith::MulIOp::create(b, loc, qTile, idx(shape.blockRows()));
  if (variant.isRouted())
    route = inlineRegion(variant.getRoute(), {batch, head});
  begin();
  loadQ(q0);
  const unsigned slots = shape.rowSlots;
  SmallVector<Value> rowQ;
  for (unsigned s = 0; s < slots; ++s)
    rowQ.push_back(arith::AddIOp::create(b, loc, q0, slotRow(s)));

  // Loop state: running max and partial sum per row slot, O accumulators.
  float scale = op.getScale().convertToFloat();
  Value negInf = f32(-INFINITY);
  SmallVector<Value> init(slots, negInf);
  init.append(slots, f32(0));
  SmallVector<Value> zeroO = zeroOutput();
  init.append(zeroO.begin(), zeroO.end());
  const int64_t keys = shape.keysPerTile;
  Value numTiles = arith::CeilDivUIOp::create(b, loc, seqKV, idx(keys));
  Value lastQ = arith::SubIOp::create(b, loc, seqQ, idx(1));
  Value lastKV = arith::SubIOp::create(b, loc, seqKV, idx(1));

  // Visit only the KV tiles between the first and last the mask may reach
  // for this block's rows (the analysis' classifier, by binary search).
  Value first = idx(0), end = numTiles;
  Value qHiBox = arith::MinUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, q0, idx(shape.blockRows() - 1)), lastQ);
  auto isEmpty = [&](Value lo, Value hi) -> Value {
    Value cls = classify(q0, qHiBox, lo, hi);
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cls,
                                 arith::ConstantIntOp::create(b, loc, int64_t(heed::attn::BlockClass::Empty), 8));
  };
  const bool classifies = !variant.getBlocks().empty() &&
                          op.getSummaries().size() == variant.getSummarizedBuffers().size();
  // The class of KV tile t for this block's rows (null without a classifier).
  auto tileClass = [&](Value kvLo) -> Value {
    if (!classifies)
      return {};
    Value kvHi = arith::MinUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, kvLo, idx(keys - 1)), lastKV);
    return classify(q0, qHiBox, kvLo, kvHi);
  };
  auto isClass = [&](Value cls, int64_t which) -> Value {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cls,
                                 arith::ConstantIntOp::create(b, loc, which, 8));
  };
  auto notEmpty = [&](Value cls) -> Value {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, cls,
                                 arith::ConstantIntOp::create(b, loc, int64_t(heed::attn::BlockClass::Empty), 8));
  };
  // K/V rows from kvLo into buffer `stage`, unless the tile's class `cls`
  // (null: unknown) is EMPTY. The class is uniform over the block, so the
  // barriers around stay outside the condition.
  auto stageUnlessEmpty = [&](Value cls, Value kvLo, Value stage) {
    OpBuilder::InsertionGuard g(b);
    if (cls) {
      auto copy = scf::IfOp::create(b, loc, notEmpty(cls), false);
      b.setInsertionPointToStart(&copy.getThenRegion().front());
    }
    stageKV(kvLo, stage);
  };
  if (classifies) {
    Value one = arith::ConstantIntOp::create(b, loc, 1, 1);
    first = heed::searchFirst(b, loc, idx(0), numTiles, [&](Value t) -> Value {
      Value next = arith::MulIOp::create(b, loc, arith::AddIOp::create(b, loc, t, idx(1)), idx(keys));
      Value hi = arith::MinUIOp::create(b, loc, arith::SubIOp::create(b, loc, next, idx(1)), lastKV);
      return arith::XOrIOp::create(b, loc, isEmpty(idx(0), hi), one);
    });
    end = heed::searchFirst(b, loc, first, numTiles, [&](Value t) -> Value {
      return isEmpty(arith::MulIOp::create(b, loc, t, idx(keys)), lastKV);
    });
  }

  Block &scoreBlock = variant.getScore().front();
  bool identityScore =
      cast<heed::attn::YieldOp>(scoreBlock.getTerminator()).getValue() == scoreBlock.getArgument(0);
  // With two stages, tile t + 1 is copied while tile t is computed: the
  // first tile's copies start here, once every wave has read Q.
  const bool pipelined = shape.stages == 2;
  auto stageOf = [&](Value t) { return arith::RemUIOp::create(b, loc, t, idx(shape.stages)); };
  if (pipelined) {
    gpu::BarrierOp::create(b, loc);
    // (Tile `first` is never EMPTY: the search makes it the first tile with
    // a visible key. No tile at all, e.g. Skv = 0: no copy.)
    auto any = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, first, end), false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&any.getThenRegion().front());
    stageKV(arith::MulIOp::create(b, loc, first, idx(keys)), stageOf(first));
  }
  auto loop = scf::ForOp::create(b, loc, first, end, idx(1), init);
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    ValueRange it = loop.getRegionIterArgs();
    SmallVector<Value> m(it.begin(), it.begin() + slots);
    SmallVector<Value> l(it.begin() + slots, it.begin() + 2 * slots);
    SmallVector<Value> o(it.begin() + 2 * slots, it.end());
    Value t = loop.getInductionVar();
    Value kv0 = arith::MulIOp::create(b, loc, t, idx(keys));
    // The tile's class (null without a classifier): EMPTY tiles inside the
    // range are neither copied nor computed, FULL ones skip the mask.
    Value cls = tileClass(kv0);
    if (pipelined) {
      // This lane's copies of tile t are done; after the barrier everyone's
      // are, and every wave is past tile t - 1, whose buffer tile t + 1 takes.
      waitKV();
      gpu::BarrierOp::create(b, loc);
      Value next = arith::AddIOp::create(b, loc, t, idx(1));
      Value kvNext = arith::AddIOp::create(b, loc, kv0, idx(keys));
      auto more = scf::IfOp::create(
          b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, next, end), false);
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(&more.getThenRegion().front());
      stageUnlessEmpty(tileClass(kvNext), kvNext, stageOf(next));
    } else {
      gpu::BarrierOp::create(b, loc); // the previous tile (or Q) is consumed
      stageUnlessEmpty(cls, kv0, idx(0));
      gpu::BarrierOp::create(b, loc);
    }
    computeStage = pipelined ? Value(stageOf(t)) : idx(0);

    // FULL tiles run a copy of the tile code without the mask (a whole copy:
    // merging masked and unmasked scores at a join would keep 32 more values
    // live).
    auto computeTile = [&](bool withMask) -> SmallVector<Value> {
      // Scale, score modifier and mask per element; keys past the end masked.
      SmallVector<Element> elements = scoreElements(scores());
      // Rows past Sq and keys past Skv are padding: the variant is evaluated
      // at the last real row/key instead (and the result dropped), so their
      // buffer reads are never reported out of range.
      SmallVector<Value> xs, kvPos, qEval, kvEval;
      for (Element &e : elements) {
        kvPos.push_back(arith::AddIOp::create(b, loc, kv0, e.col));
        qEval.push_back(arith::MinUIOp::create(b, loc, rowQ[e.slot], lastQ));
        kvEval.push_back(arith::MinUIOp::create(b, loc, kvPos.back(), lastKV));
        Value x = arith::MulFOp::create(b, loc, e.value, f32(scale));
        if (!identityScore)
          x = inlineRegion(variant.getScore(), {x, batch, head, qEval.back(), kvEval.back()});
        xs.push_back(x);
      }
      auto visible = [&]() {
        SmallVector<Value> ok;
        for (size_t i = 0; i < elements.size(); ++i)
          ok.push_back(arith::AndIOp::create(
              b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, kvPos[i], seqKV),
              inlineRegion(variant.getMask(), {batch, head, qEval[i], kvEval[i]})));
        return ok;
      };
      if (withMask) {
        SmallVector<Value> ok = visible();
        for (auto [x, v] : llvm::zip(xs, ok))
          x = arith::SelectOp::create(b, loc, v, x, negInf);
      }
      SmallVector<Value> rowMax(slots, negInf);
      for (auto [e, x] : llvm::zip(elements, xs)) {
        e.value = x;
        rowMax[e.slot] = arith::MaximumFOp::create(b, loc, rowMax[e.slot], x);
      }
      // Online softmax per row (statistics shared by the lanes of a row).
      SmallVector<Value> mNew(slots), mUse(slots), alpha(slots), rowSum(slots, f32(0));
      for (unsigned s = 0; s < slots; ++s) {
        mNew[s] = arith::MaximumFOp::create(b, loc, m[s], rowReduce(rowMax[s], true));
        Value none = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, mNew[s], negInf);
        mUse[s] = arith::SelectOp::create(b, loc, none, f32(0), mNew[s]);
        alpha[s] = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, m[s], mUse[s]));
      }
      SmallVector<Value> p;
      for (Element &e : elements) {
        Value x =
            math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, e.value, mUse[e.slot]));
        rowSum[e.slot] = arith::AddFOp::create(b, loc, rowSum[e.slot], x);
        p.push_back(x);
      }
      SmallVector<Value> next = mNew;
      for (unsigned s = 0; s < slots; ++s)
        next.push_back(arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, l[s], alpha[s]),
                                             rowSum[s]));
      SmallVector<Value> acc = o;
      for (Value &a : acc)
        a = scaleRows(a, alpha);
      accumulatePV(p, acc);
      next.append(acc.begin(), acc.end());
      return next;
    };
    if (cls) {

      // FULL: every (q, kv) of the box is visible and no key is past Skv.
      Value full = arith::AndIOp::create(
          b, loc, isClass(cls, int64_t(heed::attn::BlockClass::Full)),
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule,
                                arith::AddIOp::create(b, loc, kv0, idx(keys)), seqKV));
      TypeRange types = TypeRange(ValueRange(it));
      auto tile = scf::IfOp::create(b, loc, types, notEmpty(cls), true);
      {
        OpBuilder::InsertionGuard g2(b);
        b.setInsertionPointToStart(&tile.getThenRegion().front());
        auto masked = scf::IfOp::create(b, loc, types, full, true);
        scf::YieldOp::create(b, loc, masked.getResults());
        b.setInsertionPointToStart(&masked.getThenRegion().front());
        scf::YieldOp::create(b, loc, computeTile(false));
        b.setInsertionPointToStart(&masked.getElseRegion().front());
        scf::YieldOp::create(b, loc, computeTile(true));
        b.setInsertionPointToStart(&tile.getElseRegion().front());
        scf::YieldOp::create(b, loc, ValueRange(it));
      }
      scf::YieldOp::create(b, loc, tile.getResults());
    } else {
      scf::YieldOp::create(b, loc, computeTile(true));
    }
  }

  // Normalize, write the lane's elements of O and (one lane per row) lse.
  SmallVector<Value> o(loop.getResults().begin() + 2 * slots, loop.getResults().end());
  SmallVector<Element> outputs = outputElements(o);
  for (unsigned s = 0; s < slots; ++s) {
    Value mFinal = loop.getResult(s);
    Value lFinal = rowReduce(loop.getResult(slots + s), false);
    Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, lFinal, f32(0));
    Value inv = arith::SelectOp::create(b, loc, empty, f32(0),
                                        arith::DivFOp::create(b, loc, f32(1), lFinal));
    Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, rowQ[s], seqQ);
    auto ifOp = scf::IfOp::create(b, loc, inRange, false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    for (const Element &e : outputs)
      if (e.slot == s)
        storeF32(arith::MulFOp::create(b, loc, e.value, inv), out, at(batch, head, rowQ[s], e.col));
    if (lse) {
      auto once = scf::IfOp::create(b, loc, ownsRowStats(), false);
      b.setInsertionPointToStart(&once.getThenRegion().front());
      Value value = arith::AddFOp::create(b, loc, mFinal, math::LogOp::create(b, loc, lFinal));
      memref::StoreOp::create(b, loc, arith::SelectOp::create(b, loc, empty, negInf, value), lse,
                              ValueRange{batch, head, rowQ[s]});
    }
  }
  return success();
}

} // namespace heed::gpu_kernel
