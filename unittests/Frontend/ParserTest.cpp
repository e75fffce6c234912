// The .attn frontend: elaborated trees for the language and its library,
// library semantics checked point by point with the interpreter, and errors
// located like a compiler's (file:line:col, source line, caret).
#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Library.h"
#include "heed/Frontend/Parser.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

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

std::string scoreOf(const std::string &body) {
  Variant v = parseOne("variant v {\n" + body + "\n}");
  return v.score ? print(*v.score, &v) : "";
}

bool visible(const Variant &v, int64_t q, int64_t kv, const std::vector<BufferData> &bufs = {},
             int64_t h = 0) {
  EvalPoint p;
  p.q = q;
  p.kv = kv;
  p.h = h;
  return evaluate(*v.mask, p, bufs) != 0;
}

//===----------------------------------------------------------------------===//
// Trees
//===----------------------------------------------------------------------===//

TEST(Parser, DefaultsAreIdentityScoreAndNoMask) {
  Variant v = parseOne("variant plain { }");
  EXPECT_EQ(v.name, "plain");
  EXPECT_EQ(v.score->kind, ExprKind::Score);
  EXPECT_EQ(v.mask->kind, ExprKind::Const);
  EXPECT_EQ(print(*v.mask), "true");
  EXPECT_TRUE(v.params.empty());
  EXPECT_TRUE(v.buffers.empty());
}

TEST(Parser, LibraryMasksInline) {
  EXPECT_EQ(maskOf("mask = causal()"), "q >= kv");
  EXPECT_EQ(maskOf("mask = sliding_window(8)"), "q >= kv && q - kv < 8");
  EXPECT_EQ(maskOf("mask = band(2, 3)"), "kv >= q - 2 && kv <= q + 3");
  EXPECT_EQ(maskOf("mask = prefix_lm(5)"), "kv < 5 || q >= kv");
  EXPECT_EQ(maskOf("mask = sinks(4)"), "kv < 4");
  EXPECT_EQ(maskOf("mask = sinks(4) || sliding_window(2)"), "kv < 4 || q >= kv && q - kv < 2");
  EXPECT_EQ(maskOf("buffer doc: i32[Skv]\nmask = document(doc)"), "doc[q] == doc[kv]");
  EXPECT_EQ(maskOf("buffer l: i8[H, 4, 4]\nmask = block_sparse(l, 64, 32)"),
            "l[h, q / 64, kv / 32] != 0");
  EXPECT_EQ(maskOf("mask = neighborhood_1d(16, 3)"),
            "kv % 1 == q % 1 && select(false, kv / 1 <= q / 1 && q / 1 - kv / 1 < 3, "
            "kv / 1 >= min(max(q / 1 - 3 / 2, 0), max((16 - q % 1 + 1 - 1) / 1 - 3, 0)) && "
            "kv / 1 < min(max(q / 1 - 3 / 2, 0), max((16 - q % 1 + 1 - 1) / 1 - 3, 0)) + 3)");
  std::string n2 = maskOf("mask = neighborhood_2d(8, 16, kh=3, kw=5, dh=2)");
  EXPECT_NE(n2.find("kv / 16 % 2 == q / 16 % 2"), std::string::npos) << n2;
  EXPECT_NE(n2.find("kv % 16 % 1 == q % 16 % 1"), std::string::npos) << n2;
  std::string n3 = maskOf("mask = neighborhood_3d(2, 3, 4, 1, 3, 3, causal0=true)");
  EXPECT_NE(n3.find("q / (3 * 4)"), std::string::npos) << n3;
  EXPECT_NE(n3.find("q / 4 % 3"), std::string::npos) << n3;
  EXPECT_NE(n3.find("select(true"), std::string::npos) << n3;
}

TEST(Parser, LibraryModifiersInline) {
  EXPECT_EQ(scoreOf("buffer s: f32[H]\nscore = alibi(score, s)"), "score + s[h] * f32(kv - q)");
  EXPECT_EQ(scoreOf("score = softcap(score, 30)"), "f32(30) * tanh(score / f32(30))");
  EXPECT_EQ(scoreOf("buffer s: f32[H]\nscore = softcap(alibi(score, s), 30.0)"),
            "30.0 * tanh((score + s[h] * f32(kv - q)) / 30.0)");
  EXPECT_EQ(scoreOf("buffer t: f32[H, 9]\nscore = relative_bias(score, t, 4)"),
            "score + t[h, min(max(kv - q, -4), 4) + 4]");
}

TEST(Parser, PreludeIsValidAndShipped) {
  EXPECT_NE(preludeText().find("def causal()"), llvm::StringRef::npos);
  // Each library function, called through callLibrary with its required arguments.
  std::vector<BufferDecl> bufs = {{"doc", ElemType::I32, {"Skv"}},
                                  {"layout", ElemType::I8, {"H", "4", "4"}},
                                  {"slopes", ElemType::F32, {"H"}},
                                  {"table", ElemType::F32, {"H", "9"}}};
  auto i = [](int64_t v) { return CallArg::ofExpr(makeInt(v)); };
  auto s = CallArg::ofExpr(makeScore());
  struct Call {
    const char *name;
    std::vector<CallArg> args;
    const char *printed; ///< a part of the printed tree
  };
  const Call calls[] = {
      {"causal", {}, "q >= kv"},
      {"sliding_window", {i(4)}, "q - kv < 4"},
      {"band", {i(1), i(2)}, "kv <= q + 2"},
      {"prefix_lm", {i(3)}, "kv < 3 || q >= kv"},
      {"sinks", {i(2)}, "kv < 2"},
      {"document", {CallArg::ofBuffer(0)}, "buffer0[q] == buffer0[kv]"},
      {"block_sparse", {CallArg::ofBuffer(1), i(16), i(16)}, "buffer1[h, q / 16, kv / 16] != 0"},
      {"neighborhood_1d", {i(9), i(3)}, "kv % 1 == q % 1"},
      {"neighborhood_2d", {i(3), i(4), i(3), i(3)}, "kv / 4 % 1"},
      {"neighborhood_3d", {i(2), i(3), i(4), i(1), i(3), i(3)}, "kv / 4 % 3"},
      {"alibi", {s, CallArg::ofBuffer(2)}, "score + buffer2[h] * f32(kv - q)"},
      {"softcap", {s, CallArg::ofExpr(makeFloat(5))}, "5.0 * tanh(score / 5.0)"},
      {"relative_bias", {s, CallArg::ofBuffer(3), i(4)}, "buffer3[h, min(max(kv - q, -4), 4) + 4]"},
  };
  for (const Call &c : calls) {
    auto e = callLibrary(c.name, c.args, bufs);
    ASSERT_TRUE(static_cast<bool>(e)) << c.name << ": " << llvm::toString(e.takeError());
    EXPECT_NE(print(**e).find(c.printed), std::string::npos) << c.name << ": " << print(**e);
  }
}

