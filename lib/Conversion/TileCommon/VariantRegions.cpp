// Inlining a variant's regions into target code (see VariantRegions.h).
#include "VariantRegions.h"

#include "Normalize.h"

#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/DenseSet.h"
#include "mlir/IR/TypeUtilities.h"

#include <cmath>

using namespace mlir;

namespace heed {

attn::VariantOp lookupVariant(Operation *op, FlatSymbolRefAttr name) {
  for (Operation *scope = op->getParentWithTrait<OpTrait::SymbolTable>(); scope;
       scope = scope->getParentWithTrait<OpTrait::SymbolTable>())
    if (auto v = dyn_cast_or_null<attn::VariantOp>(SymbolTable::lookupSymbolIn(scope, name)))
      return v;
  return {};
}

Value extendLoaded(OpBuilder &b, Location loc, Value v, Type resultType) {
  Type elt = getElementTypeOrSelf(v.getType());
  Type target = resultType;
  if (auto vec = dyn_cast<VectorType>(v.getType()))
    target = VectorType::get(vec.getShape(), resultType);
  if (elt == resultType)
    return v;
  if (isa<FloatType>(elt))
    return arith::ExtFOp::create(b, loc, target, v);
  if (elt.isInteger(1))
    return arith::ExtUIOp::create(b, loc, target, v);
  return arith::ExtSIOp::create(b, loc, target, v);
}

Value scalarLoad(OpBuilder &b, Location loc, attn::LoadOp load, Value buffer,
                 ValueRange indices, unsigned which, Value status) {
  Value ok = arith::ConstantIntOp::create(b, loc, 1, 1);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  for (auto [d, i] : llvm::enumerate(indices)) {
    Value size = memref::DimOp::create(b, loc, buffer, d);
    Value in = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i, zero),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, size));
    ok = arith::AndIOp::create(b, loc, ok, in);
  }
  Type result = load.getResult().getType();
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{result}, ok, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  Value v = memref::LoadOp::create(b, loc, buffer, indices);
  scf::YieldOp::create(b, loc, extendLoaded(b, loc, v, result));
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  if (status)
    memref::StoreOp::create(b, loc, arith::ConstantIntOp::create(b, loc, which + 1, 32), status,
                            ValueRange{zero});
  scf::YieldOp::create(b, loc, arith::ConstantOp::create(b, loc, b.getZeroAttr(result)).getResult());
  return ifOp.getResult(0);
}

Value boundShape(OpBuilder &b, attn::Shape shape) {
  // The nearest binding before the insertion point, in its block or in the
  // blocks around it.
  Block *block = b.getInsertionBlock();
  Block::iterator end = b.getInsertionPoint();
  while (block) {
    for (Operation &op : llvm::reverse(llvm::make_range(block->begin(), end)))
      if (auto bind = dyn_cast<attn::TileBindShapesOp>(op))
        return bind->getOperand(static_cast<unsigned>(shape));
    Operation *parent = block->getParentOp();
    if (!parent || !parent->getBlock())
      break;
    block = parent->getBlock();
    end = Block::iterator(parent);
  }
  return {};
}

/// Whether the value `v` dominates the builder's insertion point (defined
/// before it in its block or in a block around it).
static bool dominatesInsertion(OpBuilder &b, Value v) {
  Block *block = b.getInsertionBlock();
  Block::iterator at = b.getInsertionPoint();
  Block *defBlock = v.getParentBlock();
  Operation *def = v.getDefiningOp();
  while (block) {
    if (block == defBlock)
      return !def || at == block->end() || def->isBeforeInBlock(&*at);
    Operation *parent = block->getParentOp();
    if (!parent || !parent->getBlock())
      return false;
    block = parent->getBlock();
    at = Block::iterator(parent);
  }
  return false;
}

std::optional<SmallVector<Value, 1>> RegionMemo::lookup(OpBuilder &b, Operation *op,
                                                        ArrayRef<Value> operands) const {
  auto it = entries.find(op);
  if (it == entries.end())
    return std::nullopt;
  for (const Entry &e : it->second)
    if (ArrayRef<Value>(e.operands) == operands &&
        llvm::all_of(e.results, [&](Value r) { return dominatesInsertion(b, r); }))
      return e.results;
  return std::nullopt;
}

void RegionMemo::record(Operation *op, ArrayRef<Value> operands, ValueRange results) {
  entries[op].push_back(
      Entry{SmallVector<Value, 4>(operands), SmallVector<Value, 1>(results.begin(), results.end())});
}

