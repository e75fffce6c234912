// The normalizations (softmax, learned sink logits, softmax-off-by-one,
// sigmoid) of compiled CPU kernels against a float64 computation written
// here from the papers' formulas, independent of heed's reference: fresh
// random inputs (seed printed), outputs poisoned before each run, a fully
// masked row in every case.
#include "heed/Compiler/Compiler.h"
#include "heed/Frontend/Builder.h"
#include "heed/Frontend/Parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

using namespace heed;

namespace {

constexpr int64_t kBatch = 2, kHeads = 4, kKVHeads = 2, kSeq = 37, kDim = 32;
/// The query row every case's mask hides entirely.
constexpr int64_t kMaskedRow = 5;

enum class Kind { Softmax, Sink, OffByOne, Sigmoid };

struct Expected {
  std::vector<double> out; ///< [B, H, S, D]
  std::vector<double> lse; ///< [B, H, S]; NaN where not defined
};

/// out = sum_j w_j v_j with the weights of `kind` over the causal keys of
/// each row but kMaskedRow (scores scale * q.k).
Expected expected(Kind kind, double bias, const HostTensor &q, const HostTensor &k,
                  const HostTensor &v, const std::vector<double> &sinks) {
  const double inf = std::numeric_limits<double>::infinity();
  double scale = 1 / std::sqrt(double(kDim));
  Expected e;
  e.out.assign(kBatch * kHeads * kSeq * kDim, 0);
  e.lse.assign(kBatch * kHeads * kSeq, 0);
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t h = 0; h < kHeads; ++h)
      for (int64_t i = 0; i < kSeq; ++i) {
        int64_t hk = h / (kHeads / kKVHeads);
        std::vector<double> s;
        for (int64_t j = 0; j <= i && i != kMaskedRow; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < kDim; ++d)
            dot += q.get(((b * kHeads + h) * kSeq + i) * kDim + d) *
                   k.get(((b * kKVHeads + hk) * kSeq + j) * kDim + d);
          s.push_back(scale * dot);
        }
        std::vector<double> w(s.size());
        double &lse = e.lse[(b * kHeads + h) * kSeq + i];
        if (kind == Kind::Sigmoid) {
          for (size_t j = 0; j < s.size(); ++j)
            w[j] = 1 / (1 + std::exp(-(s[j] + bias)));
          lse = std::numeric_limits<double>::quiet_NaN();
        } else {
          // The sink logit as one more term of the denominator.
          bool hasSink = kind != Kind::Softmax;
          double sink = kind == Kind::Sink ? sinks[h] : 0;
          double denom = hasSink ? std::exp(sink) : 0;
          for (double x : s)
            denom += std::exp(x);
          for (size_t j = 0; j < s.size(); ++j)
            w[j] = std::exp(s[j]) / denom;
          lse = denom > 0 ? std::log(denom) : -inf;
        }
        for (size_t j = 0; j < w.size(); ++j)
          for (int64_t d = 0; d < kDim; ++d)
            e.out[((b * kHeads + h) * kSeq + i) * kDim + d] +=
                w[j] * v.get(((b * kKVHeads + hk) * kSeq + int64_t(j)) * kDim + d);
      }
  return e;
}

