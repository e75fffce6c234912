// The GPU backward's buffer gradients, deterministic (docs/backward.md,
// "Deterministic buffer gradients on GPUs"). Blocks add into the same
// gradient elements in an order the hardware picks; float atomics would
// make the result depend on it. Instead each element has a fixed-point
// accumulator in a workspace of i64 words, 8 per element:
//
//   [d0, d1, d2, d3, d4, d5, flags, count]
//
// A contribution x is |x| 2^64 truncated to an integer (exact for |x| >=
// 2^-41; bits below 2^-64 are dropped) in base 2^24: its 24-bit mantissa m
// shifted by s = e - 86 spans at most two digits k, k + 1, which it adds to
// words k and k + 1, negated for a negative x (signed digits: no carries,
// so no add waits for another's result), and count gets 1.
// Integer addition is associative, so the words -- and the f32 each element
// becomes -- are the same whatever the order. A word stays exact for 2^39
// contributions (|digit| < 2^24); an element that counts more becomes NaN.
// NaN and |x| >= 2^63 (infinity included: outside the accumulator) set flag
// bits instead (1: NaN, 2: +inf, 4: -inf), which the element then becomes
// (NaN for both infinities).
//
// The kernels take the workspace and a `finalize` flag as their last two
// arguments. The runtime zeroes the workspace on the stream, runs the dQ
// and dK/dV kernels (finalize 0), then the dK/dV kernel once more with
// finalize 1 over ceil(elements / threads) blocks: each thread propagates
// one element's carries (digits back in [0, 2^24), the top word signed),
// sums the digits from the top in f64 and writes the f32 into the gradient
// buffer (within one f32 ulp of the exact sum: f64 then f32 roundings).
#include "MatrixCore.h"

#include "../TileCommon/VariantRegions.h"
#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::gpu_tile {

namespace {

constexpr int64_t kWordsPerElement = 8;
constexpr int64_t kDigits = 6, kDigitBits = 24, kFlagsWord = 6, kCountWord = 7;
constexpr int64_t kFlagNaN = 1, kFlagPositive = 2, kFlagNegative = 4;

/// The number of elements of `buffer` (a contiguous gradient buffer).
Value elementsOf(OpBuilder &b, Location loc, Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  Value n = index(b, loc, 1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    n = arith::MulIOp::create(b, loc, n, memref::DimOp::create(b, loc, buffer, d));
  return n;
}

Value i64c(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIntOp::create(b, loc, v, 64);
}

Value f64c(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v));
}

/// workspace[at] op= x (atomically); returns the old word.
Value atomic(OpBuilder &b, Location loc, arith::AtomicRMWKind kind, Value workspace, Value at,
             Value x) {
  return memref::AtomicRMWOp::create(b, loc, kind, x, workspace, ValueRange{at});
}

} // namespace

