// Emits an elaborated spec::Variant as an attn.variant op with arith/math
// regions.
#include "heed/Frontend/EmitIR.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"

#include <limits>

using namespace mlir;

namespace heed {
namespace {

Type elementType(MLIRContext &ctx, spec::ElemType t) {
  switch (t) {
  case spec::ElemType::F32: return Float32Type::get(&ctx);
  case spec::ElemType::F16: return Float16Type::get(&ctx);
  case spec::ElemType::BF16: return BFloat16Type::get(&ctx);
  case spec::ElemType::I8: return IntegerType::get(&ctx, 8);
  case spec::ElemType::I32: return IntegerType::get(&ctx, 32);
  case spec::ElemType::I64: return IntegerType::get(&ctx, 64);
  case spec::ElemType::Bool: return IntegerType::get(&ctx, 8);
  }
  return {};
}

/// Emits the expression tree of one region. Shared subtrees (lets, repeated
/// library bodies) are emitted once.
class RegionEmitter {
public:
  RegionEmitter(OpBuilder &b, Location loc, const spec::Variant &v, Block &block,
                bool hasScore, bool readsRoute)
      : b(b), loc(loc), variant(v), block(block), hasScore(hasScore), readsRoute(readsRoute) {}

  Value emit(const spec::Expr &e) {
    auto it = cache.find(&e);
    if (it != cache.end())
      return it->second;
    // The route selector inside score and mask is the head's route value.
    Value v = readsRoute && &e == variant.route.get()
                  ? Value(attn::RouteOp::create(b, loc, i64()))
                  : emitUncached(e);
    cache[&e] = v;
    return v;
  }

private:
  Type i64() { return b.getI64Type(); }
  Type f32() { return b.getF32Type(); }
  Value intConst(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); }

  Value index(spec::IndexVar var) {
    if (spec::isShape(var)) {
      Value &slot = indexValues[static_cast<unsigned>(var)];
      if (!slot) {
        auto shape = static_cast<attn::Shape>(static_cast<unsigned>(var) -
                                              static_cast<unsigned>(spec::IndexVar::NumB));
        slot = attn::ShapeOp::create(b, loc, i64(), attn::ShapeAttr::get(b.getContext(), shape));
      }
      return slot;
    }
    unsigned pos = (hasScore ? 1 : 0) + static_cast<unsigned>(var);
    Value &slot = indexValues[static_cast<unsigned>(var)];
    if (!slot)
      slot = arith::IndexCastOp::create(b, loc, i64(), block.getArgument(pos));
    return slot;
  }

  Value emitUncached(const spec::Expr &e) {
    switch (e.kind) {
    case spec::ExprKind::Const:
      if (e.type == spec::ScalarType::F32)
        return arith::ConstantOp::create(
            b, loc, b.getF32FloatAttr(static_cast<float>(e.floatValue)));
      if (e.type == spec::ScalarType::Bool)
        return arith::ConstantIntOp::create(b, loc, e.intValue != 0, 1);
      return intConst(e.intValue);
    case spec::ExprKind::Index:
      return index(e.index);
    case spec::ExprKind::Score:
      return block.getArgument(0);
    case spec::ExprKind::Load: {
      // The buffers are the region's last arguments (after score/indices).
      unsigned first = block.getNumArguments() - variant.buffers.size();
      Value buffer = block.getArgument(first + e.buffer);
      SmallVector<Value> indices;
      for (const spec::ExprPtr &i : e.operands)
        indices.push_back(arith::IndexCastOp::create(b, loc, b.getIndexType(), emit(*i)));
      Type result = e.type == spec::ScalarType::F32 ? f32() : i64();
      Value v = attn::LoadOp::create(b, loc, result, buffer, indices);
      if (e.type == spec::ScalarType::Bool)
        v = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v, intConst(0));
      return v;
    }
    case spec::ExprKind::Unary:
      return unary(e.op, emit(*e.operands[0]), e.type);
    case spec::ExprKind::Binary:
      if ((e.op == spec::Op::Div || e.op == spec::Op::Rem) &&
          e.operands[0]->type == spec::ScalarType::I64)
        return intDivRem(e.op, emit(*e.operands[0]), *e.operands[1]);
      {
        // One operand at a time: the order of a call's arguments is
        // unspecified, and the IR must not depend on the C++ compiler.
        Value lhs = emit(*e.operands[0]);
        Value rhs = emit(*e.operands[1]);
        return binary(e.op, lhs, rhs, e.operands[0]->type);
      }
    case spec::ExprKind::Select: {
      Value cond = emit(*e.operands[0]);
      Value yes = emit(*e.operands[1]);
      Value no = emit(*e.operands[2]);
      return arith::SelectOp::create(b, loc, cond, yes, no);
    }
    case spec::ExprKind::Cast:
      return cast(emit(*e.operands[0]), e.operands[0]->type, e.type);
    }
    return {};
  }

