// The JIT-compiled CPU kernel against the table of the language's scalar
// semantics (unittests/Frontend/SemanticsCases.h), which the folder and the
// interpreter follow too: wrapping, division, conversions, f32 overflow, NaN.
#include "../Frontend/SemanticsCases.h"
#include "TestSpecs.h"

#include "heed/Compiler/Compiler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace heed;
using namespace heed::spec::semantics;

namespace {

// One kernel holds every case: query row r reads its x from a buffer (so
// nothing folds at compile time) and sees its keys exactly where the kernel's
// value of case r equals the table's. A row that disagrees has no visible key:
// its log-sum-exp is -inf instead of finite.
TEST(Semantics, KernelFollowsTheTable) {
  const std::vector<SemanticsCase> &cases = semanticsCases();
  std::string mask;
  for (size_t r = 0; r < cases.size(); ++r) {
    const std::string e = "(" + cases[r].expr + ")";
    std::string agrees;
    switch (cases[r].want.type) {
    case spec::ScalarType::I64: agrees = e + " == wi[q]"; break;
    case spec::ScalarType::Bool: agrees = e + " == (wb[q] != 0)"; break;
    case spec::ScalarType::F32:
      agrees = "(" + e + " == wf[q] || (" + e + " != " + e + " && wf[q] != wf[q]))";
      break;
    }
    mask += (r ? "\n    || " : "") + ("(q == " + std::to_string(r) + " && " + agrees + ")");
  }
  spec::Variant variant =
      test::parse("variant v {\n  buffer xs: i64[Sq]\n  buffer wi: i64[Sq]\n"
                  "  buffer wf: f32[Sq]\n  buffer wb: i64[Sq]\n  let x = xs[q]\n  mask = " +
                  mask + "\n}\n");
  ASSERT_FALSE(variant.name.empty());

  KernelConfig config;
  config.headDim = config.headDimV = 16;
  config.lse = true;
  auto kernel = Kernel::compile(variant, config);
  ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());

  const int64_t rows = static_cast<int64_t>(cases.size()), keys = 5;
  uint64_t seed = std::random_device{}();
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  HostTensor q(DType::F32, {1, 1, rows, 16}), k(DType::F32, {1, 1, keys, 16}),
      v(DType::F32, {1, 1, keys, 16}), out(DType::F32, {1, 1, rows, 16}),
      lse(DType::F32, {1, 1, rows});
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  v.fillUniform(rng, -1, 1);
  out.poison();
  lse.poison();
  // i64 buffers are written directly: HostTensor::set goes through double.
  HostTensor xs(DType::I64, {rows}), wi(DType::I64, {rows}), wf(DType::F32, {rows}),
      wb(DType::I64, {rows});
  for (int64_t r = 0; r < rows; ++r) {
    const SemanticsCase &c = cases[r];
    std::memcpy(static_cast<int64_t *>(xs.ref().data) + r, &c.x, sizeof(int64_t));
    std::memcpy(static_cast<int64_t *>(wi.ref().data) + r, &c.want.i, sizeof(int64_t));
    std::memcpy(static_cast<int64_t *>(wb.ref().data) + r, &c.want.i, sizeof(int64_t));
    wf.set(r, c.want.f);
  }
  AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(),
                     {xs.ref(), wi.ref(), wf.ref(), wb.ref()}};
  llvm::Error err = (*kernel)->run(args);
  ASSERT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));
  for (int64_t r = 0; r < rows; ++r) {
    double l = lse.get(r);
    EXPECT_TRUE(std::isfinite(l)) << cases[r].expr << " with x = " << cases[r].x
                                  << ": the kernel's value differs from the table's (lse "
                                  << l << ")";
    // A visible row's output is a weighted mean of v: finite, in [-1, 1].
    for (int64_t d = 0; d < 16 && std::isfinite(l); ++d)
      EXPECT_LE(std::fabs(out.get(r * 16 + d)), 1.0) << "row " << r;
  }
}

} // namespace
