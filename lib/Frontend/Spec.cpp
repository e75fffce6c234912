// Construction and printing of elaborated spec expressions.
#include "heed/Frontend/Spec.h"

#include "heed/Frontend/Evaluate.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <cassert>
#include <cstdlib>
#include <sstream>

namespace heed::spec {
namespace {

std::shared_ptr<Expr> node(ExprKind kind, ScalarType type) {
  auto e = std::make_shared<Expr>();
  e->kind = kind;
  e->type = type;
  return e;
}

int precedence(Op op) {
  switch (op) {
  case Op::Or: return 1;
  case Op::And: return 2;
  case Op::Eq: case Op::Ne: return 3;
  case Op::Lt: case Op::Le: case Op::Gt: case Op::Ge: return 4;
  case Op::Add: case Op::Sub: return 5;
  case Op::Mul: case Op::Div: case Op::Rem: return 6;
  default: return 7;
  }
}

const char *infix(Op op) {
  switch (op) {
  case Op::Add: return "+"; case Op::Sub: return "-"; case Op::Mul: return "*";
  case Op::Div: return "/"; case Op::Rem: return "%"; case Op::Eq: return "==";
  case Op::Ne: return "!="; case Op::Lt: return "<"; case Op::Le: return "<=";
  case Op::Gt: return ">"; case Op::Ge: return ">="; case Op::And: return "&&";
  case Op::Or: return "||";
  default: return nullptr;
  }
}

void printExpr(std::ostream &os, const Expr &e, const Variant *v, int outer) {
  switch (e.kind) {
  case ExprKind::Const:
    if (e.type == ScalarType::Bool)
      os << (e.intValue ? "true" : "false");
    else if (e.type == ScalarType::I64)
      os << e.intValue;
    else {
      // The shortest text that reads back as the same f32.
      std::string s;
      for (int digits = 6; digits <= 9; ++digits) {
        std::ostringstream f;
        f.precision(digits);
        f << e.floatValue;
        s = f.str();
        if (static_cast<float>(std::strtod(s.c_str(), nullptr)) ==
            static_cast<float>(e.floatValue))
          break;
      }
      if (s.find_first_of(".eEn") == std::string::npos)
        s += ".0";
      os << s;
    }
    return;
  case ExprKind::Index:
    os << toString(e.index);
    return;
  case ExprKind::Score:
    os << "score";
    return;
  case ExprKind::Load: {
    if (v && e.buffer < v->buffers.size())
      os << v->buffers[e.buffer].name;
    else
      os << "buffer" << e.buffer;
    os << "[";
    for (size_t i = 0; i < e.operands.size(); ++i) {
      if (i)
        os << ", ";
      printExpr(os, *e.operands[i], v, 0);
    }
    os << "]";
    return;
  }
  case ExprKind::Unary:
    if (e.op == Op::Neg || e.op == Op::Not) {
      os << (e.op == Op::Neg ? "-" : "!");
      printExpr(os, *e.operands[0], v, 8);
      return;
    }
    os << toString(e.op) << "(";
    printExpr(os, *e.operands[0], v, 0);
    os << ")";
    return;
  case ExprKind::Binary: {
    if (const char *sym = infix(e.op)) {
      int p = precedence(e.op);
      if (p <= outer)
        os << "(";
      printExpr(os, *e.operands[0], v, p - 1);
      os << " " << sym << " ";
      printExpr(os, *e.operands[1], v, p);
      if (p <= outer)
        os << ")";
      return;
    }
    os << toString(e.op) << "(";
    printExpr(os, *e.operands[0], v, 0);
    os << ", ";
    printExpr(os, *e.operands[1], v, 0);
    os << ")";
    return;
  }
  case ExprKind::Select:
    os << "select(";
    for (int i = 0; i < 3; ++i) {
      if (i)
        os << ", ";
      printExpr(os, *e.operands[i], v, 0);
    }
    os << ")";
    return;
  case ExprKind::Cast:
    os << toString(e.type) << "(";
    printExpr(os, *e.operands[0], v, 0);
    os << ")";
    return;
  }
}

} // namespace

ExprPtr makeInt(int64_t v) {
  auto e = node(ExprKind::Const, ScalarType::I64);
  e->intValue = v;
  return e;
}
ExprPtr makeFloat(double v) {
  auto e = node(ExprKind::Const, ScalarType::F32);
  e->floatValue = roundToF32(v);
  return e;
}
ExprPtr makeBool(bool v) {
  auto e = node(ExprKind::Const, ScalarType::Bool);
  e->intValue = v ? 1 : 0;
  return e;
}
ExprPtr makeIndex(IndexVar v) {
  auto e = node(ExprKind::Index, ScalarType::I64);
  e->index = v;
  return e;
}
ExprPtr makeScore() { return node(ExprKind::Score, ScalarType::F32); }
ExprPtr makeLoad(unsigned buffer, ScalarType type, std::vector<ExprPtr> indices) {
  auto e = node(ExprKind::Load, type);
  e->buffer = buffer;
  e->operands = std::move(indices);
  return e;
}
ExprPtr makeUnary(Op op, ExprPtr a) {
  auto e = node(ExprKind::Unary, a->type);
  e->op = op;
  e->operands = {std::move(a)};
  return e;
}
ExprPtr makeBinary(Op op, ExprPtr a, ExprPtr b) {
  assert(a->type == b->type && "binary operands must share a type");
  ScalarType t = isComparison(op) ? ScalarType::Bool : a->type;
  auto e = node(ExprKind::Binary, t);
  e->op = op;
  e->operands = {std::move(a), std::move(b)};
  return e;
}
ExprPtr makeSelect(ExprPtr c, ExprPtr a, ExprPtr b) {
  assert(a->type == b->type && c->type == ScalarType::Bool);
  auto e = node(ExprKind::Select, a->type);
  e->operands = {std::move(c), std::move(a), std::move(b)};
  return e;
}
ExprPtr makeCast(ScalarType to, ExprPtr a) {
  auto e = node(ExprKind::Cast, to);
  e->operands = {std::move(a)};
  return e;
}

namespace {

std::string symbol(Op op) {
  switch (op) {
  case Op::Neg: return "'-'";
  case Op::Not: return "'!'";
  case Op::And: return "'&&'";
  case Op::Or: return "'||'";
  default:
    break;
  }
  if (const char *s = infix(op))
    return std::string("'") + s + "'";
  return std::string("'") + toString(op) + "'";
}

/// i64 meets f32: the integer side becomes f32.
void promote(ExprPtr &a, ExprPtr &b) {
  if (a->type == ScalarType::I64 && b->type == ScalarType::F32)
    a = makeCast(ScalarType::F32, a);
  else if (a->type == ScalarType::F32 && b->type == ScalarType::I64)
    b = makeCast(ScalarType::F32, b);
}

} // namespace

ExprPtr typedUnary(Op op, ExprPtr a, std::string &error) {
  if (op == Op::Not) {
    if (a->type != ScalarType::Bool) {
      error = std::string("operator '!' needs a bool operand, got ") + toString(a->type);
      return nullptr;
    }
    return makeUnary(op, a);
  }
  if (a->type == ScalarType::Bool) {
    error = (op == Op::Neg ? std::string("operator '-'") : "'" + std::string(toString(op)) + "'") +
            " needs a number, got bool";
    return nullptr;
  }
  if (op == Op::Exp || op == Op::Log || op == Op::Tanh || op == Op::Sqrt)
    a = a->type == ScalarType::F32 ? a : makeCast(ScalarType::F32, a);
  return makeUnary(op, a);
}

ExprPtr typedBinary(Op op, ExprPtr a, ExprPtr b, std::string &error) {
  auto types = [&] { return std::string(toString(a->type)) + " and " + toString(b->type); };
  if (op == Op::And || op == Op::Or) {
    if (a->type != ScalarType::Bool || b->type != ScalarType::Bool) {
      error = "operator " + symbol(op) + " needs bool operands, got " + types();
      return nullptr;
    }
    return makeBinary(op, a, b);
  }
  if (op == Op::Eq || op == Op::Ne) {
    if ((a->type == ScalarType::Bool) != (b->type == ScalarType::Bool)) {
      error = "operator " + symbol(op) + " compares " + types();
      return nullptr;
    }
    promote(a, b);
    return makeBinary(op, a, b);
  }
  if (a->type == ScalarType::Bool || b->type == ScalarType::Bool) {
    error = "operator " + symbol(op) + " needs numbers, got " + types();
    return nullptr;
  }
  if (op == Op::Rem && (a->type != ScalarType::I64 || b->type != ScalarType::I64)) {
    error = "operator '%' needs i64 operands, got " + types();
    return nullptr;
  }
  promote(a, b);
  if (op == Op::Div && b->kind == ExprKind::Const && b->type == ScalarType::I64 &&
      b->intValue == 0) {
    error = "integer division by zero";
    return nullptr;
  }
  return makeBinary(op, a, b);
}

ExprPtr typedSelect(ExprPtr c, ExprPtr a, ExprPtr b, std::string &error) {
  if (c->type != ScalarType::Bool) {
    error = std::string("the condition must be bool, got ") + toString(c->type);
    return nullptr;
  }
  promote(a, b);
  if (a->type != b->type) {
    error = std::string("the branches have different types: ") + toString(a->type) + " and " +
            toString(b->type);
    return nullptr;
  }
  return makeSelect(c, a, b);
}

bool isBuiltinName(const std::string &n) {
  return n == "min" || n == "max" || n == "abs" || n == "exp" || n == "log" || n == "tanh" ||
         n == "sqrt" || n == "select" || n == "clamp" || n == "f32" || n == "i64";
}

ExprPtr typedBuiltin(const std::string &f, std::vector<ExprPtr> a, std::string &error,
                     bool &known) {
  known = isBuiltinName(f);
  if (!known)
    return nullptr;
  size_t want = (f == "min" || f == "max") ? 2 : (f == "select" || f == "clamp") ? 3 : 1;
  if (a.size() != want) {
    error = "'" + f + "' takes " + std::to_string(want) + " argument" + (want == 1 ? "" : "s") +
            ", got " + std::to_string(a.size());
    return nullptr;
  }
  if (f == "f32" || f == "i64") {
    ScalarType to = f == "f32" ? ScalarType::F32 : ScalarType::I64;
    return a[0]->type == to ? a[0] : makeCast(to, a[0]);
  }
  if (f == "abs")
    return typedUnary(Op::Abs, a[0], error);
  if (f == "exp")
    return typedUnary(Op::Exp, a[0], error);
  if (f == "log")
    return typedUnary(Op::Log, a[0], error);
  if (f == "tanh")
    return typedUnary(Op::Tanh, a[0], error);
  if (f == "sqrt")
    return typedUnary(Op::Sqrt, a[0], error);
  if (f == "min" || f == "max") {
    if (a[0]->type == ScalarType::Bool || a[1]->type == ScalarType::Bool) {
      error = "'" + f + "' needs numbers, got " + toString(a[0]->type) + " and " +
              toString(a[1]->type);
      return nullptr;
    }
    promote(a[0], a[1]);
    return makeBinary(f == "min" ? Op::Min : Op::Max, a[0], a[1]);
  }
  if (f == "select") {
    ExprPtr r = typedSelect(a[0], a[1], a[2], error);
    if (!r)
      error = "'select': " + error;
    return r;
  }
  // clamp(x, lo, hi) = min(max(x, lo), hi)
  ExprPtr lower = typedBuiltin("max", {a[0], a[1]}, error, known);
  if (!lower)
    return nullptr;
  return typedBuiltin("min", {lower, a[2]}, error, known);
}

ScalarType loadType(ElemType elem) {
  switch (elem) {
  case ElemType::F32: case ElemType::F16: case ElemType::BF16:
    return ScalarType::F32;
  case ElemType::Bool:
    return ScalarType::Bool;
  default:
    return ScalarType::I64;
  }
}

const char *toString(ScalarType t) {
  switch (t) {
  case ScalarType::I64: return "i64";
  case ScalarType::F32: return "f32";
  case ScalarType::Bool: return "bool";
  }
  return "?";
}

const char *toString(ElemType t) {
  switch (t) {
  case ElemType::F32: return "f32"; case ElemType::F16: return "f16";
  case ElemType::BF16: return "bf16"; case ElemType::I8: return "i8";
  case ElemType::I32: return "i32"; case ElemType::I64: return "i64";
  case ElemType::Bool: return "bool";
  }
  return "?";
}

const char *toString(IndexVar v) {
  switch (v) {
  case IndexVar::B: return "b"; case IndexVar::H: return "h";
  case IndexVar::Q: return "q"; case IndexVar::KV: return "kv";
  case IndexVar::NumB: return "B"; case IndexVar::NumH: return "H";
  case IndexVar::NumHkv: return "Hkv"; case IndexVar::Sq: return "Sq";
  case IndexVar::Skv: return "Skv";
  }
  return "?";
}

const char *toString(Op op) {
  switch (op) {
  case Op::None: return "none"; case Op::Neg: return "neg"; case Op::Not: return "not";
  case Op::Abs: return "abs"; case Op::Exp: return "exp"; case Op::Log: return "log";
  case Op::Tanh: return "tanh"; case Op::Sqrt: return "sqrt"; case Op::Add: return "add";
  case Op::Sub: return "sub"; case Op::Mul: return "mul"; case Op::Div: return "div";
  case Op::Rem: return "rem"; case Op::Min: return "min"; case Op::Max: return "max";
  case Op::Eq: return "eq"; case Op::Ne: return "ne"; case Op::Lt: return "lt";
  case Op::Le: return "le"; case Op::Gt: return "gt"; case Op::Ge: return "ge";
  case Op::And: return "and"; case Op::Or: return "or";
  }
  return "?";
}

bool isComparison(Op op) {
  return op == Op::Eq || op == Op::Ne || op == Op::Lt || op == Op::Le ||
         op == Op::Gt || op == Op::Ge;
}

std::string print(const Expr &e, const Variant *v) {
  std::ostringstream os;
  printExpr(os, e, v, 0);
  return os.str();
}

std::string applyGate(Variant &v, ExprPtr gate) {
  const char *form = "the gate must read a float buffer at b, q and h, each once, e.g. "
                     "'gate = router[b, q, h]' with 'buffer router: f32[B, Sq, H]'";
  if (gate->kind != ExprKind::Load || gate->type != ScalarType::F32 ||
      gate->operands.size() != 3)
    return form;
  std::set<IndexVar> seen;
  const BufferDecl &buf = v.buffers[gate->buffer];
  for (size_t d = 0; d < 3; ++d) {
    const Expr &i = *gate->operands[d];
    if (i.kind != ExprKind::Index || i.index == IndexVar::KV || isShape(i.index) ||
        !seen.insert(i.index).second)
      return form;
    const char *want = i.index == IndexVar::B ? "B" : i.index == IndexVar::Q ? "Sq" : "H";
    if (buf.shape[d] != want)
      return "the gate buffer '" + buf.name + "' is read at " + toString(i.index) +
             " in dimension " + std::to_string(d) + ", which must then be " + want +
             ", not " + buf.shape[d];
  }
  v.gate = gate;
  return "";
}

std::vector<int64_t> gateLayout(const Expr &gate) {
  std::vector<int64_t> out = {int64_t(gate.buffer), 0, 0, 0};
  for (size_t d = 0; d < gate.operands.size(); ++d) {
    IndexVar v = gate.operands[d]->index;
    out[v == IndexVar::B ? 1 : v == IndexVar::Q ? 2 : 3] = int64_t(d);
  }
  return out;
}

namespace {

/// Does any node of `e` satisfy `pred`?
template <typename Pred> bool anyNode(const Expr &e, Pred pred) {
  std::vector<const Expr *> stack = {&e};
  std::set<const Expr *> seen;
  while (!stack.empty()) {
    const Expr *x = stack.back();
    stack.pop_back();
    if (!seen.insert(x).second)
      continue;
    if (pred(*x))
      return true;
    for (const ExprPtr &o : x->operands)
      stack.push_back(o.get());
  }
  return false;
}

} // namespace

bool readsToken(const Expr &e) {
  return anyNode(e, [](const Expr &x) {
    return x.kind == ExprKind::Index && (x.index == IndexVar::Q || x.index == IndexVar::KV);
  });
}

const char *toString(Normalization n) {
  return n == Normalization::Sigmoid ? "sigmoid" : "softmax";
}

std::string applySigmoid(Variant &v, const ExprPtr &bias) {
  double value = 0;
  if (bias) {
    if (anyNode(*bias, [](const Expr &x) {
          return x.kind == ExprKind::Index || x.kind == ExprKind::Score ||
                 x.kind == ExprKind::Load;
        }))
      return "the sigmoid bias must be a constant (literals and params), not read b, h, q, "
             "kv, score or a buffer";
    if (bias->type == ScalarType::Bool)
      return "the sigmoid bias must be a number, got bool";
    Scalar c = evaluateConstant(*bias);
    value = bias->type == ScalarType::F32 ? c.f : roundToF32(static_cast<double>(c.i));
    if (!std::isfinite(value))
      return "the sigmoid bias must be finite";
  }
  v.normalize = Normalization::Sigmoid;
  v.sigmoidBias = value;
  v.sink = nullptr;
  return "";
}

std::string applySink(Variant &v, ExprPtr sink) {
  v.normalize = Normalization::Softmax;
  v.sigmoidBias = 0;
  v.sink = nullptr;
  if (!sink)
    return "";
  if (sink->type == ScalarType::Bool)
    return "a sink logit must be a number, got bool";
  if (readsToken(*sink) || anyNode(*sink, [](const Expr &x) { return x.kind == ExprKind::Score; }))
    return "a sink logit may depend on the batch and head only (b, h, buffers read at them), "
           "not on q, kv or score: it is one extra logit per head";
  if (sink->type == ScalarType::I64)
    sink = makeCast(ScalarType::F32, sink);
  v.sink = sink;
  return "";
}

std::string constantIndexError(const BufferDecl &buf, size_t dim, const Expr &index) {
  std::vector<const Expr *> stack = {&index};
  while (!stack.empty()) {
    const Expr *x = stack.back();
    stack.pop_back();
    if (x->kind == ExprKind::Index || x->kind == ExprKind::Score || x->kind == ExprKind::Load)
      return "";
    for (const ExprPtr &o : x->operands)
      stack.push_back(o.get());
  }
  int64_t at = evaluateConstant(index).i;
  int64_t extent = 0;
  bool known = dim < buf.shape.size() && !buf.shape[dim].empty() &&
               std::all_of(buf.shape[dim].begin(), buf.shape[dim].end(),
                           [](char c) { return c >= '0' && c <= '9'; });
  if (known)
    extent = std::strtoll(buf.shape[dim].c_str(), nullptr, 10);
  if (at >= 0 && (!known || at < extent))
    return "";
  return "index " + std::to_string(at) + " is out of range for dimension " +
         std::to_string(dim) + " of buffer '" + buf.name + "' (" +
         (known ? "size " + buf.shape[dim] : "indices start at 0") + ")";
}

std::string applyRoute(Variant &v, ExprPtr route, const std::vector<RouteCase> &cases) {
  if (route->type == ScalarType::Bool)
    route = makeCast(ScalarType::I64, route);
  if (route->type != ScalarType::I64)
    return std::string("a route selects by an integer (or bool), got ") + toString(route->type);
  if (readsToken(*route))
    return "a route may depend on the batch and head only (b, h, buffers read at them), not "
           "on q or kv: it picks one variant per head";
  if (cases.empty())
    return "a route needs at least one case";
  std::set<int64_t> values;
  for (const RouteCase &c : cases)
    if (!values.insert(c.value).second)
      return "route case " + std::to_string(c.value) + " appears twice";
  // Heads take their case's score and mask (the variant's own where the case
  // sets none); a head whose route value has no case sees no key.
  ExprPtr mask = makeBool(false), score = v.score;
  for (auto it = cases.rbegin(); it != cases.rend(); ++it) {
    ExprPtr is = makeBinary(Op::Eq, route, makeInt(it->value));
    mask = makeSelect(is, it->mask ? it->mask : v.mask, mask);
    score = makeSelect(is, it->score ? it->score : v.score, score);
  }
  v.mask = mask;
  v.score = score;
  v.route = route;
  v.routeCases.clear();
  for (const RouteCase &c : cases)
    v.routeCases.push_back(c.value);
  return "";
}

} // namespace heed::spec
