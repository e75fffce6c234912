// Construction and printing of elaborated spec expressions.
#include "heed/Frontend/Spec.h"

#include <cassert>
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
      std::ostringstream f;
      f.precision(9);
      f << e.floatValue;
      std::string s = f.str();
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
  e->floatValue = v;
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

} // namespace heed::spec
