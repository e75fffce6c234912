// The float64 interpreter: the semantics the compiled kernels are held to.
#include "heed/Frontend/Evaluate.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace heed::spec;

namespace {

double eval(const ExprPtr &e, EvalPoint p = {}, const std::vector<BufferData> &bufs = {},
            int *oob = nullptr) {
  return evaluate(*e, p, bufs, oob);
}

TEST(Evaluate, FloorDivisionAndRemainder) {
  auto div = [](int64_t a, int64_t b) {
    return eval(makeBinary(Op::Div, makeInt(a), makeInt(b)));
  };
  auto rem = [](int64_t a, int64_t b) {
    return eval(makeBinary(Op::Rem, makeInt(a), makeInt(b)));
  };
  EXPECT_EQ(div(7, 2), 3);
  EXPECT_EQ(div(-7, 2), -4);
  EXPECT_EQ(div(7, -2), -4);
  EXPECT_EQ(div(-8, 2), -4);
  EXPECT_EQ(rem(-7, 3), 2);
  EXPECT_EQ(rem(7, -3), -2);
  EXPECT_EQ(div(5, 0), 0);
  EXPECT_EQ(rem(5, 0), 0);
}

TEST(Evaluate, IndicesScoreAndPromotion) {
  EvalPoint p{1, 2, 10, 4, 0.25};
  EXPECT_EQ(eval(makeBinary(Op::Sub, makeIndex(IndexVar::Q), makeIndex(IndexVar::KV)), p), 6);
  auto mixed = makeBinary(Op::Mul, makeScore(),
                          makeCast(ScalarType::F32, makeIndex(IndexVar::H)));
  EXPECT_DOUBLE_EQ(eval(mixed, p), 0.5);
  EXPECT_EQ(eval(makeCast(ScalarType::I64, makeFloat(-2.7))), -2);
  EXPECT_EQ(eval(makeCast(ScalarType::I64, makeFloat(NAN))), 0);
  EXPECT_EQ(eval(makeCast(ScalarType::I64, makeBool(true))), 1);
}

TEST(Evaluate, MathAndComparisons) {
  EXPECT_NEAR(eval(makeUnary(Op::Tanh, makeFloat(0.5))), std::tanh(0.5), 1e-15);
  EXPECT_NEAR(eval(makeUnary(Op::Exp, makeFloat(1))), std::exp(1.0), 1e-15);
  EXPECT_EQ(eval(makeBinary(Op::Max, makeFloat(NAN), makeFloat(2))), 2);
  EXPECT_EQ(eval(makeBinary(Op::Min, makeInt(-3), makeInt(2))), -3);
  EXPECT_EQ(eval(makeUnary(Op::Abs, makeInt(-3))), 3);
  EXPECT_EQ(eval(makeBinary(Op::Le, makeInt(3), makeInt(3))), 1);
  EXPECT_EQ(eval(makeSelect(makeBool(false), makeInt(1), makeInt(2))), 2);
  EXPECT_EQ(eval(makeUnary(Op::Not, makeBool(false))), 1);
}

TEST(Evaluate, BufferReadsAndOutOfRange) {
  std::vector<BufferData> bufs = {{{2, 3}, {0, 1, 2, 3, 4, 5}}};
  auto at = [](int64_t i, int64_t j) {
    return makeLoad(0, ScalarType::I64, {makeInt(i), makeInt(j)});
  };
  int oob = 0;
  EXPECT_EQ(eval(at(1, 2), {}, bufs, &oob), 5);
  EXPECT_EQ(oob, 0);
  EXPECT_EQ(eval(at(2, 0), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 1);
  oob = 0;
  EXPECT_EQ(eval(at(0, -1), {}, bufs, &oob), 0);
  EXPECT_EQ(oob, 1);
}

} // namespace
