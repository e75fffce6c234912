// The run-time sizes B, H, Hkv, Sq, Skv in the .attn language: their trees,
// their values in the interpreter, buffer dimensions as expressions of them,
// the bottom-right causal mask and per-batch document ids.
#include "heed/Frontend/Builder.h"
#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Parser.h"

#include <gtest/gtest.h>

using namespace heed::spec;

namespace {

/// The one variant of `text` (a failed parse fails the test).
Variant parseOne(const std::string &text) {
  llvm::Expected<std::vector<Variant>> all = parseSpec(text, "t.attn");
  if (!all) {
    ADD_FAILURE() << llvm::toString(all.takeError());
    return {};
  }
  EXPECT_EQ(all->size(), 1u);
  return all->empty() ? Variant{} : all->front();
}

std::string errorOf(const std::string &text) {
  llvm::Expected<std::vector<Variant>> all = parseSpec(text, "t.attn");
  return all ? "<no error>" : llvm::toString(all.takeError());
}

TEST(Shapes, NamesAreSizesInTheTree) {
  Variant v = parseOne("variant v { mask = kv < Skv - Sq + q + 1 && h < H - Hkv + B }");
  EXPECT_EQ(print(*v.mask, &v), "kv < Skv - Sq + q + 1 && h < H - Hkv + B");
}

TEST(Shapes, InterpreterReadsTheCallsSizes) {
  Variant v = parseOne("variant v { score = f32(B * 10000 + H * 1000 + Hkv * 100 + Sq * 10 + Skv) }");
  EvalPoint p;
  p.shape = {1, 2, 3, 4, 5};
  EXPECT_EQ(evaluate(*v.score, p, {}), 12345.0);
}

TEST(Shapes, CausalBottomRightAgreesWithItsDefinition) {
  Variant v = parseOne("variant v { mask = causal_bottom_right() }");
  EXPECT_EQ(print(*v.mask, &v), "q + (Skv - Sq) >= kv");
  // Decode, speculative tails, chunked prefill, and more queries than keys.
  for (auto [sq, skv] : {std::pair<int64_t, int64_t>{1, 37}, {4, 37}, {16, 16}, {9, 3}}) {
    for (int64_t q = 0; q < sq; ++q)
      for (int64_t kv = 0; kv < skv; ++kv) {
        EvalPoint p;
        p.q = q;
        p.kv = kv;
        p.shape = {1, 1, 1, sq, skv};
        EXPECT_EQ(evaluate(*v.mask, p, {}) != 0, kv <= q + skv - sq)
            << "Sq=" << sq << " Skv=" << skv << " q=" << q << " kv=" << kv;
      }
  }
}

TEST(Shapes, DocumentOnRankTwoIdsIsPerBatch) {
  Variant v = parseOne("variant v { buffer doc: i32[B, Skv]\n mask = document(doc) }");
  EXPECT_EQ(print(*v.mask, &v), "doc[b, q] == doc[b, kv]");
  // Two batch entries with different boundaries.
  BufferData doc{{2, 4}, {0, 0, 1, 1, 0, 1, 1, 1}};
  auto seen = [&](int64_t b, int64_t q, int64_t kv) {
    EvalPoint p;
    p.b = b;
    p.q = q;
    p.kv = kv;
    return evaluate(*v.mask, p, {doc}) != 0;
  };
  EXPECT_TRUE(seen(0, 1, 0));
  EXPECT_FALSE(seen(1, 1, 0));
  EXPECT_TRUE(seen(1, 3, 1));
  EXPECT_FALSE(seen(0, 3, 1));
  // Rank 1 keeps the shared ids.
  Variant shared = parseOne("variant v { buffer doc: i32[Skv]\n mask = document(doc) }");
  EXPECT_EQ(print(*shared.mask, &shared), "doc[q] == doc[kv]");
}

TEST(Shapes, BufferDimensionsAreExpressions) {
  Variant v = parseOne("variant v {\n param bq: i64 = 128\n"
                       " buffer layout: i8[H, cdiv(Sq, bq), cdiv(Skv, 128)]\n"
                       " buffer t: f32[(Skv + 1) / 2, max(Sq, 4) * 2 - Hkv % 3]\n"
                       " buffer c: f32[cdiv(300, bq), (Sq)]\n"
                       " mask = block_sparse(layout, bq, 128) }");
  ASSERT_EQ(v.buffers.size(), 3u);
  EXPECT_EQ(v.buffers[0].shape, (std::vector<std::string>{"H", "cdiv(Sq,128)", "cdiv(Skv,128)"}));
  EXPECT_EQ(v.buffers[1].shape,
            (std::vector<std::string>{"((Skv+1)/2)", "((max(Sq,4)*2)-(Hkv%3))"}));
  // Constant expressions fold; a parenthesized size is the size.
  EXPECT_EQ(v.buffers[2].shape, (std::vector<std::string>{"3", "Sq"}));
}

TEST(Shapes, BuilderMeetsText) {
  namespace hb = heed::build;
  hb::VariantBuilder vb("v");
  hb::Buffer doc = vb.buffer("doc", ElemType::I32, {"B", "Skv"});
  vb.setScore(hb::score() - hb::seqKV() + hb::kv() + hb::batches() * hb::heads() / hb::headsKV());
  vb.setMask(hb::lib::document(doc) && hb::lib::causal_bottom_right() && hb::q() < hb::seqQ());
  auto built = vb.build();
  ASSERT_TRUE(static_cast<bool>(built)) << llvm::toString(built.takeError());
  Variant text = parseOne("variant v { buffer doc: i32[B, Skv]\n"
                          " score = score - Skv + kv + B * H / Hkv\n"
                          " mask = document(doc) && causal_bottom_right() && q < Sq }");
  EXPECT_EQ(print(*built->score, &*built), print(*text.score, &text));
  EXPECT_EQ(print(*built->mask, &*built), print(*text.mask, &text));
}

TEST(Shapes, Errors) {
  EXPECT_NE(errorOf("variant v { let Skv = 3 }").find("'Skv' is a reserved word"), std::string::npos);
  EXPECT_NE(errorOf("variant v { param p: i64 = Sq }").find("must be a constant"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { buffer t: f32[Sq / kv] }")
                .find("a buffer dimension is an expression of B, H, Hkv, Sq, Skv"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { buffer t: f32[abs(Sq)] }")
                .find("a buffer dimension is an expression of"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { buffer t: f32[4 - 6] }")
                .find("buffer dimensions must be positive, got (4-6) = -2"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { buffer r: f32[B, Sq, H]\n gate = r[b, Sq, h] }"), "<no error>");
}

} // namespace