Value inlineVariantRegion(OpBuilder &b, Location loc, Region &region, const RegionInlining &how) {
  Block &block = region.front();
  IRMapping map;
  unsigned numLeading = how.leading.size();
  for (auto [arg, value] : llvm::zip(block.getArguments().take_front(numLeading), how.leading))
    map.map(arg, value);
  for (auto [arg, value] : llvm::zip(block.getArguments().drop_front(numLeading), how.buffers))
    map.map(arg, value);
  // The region's values that depend on a varying argument (RegionMemo).
  llvm::DenseSet<Value> varying;
  if (how.memo)
    for (auto [arg, value] : llvm::zip(block.getArguments().take_front(numLeading), how.leading))
      if (how.memo->varies(value))
        varying.insert(arg);
  auto widen = [&](Type t) -> Type {
    return how.width ? VectorType::get({how.width}, t) : t;
  };
  // One op of the region at the insertion point, its results mapped.
  auto emit = [&](Operation &inner) {
    if (auto route = dyn_cast<attn::RouteOp>(inner)) {
      map.map(route.getResult(), how.route);
      return;
    }
    if (auto shape = dyn_cast<attn::ShapeOp>(inner)) {
      Value size = boundShape(b, shape.getShape());
      if (!size) { // no binding in scope: left for the target to reject
        map.map(shape.getResult(), b.clone(inner)->getResult(0));
        return;
      }
      Value v = arith::IndexCastOp::create(b, loc, b.getI64Type(), size);
      if (how.width)
        v = vector::BroadcastOp::create(b, loc, widen(b.getI64Type()), v);
      map.map(shape.getResult(), v);
      return;
    }
    if (auto load = dyn_cast<attn::LoadOp>(inner)) {
      unsigned which = cast<BlockArgument>(load.getBuffer()).getArgNumber() - numLeading;
      SmallVector<Value> indices;
      for (Value i : load.getIndices())
        indices.push_back(map.lookup(i));
      Value buffer = how.buffers[which];
      Value got = how.load ? how.load(b, load, buffer, indices, which)
                           : scalarLoad(b, loc, load, buffer, indices, which, how.status);
      map.map(load.getResult(), got);
      return;
    }
    if (auto cst = dyn_cast<arith::ConstantOp>(inner); cst && how.width) {
      auto attr = cast<TypedAttr>(cst.getValue());
      map.map(cst.getResult(),
              arith::ConstantOp::create(
                  b, loc, DenseElementsAttr::get(cast<ShapedType>(widen(attr.getType())), attr))
                  .getResult());
      return;
    }
    Operation *clone = b.clone(inner, map);
    if (how.width)
      for (OpResult r : clone->getResults())
        r.setType(widen(r.getType()));
  };
  for (Operation &inner : block) {
    if (auto yield = dyn_cast<attn::YieldOp>(inner))
      return map.lookup(yield.getValue());
    bool varies = how.memo && llvm::any_of(inner.getOperands(),
                                           [&](Value v) { return varying.contains(v); });
    if (varies)
      varying.insert(inner.result_begin(), inner.result_end());
    bool memoized = how.memo && !varies && inner.getNumRegions() == 0 &&
                    (isa<attn::LoadOp, attn::ShapeOp>(inner) || isMemoryEffectFree(&inner));
    SmallVector<Value, 4> operands;
    if (memoized) {
      for (Value v : inner.getOperands())
        operands.push_back(map.lookupOrDefault(v));
      if (auto got = how.memo->lookup(b, &inner, operands)) {
        map.map(inner.getResults(), *got);
        continue;
      }
    }
    emit(inner);
    if (memoized) {
      SmallVector<Value, 1> results;
      for (Value r : inner.getResults())
        results.push_back(map.lookup(r));
      how.memo->record(&inner, operands, results);
    }
  }
  llvm_unreachable("a variant region ends with attn.yield");
}

bool isIdentityScore(attn::VariantOp variant) {
  Block &block = variant.getScore().front();
  return cast<attn::YieldOp>(block.getTerminator()).getValue() == block.getArgument(0);
}

Value indicesInRange(OpBuilder &b, Location loc, Value memref, ValueRange indices, Value ok) {
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  for (auto [d, i] : llvm::enumerate(indices)) {
    Value size = memref::DimOp::create(b, loc, memref, d);
    ok = arith::AndIOp::create(
        b, loc, ok,
        arith::AndIOp::create(b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i, zero),
                              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, size)));
  }
  return ok;
}

SmallVector<bool> perHeadAdds(Block &region) {
  // The region's arguments: score, b, h, q, kv, buffers...
  llvm::DenseSet<Value> pairDependent = {region.getArgument(0), region.getArgument(3),
                                         region.getArgument(4)};
  for (Operation &op : region)
    if (llvm::any_of(op.getOperands(), [&](Value v) { return pairDependent.contains(v); }))
      for (Value r : op.getResults())
        pairDependent.insert(r);
  SmallVector<bool> out;
  for (attn::GradAddOp add : region.getOps<attn::GradAddOp>())
    out.push_back(llvm::none_of(add.getIndices(),
                                [&](Value v) { return pairDependent.contains(v); }));
  return out;
}

Value inlineDerivative(OpBuilder &b, Location loc, Region &region, const RegionInlining &how,
                       SmallVectorImpl<attn::GradAddOp> &adds) {
  Block *block = b.getInsertionBlock();
  Block::iterator end = b.getInsertionPoint();
  Operation *before = end == block->begin() ? nullptr : &*std::prev(end);
  Value result = inlineVariantRegion(b, loc, region, how);
  for (Operation &inlined :
       llvm::make_range(before ? std::next(Block::iterator(before)) : block->begin(), end))
    if (auto add = dyn_cast<attn::GradAddOp>(inlined))
      adds.push_back(add);
  return result;
}

Value inlineScore(OpBuilder &b, Location loc, attn::VariantOp variant, const RegionInlining &how,
                  Value s, ValueRange indices) {
  if (isIdentityScore(variant))
    return s;
  SmallVector<Value, 5> leading = {s};
  leading.append(indices.begin(), indices.end());
  RegionInlining withScore = how;
  withScore.leading = leading;
  return inlineVariantRegion(b, loc, variant.getScore(), withScore);
}

Value maskedScore(OpBuilder &b, Location loc, Value visible, Value score) {
  if (!visible)
    return score;
  return arith::SelectOp::create(b, loc, visible, score,
                                 f32Like(b, loc, score.getType(), -INFINITY));
}

SmallVector<Value> firstValues(ArrayRef<ValueRange> converted) {
  SmallVector<Value> out;
  for (ValueRange r : converted)
    out.push_back(r.front());
  return out;
}

} // namespace heed
