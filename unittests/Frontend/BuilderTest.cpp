// The C++ builder: the trees it records and the errors it reports.
#include "heed/Frontend/Builder.h"

#include <gtest/gtest.h>

using namespace heed;
using namespace heed::build;

namespace {

TEST(Builder, RecordsExpressions) {
  VariantBuilder vb("v");
  Expr w = vb.param("w", 64);
  Buffer slopes = vb.buffer("slopes", spec::ElemType::F32, {"H"});
  vb.setScore(score() + slopes[h()] * toF32(kv() - q()));
  vb.setMask(q() >= kv() && q() - kv() < w);
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(spec::print(*v->score, &*v), "score + slopes[h] * f32(kv - q)");
  EXPECT_EQ(spec::print(*v->mask), "q >= kv && q - kv < 64");
  ASSERT_EQ(v->params.size(), 1u);
  EXPECT_EQ(v->params[0].intValue, 64);
}

TEST(Builder, PromotesLikeTheLanguage) {
  VariantBuilder vb("v");
  vb.setScore(score() - 0.5 * (q() - kv()) + clamp(q(), 0, 4));
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(spec::print(*v->score),
            "score - 0.5 * f32(q - kv) + f32(min(max(q, 0), 4))");
}

TEST(Builder, LibraryComesFromThePrelude) {
  VariantBuilder vb("v");
  Buffer doc = vb.buffer("doc", spec::ElemType::I32, {"Skv"});
  vb.setMask(lib::document(doc) && lib::causal());
  auto v = vb.build();
  ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  EXPECT_EQ(spec::print(*v->mask, &*v), "doc[q] == doc[kv] && q >= kv");
}

TEST(Builder, TypeErrorsTravelToBuild) {
  {
    VariantBuilder vb("v");
    vb.setMask(q() && kv());
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("operator '&&' needs bool operands, got i64 and i64"),
              std::string::npos);
  }
  {
    VariantBuilder vb("v");
    vb.setMask(score() > 0.0);
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("'score' is only available"), std::string::npos);
  }
  {
    VariantBuilder vb("v");
    vb.setScore(score() % 2);
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("operator '%' needs i64"), std::string::npos);
  }
  {
    VariantBuilder vb("v");
    Buffer t = vb.buffer("t", spec::ElemType::F32, {"H"});
    vb.setScore(score() + t(h(), q()));
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("rank 1 but is indexed with 2 indexes"),
              std::string::npos);
  }
  {
    VariantBuilder vb("v");
    vb.setMask(lib::sliding_window(1.5));
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("argument 'w' must be i64, got f32"),
              std::string::npos);
  }
  {
    VariantBuilder vb("v");
    vb.param("w", 1);
    vb.param("w", 2);
    vb.buffer("t", spec::ElemType::F32, {"Heads"});
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("'w' is declared twice"), std::string::npos);
  }
  {
    VariantBuilder vb("v");
    vb.buffer("t", spec::ElemType::F32, {"Heads"});
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("dimension 'Heads'"), std::string::npos);
  }
  {
    VariantBuilder vb("v");
    vb.setMask(q() + kv());
    auto v = vb.build();
    ASSERT_FALSE(static_cast<bool>(v));
    EXPECT_NE(llvm::toString(v.takeError()).find("the mask must be bool, got i64"),
              std::string::npos);
  }
}

} // namespace
