/* The C API from C: compile, run against a float64 reference, export and
 * load, cache control, and every error path a caller can hit. Exit 0 when
 * every check holds; each failure is printed with its line. */
#include "heed/heed.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;
#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
              #cond, heed_last_error());                                                  \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

static uint64_t state;
static double uniform(void) {
  state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
  return (double)((state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2 - 1;
}

enum { B = 1, HQ = 4, HKV = 2, S = 77, D = 64 };

typedef struct {
  float *q, *k, *v, *out;
  int64_t qs[4], kvs[4];
  heed_tensor tq, tk, tv, to;
} Problem;

static void makeProblem(Problem *p) {
  size_t nq = (size_t)B * HQ * S * D, nkv = (size_t)B * HKV * S * D;
  p->q = malloc(nq * 4), p->k = malloc(nkv * 4), p->v = malloc(nkv * 4), p->out = malloc(nq * 4);
  for (size_t i = 0; i < nq; ++i) p->q[i] = (float)uniform(), p->out[i] = NAN;
  for (size_t i = 0; i < nkv; ++i) p->k[i] = (float)uniform(), p->v[i] = (float)uniform();
  int64_t qs[4] = {B, HQ, S, D}, kvs[4] = {B, HKV, S, D};
  memcpy(p->qs, qs, sizeof qs), memcpy(p->kvs, kvs, sizeof kvs);
  heed_tensor t = {0, HEED_DEVICE_CPU, 0, HEED_F32, 4, 0, 0};
  p->tq = t, p->tq.data = p->q, p->tq.shape = p->qs;
  p->tk = t, p->tk.data = p->k, p->tk.shape = p->kvs;
  p->tv = t, p->tv.data = p->v, p->tv.shape = p->kvs;
  p->to = t, p->to.data = p->out, p->to.shape = p->qs;
}

/* max |out - reference| for a sliding window of `window` (causal), or inf. */
static double causalWindowError(const Problem *p, int window, double scale) {
  double worst = 0, w[S];
  for (int h = 0; h < HQ; ++h)
    for (int i = 0; i < S; ++i) {
      double m = -INFINITY, sum = 0;
      for (int j = 0; j < S; ++j) {
        w[j] = -INFINITY;
        if (j > i || i - j >= window) continue;
        double dot = 0;
        for (int d = 0; d < D; ++d)
          dot += (double)p->q[((size_t)h * S + i) * D + d] * p->k[((size_t)(h / 2) * S + j) * D + d];
        w[j] = dot * scale;
        if (w[j] > m) m = w[j];
      }
      for (int j = 0; j < S; ++j) sum += w[j] == -INFINITY ? 0 : (w[j] = exp(w[j] - m));
      for (int d = 0; d < D; ++d) {
        double acc = 0;
        for (int j = 0; j < S; ++j)
          if (w[j] != -INFINITY) acc += w[j] / sum * p->v[((size_t)(h / 2) * S + j) * D + d];
        double e = fabs(acc - p->out[((size_t)h * S + i) * D + d]);
        if (!(e < INFINITY)) return INFINITY;
        if (e > worst) worst = e;
      }
    }
  return worst;
}

static heed_status run(heed_kernel *k, Problem *p) {
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &p->tq, a.k = &p->tk, a.v = &p->tv, a.out = &p->to;
  return heed_attention(k, &a);
}

static const char *kSpec = "# a window over causal\n"
                           "variant win {\n  param W: i64 = 16\n"
                           "  mask = sliding_window(W) && causal() }\n";

/* ---- CUDA tensors ---------------------------------------------------------
 * Where the driver works, the kernel runs on device copies and must match the
 * reference; elsewhere a CUDA call is HEED_ERROR_UNSUPPORTED with a message
 * that says why, and the CPU keeps working. */

typedef int (*CuInit)(unsigned);
typedef int (*CuDeviceGetCount)(int *);
typedef int (*CuDeviceGet)(int *, int);
typedef int (*CuPrimaryCtxRetain)(void **, int);
typedef int (*CuCtxSetCurrent)(void *);
typedef int (*CuMemAlloc)(unsigned long long *, size_t);
typedef int (*CuMemFree)(unsigned long long);
typedef int (*CuMemcpyHtoD)(unsigned long long, const void *, size_t);
typedef int (*CuMemcpyDtoH)(void *, unsigned long long, size_t);

typedef struct {
  CuMemAlloc alloc;
  CuMemFree release;
  CuMemcpyHtoD toDevice;
  CuMemcpyDtoH toHost;
} Cuda;

/* 1 with `cu` filled when libcuda.so.1 loads and sees a GPU (device 0's
 * primary context made current), else 0. */
static int openCuda(Cuda *cu) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return 0;
  CuInit init = (CuInit)dlsym(lib, "cuInit");
  CuDeviceGetCount count = (CuDeviceGetCount)dlsym(lib, "cuDeviceGetCount");
  CuDeviceGet get = (CuDeviceGet)dlsym(lib, "cuDeviceGet");
  CuPrimaryCtxRetain retain = (CuPrimaryCtxRetain)dlsym(lib, "cuDevicePrimaryCtxRetain");
  CuCtxSetCurrent setCurrent = (CuCtxSetCurrent)dlsym(lib, "cuCtxSetCurrent");
  cu->alloc = (CuMemAlloc)dlsym(lib, "cuMemAlloc_v2");
  cu->release = (CuMemFree)dlsym(lib, "cuMemFree_v2");
  cu->toDevice = (CuMemcpyHtoD)dlsym(lib, "cuMemcpyHtoD_v2");
  cu->toHost = (CuMemcpyDtoH)dlsym(lib, "cuMemcpyDtoH_v2");
  int n = 0, dev = 0;
  void *ctx = NULL;
  if (!init || !count || !get || !retain || !setCurrent || !cu->alloc || !cu->release ||
      !cu->toDevice || !cu->toHost || init(0) || count(&n) || n == 0 || get(&dev, 0) ||
      retain(&ctx, dev) || setCurrent(ctx))
    return 0;
  return 1;
}

/* The problem's tensors as seen on CUDA device 0 (pointers `q`.. `out`). */
static void onCuda(const Problem *p, heed_tensor t[4], void *q, void *k, void *v, void *out) {
  t[0] = p->tq, t[1] = p->tk, t[2] = p->tv, t[3] = p->to;
  void *data[4] = {q, k, v, out};
  for (int i = 0; i < 4; ++i) t[i].device_type = HEED_DEVICE_CUDA, t[i].device_id = 0,
                              t[i].data = data[i];
}

static heed_status runTensors(heed_kernel *k, heed_tensor t[4], heed_run_stats *stats) {
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &t[0], a.k = &t[1], a.v = &t[2], a.out = &t[3], a.stats = stats;
  return heed_attention(k, &a);
}

static void cudaChecks(heed_kernel *k, Problem *p, int window) {
  size_t nq = (size_t)B * HQ * S * D * 4, nkv = (size_t)B * HKV * S * D * 4;
  heed_tensor t[4];
  /* Every tensor of a call on one device: a clear argument error, either way. */
  onCuda(p, t, p->q, p->k, p->v, p->out);
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &t[0], a.k = &p->tk, a.v = &p->tv, a.out = &p->to;
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "same device") != NULL);
  CHECK(strstr(heed_last_error(), "CUDA device 0") != NULL);
  heed_tensor other = t[1];
  other.device_id = 1;
  a.k = &other, a.v = &t[2], a.out = &t[3];
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "CUDA device 1") != NULL);
  /* Shapes are checked before any launch (and without a driver). */
  int64_t wrongShape[4] = {B, HQ, S, 32};
  heed_tensor wq = t[0];
  wq.shape = wrongShape;
  a.q = &wq, a.k = &t[1];
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "head dim") != NULL);
  heed_tensor rocm = t[0];
  rocm.device_type = HEED_DEVICE_ROCM;
  a.q = &rocm;
  CHECK(heed_attention(k, &a) == HEED_ERROR_UNSUPPORTED);
  CHECK(strstr(heed_last_error(), "device type 10") != NULL);

  /* Kernels for CUDA only: "cuda" (chip of the first call) and "cuda:sm_90"
   * (compiled now: PTX, and a cubin where ptxas is). */
  heed_compile_options o;
  heed_compile_options_init(&o);
  o.params = "W=24", o.target = "cuda:sm_90";
  heed_kernel *sm90 = NULL, *lazy = NULL, *bad = NULL;
  CHECK(heed_compile(kSpec, "win.attn", &o, &sm90) == HEED_OK);
  CHECK(sm90 && strcmp(heed_kernel_target(sm90), "cuda:sm_90") == 0);
  CHECK(sm90 && heed_kernel_head_dim(sm90) == D && strcmp(heed_kernel_name(sm90), "win") == 0);
  if (sm90) {
    CHECK(run(sm90, p) == HEED_ERROR_UNSUPPORTED); /* CPU tensors */
    CHECK(strstr(heed_last_error(), "cuda:sm_90 only") != NULL);
  }
  o.target = "cuda";
  CHECK(heed_compile(kSpec, "win.attn", &o, &lazy) == HEED_OK);
  CHECK(lazy && strcmp(heed_kernel_target(lazy), "cuda") == 0);
  o.target = "cuda:sm_70";
  CHECK(heed_compile(kSpec, "win.attn", &o, &bad) == HEED_ERROR_UNSUPPORTED);
  CHECK(strstr(heed_last_error(), "sm_80") != NULL);
  o.target = "cuda:gfx942";
  CHECK(heed_compile(kSpec, "win.attn", &o, &bad) == HEED_ERROR_UNSUPPORTED);

  Cuda cu;
  if (!openCuda(&cu)) {
    /* No driver: unsupported, saying so, for every kind of kernel. */
    heed_kernel *kernels[3] = {k, sm90, lazy};
    for (int i = 0; i < 3; ++i) {
      if (!kernels[i]) continue;
      CHECK(runTensors(kernels[i], t, NULL) == HEED_ERROR_UNSUPPORTED);
      CHECK(strstr(heed_last_error(), "device type 2") != NULL);
      CHECK(strstr(heed_last_error(), "CUDA") != NULL);
      printf("no CUDA: %s\n", heed_last_error());
    }
  } else {
    unsigned long long dq = 0, dk = 0, dv = 0, dout = 0;
    CHECK(cu.alloc(&dq, nq) == 0 && cu.alloc(&dk, nkv) == 0 && cu.alloc(&dv, nkv) == 0 &&
          cu.alloc(&dout, nq) == 0);
    CHECK(cu.toDevice(dq, p->q, nq) == 0 && cu.toDevice(dk, p->k, nkv) == 0 &&
          cu.toDevice(dv, p->v, nkv) == 0);
    onCuda(p, t, (void *)dq, (void *)dk, (void *)dv, (void *)dout);
    heed_kernel *kernels[2] = {k, lazy};
    for (int i = 0; i < 2; ++i) {
      if (!kernels[i]) continue;
      for (size_t j = 0; j < nq / 4; ++j) p->out[j] = NAN;
      CHECK(cu.toDevice(dout, p->out, nq) == 0);
      heed_run_stats stats;
      CHECK(runTensors(kernels[i], t, &stats) == HEED_OK);
      CHECK(stats.visited_blocks == -1);
      CHECK(cu.toHost(p->out, dout, nq) == 0);
      double err = causalWindowError(p, window, heed_kernel_scale(kernels[i]));
      printf("CUDA (%s): max error %.3g\n", heed_kernel_target(kernels[i]), err);
      CHECK(err < 1e-4);
    }
    /* A second call finds the loaded module. */
    CHECK(runTensors(k, t, NULL) == HEED_OK);
    cu.release(dq), cu.release(dk), cu.release(dv), cu.release(dout);
  }
  heed_kernel_release(sm90);
  heed_kernel_release(lazy);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  uint64_t seed = (uint64_t)time(0) ^ (uint64_t)clock();
  printf("capi_test: seed %llu\n", (unsigned long long)seed);
  state = seed * 0x9E3779B97F4A7C15ull + 1;
  CHECK(heed_abi_version() == HEED_ABI_VERSION);
  CHECK(strlen(heed_version()) > 0);

  char cacheDir[512];
  snprintf(cacheDir, sizeof cacheDir, "%s/capi-cache", dir);
  CHECK(heed_cache_set_directory(cacheDir) == HEED_OK);
  CHECK(heed_cache_clear() == HEED_OK);

  /* Compile and run, with a param override, against the reference. */
  heed_compile_options o;
  heed_compile_options_init(&o);
  o.params = "W=24";
  heed_kernel *k = NULL;
  CHECK(heed_compile(kSpec, "win.attn", &o, &k) == HEED_OK);
  if (!k) return 1;
  CHECK(strcmp(heed_kernel_name(k), "win") == 0);
  CHECK(heed_kernel_head_dim(k) == 64 && heed_kernel_num_buffers(k) == 0);
  CHECK(heed_kernel_buffer_name(k, 0) == NULL);
  Problem p;
  makeProblem(&p);
  CHECK(run(k, &p) == HEED_OK);
  double err = causalWindowError(&p, 24, heed_kernel_scale(k));
  printf("compiled: max error %.3g\n", err);
  CHECK(err < 1e-4);

  /* The cache: a repeat compile is a memory hit and compiles nothing. */
  heed_cache_stats st, st2;
  heed_cache_stats_init(&st), heed_cache_stats_init(&st2);
  CHECK(heed_cache_get_stats(&st) == HEED_OK);
  heed_kernel *again = NULL;
  CHECK(heed_compile(kSpec, "win.attn", &o, &again) == HEED_OK);
  CHECK(heed_cache_get_stats(&st2) == HEED_OK);
  CHECK(st2.memory_hits == st.memory_hits + 1 && st2.compiles == st.compiles);
  CHECK(st2.disk_entries >= 1 && strcmp(st2.directory, cacheDir) == 0);
  heed_kernel_release(again);

  /* Export, then load the file: the same results bit for bit. */
  char path[600];
  snprintf(path, sizeof path, "%s/win.heedk", dir);
  CHECK(heed_export(kSpec, "win.attn", &o, path) == HEED_OK);
  heed_kernel *loaded = NULL;
  CHECK(heed_kernel_load_file(path, &loaded) == HEED_OK);
  if (loaded) {
    Problem p2 = p;
    size_t n = (size_t)B * HQ * S * D;
    p2.out = malloc(n * 4);
    for (size_t i = 0; i < n; ++i) p2.out[i] = NAN;
    p2.to.data = p2.out;
    CHECK(run(loaded, &p2) == HEED_OK);
    CHECK(memcmp(p.out, p2.out, n * 4) == 0);
    free(p2.out);
    heed_kernel_release(loaded);
  }

  /* A corrupted artifact: a load error that says what is wrong. */
  FILE *f = fopen(path, "rb");
  static char bytes[1 << 20];
  size_t size = f ? fread(bytes, 1, sizeof bytes, f) : 0;
  if (f) fclose(f);
  CHECK(size > 200);
  bytes[size / 2] ^= 0x40;
  heed_kernel *bad = (heed_kernel *)&bytes; /* must be reset to NULL */
  CHECK(heed_kernel_load(bytes, size, &bad) == HEED_ERROR_LOAD && bad == NULL);
  CHECK(strstr(heed_last_error(), "checksum") != NULL);
  CHECK(heed_kernel_load(bytes, 10, &bad) == HEED_ERROR_LOAD);
  CHECK(heed_kernel_load_file("/nonexistent/x.heedk", &bad) == HEED_ERROR_IO);

  /* Malformed specs: file:line:col and a caret. */
  CHECK(heed_compile("variant v {\n  mask = causal(\n}\n", "bad.attn", NULL, &bad) ==
        HEED_ERROR_SPEC);
  CHECK(strstr(heed_last_error(), "bad.attn:") != NULL);
  CHECK(strchr(heed_last_error(), '^') != NULL);
  CHECK(heed_compile("variant v { mask = no_such_mask() }", NULL, NULL, &bad) ==
        HEED_ERROR_SPEC);
  CHECK(strstr(heed_last_error(), "no_such_mask") != NULL);
  heed_compile_options o2;
  heed_compile_options_init(&o2);
  o2.variant = "other";
  CHECK(heed_compile(kSpec, NULL, &o2, &bad) == HEED_ERROR_SPEC);
  o2.variant = NULL, o2.params = "Q=3";
  CHECK(heed_compile(kSpec, NULL, &o2, &bad) != HEED_OK);
  CHECK(strstr(heed_last_error(), "Q") != NULL);

  /* Bad options and arguments: errors, never crashes. */
  heed_compile_options zeroed;
  memset(&zeroed, 0, sizeof zeroed);
  CHECK(heed_compile(kSpec, NULL, &zeroed, &bad) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "struct_size") != NULL);
  o2.params = NULL, o2.head_dim = -3;
  CHECK(heed_compile(kSpec, NULL, &o2, &bad) == HEED_ERROR_INVALID_ARGUMENT);
  o2.head_dim = 64, o2.dtype = 42;
  CHECK(heed_compile(kSpec, NULL, &o2, &bad) == HEED_ERROR_INVALID_ARGUMENT);
  o2.dtype = HEED_F32, o2.target = "sm_90a";
  CHECK(heed_compile(kSpec, NULL, &o2, &bad) == HEED_ERROR_UNSUPPORTED);
  CHECK(heed_compile(NULL, NULL, NULL, &bad) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(heed_attention(NULL, NULL) == HEED_ERROR_INVALID_ARGUMENT);
  heed_attention_args a;
  memset(&a, 0, sizeof a);
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT); /* struct_size unset */
  heed_attention_args_init(&a);
  a.q = &p.tq, a.k = &p.tk, a.v = &p.tv; /* out missing */
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "out") != NULL);
  int64_t wrongShape[4] = {B, HQ, S, 32};
  heed_tensor wq = p.tq;
  wq.shape = wrongShape;
  a.out = &p.to, a.q = &wq;
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "head dim") != NULL);
  a.q = &p.tq;
  heed_tensor extra = p.tq;
  a.buffers = &extra, a.num_buffers = 1;
  CHECK(heed_attention(k, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "buffer") != NULL);

  /* CUDA tensors; then the CPU path works as before. */
  cudaChecks(k, &p, 24);
  for (size_t i = 0; i < (size_t)B * HQ * S * D; ++i) p.out[i] = NAN;
  CHECK(run(k, &p) == HEED_OK);
  CHECK(causalWindowError(&p, 24, heed_kernel_scale(k)) < 1e-4);

  /* A buffer read out of range is a run error naming the buffer. */
  heed_kernel *table = NULL;
  CHECK(heed_compile("variant t { buffer bias: f32[H, 4]\n score = score + bias[h, kv] }",
                     "t.attn", NULL, &table) == HEED_OK);
  if (table) {
    float bias[HQ * 4];
    for (int i = 0; i < HQ * 4; ++i) bias[i] = (float)uniform();
    int64_t bs[2] = {HQ, 4};
    heed_tensor tb = {bias, HEED_DEVICE_CPU, 0, HEED_F32, 2, bs, 0};
    heed_attention_args_init(&a);
    a.q = &p.tq, a.k = &p.tk, a.v = &p.tv, a.out = &p.to, a.buffers = &tb, a.num_buffers = 1;
    CHECK(heed_attention(table, &a) == HEED_ERROR_RUN);
    CHECK(strstr(heed_last_error(), "bias") != NULL);
    heed_kernel_release(table);
  }

  CHECK(heed_cache_clear() == HEED_OK);
  CHECK(heed_cache_get_stats(&st) == HEED_OK && st.disk_entries == 0);
  heed_kernel_release(k);
  heed_kernel_release(NULL);
  free(p.q), free(p.k), free(p.v), free(p.out);
  if (failures) {
    fprintf(stderr, "capi_test: %d check(s) FAILED (seed %llu)\n", failures,
            (unsigned long long)seed);
    return 1;
  }
  printf("capi_test: PASSED\n");
  return 0;
}
