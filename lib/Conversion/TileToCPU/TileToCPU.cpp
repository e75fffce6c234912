// --convert-attn-tile-to-cpu: the tile ops as scf/vector/memref/arith code
// for the CPU (see CPUPatterns.h for the representation): the pass, the type
// converter, and the structure patterns (work items, spans).
#include "heed/Conversion/Passes.h"

#include "CPUPatterns.h"

#include "../TileCommon/IndexExpr.h"
#include "../TileCommon/Patterns.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/TileMath.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/Transforms/Patterns.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"

namespace heed {
#define GEN_PASS_DEF_CONVERTATTNTILETOCPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {

CPUTypeConverter::CPUTypeConverter(MLIRContext *ctx) {
  addConversion([](Type t) { return t; });
  addConversion([ctx](TileType t) -> Type {
    Type f32 = Float32Type::get(ctx);
    switch (t.getRole()) {
    case TileRole::Q:
      return MemRefType::get({t.getCols(), t.getRows()}, f32);
    case TileRole::S:
      return MemRefType::get({t.getCols(), t.getRows()}, f32);
    case TileRole::Row:
    case TileRole::Col:
      return VectorType::get({t.getRows()}, f32);
    default: // k, v, acc
      return MemRefType::get({t.getRows(), t.getCols()}, f32);
    }
  });
  addConversion([ctx](SpanType t, SmallVectorImpl<Type> &results) -> LogicalResult {
    Type index = IndexType::get(ctx);
    results.push_back(VectorType::get({t.getSize()}, index));
    results.push_back(VectorType::get({t.getSize()}, IntegerType::get(ctx, 1)));
    results.push_back(index);
    results.push_back(index);
    results.push_back(index);
    results.push_back(VectorType::get({t.getSize()}, index));
    return success();
  });
}

int64_t registerGroup(int64_t count, int64_t width) {
  constexpr int64_t kAccumulatorLanes = 16 * 16; // 16 registers of 16 f32
  int64_t group = std::min<int64_t>(
      count, int64_t(llvm::bit_floor(uint64_t(std::max<int64_t>(1, kAccumulatorLanes / width)))));
  while (group > 1 && count % group)
    group /= 2;
  return std::max<int64_t>(group, 1);
}

SmallVector<Value> accumulateRows(OpBuilder &b, Location loc, Value n, ValueRange sums,
                                  function_ref<Value(Value)> row,
                                  function_ref<Value(Value, int64_t)> weight) {
  auto loop = scf::ForOp::create(b, loc, index(b, loc, 0), n, index(b, loc, 1), sums);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = loop.getInductionVar();
  Value x = row(i);
  SmallVector<Value> next;
  for (auto [g, sum] : llvm::enumerate(loop.getRegionIterArgs()))
    next.push_back(vector::FMAOp::create(
        b, loc, vector::BroadcastOp::create(b, loc, x.getType(), weight(i, int64_t(g))), x, sum));
  scf::YieldOp::create(b, loc, next);
  return SmallVector<Value>(loop.getResults());
}

Value allocaAtEntry(OpBuilder &b, Operation *anchor, MemRefType type) {
  OpBuilder::InsertionGuard guard(b);
  auto func = anchor->getParentOfType<FunctionOpInterface>();
  b.setInsertionPointToStart(&func.getFunctionBody().front());
  return memref::AllocaOp::create(b, anchor->getLoc(), type);
}

Value splat(OpBuilder &b, Location loc, VectorType type, double value) {
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(type, b.getF32FloatAttr(static_cast<float>(value))));
}