TEST(Parser, CallLibraryChecksArguments) {
  std::vector<BufferDecl> bufs = {{"doc", ElemType::I32, {"B", "H", "Skv"}}};
  auto err = [&](const char *name, std::vector<CallArg> args) {
    auto e = callLibrary(name, args, bufs);
    return e ? std::string("<no error>") : llvm::toString(e.takeError());
  };
  EXPECT_EQ(err("sliding_window", {CallArg::ofExpr(makeFloat(1.5))}),
            "sliding_window: argument 'w' must be i64, got f32");
  EXPECT_EQ(err("sliding_window", {}), "sliding_window: missing argument 'w' in call to "
                                       "'sliding_window'");
  EXPECT_EQ(err("sliding_window", {CallArg::ofExpr(makeInt(1)), CallArg::ofExpr(makeInt(2))}),
            "sliding_window: 'sliding_window' takes 1 argument, got 2");
  EXPECT_EQ(err("sliding_window", {CallArg::ofBuffer(0)}),
            "sliding_window: argument 'w' must be i64, got a buffer");
  EXPECT_EQ(err("document", {CallArg::ofExpr(makeInt(1))}),
            "document: argument 'doc' must be a buffer");
  EXPECT_EQ(err("document", {CallArg::ofBuffer(7)}), "document: argument 'doc' must be a buffer");
  EXPECT_EQ(err("document", {CallArg::ofBuffer(0)}),
            "document: buffer 'doc' has rank 3 but is indexed with 1 index");
  EXPECT_EQ(err("slidingwindow", {}),
            "unknown library function 'slidingwindow'; did you mean 'sliding_window'?");
  EXPECT_EQ(err("neighborhood_1d", {CallArg::ofExpr(makeInt(8)), CallArg::ofExpr(makeInt(3)),
                                    CallArg::ofExpr(makeInt(0))}),
            "neighborhood_1d: integer remainder by zero");
  // i64 arguments are promoted for f32 parameters; defaults fill the rest.
  auto soft = callLibrary("softcap", {CallArg::ofExpr(makeScore()), CallArg::ofExpr(makeInt(3))},
                          {});
  ASSERT_TRUE(static_cast<bool>(soft));
  EXPECT_EQ(print(**soft), "f32(3) * tanh(score / f32(3))");
}

TEST(Parser, ParamsLetsPromotionAndOverrides) {
  std::string text = "variant v {\n param w: i64 = 2 * 8\n param c: f32 = 2\n param f: bool = true\n"
                     " let d = q - kv\n score = f ? score - c * d : score\n mask = d < w }";
  Variant v = parseOne(text);
  ASSERT_EQ(v.params.size(), 3u);
  EXPECT_EQ(v.params[0].name, "w");
  EXPECT_EQ(v.params[0].type, ScalarType::I64);
  EXPECT_EQ(v.params[0].intValue, 16);
  EXPECT_EQ(v.params[1].type, ScalarType::F32);
  EXPECT_EQ(v.params[1].floatValue, 2.0);
  EXPECT_EQ(v.params[2].type, ScalarType::Bool);
  EXPECT_EQ(v.params[2].intValue, 1);
  EXPECT_EQ(print(*v.mask), "q - kv < 16");
  EXPECT_EQ(print(*v.score), "select(true, score - 2.0 * f32(q - kv), score)");
  Variant o = parseOne(text, {{"w", "5"}, {"c", "0.5"}, {"f", "false"}});
  EXPECT_EQ(o.params[0].intValue, 5);
  EXPECT_EQ(print(*o.mask), "q - kv < 5");
  EXPECT_EQ(o.params[1].floatValue, 0.5);
  EXPECT_EQ(print(*o.score), "select(false, score - 0.5 * f32(q - kv), score)");
}

TEST(Parser, ParamValuesAreExact) {
  Variant v = parseOne("variant v { param a: i64 = -7 / 2\n param r: i64 = -7 % 3\n"
                       " param c: i64 = 9007199254740993\n param d: i64 = c + 2\n"
                       " param e: f32 = 1 / 4\n param g: i64 = i64(-2.7)\n param k: bool = 3 > 2 }");
  ASSERT_EQ(v.params.size(), 7u);
  EXPECT_EQ(v.params[0].intValue, -4); // floor division
  EXPECT_EQ(v.params[1].intValue, 2);
  EXPECT_EQ(v.params[2].intValue, 9007199254740993);
  EXPECT_EQ(v.params[3].intValue, 9007199254740995);
  EXPECT_EQ(v.params[4].floatValue, 0.0); // i64 division, then promoted
  EXPECT_EQ(v.params[5].intValue, -2);    // truncation toward zero
  EXPECT_EQ(v.params[6].intValue, 1);
  Variant o = parseOne("variant v { param c: i64 = 1 }", {{"c", "-9223372036854775807"}});
  EXPECT_EQ(o.params[0].intValue, -9223372036854775807);
}

TEST(Parser, OverridesApplyToEveryVariantDeclaringTheParam) {
  auto vs = parseSpec("variant a { param w: i64 = 1\n mask = sinks(w) }\n"
                      "variant b { param w: i64 = 2\n param x: f32 = 1.0\n mask = sinks(w) }\n"
                      "variant c { }",
                      "t.attn", {{"w", "9"}, {"x", "2.5e1"}});
  ASSERT_TRUE(static_cast<bool>(vs)) << llvm::toString(vs.takeError());
  ASSERT_EQ(vs->size(), 3u);
  EXPECT_EQ(print(*(*vs)[0].mask), "kv < 9");
  EXPECT_EQ(print(*(*vs)[1].mask), "kv < 9");
  EXPECT_EQ((*vs)[1].params[1].floatValue, 25.0);
}

