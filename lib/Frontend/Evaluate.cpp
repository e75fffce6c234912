// The interpreter of elaborated spec expressions and the language's scalar
// rules (Evaluate.h).
#include "heed/Frontend/Evaluate.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <limits>

namespace heed::spec {
namespace {

constexpr int64_t Int64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t Int64Max = std::numeric_limits<int64_t>::max();

using Value = Scalar;

Value ofInt(int64_t i) { return {i, 0}; }
Value ofBool(bool v) { return {v ? 1 : 0, 0}; }
/// Every f32 operation rounds its exact result once, as the kernel's f32
/// arithmetic does (for + - * / and sqrt, rounding the double result is the
/// same as rounding the exact one: a double carries more than 2 x 24 + 2 bits).
Value ofFloat(double f) { return {0, roundToF32(f)}; }
/// In exact mode (the backward reference, finite differences) nothing is
/// rounded to f32.
Value ofFloat(double f, bool exact) { return {0, exact ? f : roundToF32(f)}; }

// Integer arithmetic wraps around like the kernel's two's-complement ops
// instead of being undefined behaviour in C++.
int64_t wrapAdd(int64_t a, int64_t b) { return static_cast<int64_t>(uint64_t(a) + uint64_t(b)); }
int64_t wrapSub(int64_t a, int64_t b) { return static_cast<int64_t>(uint64_t(a) - uint64_t(b)); }
int64_t wrapMul(int64_t a, int64_t b) { return static_cast<int64_t>(uint64_t(a) * uint64_t(b)); }

// The operations, one definition each: the tree interpreter below and the
// compiled evaluator (ExprEvaluator) both apply these.

Value outside(unsigned buffer, int *outOfRange) {
  if (outOfRange && *outOfRange == 0)
    *outOfRange = static_cast<int>(buffer) + 1;
  return {};
}

/// A read of `e`'s buffer at `idx` (e.operands.size() indices).
Value applyLoad(const Expr &e, const int64_t *idx, const std::vector<BufferData> &buffers,
                int *outOfRange, bool exact = false) {
  if (e.buffer >= buffers.size())
    return outside(e.buffer, outOfRange);
  const BufferData &buf = buffers[e.buffer];
  if (buf.shape.size() != e.operands.size())
    return outside(e.buffer, outOfRange);
  uint64_t flat = 0;
  for (size_t d = 0; d < e.operands.size(); ++d) {
    if (idx[d] < 0 || idx[d] >= buf.shape[d])
      return outside(e.buffer, outOfRange);
    flat = flat * uint64_t(buf.shape[d]) + uint64_t(idx[d]);
  }
  if (flat >= buf.values.size()) // the data is shorter than its shape says
    return outside(e.buffer, outOfRange);
  double v = buf.values[flat];
  switch (e.type) {
  case ScalarType::F32: return ofFloat(v, exact);
  case ScalarType::Bool: return ofBool(v != 0);
  case ScalarType::I64: return ofInt(toInt64(v));
  }
  return {};
}

Value applyUnary(Op op, bool isFloat, Value a, bool exact = false) {
  switch (op) {
  case Op::Neg: return isFloat ? ofFloat(-a.f, exact) : ofInt(wrapSub(0, a.i));
  case Op::Not: return ofBool(a.i == 0);
  case Op::Abs:
    return isFloat ? ofFloat(std::fabs(a.f), exact) : ofInt(a.i < 0 ? wrapSub(0, a.i) : a.i);
  case Op::Exp: return ofFloat(std::exp(a.f), exact);
  case Op::Log: return ofFloat(std::log(a.f), exact);
  case Op::Tanh: return ofFloat(std::tanh(a.f), exact);
  case Op::Sqrt: return ofFloat(std::sqrt(a.f), exact);
  default: return {};
  }
}

/// A comparison of two f32 or two i64 operands; empty for other ops.
template <typename T> Value compare(Op op, T x, T y) {
  switch (op) {
  case Op::Eq: return ofBool(x == y);
  case Op::Ne: return ofBool(x != y);
  case Op::Lt: return ofBool(x < y);
  case Op::Le: return ofBool(x <= y);
  case Op::Gt: return ofBool(x > y);
  case Op::Ge: return ofBool(x >= y);
  default: return {};
  }
}

/// Binary operation `op`; `isFloat`: the operands are f32 (else i64, or bool
/// as 0/1). A template so that a loop over many points has the operation
/// fixed (applyBinary dispatches to it).
template <Op op> inline Value binaryOp(bool isFloat, Value a, Value c, bool exact = false) {
  if (isFloat) {
    switch (op) {
    case Op::Add: return ofFloat(a.f + c.f, exact);
    case Op::Sub: return ofFloat(a.f - c.f, exact);
    case Op::Mul: return ofFloat(a.f * c.f, exact);
    case Op::Div: return ofFloat(a.f / c.f, exact); // IEEE, as arith.divf
    // fmin/fmax ignore a NaN operand (IEEE minNum/maxNum, arith.minnumf).
    case Op::Min: return ofFloat(std::fmin(a.f, c.f), exact);
    case Op::Max: return ofFloat(std::fmax(a.f, c.f), exact);
    default: return compare(op, a.f, c.f);
    }
  }
  switch (op) {
  case Op::Add: return ofInt(wrapAdd(a.i, c.i));
  case Op::Sub: return ofInt(wrapSub(a.i, c.i));
  case Op::Mul: return ofInt(wrapMul(a.i, c.i));
  case Op::Div: return ofInt(floorDiv(a.i, c.i));
  case Op::Rem: return ofInt(floorRem(a.i, c.i));
  case Op::Min: return ofInt(std::min(a.i, c.i));
  case Op::Max: return ofInt(std::max(a.i, c.i));
  case Op::And: return ofBool(a.i != 0 && c.i != 0);
  case Op::Or: return ofBool(a.i != 0 || c.i != 0);
  default: return compare(op, a.i, c.i);
  }
}

/// Calls f(std::integral_constant<Op, op>) for the runtime `op`, so that f
/// can instantiate binaryOp<op> (the binary operators).
template <typename F> void withBinaryOp(Op op, F &&f) {
  switch (op) {
#define HEED_BINARY(O)                                                                             \
  case Op::O:                                                                                      \
    f(std::integral_constant<Op, Op::O>());                                                                            \
    return;
    HEED_BINARY(Add) HEED_BINARY(Sub) HEED_BINARY(Mul) HEED_BINARY(Div) HEED_BINARY(Rem)
    HEED_BINARY(Min) HEED_BINARY(Max) HEED_BINARY(Eq) HEED_BINARY(Ne) HEED_BINARY(Lt)
    HEED_BINARY(Le) HEED_BINARY(Gt) HEED_BINARY(Ge) HEED_BINARY(And) HEED_BINARY(Or)
#undef HEED_BINARY
  default:
    f(std::integral_constant<Op, Op::None>());
  }
}

Value applyBinary(Op op, bool isFloat, Value a, Value c, bool exact = false) {
  Value r;
  withBinaryOp(op, [&](auto o) { r = binaryOp<decltype(o)::value>(isFloat, a, c, exact); });
  return r;
}

Value applyCast(ScalarType to, bool fromFloat, Value a, bool exact = false) {
  switch (to) {
  // i64 -> f32 rounds once, to nearest (through double it could round twice).
  case ScalarType::F32:
    return ofFloat(fromFloat ? a.f : double(static_cast<float>(a.i)), exact);
  case ScalarType::I64: return ofInt(fromFloat ? toInt64(a.f) : a.i);
  case ScalarType::Bool: return ofBool(fromFloat ? a.f != 0 : a.i != 0);
  }
  return {};
}

Value applySelect(Value c, Value a, Value d) { return c.i ? a : d; }

bool isFloat(const ExprPtr &e) { return e->type == ScalarType::F32; }

/// The tree interpreter: one point, no state (param folding, single reads);
/// in exact mode (the backward reference) f32 operations are not rounded.
class Interpreter {
public:
  Interpreter(const EvalPoint &p, const std::vector<BufferData> &buffers, int *outOfRange,
              bool exact = false)
      : p(p), buffers(buffers), outOfRange(outOfRange), exact(exact) {}

