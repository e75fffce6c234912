// Bad input to the compiler and to Kernel::run: each a clear error, never a
// crash or a wrong answer.
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/Runtime/Reference.h"
#include "heed/Frontend/Parser.h"

#include "TestSpecs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

using namespace heed;

namespace {

using test::parse;

std::string errorOf(llvm::Error err) {
  return err ? llvm::toString(std::move(err)) : std::string("<no error>");
}

/// Tensors for B=1, Hq=4, Hkv=2, S=10, D=64 in BHSD, and a doc-id buffer.
struct Fixture : ::testing::Test {
  void SetUp() override {
    variant = parse("variant v { buffer doc: i32[Skv]\n mask = document(doc) }");
    config.lse = true;
    auto k = Kernel::compile(variant, config);
    ASSERT_TRUE(static_cast<bool>(k)) << llvm::toString(k.takeError());
    kernel = std::move(*k);
    std::mt19937_64 rng(7);
    for (HostTensor *t : {&q, &kk, &v, &out})
      t->fillUniform(rng, -1, 1);
    for (int64_t i = 0; i < doc.size(); ++i)
      doc.set(i, i / 4);
    args = {q.ref(), kk.ref(), v.ref(), out.ref(), lse.ref(), {doc.ref()}};
  }
  spec::Variant variant;
  KernelConfig config;
  std::unique_ptr<Kernel> kernel;
  HostTensor q{DType::F32, {1, 4, 10, 64}}, kk{DType::F32, {1, 2, 10, 64}},
      v{DType::F32, {1, 2, 10, 64}}, out{DType::F32, {1, 4, 10, 64}},
      lse{DType::F32, {1, 4, 10}}, doc{DType::I32, {10}};
  AttentionArgs args;
};

TEST_F(Fixture, GoodArgumentsRun) { EXPECT_EQ(errorOf(kernel->run(args)), "<no error>"); }

TEST_F(Fixture, WrongDType) {
  HostTensor q16(DType::BF16, {1, 4, 10, 64});
  args.q = q16.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("q must be f32"), std::string::npos);
}

TEST_F(Fixture, WrongRankAndHeadDim) {
  HostTensor q3(DType::F32, {4, 10, 64});
  args.q = q3.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("q must have rank 4"), std::string::npos);
  HostTensor k32(DType::F32, {1, 2, 10, 32});
  args.q = q.ref();
  args.k = k32.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("k must have head dim 64"), std::string::npos);
}

TEST_F(Fixture, HeadsNotAMultiple) {
  HostTensor k3(DType::F32, {1, 3, 10, 64}), v3(DType::F32, {1, 3, 10, 64});
  args.k = k3.ref();
  args.v = v3.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("must be a multiple of key/value heads"),
            std::string::npos);
}

TEST_F(Fixture, MismatchedShapes) {
  HostTensor v11(DType::F32, {1, 2, 11, 64});
  args.v = v11.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("k and v must have the same heads and length"),
            std::string::npos);
  args.v = v.ref();
  HostTensor o2(DType::F32, {2, 4, 10, 64});
  args.out = o2.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("batch sizes differ"), std::string::npos);
}

TEST_F(Fixture, BufferProblems) {
  HostTensor doc9(DType::I32, {9});
  args.buffers = {doc9.ref()};
  EXPECT_NE(errorOf(kernel->run(args)).find("buffer 'doc' must have shape [Skv] = [10]"),
            std::string::npos);
  HostTensor docf(DType::F32, {10});
  args.buffers = {docf.ref()};
  EXPECT_NE(errorOf(kernel->run(args)).find("buffer 'doc' must be i32"), std::string::npos);
  args.buffers = {};
  EXPECT_NE(errorOf(kernel->run(args)).find("reads 1 buffer(s) (doc), but 0 were given"),
            std::string::npos);
}

TEST_F(Fixture, LseMismatch) {
  args.lse = {};
  EXPECT_NE(errorOf(kernel->run(args)).find("no lse tensor was given"), std::string::npos);
  HostTensor lse2(DType::F32, {1, 4, 9});
  args.lse = lse2.ref();
  EXPECT_NE(errorOf(kernel->run(args)).find("lse must be f32[1, 4, 10]"), std::string::npos);
}

TEST_F(Fixture, NonContiguousHeadDim) {
  args.q.strides = {2560, 640, 64, 2};
  EXPECT_NE(errorOf(kernel->run(args)).find("contiguous in its last"), std::string::npos);
}