TEST(Parser, LetsArePlainSubstitutions) {
  EXPECT_EQ(maskOf("let d = q - kv\nlet near = d >= 0 && d < 8\nmask = near || kv == 0"),
            "q - kv >= 0 && q - kv < 8 || kv == 0");
  // A let that reads score may feed the score.
  EXPECT_EQ(scoreOf("let s2 = score * 2.0\nscore = s2 + 1"), "score * 2.0 + f32(1)");
}

TEST(Parser, PromotionAndTypes) {
  EXPECT_EQ(scoreOf("score = score + 1"), "score + f32(1)");
  EXPECT_EQ(scoreOf("score = q - kv"), "f32(q - kv)"); // an i64 score is promoted
  EXPECT_EQ(maskOf("mask = q * 0.5 < kv"), "f32(q) * 0.5 < f32(kv)");
  EXPECT_EQ(scoreOf("score = q > kv ? score : 0"), "select(q > kv, score, f32(0))");
  EXPECT_EQ(maskOf("mask = (q > kv) == true != false"), "q > kv == true != false");
  EXPECT_EQ(scoreOf("score = exp(q) + log(2) + sqrt(kv) + tanh(score) + abs(-score)"),
            "exp(f32(q)) + log(f32(2)) + sqrt(f32(kv)) + tanh(score) + abs(-score)");
  EXPECT_EQ(maskOf("mask = clamp(q, 1, 5) == max(min(kv, 3), 0)"),
            "min(max(q, 1), 5) == max(min(kv, 3), 0)");
  EXPECT_EQ(scoreOf("score = f32(i64(score)) + f32(q > kv) + select(q > kv, 1, 2.0)"),
            "f32(i64(score)) + f32(q > kv) + select(q > kv, f32(1), 2.0)");
  Variant v = parseOne("variant v { score = score / 2 }");
  EXPECT_EQ(v.score->type, ScalarType::F32);
  EXPECT_EQ(v.mask->type, ScalarType::Bool);
}

TEST(Parser, PrecedenceAndAssociativity) {
  EXPECT_EQ(maskOf("mask = q > 1 || q < 2 && kv > 3"), "q > 1 || q < 2 && kv > 3");
  EXPECT_EQ(maskOf("mask = (q > 1 || q < 2) && kv > 3"), "(q > 1 || q < 2) && kv > 3");
  EXPECT_EQ(maskOf("mask = q - kv - 1 == q - (kv - 1)"), "q - kv - 1 == q - (kv - 1)");
  EXPECT_EQ(maskOf("mask = q + kv * 2 % 3 / 4 > -q * 2"), "q + kv * 2 % 3 / 4 > -q * 2");
  EXPECT_EQ(maskOf("mask = !(q > kv) == !true"), "!(q > kv) == !true");
  // The ternary is right-associative and binds loosest.
  Variant v = parseOne("variant v { mask = q > 1 ? true : q > 2 ? false : kv > 0 || b > 0 }");
  ASSERT_EQ(v.mask->kind, ExprKind::Select);
  EXPECT_EQ(v.mask->operands[2]->kind, ExprKind::Select);
  EXPECT_EQ(v.mask->operands[2]->operands[2]->op, Op::Or);
}

TEST(Parser, Literals) {
  EXPECT_EQ(scoreOf("score = 1.0 + .5 + 1e-3 + 2.5e+4 + 3E2 + 7."),
            "1.0 + 0.5 + 0.001 + 25000.0 + 300.0 + 7.0");
  EXPECT_EQ(maskOf("mask = kv < 9223372036854775807"), "kv < 9223372036854775807");
}

TEST(Parser, FilesCommentsAndSeparators) {
  // Defs after variants, comments, `;` between statements, newlines anywhere.
  Variant v = parseOne("# leading comment\n"
                       "variant v { # comment\n"
                       "  param w: i64 = 4; let x = near(w)\n"
                       "  mask =\n    x\n    || kv == 0;;\n"
                       "}\n"
                       "def near(n: i64) = # comment inside\n q - kv < n\n");
  EXPECT_EQ(print(*v.mask), "q - kv < 4 || kv == 0");
}

TEST(Parser, UserFunctionsKeywordsAndDefaults) {
  Variant v = parseOne("def near(a: i64, b2: i64 = 3) = abs(a - b2) < 10\n"
                       "variant v { mask = near(b2=kv, a=q) || near(q) || near(kv, b2=1) }");
  EXPECT_EQ(print(*v.mask), "abs(q - kv) < 10 || abs(q - 3) < 10 || abs(kv - 1) < 10");
  // Functions call functions, take buffers and scores, and default f32 from i64.
  Variant w = parseOne("def bias(s: f32, t: buffer, scale: f32 = 2) = s + scale * t[h]\n"
                       "def both(s: f32, t: buffer) = bias(bias(s, t), t, scale=0.5)\n"
                       "variant v { buffer t: f32[H]\n score = both(score, t) }");
  EXPECT_EQ(print(*w.score, &w), "score + f32(2) * t[h] + 0.5 * t[h]");
  // The same name may be a value and a function (they are used differently).
  EXPECT_EQ(maskOf("param causal: bool = true\nmask = causal ? causal() : true"),
            "select(true, q >= kv, true)");
}

TEST(Parser, BuffersAndDims) {
  Variant v = parseOne("variant v { param n: i64 = 7\n buffer t: bf16[H, n, Skv, 007]\n"
                       " buffer m: bool[Sq]\n buffer k: i8[B, Hkv]\n"
                       " score = score + t[h, 0, kv, 1]\n mask = m[q] && k[b, h] > 0 }");
  ASSERT_EQ(v.buffers.size(), 3u);
  EXPECT_EQ(v.buffers[0].name, "t");
  EXPECT_EQ(v.buffers[0].elem, ElemType::BF16);
  EXPECT_EQ(v.buffers[0].shape, (std::vector<std::string>{"H", "7", "Skv", "7"}));
  EXPECT_EQ(v.buffers[1].elem, ElemType::Bool);
  EXPECT_EQ(v.buffers[2].shape, (std::vector<std::string>{"B", "Hkv"}));
  EXPECT_EQ(v.score->operands[1]->kind, ExprKind::Load);
  EXPECT_EQ(v.score->operands[1]->type, ScalarType::F32);
  EXPECT_EQ(v.mask->operands[0]->type, ScalarType::Bool);
  EXPECT_EQ(v.mask->operands[1]->operands[0]->type, ScalarType::I64);
  EXPECT_EQ(v.mask->operands[1]->operands[0]->buffer, 2u);
  // Dims from an overridden param.
  Variant o = parseOne("variant v { param n: i64 = 7\n buffer t: f32[n] }", {{"n", "3"}});
  EXPECT_EQ(o.buffers[0].shape, (std::vector<std::string>{"3"}));
}

