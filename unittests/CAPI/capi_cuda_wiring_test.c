/* heed_attention on CUDA tensors against a stand-in driver (fake_cuda.c, found
 * through LD_LIBRARY_PATH): the chip comes from the device's compute
 * capability, a module is compiled and loaded once per (variant, options, chip,
 * device) and shared by kernel handles; every call of a launch goes to the
 * caller's stream in the context of the tensors' device (told by the driver
 * from q's pointer), nothing is allocated or waited for after the first launch
 * on a stream, a kernel's own error comes back at the next launch on that
 * stream or from heed_synchronize (at once with HEED_GPU_SYNC=1), and
 * heed_cache_clear drops the table. Kernels loaded from artifacts with CUDA
 * entries take the entry for the device's chip. Nothing runs on a GPU:
 * numerics are capi_test's and the GPU session's (bench/gpu-session). */
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
} FakeCudaCall;

typedef struct {
  int loads, launches, lastChip, lastPTX;
  unsigned grid[3], block;
  void *stream;
  int64_t q;
  int launchDevice;
  int allocs, hostAllocs, events, hostFrees, syncs, blockingCopies;
  int calls;
  FakeCudaCall call[256];
  unsigned prevGrid[3];
} FakeCudaLog;

enum { B = 2, H = 3, S = 200, D = 64 };

static const FakeCudaLog *log_;
static void (*clearCalls)(void);
static void (*place)(const void *, size_t, int);
static void (*failNextLaunch)(int);
static void (*holdEvents)(int);
static void (*keepParams)(int);
static const int64_t *(*keptParams)(void);
static void (*keepParams2)(int);
static const int64_t *(*keptParamsSecond)(void);

/* Every stream-ordered call since the last clear was on `stream` in device
 * `device`'s context, and there were some. */
static int allOn(void *stream, int device) {
  if (log_->calls == 0) return 0;
  for (int i = 0; i < log_->calls; ++i)
    if (log_->call[i].stream != stream || log_->call[i].device != device) {
      fprintf(stderr, "call %d ('%c') on stream %p device %d, expected %p device %d\n", i,
              log_->call[i].kind, log_->call[i].stream, log_->call[i].device, stream, device);
      return 0;
    }
  return 1;
}

/* q, k, v, out and the buffers on `stream`. */
static heed_status runWith(heed_kernel *k, heed_tensor t[4], const heed_tensor *buffers,
                           int n, void *stream) {
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &t[0], a.k = &t[1], a.v = &t[2], a.out = &t[3], a.stream = stream;
  a.buffers = buffers, a.num_buffers = n;
  return heed_attention(k, &a);
}

