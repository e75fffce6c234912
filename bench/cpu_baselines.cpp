// CPU baselines for docs/benchmarks.md: the single-core f32 FMA peak of this
// machine, and a naive three-loop attention (the same causal problem heed runs).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

/// 16 independent chains of 16-lane FMAs: enough to hide latency on AVX-512.
double fmaPeakGflops() {
  typedef float v16 __attribute__((vector_size(64)));
  v16 acc[16];
  for (int i = 0; i < 16; ++i)
    acc[i] = v16{} + 0.001f * i;
  v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
  const long iters = 20'000'000;
  auto start = Clock::now();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      acc[i] = acc[i] * a + b;
#ifdef __AVX512F__
    asm volatile("" : "+v"(a)); // keeps `a` opaque without leaving registers
#else
    asm volatile("" : "+m"(a)); // 64-byte vectors fit no register here
#endif
  }
  double s = std::chrono::duration<double>(Clock::now() - start).count();
  float sink = 0;
  for (int i = 0; i < 16; ++i)
    sink += acc[i][0];
  if (sink == 12345.f)
    std::puts("");
  return iters * 16.0 * 16 * 2 / s / 1e9;
}

/// Causal attention, f32, one head at a time: scores, softmax, weighted sum.
double naiveCausalSeconds(int H, int S, int D) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> q(size_t(H) * S * D), k(q.size()), v(q.size()), o(q.size()), s(S);
  for (float *p : {q.data(), k.data(), v.data()})
    for (size_t i = 0; i < q.size(); ++i)
      p[i] = u(rng);
  float scale = 1 / std::sqrt(float(D));
  auto start = Clock::now();
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < S; ++i) {
      const float *qi = &q[(size_t(h) * S + i) * D];
      float m = -INFINITY;
      for (int j = 0; j <= i; ++j) {
        const float *kj = &k[(size_t(h) * S + j) * D];
        float dot = 0;
        for (int d = 0; d < D; ++d)
          dot += qi[d] * kj[d];
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      float l = 0;
      float *oi = &o[(size_t(h) * S + i) * D];
      std::fill(oi, oi + D, 0.f);
      for (int j = 0; j <= i; ++j) {
        float p = std::exp(s[j] - m);
        l += p;
        const float *vj = &v[(size_t(h) * S + j) * D];
        for (int d = 0; d < D; ++d)
          oi[d] += p * vj[d];
      }
      for (int d = 0; d < D; ++d)
        oi[d] /= l;
    }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

} // namespace

int main(int argc, char **argv) {
  int S = argc > 1 ? std::atoi(argv[1]) : 2048;
  int H = 8, D = 64;
  double peak = 0;
  for (int r = 0; r < 3; ++r)
    peak = std::max(peak, fmaPeakGflops());
  double t = naiveCausalSeconds(H, S, D);
  double useful = 4.0 * H * S * double(S) * D * 0.5;
  std::printf("fma_peak_gflops_1core %.1f\n", peak);
  std::printf("naive_causal_s %.3f\nnaive_causal_gflops %.2f\n", t, useful / t / 1e9);
  return 0;
}