TEST(Parser, SelectsVariants) {
  auto vs = parseSpec("variant a { }\nvariant b { mask = causal() }", "t.attn");
  ASSERT_TRUE(static_cast<bool>(vs));
  auto chosen = selectVariant(*vs, "b");
  ASSERT_TRUE(static_cast<bool>(chosen));
  EXPECT_EQ(chosen->name, "b");
  auto none = selectVariant(*vs, "");
  ASSERT_FALSE(static_cast<bool>(none));
  EXPECT_EQ(llvm::toString(none.takeError()),
            "the file defines 2 variants (a, b): choose one with --variant");
  auto missing = selectVariant(*vs, "c");
  ASSERT_FALSE(static_cast<bool>(missing));
  EXPECT_EQ(llvm::toString(missing.takeError()), "no variant 'c' (the file defines: a, b)");
  auto empty = selectVariant({}, "");
  ASSERT_FALSE(static_cast<bool>(empty));
  llvm::consumeError(empty.takeError());
}

TEST(Parser, DocumentationExamplesAreValid) {
  // docs/spec-language.md promises that each ```attn block is a valid file.
  llvm::SmallString<256> path(__FILE__);
  llvm::sys::path::remove_filename(path);
  llvm::sys::path::append(path, "..", "..", "docs", "spec-language.md");
  auto doc = llvm::MemoryBuffer::getFile(path);
  if (!doc)
    GTEST_SKIP() << "no " << path.str().str();
  llvm::StringRef rest = (*doc)->getBuffer();
  int blocks = 0;
  while (true) {
    size_t open = rest.find("```attn\n");
    if (open == llvm::StringRef::npos)
      break;
    rest = rest.drop_front(open + 8);
    size_t close = rest.find("```");
    ASSERT_NE(close, llvm::StringRef::npos);
    std::string block = rest.take_front(close).str();
    rest = rest.drop_front(close + 3);
    ++blocks;
    EXPECT_EQ(errorOf(block), "<no error>") << block;
  }
  EXPECT_GE(blocks, 4);
}

TEST(Parser, ReadsFiles) {
  llvm::SmallString<128> path;
  ASSERT_FALSE(llvm::sys::fs::createTemporaryFile("heed-parser", "attn", path));
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    ASSERT_FALSE(ec);
    os << "variant f { param w: i64 = 3\n mask = sliding_window(w) }\n";
  }
  auto vs = parseSpecFile(path, {{"w", "5"}});
  ASSERT_TRUE(static_cast<bool>(vs)) << llvm::toString(vs.takeError());
  EXPECT_EQ(print(*vs->front().mask), "q >= kv && q - kv < 5");
  llvm::sys::fs::remove(path);
  auto missing = parseSpecFile("/nonexistent/x.attn");
  ASSERT_FALSE(static_cast<bool>(missing));
  EXPECT_EQ(llvm::toString(missing.takeError()),
            "error: cannot read '/nonexistent/x.attn': No such file or directory\n");
}

//===----------------------------------------------------------------------===//
// Semantics of the library, point by point
//===----------------------------------------------------------------------===//

// NATTEN's window start for one axis (natten_commons: get_window_start), in
// positions rather than in steps of the dilation; an independent formulation of
// what the prelude computes. Defined for length >= kernel * dilation.
int64_t nattenStart(int64_t i, int64_t n, int64_t k, int64_t d) {
  int64_t nh = k / 2;
  if (d <= 1)
    return std::max<int64_t>(i - nh, 0) + (i + nh >= n) * (n - i - nh - 1);
  int64_t ni = i - nh * d;
  if (ni < 0)
    return i % d;
  if (i + nh * d >= n) {
    int64_t imodd = i % d;
    int64_t a = (n / d) * d;
    int64_t b = n - a;
    if (imodd < b)
      return n - b + imodd - 2 * nh * d;
    return a + imodd - k * d;
  }
  return ni;
}

bool nattenAxis(int64_t i, int64_t j, int64_t n, int64_t k, int64_t d, bool causal) {
  if (causal) {
    // The k positions up to the query, in steps of d.
    for (int64_t t = 0; t < k; ++t)
      if (j == i - t * d)
        return true;
    return false;
  }
  int64_t start = nattenStart(i, n, k, d);
  for (int64_t t = 0; t < k; ++t)
    if (j == start + t * d)
      return true;
  return false;
}

TEST(ParserSemantics, Neighborhood1dMatchesNatten) {
  for (int64_t k : {1, 3, 5})
    for (int64_t d : {1, 2, 3})
      for (int64_t n = k * d; n <= k * d + 4; ++n)
        for (bool causal : {false, true}) {
          Variant v = parseOne("variant v { mask = neighborhood_1d(" + std::to_string(n) + ", " +
                               std::to_string(k) + ", d=" + std::to_string(d) +
                               ", causal=" + (causal ? "true" : "false") + ") }");
          for (int64_t q = 0; q < n; ++q)
            for (int64_t kv = 0; kv < n; ++kv)
              ASSERT_EQ(visible(v, q, kv), nattenAxis(q, kv, n, k, d, causal))
                  << "n=" << n << " k=" << k << " d=" << d << " causal=" << causal
                  << " q=" << q << " kv=" << kv;
        }
}

TEST(ParserSemantics, NeighborhoodKeepsKNeighboursAndShortAxesSeeAll) {
  // Every query keeps exactly k keys when the axis is long enough.
  Variant v = parseOne("variant v { mask = neighborhood_1d(10, 5) }");
  for (int64_t q = 0; q < 10; ++q) {
    int count = 0;
    for (int64_t kv = 0; kv < 10; ++kv)
      count += visible(v, q, kv);
    EXPECT_EQ(count, 5) << q;
  }
  // An axis shorter than the kernel: the window is the whole axis.
  Variant s = parseOne("variant v { mask = neighborhood_1d(3, 7) }");
  for (int64_t q = 0; q < 3; ++q)
    for (int64_t kv = 0; kv < 3; ++kv)
      EXPECT_TRUE(visible(s, q, kv));
}