void check(Kind kind, const spec::Variant &variant, double bias = 0) {
  static uint64_t base = std::random_device{}();
  uint64_t seed = base++;
  SCOPED_TRACE(variant.name + " seed=" + std::to_string(seed));
  std::printf("[ case     ] %s seed=%llu\n", variant.name.c_str(),
              static_cast<unsigned long long>(seed));
  KernelConfig config;
  config.headDim = config.headDimV = kDim;
  config.lse = true;
  auto kernel = Kernel::compile(variant, config);
  ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());

  std::mt19937_64 rng(seed);
  HostTensor q(DType::F32, {kBatch, kHeads, kSeq, kDim});
  HostTensor k(DType::F32, {kBatch, kKVHeads, kSeq, kDim});
  HostTensor v(DType::F32, {kBatch, kKVHeads, kSeq, kDim});
  HostTensor out(DType::F32, {kBatch, kHeads, kSeq, kDim});
  HostTensor lse(DType::F32, {kBatch, kHeads, kSeq});
  q.fillUniform(rng, -2, 2);
  k.fillUniform(rng, -2, 2);
  v.fillUniform(rng, -1, 1);
  std::vector<HostTensor> buffers;
  std::vector<double> sinks;
  for (const spec::BufferDecl &decl : variant.buffers) {
    ASSERT_EQ(decl.name, "sinks");
    buffers.emplace_back(DType::F32, std::vector<int64_t>{kHeads});
    buffers.back().fillUniform(rng, -3, 3);
    for (int64_t h = 0; h < kHeads; ++h)
      sinks.push_back(buffers.back().get(h));
  }
  out.poison();
  // Sigmoid's lse must be written NaN: poisoned with a number, so that an
  // unwritten lse shows.
  if (kind == Kind::Sigmoid)
    ASSERT_EQ(lse.fill("const:7", rng), "");
  else
    lse.poison();
  AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {}};
  for (HostTensor &buf : buffers)
    args.buffers.push_back(buf.ref());
  llvm::Error err = (*kernel)->run(args);
  ASSERT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));

  Expected want = expected(kind, bias, q, k, v, sinks);
  double maxOut = 0, maxLse = 0;
  for (int64_t i = 0; i < out.size(); ++i) {
    ASSERT_FALSE(std::isnan(out.get(i))) << "out[" << i << "] is NaN";
    maxOut = std::max(maxOut, std::fabs(out.get(i) - want.out[i]));
  }
  for (int64_t i = 0; i < lse.size(); ++i) {
    double have = lse.get(i), ref = want.lse[i];
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(have)) << "lse[" << i << "] = " << have << ", expected NaN";
    } else if (std::isinf(ref)) {
      EXPECT_EQ(have, ref) << "lse[" << i << "]";
    } else {
      ASSERT_TRUE(std::isfinite(have)) << "lse[" << i << "] = " << have;
      maxLse = std::max(maxLse, std::fabs(have - ref));
    }
  }
  EXPECT_LT(maxOut, 1e-5);
  EXPECT_LT(maxLse, 1e-4);
  // The fully masked row: zeros; lse -inf (softmax), the sink, 0 (off by
  // one) or NaN (sigmoid), as `want` says and the loop above checked.
  for (int64_t d = 0; d < kDim; ++d)
    EXPECT_EQ(out.get((0 * kHeads * kSeq + kMaskedRow) * kDim + d), 0.0);
  if (kind == Kind::Sink)
    EXPECT_NEAR(lse.get(kMaskedRow), sinks[0], 1e-6);
  std::printf("[ error    ] out %.3e lse %.3e\n", maxOut, maxLse);
}

spec::Variant parse(const std::string &text) {
  auto parsed = spec::parseSpec(text, "normalize.attn");
  EXPECT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
  auto variant = spec::selectVariant(std::move(*parsed), "");
  EXPECT_TRUE(static_cast<bool>(variant)) << llvm::toString(variant.takeError());
  return *variant;
}

const char *kMask = "  mask = causal() && q != 5\n";

TEST(Normalize, Softmax) {
  check(Kind::Softmax, parse(std::string("variant softmax {\n  normalize = softmax\n") + kMask +
                             "}\n"));
}

TEST(Normalize, SinkLogits) {
  check(Kind::Sink,
        parse(std::string("variant sink {\n  buffer sinks: f32[H]\n"
                          "  normalize = softmax(sink = sinks[h])\n") +
              kMask + "}\n"));
}

TEST(Normalize, OffByOne) {
  check(Kind::OffByOne, parse(std::string("variant off_by_one {\n"
                                          "  normalize = softmax_off_by_one\n") +
                              kMask + "}\n"));
}

TEST(Normalize, Sigmoid) {
  check(Kind::Sigmoid, parse(std::string("variant sigmoid {\n  param bias: f32 = -1.5\n"
                                         "  normalize = sigmoid(bias = bias)\n") +
                             kMask + "}\n"),
        -1.5);
}

// The builder's form of both, on the same check.
TEST(Normalize, Builder) {
  using namespace heed::build;
  {
    VariantBuilder vb("builder_sink");
    Buffer sinks = vb.buffer("sinks", spec::ElemType::F32, {"H"});
    vb.setNormalize(Normalize::softmax(sinks({h()})));
    vb.setMask(lib::causal() && q() != 5);
    auto v = vb.build();
    ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
    check(Kind::Sink, *v);
  }
  {
    VariantBuilder vb("builder_sigmoid");
    vb.setNormalize(Normalize::sigmoid(vb.param("bias", 0.75)));
    vb.setMask(lib::causal() && q() != 5);
    auto v = vb.build();
    ASSERT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
    check(Kind::Sigmoid, *v, 0.75);
  }
}

TEST(Normalize, BuilderErrors) {
  using namespace heed::build;
  VariantBuilder vb("bad");
  vb.setNormalize(Normalize::sigmoid(Expr(1.0) * toF32(q())));
  auto v = vb.build();
  ASSERT_FALSE(static_cast<bool>(v));
  EXPECT_NE(llvm::toString(v.takeError()).find("the sigmoid bias must be a constant"),
            std::string::npos);
  VariantBuilder vs("bad_sink");
  vs.setNormalize(Normalize::softmax(toF32(kv())));
  auto s = vs.build();
  ASSERT_FALSE(static_cast<bool>(s));
  EXPECT_NE(llvm::toString(s.takeError()).find("a sink logit may depend on the batch and head"),
            std::string::npos);
}

} // namespace
