// Cost of the block structures a sparse attention call needs, per call:
// heed (closed form for affine masks: nothing to build; a sparse min/max
// table over document ids: O(S)) against the brute-force O(S^2) block mask
// that FlexAttention's create_block_mask computes (here as a tight C++ loop
// over all (q, kv) pairs, 128 x 128 blocks, single thread).
#include "heed/Compiler/Compiler.h"
#include "heed/Frontend/Parser.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Brute force: every (q, kv) pair of a causal document mask, reduced to
/// "any" and "all" per 128 x 128 block.
double bruteForce(const std::vector<int32_t> &doc, int64_t &nonEmpty) {
  int64_t s = static_cast<int64_t>(doc.size()), bs = 128, nb = (s + bs - 1) / bs;
  std::vector<uint8_t> any(nb * nb), all(nb * nb, 1);
  auto start = Clock::now();
  for (int64_t q = 0; q < s; ++q) {
    int32_t dq = doc[q];
    uint8_t *anyRow = &any[(q / bs) * nb], *allRow = &all[(q / bs) * nb];
    for (int64_t kv = 0; kv < s; ++kv) {
      uint8_t m = (dq == doc[kv]) & (q >= kv);
      anyRow[kv / bs] |= m;
      allRow[kv / bs] &= m;
    }
  }
  double t = seconds(start);
  nonEmpty = std::count(any.begin(), any.end(), 1);
  return t;
}

} // namespace

int main() {
  auto parsed = heed::spec::parseSpec(
      "variant document { buffer doc: i32[Skv]\n mask = document(doc) && causal() }",
      "document.attn");
  if (!parsed) {
    std::fprintf(stderr, "%s\n", llvm::toString(parsed.takeError()).c_str());
    return 1;
  }
  auto kernel = heed::Kernel::compile((*parsed)[0], heed::KernelConfig{});
  if (!kernel) {
    std::fprintf(stderr, "%s\n", llvm::toString(kernel.takeError()).c_str());
    return 1;
  }
  std::printf("| S | brute-force block mask (s) | heed summary build + 16-row call (s) | "
              "heed, same buffer again (s) |\n| --- | --- | --- | --- |\n");
  std::mt19937_64 rng(1);
  for (int64_t s : {8192, 32768, 131072}) {
    std::vector<int32_t> doc(s);
    std::uniform_int_distribution<int> len(256, 2048);
    for (int64_t i = 0, id = 0; i < s; ++id)
      for (int l = len(rng); l > 0 && i < s; --l)
        doc[i++] = static_cast<int32_t>(id);
    int64_t nonEmpty = 0;
    double brute = bruteForce(doc, nonEmpty);

    // One query block against the whole key sequence: the attention work is
    // tiny, so the time is the table build plus the call.
    heed::HostTensor q(heed::DType::F32, {1, 1, 16, 64}), k(heed::DType::F32, {1, 1, s, 64}),
        v(heed::DType::F32, {1, 1, s, 64}), o(heed::DType::F32, {1, 1, 16, 64});
    heed::TensorRef docRef{doc.data(), heed::DType::I32, {s}, {}};
    heed::AttentionArgs args{q.ref(), k.ref(), v.ref(), o.ref(), {}, {docRef}};
    auto start = Clock::now();
    if (llvm::Error err = (*kernel)->run(args, 1)) {
      std::fprintf(stderr, "%s\n", llvm::toString(std::move(err)).c_str());
      return 1;
    }
    double first = seconds(start);
    start = Clock::now();
    if (llvm::Error err = (*kernel)->run(args, 1))
      return 1;
    double again = seconds(start);
    std::printf("| %lld | %.4f | %.6f | %.6f |\n", static_cast<long long>(s), brute, first,
                again);
  }
  return 0;
}
