// The interpreter of elaborated spec expressions and the language's scalar
// rules (Evaluate.h).
#include "heed/Frontend/Evaluate.h"

#include <algorithm>
#include <cmath>
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

// Integer arithmetic wraps around like the kernel's two's-complement ops
// instead of being undefined behaviour in C++.
int64_t wrapAdd(int64_t a, int64_t b) { return static_cast<int64_t>(uint64_t(a) + uint64_t(b)); }
int64_t wrapSub(int64_t a, int64_t b) { return static_cast<int64_t>(uint64_t(a) - uint64_t(b)); }
int64_t wrapMul(int64_t a, int64_t b) { return static_cast<int64_t>(uint64_t(a) * uint64_t(b)); }

class Interpreter {
public:
  Interpreter(const EvalPoint &p, const std::vector<BufferData> &buffers, int *outOfRange)
      : p(p), buffers(buffers), outOfRange(outOfRange) {}

  Value eval(const Expr &e) {
    switch (e.kind) {
    case ExprKind::Const:
      return e.type == ScalarType::F32 ? ofFloat(e.floatValue) : ofInt(e.intValue);
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
      return ofFloat(p.score);
    case ExprKind::Load:
      return load(e);
    case ExprKind::Unary:
      return unary(e);
    case ExprKind::Binary:
      return binary(e);
    case ExprKind::Select: {
      // All three operands are evaluated, as in the kernel, which computes
      // whole vectors: an out-of-range read in the untaken branch counts too.
      Value c = eval(*e.operands[0]);
      Value a = eval(*e.operands[1]);
      Value d = eval(*e.operands[2]);
      return c.i ? a : d;
    }
    case ExprKind::Cast:
      return cast(e);
    }
    return {};
  }

private:
  Value load(const Expr &e) {
    // Indices are evaluated first, so reads nested in them are seen in order.
    std::vector<int64_t> idx;
    idx.reserve(e.operands.size());
    for (const ExprPtr &o : e.operands)
      idx.push_back(eval(*o).i);
    if (e.buffer >= buffers.size())
      return outside(e.buffer);
    const BufferData &buf = buffers[e.buffer];
    if (buf.shape.size() != idx.size())
      return outside(e.buffer);
    uint64_t flat = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      if (idx[d] < 0 || idx[d] >= buf.shape[d])
        return outside(e.buffer);
      flat = flat * uint64_t(buf.shape[d]) + uint64_t(idx[d]);
    }
    if (flat >= buf.values.size()) // the data is shorter than its shape says
      return outside(e.buffer);
    double v = buf.values[flat];
    switch (e.type) {
    case ScalarType::F32: return ofFloat(v);
    case ScalarType::Bool: return ofBool(v != 0);
    case ScalarType::I64: return ofInt(toInt64(v));
    }
    return {};
  }

  Value outside(unsigned buffer) {
    if (outOfRange && *outOfRange == 0)
      *outOfRange = static_cast<int>(buffer) + 1;
    return {};
  }

  Value unary(const Expr &e) {
    Value a = eval(*e.operands[0]);
    bool isFloat = e.operands[0]->type == ScalarType::F32;
    switch (e.op) {
    case Op::Neg: return isFloat ? ofFloat(-a.f) : ofInt(wrapSub(0, a.i));
    case Op::Not: return ofBool(a.i == 0);
    case Op::Abs: return isFloat ? ofFloat(std::fabs(a.f)) : ofInt(a.i < 0 ? wrapSub(0, a.i) : a.i);
    case Op::Exp: return ofFloat(std::exp(a.f));
    case Op::Log: return ofFloat(std::log(a.f));
    case Op::Tanh: return ofFloat(std::tanh(a.f));
    case Op::Sqrt: return ofFloat(std::sqrt(a.f));
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

  Value binary(const Expr &e) {
    // Both sides of && and || are evaluated, for the same reason as Select.
    Value a = eval(*e.operands[0]), c = eval(*e.operands[1]);
    if (e.operands[0]->type == ScalarType::F32) {
      switch (e.op) {
      case Op::Add: return ofFloat(a.f + c.f);
      case Op::Sub: return ofFloat(a.f - c.f);
      case Op::Mul: return ofFloat(a.f * c.f);
      case Op::Div: return ofFloat(a.f / c.f); // IEEE, as arith.divf
      // fmin/fmax ignore a NaN operand (IEEE minNum/maxNum, arith.minnumf).
      case Op::Min: return ofFloat(std::fmin(a.f, c.f));
      case Op::Max: return ofFloat(std::fmax(a.f, c.f));
      default: return compare(e.op, a.f, c.f);
      }
    }
    // i64, or bool as 0/1 (==, !=, &&, ||).
    switch (e.op) {
    case Op::Add: return ofInt(wrapAdd(a.i, c.i));
    case Op::Sub: return ofInt(wrapSub(a.i, c.i));
    case Op::Mul: return ofInt(wrapMul(a.i, c.i));
    case Op::Div: return ofInt(floorDiv(a.i, c.i));
    case Op::Rem: return ofInt(floorRem(a.i, c.i));
    case Op::Min: return ofInt(std::min(a.i, c.i));
    case Op::Max: return ofInt(std::max(a.i, c.i));
    case Op::And: return ofBool(a.i != 0 && c.i != 0);
    case Op::Or: return ofBool(a.i != 0 || c.i != 0);
    default: return compare(e.op, a.i, c.i);
    }
  }

  Value cast(const Expr &e) {
    Value a = eval(*e.operands[0]);
    bool fromFloat = e.operands[0]->type == ScalarType::F32;
    switch (e.type) {
    // i64 -> f32 rounds once, to nearest (through double it could round twice).
    case ScalarType::F32: return ofFloat(fromFloat ? a.f : double(static_cast<float>(a.i)));
    case ScalarType::I64: return ofInt(fromFloat ? toInt64(a.f) : a.i);
    case ScalarType::Bool: return ofBool(fromFloat ? a.f != 0 : a.i != 0);
    }
    return {};
  }

  const EvalPoint &p;
  const std::vector<BufferData> &buffers;
  int *outOfRange;
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

Scalar evaluateConstant(const Expr &e) {
  static const std::vector<BufferData> none;
  return evaluateScalar(e, EvalPoint{}, none);
}

double evaluate(const Expr &e, const EvalPoint &point, const std::vector<BufferData> &buffers,
                int *outOfRange) {
  Scalar v = evaluateScalar(e, point, buffers, outOfRange);
  return e.type == ScalarType::F32 ? v.f : static_cast<double>(v.i);
}

} // namespace heed::spec