  Value eval(const Expr &e) {
    switch (e.kind) {
    case ExprKind::Const:
      return e.type == ScalarType::F32 ? ofFloat(e.floatValue, exact) : ofInt(e.intValue);
    case ExprKind::Index:
      switch (e.index) {
      case IndexVar::B: return ofInt(p.b);
      case IndexVar::H: return ofInt(p.h);
      case IndexVar::Q: return ofInt(p.q);
      case IndexVar::KV: return ofInt(p.kv);
      case IndexVar::NumB: return ofInt(p.shape.batches);
      case IndexVar::NumH: return ofInt(p.shape.heads);
      case IndexVar::NumHkv: return ofInt(p.shape.headsKV);
      case IndexVar::Sq: return ofInt(p.shape.seqQ);
      case IndexVar::Skv: return ofInt(p.shape.seqKV);
      }
      return {};
    case ExprKind::Score:
      return ofFloat(p.score, exact);
    case ExprKind::Load: {
      // Indices are evaluated first, so reads nested in them are seen in order.
      std::vector<int64_t> idx = indices(e);
      return applyLoad(e, idx.data(), buffers, outOfRange, exact);
    }
    case ExprKind::Unary:
      return applyUnary(e.op, isFloat(e.operands[0]), eval(*e.operands[0]), exact);
    case ExprKind::Binary: {
      // Both sides of && and || are evaluated, for the same reason as Select.
      Value a = eval(*e.operands[0]), c = eval(*e.operands[1]);
      return applyBinary(e.op, isFloat(e.operands[0]), a, c, exact);
    }
    case ExprKind::Select: {
      // All three operands are evaluated, as in the kernel, which computes
      // whole vectors: an out-of-range read in the untaken branch counts too.
      Value c = eval(*e.operands[0]);
      Value a = eval(*e.operands[1]);
      Value d = eval(*e.operands[2]);
      return applySelect(c, a, d);
    }
    case ExprKind::Cast:
      return applyCast(e.type, isFloat(e.operands[0]), eval(*e.operands[0]), exact);
    }
    return {};
  }

