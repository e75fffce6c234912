// The proof that both frontends meet: the same variant written as .attn text
// and with the C++ builder yields identical attn IR.
#include "heed/Frontend/Builder.h"
#include "heed/Frontend/EmitIR.h"
#include "heed/Frontend/Parser.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

using namespace heed;
using namespace heed::build;

namespace {

std::string irOf(const spec::Variant &v) {
  mlir::MLIRContext ctx;
  auto module = emitVariantModule(ctx, v);
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  return text;
}

void expectSame(const std::string &spec, const VariantBuilder &vb) {
  auto parsed = spec::parseSpec(spec, "t.attn");
  ASSERT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
  auto built = vb.build();
  ASSERT_TRUE(static_cast<bool>(built)) << llvm::toString(built.takeError());
  const spec::Variant &a = (*parsed)[0];
  EXPECT_EQ(spec::print(*a.score, &a), spec::print(*built->score, &*built));
  EXPECT_EQ(spec::print(*a.mask, &a), spec::print(*built->mask, &*built));
  std::string ir = irOf(a);
  EXPECT_EQ(ir, irOf(*built));
  EXPECT_NE(ir.find("attn.variant @"), std::string::npos);
}

TEST(FrontendsMeet, Causal) {
  VariantBuilder vb("causal");
  vb.setMask(lib::causal());
  expectSame("variant causal { mask = causal() }", vb);
}

TEST(FrontendsMeet, SlidingWindowWithSinks) {
  VariantBuilder vb("sw");
  Expr w = vb.param("window", 256);
  vb.setMask(lib::sinks(4) || lib::sliding_window(w));
  expectSame("variant sw { param window: i64 = 256\n mask = sinks(4) || sliding_window(window) }",
             vb);
}

TEST(FrontendsMeet, AlibiCausal) {
  VariantBuilder vb("alibi");
  Buffer slopes = vb.buffer("slopes", spec::ElemType::F32, {"H"});
  vb.setScore(lib::alibi(score(), slopes));
  vb.setMask(lib::causal());
  expectSame("variant alibi { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
             " mask = causal() }",
             vb);
}

TEST(FrontendsMeet, SoftcapDocumentBlockSparse) {
  VariantBuilder vb("mix");
  Expr cap = vb.param("cap", 30.0);
  Buffer doc = vb.buffer("doc", spec::ElemType::I32, {"Skv"});
  Buffer layout = vb.buffer("layout", spec::ElemType::I8, {"H", "4", "4"});
  vb.setScore(lib::softcap(score(), cap));
  vb.setMask(lib::document(doc) && lib::block_sparse(layout, 64, 64));
  expectSame("variant mix { param cap: f32 = 30.0\n buffer doc: i32[Skv]\n"
             " buffer layout: i8[H, 4, 4]\n score = softcap(score, cap)\n"
             " mask = document(doc) && block_sparse(layout, 64, 64) }",
             vb);
}

TEST(FrontendsMeet, NeighborhoodAndRelativeBias) {
  VariantBuilder vb("na");
  Buffer table = vb.buffer("table", spec::ElemType::F32, {"H", "17"});
  vb.setScore(lib::relative_bias(score(), table, 8));
  lib::Neighborhood2D opts;
  opts.dh = 2;
  vb.setMask(lib::neighborhood_2d(16, 24, 5, 7, opts));
  expectSame("variant na { buffer table: f32[H, 17]\n score = relative_bias(score, table, 8)\n"
             " mask = neighborhood_2d(16, 24, kh=5, kw=7, dh=2) }",
             vb);
}

TEST(FrontendsMeet, CustomExpression) {
  VariantBuilder vb("custom");
  Expr rate = vb.param("rate", 0.05);
  Expr far = q() - kv() > 100;
  vb.setScore(select(far, score() - rate * toF32(abs(q() - kv())), score()));
  vb.setMask(lib::causal() || kv() % 16 == 0 || min(q(), kv()) < max(q() / 2, 3));
  expectSame("variant custom { param rate: f32 = 0.05\n let far = q - kv > 100\n"
             " score = far ? score - rate * f32(abs(q - kv)) : score\n"
             " mask = causal() || kv % 16 == 0 || min(q, kv) < max(q / 2, 3) }",
             vb);
}

} // namespace
