/* The wgmma kernel's tensor maps against the stand-in driver (fake_cuda.c):
 * an AOT artifact of the Hopper kernel (heed-compile --aot --target=sm_90a
 * --gpu-kernel=wgmma, argv[1]) launched through the C API builds one
 * cuTensorMapEncodeTiled map per q, k and v -- bf16, rank 4, the tensor's dims
 * innermost first with byte strides, boxes of 64 columns (128 bytes, 128B
 * swizzle) by the kernel's rows, zeros out of bounds -- and passes each by
 * value after heed's other parameters; a BSHD tensor puts the box rows on its
 * sequence dim. The kernel is the warp-specialized one: blocks of 384 threads
 * (two consumer warpgroups of 64 query rows, each loading its own 64 rows:
 * 64 rows per Q box, and a producer warpgroup). Nothing runs: numerics are
 * the GPU session's. */
#include "heed/heed.h"

#include "capi_check.h"
#include "fake_tensor_maps.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { B = 2, H = 3, S = 200, D = 128 };
/* heed's parameters before the maps: q, k, v, out (4-D memref descriptors of
 * 11 words), the status and the stats (1-D, 5 words), the work range (2),
 * split-KV's phase, count and keys per part (3) and workspace (two 5-D
 * descriptors of 13). */
enum { kMapParam = 4 * 11 + 2 * 5 + 2 + 3 + 2 * 13 };

static unsigned short q[B * H * S * D], kk[B * H * S * D], v[B * H * S * D], out[B * H * S * D];

/* Map `i` describes `data` of a [B, H, S, D] (or, bshd, [B, S, H, D]) bf16
 * tensor, `rows` sequence rows per box. */
static int describes(const FakeTensorMap *m, const void *data, int bshd, unsigned rows) {
  uint64_t s1 = bshd ? H : S, s2 = bshd ? S : H;
  uint64_t row = D * 2;
  return m->type == 9 && m->rank == 4 && m->address == data && m->dims[0] == D &&
         m->dims[1] == s1 && m->dims[2] == s2 && m->dims[3] == B && m->strides[0] == row &&
         m->strides[1] == row * s1 && m->strides[2] == row * s1 * s2 && m->box[0] == 64 &&
         m->box[bshd ? 2 : 1] == rows && m->box[bshd ? 1 : 2] == 1 && m->box[3] == 1 &&
         m->elementStrides[0] == 1 && m->elementStrides[3] == 1 && m->interleave == 0 &&
         m->swizzle == 3 && m->oobFill == 0;
}

static void tensors(heed_tensor t[4], int64_t *shape) {
  void *data[4] = {q, kk, v, out};
  for (int i = 0; i < 4; ++i) {
    heed_tensor x = {data[i], HEED_DEVICE_CUDA, 0, HEED_BF16, 4, shape, NULL};
    t[i] = x;
  }
}

int main(int argc, char **argv) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  const FakeTensorMapLog *(*mapsOf)(void) =
      lib ? (const FakeTensorMapLog *(*)(void))dlsym(lib, "fake_cuda_tensor_maps") : NULL;
  if (!mapsOf || argc < 3) {
    fprintf(stderr, "capi_cuda_tma_test: needs the stand-in libcuda.so.1 first on "
                    "LD_LIBRARY_PATH and the two artifacts (run it through ctest)\n");
    return 1;
  }
  void (*place)(const void *, size_t, int);
  void (*expectMaps)(int);
  *(void **)&place = dlsym(lib, "fake_cuda_place");
  *(void **)&expectMaps = dlsym(lib, "fake_cuda_expect_map_params");
  const FakeTensorMapLog *log = mapsOf();
  place(q, sizeof q, 0), place(kk, sizeof kk, 0), place(v, sizeof v, 0);
  place(out, sizeof out, 0);
  expectMaps(kMapParam);

  for (int bshd = 0; bshd < 2; ++bshd) {
    heed_kernel *k = NULL;
    CHECK(heed_kernel_load_file(argv[1 + bshd], &k) == HEED_OK);
    if (!k)
      return 1;
    int64_t shape[4] = {B, bshd ? S : H, bshd ? H : S, D};
    heed_tensor t[4];
    tensors(t, shape);
    CHECK(runOn(k, t, NULL) == HEED_OK);
    CHECK(log->maps == 3);
    CHECK(log->passed == 3);
    CHECK(log->sharedBytes > 48 * 1024);
    CHECK(log->block == 384);
    if (log->maps == 3) {
      unsigned kvRows = log->map[1].box[bshd ? 2 : 1];
      CHECK(describes(&log->map[0], q, bshd, 64));
      CHECK(kvRows >= 16 && kvRows % 16 == 0);
      CHECK(describes(&log->map[1], kk, bshd, kvRows));
      CHECK(describes(&log->map[2], v, bshd, kvRows));
    }
    /* A row stride the TMA cannot take (not a multiple of 16 bytes): a clear
     * error, no launch. */
    int64_t strides[4] = {shape[1] * shape[2] * (D + 1), shape[2] * (D + 1), D + 1, 1};
    t[1].strides = strides;
    CHECK(runOn(k, t, NULL) != HEED_OK);
    CHECK(strstr(heed_last_error(), "16 bytes") != NULL);
    heed_kernel_release(k);
  }
  /* The kernel asked for through the C API (heed_compile_options.gpu_kernel):
   * "wgmma" is the warp-specialized kernel (384 threads, a Q box per
   * consumer warpgroup's 64 rows), "wgmma-pipelined" its first form (one
   * warpgroup: 128 threads, 64 rows). */
  {
    static const char spec[] = "variant causal { mask = causal() }";
    heed_compile_options o;
    heed_compile_options_init(&o);
    o.dtype = HEED_BF16;
    o.head_dim = D;
    o.target = "cuda:sm_90";
    const char *kinds[2] = {"wgmma", "wgmma-pipelined"};
    unsigned threads[2] = {384, 128}, qRows[2] = {64, 64};
    for (int i = 0; i < 2; ++i) {
      o.gpu_kernel = kinds[i];
      heed_kernel *k = NULL;
      CHECK(heed_compile(spec, "causal.attn", &o, &k) == HEED_OK);
      if (!k) {
        fprintf(stderr, "%s: %s\n", kinds[i], heed_last_error());
        continue;
      }
      int64_t shape[4] = {B, H, S, D};
      heed_tensor t[4];
      tensors(t, shape);
      CHECK(runOn(k, t, NULL) == HEED_OK);
      CHECK(log->maps == 3 && log->passed == 3);
      CHECK(log->block == threads[i]);
      CHECK(log->maps == 3 && describes(&log->map[0], q, 0, qRows[i]));
      heed_kernel_release(k);
    }
    /* A kind heed does not have, and heed_export (CPU artifacts) given one. */
    o.gpu_kernel = "wgmma-fast";
    heed_kernel *bad = NULL;
    CHECK(heed_compile(spec, "causal.attn", &o, &bad) == HEED_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(heed_last_error(), "options.gpu_kernel: unknown --gpu-kernel=wgmma-fast") != NULL);
    o.gpu_kernel = "wgmma";
    o.target = NULL;
    CHECK(heed_export(spec, "causal.attn", &o, "/nonexistent/x.heedk") == HEED_ERROR_UNSUPPORTED);
    CHECK(strstr(heed_last_error(), "options.gpu_kernel is for heed_compile") != NULL);
  }
  if (failures)
    fprintf(stderr, "capi_cuda_tma_test: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