  Value unary(spec::Op op, Value a, spec::ScalarType t) {
    bool isFloat = t == spec::ScalarType::F32;
    switch (op) {
    case spec::Op::Neg:
      return isFloat ? Value(arith::NegFOp::create(b, loc, a))
                     : Value(arith::SubIOp::create(b, loc, intConst(0), a));
    case spec::Op::Not:
      return arith::XOrIOp::create(b, loc, a, arith::ConstantIntOp::create(b, loc, 1, 1));
    case spec::Op::Abs:
      return isFloat ? Value(math::AbsFOp::create(b, loc, a))
                     : Value(math::AbsIOp::create(b, loc, a));
    case spec::Op::Exp: return math::ExpOp::create(b, loc, a);
    case spec::Op::Log: return math::LogOp::create(b, loc, a);
    case spec::Op::Tanh: return math::TanhOp::create(b, loc, a);
    case spec::Op::Sqrt: return math::SqrtOp::create(b, loc, a);
    default: break;
    }
    llvm_unreachable("not a unary op");
  }

  /// Integer division and remainder round toward -inf. A zero divisor gives
  /// 0, and -1 gives -x and 0 (INT64_MIN / -1 wraps), instead of a trap, so no
  /// user spec can crash a kernel (spec::floorDiv, spec::floorRem).
  Value intDivRem(spec::Op op, Value a, const spec::Expr &divisor) {
    // A constant other than 0 and -1 needs no guard: the plain floor division,
    // whose remainder the mask analysis recognizes.
    if (divisor.kind == spec::ExprKind::Const && divisor.intValue != 0 &&
        divisor.intValue != -1) {
      Value d = intConst(divisor.intValue);
      Value quot = arith::FloorDivSIOp::create(b, loc, a, d);
      if (op == spec::Op::Div)
        return quot;
      return arith::SubIOp::create(b, loc, a, arith::MulIOp::create(b, loc, quot, d));
    }
    Value d = emit(divisor);
    using IP = arith::CmpIPredicate;
    Value isZero = arith::CmpIOp::create(b, loc, IP::eq, d, intConst(0));
    Value isMinusOne = arith::CmpIOp::create(b, loc, IP::eq, d, intConst(-1));
    Value safe = arith::SelectOp::create(
        b, loc, arith::OrIOp::create(b, loc, isZero, isMinusOne), intConst(1), d);
    Value quot = arith::FloorDivSIOp::create(b, loc, a, safe);
    // With the divisor 1 in place of 0 or -1 the remainder is already 0.
    if (op == spec::Op::Rem)
      return arith::SubIOp::create(b, loc, a, arith::MulIOp::create(b, loc, quot, safe));
    Value negated = arith::SubIOp::create(b, loc, intConst(0), a);
    return arith::SelectOp::create(b, loc, isZero, intConst(0),
                                   arith::SelectOp::create(b, loc, isMinusOne, negated, quot));
  }

