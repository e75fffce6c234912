// CPU pattern for attn.tile.apply: the variant's score modifier and mask on
// a score tile, key by key, vectorized over the tile's rows (one lane per
// query row): the regions are inlined with every scalar widened to a vector,
// and buffer reads become bounds-checked gathers. FULL tiles (mask_if false)
// skip the mask.
#include "CPUPatterns.h"

#include "../TileCommon/VariantRegions.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {

/// A buffer as one flat memref (for gathers) and its dims, made once at the
/// function's entry.
std::pair<Value, SmallVector<Value>> flatten(OpBuilder &b, Operation *anchor, Value buffer) {
  OpBuilder::InsertionGuard guard(b);
  Location loc = anchor->getLoc();
  auto func = anchor->getParentOfType<FunctionOpInterface>();
  Block &entry = func.getFunctionBody().front();
  if (auto arg = dyn_cast<BlockArgument>(buffer); arg && arg.getOwner() == &entry)
    b.setInsertionPointToStart(&entry);
  else
    b.setInsertionPointAfterValue(buffer);
  auto type = cast<MemRefType>(buffer.getType());
  SmallVector<Value> dims;
  for (int64_t d = 0; d < type.getRank(); ++d)
    dims.push_back(memref::DimOp::create(b, loc, buffer, d));
  if (type.getRank() == 1 && type.getLayout().isIdentity())
    return {buffer, dims};
  if (type.getRank() == 0) // one element: a view of shape [1]
    return {memref::ReinterpretCastOp::create(b, loc, MemRefType::get({1}, type.getElementType()),
                                              buffer, 0, ArrayRef<int64_t>{1},
                                              ArrayRef<int64_t>{1}),
            dims};
  SmallVector<ReassociationIndices> all(1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    all[0].push_back(d);
  return {memref::CollapseShapeOp::create(b, loc, buffer, all), dims};
}

/// Whether every lane of vector `v` holds the same value, as built: a
/// broadcast, a splat constant, or an elementwise op of such (the key's
/// position in a loop over keys, `kv / 32`, the work item's head).
static bool isUniform(Value v, int depth = 0) {
  Operation *def = v.getDefiningOp();
  if (!def || depth > 8)
    return false;
  if (auto bcast = dyn_cast<vector::BroadcastOp>(def))
    return !isa<VectorType>(bcast.getSource().getType());
  if (auto cst = dyn_cast<arith::ConstantOp>(def))
    return isa<SplatElementsAttr>(cst.getValue());
  if (!def->hasTrait<OpTrait::Elementwise>() || def->getNumRegions() != 0)
    return false;
  return llvm::all_of(def->getOperands(), [&](Value o) { return isUniform(o, depth + 1); });
}

/// Status bookkeeping of a read: if any lane of `laneValid` (a real (row,
/// key) pair) read out of range (`inBounds` false there), `status` records
/// the buffer's number.
static void recordMiss(OpBuilder &b, Location loc, Value inBounds, Value laneValid,
                       unsigned which, Value status) {
  auto laneType = cast<VectorType>(laneValid.getType());
  Value trueVec = vector::BroadcastOp::create(b, loc, laneType,
                                              arith::ConstantIntOp::create(b, loc, 1, 1));
  if (!isa<VectorType>(inBounds.getType()))
    inBounds = vector::BroadcastOp::create(b, loc, laneType, inBounds);
  Value bad = arith::AndIOp::create(b, loc, arith::XOrIOp::create(b, loc, inBounds, trueVec),
                                    laneValid);
  Value any = vector::ReductionOp::create(b, loc, vector::CombiningKind::OR, bad);
  auto ifOp = scf::IfOp::create(b, loc, any, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  memref::StoreOp::create(b, loc, arith::ConstantIntOp::create(b, loc, which + 1, 32), status,
                          ValueRange{arith::ConstantIndexOp::create(b, loc, 0)});
}

/// attn.load on vectors of indices: a masked gather from the flattened
/// buffer; lanes out of range read 0, and if any lane that is a real (row,
/// key) pair is out of range, `status` records the buffer's number. Where
/// every index is the same in all lanes (isUniform: a document mask's
/// `doc[kv]`, a head's `slopes[h]`), one scalar read, broadcast.
Value gatherLoad(OpBuilder &b, Location loc, Operation *anchor, heed::attn::LoadOp load,
                 Value buffer, ValueRange indices, unsigned which, Value laneValid,
                 Value status) {
  auto laneType = cast<VectorType>(laneValid.getType());
  auto widen = [&](Type t) { return VectorType::get(laneType.getShape(), t); };
  Type elt = cast<MemRefType>(buffer.getType()).getElementType();
  if (llvm::all_of(indices, [](Value i) { return isUniform(i); })) {
    SmallVector<Value> at;
    for (Value i : indices)
      at.push_back(vector::ExtractOp::create(b, loc, i, ArrayRef<int64_t>{0}));
    Value inBounds =
        indicesInRange(b, loc, buffer, at, arith::ConstantIntOp::create(b, loc, 1, 1));
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{elt}, inBounds, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      scf::YieldOp::create(b, loc, ValueRange{memref::LoadOp::create(b, loc, buffer, at)});
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(b, loc,
                           ValueRange{arith::ConstantOp::create(b, loc, b.getZeroAttr(elt))});
    }
    if (status)
      recordMiss(b, loc, inBounds, laneValid, which, status);
    return extendLoaded(b, loc, vector::BroadcastOp::create(b, loc, widen(elt), ifOp.getResult(0)),
                        load.getResult().getType());
  }
  auto [flat, dims] = flatten(b, anchor, buffer);
  VectorType idxType = widen(b.getIndexType());
  Value zeroIdx = arith::ConstantIndexOp::create(b, loc, 0);
  Value linear, inBounds;
  for (auto [d, i] : llvm::enumerate(indices)) {
    // 0 <= i < size as one unsigned compare (sizes are not negative).
    Value size = vector::BroadcastOp::create(b, loc, idxType, dims[d]);
    Value ok = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, i, size);
    inBounds = inBounds ? Value(arith::AndIOp::create(b, loc, inBounds, ok)) : ok;
    linear = linear ? Value(arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, linear, size), i))
                    : i;
  }
  if (!linear) { // rank 0
    linear = vector::BroadcastOp::create(b, loc, idxType, zeroIdx);
    inBounds = vector::BroadcastOp::create(b, loc, laneType, arith::ConstantIntOp::create(b, loc, 1, 1));
  }
  Value zero = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(widen(elt), b.getZeroAttr(elt)));
  Value got = vector::GatherOp::create(b, loc, widen(elt), flat, ValueRange{zeroIdx}, linear,
                                       inBounds, zero);
  if (status)
    recordMiss(b, loc, inBounds, laneValid, which, status);
  return extendLoaded(b, loc, got, load.getResult().getType());
}

