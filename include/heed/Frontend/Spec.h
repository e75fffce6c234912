// The elaborated form of an attention variant: what both frontends produce and
// what the IR emitter and the float64 reference consume.
//
// A Variant holds two closed expression trees, `score` (f32) and `mask`
// (bool), over the indices b, h, q, kv, the incoming score, and run-time
// buffers. Compile-time parameters have already been substituted (their
// values are kept in `params` for the IR and the cache key); named library
// functions such as causal() have been inlined. No MLIR types appear here.
#ifndef HEED_FRONTEND_SPEC_H
#define HEED_FRONTEND_SPEC_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace heed::spec {

/// The scalar types of the spec language.
enum class ScalarType { I64, F32, Bool };

/// Element types a run-time buffer may hold.
enum class ElemType { F32, F16, BF16, I8, I32, I64, Bool };

/// The index variables every expression can read: the indices b, h, q, kv
/// of the (query, key) pair, then the run-time sizes B (batches), H (query
/// heads), Hkv (key/value heads), Sq and Skv (sequence lengths). The sizes
/// are read from the operands when the kernel runs, so a new length needs no
/// recompilation.
enum class IndexVar { B, H, Q, KV, NumB, NumH, NumHkv, Sq, Skv };

/// Is `v` one of the run-time sizes (B, H, Hkv, Sq, Skv)?
inline bool isShape(IndexVar v) { return v >= IndexVar::NumB; }

enum class ExprKind {
  Const,  ///< literal: intValue / floatValue / boolValue by type
  Index,  ///< one of b, h, q, kv (I64)
  Score,  ///< the incoming score, scale * dot(q, k) (F32); only in `score`
  Load,   ///< buffers[buffer][operands...]; F32 for float buffers, I64 for
          ///< integer ones, Bool for bool buffers
  Unary,  ///< op(operands[0])
  Binary, ///< op(operands[0], operands[1])
  Select, ///< operands[0] ? operands[1] : operands[2]
  Cast,   ///< operands[0] converted to `type`
};

enum class Op {
  None,
  // unary
  Neg, Not, Abs, Exp, Log, Tanh, Sqrt,
  // binary arithmetic (operands and result of one type, I64 or F32)
  Add, Sub, Mul, Div, Rem, Min, Max,
  // comparisons (operands of one type, result Bool)
  Eq, Ne, Lt, Le, Gt, Ge,
  // boolean
  And, Or,
};

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

/// One node of an elaborated expression. What each operation computes (i64
/// wrapping, floor division, f32 rounding, conversions) is defined once, by
/// the interpreter in Evaluate.h, and documented in docs/spec-language.md.
struct Expr {
  ExprKind kind = ExprKind::Const;
  ScalarType type = ScalarType::I64;
  Op op = Op::None;
  int64_t intValue = 0; ///< Const of I64 or Bool (0/1)
  double floatValue = 0; ///< Const of F32: a float value (makeFloat rounds)
  IndexVar index = IndexVar::B;
  unsigned buffer = 0; ///< Load: position in Variant::buffers
  std::vector<ExprPtr> operands;
};

/// A run-time tensor read by the variant. Each dimension is a symbol ("B",
/// "H" for query heads, "Hkv", "Sq", "Skv") or a positive decimal integer.
struct BufferDecl {
  std::string name;
  ElemType elem = ElemType::F32;
  std::vector<std::string> shape;
};

/// A compile-time parameter and the value it was instantiated with.
struct Param {
  std::string name;
  ScalarType type = ScalarType::I64;
  int64_t intValue = 0;  ///< I64 and Bool
  double floatValue = 0; ///< F32
};

/// How a row's weights come from its scores (see docs/spec-language.md,
/// "Normalization").
enum class Normalization {
  Softmax, ///< w_j = e^s_j / (sum_k e^s_k [+ e^sink])
  Sigmoid, ///< w_j = 1 / (1 + e^-(s_j + sigmoidBias)), rows not normalized
};

