// Inlining a variant's regions into target code (see VariantRegions.h).
#include "VariantRegions.h"

#include "Normalize.h"

#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/InferIntRangeInterface.h"
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
                 ValueRange indices, unsigned which, Value status, Type resultType) {
  Value ok = indicesInRange(b, loc, buffer, indices, arith::ConstantIntOp::create(b, loc, 1, 1));
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Type result = resultType ? resultType : load.getResult().getType();
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{result}, ok, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  // An i32 index extended where it is read: extended beside its definition,
  // LLVM's CodeGenPrepare would make the index's other uses read the 64-bit
  // value truncated, keeping two registers live to them instead of one.
  SmallVector<Value> at;
  for (Value i : indices)
    at.push_back(i.getType().isIndex() ? i
                                       : Value(arith::IndexCastOp::create(b, loc, b.getIndexType(), i)));
  Value v = memref::LoadOp::create(b, loc, buffer, at);
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

Value RegionMemo::cast(OpBuilder &b, Value v, Type type, function_ref<Value()> make) {
  SmallVector<Value, 1> &made = casts[{v, type}];
  for (Value c : made)
    if (dominatesInsertion(b, c))
      return c;
  made.push_back(make());
  return made.back();
}

namespace {

/// 64-bit integers (and index) are what RegionInlining::narrow narrows.
bool isWide(Type t) {
  if (auto vec = dyn_cast<VectorType>(t))
    t = vec.getElementType();
  return t.isIndex() || (isa<IntegerType>(t) && t.getIntOrFloatBitWidth() > 32);
}

/// Range inference for RegionInlining::narrow: the signed and unsigned
/// ranges of a region's integer values, from its index arguments' (in
/// [0, 2^31 - 1): positions and b, h), the element types of the buffers
/// read, the shapes (at most 2^31 - 1) and each op's InferIntRangeInterface.
/// An op whose 64-bit operands and results all fit in i32 computes in i32.
class Narrowing {
public:
  Narrowing(Block &block, unsigned numLeading, Value route) {
    constexpr int64_t kMaxPosition = (int64_t(1) << 31) - 2, kMaxShape = kMaxPosition + 1;
    for (BlockArgument arg : block.getArguments().take_front(numLeading))
      if (arg.getType().isIndex())
        ranges.insert_or_assign(arg, signedRange(0, kMaxPosition));
    for (Operation &op : block) {
      if (op.getNumResults() != 1 || !getElementTypeOrSelf(op.getResult(0).getType()).isIntOrIndex())
        continue;
      Value r = op.getResult(0);
      if (auto load = dyn_cast<attn::LoadOp>(op)) {
        Type elt = cast<MemRefType>(load.getBuffer().getType()).getElementType();
        if (elt.isInteger(1))
          ranges.insert_or_assign(r, signedRange(0, 1));
        else if (elt.isInteger() && elt.getIntOrFloatBitWidth() <= 32) {
          unsigned w = elt.getIntOrFloatBitWidth();
          ranges.insert_or_assign(r, signedRange(-(int64_t(1) << (w - 1)), (int64_t(1) << (w - 1)) - 1));
        }
      } else if (isa<attn::ShapeOp>(op)) {
        ranges.insert_or_assign(r, signedRange(0, kMaxShape));
      } else if (isa<attn::RouteOp>(op)) {
        APInt c;
        if (route && matchPattern(route, m_ConstantInt(&c)))
          ranges.insert_or_assign(r, ConstantIntRanges::constant(c.sextOrTrunc(64)));
      } else if (auto infer = dyn_cast<InferIntRangeInterface>(op)) {
        if (!llvm::all_of(op.getOperandTypes(), [](Type t) { return t.isIntOrIndex(); }))
          continue;
        SmallVector<ConstantIntRanges> args;
        for (Value v : op.getOperands())
          args.push_back(rangeOf(v));
        infer.inferResultRanges(args, [&](Value v, const ConstantIntRanges &range) {
          ranges.insert_or_assign(v, range);
        });
      }
    }
  }

  /// Whether `v` is 64-bit with a range within i32's (and, if
  /// `nonNegative`, not below 0).
  bool fits(Value v, bool nonNegative = false) const {
    auto it = ranges.find(v);
    return isWide(v.getType()) && it != ranges.end() &&
           it->second.smin().getSExtValue() >= (nonNegative ? 0 : INT32_MIN) &&
           it->second.smax().getSExtValue() <= INT32_MAX;
  }

  /// A signed division or remainder of non-negative values (a position
  /// divided by a block size) as its unsigned form, which needs no
  /// rounding fix-up (a shift where the divisor is a power of 2), built
  /// on the mapped `operands`; null where the op is not such.
  Operation *unsignedForm(OpBuilder &b, Operation &op, IRMapping &operands) const {
    if (!isa<arith::DivSIOp, arith::FloorDivSIOp, arith::CeilDivSIOp, arith::RemSIOp>(op) ||
        llvm::any_of(op.getOperands(), [&](Value v) { return rangeOf(v).smin().isNegative(); }))
      return nullptr;
    Value lhs = operands.lookup(op.getOperand(0)), rhs = operands.lookup(op.getOperand(1));
    Location loc = op.getLoc();
    if (isa<arith::DivSIOp, arith::FloorDivSIOp>(op))
      return arith::DivUIOp::create(b, loc, lhs, rhs);
    if (isa<arith::CeilDivSIOp>(op))
      return arith::CeilDivUIOp::create(b, loc, lhs, rhs);
    return arith::RemUIOp::create(b, loc, lhs, rhs);
  }

  /// Whether `op` computes in i32 (its 64-bit values narrowed).
  bool narrows(Operation &op) const {
    bool unsignedOp = isa<arith::DivUIOp, arith::RemUIOp, arith::CeilDivUIOp, arith::MinUIOp,
                          arith::MaxUIOp, arith::IndexCastUIOp, arith::UIToFPOp>(op);
    if (!unsignedOp &&
        !isa<arith::AddIOp, arith::SubIOp, arith::MulIOp, arith::DivSIOp, arith::RemSIOp,
             arith::FloorDivSIOp, arith::CeilDivSIOp, arith::MinSIOp, arith::MaxSIOp,
             arith::AndIOp, arith::OrIOp, arith::XOrIOp, arith::CmpIOp, arith::SelectOp,
             arith::ExtSIOp, arith::ExtUIOp, arith::TruncIOp, arith::IndexCastOp,
             arith::SIToFPOp>(op))
      return false;
    auto wideFits = [&](Value v) { return !isWide(v.getType()) || fits(v, unsignedOp); };
    auto anyWide = [](auto values) {
      return llvm::any_of(values, [](Value v) { return isWide(v.getType()); });
    };
    return (anyWide(op.getOperands()) || anyWide(op.getResults())) &&
           llvm::all_of(op.getOperands(), wideFits) && llvm::all_of(op.getResults(), wideFits);
  }

private:
  static ConstantIntRanges signedRange(int64_t lo, int64_t hi) {
    return ConstantIntRanges::fromSigned(APInt(64, lo, true), APInt(64, hi, true));
  }
  ConstantIntRanges rangeOf(Value v) const {
    auto it = ranges.find(v);
    if (it != ranges.end())
      return it->second;
    if (auto c = v.getDefiningOp<arith::ConstantOp>())
      if (auto i = dyn_cast<IntegerAttr>(c.getValue()))
        return ConstantIntRanges::constant(
            v.getType().isIndex() ? i.getValue().sextOrTrunc(64) : i.getValue());
    return ConstantIntRanges::maxRange(v.getType().isIndex() ? 64 : v.getType().getIntOrFloatBitWidth());
  }

  llvm::DenseMap<Value, ConstantIntRanges> ranges;
};

} // namespace

/// inlineVariantRegion, or with `invariantOnly` inlineInvariants: then the
/// ops that depend on a null leading value (or on an op left out) are left
/// out, and null is returned.
static Value inlineRegion(OpBuilder &b, Location loc, Region &region, const RegionInlining &how,
                          bool invariantOnly) {
  Block &block = region.front();
  // `map`: a region value's value at this inlining, in its own type;
  // `narrow`: its i32 value, where narrowed (RegionInlining::narrow). A
  // value has either or both; the other is made on demand.
  IRMapping map, narrow;
  unsigned numLeading = how.leading.size();
  std::optional<Narrowing> narrowing;
  if (how.narrow)
    narrowing.emplace(block, numLeading, how.route);
  for (auto [arg, value] : llvm::zip(block.getArguments().take_front(numLeading), how.leading))
    if (value)
      (isWide(value.getType()) || !isWide(arg.getType()) ? map : narrow).map(arg, value);
  for (auto [arg, value] : llvm::zip(block.getArguments().drop_front(numLeading), how.buffers))
    map.map(arg, value);
  // The region's values that depend on a varying argument (RegionMemo).
  llvm::DenseSet<Value> varying;
  if (how.memo)
    for (auto [arg, value] : llvm::zip(block.getArguments().take_front(numLeading), how.leading))
      if (!value || how.memo->varies(value))
        varying.insert(arg);
  auto widen = [&](Type t) -> Type {
    return how.width ? VectorType::get({how.width}, t) : t;
  };
  Type i32 = widen(b.getI32Type());
  auto castOnce = [&](Value v, Type type, function_ref<Value()> make) {
    return how.memo ? how.memo->cast(b, v, type, make) : make();
  };
  // Of an index_cast between index and i64: its source.
  llvm::DenseMap<Value, Value> castFrom;
  if (narrowing)
    for (auto cast : block.getOps<arith::IndexCastOp>())
      if (isWide(cast.getIn().getType()) && isWide(cast.getType()))
        castFrom[cast.getResult()] = cast.getIn();
  // Region value `v` in its own type (widened from its i32 value).
  auto wide = [&](Value v) -> Value {
    if (Value got = map.lookupOrNull(v))
      return got;
    Value n = narrow.lookupOrNull(v);
    if (!n)
      return v; // (not the region's)
    Type type = widen(v.getType());
    if (Value src = castFrom.lookup(v); src && map.contains(src)) {
      // (The cast of the source's own value, not the i32's extended.)
      Value got = castOnce(map.lookup(src), type, [&]() -> Value {
        return arith::IndexCastOp::create(b, loc, type, map.lookup(src));
      });
      map.map(v, got);
      return got;
    }
    Value got = castOnce(n, type, [&]() -> Value {
      if (getElementTypeOrSelf(type).isIndex())
        return arith::IndexCastOp::create(b, loc, type, n);
      return arith::ExtSIOp::create(b, loc, type, n);
    });
    map.map(v, got);
    return got;
  };
  // Region value `v` (64-bit, its range within i32's) as an i32.
  auto narrowed = [&](Value v) -> Value {
    if (Value got = narrow.lookupOrNull(v))
      return got;
    Value got;
    APInt c;
    if (matchPattern(v, m_ConstantInt(&c))) {
      // (Made once per constant where it dominates: a fresh one per
      // inlining would defeat the memo of the ops that read it.)
      got = castOnce(wide(v), i32, [&]() -> Value {
        Attribute attr = b.getI32IntegerAttr(c.getSExtValue());
        if (how.width)
          attr = DenseElementsAttr::get(cast<ShapedType>(i32), attr);
        return arith::ConstantOp::create(b, loc, cast<TypedAttr>(attr));
      });
    } else {
      Value w = wide(v);
      got = castOnce(w, i32, [&]() -> Value {
        if (getElementTypeOrSelf(w.getType()).isIndex())
          return arith::IndexCastOp::create(b, loc, i32, w);
        return arith::TruncIOp::create(b, loc, i32, w);
      });
    }
    narrow.map(v, got);
    return got;
  };
  // `op` in i32 (Narrowing::narrows): its results mapped in `narrow` where
  // 64-bit, else in `map`.
  auto emitNarrowed = [&](Operation &op) {
    Value result = op.getResult(0);
    if (isa<arith::IndexCastOp, arith::IndexCastUIOp, arith::ExtSIOp, arith::ExtUIOp,
            arith::TruncIOp>(op)) {
      Value src = op.getOperand(0);
      bool signExtends = !isa<arith::IndexCastUIOp, arith::ExtUIOp>(op);
      if (isWide(src.getType()) && isWide(result.getType())) {
        narrow.map(result, narrowed(src));
      } else if (isWide(result.getType())) { // from i32 or narrower
        Value from = map.lookup(src);
        if (getElementTypeOrSelf(src.getType()).getIntOrFloatBitWidth() < 32)
          from = signExtends ? Value(arith::ExtSIOp::create(b, loc, i32, from))
                             : Value(arith::ExtUIOp::create(b, loc, i32, from));
        narrow.map(result, from);
      } else { // to i32 or narrower
        Value from = narrowed(src);
        Type to = widen(result.getType());
        map.map(result, to == i32 ? from : Value(arith::TruncIOp::create(b, loc, to, from)));
      }
      return;
    }
    IRMapping operands;
    for (Value v : op.getOperands())
      operands.map(v, isWide(v.getType()) ? narrowed(v) : wide(v));
    Operation *clone = narrowing->unsignedForm(b, op, operands);
    if (!clone)
      clone = b.clone(op, operands);
    for (auto [r, c] : llvm::zip(op.getResults(), clone->getResults())) {
      if (isWide(r.getType())) {
        c.setType(i32);
        narrow.map(r, c);
      } else {
        c.setType(widen(r.getType()));
        map.map(r, c);
      }
    }
  };
  // Which operands and results an op takes and gives in i32 (`narrow`):
  // a narrowed op's 64-bit ones; a scalar attn.load's indices that fit,
  // and its value where read from an integer buffer of at most 32 bits.
  auto narrowedOperand = [&](Operation &op, Value v) {
    if (!narrowing)
      return false;
    if (isa<attn::LoadOp>(op))
      return !how.load && narrowing->fits(v);
    return isWide(v.getType()) && narrowing->narrows(op);
  };
  auto narrowedResult = [&](Operation &op, Value r) {
    if (!narrowing || !isWide(r.getType()))
      return false;
    if (auto load = dyn_cast<attn::LoadOp>(op)) {
      Type elt = cast<MemRefType>(load.getBuffer().getType()).getElementType();
      return !how.load && elt.isInteger() && elt.getIntOrFloatBitWidth() <= 32;
    }
    return narrowing->narrows(op);
  };
  // One op of the region at the insertion point, its results mapped.
  auto emit = [&](Operation &inner) {
    if (narrowing && narrowing->narrows(inner))
      return emitNarrowed(inner);
    for (Value v : inner.getOperands())
      if (!narrowedOperand(inner, v))
        wide(v);
    // (An op with regions, cloned with `map`: the region's values its
    // nested ops read, in their own type.)
    if (inner.getNumRegions())
      inner.walk([&](Operation *nested) {
        for (Value v : nested->getOperands())
          if (v.getParentBlock() == &block)
            wide(v);
      });
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
        indices.push_back(narrowedOperand(inner, i) ? narrowed(i) : map.lookup(i));
      Value buffer = how.buffers[which];
      bool narrowResult = narrowedResult(inner, load.getResult());
      Value got = how.load ? how.load(b, load, buffer, indices, which)
                           : scalarLoad(b, loc, load, buffer, indices, which, how.status,
                                        narrowResult ? b.getI32Type() : Type());
      (narrowResult ? narrow : map).map(load.getResult(), got);
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
      return invariantOnly ? Value() : wide(yield.getValue());
    bool varies = how.memo && llvm::any_of(inner.getOperands(),
                                           [&](Value v) { return varying.contains(v); });
    if (varies)
      varying.insert(inner.result_begin(), inner.result_end());
    bool memoized = how.memo && !varies && inner.getNumRegions() == 0 &&
                    (isa<attn::LoadOp, attn::ShapeOp>(inner) || isMemoryEffectFree(&inner));
    // Hoisted ops run where the loop's might not (a FULL tile's mask):
    // only those that cannot fault (a division by a value that may be 0
    // stays in place; reads are bounds-checked).
    if (invariantOnly && (!memoized || !(isa<attn::LoadOp, attn::ShapeOp>(inner) ||
                                         isSpeculatable(&inner)))) {
      // (Left out: what depends on it too.)
      varying.insert(inner.result_begin(), inner.result_end());
      continue;
    }
    SmallVector<Value, 4> operands;
    if (memoized) {
      for (Value v : inner.getOperands())
        operands.push_back(narrowedOperand(inner, v) ? narrowed(v) : wide(v));
      if (auto got = how.memo->lookup(b, &inner, operands)) {
        for (auto [r, g] : llvm::zip(inner.getResults(), *got))
          (narrowedResult(inner, r) ? narrow : map).map(r, g);
        continue;
      }
    }
    emit(inner);
    if (memoized) {
      SmallVector<Value, 1> out;
      for (Value r : inner.getResults())
        out.push_back(narrowedResult(inner, r) ? narrow.lookup(r) : map.lookup(r));
      how.memo->record(&inner, operands, out);
    }
  }
  llvm_unreachable("a variant region ends with attn.yield");
}

Value inlineVariantRegion(OpBuilder &b, Location loc, Region &region, const RegionInlining &how) {
  return inlineRegion(b, loc, region, how, /*invariantOnly=*/false);
}

void inlineInvariants(OpBuilder &b, Location loc, Region &region, const RegionInlining &how) {
  assert(how.memo && "the invariant ops are inlined for the memo's later lookups");
  inlineRegion(b, loc, region, how, /*invariantOnly=*/true);
}

bool isIdentityScore(attn::VariantOp variant) {
  Block &block = variant.getScore().front();
  return cast<attn::YieldOp>(block.getTerminator()).getValue() == block.getArgument(0);
}

Value indicesInRange(OpBuilder &b, Location loc, Value memref, ValueRange indices, Value ok) {
  // 0 <= i < size as one unsigned compare (sizes are not negative).
  for (auto [d, i] : llvm::enumerate(indices)) {
    Value size = memref::DimOp::create(b, loc, memref, d);
    if (!i.getType().isIndex()) // (i32: a dimension is below 2^31)
      size = arith::IndexCastUIOp::create(b, loc, i.getType(), size);
    ok = arith::AndIOp::create(b, loc, ok,
                               arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, i, size));
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
