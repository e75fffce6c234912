// The proof that both frontends meet: the same variant written as .attn text
// and with the C++ builder yields identical spec trees and identical attn IR.
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
  mlir::OwningOpRef<mlir::ModuleOp> module = emitVariantModule(ctx, v);
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  return text;
}

std::string describe(const spec::Param &p) {
  std::string value = p.type == spec::ScalarType::F32 ? std::to_string(p.floatValue)
                                                       : std::to_string(p.intValue);
  return p.name + ": " + spec::toString(p.type) + " = " + value;
}

std::string describe(const spec::BufferDecl &b) {
  std::string s = b.name + ": " + spec::toString(b.elem) + "[";
  for (size_t i = 0; i < b.shape.size(); ++i)
    s += (i ? ", " : "") + b.shape[i];
  return s + "]";
}

/// Parses `text` (one variant) and builds `vb`, and expects the same variant:
/// name, params, buffers, printed score and mask, and the emitted IR.
void expectSame(const std::string &text, const VariantBuilder &vb) {
  auto parsed = spec::parseSpec(text, "t.attn");
  ASSERT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
  ASSERT_EQ(parsed->size(), 1u);
  auto built = vb.build();
  ASSERT_TRUE(static_cast<bool>(built)) << llvm::toString(built.takeError());
  const spec::Variant &a = parsed->front(), &c = *built;
  EXPECT_EQ(a.name, c.name);
  ASSERT_EQ(a.params.size(), c.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    EXPECT_EQ(describe(a.params[i]), describe(c.params[i]));
    EXPECT_EQ(a.params[i].floatValue, c.params[i].floatValue); // exactly, not as printed
  }
  ASSERT_EQ(a.buffers.size(), c.buffers.size());
  for (size_t i = 0; i < a.buffers.size(); ++i)
    EXPECT_EQ(describe(a.buffers[i]), describe(c.buffers[i]));
  EXPECT_EQ(spec::print(*a.score, &a), spec::print(*c.score, &c));
  EXPECT_EQ(spec::print(*a.mask, &a), spec::print(*c.mask, &c));
  std::string ir = irOf(a);
  EXPECT_EQ(ir, irOf(c));
  EXPECT_NE(ir.find("attn.variant @" + a.name), std::string::npos) << ir;
}

TEST(FrontendsMeet, Causal) {
  VariantBuilder vb("causal");
  vb.setMask(lib::causal());
  expectSame("variant causal { mask = causal() }", vb);
}

TEST(FrontendsMeet, NoModifierNoMask) {
  VariantBuilder vb("plain");
  expectSame("variant plain { }", vb);
}

TEST(FrontendsMeet, SlidingWindowWithSinks) {
  VariantBuilder vb("sinks");
  Expr nSinks = vb.param("n_sinks", 4);
  Expr window = vb.param("window", 64);
  vb.setMask(lib::causal() && (lib::sinks(nSinks) || lib::sliding_window(window)));
  expectSame(R"(variant sinks {
                  param n_sinks: i64 = 4
                  param window: i64 = 64
                  mask = causal() && (sinks(n_sinks) || sliding_window(window))
                })",
             vb);
}

TEST(FrontendsMeet, ParamUsedTwice) {
  VariantBuilder vb("band");
  Expr w = vb.param("w", 16);
  vb.setMask(lib::band(w, w) && kv() % w != w - 1);
  expectSame(R"(variant band {
                  param w: i64 = 16
                  mask = band(w, w) && kv % w != w - 1
                })",
             vb);
}

TEST(FrontendsMeet, AlibiCausal) {
  VariantBuilder vb("alibi");
  Buffer slopes = vb.buffer("slopes", spec::ElemType::F32, {"H"});
  vb.setScore(lib::alibi(score(), slopes));
  vb.setMask(lib::causal());
  expectSame(R"(variant alibi {
                  buffer slopes: f32[H]
                  score = alibi(score, slopes)
                  mask = causal()
                })",
             vb);
}

TEST(FrontendsMeet, Softcap) {
  VariantBuilder vb("softcap");
  Expr cap = vb.param("cap", 30.0);
  vb.setScore(lib::softcap(score(), cap));
  vb.setMask(lib::prefix_lm(64));
  expectSame(R"(variant softcap {
                  param cap: f32 = 30.0
                  score = softcap(score, cap)
                  mask = prefix_lm(64)
                })",
             vb);
}

TEST(FrontendsMeet, DocumentWithI32Buffer) {
  VariantBuilder vb("document");
  Buffer doc = vb.buffer("doc_ids", spec::ElemType::I32, {"Skv"});
  vb.setMask(lib::document(doc) && lib::causal());
  expectSame(R"(variant document {
                  buffer doc_ids: i32[Skv]
                  mask = document(doc_ids) && causal()
                })",
             vb);
}

TEST(FrontendsMeet, BlockSparse) {
  VariantBuilder vb("block_sparse");
  Expr block = vb.param("block", 32);
  Buffer layout = vb.buffer("layout", spec::ElemType::I8, {"H", "8", "8"});
  vb.setMask(lib::block_sparse(layout, block, block));
  expectSame(R"(variant block_sparse {
                  param block: i64 = 32
                  buffer layout: i8[H, 8, 8]
                  mask = block_sparse(layout, block, block)
                })",
             vb);
}