  /// f32 -> i64 saturates and takes NaN to 0 (spec::toInt64): arith.fptosi
  /// alone is poison out of range, so it only sees in-range values.
  Value floatToInt(Value v) {
    using FP = arith::CmpFPredicate;
    auto f32Const = [&](double c) {
      return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(c)));
    };
    Value limit = f32Const(0x1p63), negLimit = f32Const(-0x1p63);
    Value tooHigh = arith::CmpFOp::create(b, loc, FP::OGE, v, limit);
    Value tooLow = arith::CmpFOp::create(b, loc, FP::OLT, v, negLimit);
    // Ordered comparisons: NaN is neither, and fails `inRange` too.
    Value inRange = arith::AndIOp::create(b, loc, arith::CmpFOp::create(b, loc, FP::OGE, v, negLimit),
                                          arith::CmpFOp::create(b, loc, FP::OLT, v, limit));
    Value safe = arith::SelectOp::create(b, loc, inRange, v, f32Const(0));
    Value r = arith::FPToSIOp::create(b, loc, i64(), safe);
    r = arith::SelectOp::create(b, loc, tooHigh, intConst(std::numeric_limits<int64_t>::max()), r);
    return arith::SelectOp::create(b, loc, tooLow, intConst(std::numeric_limits<int64_t>::min()),
                                   r);
  }

  Value binary(spec::Op op, Value a, Value c, spec::ScalarType operandType) {
    bool isFloat = operandType == spec::ScalarType::F32;
    using IP = arith::CmpIPredicate;
    using FP = arith::CmpFPredicate;
    auto cmp = [&](IP ip, FP fp) -> Value {
      if (isFloat)
        return arith::CmpFOp::create(b, loc, fp, a, c);
      return arith::CmpIOp::create(b, loc, ip, a, c);
    };
    switch (op) {
    case spec::Op::Add:
      return isFloat ? Value(arith::AddFOp::create(b, loc, a, c)) : Value(arith::AddIOp::create(b, loc, a, c));
    case spec::Op::Sub:
      return isFloat ? Value(arith::SubFOp::create(b, loc, a, c)) : Value(arith::SubIOp::create(b, loc, a, c));
    case spec::Op::Mul:
      return isFloat ? Value(arith::MulFOp::create(b, loc, a, c)) : Value(arith::MulIOp::create(b, loc, a, c));
    case spec::Op::Div:
      return arith::DivFOp::create(b, loc, a, c); // i64: intDivRem
    case spec::Op::Min:
      return isFloat ? Value(arith::MinNumFOp::create(b, loc, a, c)) : Value(arith::MinSIOp::create(b, loc, a, c));
    case spec::Op::Max:
      return isFloat ? Value(arith::MaxNumFOp::create(b, loc, a, c)) : Value(arith::MaxSIOp::create(b, loc, a, c));
    case spec::Op::Eq: return cmp(IP::eq, FP::OEQ);
    case spec::Op::Ne: return cmp(IP::ne, FP::UNE);
    case spec::Op::Lt: return cmp(IP::slt, FP::OLT);
    case spec::Op::Le: return cmp(IP::sle, FP::OLE);
    case spec::Op::Gt: return cmp(IP::sgt, FP::OGT);
    case spec::Op::Ge: return cmp(IP::sge, FP::OGE);
    case spec::Op::And: return arith::AndIOp::create(b, loc, a, c);
    case spec::Op::Or: return arith::OrIOp::create(b, loc, a, c);
    default: break;
    }
    llvm_unreachable("not a binary op");
  }

  Value cast(Value v, spec::ScalarType from, spec::ScalarType to) {
    using T = spec::ScalarType;
    if (from == to)
      return v;
    if (from == T::I64 && to == T::F32)
      return arith::SIToFPOp::create(b, loc, f32(), v);
    if (from == T::F32 && to == T::I64)
      return floatToInt(v);
    if (from == T::Bool && to == T::I64)
      return arith::ExtUIOp::create(b, loc, i64(), v);
    if (from == T::Bool && to == T::F32)
      return arith::UIToFPOp::create(b, loc, f32(), v);
    if (to == T::Bool) {
      if (from == T::F32)
        return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v,
                                     arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0)));
      return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v, intConst(0));
    }
    llvm_unreachable("unsupported cast");
  }

  OpBuilder &b;
  Location loc;
  const spec::Variant &variant;
  Block &block;
  bool hasScore;
  bool readsRoute;
  llvm::DenseMap<const spec::Expr *, Value> cache;
  Value indexValues[9];
};

} // namespace