TEST(ParserSemantics, Neighborhood2dAnd3dAreProductsOfAxes) {
  const int64_t h0 = 5, w = 6;
  for (int64_t dh : {1, 2})
    for (bool ch : {false, true})
      for (bool cw : {false, true}) {
        Variant v = parseOne("variant v { mask = neighborhood_2d(5, 6, 3, 3, dh=" +
                             std::to_string(dh) + ", causal_h=" + (ch ? "true" : "false") +
                             ", causal_w=" + (cw ? "true" : "false") + ") }");
        for (int64_t q = 0; q < h0 * w; ++q)
          for (int64_t kv = 0; kv < h0 * w; ++kv) {
            bool want = nattenAxis(q / w, kv / w, h0, 3, dh, ch) &&
                        nattenAxis(q % w, kv % w, w, 3, 1, cw);
            ASSERT_EQ(visible(v, q, kv), want) << q << " " << kv;
          }
      }
  const int64_t d0 = 3, d1 = 4, d2 = 5;
  Variant v3 = parseOne("variant v { mask = neighborhood_3d(3, 4, 5, 3, 3, 3, dil2=1, "
                        "causal1=true) }");
  for (int64_t q = 0; q < d0 * d1 * d2; ++q)
    for (int64_t kv = 0; kv < d0 * d1 * d2; ++kv) {
      bool want = nattenAxis(q / (d1 * d2), kv / (d1 * d2), d0, 3, 1, false) &&
                  nattenAxis(q / d2 % d1, kv / d2 % d1, d1, 3, 1, true) &&
                  nattenAxis(q % d2, kv % d2, d2, 3, 1, false);
      ASSERT_EQ(visible(v3, q, kv), want) << q << " " << kv;
    }
}

TEST(ParserSemantics, MasksAndModifiersPointwise) {
  Variant sw = parseOne("variant v { mask = sinks(2) || sliding_window(3) }");
  for (int64_t q = 0; q < 12; ++q)
    for (int64_t kv = 0; kv < 12; ++kv)
      EXPECT_EQ(visible(sw, q, kv), kv < 2 || (kv <= q && q - kv < 3)) << q << " " << kv;
  Variant band = parseOne("variant v { mask = band(1, 2) }");
  Variant plm = parseOne("variant v { mask = prefix_lm(3) }");
  for (int64_t q = 0; q < 8; ++q)
    for (int64_t kv = 0; kv < 8; ++kv) {
      EXPECT_EQ(visible(band, q, kv), kv >= q - 1 && kv <= q + 2);
      EXPECT_EQ(visible(plm, q, kv), kv < 3 || kv <= q);
    }
  Variant doc = parseOne("variant v { buffer d: i32[Skv]\n mask = document(d) }");
  BufferData ids{{6}, {0, 0, 1, 1, 1, 2}};
  for (int64_t q = 0; q < 6; ++q)
    for (int64_t kv = 0; kv < 6; ++kv)
      EXPECT_EQ(visible(doc, q, kv, {ids}), ids.values[q] == ids.values[kv]);
  Variant bs = parseOne("variant v { buffer l: i32[H, 2, 2]\n mask = block_sparse(l, 2, 2) }");
  BufferData layout{{2, 2, 2}, {1, 0, 0, 1, 0, 1, 1, 0}};
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t kv = 0; kv < 4; ++kv)
        EXPECT_EQ(visible(bs, q, kv, {layout}, h),
                  layout.values[h * 4 + (q / 2) * 2 + kv / 2] != 0);
  Variant mod = parseOne("variant v { buffer s: f32[H]\n buffer t: f32[H, 5]\n"
                         " score = softcap(relative_bias(alibi(score, s), t, 2), 10.0) }");
  BufferData slopes{{1}, {0.5}}, table{{1, 5}, {1, 2, 3, 4, 5}};
  for (int64_t q = 0; q < 6; ++q)
    for (int64_t kv = 0; kv < 6; ++kv) {
      EvalPoint p;
      p.q = q;
      p.kv = kv;
      p.score = 1.5;
      double s = 1.5 + 0.5 * double(kv - q);
      s += table.values[std::clamp<int64_t>(kv - q, -2, 2) + 2];
      // f32 arithmetic: equal to f32 precision.
      EXPECT_FLOAT_EQ(evaluate(*mod.score, p, {slopes, table}), 10.0 * std::tanh(s / 10.0));
    }
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

struct ErrorCase {
  const char *text;
  const char *where; ///< "line:col"
  const char *message;
};