TEST(FrontendsMeet, Neighborhood2DWithDilation) {
  VariantBuilder vb("neighborhood_2d");
  Expr rows = vb.param("rows", 16);
  Expr cols = vb.param("cols", 24);
  lib::Neighborhood2D opts;
  opts.dh = 2;
  vb.setMask(lib::neighborhood_2d(rows, cols, 5, 7, opts));
  expectSame(R"(variant neighborhood_2d {
                  param rows: i64 = 16
                  param cols: i64 = 24
                  mask = neighborhood_2d(rows, cols, kh=5, kw=7, dh=2)
                })",
             vb);
}

TEST(FrontendsMeet, Neighborhood1DAnd3DCausal) {
  VariantBuilder vb("na");
  Expr causal = vb.param("causal_time", true);
  lib::Neighborhood3D opts;
  opts.dil2 = 2;
  opts.causal0 = causal;
  vb.setMask(lib::neighborhood_3d(4, 6, 8, 3, 3, 5, opts) ||
             lib::neighborhood_1d(192, 9, {3, true}));
  expectSame(R"(variant na {
                  param causal_time: bool = true
                  mask = neighborhood_3d(4, 6, 8, 3, 3, 5, dil2=2, causal0=causal_time) ||
                         neighborhood_1d(192, 9, 3, true)
                })",
             vb);
}

TEST(FrontendsMeet, RelativeBias) {
  VariantBuilder vb("relative_bias");
  Expr r = vb.param("r", 16);
  Buffer table = vb.buffer("table", spec::ElemType::F32, {"H", "33"});
  vb.setScore(lib::relative_bias(score(), table, r));
  vb.setMask(lib::causal());
  expectSame(R"(variant relative_bias {
                  param r: i64 = 16
                  buffer table: f32[H, 33]
                  score = relative_bias(score, table, r)
                  mask = causal()
                })",
             vb);
}

/// The builder's counterpart of a user `def`: a C++ function.
Expr decay(Expr s, Expr rate) { return s - rate * toF32(abs(q() - kv())); }

TEST(FrontendsMeet, CustomExpression) {
  VariantBuilder vb("custom");
  Expr rate = vb.param("rate", 0.05);
  Buffer bias = vb.buffer("bias", spec::ElemType::BF16, {"Hkv", "Sq"});
  Buffer keep = vb.buffer("keep", spec::ElemType::Bool, {"B", "Skv"});
  Expr far = q() - kv() > 100;       // a let, read twice
  Expr dist = toF32(q() - kv()) / 2; // i64 -> f32 promotion under a division
  vb.setScore(select(far, decay(score(), rate), score() + bias(h() / 2, q())) +
              clamp(dist, 0, 8.5) - max(toI64(score()), 3) * exp(q() % 3) +
              sqrt(Expr(2)) * log(toF32(kv() + 1)) - tanh(score() / 2.0) + select(far, 1, 0));
  vb.setMask(lib::causal() || (kv() % 16 == 0 && !far) ||
             (min(q(), kv()) < max(q() / 2, 3) && keep(b(), kv()) == true) || far == false);
  expectSame(R"(def decay(s: f32, rate: f32) = s - rate * f32(abs(q - kv))
                variant custom {
                  param rate: f32 = 0.05
                  buffer bias: bf16[Hkv, Sq]
                  buffer keep: bool[B, Skv]
                  let far = q - kv > 100
                  let dist = f32(q - kv) / 2
                  score = (far ? decay(score, rate) : score + bias[h / 2, q]) +
                          clamp(dist, 0, 8.5) - max(i64(score), 3) * exp(q % 3) +
                          sqrt(2) * log(f32(kv + 1)) - tanh(score / 2.0) + select(far, 1, 0)
                  mask = causal() || (kv % 16 == 0 && !far) ||
                         (min(q, kv) < max(q / 2, 3) && keep[b, kv] == true) || far == false
                })",
             vb);
}

TEST(FrontendsMeet, NegativeLiteralsAndParams) {
  VariantBuilder vb("neg");
  Expr shift = vb.param("shift", -3);
  Expr bias = vb.param("bias", -0.25);
  vb.setScore(score() * -0.5 + clamp(kv() - q(), -8, 8) + bias);
  vb.setMask(kv() - q() >= -4 + shift);
  expectSame(R"(variant neg {
                  param shift: i64 = -3
                  param bias: f32 = -0.25
                  score = score * -0.5 + clamp(kv - q, -8, 8) + bias
                  mask = kv - q >= -4 + shift
                })",
             vb);
}


TEST(FrontendsMeet, SinkLogits) {
  VariantBuilder vb("sink_logits");
  Buffer sinks = vb.buffer("sinks", spec::ElemType::F32, {"H"});
  vb.setNormalize(Normalize::softmax(sinks({h()})));
  vb.setMask(lib::sliding_window(128));
  expectSame(R"(variant sink_logits {
                  buffer sinks: f32[H]
                  normalize = softmax(sink = sinks[h])
                  mask = sliding_window(128)
                })",
             vb);
}

TEST(FrontendsMeet, SigmoidAndOffByOne) {
  VariantBuilder vb("sigmoid");
  vb.setNormalize(Normalize::sigmoid(vb.param("bias", -6.93)));
  vb.setMask(lib::causal());
  expectSame(R"(variant sigmoid {
                  param bias: f32 = -6.93
                  normalize = sigmoid(bias = bias)
                  mask = causal()
                })",
             vb);
  VariantBuilder obo("off_by_one");
  obo.setNormalize(Normalize::softmaxOffByOne());
  expectSame("variant off_by_one { normalize = softmax_off_by_one }", obo);
}

} // namespace