LogicalResult prepareGradientAccumulators(gpu::GPUFuncOp kernel, GradientAccumulators &out) {
  MLIRContext *ctx = kernel.getContext();
  // The gradient buffers: the last operands of the derivative ops' buffers,
  // as many as the derivative variant lists.
  auto take = [&](Operation *op, FlatSymbolRefAttr name, OperandRange buffers) -> LogicalResult {
    VariantOp grad = lookupVariant(op, name);
    auto positions = grad ? grad->getAttrOfType<DenseI64ArrayAttr>("gradients") : nullptr;
    if (!positions || positions.empty())
      return success();
    if (size_t(positions.size()) > buffers.size())
      return op->emitOpError() << "names fewer buffers than its variant's gradients";
    auto grads = buffers.take_back(positions.size());
    if (out.buffers.empty()) {
      out.buffers.assign(grads.begin(), grads.end());
      return success();
    }
    if (!llvm::equal(out.buffers, grads))
      return op->emitOpError() << "adds to other gradient buffers than the kernel's others";
    return success();
  };
  WalkResult walk = kernel.walk([&](Operation *op) {
    LogicalResult ok = success();
    if (auto g = dyn_cast<TileGradScoresOp>(op))
      ok = take(op, g.getVariantAttr(), g.getBuffers());
    else if (auto g = dyn_cast<TileGradSinkOp>(op))
      ok = take(op, g.getVariantAttr(), g.getBuffers());
    return failed(ok) ? WalkResult::interrupt() : WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  // Every backward kernel takes the two arguments (the runtime passes them
  // alike); a kernel with no gradient buffers does not read them.
  unsigned at = kernel.getNumArguments();
  Type words = MemRefType::get({ShapedType::kDynamic}, IntegerType::get(ctx, 64));
  if (failed(kernel.insertArgument(at, words, DictionaryAttr::get(ctx), kernel.getLoc())) ||
      failed(kernel.insertArgument(at + 1, IndexType::get(ctx), DictionaryAttr::get(ctx),
                                   kernel.getLoc())))
    return kernel.emitOpError() << "cannot take the gradient workspace's arguments";
  out.workspace = kernel.getArgument(at);
  out.finalize = kernel.getArgument(at + 1);
  OpBuilder b = OpBuilder::atBlockBegin(&kernel.getBody().front());
  Location loc = kernel.getLoc();
  Value next = index(b, loc, 0);
  out.offsets.clear();
  for (Value buffer : out.buffers) {
    out.offsets.push_back(next);
    next = arith::AddIOp::create(
        b, loc, next,
        arith::MulIOp::create(b, loc, elementsOf(b, loc, buffer), index(b, loc, kWordsPerElement)));
  }
  return success();
}

bool GradientAccumulators::accumulates(Value gradient) const {
  return llvm::is_contained(buffers, gradient);
}

void GradientAccumulators::add(OpBuilder &b, Location loc, Value gradient, ValueRange indices,
                               Value value, Value ok) const {
  auto found = llvm::find(buffers, gradient);
  assert(found != buffers.end() && "not one of the kernel's gradient buffers");
  Value offset = offsets[size_t(found - buffers.begin())];
  Type i32 = b.getI32Type(), i64 = b.getI64Type();
  auto c32 = [&](int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 32).getResult(); };
  auto cmp = [&](arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y).getResult();
  };
  using P = arith::CmpIPredicate;
  // The f32's fields: x = m 2^(e - 150) for a normal x (biased exponent e,
  // m with its implicit bit), so |x| 2^64 = m 2^(e - 86).
  Value bits = arith::BitcastOp::create(b, loc, i32, value);
  Value e = arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, bits, c32(23)), c32(255));
  // Zeros and subnormals (below 2^-126) add nothing at 64 fraction bits.
  Value live = arith::AndIOp::create(b, loc, indicesInRange(b, loc, gradient, indices, ok),
                                     cmp(P::ne, e, c32(0)));
  auto ifLive = scf::IfOp::create(b, loc, live, false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifLive.getThenRegion().front());
  // The element's first word, in 32 bits (the runtime keeps the workspace
  // below 2^31 words).
  Value lin = c32(0);
  for (auto [d, i] : llvm::enumerate(indices)) {
    Value dim = arith::IndexCastOp::create(b, loc, i32,
                                           memref::DimOp::create(b, loc, gradient, int64_t(d)));
    lin = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, lin, dim),
                                arith::IndexCastOp::create(b, loc, i32, i));
  }
  Value at = arith::AddIOp::create(b, loc, arith::IndexCastOp::create(b, loc, i32, offset),
                                   arith::MulIOp::create(b, loc, lin, c32(kWordsPerElement)));
  auto word = [&](Value w) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), w).getResult();
  };
  Value negative = cmp(P::slt, bits, c32(0));
  // e = 255: NaN or infinity; e >= 190: |x| >= 2^63.
  auto special = scf::IfOp::create(b, loc, cmp(P::uge, e, c32(190)), true);
  b.setInsertionPointToStart(&special.getThenRegion().front());
  Value isNaN = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, value, value);
  Value flag = arith::SelectOp::create(
      b, loc, isNaN, i64c(b, loc, kFlagNaN),
      arith::SelectOp::create(b, loc, negative, i64c(b, loc, kFlagNegative),
                              i64c(b, loc, kFlagPositive)));
  atomic(b, loc, arith::AtomicRMWKind::ori, workspace,
         word(arith::AddIOp::create(b, loc, at, c32(kFlagsWord))), flag);
  b.setInsertionPointToStart(&special.getElseRegion().front());
  // m 2^s, s = e - 86 in [-85, 103]: below 2^0 (s < 0) m >> -s in digit 0;
  // else m << (s mod 24) across digits s / 24 and s / 24 + 1.
  Value m = arith::OrIOp::create(b, loc, arith::AndIOp::create(b, loc, bits, c32(0x7fffff)),
                                 c32(0x800000));
  Value s = arith::SubIOp::create(b, loc, e, c32(86));
  Value below = cmp(P::slt, s, c32(0));
  Value up = arith::MaxSIOp::create(b, loc, s, c32(0));
  Value k = arith::DivUIOp::create(b, loc, up, c32(kDigitBits));
  Value r = arith::SubIOp::create(b, loc, up, arith::MulIOp::create(b, loc, k, c32(kDigitBits)));
  Value down = arith::MinUIOp::create(b, loc, arith::SubIOp::create(b, loc, c32(0), s), c32(31));
  Value shifted = arith::SelectOp::create(
      b, loc, below,
      arith::ExtUIOp::create(b, loc, i64, arith::ShRUIOp::create(b, loc, m, down)),
      arith::ShLIOp::create(b, loc, arith::ExtUIOp::create(b, loc, i64, m),
                            arith::ExtUIOp::create(b, loc, i64, r)));
  Value low = arith::AndIOp::create(b, loc, shifted, i64c(b, loc, (int64_t(1) << kDigitBits) - 1));
  Value high = arith::ShRUIOp::create(b, loc, shifted, i64c(b, loc, kDigitBits));
  auto signed_ = [&](Value d) {
    return arith::SelectOp::create(b, loc, negative,
                                   arith::SubIOp::create(b, loc, i64c(b, loc, 0), d), d)
        .getResult();
  };
  Value digit = arith::AddIOp::create(b, loc, at, k);
  atomic(b, loc, arith::AtomicRMWKind::addi, workspace, word(digit), signed_(low));
  atomic(b, loc, arith::AtomicRMWKind::addi, workspace,
         word(arith::AddIOp::create(b, loc, digit, c32(1))), signed_(high));
  atomic(b, loc, arith::AtomicRMWKind::addi, workspace,
         word(arith::AddIOp::create(b, loc, at, c32(kCountWord))), i64c(b, loc, 1));
}