TEST(ParserErrors, LocatedWithCaret) {
  const ErrorCase cases[] = {
      // lexical
      {"variant v { mask = q $ kv }", "1:22", "unexpected character '$'"},
      {"variant v { mask = q & kv }", "1:22", "unexpected character '&'; did you mean '&&'?"},
      {"variant v { mask = q > \x01 }", "1:24", "unexpected byte 0x01"},
      {"variant v { mask = q > 1e }", "1:24", "malformed number '1e'"},
      {"variant v { mask = q > 12abc }", "1:24", "malformed number '12abc'"},
      {"variant v { mask = q > 1.2.3 }", "1:24", "malformed number '1.2.3'"},
      {"variant v { mask = q > 99999999999999999999 }", "1:24", "integer literal out of range"},
      {"variant v { score = 1e999 }", "1:21", "floating-point literal out of range"},
      // syntax
      {"variant v { mask = (q > kv }", "1:28", "expected ')', got '}'"},
      {"variant v { mask = q > }", "1:24", "expected an expression, got '}'"},
      {"variant v { mask = q >= kv kv }", "1:28", "expected 'param', 'buffer', 'let', 'score', "
                                                  "'mask', 'route', 'gate', 'normalize' or '}', got 'kv'"},
      {"variant v { maks = causal() }", "1:13", "got 'maks'; did you mean 'mask'?"},
      {"variant v { x = 1 }", "1:13", "did you mean 'let x = ...'?"},
      {"variant v { param w = 3 }", "1:21", "expected ':' and the param's type, got '='"},
      {"variant v { param w: i64 }", "1:26", "expected '=' and a default value, got '}'"},
      {"variant v { param w: f16 = 1 }", "1:22", "expected a type (i64, f32 or bool), got 'f16'"},
      {"def f(x: i64 = 1, y: buffer = 2) = x\nvariant v { }", "1:29",
       "a buffer parameter cannot have a default"},
      {"def f(x) = x\nvariant v { }", "1:8", "expected ':' and the parameter's type, got ')'"},
      {"foo", "1:1", "expected 'def' or 'variant', got 'foo'"},
      {"variant v { mask = f(1 2) }", "1:24", "expected ',' or ')', got '2'"},
      {"variant v { buffer t: f32[H }", "1:29", "expected ',' or ']', got '}'"},
      // unterminated blocks
      {"variant v { mask = causal()", "1:9", "variant 'v' is not closed: expected '}'"},
      {"variant a { mask = causal()\nvariant b { }", "2:1",
       "expected '}' to close variant 'a' before 'variant'"},
      // empty file / no variant
      {"", "1:1", "no variant in the file"},
      {"# only a comment\ndef f() = true\n", "3:1", "no variant in the file"},
      // names
      {"variant v {\n  mask = qq >= kv\n}", "2:10", "unknown name 'qq'; did you mean 'q'?"},
      {"variant v { mask = x > 1 }", "1:20", "unknown name 'x'"},
      {"variant v { param window: i64 = 3\n mask = sliding_window(windw) }", "2:24",
       "unknown name 'windw'; did you mean 'window'?"},
      {"variant v { mask = y > 1\n let y = 2 }", "1:20", "'y' is used before its declaration"},
      {"variant v { mask = causal > 1 }", "1:20", "'causal' is a function: call it as causal(...)"},
      {"def f(a: i64) = a > zz\nvariant v { }", "1:21", "unknown name 'zz'"},
      // functions
      {"variant v { mask = causl() }", "1:20", "unknown function 'causl'; did you mean 'causal'?"},
      {"variant v { mask = sliding_windwo(3) }", "1:20", "did you mean 'sliding_window'?"},
      {"def f(a: i64) = nope(a)\nvariant v { }", "1:17", "unknown function 'nope'"},
      {"variant v { mask = q(1) > 0 }", "1:20", "'q' is not a function"},
      {"variant v { buffer t: f32[H]\n mask = t(1) > 0 }", "2:9", "'t' is a buffer: index it as t[...]"},
      // arity and keywords
      {"variant v { mask = sliding_window() }", "1:20",
       "missing argument 'w' in call to 'sliding_window'"},
      {"variant v { mask = sliding_window(1, 2) }", "1:38", "'sliding_window' takes 1 argument, got 2"},
      {"variant v { mask = neighborhood_1d(1, 2, 3, true, 5) }", "1:51",
       "'neighborhood_1d' takes 2 to 4 arguments, got 5"},
      {"variant v { mask = min(q) > 0 }", "1:20", "'min' takes 2 arguments, got 1"},
      {"variant v { mask = sliding_window(x=3) }", "1:35",
       "'sliding_window' has no parameter 'x'"},
      {"variant v { mask = neighborhood_1d(8, 3, causl=true) }", "1:42",
       "has no parameter 'causl'; did you mean 'causal'?"},
      {"variant v { mask = sliding_window(3, w=3) }", "1:38",
       "argument 'w' of 'sliding_window' is given twice"},
      {"variant v { mask = neighborhood_1d(8, k=3, 1) }", "1:44",
       "positional argument after a keyword argument"},
      {"variant v { mask = max(q, b=kv) > 0 }", "1:27", "built-in function 'max' takes no keyword"},
      // types
      {"variant v { mask = q && kv }", "1:22", "operator '&&' needs bool operands, got i64 and i64"},
      {"variant v { mask = !q }", "1:20", "operator '!' needs a bool operand, got i64"},
      {"variant v { mask = -(q > 1) }", "1:20", "operator '-' needs a number, got bool"},
      {"variant v { mask = (q > 1) < true }", "1:28", "operator '<' needs numbers, got bool and bool"},
      {"variant v { mask = (q > 1) == 1 }", "1:28", "operator '==' compares bool and i64"},
      {"variant v { mask = q + kv }", "1:20", "the mask must be bool, got i64"},
      {"variant v { score = q > kv }", "1:21", "the score must be a number, got bool"},
      {"variant v { score = score % 2.0 }", "1:27", "operator '%' needs i64 operands, got f32 and f32"},
      {"variant v { mask = q > kv ? 1 : true }", "1:27", "the branches have different types"},
      {"variant v { mask = q ? true : false }", "1:20", "the condition of '?:' must be bool, got i64"},
      {"variant v { mask = sliding_window(1.5) }", "1:35",
       "argument 'w' of 'sliding_window' must be i64, got f32"},
      {"variant v { mask = exp(q > 1) > 0.0 }", "1:20", "'exp' needs a number, got bool"},
      {"variant v { param w: i64 = 1.5 }", "1:28", "param 'w' is i64 but its default is f32"},
      {"variant v { param w: i64 = q }", "1:28", "the default of param 'w' must be a constant"},
      {"def f(a: i64 = kv) = a > 0\nvariant v { }", "1:16",
       "the default of parameter 'a' must be a constant"},
      {"def f(a: bool = 1) = a\nvariant v { }", "1:17",
       "the default of parameter 'a' must be bool, got i64"},
      {"variant v { mask = q / 0 > 1 }", "1:22", "integer division by zero"},
      {"variant v { param z: i64 = 0\n mask = q % z > 1 }", "2:11", "integer remainder by zero"},
      // score outside the score modifier
      {"variant v { mask = score > 0.0 }", "1:20", "'score' is only available in the score modifier"},
      {"variant v { let s = score * 2.0\n mask = s > 0.0 }", "2:9",
       "'score' is only available in the score modifier (let 's' reads it)"},
      {"variant v { param p: f32 = score }", "1:28", "'score' is only available in the score modifier"},
      {"def f(x: f32) = x + score\nvariant v { }", "1:21",
       "function 'f' cannot read 'score'; pass it as an f32 parameter"},
      {"variant v { mask = sinks(i64(score)) }", "1:30", "'score' is only available"},
      // buffers
      {"variant v { buffer t: f32[H]\n score = score + t[h, q] }", "2:18",
       "buffer 't' has rank 1 but is indexed with 2 indexes"},
      {"variant v { buffer t: f32[H]\n score = score + t }", "2:18",
       "buffer 't' must be indexed, as in t[...]"},
      {"variant v { buffer t: f32[H]\n score = score + t[1.5] }", "2:20", "buffer indices must be i64, got f32"},
      {"variant v { mask = q[0] > 1 }", "1:20", "'q' is not a buffer and cannot be indexed"},
      {"variant v { param w: i64 = 1\n mask = w[0] > 1 }", "2:9", "'w' is not a buffer"},
      {"variant v { buffer doc: i32[Skv]\n mask = dco[q] > 1 }", "2:9",
       "unknown buffer 'dco'; did you mean 'doc'?"},
      {"variant v { buffer t: f64[H] }", "1:23", "expected an element type (f32, f16, bf16, i8, "
                                                 "i32, i64 or bool), got 'f64'"},
      {"variant v { buffer t: f32[Sk] }", "1:27", "unknown dimension 'Sk': expected B, H, Hkv, "
                                                  "Sq, Skv, a positive integer or an i64 param; "
                                                  "did you mean 'Skv'?"},
      {"variant v { buffer t: f32[0] }", "1:27", "buffer dimensions must be positive, got 0"},
      {"variant v { buffer t: f32[] }", "1:27", "expected a dimension"},
      {"variant v { param c: f32 = 2.0\n buffer t: f32[c] }", "2:16",
       "dimension 'c' is a param of type f32, but a dimension must be an i64 param"},
      {"variant v { param n: i64 = -1\n buffer t: f32[n] }", "2:16",
       "dimension 'n' is -1, but buffer dimensions must be positive"},
      {"variant v { mask = document(q) }", "1:29", "argument 'doc' of 'document' must be a buffer"},
      {"variant v { buffer t: i32[H]\n mask = sinks(t) }", "2:15",
       "argument 'n' of 'sinks' must be i64, got a buffer"},
      {"variant v { mask = document(dc) }", "1:29", "unknown buffer 'dc'"},
      {"def f(t: buffer) = t > 1\nvariant v { }", "1:20", "buffer 't' must be indexed"},
      {"variant v { buffer doc: i32[B, H, Skv]\n mask = document(doc) }", "2:9",
       "in call to 'document': buffer 'doc' has rank 3 but is indexed with 1 index"},
      // duplicates and reserved words
      {"variant v { param w: i64 = 1\n param w: i64 = 2 }", "2:8", "'w' is declared twice in variant 'v'"},
      {"variant v { let kv = 1 }", "1:17", "'kv' is a reserved word and cannot be declared"},
      {"variant v { score = score\n score = score }", "2:2", "'score' is set twice in variant 'v'"},
      {"variant v { }\nvariant v { }", "2:9", "variant 'v' is defined twice"},
      {"def f() = true\ndef f() = false\nvariant v { }", "2:5", "function 'f' is defined twice"},
      {"def causal() = true\nvariant v { }", "1:5", "'causal' is already defined by the library"},
      {"def min(a: i64) = a\nvariant v { }", "1:5", "'min' is a built-in function"},
      {"def f(a: i64, a: i64) = a\nvariant v { }", "1:15", "parameter 'a' is declared twice"},
      {"def f(q: i64) = q\nvariant v { }", "1:7", "'q' is a reserved word and cannot name a parameter"},
      // recursion
      {"def f(x: i64) = f(x) < 1\nvariant v { }", "1:17", "'f' calls itself (recursion is not allowed)"},
      {"def f(x: i64) = g(x)\ndef g(x: i64) = f(x) > 0\nvariant v { }", "2:17",
       "recursive calls 'f' -> 'g' -> 'f' (recursion is not allowed)"},
  };
  for (const ErrorCase &c : cases) {
    std::string err = errorOf(c.text);
    SCOPED_TRACE(c.text);
    EXPECT_EQ(err.find(std::string("t.attn:") + c.where + ": error: "), 0u) << err;
    EXPECT_NE(err.find(c.message), std::string::npos) << err;
    EXPECT_NE(err.find("\n"), std::string::npos) << err;
    EXPECT_NE(err.find("^"), std::string::npos) << err;
  }
}

