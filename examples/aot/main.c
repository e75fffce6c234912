/* A deployed program using an ahead-of-time exported kernel (see
 * CMakeLists.txt): document masking (causal within each packed document),
 * checked against a float64 reference on fresh random inputs.
 *
 *   aot-document [seed]      exit code 0 when the kernel matches */
#include "document.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { B = 2, HQ = 4, HKV = 2, S = 301, D = 64 };

static uint64_t state;
static double uniform(void) { /* xorshift64*, in [-1, 1) */
  state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
  return (double)((state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2 - 1;
}

static size_t at(int b, int h, int s, int heads) { return (((size_t)b * heads + h) * S + s) * D; }

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], 0, 10) : (uint64_t)time(0);
  printf("aot-document: seed %llu\n", (unsigned long long)seed);
  state = seed * 0x9E3779B97F4A7C15ull + 1;

  size_t nq = (size_t)B * HQ * S * D, nkv = (size_t)B * HKV * S * D;
  float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
  float *out = malloc(nq * sizeof *out);
  int32_t doc[S];
  for (size_t i = 0; i < nq; ++i) q[i] = (float)uniform();
  for (size_t i = 0; i < nkv; ++i) k[i] = (float)uniform(), v[i] = (float)uniform();
  for (size_t i = 0; i < nq; ++i) out[i] = NAN; /* poisoned: every output must be written */
  /* Packed documents of random lengths 1..64. */
  for (int s = 0, id = 0; s < S; ++id)
    for (int len = 1 + (int)((uniform() + 1) * 32) % 64; len-- && s < S; ++s) doc[s] = id;

  heed_kernel *kernel;
  if (heed_document_load(&kernel) != HEED_OK) {
    fprintf(stderr, "load failed: %s\n", heed_last_error());
    return 1;
  }
  printf("kernel '%s' for %s (%d buffer '%s')\n", heed_kernel_name(kernel),
         heed_kernel_target(kernel), heed_kernel_num_buffers(kernel),
         heed_kernel_buffer_name(kernel, 0));

  /* Bad input is an error with a message, never a crash. */
  if (heed_document_run(kernel, B, HQ, HKV, S, S, q, k, v, NULL, out, 0) == HEED_OK) {
    fprintf(stderr, "a missing doc_ids buffer was not reported\n");
    return 1;
  }
  printf("expected error: %s\n", heed_last_error());

  if (heed_document_run(kernel, B, HQ, HKV, S, S, q, k, v, doc, out, 0) != HEED_OK) {
    fprintf(stderr, "run failed: %s\n", heed_last_error());
    return 1;
  }

  double scale = heed_kernel_scale(kernel), worst = 0;
  int bad = 0; /* NaN or inf: an output left unwritten */
  double *p = malloc(S * sizeof *p);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < HQ; ++h) {
      int hk = h / (HQ / HKV);
      for (int i = 0; i < S; ++i) {
        double m = -INFINITY, sum = 0;
        for (int j = 0; j < S; ++j) {
          p[j] = -INFINITY;
          if (j > i || doc[j] != doc[i]) continue;
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += (double)q[at(b, h, i, HQ) + d] * k[at(b, hk, j, HKV) + d];
          p[j] = dot * scale;
          if (p[j] > m) m = p[j];
        }
        for (int j = 0; j < S; ++j) sum += p[j] == -INFINITY ? 0 : (p[j] = exp(p[j] - m));
        for (int d = 0; d < D; ++d) {
          double acc = 0;
          for (int j = 0; j < S; ++j)
            if (p[j] != -INFINITY) acc += p[j] / sum * v[at(b, hk, j, HKV) + d];
          double err = fabs(acc - out[at(b, h, i, HQ) + d]);
          if (!(err < INFINITY)) bad = 1;
          else if (err > worst) worst = err;
        }
      }
    }
  printf("max |heed - float64 reference| = %.3g\n", worst);
  heed_kernel_release(kernel);
  free(p), free(q), free(k), free(v), free(out);
  if (bad || !(worst < 1e-4)) {
    fprintf(stderr, "FAILED: %s %.3g (seed %llu)\n", bad ? "non-finite output;" : "error above 1e-4:",
            worst, (unsigned long long)seed);
    return 1;
  }
  printf("PASSED\n");
  return 0;
}