struct Variant {
  std::string name;
  std::vector<Param> params;
  std::vector<BufferDecl> buffers;
  ExprPtr score; ///< F32; an identity modifier is ExprKind::Score itself
  ExprPtr mask;  ///< Bool; no mask is the constant true
  /// Per-head routing (DuoAttention, MoA): an I64 expression of b and h
  /// (and buffers read there), or null. `score` and `mask` are then
  /// select(route == c_0, case 0's, select(route == c_1, ...)) over the case
  /// values `routeCases`, and they share this node, so the compiler can
  /// specialize the kernel per case; a head that matches no case sees no key.
  ExprPtr route;
  std::vector<int64_t> routeCases;
  /// Per-token head gating (MoH), or null: a read of a float buffer at
  /// (b, q, h), its indices in any order (e.g. router[b, q, h]). Each output
  /// row is scaled by it; a row whose gate is 0 is not routed to the head:
  /// its output is 0 and its lse -inf, and the kernel spends nothing on it.
  ExprPtr gate;
  /// The row normalization; softmax unless the spec's `normalize` says
  /// otherwise.
  Normalization normalize = Normalization::Softmax;
  /// Sigmoid: the constant bias b of 1 / (1 + e^-(s + b)), an f32 value.
  double sigmoidBias = 0;
  /// Softmax with a sink logit (learned attention sinks), or null: an F32
  /// expression of b, h and buffers (never q, kv or score) added to the
  /// denominator only, as e^sink. softmax_off_by_one is the constant 0.
  ExprPtr sink;
};

/// The spec-language name of a normalization ("softmax", "sigmoid").
const char *toString(Normalization n);

/// Sets `v`'s normalization: sigmoid with `bias` (a constant), or softmax
/// with `sink` (an F32 expression of b, h and buffers; null for none).
/// Returns "" or what is wrong.
std::string applySigmoid(Variant &v, const ExprPtr &bias);
std::string applySink(Variant &v, ExprPtr sink);

// Constructors for expression nodes. They assume well-typed operands; the
// frontends type-check before calling them.
ExprPtr makeInt(int64_t v);
ExprPtr makeFloat(double v);
ExprPtr makeBool(bool v);
ExprPtr makeIndex(IndexVar v);
ExprPtr makeScore();
ExprPtr makeLoad(unsigned buffer, ScalarType type, std::vector<ExprPtr> indices);
ExprPtr makeUnary(Op op, ExprPtr a);
ExprPtr makeBinary(Op op, ExprPtr a, ExprPtr b);
ExprPtr makeSelect(ExprPtr c, ExprPtr a, ExprPtr b);
ExprPtr makeCast(ScalarType to, ExprPtr a);

// Type-checked construction, shared by both frontends so they apply the same
// rules: i64 operands are converted to f32 when mixed with f32; `%` takes
// i64; && || ! take bool; comparisons give bool. On a type error these return
// null and set `error` to a message without location (the caller adds one).
ExprPtr typedUnary(Op op, ExprPtr a, std::string &error);
ExprPtr typedBinary(Op op, ExprPtr a, ExprPtr b, std::string &error);
ExprPtr typedSelect(ExprPtr c, ExprPtr a, ExprPtr b, std::string &error);
/// The built-in functions min, max, abs, exp, log, tanh, sqrt, select, clamp,
/// f32, i64; `known` is false for any other name.
ExprPtr typedBuiltin(const std::string &name, std::vector<ExprPtr> args, std::string &error,
                     bool &known);
bool isBuiltinName(const std::string &name);

/// The spec-language type a buffer element reads as.
ScalarType loadType(ElemType elem);
const char *toString(ScalarType t);
const char *toString(ElemType t);
const char *toString(IndexVar v);
const char *toString(Op op);
bool isComparison(Op op);

/// Renders an expression in spec syntax (for messages and debugging).
std::string print(const Expr &e, const Variant *v = nullptr);

/// One case of a route: the score and mask of the heads whose route value
/// is `value`; null takes the variant's own.
struct RouteCase {
  int64_t value = 0;
  ExprPtr score, mask;
};

/// Routes `v` per head (see Variant::route): `route` is I64 and reads no q,
/// kv or score; the case values are distinct. Returns "" or what is wrong.
std::string applyRoute(Variant &v, ExprPtr route, const std::vector<RouteCase> &cases);

/// Gates `v` by `gate` (see Variant::gate). Returns "" or what is wrong.
std::string applyGate(Variant &v, ExprPtr gate);

/// [buffer, dim of b, dim of q, dim of h] of a gate (see applyGate).
std::vector<int64_t> gateLayout(const Expr &gate);

/// Does `e` read q or kv?
bool readsToken(const Expr &e);

/// "" or why `index`, used as index `dim` of `buf`, is out of range: checked
/// where it is a constant (reads no index, score or buffer) and, unless it
/// is negative, where the dimension is a number.
std::string constantIndexError(const BufferDecl &buf, size_t dim, const Expr &index);

} // namespace heed::spec

#endif // HEED_FRONTEND_SPEC_H