  /// Adds adjoint * d(e)/d(x) to the gradient of every f32 input x of `e`
  /// (the score, float buffer elements); the derivative conventions are
  /// PyTorch autograd's (docs/backward.md).
  void backprop(const Expr &e, double adjoint, ScoreGradient &g) {
    if (adjoint == 0 || e.type != ScalarType::F32)
      return;
    auto operand = [&](size_t i) { return eval(*e.operands[i]).f; };
    switch (e.kind) {
    case ExprKind::Score:
      g.dScore += adjoint;
      return;
    case ExprKind::Load:
      return backpropLoad(e, adjoint, g);
    case ExprKind::Select:
      return backprop(*e.operands[eval(*e.operands[0]).i ? 1 : 2], adjoint, g);
    case ExprKind::Cast: // from i64 (or f32 itself): nothing flows through an integer
      if (e.operands[0]->type == ScalarType::F32)
        backprop(*e.operands[0], adjoint, g);
      return;
    case ExprKind::Unary: {
      double a = operand(0);
      double d = 0;
      switch (e.op) {
      case Op::Neg: d = -1; break;
      case Op::Abs: d = a > 0 ? 1 : a < 0 ? -1 : 0; break; // sign(x), 0 at 0
      case Op::Exp: d = std::exp(a); break;
      case Op::Log: d = 1 / a; break;
      case Op::Tanh: d = 1 - std::tanh(a) * std::tanh(a); break;
      case Op::Sqrt: d = 0.5 / std::sqrt(a); break;
      default: return;
      }
      return backprop(*e.operands[0], adjoint * d, g);
    }
    case ExprKind::Binary: {
      double a = operand(0), c = operand(1);
      double da = 0, dc = 0;
      switch (e.op) {
      case Op::Add: da = 1; dc = 1; break;
      case Op::Sub: da = 1; dc = -1; break;
      case Op::Mul: da = c; dc = a; break;
      case Op::Div: da = 1 / c; dc = -a / (c * c); break;
      // torch.minimum/maximum: the chosen side, half to each on a tie.
      case Op::Min: da = a < c ? 1 : a > c ? 0 : 0.5; dc = 1 - da; break;
      case Op::Max: da = a > c ? 1 : a < c ? 0 : 0.5; dc = 1 - da; break;
      default: return;
      }
      backprop(*e.operands[0], adjoint * da, g);
      backprop(*e.operands[1], adjoint * dc, g);
      return;
    }
    default:
      return;
    }
  }

private:
  std::vector<int64_t> indices(const Expr &e) {
    std::vector<int64_t> idx;
    idx.reserve(e.operands.size());
    for (const ExprPtr &o : e.operands)
      idx.push_back(eval(*o).i);
    return idx;
  }

