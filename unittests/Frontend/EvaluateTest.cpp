// The interpreter: the semantics the compiled kernels are held to.
#include "heed/Frontend/Evaluate.h"

#include "SemanticsCases.h"
#include "heed/Frontend/Parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace heed::spec;

namespace {

constexpr int64_t Int64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t Int64Max = std::numeric_limits<int64_t>::max();
const double Inf = std::numeric_limits<double>::infinity();

double eval(const ExprPtr &e, EvalPoint p = {}, const std::vector<BufferData> &bufs = {},
            int *oob = nullptr) {
  return evaluate(*e, p, bufs, oob);
}

ExprPtr bin(Op op, int64_t a, int64_t b) { return makeBinary(op, makeInt(a), makeInt(b)); }
ExprPtr binF(Op op, double a, double b) { return makeBinary(op, makeFloat(a), makeFloat(b)); }
ExprPtr toI64(ExprPtr e) { return makeCast(ScalarType::I64, std::move(e)); }
ExprPtr toF32(ExprPtr e) { return makeCast(ScalarType::F32, std::move(e)); }
ExprPtr toBool(ExprPtr e) { return makeCast(ScalarType::Bool, std::move(e)); }

TEST(Evaluate, FloorDivisionAndRemainder) {
  auto div = [](int64_t a, int64_t b) { return eval(bin(Op::Div, a, b)); };
  auto rem = [](int64_t a, int64_t b) { return eval(bin(Op::Rem, a, b)); };
  EXPECT_EQ(div(7, 2), 3);
  EXPECT_EQ(div(-7, 2), -4);
  EXPECT_EQ(div(7, -2), -4);
  EXPECT_EQ(div(-7, -2), 3);
  EXPECT_EQ(div(-8, 2), -4);
  EXPECT_EQ(div(0, -3), 0);
  EXPECT_EQ(rem(7, 3), 1);
  EXPECT_EQ(rem(-7, 3), 2);
  EXPECT_EQ(rem(7, -3), -2);
  EXPECT_EQ(rem(-7, -3), -1);
  EXPECT_EQ(rem(-6, 3), 0);
  // a == floor(a / b) * b + a % b for every sign combination.
  for (int64_t a : {-9, -5, -1, 0, 1, 4, 9})
    for (int64_t b : {-4, -3, -1, 1, 2, 5})
      EXPECT_EQ(div(a, b) * b + rem(a, b), a) << a << " " << b;
}

TEST(Evaluate, DivisionByZeroAndOverflow) {
  EXPECT_EQ(eval(bin(Op::Div, 5, 0)), 0);
  EXPECT_EQ(eval(bin(Op::Rem, 5, 0)), 0);
  EXPECT_EQ(eval(bin(Op::Div, -5, 0)), 0);
  // INT64_MIN / -1 would trap in C++: it wraps like the kernel's arithmetic.
  EXPECT_EQ(eval(bin(Op::Div, Int64Min, -1)), static_cast<double>(Int64Min));
  EXPECT_EQ(eval(bin(Op::Rem, Int64Min, -1)), 0);
  EXPECT_EQ(eval(makeUnary(Op::Neg, makeInt(Int64Min))), static_cast<double>(Int64Min));
  EXPECT_EQ(eval(bin(Op::Add, Int64Max, 1)), static_cast<double>(Int64Min));
  EXPECT_EQ(eval(bin(Op::Rem, Int64Min, 3)), 1); // -2^63 = -3074457345618258603 * 3 + 1
  // Float division follows IEEE.
  EXPECT_EQ(eval(binF(Op::Div, 1, 0)), Inf);
  EXPECT_TRUE(std::isnan(eval(binF(Op::Div, 0, 0))));
}

TEST(Evaluate, IntegersStayExact) {
  const int64_t big = (int64_t(1) << 53) + 1; // not representable as a double
  EXPECT_EQ(eval(bin(Op::Eq, big, big - 1)), 0);
  EXPECT_EQ(eval(bin(Op::Sub, big, big - 1)), 1);
  EXPECT_EQ(eval(bin(Op::Lt, big - 1, big)), 1);
  EXPECT_EQ(eval(bin(Op::Rem, big, 2)), 1);
  EXPECT_EQ(eval(bin(Op::Max, big, big - 1)), static_cast<double>(big));
}

TEST(Evaluate, IndicesScoreAndPromotion) {
  EvalPoint p{1, 2, 10, 4, 0.25};
  EXPECT_EQ(eval(makeIndex(IndexVar::B), p), 1);
  EXPECT_EQ(eval(makeIndex(IndexVar::H), p), 2);
  EXPECT_EQ(eval(makeBinary(Op::Sub, makeIndex(IndexVar::Q), makeIndex(IndexVar::KV)), p), 6);
  EXPECT_EQ(eval(makeScore(), p), 0.25);
  auto mixed = makeBinary(Op::Mul, makeScore(), toF32(makeIndex(IndexVar::H)));
  EXPECT_DOUBLE_EQ(eval(mixed, p), 0.5);
  // f32 operations round to float, as the kernel's do.
  EXPECT_EQ(eval(binF(Op::Add, 0.1, 0.2)), double(0.1f + 0.2f));
  EXPECT_NE(eval(binF(Op::Add, 0.1, 0.2)), 0.1 + 0.2);
  EXPECT_EQ(eval(toF32(makeInt(123456789))), 123456792.0);
  // An incoming score is an f32 too.
  EXPECT_EQ(eval(makeScore(), EvalPoint{0, 0, 0, 0, 0.1}), double(0.1f));
}

TEST(Evaluate, Casts) {
  EXPECT_EQ(eval(toI64(makeFloat(-2.7))), -2);
  EXPECT_EQ(eval(toI64(makeFloat(2.7))), 2);
  EXPECT_EQ(eval(toI64(makeFloat(-0.5))), 0);
  EXPECT_EQ(eval(toI64(makeFloat(NAN))), 0);
  // Saturating, as the kernel's conversion.
  EXPECT_EQ(eval(toI64(makeFloat(Inf))), static_cast<double>(Int64Max));
  EXPECT_EQ(eval(toI64(makeFloat(-Inf))), static_cast<double>(Int64Min));
  EXPECT_EQ(eval(toI64(makeFloat(1e300))), static_cast<double>(Int64Max));
  EXPECT_EQ(eval(toI64(makeFloat(-1e300))), static_cast<double>(Int64Min));
  EXPECT_EQ(eval(toI64(makeBool(true))), 1);
  EXPECT_EQ(eval(toF32(makeBool(true))), 1.0);
  EXPECT_EQ(eval(toF32(makeBool(false))), 0.0);
  EXPECT_EQ(eval(toBool(makeInt(-3))), 1);
  EXPECT_EQ(eval(toBool(makeInt(0))), 0);
  EXPECT_EQ(eval(toBool(makeFloat(0.0))), 0);
  EXPECT_EQ(eval(toBool(makeFloat(-0.0))), 0);
  EXPECT_EQ(eval(toBool(makeFloat(0.1))), 1);
}

TEST(Evaluate, MathAndComparisons) {
  // The f32 nearest to the exact result.
  EXPECT_EQ(eval(makeUnary(Op::Tanh, makeFloat(0.5))), double(float(std::tanh(0.5))));
  EXPECT_EQ(eval(makeUnary(Op::Exp, makeFloat(1))), double(float(std::exp(1.0))));
  EXPECT_EQ(eval(makeUnary(Op::Log, makeFloat(2))), double(float(std::log(2.0))));
  EXPECT_EQ(eval(makeUnary(Op::Sqrt, makeFloat(2))), double(std::sqrt(2.0f)));
  EXPECT_TRUE(std::isnan(eval(makeUnary(Op::Sqrt, makeFloat(-1)))));
  EXPECT_EQ(eval(makeUnary(Op::Log, makeFloat(0))), -Inf);
  EXPECT_EQ(eval(makeUnary(Op::Neg, makeFloat(1.5))), -1.5);
  EXPECT_EQ(eval(makeUnary(Op::Abs, makeFloat(-1.5))), 1.5);
  EXPECT_EQ(eval(makeUnary(Op::Abs, makeInt(-3))), 3);
  EXPECT_EQ(eval(makeUnary(Op::Neg, makeInt(3))), -3);
  // min/max of floats ignore a NaN operand (IEEE minNum/maxNum).
  EXPECT_EQ(eval(binF(Op::Max, NAN, 2)), 2);
  EXPECT_EQ(eval(binF(Op::Max, 2, NAN)), 2);
  EXPECT_EQ(eval(binF(Op::Min, NAN, -2)), -2);
  EXPECT_EQ(eval(binF(Op::Min, 1.5, -2)), -2);
  EXPECT_EQ(eval(bin(Op::Min, -3, 2)), -3);
  EXPECT_EQ(eval(bin(Op::Max, -3, 2)), 2);
  EXPECT_EQ(eval(bin(Op::Mul, -3, 7)), -21);
  EXPECT_EQ(eval(binF(Op::Sub, 1, 0.25)), 0.75);
  struct Truth {
    Op op;
    int lt, eq, gt; // the result for a < c, a == c, a > c
  };
  for (auto [op, lt, eq, gt] : {Truth{Op::Eq, 0, 1, 0}, Truth{Op::Ne, 1, 0, 1},
                                Truth{Op::Lt, 1, 0, 0}, Truth{Op::Le, 1, 1, 0},
                                Truth{Op::Gt, 0, 0, 1}, Truth{Op::Ge, 0, 1, 1}}) {
    EXPECT_EQ(eval(bin(op, 1, 2)), lt);
    EXPECT_EQ(eval(bin(op, 2, 2)), eq);
    EXPECT_EQ(eval(bin(op, 3, 2)), gt);
    EXPECT_EQ(eval(binF(op, 1.5, 2)), lt);
    EXPECT_EQ(eval(binF(op, 2, 2)), eq);
    EXPECT_EQ(eval(binF(op, 2.5, 2)), gt);
  }
  // Every comparison with NaN is false except !=.
  EXPECT_EQ(eval(binF(Op::Eq, NAN, NAN)), 0);
  EXPECT_EQ(eval(binF(Op::Ne, NAN, NAN)), 1);
  EXPECT_EQ(eval(binF(Op::Lt, NAN, 1)), 0);
  EXPECT_EQ(eval(binF(Op::Ge, NAN, 1)), 0);
}

TEST(Evaluate, BooleansAndSelect) {
  auto t = makeBool(true), f = makeBool(false);
  EXPECT_EQ(eval(makeBinary(Op::And, t, f)), 0);
  EXPECT_EQ(eval(makeBinary(Op::And, t, t)), 1);
  EXPECT_EQ(eval(makeBinary(Op::Or, f, t)), 1);
  EXPECT_EQ(eval(makeBinary(Op::Or, f, f)), 0);
  EXPECT_EQ(eval(makeBinary(Op::Eq, f, f)), 1);
  EXPECT_EQ(eval(makeBinary(Op::Ne, t, f)), 1);
  EXPECT_EQ(eval(makeUnary(Op::Not, f)), 1);
  EXPECT_EQ(eval(makeUnary(Op::Not, t)), 0);
  EXPECT_EQ(eval(makeSelect(f, makeInt(1), makeInt(2))), 2);
  EXPECT_EQ(eval(makeSelect(t, makeFloat(1.5), makeFloat(2))), 1.5);
  EXPECT_EQ(eval(makeSelect(t, t, f)), 1);
}

TEST(Evaluate, BufferReads) {
  std::vector<BufferData> bufs = {
      {{2, 3}, {0, 1, 2, 3, 4, 5}},        // i64 [2, 3]
      {{3}, {0.5, -1.25, 3}},              // f32 [3]
      {{2}, {0, 1}},                       // bool [2]
  };
  auto at = [](int64_t i, int64_t j) {
    return makeLoad(0, ScalarType::I64, {makeInt(i), makeInt(j)});
  };
  int oob = 0;
  EXPECT_EQ(eval(at(1, 2), {}, bufs, &oob), 5);
  EXPECT_EQ(eval(at(0, 1), {}, bufs, &oob), 1);
  EXPECT_EQ(eval(at(1, 0), {}, bufs, &oob), 3);
  EXPECT_EQ(eval(makeLoad(1, ScalarType::F32, {makeInt(1)}), {}, bufs, &oob), -1.25);
  EXPECT_EQ(eval(makeLoad(2, ScalarType::Bool, {makeInt(1)}), {}, bufs, &oob), 1);
  // Indices come from the point.
  EvalPoint p{0, 0, 1, 2, 0};
  EXPECT_EQ(eval(makeLoad(0, ScalarType::I64, {makeIndex(IndexVar::Q), makeIndex(IndexVar::KV)}),
                 p, bufs, &oob),
            5);
  EXPECT_EQ(oob, 0);
}

TEST(Evaluate, OutOfRangeReadsZero) {
  std::vector<BufferData> bufs = {{{2, 3}, {0, 1, 2, 3, 4, 5}}, {{2}, {7, 8}}};
  auto at0 = [](int64_t i, int64_t j) {
    return makeLoad(0, ScalarType::I64, {makeInt(i), makeInt(j)});
  };
  auto at1 = [](int64_t i) { return makeLoad(1, ScalarType::I64, {makeInt(i)}); };
  int oob = 0;
  EXPECT_EQ(eval(at0(2, 0), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 1);
  oob = 0;
  EXPECT_EQ(eval(at0(0, -1), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 1);
  oob = 0;
  EXPECT_EQ(eval(at0(0, 3), {}, bufs, &oob), 0); // would be in range flattened
  EXPECT_EQ(oob, 1);
  // The first out-of-range buffer wins.
  oob = 0;
  EXPECT_EQ(eval(makeBinary(Op::Add, at1(5), at0(9, 9)), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 2);
  EXPECT_EQ(eval(at0(9, 9), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 2);
  // No pointer, no report, still 0.
  EXPECT_EQ(eval(at1(-1), {}, bufs), 0);
  // A missing buffer, a rank mismatch and data shorter than the shape read 0.
  std::vector<BufferData> shortData = {{{4}, {1, 2}}};
  oob = 0;
  EXPECT_EQ(eval(at1(0), {}, {}, &oob), 0);
  EXPECT_EQ(oob, 2);
  oob = 0;
  EXPECT_EQ(eval(at0(0, 0), {}, shortData, &oob), 0);
  EXPECT_EQ(oob, 1);
  oob = 0;
  EXPECT_EQ(eval(makeLoad(0, ScalarType::I64, {makeInt(3)}), {}, shortData, &oob), 0);
  EXPECT_EQ(oob, 1);
}

TEST(Evaluate, BothSidesAreEvaluated) {
  // The kernel evaluates whole vectors, both sides of && || ?: included; the
  // reference reports the same out-of-range reads.
  std::vector<BufferData> bufs = {{{2}, {1, 1}}};
  auto far = makeBinary(Op::Ne, makeLoad(0, ScalarType::I64, {makeInt(5)}), makeInt(0));
  int oob = 0;
  EXPECT_EQ(eval(makeBinary(Op::And, makeBool(false), far), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 1);
  oob = 0;
  EXPECT_EQ(eval(makeBinary(Op::Or, makeBool(true), far), {}, bufs, &oob), 1);
  EXPECT_EQ(oob, 1);
  oob = 0;
  EXPECT_EQ(eval(makeSelect(makeBool(true), makeBool(true), far), {}, bufs, &oob), 1);
  EXPECT_EQ(oob, 1);
}

/// Does `got` (of the case's type) match `want`? NaN matches NaN.
bool matches(const semantics::Want &want, const Scalar &got) {
  if (want.type != ScalarType::F32)
    return got.i == want.i;
  return std::isnan(want.f) ? std::isnan(got.f) : got.f == want.f;
}

std::string show(const Scalar &v, ScalarType type) {
  return type == ScalarType::F32 ? std::to_string(v.f) : std::to_string(v.i);
}

// The table of edge cases, folded as a param's default and interpreted at run
// time (x then reads q, so nothing folds), against its hand-written values.
TEST(Semantics, FolderAndInterpreterFollowTheTable) {
  for (const semantics::SemanticsCase &c : semantics::semanticsCases()) {
    SCOPED_TRACE(c.expr + " with x = " + std::to_string(c.x));
    // At run time: the expression is the left side of the mask's ==.
    auto parsed = parseSpec("variant v {\n let x = " + semantics::literal(c.x) +
                                " + q\n mask = (" + c.expr + ") == (" + c.expr + ")\n}",
                            "case.attn");
    ASSERT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
    const Expr &tree = *parsed->front().mask->operands[0];
    ASSERT_EQ(tree.type, c.want.type);
    Scalar got = evaluateScalar(tree, EvalPoint{}, {});
    EXPECT_TRUE(matches(c.want, got)) << "interpreted: " << show(got, tree.type);

    // Folded: the default of a param (an f32 param must be finite).
    bool finite = c.want.type != ScalarType::F32 || std::isfinite(c.want.f);
    auto folded = parseSpec("variant v {\n param x: i64 = " + semantics::literal(c.x) +
                                "\n param p: " + toString(c.want.type) + " = " + c.expr +
                                "\n}",
                            "case.attn");
    if (!finite) {
      ASSERT_FALSE(static_cast<bool>(folded));
      EXPECT_NE(llvm::toString(folded.takeError()).find("is not finite"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(static_cast<bool>(folded)) << llvm::toString(folded.takeError());
    const Param &p = folded->front().params[1];
    Scalar value{p.intValue, p.floatValue};
    EXPECT_TRUE(matches(c.want, value)) << "folded: " << show(value, p.type);
  }
}

TEST(Semantics, F32RoundingHelpers) {
  EXPECT_EQ(roundToF32(0.1), double(0.1f));
  EXPECT_EQ(roundToF32(3.4028234663852886e38), 3.4028234663852886e38); // the largest f32
  // Beyond it, up to half an ulp, values still round down to it; from there, to infinity.
  EXPECT_EQ(roundToF32(0x1.fffffefffffffp127), 3.4028234663852886e38);
  EXPECT_EQ(roundToF32(0x1.ffffffp127), Inf);
  EXPECT_EQ(roundToF32(-1e39), -Inf);
  EXPECT_TRUE(std::isnan(roundToF32(NAN)));
  EXPECT_FALSE(overflowsF32(3.4028234663852886e38));
  EXPECT_TRUE(overflowsF32(1e39));
  EXPECT_FALSE(overflowsF32(Inf)); // not finite: not an overflow of a literal
  EXPECT_EQ(roundToF32(1e-50), 0.0); // underflow rounds to zero
  EXPECT_EQ(toInt64(0x1p63), Int64Max);
  EXPECT_EQ(toInt64(-0x1p63), Int64Min);
  EXPECT_EQ(toInt64(-0x1p62), -(int64_t(1) << 62));
  EXPECT_EQ(toInt64(-0.9), 0);
}

} // namespace

// The compiled evaluator (ExprProgram / ExprEvaluator, what the float64
// reference and the mask census use) against the tree interpreter: the
// edge-case table read per pair (x depends on kv) and per row (on q), and
// library masks and modifiers with buffers read in and out of range, at
// every point of a grid. Values, NaNs and the out-of-range report agree.
TEST(Semantics, CompiledEvaluatorMatchesTheInterpreter) {
  std::vector<std::string> specs;
  for (const semantics::SemanticsCase &c : semantics::semanticsCases())
    for (const char *index : {"kv", "q"})
      specs.push_back("variant v {\n let x = " + semantics::literal(c.x) + " + " + index +
                      " - " + index + "\n mask = (" + c.expr + ") == (" + c.expr +
                      ")\n score = score + f32(" + c.expr + ")\n}");
  specs.push_back("variant v {\n buffer table: f32[2, 9]\n buffer doc: i32[12]\n"
                  " mask = document(doc) && neighborhood_2d(3, 4, 3, 3) || sliding_window(3)\n"
                  " score = softcap(relative_bias(score, table, 4), 5.0) * f32(h + 1)\n}");
  specs.push_back("variant v {\n buffer slopes: f32[2]\n buffer layout: i8[2, 2, 2]\n"
                  " mask = block_sparse(layout, 8, 8) && kv <= q + b\n"
                  " score = alibi(score, slopes) + exp(score) / (score - 0.5)\n}");
  std::vector<BufferData> buffers = {
      {{2, 9}, {0.5, -1, 2, 0.25, 3, -2, 1, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
      {{12}, {0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3}},
  };
  std::vector<BufferData> alibiBuffers = {
      {{2}, {0.5, 0.25}},
      {{2, 2, 2}, {1, 0, 1, 1, 0, 1, 1, 0}},
  };
  for (const std::string &text : specs) {
    SCOPED_TRACE(text);
    auto parsed = parseSpec(text, "compiled.attn");
    ASSERT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
    const Variant &v = parsed->front();
    const std::vector<BufferData> &bufs = v.buffers.size() && v.buffers[0].name == "slopes"
                                              ? alibiBuffers
                                              : buffers;
    for (const ExprPtr &e : {v.mask, v.score}) {
      ExprProgram program(*e);
      ExprEvaluator compiled(program, bufs);
      int interpretedOob = 0;
      // kv runs past the buffers' extent (16 > 12 tokens): reads out of range.
      std::vector<int64_t> kv(16);
      std::vector<double> score(16), got(16);
      for (int64_t j = 0; j < 16; ++j) {
        kv[j] = j;
        score[j] = 0.375 * double(j) - 2.0;
      }
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t q = 0; q < 16; ++q) {
            compiled.setRow(b, h, q);
            compiled.evaluate(kv.data(), score.data(), kv.size(), got.data());
            for (int64_t j = 0; j < 16; ++j) {
              double want = evaluate(*e, EvalPoint{b, h, q, j, score[j]}, bufs, &interpretedOob);
              if (std::isnan(want))
                EXPECT_TRUE(std::isnan(got[j])) << "at " << b << h << q << "," << j;
              else
                EXPECT_EQ(got[j], want) << "at b=" << b << " h=" << h << " q=" << q
                                        << " kv=" << j;
            }
          }
      EXPECT_EQ(compiled.outOfRange() != 0, interpretedOob != 0);
    }
  }
}
