// The C++ builder: the trees it records and the errors it reports.
#include "heed/Frontend/Builder.h"

#include <gtest/gtest.h>

#include <limits>

using namespace heed;
using namespace heed::build;

namespace {

/// The message of a build that must fail.
std::string buildError(const VariantBuilder &vb) {
  llvm::Expected<spec::Variant> v = vb.build();
  if (v)
    return "<built>";
  return llvm::toString(v.takeError());
}

#define EXPECT_BUILD_ERROR(vb, text)                                                          \
  EXPECT_NE(buildError(vb).find(text), std::string::npos) << buildError(vb)

TEST(Builder, RecordsExpressions) {
  VariantBuilder vb("v");
  Expr w = vb.param("w", 64);
  Buffer slopes = vb.buffer("slopes", spec::ElemType::F32, {"H"});
  vb.setScore(score() + slopes[h()] * toF32(kv() - q()));
  vb.setMask(q() >= kv() && q() - kv() < w);
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(v->name, "v");
  EXPECT_EQ(spec::print(*v->score, &*v), "score + slopes[h] * f32(kv - q)");
  EXPECT_EQ(spec::print(*v->mask), "q >= kv && q - kv < 64");
  ASSERT_EQ(v->params.size(), 1u);
  EXPECT_EQ(v->params[0].name, "w");
  EXPECT_EQ(v->params[0].type, spec::ScalarType::I64);
  EXPECT_EQ(v->params[0].intValue, 64);
  ASSERT_EQ(v->buffers.size(), 1u);
  EXPECT_EQ(v->buffers[0].name, "slopes");
  EXPECT_EQ(v->buffers[0].shape, std::vector<std::string>{"H"});
}

TEST(Builder, Defaults) {
  VariantBuilder vb("plain");
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(v->score->kind, spec::ExprKind::Score);
  EXPECT_EQ(v->mask->kind, spec::ExprKind::Const);
  EXPECT_EQ(v->mask->type, spec::ScalarType::Bool);
  EXPECT_EQ(v->mask->intValue, 1);
}

TEST(Builder, Literals) {
  EXPECT_EQ(Expr(true).node()->type, spec::ScalarType::Bool);
  EXPECT_EQ(Expr(false).node()->intValue, 0);
  EXPECT_EQ(Expr(7).node()->type, spec::ScalarType::I64);
  EXPECT_EQ(Expr(int64_t(1) << 40).node()->intValue, int64_t(1) << 40);
  EXPECT_EQ(Expr(7LL).node()->intValue, 7);
  EXPECT_EQ(Expr(7u).node()->intValue, 7);
  EXPECT_EQ(Expr(0.25).node()->type, spec::ScalarType::F32);
  EXPECT_EQ(Expr(0.25f).node()->floatValue, 0.25);
  // An f32 literal holds the nearest f32.
  EXPECT_EQ(Expr(0.1).node()->floatValue, double(0.1f));
  EXPECT_EQ(spec::print(*(q() > kv() || true).node()), "q > kv || true");

  // Negative literals are negations, as `-8` in the text.
  spec::ExprPtr neg = Expr(-8).node();
  EXPECT_EQ(neg->kind, spec::ExprKind::Unary);
  EXPECT_EQ(neg->op, spec::Op::Neg);
  EXPECT_EQ(neg->operands[0]->intValue, 8);
  EXPECT_EQ(spec::print(*neg), "-8");
  EXPECT_EQ(spec::print(*Expr(-0.5).node()), "-0.5");
  EXPECT_EQ(Expr(-0.5).node()->operands[0]->floatValue, 0.5);
  const int64_t lowest = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(Expr(lowest).node()->intValue, lowest);

  // Params are their value, one constant node.
  VariantBuilder vb("v");
  spec::ExprPtr p = vb.param("p", -3).node();
  EXPECT_EQ(p->kind, spec::ExprKind::Const);
  EXPECT_EQ(p->intValue, -3);
}

TEST(Builder, ParamsBecomeConstants) {
  VariantBuilder vb("v");
  Expr n = vb.param("n", int64_t(5));
  Expr rate = vb.param("rate", 0.5);
  Expr on = vb.param("on", true);
  vb.setScore(score() * rate);
  vb.setMask(on && kv() < n);
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  ASSERT_EQ(v->params.size(), 3u);
  EXPECT_EQ(v->params[1].type, spec::ScalarType::F32);
  EXPECT_EQ(v->params[1].floatValue, 0.5);
  EXPECT_EQ(v->params[2].type, spec::ScalarType::Bool);
  EXPECT_EQ(v->params[2].intValue, 1);
  EXPECT_EQ(spec::print(*v->score), "score * 0.5");
  EXPECT_EQ(spec::print(*v->mask), "true && kv < 5");
}

TEST(Builder, PromotesLikeTheLanguage) {
  VariantBuilder vb("v");
  vb.setScore(score() - 0.5 * (q() - kv()) + clamp(q(), 0, 4));
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(spec::print(*v->score), "score - 0.5 * f32(q - kv) + f32(min(max(q, 0), 4))");

  // An integer literal in a float context stays makeInt under a cast.
  spec::ExprPtr sum = (score() + 1).node();
  const spec::Expr &add = *sum;
  ASSERT_EQ(add.kind, spec::ExprKind::Binary);
  EXPECT_EQ(add.op, spec::Op::Add);
  const spec::Expr &one = *add.operands[1];
  EXPECT_EQ(one.kind, spec::ExprKind::Cast);
  EXPECT_EQ(one.type, spec::ScalarType::F32);
  EXPECT_EQ(one.operands[0]->kind, spec::ExprKind::Const);
  EXPECT_EQ(one.operands[0]->type, spec::ScalarType::I64);

  // clamp is min(max(x, lo), hi), node for node.
  spec::ExprPtr c = clamp(q(), 0, 4).node();
  EXPECT_EQ(c->op, spec::Op::Min);
  EXPECT_EQ(c->operands[0]->op, spec::Op::Max);

  EXPECT_EQ(spec::print(*exp(q()).node()), "exp(f32(q))");
  EXPECT_EQ(spec::print(*select(q() > kv(), score(), 0).node()), "select(q > kv, score, f32(0))");
  EXPECT_EQ(spec::print(*toI64(score()).node()), "i64(score)");
  EXPECT_EQ(spec::print(*toF32(score()).node()), "score"); // no cast to the same type
  EXPECT_EQ(spec::print(*(-q() / 2 % 3).node()), "-q / 2 % 3");
  EXPECT_EQ(spec::print(*(!(q() == kv())).node()), "!(q == kv)");
  EXPECT_EQ(spec::print(*((q() > 0) != (kv() > 0)).node()), "q > 0 != kv > 0");
  EXPECT_EQ(spec::print(*min(score(), q()).node()), "min(score, f32(q))");
  EXPECT_EQ(spec::print(*abs(q() - kv()).node()), "abs(q - kv)");
  EXPECT_EQ(spec::print(*(b() + h()).node()), "b + h");
}

TEST(Builder, IntegerScoreIsPromoted) {
  VariantBuilder vb("v");
  vb.setScore(q() - kv());
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(v->score->type, spec::ScalarType::F32);
  EXPECT_EQ(spec::print(*v->score), "f32(q - kv)");
}

TEST(Builder, BufferIndexing) {
  VariantBuilder vb("v");
  Buffer layout = vb.buffer("layout", spec::ElemType::I8, {"H", "16", "16"});
  Buffer keep = vb.buffer("keep", spec::ElemType::Bool, {"Sq"});
  Expr a = layout(h(), q() / 64, kv() / 64);
  Expr c = layout({h(), q() / 64, kv() / 64});
  Expr d = layout.at({h(), 0, 1});
  ASSERT_TRUE(a.ok() && c.ok() && d.ok()) << a.error() << c.error() << d.error();
  EXPECT_EQ(a.node()->type, spec::ScalarType::I64);
  EXPECT_EQ(keep[q()].node()->type, spec::ScalarType::Bool);
  vb.setMask((a != 0 || c == 1 || d > 0) && keep[q()]);
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(spec::print(*v->mask, &*v),
            "(layout[h, q / 64, kv / 64] != 0 || layout[h, q / 64, kv / 64] == 1 || "
            "layout[h, 0, 1] > 0) && keep[q]");
}

TEST(Builder, ConstantIndexOutOfRange) {
  VariantBuilder vb("v");
  Buffer t = vb.buffer("t", spec::ElemType::F32, {"16"});
  Buffer u = vb.buffer("u", spec::ElemType::F32, {"H"});
  EXPECT_EQ(t[Expr(100)].error(),
            "index 100 is out of range for dimension 0 of buffer 't' (size 16)");
  EXPECT_EQ(u[Expr(3) - 4].error(),
            "index -1 is out of range for dimension 0 of buffer 'u' (indices start at 0)");
  EXPECT_TRUE(t[Expr(15)].ok());
  EXPECT_TRUE(u[Expr(1000)].ok());
}

TEST(Builder, LibraryComesFromThePrelude) {
  VariantBuilder vb("v");
  Buffer doc = vb.buffer("doc", spec::ElemType::I32, {"Skv"});
  vb.setMask(lib::document(doc) && lib::causal());
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(spec::print(*v->mask, &*v), "doc[q] == doc[kv] && q >= kv");

  EXPECT_EQ(spec::print(*lib::sliding_window(8).node()), "q >= kv && q - kv < 8");
  EXPECT_EQ(spec::print(*lib::sinks(4).node()), "kv < 4");
  EXPECT_EQ(spec::print(*lib::softcap(score(), 30.0).node()), "30.0 * tanh(score / 30.0)");
  // Every library entry instantiates, optional parameters included.
  Buffer slopes = vb.buffer("slopes", spec::ElemType::F32, {"H"});
  Buffer table = vb.buffer("table", spec::ElemType::F32, {"H", "9"});
  Buffer layout = vb.buffer("layout", spec::ElemType::I8, {"H", "4", "4"});
  lib::Neighborhood2D causal2d;
  causal2d.causal_w = true;
  lib::Neighborhood3D dilated3d;
  dilated3d.dil1 = 2;
  for (const Expr &e :
       {lib::band(2, 3), lib::prefix_lm(10), lib::block_sparse(layout, 64, 64),
        lib::neighborhood_1d(100, 7), lib::neighborhood_1d(100, 7, {2, true}),
        lib::neighborhood_2d(8, 8, 3, 3), lib::neighborhood_2d(8, 8, 3, 3, causal2d),
        lib::neighborhood_3d(4, 4, 4, 3, 3, 3), lib::neighborhood_3d(4, 8, 4, 3, 3, 3, dilated3d),
        lib::alibi(score(), slopes), lib::relative_bias(score(), table, 4)})
    EXPECT_TRUE(e.ok()) << e.error();
}

TEST(Builder, TypeErrorsTravelToBuild) {
  {
    VariantBuilder vb("v");
    vb.setMask(q() && kv());
    EXPECT_BUILD_ERROR(vb, "variant 'v': mask: operator '&&' needs bool operands, got i64 and i64");
  }
  {
    // The first error wins and travels through later operators.
    VariantBuilder vb("v");
    Expr bad = (q() && kv()) || (score() % 2 == 0);
    vb.setMask(!bad && lib::causal());
    EXPECT_BUILD_ERROR(vb, "operator '&&' needs bool operands");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(score() % 2);
    EXPECT_BUILD_ERROR(vb, "score: operator '%' needs i64 operands, got f32 and i64");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(score() + true);
    EXPECT_BUILD_ERROR(vb, "operator '+' needs numbers, got f32 and bool");
  }
  {
    VariantBuilder vb("v");
    vb.setMask((q() > kv()) == 1);
    EXPECT_BUILD_ERROR(vb, "operator '==' compares bool and i64");
  }
  {
    VariantBuilder vb("v");
    vb.setMask(!q());
    EXPECT_BUILD_ERROR(vb, "operator '!' needs a bool operand, got i64");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(select(q(), score(), 0));
    EXPECT_BUILD_ERROR(vb, "the condition must be bool, got i64");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(select(q() > 0, score(), false));
    EXPECT_BUILD_ERROR(vb, "the branches have different types: f32 and bool");
  }
  {
    VariantBuilder vb("v");
    vb.setMask(q() / 0 > 1);
    EXPECT_BUILD_ERROR(vb, "integer division by zero");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(exp(q() > 0));
    EXPECT_BUILD_ERROR(vb, "needs a number, got bool");
  }
}

TEST(Builder, VariantErrors) {
  {
    VariantBuilder vb("v");
    vb.setMask(score() > 0.0);
    EXPECT_BUILD_ERROR(vb, "'score' is only available in the score modifier");
  }
  {
    VariantBuilder vb("v");
    vb.setMask(q() + kv());
    EXPECT_BUILD_ERROR(vb, "the mask must be bool, got i64");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(q() > kv());
    EXPECT_BUILD_ERROR(vb, "the score must be a number, got bool");
  }
  {
    VariantBuilder vb("v");
    Buffer t = vb.buffer("t", spec::ElemType::F32, {"H"});
    vb.setScore(score() + t(h(), q()));
    EXPECT_BUILD_ERROR(vb, "buffer 't' has rank 1 but is indexed with 2 indexes");
  }
  {
    VariantBuilder vb("v");
    Buffer t = vb.buffer("t", spec::ElemType::F32, {"H"});
    vb.setScore(score() + t[score()]);
    EXPECT_BUILD_ERROR(vb, "indices of buffer 't' must be i64, got f32");
  }
  {
    VariantBuilder vb("v");
    vb.setMask(lib::sliding_window(1.5));
    EXPECT_BUILD_ERROR(vb, "argument 'w' must be i64, got f32");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(score() + Buffer()[h()]);
    EXPECT_BUILD_ERROR(vb, "no VariantBuilder declared");
  }
}

TEST(Builder, DeclarationErrors) {
  {
    VariantBuilder vb("v");
    vb.param("w", 1);
    vb.param("w", 2);
    EXPECT_BUILD_ERROR(vb, "'w' is declared twice in variant 'v'");
  }
  {
    VariantBuilder vb("v");
    vb.param("t", 1);
    vb.buffer("t", spec::ElemType::F32, {"H"});
    EXPECT_BUILD_ERROR(vb, "'t' is declared twice");
  }
  {
    VariantBuilder vb("v");
    vb.buffer("t", spec::ElemType::F32, {"Heads"});
    EXPECT_BUILD_ERROR(vb, "buffer 't' has dimension 'Heads'");
  }
  for (const char *dim : {"0", "-3", "012", "", "99999999999999999999"}) {
    VariantBuilder vb("v");
    vb.buffer("t", spec::ElemType::F32, {"H", dim});
    EXPECT_BUILD_ERROR(vb, "has dimension '" + std::string(dim) + "'");
  }
  {
    VariantBuilder vb("v");
    vb.buffer("t", spec::ElemType::F32, {});
    EXPECT_BUILD_ERROR(vb, "buffer 't' needs at least one dimension");
  }
  {
    VariantBuilder vb("v");
    vb.buffer("t", spec::ElemType::F32, {"B", "H", "Hkv", "Sq", "Skv", "1", "4096"});
    EXPECT_TRUE(static_cast<bool>(vb.build()));
  }
  for (const char *name : {"q", "score", "min", "clamp"}) {
    VariantBuilder vb("v");
    vb.param(name, 1);
    EXPECT_BUILD_ERROR(vb, "param name '" + std::string(name) + "' is reserved");
  }
  for (const char *name : {"", "2x", "a-b", "a b"}) {
    VariantBuilder vb("v");
    vb.buffer(name, spec::ElemType::F32, {"H"});
    EXPECT_BUILD_ERROR(vb, "buffer name '" + std::string(name) + "' is not an identifier");
  }
  {
    VariantBuilder vb("not a name");
    EXPECT_BUILD_ERROR(vb, "the variant name is not an identifier");
  }
  // f32 values beyond the f32 range, as the text's `1e39`.
  for (double big : {1e39, -1e39, std::numeric_limits<double>::infinity()}) {
    VariantBuilder vb("v");
    vb.param("p", big);
    EXPECT_BUILD_ERROR(vb, "param 'p' is not a finite f32");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(score() * 1e39);
    EXPECT_BUILD_ERROR(vb, "f32 literal 1.000000e+39 out of range (the largest f32 is 3.40282347e38)");
  }
}

TEST(Builder, BuffersBelongToTheirBuilder) {
  VariantBuilder a("a"), c("c");
  Buffer docA = a.buffer("doc", spec::ElemType::I32, {"Skv"});
  Buffer slopesC = c.buffer("slopes", spec::ElemType::F32, {"H"});
  {
    VariantBuilder vb("v");
    vb.setMask(docA[q()] == docA[kv()]);
    EXPECT_BUILD_ERROR(vb, "mask: reads a buffer declared on another VariantBuilder");
  }
  {
    VariantBuilder vb("v");
    vb.setMask(lib::document(docA));
    EXPECT_BUILD_ERROR(vb, "mask: reads a buffer declared on another VariantBuilder");
  }
  {
    VariantBuilder vb("v");
    vb.setScore(lib::alibi(score(), slopesC));
    EXPECT_BUILD_ERROR(vb, "score: reads a buffer declared on another VariantBuilder");
  }
  {
    // Mixing two builders' buffers fails where it happens.
    Expr mixed = toF32(docA[q()]) + slopesC[h()];
    EXPECT_FALSE(mixed.ok());
    EXPECT_NE(mixed.error().find("two different VariantBuilders"), std::string::npos);
    EXPECT_FALSE(slopesC[docA[q()]].ok());
    EXPECT_FALSE(lib::alibi(toF32(docA[q()]), slopesC).ok());
  }
  // In its own builder the same buffer is fine.
  a.setMask(lib::document(docA));
  EXPECT_TRUE(static_cast<bool>(a.build()));
}

} // namespace