int main(int argc, char **argv) {
  /* Two devices; heed reads the count when it first loads the driver. */
  setenv("FAKE_CUDA_DEVICES", "2", 1);
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  const FakeCudaLog *(*logOf)(void) =
      lib ? (const FakeCudaLog *(*)(void))dlsym(lib, "fake_cuda_log") : NULL;
  if (!logOf) {
    fprintf(stderr, "capi_cuda_wiring_test: the stand-in libcuda.so.1 is not first on "
                    "LD_LIBRARY_PATH (run it through ctest)\n");
    return 1;
  }
  *(void **)&clearCalls = dlsym(lib, "fake_cuda_clear_calls");
  *(void **)&place = dlsym(lib, "fake_cuda_place");
  *(void **)&failNextLaunch = dlsym(lib, "fake_cuda_fail_next_launch");
  *(void **)&holdEvents = dlsym(lib, "fake_cuda_hold_events");
  *(void **)&keepParams = dlsym(lib, "fake_cuda_keep_params");
  *(void **)&keptParams = dlsym(lib, "fake_cuda_params");
  *(void **)&keepParams2 = dlsym(lib, "fake_cuda_keep_params2");
  *(void **)&keptParamsSecond = dlsym(lib, "fake_cuda_params_second");
  const FakeCudaLog *log = log_ = logOf();
  const char *spec = "variant win { param W: i64 = 16\n mask = sliding_window(W) }";
  static unsigned short q[B * H * S * D], out[B * H * S * D];
  static unsigned short q1[B * H * S * D], out1[B * H * S * D], host[B * H * S * D],
      hostOut[B * H * S * D];
  place(q, sizeof q, 0), place(out, sizeof out, 0);
  place(q1, sizeof q1, 1), place(out1, sizeof out1, 1);
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
   * the caller's stream with the caller's pointer; every call of it (the
   * status words zeroed, the launch, the status copied back, the event) on
   * that stream in device 0's context. */
  clearCalls();
  CHECK(runOn(k, t, (void *)0x1234) == HEED_OK);
  CHECK(log->loads == 1 && log->launches == 1);
  CHECK(log->lastChip == 90);
  CHECK(log->stream == (void *)0x1234 && log->launchDevice == 0);
  CHECK(log->q == (int64_t)(intptr_t)q);
  CHECK(log->grid[1] == H && log->grid[2] == B && log->grid[0] >= 1 && log->block > 0);
  CHECK(allOn((void *)0x1234, 0));
  CHECK(log->syncs == 0 && log->blockingCopies == 0);
  /* The steady state: no allocation, no wait, no call off the stream. */
  int allocs = log->allocs, hostAllocs = log->hostAllocs, events = log->events;
  clearCalls();
  for (int i = 0; i < 5; ++i)
    CHECK(runOn(k, t, (void *)0x1234) == HEED_OK);
  CHECK(allOn((void *)0x1234, 0));
  CHECK(log->allocs == allocs && log->hostAllocs == hostAllocs && log->events == events);
  CHECK(log->syncs == 0 && log->blockingCopies == 0);
  /* A new stream gets its own words once. */
  clearCalls();
  CHECK(runOn(k, t, NULL) == HEED_OK);
  CHECK(log->stream == NULL && allOn(NULL, 0));
  CHECK(log->allocs == allocs + 1 && log->hostAllocs == hostAllocs + 1 &&
        log->events == events + 1);
  /* A second handle of the same variant and options: no new load. */
  CHECK(heed_compile(spec, "win.attn", &o, &k2) == HEED_OK);
  CHECK(k2 && runOn(k2, t, NULL) == HEED_OK);
  CHECK(log->loads == 1 && log->launches == 8);
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

  /* Device 1: the module is loaded in device 1's context and everything of
   * the launch happens there. */
  heed_tensor t1[4];
  memcpy(t1, t, sizeof t1);
  for (int i = 0; i < 4; ++i) t1[i].device_id = 1, t1[i].data = i == 3 ? out1 : q1;
  clearCalls();
  CHECK(runOn(k, t1, (void *)0x99) == HEED_OK);
  CHECK(log->loads == 6 && log->launchDevice == 1 && log->q == (int64_t)(intptr_t)q1);
  CHECK(allOn((void *)0x99, 1));
  CHECK(runOn(k, t1, (void *)0x99) == HEED_OK && log->loads == 6);
  /* The driver's word on where q lives beats a wrong label, and host memory
   * or a device that does not exist is refused before any launch. */
  int launches = log->launches;
  for (int i = 0; i < 4; ++i) t1[i].device_id = 0;
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "labelled CUDA device 0") != NULL);
  CHECK(strstr(heed_last_error(), "on device 1") != NULL);
  for (int i = 0; i < 4; ++i) t1[i].data = i == 3 ? hostOut : host; /* out apart from q */
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "not memory of a CUDA device") != NULL);
  place(host, sizeof host, 2);
  place(hostOut, sizeof hostOut, 2);
  for (int i = 0; i < 4; ++i) t1[i].device_id = 2;
  CHECK(runOn(k, t1, NULL) == HEED_ERROR_RUN);
  CHECK(strstr(heed_last_error(), "CUDA device 2 does not exist") != NULL);
  CHECK(log->launches == launches);

  /* A kernel's own error (here: a buffer read out of range) comes back after
   * the fact, naming the variant and the buffer. */
  static float slopes[H];
  place(slopes, sizeof slopes, 0);
  int64_t slopeShape[1] = {H};
  heed_tensor buffer = {slopes, HEED_DEVICE_CUDA, 0, HEED_F32, 1, slopeShape, NULL};
  heed_kernel *alibi = NULL;
  CHECK(heed_compile("variant ali { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
                     " mask = causal() }",
                     "ali.attn", &o, &alibi) == HEED_OK);
  void *s = (void *)0x5150;
  CHECK(alibi && runWith(alibi, t, &buffer, 1, s) == HEED_OK);
  holdEvents(1); /* the GPU has not got there yet */
  failNextLaunch(1);
  CHECK(runWith(alibi, t, &buffer, 1, s) == HEED_OK);
  CHECK(runWith(alibi, t, &buffer, 1, s) == HEED_OK); /* not seen yet: launches */
  launches = log->launches;
  holdEvents(0);
  CHECK(runWith(alibi, t, &buffer, 1, s) == HEED_ERROR_RUN);
  CHECK(strstr(heed_last_error(), "variant 'ali' read buffer 'slopes' out of range") != NULL);
  CHECK(strstr(heed_last_error(), "earlier launch") != NULL);
  CHECK(log->launches == launches); /* this call launched nothing */
  CHECK(runWith(alibi, t, &buffer, 1, s) == HEED_OK); /* reported once, then cleared */
  /* heed_synchronize waits for the stream and reports it. */
  int syncs = log->syncs;
  failNextLaunch(1);
  CHECK(runWith(alibi, t, &buffer, 1, s) == HEED_OK);
  CHECK(heed_synchronize(HEED_DEVICE_CUDA, 0, s) == HEED_ERROR_RUN);
  CHECK(strstr(heed_last_error(), "'slopes'") != NULL);
  CHECK(log->syncs == syncs + 1);
  CHECK(heed_synchronize(HEED_DEVICE_CUDA, 0, s) == HEED_OK);
  CHECK(heed_synchronize(HEED_DEVICE_CPU, 0, s) == HEED_ERROR_INVALID_ARGUMENT);
  /* HEED_GPU_SYNC=1: every launch waits and reports its own error. */
  setenv("HEED_GPU_SYNC", "1", 1);
  syncs = log->syncs;
  failNextLaunch(1);
  CHECK(runWith(alibi, t, &buffer, 1, s) == HEED_ERROR_RUN);
  CHECK(strstr(heed_last_error(), "outputs are not valid") != NULL);
  CHECK(strstr(heed_last_error(), "earlier") == NULL);
  CHECK(log->syncs == syncs + 1);
  unsetenv("HEED_GPU_SYNC");

  /* A kernel that reads a buffer summary (document ids) has the summary built
   * on the stream by the image's heed_summary_0 kernel (docs/runtime.md): the
   * table zeroed, then one launch per level (200 ids: 13 blocks of 16, 4
   * levels), then the attention kernel; no wait, and the table's memory is
   * reused. */
  static int32_t docs[S];
  for (int i = 0; i < S; ++i) docs[i] = i / 50;
  place(docs, sizeof docs, 0);
  int64_t docShape[1] = {S};
  heed_tensor docBuffer = {docs, HEED_DEVICE_CUDA, 0, HEED_I32, 1, docShape, NULL};
  heed_kernel *doc = NULL;
  CHECK(heed_compile("variant doc { buffer doc_ids: i32[Skv]\n mask = document(doc_ids) }",
                     "doc.attn", &o, &doc) == HEED_OK);
  CHECK(doc && runWith(doc, t, &docBuffer, 1, s) == HEED_OK);
  allocs = log->allocs, syncs = log->syncs;
  int docLaunches = log->launches;
  clearCalls();
  keepParams(20); /* the summary kernel's first launch: level 0 */
  CHECK(doc && runWith(doc, t, &docBuffer, 1, s) == HEED_OK);
  CHECK(log->syncs == syncs && log->allocs == allocs && allOn(s, 0));
  CHECK(log->launches == docLaunches + 5);
  /* (buffer: 5 words, table: 9, then level 0, 200 entries, row length and
   * stride 200, blocks of 16, not bool) */
  CHECK(keptParams()[1] == (int64_t)(intptr_t)docs && keptParams()[3] == S &&
        keptParams()[8] == 4 && keptParams()[9] == 13 && keptParams()[14] == 0 &&
        keptParams()[15] == S && keptParams()[18] == 16 && keptParams()[19] == 0);

  /* A gated kernel (MoH: gate = router[b, q, h]) gets each (b, h)'s routed
   * rows, ascending, then the others, and the routed counts, built on the
   * caller's stream by the image's heed_gate_rows kernel (launched first:
   * one block of 128 threads per (b, h); no wait, no copy of the router to
   * the host; its lists are checked word for word in HeedTableKernelTests)
   * and passed after the buffers: q, k, v (11 words each), router (9),
   * gate_rows (5), gate_counts (5), out. */
  static unsigned short router[B * S * H];
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < S; ++i)
      for (int h = 0; h < H; ++h)
        router[(b * S + i) * H + h] = (i * 7 + h * 3 + b) % 5 < 2 ? 0x3c00 : 0x8000; /* 1, -0 */
  place(router, sizeof router, 0);
  int64_t routerShape[3] = {B, S, H};
  heed_tensor routerBuffer = {router, HEED_DEVICE_CUDA, 0, HEED_F16, 3, routerShape, NULL};
  heed_kernel *moh = NULL;
  CHECK(heed_compile("variant moh { buffer router: f16[B, Sq, H]\n gate = router[b, q, h]\n"
                     " mask = causal() }",
                     "moh.attn", &o, &moh) == HEED_OK);
  /* A gated kernel's loops run whole (split-KV's fallback): it is never
   * split, not even when HEED_SPLIT_KV asks: one attention launch, phase 0,
   * count 1, no keys per part (after out at 52..62, status, stats and the
   * work range). */
  {
    int launches0 = log->launches;
    setenv("HEED_SPLIT_KV", "4", 1);
    keepParams2(78);
    CHECK(moh && runWith(moh, t, &routerBuffer, 1, s) == HEED_OK);
    unsetenv("HEED_SPLIT_KV");
    CHECK(log->launches == launches0 + 2 && log->grid[0] == (S + 63) / 64);
    CHECK(keptParamsSecond()[75] == 0 && keptParamsSecond()[76] == 1 &&
          keptParamsSecond()[77] == 0);
  }
  syncs = log->syncs;
  int launches0 = log->launches;
  keepParams2(75);
  CHECK(moh && runWith(moh, t, &routerBuffer, 1, s) == HEED_OK);
  CHECK(log->syncs == syncs && log->launches == launches0 + 2);
  /* The routed rows' launch: B * H blocks of 128 threads, reading the
   * router (9 words: rank 3), writing the lists (5) and counts (5), then
   * heads and Sq. */
  CHECK(log->prevGrid[0] == B * H && log->prevGrid[1] == 1 && log->prevGrid[2] == 1);
  const int64_t *gateArg = keptParams();
  CHECK(gateArg[1] == (int64_t)(intptr_t)router && gateArg[3] == B && gateArg[4] == S &&
        gateArg[5] == H);
  CHECK(gateArg[9 + 3] == B * H * S && gateArg[14 + 3] == B * H && gateArg[19] == H &&
        gateArg[20] == S);
  /* The attention kernel reads the lists that launch wrote. */
  const int64_t *arg = keptParamsSecond();
  CHECK(arg[33 + 1] == (int64_t)(intptr_t)router && arg[33 + 3] == B);
  CHECK(arg[42 + 3] == B * H * S && arg[42 + 4] == 1 && arg[47 + 3] == B * H);
  CHECK(arg[42 + 1] == gateArg[9 + 1] && arg[47 + 1] == gateArg[14 + 1] && arg[42 + 1] != 0);
  CHECK(arg[52 + 1] == (int64_t)(intptr_t)out && arg[52 + 3] == B);

  /* Variants that read the sizes (Sq, Skv, B) compile for the GPU and take
   * buffers sized by expressions of them, checked against each call's sizes;
   * a new length is the same module (lengths are not in the cache key): the
   * kernel reads them from q's and k's memref descriptors (shape at words 3
   * to 6 of each 11). */
  static int8_t layout[H * 2 * 2];
  memset(layout, 1, sizeof layout);
  place(layout, sizeof layout, 0);
  int64_t layoutShape[3] = {H, 2, 2}; /* [H, cdiv(Sq, 128), cdiv(Skv, 128)] at S = 200 */
  heed_tensor layoutBuffer = {layout, HEED_DEVICE_CUDA, 0, HEED_I8, 3, layoutShape, NULL};
  heed_kernel *tables = NULL;
  CHECK(heed_compile("variant tables { buffer layout: i8[H, cdiv(Sq, 128), cdiv(Skv, 128)]\n"
                     " mask = block_sparse(layout, 128, 128) && causal_bottom_right() }",
                     "tables.attn", &o, &tables) == HEED_OK);
  keepParams(33);
  CHECK(tables && runWith(tables, t, &layoutBuffer, 1, s) == HEED_OK);
  int tableLoads = log->loads;
  launches = log->launches;
  CHECK(keptParams()[5] == S && keptParams()[11 + 5] == S);
  layoutShape[1] = 1;
  CHECK(runWith(tables, t, &layoutBuffer, 1, s) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(),
               "buffer 'layout' must have shape [H, cdiv(Sq,128), cdiv(Skv,128)] = [3, 2, 2]") !=
        NULL);
  CHECK(log->launches == launches);
  /* Sq = Skv = 100: the layout is [H, 1, 1], the module the same. */
  int64_t shortShape[4] = {B, H, 100, D};
  heed_tensor shortT[4];
  memcpy(shortT, t, sizeof shortT);
  for (int i = 0; i < 4; ++i) shortT[i].shape = shortShape;
  layoutShape[2] = 1;
  keepParams(33); /* the next launch's */
  CHECK(runWith(tables, shortT, &layoutBuffer, 1, s) == HEED_OK);
  CHECK(log->loads == tableLoads && log->launches == launches + 1);
  CHECK(keptParams()[5] == 100 && keptParams()[11 + 5] == 100);
  /* Per-batch document ids (rank 2, [B, Skv]) with the bottom-right causal
   * mask: summarized per row from the device buffer, like rank-1 ids. */
  static int32_t docRows[B * S];
  for (int i = 0; i < B * S; ++i) docRows[i] = (i % S) / 40 + i / S;
  place(docRows, sizeof docRows, 0);
  int64_t docRowsShape[2] = {B, S};
  heed_tensor docRowsBuffer = {docRows, HEED_DEVICE_CUDA, 0, HEED_I32, 2, docRowsShape, NULL};
  heed_kernel *decodeDoc = NULL;
  CHECK(heed_compile("variant decode_document { buffer doc_ids: i32[B, Skv]\n"
                     " mask = doc_ids[b, max(q + (Skv - Sq), 0)] == doc_ids[b, kv] &&"
                     " causal_bottom_right() }",
                     "decode_document.attn", &o, &decodeDoc) == HEED_OK);
  syncs = log->syncs;
  CHECK(decodeDoc && runWith(decodeDoc, t, &docRowsBuffer, 1, s) == HEED_OK);
  CHECK(log->syncs == syncs); /* (summarized on the device) */
  docRowsShape[1] = S - 1;
  CHECK(runWith(decodeDoc, t, &docRowsBuffer, 1, s) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "buffer 'doc_ids' must have shape [B, Skv] = [2, 200]") !=
        NULL);

  /* Serving calls (docs/decode.md): kv_lens and q_lens are host tensors,
   * checked on the host and copied to the device on the call's stream; the
   * copies follow v in the kernel's arguments (q, k, v: 33 words). */
  heed_compile_options so = o;
  so.kv_lens = 1, so.q_lens = 1;
  heed_kernel *serving = NULL, *packed = NULL;
  const char *endSpec = "variant end { mask = causal_bottom_right() }";
  CHECK(heed_compile(endSpec, "end.attn", &so, &serving) == HEED_OK);
  int32_t kvl[B] = {150, 7}, ql[B] = {200, 3};
  int64_t bShape[1] = {B};
  heed_tensor kvT = {kvl, HEED_DEVICE_CPU, 0, HEED_I32, 1, bShape, NULL};
  heed_tensor qT = {ql, HEED_DEVICE_CPU, 0, HEED_I32, 1, bShape, NULL};
  heed_attention_args sa;
  heed_attention_args_init(&sa);
  sa.q = &t[0], sa.k = &t[1], sa.v = &t[2], sa.out = &t[3], sa.stream = s;
  sa.kv_lens = &kvT, sa.q_lens = &qT;
  launches = log->launches;
  int hostBefore = log->hostAllocs;
  keepParams(43);
  CHECK(serving && heed_attention(serving, &sa) == HEED_OK && log->launches == launches + 1);
  CHECK(log->hostAllocs > hostBefore); /* a page-locked staging slot for the tables */
  const int64_t *sp = keptParams();
  const int32_t *dkv = (const int32_t *)(intptr_t)sp[33 + 1];
  const int32_t *dql = (const int32_t *)(intptr_t)sp[38 + 1];
  CHECK(dkv && dkv != kvl && sp[33 + 3] == B && dkv[0] == 150 && dkv[1] == 7);
  CHECK(dql && dql != ql && sp[38 + 3] == B && dql[0] == 200 && dql[1] == 3);
  CHECK(allOn(s, 0));
  /* The steady state of serving calls: the tables go through page-locked
   * staging (a ring of slots, made once), so nothing waits for the stream
   * and nothing is allocated. */
  {
    int syncs0 = log->syncs, host0 = log->hostAllocs, allocs0 = log->allocs,
        copies0 = log->blockingCopies;
    for (int i = 0; i < 6; ++i)
      CHECK(heed_attention(serving, &sa) == HEED_OK);
    if (log->syncs != syncs0 || log->allocs != allocs0)
      fprintf(stderr, "serving steady state: %d syncs, %d allocations\n",
              log->syncs - syncs0, log->allocs - allocs0);
    CHECK(log->syncs == syncs0 && log->allocs == allocs0 && log->blockingCopies == copies0);
    CHECK(log->hostAllocs <= host0 + 3); /* the ring's other slots, once */
    int host1 = log->hostAllocs;
    CHECK(heed_attention(serving, &sa) == HEED_OK && log->hostAllocs == host1);
    launches = log->launches - 1; /* the counts below are relative to the last call */
  }
  ql[1] = S + 1;
  CHECK(heed_attention(serving, &sa) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "q_lens[1] = 201 is outside [0, 200]") != NULL);
  ql[1] = 3;
  kvT.device_type = HEED_DEVICE_CUDA; /* lengths in device memory: refused */
  CHECK(heed_attention(serving, &sa) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "pass kv_lens, page_table, q_lens and cu_seqlens as host") !=
        NULL);
  CHECK(log->launches == launches + 1);
  /* A paged cache ([pages, Hkv, 16, D], BHSD) with kv_lens: the page table,
   * a host tensor too, follows kv_lens in the kernel's arguments. */
  heed_compile_options pgo = o;
  pgo.page_size = 16;
  heed_kernel *paged = NULL;
  CHECK(heed_compile(endSpec, "end.attn", &pgo, &paged) == HEED_OK);
  enum { PAGES = 25, MAX_PAGES = 13 };
  int64_t cacheShape[4] = {PAGES, H, 16, D}, tableShape[2] = {B, MAX_PAGES};
  int32_t table[B * MAX_PAGES];
  for (int i = 0; i < B * MAX_PAGES; ++i) table[i] = -1;
  for (int p = 0; p < 10; ++p) table[p] = 24 - p;      /* entry 0: 150 keys */
  table[MAX_PAGES] = 3;                                /* entry 1: 7 keys */
  heed_tensor cache = {q, HEED_DEVICE_CUDA, 0, HEED_F16, 4, cacheShape, NULL};
  heed_tensor tableT = {table, HEED_DEVICE_CPU, 0, HEED_I32, 2, tableShape, NULL};
  heed_attention_args ga;
  heed_attention_args_init(&ga);
  ga.q = &t[0], ga.k = &cache, ga.v = &cache, ga.out = &t[3], ga.stream = s;
  ga.kv_lens = &kvT, ga.page_table = &tableT;
  kvT.device_type = HEED_DEVICE_CPU;
  launches = log->launches;
  keepParams(45);
  CHECK(paged && heed_attention(paged, &ga) == HEED_OK && log->launches == launches + 1);
  sp = keptParams();
  const int32_t *dtable = (const int32_t *)(intptr_t)sp[38 + 1];
  CHECK(sp[11 + 3] == PAGES && sp[11 + 5] == 16); /* k: the cache itself */
  CHECK(dtable && dtable != table && sp[38 + 3] == B && sp[38 + 4] == MAX_PAGES &&
        sp[38 + 5] == MAX_PAGES && dtable[0] == 24 && dtable[9] == 15 &&
        dtable[MAX_PAGES] == 3);
  table[MAX_PAGES] = PAGES; /* a page the cache does not have: refused */
  CHECK(heed_attention(paged, &ga) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "page_table[1, 0] = 25 is not a page of the cache") != NULL);
  CHECK(log->launches == launches + 1);
  table[MAX_PAGES] = 3;
  /* A page table larger than a staging slot (256 KB): each slot of the ring
   * grows once (page-locked, the old one freed), and the calls after that
   * neither wait for the stream nor allocate nor copy from pageable memory. */
  {
    enum { BIG = 40000 }; /* 2 x 40000 entries: 320 KB */
    int32_t *big = (int32_t *)malloc(sizeof(int32_t) * B * BIG);
    CHECK(big != NULL);
    for (int i = 0; i < B * BIG; ++i) big[i] = -1;
    for (int p = 0; p < 10; ++p) big[p] = 24 - p;
    big[BIG] = 3;
    int64_t bigShape[2] = {B, BIG};
    heed_tensor bigT = {big, HEED_DEVICE_CPU, 0, HEED_I32, 2, bigShape, NULL};
    ga.page_table = &bigT;
    int host0 = log->hostAllocs, frees0 = log->hostFrees;
    for (int i = 0; i < 4; ++i)
      CHECK(heed_attention(paged, &ga) == HEED_OK);
    CHECK(log->hostAllocs - host0 == 4 && log->hostFrees - frees0 == 4); /* made at 256 KB above */
    int syncs0 = log->syncs, host1 = log->hostAllocs, allocs0 = log->allocs,
        copies0 = log->blockingCopies;
    for (int i = 0; i < 6; ++i)
      CHECK(heed_attention(paged, &ga) == HEED_OK);
    CHECK(log->syncs == syncs0 && log->hostAllocs == host1 && log->allocs == allocs0 &&
          log->blockingCopies == copies0);
    keepParams(45);
    CHECK(heed_attention(paged, &ga) == HEED_OK);
    sp = keptParams();
    dtable = (const int32_t *)(intptr_t)sp[38 + 1];
    CHECK(dtable && sp[38 + 4] == BIG && dtable[0] == 24 && dtable[9] == 15 &&
          dtable[BIG] == 3 && dtable[2 * BIG - 1] == -1);
    ga.page_table = &tableT;
    free(big);
  }
  heed_kernel_release(paged);
  launches = log->launches;

  /* Split-KV on the GPU (docs/decode.md): a decode call of B x H = 6 blocks
   * over 4096 keys, on the stand-in's 132 multiprocessors x 2 blocks, is
   * cut into 14 parts (the fewest within 85% of the best wave efficiency):
   * phase 1 on 14 x the grid, then phase 2 (the merge) on the grid, both on
   * the caller's stream; the workspace ([14, B, H, 1, D] accumulators, then
   * [14, B, H, 1, 2] statistics) is allocated at the first such call and
   * reused; each part takes ceil(4096 / 14) = 293 keys (parts of equal
   * work). A prefill call runs phase 0 with count 1 and no workspace. */
  {
    enum { SKV = 4096 };
    static unsigned short qd[B * H * D], od[B * H * D];
    unsigned short *kd = (unsigned short *)calloc((size_t)B * H * SKV * D, 2);
    unsigned short *vd = (unsigned short *)calloc((size_t)B * H * SKV * D, 2);
    CHECK(kd && vd);
    place(qd, sizeof qd, 0), place(od, sizeof od, 0);
    place(kd, (size_t)B * H * SKV * D * 2, 0), place(vd, (size_t)B * H * SKV * D * 2, 0);
    int64_t qShape[4] = {B, H, 1, D}, kvShape[4] = {B, H, SKV, D};
    heed_tensor dt[4] = {{qd, HEED_DEVICE_CUDA, 0, HEED_F16, 4, qShape, NULL},
                         {kd, HEED_DEVICE_CUDA, 0, HEED_F16, 4, kvShape, NULL},
                         {vd, HEED_DEVICE_CUDA, 0, HEED_F16, 4, kvShape, NULL},
                         {od, HEED_DEVICE_CUDA, 0, HEED_F16, 4, qShape, NULL}};
    heed_kernel *dec = NULL;
    CHECK(heed_compile("variant dec { mask = causal_bottom_right() }", "dec.attn", &o, &dec) ==
          HEED_OK);
    int allocs0 = log->allocs;
    clearCalls();
    keepParams2(85);
    CHECK(dec && runWith(dec, dt, NULL, 0, s) == HEED_OK);
    CHECK(log->launches == launches + 2);
    CHECK(log->prevGrid[0] == 14 && log->prevGrid[1] == H && log->prevGrid[2] == B);
    CHECK(log->grid[0] == 1 && log->grid[1] == H && log->grid[2] == B);
    CHECK(allOn(s, 0));
    /* After the work range (q, k, v, out: 44 words; status, stats: 10;
     * range: 2): phase 1, 14 parts, 293 keys per part, the workspace's two
     * memrefs. */
    const int64_t *wp = keptParams();
    CHECK(wp[56] == 1 && wp[57] == 14 && wp[58] == 293);
    CHECK(wp[59] != 0 && wp[62] == 14 && wp[63] == B && wp[64] == H && wp[65] == 1 &&
          wp[66] == D && wp[71] == 1);
    CHECK(wp[72] == wp[59] + 14 * B * H * D * 4 && wp[75] == 14 && wp[79] == 2);
    /* Phase 2: the same arguments but the phase word. */
    const int64_t *wp2 = keptParamsSecond();
    CHECK(wp2[56] == 2 && wp2[57] == 14 && wp2[58] == 293 && wp2[59] == wp[59] &&
          wp2[72] == wp[72]);
    CHECK(wp2[0] == wp[0] && wp2[55] == wp[55]);
    CHECK(log->allocs == allocs0 + 1);
    for (int i = 0; i < 3; ++i)
      CHECK(runWith(dec, dt, NULL, 0, s) == HEED_OK);
    CHECK(log->launches == launches + 8 && log->allocs == allocs0 + 1);
    /* HEED_SPLIT_KV forces the count. */
    setenv("HEED_SPLIT_KV", "3", 1);
    CHECK(runWith(dec, dt, NULL, 0, s) == HEED_OK);
    CHECK(log->prevGrid[0] == 3 && log->grid[0] == 1 && log->launches == launches + 10);
    unsetenv("HEED_SPLIT_KV");
    /* Prefill (the 200-query tensors above): enough blocks, phase 0. */
    keepParams(85);
    CHECK(runWith(dec, t, NULL, 0, s) == HEED_OK);
    CHECK(log->launches == launches + 11);
    wp = keptParams();
    CHECK(wp[56] == 0 && wp[57] == 1 && wp[58] == 0 && wp[59] == 0 && wp[62] == 0);
    heed_kernel_release(dec);
    free(kd), free(vd);
    launches = log->launches;
  }

  /* Packed sequences: q, k, v, out of batch 1 hold entries of 80 and 120
   * rows; the kernel gets them as [B, 120, ...] with batch stride 0, the
   * offsets after v, then the entry order (the longest entry, 1, first: the
   * GPU starts the blocks of grid z with entry order[z]). */
  heed_compile_options po = o;
  po.cu_seqlens_q = 1, po.cu_seqlens_kv = 1;
  CHECK(heed_compile(endSpec, "end.attn", &po, &packed) == HEED_OK);
  int64_t packedShape[4] = {1, H, S, D}, cuShape[1] = {B + 1};
  int32_t cu[B + 1] = {0, 80, 200};
  heed_tensor pt[4];
  memcpy(pt, t, sizeof pt);
  for (int i = 0; i < 4; ++i) pt[i].shape = packedShape;
  heed_tensor cuT = {cu, HEED_DEVICE_CPU, 0, HEED_I32, 1, cuShape, NULL};
  heed_attention_args pa;
  heed_attention_args_init(&pa);
  pa.q = &pt[0], pa.k = &pt[1], pa.v = &pt[2], pa.out = &pt[3], pa.stream = s;
  pa.cu_seqlens_q = &cuT, pa.cu_seqlens_kv = &cuT;
  keepParams(48);
  CHECK(packed && heed_attention(packed, &pa) == HEED_OK && log->launches == launches + 1);
  sp = keptParams();
  CHECK(log->grid[2] == B && log->grid[1] == H);
  for (int i = 0; i < 3; ++i) /* q, k, v: sizes [B, H, 120, D], batch stride 0 */
    CHECK(sp[11 * i + 3] == B && sp[11 * i + 5] == 120 && sp[11 * i + 7] == 0 &&
          sp[11 * i + 8] == S * D);
  const int32_t *dcu = (const int32_t *)(intptr_t)sp[38 + 1];
  CHECK(dcu && sp[38 + 3] == B + 1 && dcu[0] == 0 && dcu[1] == 80 && dcu[2] == 200);
  const int32_t *dorder = (const int32_t *)(intptr_t)sp[43 + 1];
  CHECK(dorder && sp[43 + 3] == B && sp[43 + 4] == 1 && dorder[0] == 1 && dorder[1] == 0);
  cu[2] = S + 1;
  CHECK(heed_attention(packed, &pa) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "is past the 200 rows the packed tensor holds") != NULL);

  /* A stream being captured into a CUDA graph: refused with the reason
   * (HEED_ERROR_UNSUPPORTED) before any call on the stream, a first one too
   * (no module load, allocation or event), so the caller's capture stays
   * valid; heed_synchronize likewise. */
  {
    cu[2] = 200;
    clearCalls();
    int launches0 = log->launches, allocs0 = log->allocs, loads0 = log->loads;
    setenv("FAKE_CUDA_CAPTURING", "1", 1);
    CHECK(heed_attention(packed, &pa) == HEED_ERROR_UNSUPPORTED);
    CHECK(strstr(heed_last_error(), "captured into a graph") != NULL);
    heed_kernel *cold = NULL;
    CHECK(heed_compile("variant cold { mask = causal() }", "cold.attn", &o, &cold) == HEED_OK);
    heed_attention_args ca;
    heed_attention_args_init(&ca);
    ca.q = &t[0], ca.k = &t[1], ca.v = &t[2], ca.out = &t[3], ca.stream = (void *)0x7777;
    CHECK(cold && heed_attention(cold, &ca) == HEED_ERROR_UNSUPPORTED);
    CHECK(heed_synchronize(HEED_DEVICE_CUDA, 0, (void *)0x7777) == HEED_ERROR_UNSUPPORTED);
    CHECK(log->launches == launches0 && log->calls == 0 && log->allocs == allocs0 &&
          log->loads == loads0);
    unsetenv("FAKE_CUDA_CAPTURING");
    CHECK(heed_attention(packed, &pa) == HEED_OK && log->launches == launches0 + 1);
    heed_kernel_release(cold);
  }

  /* The backward on CUDA tensors: the dQ and dK/dV kernels compiled for the
   * device's chip at the first call, both queued on the caller's stream (with
   * the buffer gradients zeroed there first); the scratch delta made once per
   * stream; tensors of two devices refused. */
  {
    static unsigned short dout[B * H * S * D], dq[B * H * S * D], dk[B * H * S * D],
        dv[B * H * S * D];
    static float lse[B * H * S], dslopes[H];
    static float slopes[H];
    place(dout, sizeof dout, 0), place(dq, sizeof dq, 0), place(dk, sizeof dk, 0);
    place(dv, sizeof dv, 0), place(lse, sizeof lse, 0), place(slopes, sizeof slopes, 0);
    place(dslopes, sizeof dslopes, 0);
    int64_t lseShape[3] = {B, H, S}, slopeShape[1] = {H};
    heed_tensor lt = {lse, HEED_DEVICE_CUDA, 0, HEED_F32, 3, lseShape, NULL};
    heed_tensor g[3] = {t[0], t[0], t[0]};
    g[0].data = dq, g[1].data = dk, g[2].data = dv;
    heed_tensor dO = t[3];
    dO.data = dout;
    heed_tensor slopeT = {slopes, HEED_DEVICE_CUDA, 0, HEED_F32, 1, slopeShape, NULL};
    heed_tensor dslopeT = {dslopes, HEED_DEVICE_CUDA, 0, HEED_F32, 1, slopeShape, NULL};
    heed_backward *bw = NULL;
    CHECK(heed_backward_compile("variant alibi { buffer slopes: f32[H]\n"
                                " score = score - slopes[h] * f32(q - kv)\n mask = causal() }",
                                "alibi.attn", &o, &bw) == HEED_OK);
    CHECK(bw && heed_backward_num_buffer_grads(bw) == 1);
    heed_backward_args ba;
    heed_backward_args_init(&ba);
    ba.q = &t[0], ba.k = &t[1], ba.v = &t[2], ba.out = &t[3], ba.lse = &lt, ba.dout = &dO;
    ba.dq = &g[0], ba.dk = &g[1], ba.dv = &g[2];
    ba.buffers = &slopeT, ba.num_buffers = 1, ba.buffer_grads = &dslopeT, ba.num_buffer_grads = 1;
    ba.stream = s;
    heed_run_stats bstats = {0, 0, 0, 0};
    ba.stats = &bstats;
    int loads = log->loads, launches = log->launches;
    /* Refused during a capture before its modules load or its scratch is made. */
    setenv("FAKE_CUDA_CAPTURING", "1", 1);
    int allocsBefore = log->allocs;
    CHECK(bw && heed_attention_backward(bw, &ba) == HEED_ERROR_UNSUPPORTED);
    CHECK(strstr(heed_last_error(), "captured into a graph") != NULL);
    CHECK(log->loads == loads && log->launches == launches && log->allocs == allocsBefore);
    unsetenv("FAKE_CUDA_CAPTURING");
    clearCalls();
    CHECK(bw && heed_attention_backward(bw, &ba) == HEED_OK);
    /* dQ, dK/dV, then the dK/dV kernel finalizing the slopes' gradient
     * (one thread per element: one block). */
    if (log->launches != launches + 3 || log->loads != loads + 2)
      fprintf(stderr, "backward: %d launches, %d loads (expected 3 and 2); %s\n",
              log->launches - launches, log->loads - loads, heed_last_error());
    CHECK(log->launches == launches + 3 && log->loads == loads + 2);
    CHECK(log->grid[0] == 1 && log->grid[1] == 1 && log->grid[2] == 1 && log->prevGrid[1] == H);
    CHECK(log->stream == s && allOn(s, 0));
    CHECK(bstats.visited_blocks == -1);
    int allocs = log->allocs;
    CHECK(heed_attention_backward(bw, &ba) == HEED_OK);
    CHECK(log->loads == loads + 2 && log->launches == launches + 6 && log->allocs == allocs);
    heed_tensor other = g[0];
    other.device_id = 1;
    ba.dq = &other;
    CHECK(heed_attention_backward(bw, &ba) == HEED_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(heed_last_error(), "every tensor of the backward must be on one device") != NULL);
    heed_backward_release(bw);

    /* A ragged batch (kv_lens, q_lens): its lengths are host tensors, uploaded
     * on the stream with the gradients zeroed first; then the same three
     * launches. Lengths on the device are refused. */
    heed_compile_options ro = o;
    ro.kv_lens = ro.q_lens = 1;
    heed_backward *rbw = NULL;
    CHECK(heed_backward_compile("variant alibi { buffer slopes: f32[H]\n"
                                " score = score - slopes[h] * f32(q - kv)\n mask = causal() }",
                                "alibi.attn", &ro, &rbw) == HEED_OK);
    static int32_t kvLens[B], qLens[B];
    for (int b = 0; b < B; ++b)
      kvLens[b] = S - b, qLens[b] = b % 2 ? S : 1;
    int64_t lensShape[1] = {B};
    heed_tensor kvl = {kvLens, HEED_DEVICE_CPU, 0, HEED_I32, 1, lensShape, NULL};
    heed_tensor ql = {qLens, HEED_DEVICE_CPU, 0, HEED_I32, 1, lensShape, NULL};
    ba.dq = &g[0];
    ba.kv_lens = &kvl, ba.q_lens = &ql;
    launches = log->launches;
    CHECK(rbw && heed_attention_backward(rbw, &ba) == HEED_OK);
    if (log->launches != launches + 3)
      fprintf(stderr, "ragged backward: %d launches (expected 3); %s\n", log->launches - launches,
              heed_last_error());
    CHECK(log->launches == launches + 3 && log->stream == s && allOn(s, 0));
    heed_tensor onDevice = kvl;
    onDevice.device_type = HEED_DEVICE_CUDA;
    ba.kv_lens = &onDevice;
    CHECK(rbw && heed_attention_backward(rbw, &ba) == HEED_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(heed_last_error(), "pass the lengths as host (CPU) tensors") != NULL);
    ba.kv_lens = ba.q_lens = NULL;
    heed_backward_release(rbw);
  }

  /* Artifacts with CUDA entries (heed-compile --aot): argv[1] for
   * --target=sm_80,sm_90 (two cubins and sm_90's PTX), argv[2] for sm_80
   * alone (a cubin and its PTX). The device's chip picks the entry: its own
   * cubin, else a cubin of its major version, else the newest PTX not newer
   * than it (the driver compiles that). */
  if (argc < 3) {
    fprintf(stderr, "capi_cuda_wiring_test: needs the two artifacts (run it through ctest)\n");
    ++failures;
  } else {
    static const struct {
      const char *cc;
      int artifact, chip, ptx;
    } picks[] = {{"90", 1, 90, 0}, {"90", 2, 80, 1}, {"86", 1, 80, 0},
                 {"86", 2, 80, 0}, {"100", 1, 90, 1}, {"100", 2, 80, 1}};
    static float qf[B * H * S * D], of[B * H * S * D];
    place(qf, sizeof qf, 0), place(of, sizeof of, 0);
    heed_tensor tf[4];
    for (int i = 0; i < 4; ++i)
      tf[i] = t[i], tf[i].dtype = HEED_F32, tf[i].data = i == 3 ? of : qf;
    for (size_t i = 0; i < sizeof picks / sizeof picks[0]; ++i) {
      setenv("FAKE_CUDA_CC", picks[i].cc, 1);
      heed_kernel *loaded = NULL;
      CHECK(heed_kernel_load_file(argv[picks[i].artifact], &loaded) == HEED_OK);
      if (!loaded) continue;
      /* GPU entries only: no CPU code. */
      CHECK(strncmp(heed_kernel_target(loaded), "cuda:sm_", 8) == 0);
      int loads = log->loads;
      CHECK(runOn(loaded, tf, s) == HEED_OK);
      CHECK(log->loads == loads + 1 && log->stream == s);
      if (log->lastChip != picks[i].chip || log->lastPTX != picks[i].ptx) {
        fprintf(stderr, "compute capability %s, artifact %d: loaded %s for sm_%d\n",
                picks[i].cc, picks[i].artifact, log->lastPTX ? "PTX" : "a cubin",
                log->lastChip);
        ++failures;
      }
      heed_tensor cpu[4];
      memcpy(cpu, tf, sizeof cpu);
      for (int j = 0; j < 4; ++j) cpu[j].device_type = HEED_DEVICE_CPU;
      CHECK(runOn(loaded, cpu, NULL) == HEED_ERROR_UNSUPPORTED);
      heed_kernel_release(loaded);
    }
    unsetenv("FAKE_CUDA_CC");
    /* No entry for the chip: a load error that lists why each does not fit. */
    setenv("FAKE_CUDA_CC", "75", 1);
    heed_kernel *old = NULL;
    CHECK(heed_kernel_load_file(argv[2], &old) == HEED_OK);
    CHECK(old && runOn(old, tf, s) == HEED_ERROR_LOAD);
    CHECK(strstr(heed_last_error(), "no entry of the artifact runs on cuda sm_75") != NULL);
    CHECK(strstr(heed_last_error(), "newer than the device") != NULL);
    heed_kernel_release(old);
    unsetenv("FAKE_CUDA_CC");
  }

  /* GQA decode (--attn-pack-gqa on the GPU, docs/decode.md): the kernel
   * packs a group's query heads into one block's tile, and the C API
   * launches by the kernel's launch shape: (1, Hkv, B) blocks. (A first
   * version launched Hq blocks there, past the query heads.) */
  {
    enum { GH = 4, GKV = 2, GS = 100 };
    static unsigned short gq[GH * D], gk[GKV * GS * D], gv[GKV * GS * D], go[GH * D];
    place(gq, sizeof gq, 0), place(gk, sizeof gk, 0), place(gv, sizeof gv, 0);
    place(go, sizeof go, 0);
    int64_t qs[4] = {1, GH, 1, D}, ks[4] = {1, GKV, GS, D};
    heed_tensor gt[4] = {{gq, HEED_DEVICE_CUDA, 0, HEED_F16, 4, qs, NULL},
                         {gk, HEED_DEVICE_CUDA, 0, HEED_F16, 4, ks, NULL},
                         {gv, HEED_DEVICE_CUDA, 0, HEED_F16, 4, ks, NULL},
                         {go, HEED_DEVICE_CUDA, 0, HEED_F16, 4, qs, NULL}};
    heed_compile_options gopts;
    heed_compile_options_init(&gopts);
    gopts.dtype = HEED_F16;
    heed_kernel *gqa = NULL;
    CHECK(heed_compile("variant gqa { mask = causal_bottom_right() }", "gqa.attn", &gopts, &gqa) ==
          HEED_OK);
    setenv("HEED_SPLIT_KV", "1", 1);
    CHECK(gqa && runWith(gqa, gt, NULL, 0, s) == HEED_OK);
    CHECK(log->grid[0] == 1 && log->grid[1] == GKV && log->grid[2] == 1);
    unsetenv("HEED_SPLIT_KV");
    heed_kernel_release(gqa);
  }

  heed_kernel_release(k);
  heed_kernel_release(k2);
  heed_kernel_release(own);
  heed_kernel_release(fixed);
  heed_kernel_release(alibi);
  heed_kernel_release(doc);
  heed_kernel_release(moh);
  heed_kernel_release(tables);
  heed_kernel_release(decodeDoc);
  heed_kernel_release(serving);
  heed_kernel_release(packed);
  if (failures) {
    fprintf(stderr, "capi_cuda_wiring_test: %d check(s) FAILED\n", failures);
    return 1;
  }
  printf("capi_cuda_wiring_test: PASSED (%d loads, %d launches)\n", log->loads, log->launches);
  return 0;
}