Value index(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value laneHead(OpBuilder &b, Location loc, const Span &span, Value head, Value i) {
  return arith::AddIOp::create(b, loc, head, extractAt(b, loc, span.heads, i));
}

Value extractAt(OpBuilder &b, Location loc, Value vec, Value i) {
  // Every lane of a broadcast is its scalar.
  if (auto broadcast = vec.getDefiningOp<vector::BroadcastOp>();
      broadcast && !isa<VectorType>(broadcast.getSource().getType()))
    return broadcast.getSource();
  return vector::ExtractOp::create(b, loc, vec, ArrayRef<OpFoldResult>{i});
}

void forRealLanes(OpBuilder &b, Location loc, const Span &span, Value head, int64_t lanes,
                  llvm::function_ref<void(Value, Value, Value)> body) {
  auto loop = scf::ForOp::create(b, loc, index(b, loc, 0), index(b, loc, lanes),
                                 index(b, loc, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = loop.getInductionVar();
  auto real = scf::IfOp::create(b, loc, extractAt(b, loc, span.real, i), false);
  b.setInsertionPointToStart(&real.getThenRegion().front());
  body(i, laneHead(b, loc, span, head, i), extractAt(b, loc, span.tokens, i));
}

/// Every lane in its work item's head (spans that do not pack heads).
static Value sameHeads(OpBuilder &b, Location loc, int64_t lanes) {
  auto type = VectorType::get({lanes}, b.getIndexType());
  return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(type, b.getIndexAttr(0)));
}

SmallVector<Value> at(Layout layout, Value batch, Value head, Value pos, Value d) {
  if (layout == Layout::BSHD)
    return {batch, pos, head, d};
  return {batch, head, pos, d};
}

namespace {

/// attn.tile.work -> a loop over the flattened items in [begin, end).
struct WorkLowering : OpConversionPattern<TileWorkOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileWorkOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (op.getPersistent())
      return op.emitOpError() << "is persistent (--attn-persistent-workers): a GPU schedule";
    Location loc = op.getLoc();
    IndexExpr tiles(rewriter, loc, adaptor.getTiles()), heads(rewriter, loc, adaptor.getHeads());
    Value total = arith::MulIOp::create(
        rewriter, loc, arith::MulIOp::create(rewriter, loc, adaptor.getBatches(), heads), tiles);
    Value begin = adaptor.getBegin() ? adaptor.getBegin() : index(rewriter, loc, 0);
    Value end = adaptor.getEnd() ? arith::MinUIOp::create(rewriter, loc, adaptor.getEnd(), total)
                                 : total;
    auto loop = scf::ForOp::create(rewriter, loc, begin, end, index(rewriter, loc, 1));
    rewriter.setInsertionPointToStart(loop.getBody());
    Value item = loop.getInductionVar();
    Value rest = arith::DivUIOp::create(rewriter, loc, item, tiles);
    Value values[] = {arith::DivUIOp::create(rewriter, loc, rest, heads),
                      arith::RemUIOp::create(rewriter, loc, rest, heads),
                      arith::RemUIOp::create(rewriter, loc, item, tiles)};
    rewriter.inlineBlockBefore(&op.getBody().front(), loop.getBody()->getTerminator(), values);
    rewriter.eraseOp(op);
    return success();
  }
};

/// A tile's tokens: origin token + the lanes' constant offsets, real where
/// inside the grid and before the sequence's end.
struct SpanLowering : OpConversionPattern<TileSpanOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSpanOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    ArrayRef<int64_t> grid = op.getTiling().getGrid();
    ArrayRef<int64_t> patch = op.getTiling().getPatch(op.getSide());
    int64_t lanes = tileSize(patch);
    IndexExpr seq(rewriter, loc, adaptor.getSeq());
    SmallVector<IndexExpr> origin = spanOrigin(op, seq, adaptor.getCoords());
    IndexExpr rows = gridRows(grid, seq);
    SmallVector<IndexExpr> end;
    for (size_t k = 0; k < patch.size(); ++k) {
      IndexExpr last = k == 0 ? rows - seq.constant(1) : seq.constant(grid[k - 1] - 1);
      end.push_back(min(origin[k] + (patch[k] - 1), last));
    }
    IndexExpr lo = tokenOf<IndexExpr>(grid, origin);
    IndexExpr hi = tokenOf<IndexExpr>(grid, end);
    // Lane l: origin + sum_k laneDigit(l, k) * s_k.
    SmallVector<int64_t> strides = gridStrides(grid);
    auto idxVec = VectorType::get({lanes}, rewriter.getIndexType());
    auto constVec = [&](function_ref<int64_t(int64_t)> f) -> Value {
      SmallVector<Attribute> values;
      for (int64_t l = 0; l < lanes; ++l)
        values.push_back(rewriter.getIndexAttr(f(l)));
      return arith::ConstantOp::create(rewriter, loc, DenseElementsAttr::get(idxVec, values));
    };
    auto bcast = [&](Value v) { return vector::BroadcastOp::create(rewriter, loc, idxVec, v); };
    Value tokens = arith::AddIOp::create(rewriter, loc, bcast(lo), constVec([&](int64_t l) {
      int64_t offset = 0;
      for (size_t k = 0; k < patch.size(); ++k)
        offset += laneDigit(patch, l, k) * strides[k];
      return offset;
    }));
    Value real = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::ult, tokens,
                                       bcast(adaptor.getSeq()));
    for (size_t k = 1; k < patch.size(); ++k) {
      Value digit = arith::AddIOp::create(rewriter, loc, bcast(origin[k]), constVec([&](int64_t l) {
        return laneDigit(patch, l, k);
      }));
      Value inside = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::ult, digit,
                                           bcast(index(rewriter, loc, grid[k - 1])));
      real = arith::AndIOp::create(rewriter, loc, real, inside);
    }
    // Flat tiles: the real lanes are a prefix, min(N, seq - lo) of them
    // (lo < seq inside the loops); patches may have holes anywhere.
    Value count = patch.size() == 1 ? Value(min(seq.constant(lanes), seq - lo))
                                    : index(rewriter, loc, lanes);
    rewriter.replaceOpWithMultiple(
        op, {{tokens, real, lo.value, hi.value, count, sameHeads(rewriter, loc, lanes)}});
    return success();
  }
};