bool isConstantTrueMask(VariantOp variant) {
  APInt value;
  Value yielded = cast<YieldOp>(variant.getMask().front().getTerminator()).getValue();
  return matchPattern(yielded, m_ConstantInt(&value)) && value.isOne();
}

Value visibleLanes(OpBuilder &b, Location loc, VariantOp variant, RegionInlining &how,
                   ValueRange leading, Value laneValid, ValueRange maskIf) {
  if (isConstantTrueMask(variant))
    return laneValid;
  how.leading = leading;
  auto masked = [&]() {
    return arith::AndIOp::create(b, loc, laneValid,
                                 inlineVariantRegion(b, loc, variant.getMask(), how))
        .getResult();
  };
  if (maskIf.empty())
    return masked();
  // FULL tiles skip the mask: every pair of the box is visible.
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{laneValid.getType()}, maskIf.front(),
                                /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{masked()});
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{laneValid});
  return ifOp.getResult(0);
}

/// Positions (index vectors) as i32 vectors, each at most 2^31 - 2: the
/// range RegionInlining::narrow assumes of positions (real ones are below
/// heed's limit on a dimension, kMaxDim; padding lanes, a tile's first
/// position plus at most its size, are below 2^32: truncated exactly, then
/// clamped in 32 bits, which AVX2 does in one instruction and 64-bit lanes
/// in several).
static Value positions32(OpBuilder &b, Location loc, Value tokens) {
  auto type = VectorType::get(cast<VectorType>(tokens.getType()).getShape(), b.getI32Type());
  Value limit = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(type, b.getI32IntegerAttr(int32_t((int64_t(1) << 31) - 2))));
  return arith::MinUIOp::create(b, loc, arith::IndexCastUIOp::create(b, loc, type, tokens), limit);
}