void addGradientFinalize(gpu::GPUFuncOp kernel, const GradientAccumulators &grads,
                         int64_t threads) {
  if (grads.buffers.empty())
    return;
  Location loc = kernel.getLoc();
  Block *entry = &kernel.getBody().front();
  Block *main = entry->splitBlock(entry->begin());
  Block *finish = new Block();
  kernel.getBody().getBlocks().insertAfter(entry->getIterator(), finish);
  OpBuilder b = OpBuilder::atBlockEnd(entry);
  Value flag = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, grads.finalize,
                                     index(b, loc, 0));
  cf::CondBranchOp::create(b, loc, flag, finish, ValueRange{}, main, ValueRange{});

  // One element a thread: e = block x * threads + thread x.
  b.setInsertionPointToEnd(finish);
  Value e = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x),
                            index(b, loc, threads)),
      threadId(b, loc));
  Value first = index(b, loc, 0);
  for (Value buffer : grads.buffers) {
    Value n = elementsOf(b, loc, buffer);
    Value end = arith::AddIOp::create(b, loc, first, n);
    Value mine = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, e, first),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, e, end));
    auto ifMine = scf::IfOp::create(b, loc, mine, false);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifMine.getThenRegion().front());
      Value local = arith::SubIOp::create(b, loc, e, first);
      // (The buffers' words follow one another in the workspace, in the
      // order of the elements: element e's are at 8 e.)
      Value base = arith::MulIOp::create(b, loc, e, index(b, loc, kWordsPerElement));
      SmallVector<Value> w;
      for (int64_t i = 0; i < kWordsPerElement; ++i)
        w.push_back(memref::LoadOp::create(
            b, loc, grads.workspace,
            ValueRange{arith::AddIOp::create(b, loc, base, index(b, loc, i))}));
      // The carries: each digit back in [0, 2^24) (an arithmetic shift is
      // a floor), the rest into the next; the top word keeps the sign.
      for (int64_t i = 0; i + 1 < kDigits; ++i) {
        Value carry = arith::ShRSIOp::create(b, loc, w[i], i64c(b, loc, kDigitBits));
        w[i] = arith::SubIOp::create(b, loc, w[i],
                                     arith::ShLIOp::create(b, loc, carry, i64c(b, loc, kDigitBits)));
        w[i + 1] = arith::AddIOp::create(b, loc, w[i + 1], carry);
      }
      // |x| 2^64 from the top digit down, in f64 (exact up to 2^53).
      Value sum = arith::SIToFPOp::create(b, loc, b.getF64Type(), w[kDigits - 1]);
      for (int64_t i = kDigits - 2; i >= 0; --i)
        sum = arith::AddFOp::create(
            b, loc, arith::MulFOp::create(b, loc, sum, f64c(b, loc, double(int64_t(1) << kDigitBits))),
            arith::UIToFPOp::create(b, loc, b.getF64Type(), w[i]));
      sum = arith::MulFOp::create(b, loc, sum, f64c(b, loc, 0x1p-64));
      Value x = arith::TruncFOp::create(b, loc, b.getF32Type(), sum);
      Value flags = w[kFlagsWord];
      auto flagSet = [&](int64_t bit) {
        return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                     arith::AndIOp::create(b, loc, flags, i64c(b, loc, bit)),
                                     i64c(b, loc, 0));
      };
      // More contributions than a word holds exactly: NaN.
      Value full = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, w[kCountWord],
                                         i64c(b, loc, int64_t(1) << 39));
      Value nan = arith::OrIOp::create(b, loc, flagSet(kFlagNaN), full);
      Value pos = flagSet(kFlagPositive), neg = flagSet(kFlagNegative);
      auto f32c = [&](float v) {
        return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)).getResult();
      };
      x = arith::SelectOp::create(b, loc, neg, f32c(-INFINITY), x);
      x = arith::SelectOp::create(b, loc, pos, f32c(INFINITY), x);
      x = arith::SelectOp::create(
          b, loc, arith::OrIOp::create(b, loc, nan, arith::AndIOp::create(b, loc, pos, neg)),
          f32c(NAN), x);
      auto meta = memref::ExtractStridedMetadataOp::create(b, loc, buffer);
      memref::StoreOp::create(b, loc, x, unitStrideView(b, loc, buffer, meta, meta.getOffset(), n),
                              ValueRange{local});
    }
    first = end;
  }
  gpu::ReturnOp::create(b, loc);
}

} // namespace heed::gpu_tile
