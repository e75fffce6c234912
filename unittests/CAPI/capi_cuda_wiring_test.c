/* heed_attention on CUDA tensors against a stand-in driver (fake_cuda.c, found
 * through LD_LIBRARY_PATH): the chip comes from the device's compute
 * capability, a module is compiled and loaded once per (variant, options, chip)
 * and shared by kernel handles, the launch goes to the caller's stream with
 * the caller's pointers, and heed_cache_clear drops the table. Nothing runs on
 * a GPU: numerics are capi_test's (where there is one). */
#include "heed/heed.h"

#include "capi_check.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int loads, launches, lastChip;
  unsigned grid[3], block;
  void *stream;
  int64_t q;
} FakeCudaLog;

enum { B = 2, H = 3, S = 200, D = 64 };

int main(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  const FakeCudaLog *(*logOf)(void) =
      lib ? (const FakeCudaLog *(*)(void))dlsym(lib, "fake_cuda_log") : NULL;
  if (!logOf) {
    fprintf(stderr, "capi_cuda_wiring_test: the stand-in libcuda.so.1 is not first on "
                    "LD_LIBRARY_PATH (run it through ctest)\n");
    return 1;
  }
  const FakeCudaLog *log = logOf();
  const char *spec = "variant win { param W: i64 = 16\n mask = sliding_window(W) }";
  static unsigned short q[B * H * S * D], out[B * H * S * D];
  int64_t shape[4] = {B, H, S, D};
  heed_tensor t[4];
  for (int i = 0; i < 4; ++i) {
    heed_tensor x = {i == 3 ? out : q, HEED_DEVICE_CUDA, 0, HEED_F16, 4, shape, NULL};
    t[i] = x;
  }
  heed_compile_options o;
  heed_compile_options_init(&o);
  o.dtype = HEED_F16;
  heed_kernel *k = NULL, *k2 = NULL, *fixed = NULL, *own = NULL;
  CHECK(heed_compile(spec, "win.attn", &o, &k) == HEED_OK);
  if (!k) return 1;

  /* First call: compiled for sm_90 (the stand-in's 9.0), loaded, launched on
   * the caller's stream with the caller's pointer. */
  CHECK(runOn(k, t, (void *)0x1234) == HEED_OK);
  CHECK(log->loads == 1 && log->launches == 1);
  CHECK(log->lastChip == 90);
  CHECK(log->stream == (void *)0x1234);
  CHECK(log->q == (int64_t)(intptr_t)q);
  CHECK(log->grid[1] == H && log->grid[2] == B && log->grid[0] >= 1 && log->block > 0);
  /* Again, and from a second handle of the same variant and options: no new load. */
  CHECK(runOn(k, t, NULL) == HEED_OK);
  CHECK(log->stream == NULL);
  CHECK(heed_compile(spec, "win.attn", &o, &k2) == HEED_OK);
  CHECK(k2 && runOn(k2, t, NULL) == HEED_OK);
  CHECK(log->loads == 1 && log->launches == 3);
  heed_run_stats stats;
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &t[0], a.k = &t[1], a.v = &t[2], a.out = &t[3], a.stats = &stats;
  CHECK(heed_attention(k, &a) == HEED_OK && stats.visited_blocks == -1);
  /* Other options: another module. */
  o.params = "W=32";
  heed_kernel *k3 = NULL;
  CHECK(heed_compile(spec, "win.attn", &o, &k3) == HEED_OK);
  CHECK(k3 && runOn(k3, t, NULL) == HEED_OK && log->loads == 2);
  heed_kernel_release(k3);
  o.params = NULL;
  /* use_cache = 0: the handle keeps its own module. */
  o.use_cache = 0;
  CHECK(heed_compile(spec, "win.attn", &o, &own) == HEED_OK);
  CHECK(own && runOn(own, t, NULL) == HEED_OK && log->loads == 3);
  o.use_cache = 1;
  /* A chip given at compile time wins over the device's. */
  o.target = "cuda:sm_80";
  CHECK(heed_compile(spec, "win.attn", &o, &fixed) == HEED_OK);
  CHECK(fixed && runOn(fixed, t, NULL) == HEED_OK && log->loads == 4 && log->lastChip == 80);
  /* heed_cache_clear drops the table: a new handle loads again; the old keeps its module. */
  CHECK(heed_cache_clear() == HEED_OK);
  heed_kernel_release(k2);
  k2 = NULL;
  o.target = NULL;
  CHECK(heed_compile(spec, "win.attn", &o, &k2) == HEED_OK);
  CHECK(k2 && runOn(k2, t, NULL) == HEED_OK && log->loads == 5);
  CHECK(runOn(k, t, NULL) == HEED_OK && log->loads == 5);
  /* CUDA device 1 is not supported yet; the CPU path is untouched. */
  heed_tensor t1[4];
  memcpy(t1, t, sizeof t1);
  for (int i = 0; i < 4; ++i) t1[i].device_id = 1;
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_UNSUPPORTED);
  CHECK(strstr(heed_last_error(), "device 0 only") != NULL);

  heed_kernel_release(k);
  heed_kernel_release(k2);
  heed_kernel_release(own);
  heed_kernel_release(fixed);
  if (failures) {
    fprintf(stderr, "capi_cuda_wiring_test: %d check(s) FAILED\n", failures);
    return 1;
  }
  printf("capi_cuda_wiring_test: PASSED (%d loads, %d launches)\n", log->loads, log->launches);
  return 0;
}
