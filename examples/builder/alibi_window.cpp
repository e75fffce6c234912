// A complete program using heed's C++ builder: ALiBi with attention sinks and
// a sliding window, compiled for the CPU and run on random bf16 tensors,
// checked against the float64 reference.
#include "heed/Compiler/Compiler.h"
#include "heed/Frontend/Builder.h"
#include "heed/Runtime/Reference.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

using namespace heed;
using namespace heed::build;

int main(int argc, char **argv) {
  int64_t seqLen = argc > 1 ? std::atoll(argv[1]) : 300;

  // The variant: a few lines, the same tree the .attn text would record.
  VariantBuilder vb("alibi_window");
  Expr window = vb.param("window", 64);
  Buffer slopes = vb.buffer("slopes", spec::ElemType::F32, {"H"});
  vb.setScore(lib::alibi(score(), slopes));
  vb.setMask(lib::causal() && (lib::sinks(4) || lib::sliding_window(window)));
  llvm::Expected<spec::Variant> variant = vb.build();
  if (!variant) {
    std::fprintf(stderr, "error: %s\n", llvm::toString(variant.takeError()).c_str());
    return 1;
  }

  KernelConfig config;
  config.dtype = DType::BF16;
  config.headDim = 64;
  config.layout = Layout::BSHD;
  auto kernel = Kernel::compile(*variant, config);
  if (!kernel) {
    std::fprintf(stderr, "error: %s\n", llvm::toString(kernel.takeError()).c_str());
    return 1;
  }

  // Inputs: B=2, 8 query heads sharing 2 key/value heads (GQA), BSHD layout.
  const int64_t B = 2, Hq = 8, Hkv = 2, D = 64;
  uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  HostTensor q(DType::BF16, {B, seqLen, Hq, D}), k(DType::BF16, {B, seqLen, Hkv, D}),
      v(DType::BF16, {B, seqLen, Hkv, D}), out(DType::BF16, {B, seqLen, Hq, D}),
      slopeValues(DType::F32, {Hq});
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  v.fillUniform(rng, -1, 1);
  for (int64_t h = 0; h < Hq; ++h)
    slopeValues.set(h, std::exp2(-8.0 * (h + 1) / Hq)); // the ALiBi paper's slopes
  out.poison();

  AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), {}, {slopeValues.ref()}};
  RunStats stats;
  auto start = std::chrono::steady_clock::now();
  if (llvm::Error err = (*kernel)->run(args, 0, &stats)) {
    std::fprintf(stderr, "error: %s\n", llvm::toString(std::move(err)).c_str());
    return 1;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  ReferenceResult ref = referenceAttention(*variant, q, k, v, config.layout,
                                           config.effectiveScale(), {slopeValues});
  ErrorStats e = compareOutput(out, ref.out, config.layout);
  std::printf("alibi_window: seed %llu, S=%lld, compile %.3f s, run %.3f ms, "
              "blocks visited %lld of %lld, relative error %.2e\n",
              static_cast<unsigned long long>(seed), static_cast<long long>(seqLen),
              (*kernel)->compileSeconds(), ms, static_cast<long long>(stats.visitedBlocks),
              static_cast<long long>(stats.totalBlocks), e.relative);
  bool ok = e.nanCount == 0 && e.relative < 1e-2;
  std::printf("%s\n", ok ? "PASSED" : "FAILED");
  return ok ? 0 : 1;
}