TEST(KernelArgs, OutOfRangeBufferReadIsReported) {
  // table has 4 entries per head but the spec indexes it with kv (up to 9).
  spec::Variant v = parse("variant v { buffer table: f32[H, 4]\n score = score + table[h, kv] }");
  auto kernel = Kernel::compile(v, KernelConfig{});
  ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
  HostTensor q(DType::F32, {1, 2, 10, 64}), k(DType::F32, {1, 2, 10, 64}),
      val(DType::F32, {1, 2, 10, 64}), out(DType::F32, {1, 2, 10, 64}),
      table(DType::F32, {2, 4});
  std::mt19937_64 rng(3);
  for (HostTensor *t : {&q, &k, &val, &table})
    t->fillUniform(rng, -1, 1);
  AttentionArgs args{q.ref(), k.ref(), val.ref(), out.ref(), {}, {table.ref()}};
  EXPECT_NE(errorOf((*kernel)->run(args)).find("read buffer 'table' out of range"),
            std::string::npos);
}

TEST(KernelArgs, BadConfigIsRejected) {
  spec::Variant v = parse("variant v { mask = causal() }");
  KernelConfig c;
  c.headDim = 60;
  auto k = Kernel::compile(v, c);
  ASSERT_FALSE(static_cast<bool>(k));
  EXPECT_NE(llvm::toString(k.takeError()).find("multiples of 8"), std::string::npos);
  c = KernelConfig{};
  c.dtype = DType::I32;
  auto k2 = Kernel::compile(v, c);
  ASSERT_FALSE(static_cast<bool>(k2));
  EXPECT_NE(llvm::toString(k2.takeError()).find("dtype must be f32, f16 or bf16"),
            std::string::npos);
}

TEST(KernelArgs, EmitsEveryStage) {
  spec::Variant v = parse("variant v { mask = causal() }");
  for (Stage s : {Stage::Attn, Stage::Tiled, Stage::LLVM, Stage::LLVMIR, Stage::Object}) {
    auto text = emit(v, KernelConfig{}, s);
    ASSERT_TRUE(static_cast<bool>(text)) << llvm::toString(text.takeError());
    EXPECT_GT(text->size(), 100u);
  }
  auto attn = emit(v, KernelConfig{}, Stage::Attn);
  EXPECT_NE(attn->find("attn.attention @v"), std::string::npos);
  auto obj = emit(v, KernelConfig{}, Stage::Object);
  EXPECT_EQ(obj->substr(0, 4), "\x7f" "ELF");
}


// KernelConfig::outF32: a bf16 kernel that writes out in f32 (a training
// forward) wants an f32 out, refuses a bf16 one clearly, and its f32 out
// carries no bf16 rounding: within f32 accuracy of the reference computed
// from the same bf16 inputs.
TEST(KernelArgs, F32OutputOfABF16Kernel) {
  spec::Variant variant = parse("variant c { mask = causal() }");
  KernelConfig config;
  config.dtype = DType::BF16;
  config.headDim = 32;
  config.outF32 = true;
  auto kernel = Kernel::compile(variant, config);
  ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
  unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937_64 rng(seed);
  HostTensor q(DType::BF16, {2, 4, 37, 32}), k(DType::BF16, {2, 2, 37, 32}),
      v(DType::BF16, {2, 2, 37, 32}), out(DType::F32, {2, 4, 37, 32}),
      outBF16(DType::BF16, {2, 4, 37, 32});
  for (HostTensor *t : {&q, &k, &v})
    t->fillUniform(rng, -1, 1);
  AttentionArgs args{q.ref(), k.ref(), v.ref(), outBF16.ref(), {}, {}};
  EXPECT_NE(errorOf((*kernel)->run(args)).find("out must be f32"), std::string::npos);
  args.out = out.ref();
  out.poison();
  ASSERT_EQ(errorOf((*kernel)->run(args)), "<no error>");
  ReferenceResult ref = referenceAttention(variant, q, k, v, Layout::BHSD,
                                           config.effectiveScale(), {});
  double worst = 0;
  for (int64_t i = 0; i < out.size(); ++i)
    worst = std::max(worst, std::fabs(out.get(i) - ref.out[size_t(i)]));
  EXPECT_LE(worst, 1e-5) << "seed " << seed; // bf16 rounding of out alone is ~4e-3
}

TEST(KernelArgs, F32OutputIsACPUFeature) {
  KernelConfig config;
  config.dtype = DType::BF16;
  config.outF32 = true;
  auto binary = compileCUDA(parse("variant c { mask = causal() }"), config,
                            *CUDATarget::parse("sm_80"), GPUKernelKind::Auto);
  ASSERT_FALSE(static_cast<bool>(binary));
  EXPECT_NE(llvm::toString(binary.takeError()).find("is a CPU feature for now"),
            std::string::npos);
}

} // namespace
