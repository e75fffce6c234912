/* A deployed program using an ahead-of-time exported kernel (see
 * CMakeLists.txt): document masking (causal within each packed document),
 * checked against a float64 reference on fresh random inputs, on the CPU or
 * on a CUDA GPU. It links heed's runtime only; for the GPU it reaches the CUDA
 * driver itself (dlopen, as a program that owns its device memory would).
 *
 *   aot-document [seed]          on the CPU; exit code 0 when the kernel matches
 *   aot-document cuda [seed]     on CUDA device 0 (the export needs an sm_XX
 *                                target); exit code 77 (SKIPPED) without a GPU */
#include "document.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { B = 2, HQ = 4, HKV = 2, S = 301, D = 64 };

static uint64_t state;
static double uniform(void) { /* xorshift64*, in [-1, 1) */
  state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
  return (double)((state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2 - 1;
}

static size_t at(int b, int h, int s, int heads) { return (((size_t)b * heads + h) * S + s) * D; }

/* The largest |out - float64 reference|; sets *bad when an output is NaN or
 * infinite (left unwritten: outputs are poisoned). */
static double maxError(const float *q, const float *k, const float *v, const int32_t *doc,
                       const float *out, double scale, int *bad) {
  double worst = 0;
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
          if (!(err < INFINITY)) *bad = 1;
          else if (err > worst) worst = err;
        }
      }
    }
  free(p);
  return worst;
}

/* The CUDA driver calls this program needs, from libcuda.so.1. */
typedef struct {
  int (*memAlloc)(unsigned long long *, size_t);
  int (*memFree)(unsigned long long);
  int (*toDevice)(unsigned long long, const void *, size_t);
  int (*toHost)(void *, unsigned long long, size_t);
} Cuda;

/* Device 0's primary context made current; 0 with `why` set when there is
 * no driver or GPU. */
static int openCuda(Cuda *c, const char **why) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return *why = "no CUDA driver (libcuda.so.1)", 0;
  int (*init)(unsigned) = 0, (*count)(int *) = 0, (*get)(int *, int) = 0;
  int (*retain)(void **, int) = 0, (*setCurrent)(void *) = 0;
  *(void **)&init = dlsym(lib, "cuInit");
  *(void **)&count = dlsym(lib, "cuDeviceGetCount");
  *(void **)&get = dlsym(lib, "cuDeviceGet");
  *(void **)&retain = dlsym(lib, "cuDevicePrimaryCtxRetain");
  *(void **)&setCurrent = dlsym(lib, "cuCtxSetCurrent");
  *(void **)&c->memAlloc = dlsym(lib, "cuMemAlloc_v2");
  *(void **)&c->memFree = dlsym(lib, "cuMemFree_v2");
  *(void **)&c->toDevice = dlsym(lib, "cuMemcpyHtoD_v2");
  *(void **)&c->toHost = dlsym(lib, "cuMemcpyDtoH_v2");
  int n = 0, dev = 0;
  void *ctx = 0;
  if (!init || !count || !get || !retain || !setCurrent || !c->memAlloc || !c->memFree ||
      !c->toDevice || !c->toHost)
    return *why = "the CUDA driver lacks an entry point", 0;
  if (init(0) || count(&n) || n == 0) return *why = "the CUDA driver sees no GPU", 0;
  if (get(&dev, 0) || retain(&ctx, dev) || setCurrent(ctx))
    return *why = "cannot make device 0's context current", 0;
  return 1;
}

/* Runs the kernel on CUDA device 0: the inputs copied there, out poisoned
 * there, launched on the default stream, checked with heed_synchronize, out
 * copied back. 0, 1 (failed) or 77 (no GPU). */
static int runOnCuda(const heed_kernel *kernel, const float *q, const float *k, const float *v,
                     const int32_t *doc, float *out, size_t nq, size_t nkv) {
  Cuda c;
  const char *why = "";
  if (!openCuda(&c, &why)) {
    printf("SKIPPED: %s\n", why);
    return 77;
  }
  unsigned long long dq = 0, dk = 0, dv = 0, ddoc = 0, dout = 0;
  if (c.memAlloc(&dq, nq * 4) || c.memAlloc(&dk, nkv * 4) || c.memAlloc(&dv, nkv * 4) ||
      c.memAlloc(&ddoc, S * 4) || c.memAlloc(&dout, nq * 4) || c.toDevice(dq, q, nq * 4) ||
      c.toDevice(dk, k, nkv * 4) || c.toDevice(dv, v, nkv * 4) || c.toDevice(ddoc, doc, S * 4) ||
      c.toDevice(dout, out, nq * 4)) {
    fprintf(stderr, "cannot allocate or fill device memory\n");
    return 1;
  }
  int rc = 0;
  if (heed_document_run_device(kernel, HEED_DEVICE_CUDA, 0, NULL, B, HQ, HKV, S, S,
                               (const float *)(uintptr_t)dq, (const float *)(uintptr_t)dk,
                               (const float *)(uintptr_t)dv, (const int32_t *)(uintptr_t)ddoc,
                               (float *)(uintptr_t)dout) != HEED_OK ||
      heed_synchronize(HEED_DEVICE_CUDA, 0, NULL) != HEED_OK) {
    fprintf(stderr, "GPU run failed: %s\n", heed_last_error());
    rc = 1;
  } else if (c.toHost(out, dout, nq * 4)) {
    fprintf(stderr, "cannot read the output back\n");
    rc = 1;
  }
  c.memFree(dq), c.memFree(dk), c.memFree(dv), c.memFree(ddoc), c.memFree(dout);
  return rc;
}

int main(int argc, char **argv) {
  int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
  const char *seedArg = argc > 1 + cuda ? argv[1 + cuda] : NULL;
  uint64_t seed = seedArg ? strtoull(seedArg, 0, 10) : (uint64_t)time(0);
  printf("aot-document: %s, seed %llu\n", cuda ? "CUDA device 0" : "CPU",
         (unsigned long long)seed);
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

  int rc = 0;
  if (cuda) {
    rc = runOnCuda(kernel, q, k, v, doc, out, nq, nkv);
  } else if (heed_document_run(kernel, B, HQ, HKV, S, S, q, k, v, doc, out, 0) != HEED_OK) {
    fprintf(stderr, "run failed: %s\n", heed_last_error());
    rc = 1;
  }
  if (rc == 0) {
    int bad = 0;
    double worst = maxError(q, k, v, doc, out, heed_kernel_scale(kernel), &bad);
    printf("max |heed - float64 reference| = %.3g\n", worst);
    if (bad || !(worst < 1e-4)) {
      fprintf(stderr, "FAILED: %s %.3g (seed %llu)\n",
              bad ? "non-finite output;" : "error above 1e-4:", worst,
              (unsigned long long)seed);
      rc = 1;
    } else {
      printf("PASSED\n");
    }
  }
  heed_kernel_release(kernel);
  free(q), free(k), free(v), free(out);
  return rc;
}