TEST(ParserErrors, ExactFormat) {
  EXPECT_EQ(errorOf("variant v {\n  mask = q && kv\n}"),
            "t.attn:2:12: error: operator '&&' needs bool operands, got i64 and i64\n"
            "  mask = q && kv\n"
            "         ~ ^  ~~\n");
  EXPECT_EQ(errorOf("def f(x: i64) = x && true\nvariant v { mask = f(q) }"),
            "t.attn:1:19: error: operator '&&' needs bool operands, got i64 and bool\n"
            "def f(x: i64) = x && true\n"
            "                ~ ^  ~~~~\n"
            "t.attn:2:20: note: in this call to 'f'\n"
            "variant v { mask = f(q) }\n"
            "                   ^\n");
  EXPECT_EQ(errorOf("variant v { param w: i64 = 1\n param w: i64 = 2 }"),
            "t.attn:2:8: error: 'w' is declared twice in variant 'v'\n"
            " param w: i64 = 2 }\n"
            "       ^\n"
            "t.attn:1:19: note: first declared here\n"
            "variant v { param w: i64 = 1\n"
            "                  ^\n");
}

TEST(ParserErrors, Overrides) {
  const char *text = "variant v {\n  param w: i64 = 1\n  param c: f32 = 1.0\n  param f: bool = true\n}";
  EXPECT_EQ(errorOf(text, {{"w", "abc"}}),
            "t.attn:2:9: error: --param w=abc: 'w' is i64, expected an integer\n"
            "  param w: i64 = 1\n"
            "        ^\n");
  EXPECT_NE(errorOf(text, {{"w", "1.5"}}).find("expected an integer"), std::string::npos);
  EXPECT_NE(errorOf(text, {{"w", "99999999999999999999"}}).find("expected an integer"),
            std::string::npos);
  EXPECT_NE(errorOf(text, {{"c", "x"}}).find("'c' is f32, expected a finite number"),
            std::string::npos);
  EXPECT_NE(errorOf(text, {{"c", "inf"}}).find("expected a finite number"), std::string::npos);
  EXPECT_NE(errorOf(text, {{"f", "1"}}).find("'f' is bool, expected true or false"),
            std::string::npos);
  EXPECT_EQ(errorOf(text, {{"ww", "1"}}),
            "t.attn: error: --param ww=1: no variant in t.attn declares a param 'ww'; did you "
            "mean 'w'?\n");
  // Overrides parse as the declared type.
  Variant v = parseOne(text, {{"w", "-3"}, {"c", "4"}, {"f", "false"}});
  EXPECT_EQ(v.params[0].intValue, -3);
  EXPECT_EQ(v.params[1].floatValue, 4.0);
  EXPECT_EQ(v.params[2].intValue, 0);
}