  void backpropLoad(const Expr &e, double adjoint, ScoreGradient &g) {
    std::vector<int64_t> idx = indices(e);
    if (e.buffer >= buffers.size() || buffers[e.buffer].shape.size() != idx.size())
      return;
    const BufferData &buf = buffers[e.buffer];
    uint64_t flat = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      if (idx[d] < 0 || idx[d] >= buf.shape[d])
        return; // read as 0: no element to differentiate
      flat = flat * uint64_t(buf.shape[d]) + uint64_t(idx[d]);
    }
    if (flat < buf.values.size())
      g.buffers.push_back({e.buffer, flat, adjoint});
  }

  const EvalPoint &p;
  const std::vector<BufferData> &buffers;
  int *outOfRange;
  bool exact;
};

} // namespace

int64_t floorDiv(int64_t a, int64_t b) {
  if (b == 0)
    return 0;
  if (b == -1) // INT64_MIN / -1 overflows (and traps on x86): wrap instead
    return wrapSub(0, a);
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0)))
    --q;
  return q;
}

int64_t floorRem(int64_t a, int64_t b) {
  if (b == 0 || b == -1)
    return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0)))
    r += b;
  return r;
}

int64_t toInt64(double f) {
  if (std::isnan(f))
    return 0;
  if (f >= 0x1p63)
    return Int64Max;
  if (f < -0x1p63)
    return Int64Min;
  return static_cast<int64_t>(f);
}

/// The smallest magnitude that rounds to infinity in f32: the largest float
/// plus half its ulp (the tie goes to the even neighbour, 2^128).
constexpr double kF32Overflow = 0x1.ffffffp127;

bool overflowsF32(double v) { return std::isfinite(v) && std::fabs(v) >= kF32Overflow; }

double roundToF32(double v) {
  // A double beyond the float range is undefined behaviour to convert.
  if (std::fabs(v) >= kF32Overflow)
    return std::copysign(std::numeric_limits<double>::infinity(), v);
  return static_cast<float>(v);
}

Scalar evaluateScalar(const Expr &e, const EvalPoint &point,
                      const std::vector<BufferData> &buffers, int *outOfRange) {
  return Interpreter(point, buffers, outOfRange).eval(e);
}

double evaluateExact(const Expr &e, const EvalPoint &point,
                     const std::vector<BufferData> &buffers, int *outOfRange) {
  Scalar v = Interpreter(point, buffers, outOfRange, /*exact=*/true).eval(e);
  return e.type == ScalarType::F32 ? v.f : static_cast<double>(v.i);
}

void backpropagate(const Expr &e, const EvalPoint &point, const std::vector<BufferData> &buffers,
                   double adjoint, ScoreGradient &gradient) {
  Interpreter(point, buffers, nullptr, /*exact=*/true).backprop(e, adjoint, gradient);
}

