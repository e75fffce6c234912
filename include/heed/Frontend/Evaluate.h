// The interpreter of elaborated spec expressions: the language's semantics
// (docs/spec-language.md, "Semantics") executed directly. The frontend folds
// param defaults with it and the float64 reference evaluates the variant's
// expressions with it; it shares no code with the compiler, whose IR emitter
// and mask analysis implement the same rules in MLIR.
#ifndef HEED_FRONTEND_EVALUATE_H
#define HEED_FRONTEND_EVALUATE_H

#include "heed/Frontend/Spec.h"

#include <cstdint>
#include <vector>

namespace heed::spec {

/// A buffer's contents for the interpreter, row-major, widened to double
/// (integers and bools are stored exactly as doubles).
struct BufferData {
  std::vector<int64_t> shape;
  std::vector<double> values;
};

/// The run-time sizes an expression may read (B, H, Hkv, Sq, Skv).
struct EvalShape {
  int64_t batches = 0, heads = 0, headsKV = 0, seqQ = 0, seqKV = 0;
};

struct EvalPoint {
  int64_t b = 0, h = 0, q = 0, kv = 0;
  double score = 0; ///< rounded to f32 where the expression reads it
  EvalShape shape;
};

/// A value of the language: i64 and bool exactly in `i` (bool as 0/1), f32 in
/// `f` (always a float value, widened to double).
struct Scalar {
  int64_t i = 0;
  double f = 0;
};

// The scalar rules, one definition each.

/// i64 division rounding toward -inf; a zero divisor gives 0 and
/// INT64_MIN / -1 wraps to INT64_MIN.
int64_t floorDiv(int64_t a, int64_t b);
/// The remainder of floorDiv: it has the divisor's sign; 0 for a zero divisor
/// and for -1.
int64_t floorRem(int64_t a, int64_t b);
/// f32 -> i64: truncation toward zero, saturating at the i64 range; NaN gives 0.
int64_t toInt64(double f);
/// `v` rounded to the nearest f32 (ties to even), overflowing to +-inf as f32
/// arithmetic does, widened back to double. NaN stays NaN.
double roundToF32(double v);
/// Does the finite number `v` lie beyond the f32 range (round to +-inf)?
bool overflowsF32(double v);

/// Evaluates `e` at `point`. An out-of-range buffer index sets `*outOfRange`
/// (when non-null) to the 1-based buffer number and reads 0.
Scalar evaluateScalar(const Expr &e, const EvalPoint &point,
                      const std::vector<BufferData> &buffers, int *outOfRange = nullptr);

/// Folds `e`, which reads no index, score or buffer (a param's default).
Scalar evaluateConstant(const Expr &e);

/// evaluateScalar as one double: f32 values as they are, i64 and bool
/// converted (an i64 beyond 2^53 rounds).
double evaluate(const Expr &e, const EvalPoint &point,
                const std::vector<BufferData> &buffers,
                int *outOfRange = nullptr);

/// The weights of one row under `v`'s normalization, in place: `scores`
/// holds the row's modified scores, -inf where masked. Softmax: w_j =
/// e^(s_j - m) / l with l = sum_k e^(s_k - m) [+ e^(sink - m)], m the largest
/// of the scores [and the sink]; returns the lse m + ln l, -inf (and all
/// weights 0) when nothing is visible and there is no sink. Sigmoid: w_j =
/// 1 / (1 + e^-(s_j + bias)); returns NaN (no lse is defined). `sink` is the
/// head's sink logit, read only where `v` has one.
double normalizeRow(const Variant &v, std::vector<double> &scores, double sink);

/// An expression compiled for evaluation at many points (the float64
/// reference and the mask census, which visit every (q, kv) pair): the
/// expression's DAG in topological order, each shared node once, and the
/// nodes that read neither kv nor the score (nor anything that does) split
/// off, so that they are evaluated once per (b, h, q) row instead of once per
/// pair. It applies the same operations as evaluateScalar (one definition
/// each) and gives the same results, out-of-range reads included.
class ExprProgram {
public:
  explicit ExprProgram(const Expr &root);
  /// Whether the expression reads `v` (through any node, load indices too).
  bool reads(IndexVar v) const { return readMask & (1u << unsigned(v)); }
  /// Whether it reads a buffer (an evaluation may then report out-of-range).
  bool readsBuffers() const { return loads; }

private:
  friend class ExprEvaluator;
  struct Node {
    const Expr *expr;
    std::vector<int32_t> operands;
    bool perPair = false; ///< reads kv or the score
  };
  std::vector<Node> nodes; ///< operands before users; the root last
  unsigned readMask = 0;
  bool loads = false;
};

/// An ExprProgram's evaluation state (one per thread): setRow() evaluates the
/// per-row nodes, evaluate() the rest for a batch of (kv, score) points.
class ExprEvaluator {
public:
  /// `shape`: the run-time sizes (B, H, Hkv, Sq, Skv) the expression may read.
  ExprEvaluator(const ExprProgram &program, const std::vector<BufferData> &buffers,
                EvalShape shape = {});
  void setRow(int64_t b, int64_t h, int64_t q);
  /// New run-time sizes (a batch entry with keys of its own); takes effect
  /// at the next setRow().
  void setShape(EvalShape s) { shape = s; }
  /// out[i] = evaluate(root, {b, h, q, kv[i], score[i]}) for i < n, with
  /// (b, h, q) from the last setRow(); `score` may be null if the program
  /// reads no score.
  void evaluate(const int64_t *kv, const double *score, size_t n, double *out);
  /// The 1-based number of the first buffer read out of range, or 0.
  int outOfRange() const { return oob; }

private:
  void evaluateChunk(const int64_t *kv, const double *score, size_t n, double *out);

  const ExprProgram &program;
  const std::vector<BufferData> &buffers;
  EvalShape shape;
  int64_t b = 0, h = 0, q = 0;
  std::vector<Scalar> row;     ///< per node: its value if per-row
  std::vector<Scalar> columns; ///< per node x kChunk: its values if per-pair
  int oob = 0;
};

/// evaluate in float64: f32 operations are not rounded to f32 (the backward
/// reference and finite differences need a smooth function of the inputs).
double evaluateExact(const Expr &e, const EvalPoint &point,
                     const std::vector<BufferData> &buffers, int *outOfRange = nullptr);

/// Partial derivatives of an f32 expression, scaled by an adjoint.
struct ScoreGradient {
  double dScore = 0; ///< with respect to the incoming score
  /// (buffer, flat element, contribution) per float buffer element read;
  /// an element read twice appears twice.
  struct Entry {
    unsigned buffer;
    uint64_t element;
    double value;
  };
  std::vector<Entry> buffers;
};

/// Reverse-mode differentiation of `e` at `point` in float64: adds
/// adjoint * de/dx to `gradient` for every f32 input x. Non-smooth points
/// take PyTorch autograd's conventions: abs' (0) = 0, min/max split a tie
/// evenly, select differentiates the taken branch only. Integer and boolean
/// subexpressions (indices, masks, conditions) carry no gradient.
void backpropagate(const Expr &e, const EvalPoint &point, const std::vector<BufferData> &buffers,
                   double adjoint, ScoreGradient &gradient);

} // namespace heed::spec

#endif // HEED_FRONTEND_EVALUATE_H