TEST(ParserErrors, LimitsStopHostileInput) {
  std::string deep(5000, '(');
  EXPECT_NE(errorOf("variant v { mask = " + deep).find("nested too deeply (more than 256 levels)"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { mask = " + std::string(5000, '!') + "true }").find("too deeply"),
            std::string::npos);
  std::string sum = "1";
  for (int i = 0; i < 1000; ++i)
    sum += " + 1";
  EXPECT_NE(errorOf("variant v { mask = q > " + sum + " }").find("too deeply"), std::string::npos);
  // Inlining that doubles the tree at each level, or nests it ever deeper.
  std::string doubling = "def g0(x: i64) = x + 1\n";
  for (int i = 1; i < 40; ++i)
    doubling += "def g" + std::to_string(i) + "(x: i64) = g" + std::to_string(i - 1) + "(x) + g" +
                std::to_string(i - 1) + "(x)\n";
  EXPECT_NE(errorOf(doubling + "variant v { mask = g39(q) > 0 }").find("expression too large"),
            std::string::npos);
  std::string lets = "variant v { let a0 = q\n";
  for (int i = 1; i < 60; ++i)
    lets += "let a" + std::to_string(i) + " = a" + std::to_string(i - 1) + " + a" +
            std::to_string(i - 1) + "\n";
  EXPECT_NE(errorOf(lets + "mask = a59 > 0 }").find("expression too large"), std::string::npos);
  std::string nesting = "def g0(x: i64) = x + 1\n";
  for (int i = 1; i < 30; ++i)
    nesting += "def g" + std::to_string(i) + "(x: i64) = g" + std::to_string(i - 1) + "(g" +
               std::to_string(i - 1) + "(x))\n";
  EXPECT_NE(errorOf(nesting + "variant v { mask = g29(q) > 0 }").find("too deeply after inlining"),
            std::string::npos);
  std::string chain = "def g0(x: i64) = x\n";
  for (int i = 1; i < 100; ++i)
    chain += "def g" + std::to_string(i) + "(x: i64) = g" + std::to_string(i - 1) + "(x)\n";
  std::string chained = errorOf(chain + "variant v { mask = g99(q) > 0 }");
  EXPECT_NE(chained.find("calls nested too deeply"), std::string::npos);
  EXPECT_NE(chained.find("in between not shown"), std::string::npos);
  // Size: at most kMaxSpecBytes, however the text arrives.
  std::string padded = "variant v { mask = causal() }\n";
  padded += std::string(kMaxSpecBytes - padded.size(), '#');
  EXPECT_EQ(errorOf(padded), "<no error>");
  EXPECT_NE(errorOf(padded + "#").find("t.attn: error: the spec is 1048577 bytes; a spec may "
                                       "have at most 1048576 bytes (1 MiB)"),
            std::string::npos)
      << errorOf(padded + "#").substr(0, 200);
}

// A constant index is checked against the buffer's declared size.
TEST(ParserErrors, ConstantIndexOutOfRange) {
  EXPECT_NE(errorOf("variant v { buffer t: f32[16]\n score = t[100] }")
                .find("2:12: error: index 100 is out of range for dimension 0 of buffer 't' "
                      "(size 16)"),
            std::string::npos);
  EXPECT_NE(errorOf("variant v { buffer t: f32[H]\n score = t[3 - 4] }")
                .find("index -1 is out of range for dimension 0 of buffer 't' (indices start at 0)"),
            std::string::npos);
  // In a function, where it is inlined with the buffer.
  std::string inFunction =
      errorOf("def f(x: buffer) = x[16]\nvariant v { buffer t: f32[16]\n score = f(t) }");
  EXPECT_NE(inFunction.find("1:22: error: index 16 is out of range for dimension 0 of buffer 't'"),
            std::string::npos)
      << inFunction;
  EXPECT_NE(inFunction.find("3:10: note: in this call to 'f'"), std::string::npos) << inFunction;
  EXPECT_EQ(errorOf("variant v { buffer t: f32[16, Sq]\n score = t[15, 99999] + t[h, q] }"),
            "<no error>");
}

TEST(ParserErrors, SurvivesTruncationAndNoise) {
  const std::string valid =
      "def near(a: i64, w: i64 = 3) = abs(a - kv) < w # comment\n"
      "variant v {\n  param window: i64 = 64; param c: f32 = 2.5e1\n"
      "  buffer s: f32[H]\n  buffer doc: i32[Skv]\n  let d = q - kv\n"
      "  score = softcap(alibi(score, s), c) + (d > 0 ? -1.0 : .5)\n"
      "  mask = document(doc) && (sinks(4) || sliding_window(window)) || near(q, w=2)\n}\n";
  ASSERT_EQ(errorOf(valid), "<no error>");
  // Every prefix of a valid file: an error or a success, never a crash.
  for (size_t n = 0; n < valid.size(); ++n)
    (void)errorOf(valid.substr(0, n));
  // Random token soup and byte flips, deterministically seeded.
  const char *pieces[] = {"variant", "def", "v", "{", "}", "(", ")", "[", "]", ",", ":", ";",
                          "=", "==", "?", "!", "-", "+", "*", "/", "%", "&&", "||", "<",
                          ">=", "q", "kv", "score", "mask", "param", "buffer", "let", "i64",
                          "f32", "bool", "1", "2.5", "1e", "true", "causal", "sinks", "#",
                          "\n", "doc", "x", "\x80", "99999999999999999999999"};
  std::mt19937 rng(1234);
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    int len = rng() % 40;
    for (int i = 0; i < len; ++i)
      text += std::string(pieces[rng() % std::size(pieces)]) + (rng() % 2 ? " " : "");
    (void)errorOf(text);
    std::string flipped = valid;
    for (int i = 0; i < 3; ++i)
      flipped[rng() % flipped.size()] = static_cast<char>(rng() % 128);
    (void)errorOf(flipped);
  }
}

} // namespace