/// A gated head's tile: lane i is rows[offset + i] for i < lanes.
struct RoutedSpanLowering : OpConversionPattern<TileRoutedSpanOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileRoutedSpanOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    int64_t lanes = op.getResult().getType().getSize();
    auto idxVec = VectorType::get({lanes}, rewriter.getIndexType());
    auto i32Vec = VectorType::get({lanes}, rewriter.getI32Type());
    Value step = vector::StepOp::create(rewriter, loc, idxVec);
    Value real = arith::CmpIOp::create(
        rewriter, loc, arith::CmpIPredicate::ult, step,
        vector::BroadcastOp::create(rewriter, loc, idxVec, adaptor.getLanes()));
    Value zeros = arith::ConstantOp::create(
        rewriter, loc, DenseElementsAttr::get(i32Vec, rewriter.getI32IntegerAttr(0)));
    Value rows = vector::GatherOp::create(rewriter, loc, i32Vec, adaptor.getRows(),
                                          ValueRange{adaptor.getOffset()}, step, real, zeros);
    Value tokens = arith::IndexCastOp::create(rewriter, loc, idxVec, rows);
    auto tokenAt = [&](Value slot) -> Value {
      Value row = memref::LoadOp::create(rewriter, loc, adaptor.getRows(), ValueRange{slot});
      return arith::IndexCastOp::create(rewriter, loc, rewriter.getIndexType(), row);
    };
    // The box of the routed lanes (a tile with none never asks for it).
    IndexExpr offset(rewriter, loc, adaptor.getOffset());
    Value one = index(rewriter, loc, 1);
    Value lastRouted = arith::MaxUIOp::create(rewriter, loc, adaptor.getRouted(), one);
    Value hiSlot = arith::SubIOp::create(rewriter, loc, offset + offset.with(lastRouted), one);
    rewriter.replaceOpWithMultiple(op, {{tokens, real, tokenAt(offset), tokenAt(hiSlot),
                                         adaptor.getLanes(), sameHeads(rewriter, loc, lanes)}});
    return success();
  }
};

/// A packed GQA tile (attn.tile.packed_span): lane l is virtual row
/// v = tile * N + l of group * seq, query v % seq of the group's head v / seq.
struct PackedSpanLowering : OpConversionPattern<TilePackedSpanOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TilePackedSpanOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    IndexExpr seq(rewriter, loc, adaptor.getSeq());
    int64_t lanes = op.getResult().getType().getSize();
    auto idxVec = VectorType::get({lanes}, rewriter.getIndexType());
    // A zero length has no tile; the divisor stays non-zero regardless.
    IndexExpr divisor =
        seq.with(arith::MaxUIOp::create(rewriter, loc, seq.value, seq.constant(1).value));
    IndexExpr total = seq.with(arith::MulIOp::create(rewriter, loc, adaptor.getSeq(),
                                                     adaptor.getGroup()));
    IndexExpr first = seq.with(adaptor.getTile()) * lanes;
    auto bcast = [&](Value v) { return vector::BroadcastOp::create(rewriter, loc, idxVec, v); };
    Value rows = arith::AddIOp::create(rewriter, loc, bcast(first),
                                       vector::StepOp::create(rewriter, loc, idxVec));
    Value real = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::ult, rows,
                                       bcast(total));
    Value heads = arith::DivUIOp::create(rewriter, loc, rows, bcast(divisor));
    Value tokens = arith::SubIOp::create(rewriter, loc, rows,
                                         arith::MulIOp::create(rewriter, loc, heads, bcast(divisor)));
    // The box of the real lanes' queries: exact within one head, the whole
    // sequence where the tile crosses into the next head.
    IndexExpr count = min(seq.constant(lanes), total - first);
    IndexExpr last = first + count - seq.constant(1);
    Value firstHead = arith::DivUIOp::create(rewriter, loc, first.value, divisor.value);
    Value lastHead = arith::DivUIOp::create(rewriter, loc, last.value, divisor.value);
    Value one = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, firstHead, lastHead);
    IndexExpr base = seq.with(arith::MulIOp::create(rewriter, loc, firstHead, divisor.value));
    Value lo = arith::SelectOp::create(rewriter, loc, one, (first - base).value,
                                       seq.constant(0).value);
    Value hi = arith::SelectOp::create(rewriter, loc, one, (last - base).value,
                                       (seq - seq.constant(1)).value);
    rewriter.replaceOpWithMultiple(op, {{tokens, real, lo, hi, count.value, heads}});
    return success();
  }
};

