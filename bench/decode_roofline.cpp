// What a decode step can reach on this CPU: a hand-written AVX-512 BF16 loop
// for issue 18's shape (B=8, Hkv=8, a GQA group of 4 query rows, Skv=32768,
// D=128, bf16 K/V in BHSD) against a plain copy, in one run. Not heed's
// kernel and not a test: the reference design the CPU decode lowering is
// measured against (docs/decode.md, "Decode bandwidth"), with the
// experiments that located the limit:
//   compute  K/V resident in cache (every item reads its first 512 keys over
//            and over): the loop's compute-bound rate;
//   burst    K/V from memory, the rows 32 keys ahead prefetched in one burst
//            per 16-key tile (how heed's staging copy prefetches);
//   spread   the same prefetches spread over the products (4 K rows per
//            4-key group of QK^T, 2 V rows per 2-key step of PV).
// Per 16-key tile and row: QK^T by vdpbf16ps (4 keys x 4 rows of sums, one
// 16-way transposing reduction), the online softmax on the row's 16 scores
// in one vector, PV by vdpbf16ps on key pairs (V rows interleaved by
// vpermt2w, P rounded to bf16).
//
//   heed-bench-decode-roofline [--threads=2] [--distance=32]
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kBatch = 8, kHeadsKV = 8, kGroup = 4, kKeys = 32768, kDim = 128, kTile = 16;

enum class Mode { Compute, Burst, Spread };

uint16_t toBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}
float fromBF16(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#define HEED_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/// e^x for x <= 0: 2^(x log2 e) by a degree-6 polynomial and scalef.
HEED_AVX512BF16 __m512 vexp(__m512 x) {
  __m512 y = _mm512_max_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)),
                           _mm512_set1_ps(-127.f));
  __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(y, n);
  __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
  for (float c : {1.339887440266574e-3f, 9.618437357674640e-3f, 5.550332471162809e-2f,
                  2.402264791363012e-1f, 6.931472028550421e-1f, 1.0f})
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

/// The sums of 16 vectors as one vector (lane order: kSumOrder).
HEED_AVX512BF16 __m512 sum16(const __m512 *v) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i)
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
}

/// Which input vector of sum16 each output lane sums (found by running it
/// on unit vectors).
int kSumOrder[16];
HEED_AVX512BF16 void findSumOrder() {
  for (int i = 0; i < 16; ++i) {
    __m512 v[16];
    for (int j = 0; j < 16; ++j)
      v[j] = _mm512_set1_ps(j == i ? 1.f : 0.f);
    alignas(64) float out[16];
    _mm512_store_ps(out, sum16(v));
    for (int j = 0; j < 16; ++j)
      if (out[j] != 0)
        kSumOrder[j] = i;
  }
}

struct Item {
  const uint16_t *q, *k, *v; ///< q [kGroup][kDim]; k, v [kKeys][kDim]
  float *out;                ///< [kGroup][kDim]
};

void prefetchRows(const uint16_t *rows, int count) {
  const char *p = reinterpret_cast<const char *>(rows);
  for (int i = 0; i < count * kDim * 2; i += 64)
    _mm_prefetch(p + i, _MM_HINT_T0);
}