ScoreColumns::ScoreColumns(OpBuilder &b, Operation *op, Value sT, ValueRange rows,
                           ValueRange cols, Value batch, Value head,
                           ArrayRef<ValueRange> buffers, Value route, Value status)
    : op(op), loc(op->getLoc()), type(cast<MemRefType>(sT.getType())),
      keys(type.getDimSize(0)), lanes(type.getDimSize(1)),
      laneType(VectorType::get({lanes}, b.getF32Type())), rows(rows), cols(cols),
      buffers(firstValues(buffers)), status(status) {
  auto idxType = VectorType::get({lanes}, b.getIndexType());
  this->batch = vector::BroadcastOp::create(b, loc, idxType, batch);
  heads = arith::AddIOp::create(b, loc, vector::BroadcastOp::create(b, loc, idxType, head),
                                this->rows.heads);
  if (route)
    this->route = vector::BroadcastOp::create(b, loc, VectorType::get({lanes}, b.getI64Type()),
                                              route);
  zero = index(b, loc, 0);
  rowTokens = positions32(b, loc, this->rows.tokens);
}

void ScoreColumns::forEachKey(OpBuilder &b, function_ref<void(const Column &)> body) const {
  auto i32Type = VectorType::get({lanes}, b.getI32Type());
  auto maskType = VectorType::get({lanes}, b.getI1Type());
  // The columns' tokens and reality go to the stack once, before the loop,
  // and are read back per key: extracting lane j of a vector at a dynamic j
  // in the loop makes LLVM store the whole vector in every iteration (8 zmm
  // stores per key for the backward's 64-key tiles).
  Value tokens = allocaAtEntry(b, op, MemRefType::get({keys}, b.getI32Type()));
  Value real = allocaAtEntry(b, op, MemRefType::get({keys}, b.getI8Type()));
  vector::StoreOp::create(b, loc, positions32(b, loc, cols.tokens), tokens, ValueRange{zero});
  vector::StoreOp::create(
      b, loc,
      arith::ExtUIOp::create(b, loc, VectorType::get({keys}, b.getI8Type()), cols.real), real,
      ValueRange{zero});
  auto loop = scf::ForOp::create(b, loc, zero, index(b, loc, keys), index(b, loc, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Column c;
  c.j = loop.getInductionVar();
  c.b = batch;
  c.h = heads;
  c.kv = vector::BroadcastOp::create(b, loc, i32Type,
                                     memref::LoadOp::create(b, loc, tokens, ValueRange{c.j}));
  Value keyReal = arith::TruncIOp::create(
      b, loc, b.getI1Type(), memref::LoadOp::create(b, loc, real, ValueRange{c.j}));
  c.laneValid = arith::AndIOp::create(b, loc, rows.real,
                                      vector::BroadcastOp::create(b, loc, maskType, keyReal));
  body(c);
}

RegionInlining ScoreColumns::inlining(const Column &column) const {
  RegionInlining how;
  how.buffers = buffers;
  how.route = route;
  how.width = lanes;
  how.memo = &memo;
  how.narrow = true;
  how.load = [op = op, loc = loc, laneValid = column.laneValid,
              status = status](OpBuilder &b, heed::attn::LoadOp load, Value buffer,
                               ValueRange indices, unsigned which) {
    return gatherLoad(b, loc, op, load, buffer, indices, which, laneValid, status);
  };
  return how;
}

void ScoreColumns::hoistInvariants(OpBuilder &b, Region &region, bool withScore,
                                   Value onlyIf) const {
  Column c;
  c.b = batch;
  c.h = heads;
  SmallVector<Value, 5> leading;
  if (withScore)
    leading.push_back(Value());
  leading.append(positions(c)); // (c.kv null: the key varies)
  RegionInlining how = inlining(c);
  how.leading = leading;
  // The lanes that read, made at the first hoisted read (each is made at
  // the same level, before the loop).
  Value laneValid;
  how.load = [&](OpBuilder &b, heed::attn::LoadOp load, Value buffer, ValueRange indices,
                 unsigned which) {
    if (!laneValid) {
      Value anyKey = vector::ReductionOp::create(b, loc, vector::CombiningKind::OR, cols.real);
      if (onlyIf)
        anyKey = arith::AndIOp::create(b, loc, anyKey, onlyIf);
      laneValid = arith::AndIOp::create(
          b, loc, rows.real,
          vector::BroadcastOp::create(b, loc, cast<VectorType>(rows.real.getType()), anyKey));
    }
    return gatherLoad(b, loc, op, load, buffer, indices, which, laneValid, status);
  };
  inlineInvariants(b, loc, region, how);
}

void ScoreColumns::hoistInvariants(OpBuilder &b, VariantOp variant, ValueRange maskIf) const {
  if (!isIdentityScore(variant))
    hoistInvariants(b, variant.getScore(), /*withScore=*/true);
  if (!isConstantTrueMask(variant))
    hoistInvariants(b, variant.getMask(), /*withScore=*/false,
                    maskIf.empty() ? Value() : maskIf.front());
}

std::pair<Value, Value> ScoreColumns::applyRegions(OpBuilder &b, VariantOp variant,
                                                   const Column &c, Value s, Value valid,
                                                   ValueRange maskIf) const {
  RegionInlining how = inlining(c);
  SmallVector<Value, 4> leading = positions(c);
  Value score = inlineScore(b, loc, variant, how, s, leading);
  return {score, visibleLanes(b, loc, variant, how, leading, valid, maskIf)};
}

Value ScoreColumns::load(OpBuilder &b, Value tile, Value j) const {
  return vector::LoadOp::create(b, loc, laneType, tile, ValueRange{j, zero});
}

void ScoreColumns::store(OpBuilder &b, Value row, Value tile, Value j) const {
  vector::StoreOp::create(b, loc, row, tile, ValueRange{j, zero});
}

namespace {

struct ApplyLowering : OpConversionPattern<TileApplyOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileApplyOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    Value sT = adaptor.getScores().front();
    ScoreColumns tile(rewriter, op, sT, adaptor, optionalValue(adaptor.getStatus()));
    Location loc = tile.loc;
    tile.hoistInvariants(rewriter, variant, adaptor.getMaskIf());
    tile.forEachKey(rewriter, [&](const ScoreColumns::Column &c) {
      auto [s, visible] = tile.applyRegions(rewriter, variant, c, tile.load(rewriter, sT, c.j),
                                            c.laneValid, adaptor.getMaskIf());
      tile.store(rewriter, maskedScore(rewriter, loc, visible, s), sT, c.j);
    });
    rewriter.replaceOp(op, sT);
    return success();
  }
};

} // namespace

