/* heed_attention on ROCm tensors against a stand-in HIP runtime (fake_hip.c,
 * found through LD_LIBRARY_PATH): the chip (the device's gcnArchName, gfx942
 * on the stand-in, unless the target names one), a module compiled and loaded once per (variant, options, chip) and
 * shared by kernel handles, the launch shape of the MFMA and SIMT kernels,
 * the caller's stream and pointers in hipModuleLaunchKernel and every other
 * call of a launch, nothing allocated or waited for after the first launch on
 * a stream, HIP's errors, heed_cache_clear dropping the table, and the
 * backward's two MFMA kernels. Nothing runs on a GPU: no AMD GPU
 * exists where heed is developed. */
#include "heed/heed.h"

#include "capi_check.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char kind;
  void *stream;
  int device;
} FakeHipCall;

typedef struct {
  int loads, launches, lastMachine, lastMach;
  unsigned grid[3], block;
  void *stream;
  int64_t q;
  int allocs, syncs, blockingCopies;
  int calls;
  FakeHipCall call[256];
  unsigned prevGrid[3];
} FakeHipLog;

enum { B = 2, H = 3, S = 200, D = 64, EM_AMDGPU = 224, GFX90A = 0x3f, GFX942 = 0x4c };

int main(void) {
  void *lib = dlopen("libamdhip64.so", RTLD_NOW | RTLD_LOCAL);
  const FakeHipLog *(*logOf)(void) =
      lib ? (const FakeHipLog *(*)(void))dlsym(lib, "fake_hip_log") : NULL;
  if (!logOf) {
    fprintf(stderr, "capi_rocm_wiring_test: the stand-in libamdhip64.so is not first on "
                    "LD_LIBRARY_PATH (run it through ctest)\n");
    return 1;
  }
  const FakeHipLog *log = logOf();
  void (*clearCalls)(void) = NULL, (*place)(const void *, size_t, int) = NULL;
  *(void **)&clearCalls = dlsym(lib, "fake_hip_clear_calls");
  *(void **)&place = dlsym(lib, "fake_hip_place");
  const char *spec = "variant win { param W: i64 = 16\n mask = sliding_window(W) }";
  static unsigned short q[B * H * S * D], out[B * H * S * D];
  static float q32[B * H * S * D], out32[B * H * S * D];
  place(q, sizeof q, 0), place(out, sizeof out, 0);
  place(q32, sizeof q32, 0), place(out32, sizeof out32, 0);
  int64_t shape[4] = {B, H, S, D};
  heed_tensor t[4], t32[4];
  for (int i = 0; i < 4; ++i) {
    heed_tensor x = {i == 3 ? out : q, HEED_DEVICE_ROCM, 0, HEED_F16, 4, shape, NULL};
    t[i] = x;
    heed_tensor y = {i == 3 ? out32 : q32, HEED_DEVICE_ROCM, 0, HEED_F32, 4, shape, NULL};
    t32[i] = y;
  }
  heed_compile_options o;
  heed_compile_options_init(&o);
  o.dtype = HEED_F16;
  heed_kernel *k = NULL, *k2 = NULL, *k3 = NULL, *own = NULL, *gfx942 = NULL, *gfx90a = NULL,
              *simt = NULL, *cudaOnly = NULL;
  CHECK(heed_compile(spec, "win.attn", &o, &k) == HEED_OK);
  if (!k) return 1;

  /* First call: compiled for gfx942 (no chip given), an AMDGPU code object
   * loaded, launched on the caller's stream with the caller's pointer. The
   * f16 kernel is the MFMA one: 4 waves of 64 (256 threads) own 4 x 32 rows. */
  clearCalls();
  CHECK(runOn(k, t, (void *)0x1234) == HEED_OK);
  CHECK(log->loads == 1 && log->launches == 1);
  int onStream = log->calls > 0;
  for (int i = 0; i < log->calls; ++i)
    onStream = onStream && log->call[i].stream == (void *)0x1234 && log->call[i].device == 0;
  CHECK(onStream);
  CHECK(log->syncs == 0 && log->blockingCopies == 0);
  /* The steady state: nothing allocated or waited for. */
  int allocs = log->allocs;
  for (int i = 0; i < 3; ++i)
    CHECK(runOn(k, t, (void *)0x1234) == HEED_OK);
  CHECK(log->allocs == allocs && log->syncs == 0 && log->blockingCopies == 0);
  CHECK(log->lastMachine == EM_AMDGPU && log->lastMach == GFX942);
  CHECK(log->stream == (void *)0x1234);
  CHECK(log->q == (int64_t)(intptr_t)q);
  CHECK(log->grid[0] == (S + 127) / 128 && log->grid[1] == H && log->grid[2] == B);
  CHECK(log->block == 256);
  /* Again, and from a second handle of the same variant and options: no new load. */
  CHECK(runOn(k, t, NULL) == HEED_OK);
  CHECK(log->stream == NULL);
  CHECK(heed_compile(spec, "win.attn", &o, &k2) == HEED_OK);
  CHECK(k2 && runOn(k2, t, NULL) == HEED_OK);
  CHECK(log->loads == 1 && log->launches == 6);
  heed_run_stats stats;
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &t[0], a.k = &t[1], a.v = &t[2], a.out = &t[3], a.stats = &stats;
  CHECK(heed_attention(k, &a) == HEED_OK && stats.visited_blocks == -1);
  /* Other options: another module. */
  o.params = "W=32";
  CHECK(heed_compile(spec, "win.attn", &o, &k3) == HEED_OK);
  CHECK(k3 && runOn(k3, t, NULL) == HEED_OK && log->loads == 2);
  o.params = NULL;
  /* use_cache = 0: the handle keeps its own module. */
  o.use_cache = 0;
  CHECK(heed_compile(spec, "win.attn", &o, &own) == HEED_OK);
  CHECK(own && runOn(own, t, NULL) == HEED_OK && log->loads == 3);
  o.use_cache = 1;
  /* "rocm:gfx942" is the key of the default chip: compiled now, the loaded module shared. */
  o.target = "rocm:gfx942";
  CHECK(heed_compile(spec, "win.attn", &o, &gfx942) == HEED_OK);
  CHECK(gfx942 && strcmp(heed_kernel_target(gfx942), "rocm:gfx942") == 0);
  CHECK(gfx942 && runOn(gfx942, t, NULL) == HEED_OK && log->loads == 3);
  /* Another chip: its own module. */
  o.target = "rocm:gfx90a";
  CHECK(heed_compile(spec, "win.attn", &o, &gfx90a) == HEED_OK);
  CHECK(gfx90a && runOn(gfx90a, t, NULL) == HEED_OK && log->loads == 4);
  CHECK(log->lastMach == GFX90A && log->block == 256);
  /* f32 runs the SIMT kernel: 128 threads, a row each. */
  o.target = "rocm";
  o.dtype = HEED_F32;
  CHECK(heed_compile(spec, "win.attn", &o, &simt) == HEED_OK);
  CHECK(simt && strcmp(heed_kernel_target(simt), "rocm") == 0);
  CHECK(simt && runOn(simt, t32, NULL) == HEED_OK && log->loads == 5);
  CHECK(log->lastMach == GFX942 && log->block == 128 && log->grid[0] == (S + 127) / 128);
  CHECK(log->q == (int64_t)(intptr_t)q32);
  o.dtype = HEED_F16;
  /* heed_cache_clear drops the table: a new handle loads again; the old keeps its module. */
  CHECK(heed_cache_clear() == HEED_OK);
  heed_kernel_release(k2);
  k2 = NULL;
  o.target = NULL;
  CHECK(heed_compile(spec, "win.attn", &o, &k2) == HEED_OK);
  CHECK(k2 && runOn(k2, t, NULL) == HEED_OK && log->loads == 6);
  CHECK(runOn(k, t, NULL) == HEED_OK && log->loads == 6);

  /* HIP's errors come back with its message. */
  setenv("FAKE_HIP_LAUNCH_ERROR", "1", 1);
  CHECK(runOn(k, t, NULL) == HEED_ERROR_RUN);
  CHECK(strstr(heed_last_error(), "hipModuleLaunchKernel failed: fake HIP error") != NULL);
  unsetenv("FAKE_HIP_LAUNCH_ERROR");
  /* Tensors labelled device 1 whose memory HIP places on device 0; host memory. */
  heed_tensor t1[4];
  memcpy(t1, t, sizeof t1);
  for (int i = 0; i < 4; ++i) t1[i].device_id = 1;
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "labelled ROCm device 1") != NULL);
  static unsigned short hostMemory[B * H * S * D], hostOut[B * H * S * D];
  for (int i = 0; i < 4; ++i) /* out apart from q: outputs may not alias inputs */
    t1[i].device_id = 0, t1[i].data = i == 3 ? hostOut : hostMemory;
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "not memory of a ROCm device") != NULL);
  /* Mixed platforms: an argument error naming both devices. */
  memcpy(t1, t, sizeof t1);
  t1[2].device_type = HEED_DEVICE_CUDA;
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "ROCm device 0") != NULL);
  CHECK(strstr(heed_last_error(), "CUDA device 0") != NULL);
  /* A kernel for one platform refuses the other's tensors and the CPU's. */
  o.target = "cuda";
  CHECK(heed_compile(spec, "win.attn", &o, &cudaOnly) == HEED_OK);
  CHECK(cudaOnly && runOn(cudaOnly, t, NULL) == HEED_ERROR_UNSUPPORTED);
  CHECK(strstr(heed_last_error(), "cuda only") != NULL);
  CHECK(strstr(heed_last_error(), "ROCm device 0") != NULL);
  for (int i = 0; i < 4; ++i) t1[i] = t[i], t1[i].device_type = HEED_DEVICE_CUDA;
  CHECK(gfx90a && runOn(gfx90a, t1, NULL) == HEED_ERROR_UNSUPPORTED);
  CHECK(strstr(heed_last_error(), "rocm:gfx90a only") != NULL);
  for (int i = 0; i < 4; ++i) t1[i].device_type = HEED_DEVICE_CPU;
  CHECK(gfx90a && runOn(gfx90a, t1, NULL) == HEED_ERROR_UNSUPPORTED);
  CHECK(strstr(heed_last_error(), "ROCm tensors (device type 10)") != NULL);
  CHECK(log->launches == 14);

  heed_kernel *kernels[] = {k, k2, k3, own, gfx942, gfx90a, simt, cudaOnly};
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; ++i)
    heed_kernel_release(kernels[i]);
  /* Split-KV on AMD: the device's compute units (hipDeviceAttributeMultiprocessorCount:
   * 304 on the stand-in) times the kernel's occupancy (2) against a decode call of
   * B x H = 6 blocks over 4096 keys: two launches, the merge last on the grid. */
  {
    enum { SKV = 4096 };
    static unsigned short qd[B * H * D], od[B * H * D];
    unsigned short *kd = (unsigned short *)calloc((size_t)B * H * SKV * D, 2);
    unsigned short *vd = (unsigned short *)calloc((size_t)B * H * SKV * D, 2);
    CHECK(kd && vd);
    place(qd, sizeof qd, 0), place(od, sizeof od, 0);
    place(kd, (size_t)B * H * SKV * D * 2, 0), place(vd, (size_t)B * H * SKV * D * 2, 0);
    int64_t qShape[4] = {B, H, 1, D}, kvShape[4] = {B, H, SKV, D};
    heed_tensor dt[4] = {{qd, HEED_DEVICE_ROCM, 0, HEED_F16, 4, qShape, NULL},
                         {kd, HEED_DEVICE_ROCM, 0, HEED_F16, 4, kvShape, NULL},
                         {vd, HEED_DEVICE_ROCM, 0, HEED_F16, 4, kvShape, NULL},
                         {od, HEED_DEVICE_ROCM, 0, HEED_F16, 4, qShape, NULL}};
    heed_kernel *dec = NULL;
    o.target = NULL;
    o.dtype = HEED_F16;
    CHECK(heed_compile("variant dec { mask = causal_bottom_right() }", "dec.attn", &o, &dec) ==
          HEED_OK);
    int launches0 = log->launches;
    CHECK(dec && runOn(dec, dt, NULL) == HEED_OK);
    CHECK(log->launches == launches0 + 2 && log->grid[0] == 1 && log->grid[1] == H &&
          log->grid[2] == B);
    heed_kernel_release(dec);
    free(kd), free(vd);
  }
  /* The device's chip from its properties (gcnArchName, target features
   * dropped): a device that says gfx90a gets gfx90a's code object. */
  {
    setenv("FAKE_HIP_ARCH", "gfx90a:sramecc+:xnack-", 1);
    heed_kernel *mi200 = NULL;
    o.target = NULL;
    o.dtype = HEED_F16;
    CHECK(heed_compile("variant mi200 { mask = causal() }", "mi200.attn", &o, &mi200) == HEED_OK);
    CHECK(mi200 && runOn(mi200, t, NULL) == HEED_OK);
    CHECK(log->lastMach == GFX90A);
    heed_kernel_release(mi200);
    unsetenv("FAKE_HIP_ARCH");
  }

  /* The backward on ROCm tensors: the MFMA dQ and dK/dV kernels compiled for
   * the device's chip at the first call (4 waves of 64 lanes, blocks of 128
   * query rows, then of 128 keys), both queued on the caller's stream after
   * the buffer gradients are zeroed there; the scratch delta made once per
   * stream; tensors of two devices refused. */
  {
    static unsigned short bq[B * H * S * D], bk[B * H * S * D], bv[B * H * S * D],
        bo[B * H * S * D], dout[B * H * S * D], dq[B * H * S * D], dk[B * H * S * D],
        dv[B * H * S * D];
    static float lse[B * H * S], slopes[H], dslopes[H];
    unsigned short *all[] = {bq, bk, bv, bo, dout, dq, dk, dv};
    for (int i = 0; i < 8; ++i) place(all[i], sizeof bq, 0);
    place(lse, sizeof lse, 0), place(slopes, sizeof slopes, 0), place(dslopes, sizeof dslopes, 0);
    int64_t lseShape[3] = {B, H, S}, slopeShape[1] = {H};
    heed_tensor bt[8];
    for (int i = 0; i < 8; ++i) {
      heed_tensor x = {all[i], HEED_DEVICE_ROCM, 0, HEED_F16, 4, shape, NULL};
      bt[i] = x;
    }
    heed_tensor lt = {lse, HEED_DEVICE_ROCM, 0, HEED_F32, 3, lseShape, NULL};
    heed_tensor slopeT = {slopes, HEED_DEVICE_ROCM, 0, HEED_F32, 1, slopeShape, NULL};
    heed_tensor dslopeT = {dslopes, HEED_DEVICE_ROCM, 0, HEED_F32, 1, slopeShape, NULL};
    heed_backward *bw = NULL;
    o.target = NULL;
    o.dtype = HEED_F16;
    CHECK(heed_backward_compile("variant alibi { buffer slopes: f32[H]\n"
                                " score = score - slopes[h] * f32(q - kv)\n mask = causal() }",
                                "alibi.attn", &o, &bw) == HEED_OK);
    CHECK(bw && heed_backward_num_buffer_grads(bw) == 1);
    heed_backward_args ba;
    heed_backward_args_init(&ba);
    ba.q = &bt[0], ba.k = &bt[1], ba.v = &bt[2], ba.out = &bt[3], ba.lse = &lt;
    ba.dout = &bt[4], ba.dq = &bt[5], ba.dk = &bt[6], ba.dv = &bt[7];
    ba.buffers = &slopeT, ba.num_buffers = 1, ba.buffer_grads = &dslopeT, ba.num_buffer_grads = 1;
    ba.stream = (void *)0x5678;
    heed_run_stats bstats = {0, 0, 0, 0};
    ba.stats = &bstats;
    int loads0 = log->loads, launches0 = log->launches;
    clearCalls();
    CHECK(bw && heed_attention_backward(bw, &ba) == HEED_OK);
    /* dQ, dK/dV, then the dK/dV kernel finalizing the slopes' gradient
     * (its fixed-point accumulators: docs/backward.md). */
    if (log->launches != launches0 + 3 || log->loads != loads0 + 2)
      fprintf(stderr, "backward: %d launches, %d loads (expected 3 and 2); %s\n",
              log->launches - launches0, log->loads - loads0, heed_last_error());
    CHECK(log->launches == launches0 + 3 && log->loads == loads0 + 2);
    int onStream = log->calls > 0;
    for (int i = 0; i < log->calls; ++i)
      onStream = onStream && log->call[i].stream == (void *)0x5678 && log->call[i].device == 0;
    CHECK(onStream && log->syncs == 0);
    /* The dK/dV kernel's launch: blocks of 128 keys, 256 threads; then its
     * finalizing one: one thread per gradient element (H). */
    CHECK(log->lastMach == GFX942 && log->block == 256);
    CHECK(log->prevGrid[0] == (S + 127) / 128 && log->prevGrid[1] == H && log->prevGrid[2] == B);
    CHECK(log->grid[0] == (H + 255) / 256 && log->grid[1] == 1 && log->grid[2] == 1);
    CHECK(bstats.visited_blocks == -1);
    int allocs0 = log->allocs;
    CHECK(heed_attention_backward(bw, &ba) == HEED_OK);
    CHECK(log->loads == loads0 + 2 && log->launches == launches0 + 6 && log->allocs == allocs0);
    heed_tensor other = bt[5];
    other.device_id = 1;
    ba.dq = &other;
    CHECK(heed_attention_backward(bw, &ba) == HEED_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(heed_last_error(), "every tensor of the backward must be on one device") != NULL);
    heed_backward_release(bw);
  }
  if (failures) {
    fprintf(stderr, "capi_rocm_wiring_test: %d check(s) FAILED\n", failures);
    return 1;
  }
  printf("capi_rocm_wiring_test: PASSED (%d loads, %d launches)\n", log->loads, log->launches);
  return 0;
}
