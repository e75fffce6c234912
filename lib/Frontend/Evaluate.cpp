// The float64 interpreter of elaborated spec expressions (the reference).
#include "heed/Frontend/Evaluate.h"

#include <cmath>
#include <limits>

namespace heed::spec {
namespace {

/// A value of the interpreter: integers stay exact int64, floats are double.
struct Value {
  int64_t i = 0;
  double f = 0;
};

int64_t floorDiv(int64_t a, int64_t b) {
  if (b == 0)
    return 0;
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    --q;
  return q;
}

int64_t floorRem(int64_t a, int64_t b) {
  if (b == 0)
    return 0;
  return a - floorDiv(a, b) * b;
}

int64_t toInt(double f) {
  if (std::isnan(f))
    return 0;
  if (f >= 9.2233720368547758e18)
    return std::numeric_limits<int64_t>::max();
  if (f <= -9.2233720368547758e18)
    return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(f); // truncation toward zero
}

class Interpreter {
public:
  Interpreter(const EvalPoint &p, const std::vector<BufferData> &buffers, int *outOfRange)
      : p(p), buffers(buffers), outOfRange(outOfRange) {}

  Value eval(const Expr &e) {
    switch (e.kind) {
    case ExprKind::Const:
      return {e.intValue, e.floatValue};
    case ExprKind::Index:
      switch (e.index) {
      case IndexVar::B: return {p.b, 0};
      case IndexVar::H: return {p.h, 0};
      case IndexVar::Q: return {p.q, 0};
      case IndexVar::KV: return {p.kv, 0};
      }
      return {};
    case ExprKind::Score:
      return {0, p.score};
    case ExprKind::Load:
      return load(e);
    case ExprKind::Unary:
      return unary(e);
    case ExprKind::Binary:
      return binary(e);
    case ExprKind::Select:
      return eval(*e.operands[0]).i ? eval(*e.operands[1]) : eval(*e.operands[2]);
    case ExprKind::Cast:
      return cast(e);
    }
    return {};
  }

private:
  Value load(const Expr &e) {
    if (e.buffer >= buffers.size())
      return fail(e.buffer);
    const BufferData &buf = buffers[e.buffer];
    if (buf.shape.size() != e.operands.size())
      return fail(e.buffer);
    int64_t flat = 0;
    for (size_t d = 0; d < e.operands.size(); ++d) {
      int64_t i = eval(*e.operands[d]).i;
      if (i < 0 || i >= buf.shape[d])
        return fail(e.buffer);
      flat = flat * buf.shape[d] + i;
    }
    double v = buf.values[flat];
    if (e.type == ScalarType::F32)
      return {0, v};
    if (e.type == ScalarType::Bool)
      return {v != 0 ? 1 : 0, 0};
    return {static_cast<int64_t>(v), 0};
  }

  Value fail(unsigned buffer) {
    if (outOfRange && *outOfRange == 0)
      *outOfRange = static_cast<int>(buffer) + 1;
    return {};
  }

  Value unary(const Expr &e) {
    Value a = eval(*e.operands[0]);
    bool isFloat = e.operands[0]->type == ScalarType::F32;
    switch (e.op) {
    case Op::Neg: return isFloat ? Value{0, -a.f} : Value{-a.i, 0};
    case Op::Not: return {a.i ? 0 : 1, 0};
    case Op::Abs: return isFloat ? Value{0, std::fabs(a.f)} : Value{a.i < 0 ? -a.i : a.i, 0};
    case Op::Exp: return {0, std::exp(a.f)};
    case Op::Log: return {0, std::log(a.f)};
    case Op::Tanh: return {0, std::tanh(a.f)};
    case Op::Sqrt: return {0, std::sqrt(a.f)};
    default: return {};
    }
  }

  Value binary(const Expr &e) {
    // && and || short-circuit, as their result does not depend on the other side.
    if (e.op == Op::And)
      return {eval(*e.operands[0]).i && eval(*e.operands[1]).i ? 1 : 0, 0};
    if (e.op == Op::Or)
      return {eval(*e.operands[0]).i || eval(*e.operands[1]).i ? 1 : 0, 0};
    Value a = eval(*e.operands[0]), c = eval(*e.operands[1]);
    ScalarType t = e.operands[0]->type;
    if (t == ScalarType::F32) {
      switch (e.op) {
      case Op::Add: return {0, a.f + c.f};
      case Op::Sub: return {0, a.f - c.f};
      case Op::Mul: return {0, a.f * c.f};
      case Op::Div: return {0, a.f / c.f};
      case Op::Min: return {0, std::fmin(a.f, c.f)};
      case Op::Max: return {0, std::fmax(a.f, c.f)};
      case Op::Eq: return {a.f == c.f, 0};
      case Op::Ne: return {a.f != c.f, 0};
      case Op::Lt: return {a.f < c.f, 0};
      case Op::Le: return {a.f <= c.f, 0};
      case Op::Gt: return {a.f > c.f, 0};
      case Op::Ge: return {a.f >= c.f, 0};
      default: return {};
      }
    }
    switch (e.op) {
    case Op::Add: return {static_cast<int64_t>(uint64_t(a.i) + uint64_t(c.i)), 0};
    case Op::Sub: return {static_cast<int64_t>(uint64_t(a.i) - uint64_t(c.i)), 0};
    case Op::Mul: return {static_cast<int64_t>(uint64_t(a.i) * uint64_t(c.i)), 0};
    case Op::Div: return {floorDiv(a.i, c.i), 0};
    case Op::Rem: return {floorRem(a.i, c.i), 0};
    case Op::Min: return {std::min(a.i, c.i), 0};
    case Op::Max: return {std::max(a.i, c.i), 0};
    case Op::Eq: return {a.i == c.i, 0};
    case Op::Ne: return {a.i != c.i, 0};
    case Op::Lt: return {a.i < c.i, 0};
    case Op::Le: return {a.i <= c.i, 0};
    case Op::Gt: return {a.i > c.i, 0};
    case Op::Ge: return {a.i >= c.i, 0};
    default: return {};
    }
  }

  Value cast(const Expr &e) {
    Value a = eval(*e.operands[0]);
    ScalarType from = e.operands[0]->type;
    switch (e.type) {
    case ScalarType::F32:
      return {0, from == ScalarType::F32 ? a.f : static_cast<double>(a.i)};
    case ScalarType::I64:
      return {from == ScalarType::F32 ? toInt(a.f) : a.i, 0};
    case ScalarType::Bool:
      return {from == ScalarType::F32 ? (a.f != 0) : (a.i != 0), 0};
    }
    return {};
  }

  const EvalPoint &p;
  const std::vector<BufferData> &buffers;
  int *outOfRange;
};

} // namespace

double evaluate(const Expr &e, const EvalPoint &point, const std::vector<BufferData> &buffers,
                int *outOfRange) {
  Value v = Interpreter(point, buffers, outOfRange).eval(e);
  return e.type == ScalarType::F32 ? v.f : static_cast<double>(v.i);
}

} // namespace heed::spec