/// One (batch, KV head): its group's kGroup query rows over every key.
HEED_AVX512BF16 void decodeItem(const Item &it, Mode mode, int distance) {
  const float scale = 1 / std::sqrt(float(kDim));
  __m512i q[kGroup][kDim / 32];
  for (int r = 0; r < kGroup; ++r)
    for (int c = 0; c < kDim / 32; ++c)
      q[r][c] = _mm512_loadu_si512(it.q + r * kDim + c * 32);
  // vpermt2w index: lanes (2i, 2i + 1) take element i of the first and of
  // the second row (within 16-element halves: lo, hi).
  alignas(64) uint16_t lo[32], hi[32];
  for (int i = 0; i < 16; ++i) {
    lo[2 * i] = uint16_t(i), lo[2 * i + 1] = uint16_t(32 + i);
    hi[2 * i] = uint16_t(16 + i), hi[2 * i + 1] = uint16_t(48 + i);
  }
  const __m512i pairLo = _mm512_load_si512(lo), pairHi = _mm512_load_si512(hi);
  float maxs[kGroup], sums[kGroup];
  __m512 o[kGroup][kDim / 16];
  for (int r = 0; r < kGroup; ++r) {
    maxs[r] = -INFINITY, sums[r] = 0;
    for (int c = 0; c < kDim / 16; ++c)
      o[r][c] = _mm512_setzero_ps();
  }
  alignas(64) float s[kGroup][kTile];
  alignas(64) uint32_t p[kGroup][kTile / 2];
  for (int t = 0; t < kKeys; t += kTile) {
    int at = mode == Mode::Compute ? t % 512 : t;
    const uint16_t *kt = it.k + size_t(at) * kDim, *vt = it.v + size_t(at) * kDim;
    bool ahead = mode != Mode::Compute && t + distance + kTile <= kKeys;
    if (ahead && mode == Mode::Burst) {
      prefetchRows(kt + distance * kDim, kTile);
      prefetchRows(vt + distance * kDim, kTile);
    }
    for (int k0 = 0; k0 < kTile; k0 += 4) {
      if (ahead && mode == Mode::Spread)
        prefetchRows(kt + (distance + k0) * kDim, 4);
      __m512 acc[4 * kGroup];
      for (__m512 &a : acc)
        a = _mm512_setzero_ps();
      for (int c = 0; c < kDim / 32; ++c)
        for (int j = 0; j < 4; ++j) {
          __m512i key = _mm512_loadu_si512(kt + (k0 + j) * kDim + c * 32);
          for (int r = 0; r < kGroup; ++r)
            acc[j * kGroup + r] =
                _mm512_dpbf16_ps(acc[j * kGroup + r], (__m512bh)q[r][c], (__m512bh)key);
        }
      alignas(64) float dots[16];
      _mm512_store_ps(dots, _mm512_mul_ps(sum16(acc), _mm512_set1_ps(scale)));
      for (int l = 0; l < 16; ++l)
        s[kSumOrder[l] % kGroup][k0 + kSumOrder[l] / kGroup] = dots[l];
    }
    for (int r = 0; r < kGroup; ++r) {
      __m512 sv = _mm512_load_ps(s[r]);
      float m = std::max(maxs[r], _mm512_reduce_max_ps(sv));
      float alpha = std::exp(maxs[r] - m);
      __m512 pr = vexp(_mm512_sub_ps(sv, _mm512_set1_ps(m)));
      sums[r] = sums[r] * alpha + _mm512_reduce_add_ps(pr);
      maxs[r] = m;
      for (int c = 0; c < kDim / 16; ++c)
        o[r][c] = _mm512_mul_ps(o[r][c], _mm512_set1_ps(alpha));
      _mm256_store_si256(reinterpret_cast<__m256i *>(p[r]), (__m256i)_mm512_cvtneps_pbh(pr));
    }
    for (int k = 0; k < kTile; k += 2) {
      if (ahead && mode == Mode::Spread)
        prefetchRows(vt + (distance + k) * kDim, 2);
      for (int c = 0; c < kDim / 32; ++c) {
        __m512i a = _mm512_loadu_si512(vt + k * kDim + c * 32);
        __m512i b = _mm512_loadu_si512(vt + (k + 1) * kDim + c * 32);
        __m512i pairs[2] = {_mm512_permutex2var_epi16(a, pairLo, b),
                            _mm512_permutex2var_epi16(a, pairHi, b)};
        for (int r = 0; r < kGroup; ++r) {
          __m512i w = _mm512_set1_epi32(int(p[r][k / 2]));
          for (int h = 0; h < 2; ++h)
            o[r][2 * c + h] = _mm512_dpbf16_ps(o[r][2 * c + h], (__m512bh)pairs[h], (__m512bh)w);
        }
      }
    }
  }
  for (int r = 0; r < kGroup; ++r)
    for (int c = 0; c < kDim / 16; ++c)
      _mm512_storeu_ps(it.out + r * kDim + c * 16,
                       _mm512_mul_ps(o[r][c], _mm512_set1_ps(1 / sums[r])));
}

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int fail(const std::string &message) {
  std::fprintf(stderr, "heed-bench-decode-roofline: %s\n", message.c_str());
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  unsigned threads = 2;
  int distance = 32;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--threads=", 0) == 0)
      threads = unsigned(std::max(1, std::atoi(arg.c_str() + 10)));
    else if (arg.rfind("--distance=", 0) == 0)
      distance = std::max(0, std::atoi(arg.c_str() + 11)) / kTile * kTile;
    else
      return fail("unknown argument '" + arg + "' (--threads=N --distance=KEYS)");
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::printf("SKIPPED: this CPU has no AVX-512 BF16 (vdpbf16ps)\n");
    return 0;
  }
  findSumOrder();
  const size_t rows = size_t(kBatch) * kHeadsKV * kKeys * kDim;
  std::vector<uint16_t> k(rows), v(rows), q(size_t(kBatch) * kHeadsKV * kGroup * kDim);
  std::vector<float> out(q.size());
  uint32_t seed = 1, x = seed;
  auto uniform = [&] {
    x = x * 1664525u + 1013904223u;
    return float(x >> 8) / float(1 << 24) * 2 - 1;
  };
  for (size_t i = 0; i < rows; ++i)
    k[i] = toBF16(uniform()), v[i] = toBF16(uniform());
  for (uint16_t &e : q)
    e = toBF16(uniform());
  std::vector<char> src(size_t(1) << 30, 1), dst(src.size(), 0);

  auto run = [&](Mode mode) {
    std::atomic<int> next{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        for (int i; (i = next++) < kBatch * kHeadsKV;) {
          Item it{&q[size_t(i) * kGroup * kDim], &k[size_t(i) * kKeys * kDim],
                  &v[size_t(i) * kKeys * kDim], &out[size_t(i) * kGroup * kDim]};
          decodeItem(it, mode, distance);
        }
      });
    for (std::thread &t : pool)
      t.join();
  };
  auto copy = [&] {
    std::vector<std::thread> pool;
    size_t part = src.size() / threads;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { std::memcpy(&dst[t * part], &src[t * part], part); });
    for (std::thread &t : pool)
      t.join();
  };
  const double kvBytes = 2.0 * double(rows) * 2;
  std::printf("decode roofline  B=%d Hkv=%d group=%d Skv=%d D=%d bf16, %u threads, prefetch "
              "%d keys ahead, seed %u\n",
              kBatch, kHeadsKV, kGroup, kKeys, kDim, threads, distance, seed);
  run(Mode::Spread);
  copy();
  double best[3] = {0, 0, 0}, bestCopy = 0;
  const char *names[3] = {"compute (K/V in cache)", "burst prefetches", "spread prefetches"};
  for (int rep = 0; rep < 5; ++rep) {
    auto start = std::chrono::steady_clock::now();
    copy();
    bestCopy = std::max(bestCopy, 2.0 * double(src.size()) / seconds(start));
    for (int m = 0; m < 3; ++m) {
      start = std::chrono::steady_clock::now();
      run(Mode(m));
      best[m] = std::max(best[m], kvBytes / seconds(start));
    }
  }
  std::printf("copy             %.1f GB/s (read + write)\n", bestCopy / 1e9);
  for (int m = 0; m < 3; ++m)
    std::printf("%-24s K/V %.1f GB/s = %.0f%% of the copy\n", names[m], best[m] / 1e9,
                100 * best[m] / bestCopy);

  // The last run (spread) of one item against float64.
  run(Mode::Spread);
  const int item = 3;
  const uint16_t *qi = &q[size_t(item) * kGroup * kDim], *ki = &k[size_t(item) * kKeys * kDim],
                 *vi = &v[size_t(item) * kKeys * kDim];
  double err = 0, norm = 0;
  for (int r = 0; r < kGroup; ++r) {
    std::vector<double> score(kKeys), o(kDim, 0);
    double m = -INFINITY, l = 0;
    for (int j = 0; j < kKeys; ++j) {
      double d = 0;
      for (int e = 0; e < kDim; ++e)
        d += double(fromBF16(qi[r * kDim + e])) * fromBF16(ki[size_t(j) * kDim + e]);
      score[j] = d / std::sqrt(double(kDim));
      m = std::max(m, score[j]);
    }
    for (int j = 0; j < kKeys; ++j) {
      double w = std::exp(score[j] - m);
      l += w;
      for (int e = 0; e < kDim; ++e)
        o[e] += w * fromBF16(vi[size_t(j) * kDim + e]);
    }
    for (int e = 0; e < kDim; ++e) {
      double ref = o[e] / l, got = out[size_t(item) * kGroup * kDim + r * kDim + e];
      err += (got - ref) * (got - ref);
      norm += ref * ref;
    }
  }
  double rel = std::sqrt(err / norm);
  std::printf("check            %s (normwise relative error %.2e against float64, bound 1e-2)\n",
              rel <= 1e-2 ? "PASSED" : "FAILED", rel);
  return rel <= 1e-2 ? 0 : 1;
}