MemRefType bufferType(MLIRContext &context, const spec::BufferDecl &buffer) {
  SmallVector<int64_t> shape(buffer.shape.size(), ShapedType::kDynamic);
  return MemRefType::get(shape, elementType(context, buffer.elem));
}

attn::VariantOp emitVariant(OpBuilder &builder, Location loc,
                            const spec::Variant &variant) {
  MLIRContext &ctx = *builder.getContext();
  SmallVector<Attribute> types, names, shapes;
  SmallVector<Type> bufferTypes;
  for (const spec::BufferDecl &buf : variant.buffers) {
    MemRefType t = bufferType(ctx, buf);
    bufferTypes.push_back(t);
    types.push_back(TypeAttr::get(t));
    names.push_back(builder.getStringAttr(buf.name));
    SmallVector<Attribute> dims;
    for (const std::string &d : buf.shape)
      dims.push_back(builder.getStringAttr(d));
    shapes.push_back(builder.getArrayAttr(dims));
  }
  SmallVector<NamedAttribute> params;
  for (const spec::Param &p : variant.params) {
    Attribute value;
    switch (p.type) {
    case spec::ScalarType::I64: value = builder.getI64IntegerAttr(p.intValue); break;
    case spec::ScalarType::F32: value = builder.getF32FloatAttr(p.floatValue); break;
    case spec::ScalarType::Bool: value = builder.getBoolAttr(p.intValue != 0); break;
    }
    params.push_back(builder.getNamedAttr(p.name, value));
  }
  auto op = attn::VariantOp::create(
      builder, loc, builder.getStringAttr(variant.name), builder.getArrayAttr(types),
      builder.getArrayAttr(names), builder.getArrayAttr(shapes),
      builder.getDictionaryAttr(params),
      variant.route ? builder.getDenseI64ArrayAttr(variant.routeCases) : DenseI64ArrayAttr(),
      variant.gate ? builder.getDenseI64ArrayAttr(spec::gateLayout(*variant.gate))
                   : DenseI64ArrayAttr(),
      /*sparsity=*/attn::SparsityAttr(), /*grid=*/attn::GridAttr(),
      variant.normalize == spec::Normalization::Sigmoid
          ? attn::NormalizationAttr::get(&ctx, attn::Normalization::Sigmoid)
          : attn::NormalizationAttr(),
      variant.normalize == spec::Normalization::Sigmoid
          ? builder.getF32FloatAttr(static_cast<float>(variant.sigmoidBias))
          : FloatAttr());

  OpBuilder::InsertionGuard guard(builder);
  Type idx = builder.getIndexType();
  auto fill = [&](Region &region, SmallVector<Type> leading,
                  const spec::ExprPtr &expr, bool hasScore, bool readsRoute) {
    leading.append(bufferTypes.begin(), bufferTypes.end());
    SmallVector<Location> locs(leading.size(), loc);
    Block *block = builder.createBlock(&region, {}, leading, locs);
    RegionEmitter emitter(builder, loc, variant, *block, hasScore, readsRoute);
    Value result = emitter.emit(*expr);
    attn::YieldOp::create(builder, loc, result);
  };
  bool routed = variant.route != nullptr;
  fill(op.getScore(), {builder.getF32Type(), idx, idx, idx, idx}, variant.score, true, routed);
  fill(op.getMask(), {idx, idx, idx, idx}, variant.mask, false, routed);
  // The route region sees b and h at the positions of the index arguments.
  if (routed)
    fill(op.getRoute(), {idx, idx}, variant.route, false, false);
  // So does the sink region.
  if (variant.sink)
    fill(op.getSink(), {idx, idx}, variant.sink, false, false);
  return op;
}

OwningOpRef<ModuleOp> emitVariantModule(MLIRContext &context,
                                        const spec::Variant &variant) {
  context.loadDialect<attn::AttnDialect, arith::ArithDialect, math::MathDialect>();
  OpBuilder builder(&context);
  Location loc = builder.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module->getBody());
  emitVariant(builder, loc, variant);
  return module;
}

} // namespace heed