Scalar evaluateConstant(const Expr &e) {
  static const std::vector<BufferData> none;
  return evaluateScalar(e, EvalPoint{}, none);
}

double evaluate(const Expr &e, const EvalPoint &point, const std::vector<BufferData> &buffers,
                int *outOfRange) {
  Scalar v = evaluateScalar(e, point, buffers, outOfRange);
  return e.type == ScalarType::F32 ? v.f : static_cast<double>(v.i);
}

namespace {
constexpr size_t kChunk = 256; ///< pairs evaluated per column pass
} // namespace

ExprProgram::ExprProgram(const Expr &root) {
  llvm::DenseMap<const Expr *, int32_t> ids;
  // Iterative post-order over the DAG: each node after its operands, once.
  std::vector<std::pair<const Expr *, size_t>> stack{{&root, 0}};
  while (!stack.empty()) {
    auto &[e, next] = stack.back();
    if (next < e->operands.size()) {
      const Expr *o = e->operands[next++].get();
      if (!ids.count(o))
        stack.push_back({o, 0});
      continue;
    }
    const Expr *done = e;
    stack.pop_back();
    if (ids.count(done))
      continue;
    Node node{done};
    node.perPair = done->kind == ExprKind::Score ||
                   (done->kind == ExprKind::Index && done->index == IndexVar::KV);
    for (const ExprPtr &o : done->operands) {
      node.operands.push_back(ids.lookup(o.get()));
      node.perPair |= nodes[node.operands.back()].perPair;
    }
    if (done->kind == ExprKind::Index)
      readMask |= 1u << unsigned(done->index);
    loads |= done->kind == ExprKind::Load;
    ids[done] = static_cast<int32_t>(nodes.size());
    nodes.push_back(node);
  }
}

ExprEvaluator::ExprEvaluator(const ExprProgram &program, const std::vector<BufferData> &buffers,
                             EvalShape shape)
    : program(program), buffers(buffers), shape(shape), row(program.nodes.size()),
      columns(program.nodes.size() * kChunk) {}

void ExprEvaluator::setRow(int64_t b, int64_t h, int64_t q) {
  this->b = b, this->h = h, this->q = q;
  EvalPoint point{b, h, q, 0, 0, shape};
  for (size_t n = 0; n < program.nodes.size(); ++n) {
    const ExprProgram::Node &node = program.nodes[n];
    if (node.perPair)
      continue;
    const Expr &e = *node.expr;
    auto operand = [&](int i) { return row[node.operands[i]]; };
    switch (e.kind) {
    case ExprKind::Load: {
      llvm::SmallVector<int64_t, 4> idx;
      for (int32_t o : node.operands)
        idx.push_back(row[o].i);
      row[n] = applyLoad(e, idx.data(), buffers, &oob);
      continue;
    }
    case ExprKind::Unary:
      row[n] = applyUnary(e.op, isFloat(e.operands[0]), operand(0));
      continue;
    case ExprKind::Binary:
      row[n] = applyBinary(e.op, isFloat(e.operands[0]), operand(0), operand(1));
      continue;
    case ExprKind::Select:
      row[n] = applySelect(operand(0), operand(1), operand(2));
      continue;
    case ExprKind::Cast:
      row[n] = applyCast(e.type, isFloat(e.operands[0]), operand(0));
      continue;
    default: // constants and b, h, q
      row[n] = Interpreter(point, buffers, &oob).eval(e);
      continue;
    }
  }
}

void ExprEvaluator::evaluate(const int64_t *kv, const double *score, size_t n, double *out) {
  for (size_t from = 0; from < n; from += kChunk)
    evaluateChunk(kv + from, score ? score + from : nullptr, std::min(kChunk, n - from),
                  out + from);
}