LogicalResult checkSupported(TileApplyOp op) {
  VariantOp variant = lookupVariant(op, op.getVariantAttr());
  for (auto [region, name] : {std::pair<Region *, const char *>{&variant.getScore(), "score"},
                              {&variant.getMask(), "mask"}})
    for (Operation &inner : region->front()) {
      if (isa<YieldOp, heed::attn::LoadOp, heed::attn::RouteOp, heed::attn::ShapeOp,
              arith::ConstantOp>(inner))
        continue;
      // Only elementwise ops can be widened to vectors over the rows.
      bool elementwise = inner.hasTrait<OpTrait::Elementwise>() || isa<arith::SelectOp>(inner);
      if (!elementwise || inner.getNumRegions() != 0)
        return inner.emitOpError()
               << "in the '" << name
               << "' region cannot be lowered to the CPU: only elementwise arith/math ops, "
                  "constants and attn.load are supported";
    }
  for (Value buffer : op.getBuffers()) {
    auto type = cast<MemRefType>(buffer.getType());
    if (type.getRank() >= 1 && !type.getLayout().isIdentity())
      return op.emitOpError() << "needs contiguous (identity layout) buffers on the CPU";
  }
  return success();
}

void populateVariantPatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<ApplyLowering>(converter, patterns.getContext());
}

} // namespace heed::cpu
