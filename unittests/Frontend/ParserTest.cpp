// The .attn frontend: elaborated trees for the language and its library, and
// errors located like a compiler's (file:line:col, source line, caret).
#include "heed/Frontend/Parser.h"

#include <gtest/gtest.h>

using namespace heed::spec;

namespace {

Variant parseOne(const std::string &text, const ParamOverrides &o = {}) {
  auto vs = parseSpec(text, "t.attn", o);
  EXPECT_TRUE(static_cast<bool>(vs)) << llvm::toString(vs.takeError());
  if (!vs)
    return {};
  auto v = selectVariant(std::move(*vs), "");
  EXPECT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  return v ? *v : Variant{};
}

std::string errorOf(const std::string &text, const ParamOverrides &o = {}) {
  auto vs = parseSpec(text, "t.attn", o);
  if (vs)
    return "<no error>";
  return llvm::toString(vs.takeError());
}

std::string maskOf(const std::string &body) {
  Variant v = parseOne("variant v {\n" + body + "\n}");
  return v.mask ? print(*v.mask, &v) : "";
}

TEST(Parser, DefaultsAreIdentityScoreAndNoMask) {
  Variant v = parseOne("variant plain { }");
  EXPECT_EQ(v.name, "plain");
  EXPECT_EQ(print(*v.score), "score");
  EXPECT_EQ(print(*v.mask), "true");
}

TEST(Parser, LibraryMasksInline) {
  EXPECT_EQ(maskOf("mask = causal()"), "q >= kv");
  EXPECT_EQ(maskOf("mask = sliding_window(8)"), "q >= kv && q - kv < 8");
  EXPECT_EQ(maskOf("mask = band(2, 3)"), "kv >= q - 2 && kv <= q + 3");
  EXPECT_EQ(maskOf("mask = prefix_lm(5)"), "kv < 5 || q >= kv");
  EXPECT_EQ(maskOf("mask = sinks(4) || sliding_window(2)"), "kv < 4 || q >= kv && q - kv < 2");
  EXPECT_EQ(maskOf("buffer doc: i32[Skv]\nmask = document(doc)"), "doc[q] == doc[kv]");
  EXPECT_EQ(maskOf("buffer l: i8[H, 4, 4]\nmask = block_sparse(l, 64, 32)"),
            "l[h, q / 64, kv / 32] != 0");
  EXPECT_NE(maskOf("mask = neighborhood_2d(8, 16, kh=3, kw=5, dh=2)").find("kv % 16"),
            std::string::npos);
  EXPECT_NE(maskOf("mask = neighborhood_3d(2, 3, 4, 1, 3, 3, causal0=true)").find("q / 4 % 3"),
            std::string::npos);
}

TEST(Parser, LibraryModifiersInline) {
  Variant v = parseOne("variant v { buffer s: f32[H]\n score = softcap(alibi(score, s), 30) }");
  EXPECT_EQ(print(*v.score, &v), "f32(30) * tanh((score + s[h] * f32(kv - q)) / f32(30))");
  Variant r = parseOne("variant v { buffer t: f32[H, 9]\n score = relative_bias(score, t, 4) }");
  EXPECT_EQ(print(*r.score, &r), "score + t[h, min(max(kv - q, -4), 4) + 4]");
}

TEST(Parser, ParamsLetsPromotionAndOverrides) {
  std::string text = "variant v {\n param w: i64 = 2 * 8\n param c: f32 = 2\n param f: bool = true\n"
                     " let d = q - kv\n score = f ? score - c * d : score\n mask = d < w }";
  Variant v = parseOne(text);
  ASSERT_EQ(v.params.size(), 3u);
  EXPECT_EQ(v.params[0].intValue, 16);
  EXPECT_EQ(v.params[1].floatValue, 2.0);
  EXPECT_EQ(v.params[2].intValue, 1);
  EXPECT_EQ(print(*v.mask), "q - kv < 16");
  EXPECT_EQ(print(*v.score), "select(true, score - 2.0 * f32(q - kv), score)");
  Variant o = parseOne(text, {{"w", "5"}, {"c", "0.5"}, {"f", "false"}});
  EXPECT_EQ(print(*o.mask), "q - kv < 5");
  EXPECT_EQ(o.params[1].floatValue, 0.5);
  EXPECT_EQ(print(*o.score), "select(false, score - 0.5 * f32(q - kv), score)");
}

TEST(Parser, UserFunctionsKeywordsAndDefaults) {
  Variant v = parseOne("def near(a: i64, b2: i64 = 3) = abs(a - b2) < 10\n"
                       "variant v { mask = near(b2=kv, a=q) || near(q) }");
  EXPECT_EQ(print(*v.mask), "abs(q - kv) < 10 || abs(q - 3) < 10");
}

TEST(Parser, BufferDimsFromParams) {
  Variant v = parseOne("variant v { param n: i64 = 7\n buffer t: f32[H, n, Skv]\n"
                       " score = score + t[h, 0, kv] }");
  ASSERT_EQ(v.buffers.size(), 1u);
  EXPECT_EQ(v.buffers[0].shape, (std::vector<std::string>{"H", "7", "Skv"}));
  EXPECT_EQ(v.buffers[0].elem, ElemType::F32);
}

TEST(Parser, SelectsVariants) {
  auto vs = parseSpec("variant a { }\nvariant b { mask = causal() }", "t.attn");
  ASSERT_TRUE(static_cast<bool>(vs));
  auto chosen = selectVariant(*vs, "b");
  ASSERT_TRUE(static_cast<bool>(chosen));
  EXPECT_EQ(chosen->name, "b");
  auto none = selectVariant(*vs, "");
  ASSERT_FALSE(static_cast<bool>(none));
  EXPECT_NE(llvm::toString(none.takeError()).find("defines 2 variants (a, b)"), std::string::npos);
  auto missing = selectVariant(*vs, "c");
  ASSERT_FALSE(static_cast<bool>(missing));
  EXPECT_NE(llvm::toString(missing.takeError()).find("no variant 'c'"), std::string::npos);
}

struct ErrorCase {
  const char *text;
  const char *where;   ///< "line:col"
  const char *message;
};

TEST(Parser, ErrorsAreLocatedWithCaret) {
  const ErrorCase cases[] = {
      {"variant v { mask = q $ kv }", "1:22", "unexpected character '$'"},
      {"variant v { mask = q > 1e }", "1:24", "malformed number '1e'"},
      {"variant v { mask = q > 12abc }", "1:24", "malformed number '12abc'"},
      {"variant v { mask = q > 99999999999999999999 }", "1:24", "integer literal"},
      {"variant v { mask = (q > kv }", "1:28", "expected ')', got '}'"},
      {"variant v {\n  mask = qq >= kv\n}", "2:10", "unknown name 'qq'; did you mean 'q'?"},
      {"variant v { mask = causl() }", "1:20", "unknown function 'causl'; did you mean 'causal'?"},
      {"variant v { mask = sliding_window() }", "1:20", "'sliding_window' needs argument 'w'"},
      {"variant v { mask = sliding_window(1, 2) }", "1:38", "takes at most 1 argument(s), got 2"},
      {"variant v { mask = sliding_window(x=3) }", "1:35", "has no parameter 'x'"},
      {"variant v { mask = sliding_window(1.5) }", "1:35", "argument 'w' of 'sliding_window' must be i64, got f32"},
      {"variant v { mask = q && kv }", "1:22", "operator '&&' needs bool operands, got i64 and i64"},
      {"variant v { mask = score > 0.0 }", "1:20", "'score' is only available in the score modifier"},
      {"variant v { let s = score * 2.0\n mask = s > 0.0 }", "2:9", "'score' is only available in the score modifier"},
      {"variant v { mask = q + kv }", "1:20", "the mask must be bool, got i64"},
      {"variant v { score = q > kv }", "1:21", "the score must be a number, got bool"},
      {"variant v { score = score % 2.0 }", "1:27", "operator '%' needs i64 operands"},
      {"variant v { buffer t: f32[H]\n score = score + t[h, q] }", "2:18", "buffer 't' has rank 1 but is indexed with 2 indexes"},
      {"variant v { buffer t: f32[H]\n score = score + t }", "2:18", "buffer 't' must be indexed"},
      {"variant v { mask = q[0] > 1 }", "1:20", "'q' is not a buffer"},
      {"variant v { buffer t: f64[H] }", "1:23", "expected an element type"},
      {"variant v { buffer t: f32[X] }", "1:27", "unknown dimension 'X'"},
      {"variant v { param w: i64 = 1\n param w: i64 = 2 }", "2:2", "'w' is declared twice"},
      {"def f(x: i64) = f(x) < 1\nvariant v { mask = f(q) }", "1:17", "'f' calls itself"},
      {"variant v { mask = causal()", "1:9", "variant 'v' is not closed"},
      {"def causal() = true\nvariant v { }", "1:5", "redefines a library function"},
      {"variant v { mask = q / 0 > 1 }", "1:22", "integer division by zero"},
      {"variant v { mask = document(q) }", "1:29", "must be a buffer"},
      {"variant v { mask = q > kv ? 1 : true }", "1:27", "different types"},
      {"foo", "1:1", "expected 'def' or 'variant', got 'foo'"},
  };
  for (const ErrorCase &c : cases) {
    std::string err = errorOf(c.text);
    SCOPED_TRACE(c.text);
    EXPECT_NE(err.find(std::string("t.attn:") + c.where + ": error: "), std::string::npos) << err;
    EXPECT_NE(err.find(c.message), std::string::npos) << err;
    EXPECT_NE(err.find("^"), std::string::npos) << err;
  }
}

TEST(Parser, ErrorsWithoutLocation) {
  EXPECT_NE(errorOf("").find("no variant in the file"), std::string::npos);
  EXPECT_NE(errorOf("variant v { param w: i64 = 1 }", {{"w", "abc"}}).find("expected an integer"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { }", {{"nope", "1"}}).find("declares a param 'nope'"),
            std::string::npos);
  auto missing = parseSpecFile("/nonexistent/x.attn");
  ASSERT_FALSE(static_cast<bool>(missing));
  EXPECT_NE(llvm::toString(missing.takeError()).find("cannot read '/nonexistent/x.attn'"),
            std::string::npos);
}

TEST(Parser, SurvivesHostileInput) {
  std::string deep(5000, '(');
  EXPECT_NE(errorOf("variant v { mask = " + deep).find("nested too deeply"), std::string::npos);
  for (const char *t : {"variant", "variant v", "variant v {", "variant v { mask", "variant v { mask =",
                        "def", "def f(", "def f(x:", "def f(x: i64) =", "variant v { buffer t: f32[",
                        "\x01\x02", "variant v { mask = 1 ? }"})
    EXPECT_NE(errorOf(t), "<no error>") << t;
}

} // namespace