struct SpanBoxLowering : OpConversionPattern<TileSpanBoxOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSpanBoxOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Span span(adaptor.getSpan());
    rewriter.replaceOp(op, {span.lo, span.hi});
    return success();
  }
};

} // namespace

StreamingLoads findStreamingLoads(ModuleOp module) {
  StreamingLoads streaming;
  llvm::DenseMap<Operation *, bool> packedWork; // each work loop asked once
  module.walk([&](TileLoadOp load) {
    auto role = cast<TileType>(load.getResult().getType()).getRole();
    if (role == TileRole::Q || load.getStage())
      return;
    bool packed = false;
    if (auto work = load->getParentOfType<TileWorkOp>()) {
      auto [it, fresh] = packedWork.try_emplace(work, false);
      if (fresh)
        it->second = work.getBody()
                         .walk([](TilePackedSpanOp) { return WalkResult::interrupt(); })
                         .wasInterrupted();
      packed = it->second;
    }
    if (packed || load.getPageTable())
      streaming.insert(load);
  });
  return streaming;
}

void populateStructurePatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<WorkLowering, SpanLowering, RoutedSpanLowering, PackedSpanLowering,
               SpanBoxLowering>(
      converter, patterns.getContext());
}

} // namespace heed::cpu

namespace {

struct ConvertAttnTileToCPUPass
    : heed::impl::ConvertAttnTileToCPUBase<ConvertAttnTileToCPUPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    WalkResult supported = module.walk([](Operation *op) {
      LogicalResult ok = success();
      if (auto apply = dyn_cast<TileApplyOp>(op))
        ok = heed::cpu::checkSupported(apply);
      else if (auto load = dyn_cast<TileLoadOp>(op))
        ok = heed::cpu::checkHeadDimContiguous(op, load.getTensor());
      else if (auto store = dyn_cast<TileStoreOp>(op))
        ok = heed::cpu::checkHeadDimContiguous(op, store.getOut());
      else if (auto work = dyn_cast<TileWorkOp>(op); work && work.getSplitPhase())
        ok = work.emitOpError() << "has split-KV operands: run --attn-split-kv first";
      return failed(ok) ? WalkResult::interrupt() : WalkResult::advance();
    });
    if (supported.wasInterrupted())
      return signalPassFailure();
    heed::cpu::StreamingLoads streaming = heed::cpu::findStreamingLoads(module);
    heed::cpu::CPUTypeConverter converter(ctx);
    RewritePatternSet patterns(ctx);
    heed::populateTileCommonPatterns(converter, patterns);
    heed::cpu::populateStructurePatterns(converter, patterns);
    heed::cpu::InPlaceTiles inPlace(bf16Dot);
    heed::cpu::populateLoadStorePatterns(converter, patterns, streaming, inPlace);
    heed::cpu::populateMatmulPatterns(converter, patterns, inPlace);
    heed::cpu::populateSoftmaxPatterns(converter, patterns, inPlace);
    heed::cpu::populateVariantPatterns(converter, patterns);
    heed::cpu::populatePartialPatterns(converter, patterns);
    heed::cpu::populateBackwardPatterns(converter, patterns);
    ConversionTarget target(*ctx);
    target.addLegalDialect<arith::ArithDialect, math::MathDialect, memref::MemRefDialect,
                           vector::VectorDialect, scf::SCFDialect, func::FuncDialect,
                           x86vector::X86VectorDialect>();
    target.addIllegalDialect<AttnDialect>();
    // Variants stay until no op refers to them (their regions were inlined).
    target.addLegalOp<VariantOp, heed::attn::YieldOp, heed::attn::LoadOp, heed::attn::RouteOp,
                      GradAddOp, heed::attn::ShapeOp, TileBindShapesOp>();
    scf::populateSCFStructuralTypeConversionsAndLegality(converter, patterns, target);
    if (failed(applyPartialConversion(module, target, std::move(patterns))))
      return signalPassFailure();
    // The sizes were inlined where the regions read them (boundShape).
    SmallVector<TileBindShapesOp> bindings;
    module.walk([&](TileBindShapesOp op) { bindings.push_back(op); });
    for (TileBindShapesOp op : bindings)
      op.erase();
    SmallVector<VariantOp> variants;
    module.walk([&](VariantOp v) { variants.push_back(v); });
    for (VariantOp v : variants)
      if (SymbolTable::symbolKnownUseEmpty(v, module))
        v.erase();
  }
};

} // namespace