void ExprEvaluator::evaluateChunk(const int64_t *kv, const double *score, size_t n,
                                  double *out) {
  // An operand's values: a column of a per-pair node, or its one per-row value.
  struct Operand {
    const Scalar *data;
    size_t stride;
    const Scalar &operator[](size_t i) const { return data[i * stride]; }
  };
  auto operandOf = [&](const ExprProgram::Node &node, int i) {
    const ExprProgram::Node &o = program.nodes[node.operands[i]];
    int32_t id = node.operands[i];
    return o.perPair ? Operand{&columns[size_t(id) * kChunk], 1} : Operand{&row[id], 0};
  };
  for (size_t id = 0; id < program.nodes.size(); ++id) {
    const ExprProgram::Node &node = program.nodes[id];
    if (!node.perPair)
      continue;
    const Expr &e = *node.expr;
    Scalar *col = &columns[id * kChunk];
    switch (e.kind) {
    case ExprKind::Index: // kv: the only per-pair index
      for (size_t i = 0; i < n; ++i)
        col[i] = ofInt(kv[i]);
      break;
    case ExprKind::Score:
      for (size_t i = 0; i < n; ++i)
        col[i] = ofFloat(score[i]);
      break;
    case ExprKind::Load: {
      size_t rank = e.operands.size();
      llvm::SmallVector<Operand, 4> ops;
      for (size_t d = 0; d < rank; ++d)
        ops.push_back(operandOf(node, int(d)));
      llvm::SmallVector<int64_t, 4> idx(rank);
      for (size_t i = 0; i < n; ++i) {
        for (size_t d = 0; d < rank; ++d)
          idx[d] = ops[d][i].i;
        col[i] = applyLoad(e, idx.data(), buffers, &oob);
      }
      break;
    }
    case ExprKind::Unary: {
      Operand a = operandOf(node, 0);
      bool f = isFloat(e.operands[0]);
      for (size_t i = 0; i < n; ++i)
        col[i] = applyUnary(e.op, f, a[i]);
      break;
    }
    case ExprKind::Binary: {
      Operand a = operandOf(node, 0), c = operandOf(node, 1);
      bool f = isFloat(e.operands[0]);
      withBinaryOp(e.op, [&](auto o) {
        for (size_t i = 0; i < n; ++i)
          col[i] = binaryOp<decltype(o)::value>(f, a[i], c[i]);
      });
      break;
    }
    case ExprKind::Select: {
      Operand c = operandOf(node, 0), a = operandOf(node, 1), d = operandOf(node, 2);
      for (size_t i = 0; i < n; ++i)
        col[i] = applySelect(c[i], a[i], d[i]);
      break;
    }
    case ExprKind::Cast: {
      Operand a = operandOf(node, 0);
      bool f = isFloat(e.operands[0]);
      for (size_t i = 0; i < n; ++i)
        col[i] = applyCast(e.type, f, a[i]);
      break;
    }
    case ExprKind::Const:
      break; // never per pair
    }
  }
  const ExprProgram::Node &root = program.nodes.back();
  bool f = root.expr->type == ScalarType::F32;
  Operand r = root.perPair ? Operand{&columns[(program.nodes.size() - 1) * kChunk], 1}
                           : Operand{&row[program.nodes.size() - 1], 0};
  for (size_t i = 0; i < n; ++i)
    out[i] = f ? r[i].f : static_cast<double>(r[i].i);
}

double normalizeRow(const Variant &v, std::vector<double> &scores, double sink) {
  if (v.normalize == Normalization::Sigmoid) {
    for (double &s : scores)
      s = 1 / (1 + std::exp(-(s + v.sigmoidBias)));
    return std::numeric_limits<double>::quiet_NaN();
  }
  double m = -std::numeric_limits<double>::infinity();
  for (double s : scores)
    m = std::max(m, s);
  if (v.sink)
    m = std::max(m, sink);
  if (m == -std::numeric_limits<double>::infinity()) {
    std::fill(scores.begin(), scores.end(), 0.0);
    return m;
  }
  double l = v.sink ? std::exp(sink - m) : 0;
  for (double &s : scores)
    l += (s = std::exp(s - m));
  for (double &s : scores)
    s /= l;
  return m + std::log(l);
}

} // namespace heed::spec
