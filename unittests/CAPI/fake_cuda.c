/* A stand-in libcuda.so.1 for capi_cuda_wiring_test.c: "device" memory is host
 * memory, kernels do nothing (with $FAKE_CUDA_EXECUTE=1 a PTX module's
 * kernels run on the CPU through ptx_emulator.h instead, and a cubin is
 * refused), and every module load, launch, tensor map
 * (cuTensorMapEncodeTiled) and stream-ordered call is recorded so the test can see what heed asked of the driver: on which
 * stream, in which device's context, and whether anything allocated or waited.
 * $FAKE_CUDA_CC is the compute capability (e.g. 86, default 90),
 * $FAKE_CUDA_DEVICES the device count (default 1), $FAKE_CUDA_SMS the
 * multiprocessors (default 132; two blocks of any kernel each). The test places its own
 * "device" arrays on a device with fake_cuda_place (cuPointerGetAttribute
 * fails for other host memory, as the real driver does), makes the next launch
 * record a kernel error with fake_cuda_fail_next_launch, and holds events
 * unfinished with fake_cuda_hold_events, and keeps the arguments of the next
 * launch with fake_cuda_keep_params. Never installed; found only through
 * the test's LD_LIBRARY_PATH. */
#include "fake_placed.h"
#include "fake_tensor_maps.h"
#include "ptx_emulator.h"

#include <stdio.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_CALLS = 256, MAX_STATUS = 16 };

typedef struct {
  char kind;    /* 'L' launch, 'M' memset, 'U' upload, 'D' download, 'E' event record, 'S' sync */
  void *stream;
  int device;   /* of the context current at the call */
} FakeCudaCall;

typedef struct {
  int loads, launches;
  int lastChip; /* from the image: cubin e_flags or the PTX .target; -1 unknown */
  int lastPTX;  /* the last image was PTX (the driver would compile it) */
  unsigned grid[3], block;
  void *stream;
  int64_t q;           /* the first kernel argument: q's device pointer */
  int launchDevice;    /* the device whose context was current at the last launch */
  int allocs, hostAllocs, events; /* cuMemAlloc, cuMemAllocHost, cuEventCreate */
  int hostFrees;       /* cuMemFreeHost */
  int syncs;           /* cuStreamSynchronize */
  int blockingCopies;  /* cuMemcpyHtoD/DtoH and cuMemsetD8: ordered on no stream */
  int calls;           /* entries in `call` since the last fake_cuda_clear_calls */
  FakeCudaCall call[MAX_CALLS];
  unsigned prevGrid[3]; /* the grid of the launch before the last */
} FakeCudaLog;

static FakeCudaLog fakeLog;
const FakeCudaLog *fake_cuda_log(void) { return &fakeLog; }
void fake_cuda_clear_calls(void) { fakeLog.calls = 0; }

/* Host memory the test uses as device `device`'s. */
static int execute(void);
/* (Executing kernels, a placed array is device memory the emulator may
 * access too.) */
void fake_cuda_place(const void *p, size_t bytes, int device) {
  fakePlace(p, bytes, device);
  if (execute()) ptxemu_allocation((void *)(uintptr_t)p, bytes ? bytes : 1, 1);
}

/* The values of the first n parameters of the next launch (each a pointer to
 * a 64-bit word or smaller scalar), for a test that knows the kernel's
 * argument list. */
enum { MAX_PARAMS = 128 };
static int keepParams, keepLaunches, keptLaunches;
static int64_t keptParams[2][MAX_PARAMS];
void fake_cuda_keep_params(int n) {
  keepParams = n < MAX_PARAMS ? n : MAX_PARAMS;
  keepLaunches = 1, keptLaunches = 0;
}
/* The same for the next two launches (a split-KV call's phases 1 and 2). */
void fake_cuda_keep_params2(int n) {
  fake_cuda_keep_params(n);
  keepLaunches = 2;
}
const int64_t *fake_cuda_params(void) { return keptParams[0]; }
const int64_t *fake_cuda_params_second(void) { return keptParams[1]; }

static int failNext;
void fake_cuda_fail_next_launch(int status) { failNext = status; }
static int holdEvents;
void fake_cuda_hold_events(int hold) { holdEvents = hold; }

/* The status word of each stream: what heed zeroes as 8 words at its first
 * launch there (status i32 and stats 3 x i64). */
static struct { void *stream; int device; int32_t *word; } statusOf[MAX_STATUS];
static int numStatus;

static int capability(void) {
  const char *cc = getenv("FAKE_CUDA_CC");
  return cc && *cc ? atoi(cc) : 90;
}
static int deviceCount(void) {
  const char *n = getenv("FAKE_CUDA_DEVICES");
  return n && *n ? atoi(n) : 1;
}

/* Contexts are 0x42 + device. */
static int current = -1;
static void record(char kind, void *stream) {
  if (fakeLog.calls < MAX_CALLS) {
    FakeCudaCall c = {kind, stream, current};
    fakeLog.call[fakeLog.calls++] = c;
  }
}

int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDeviceGetCount(int *n) { *n = deviceCount(); return 0; }
int cuDeviceGet(int *d, int i) {
  if (i < 0 || i >= deviceCount()) return 101; /* invalid device */
  *d = i;
  return 0;
}
int cuDeviceGetAttribute(int *v, int attribute, int d) {
  (void)d;
  /* 75/76: compute capability; 16: multiprocessors ($FAKE_CUDA_SMS, 132). */
  const char *sms = getenv("FAKE_CUDA_SMS");
  *v = attribute == 75   ? capability() / 10
       : attribute == 76 ? capability() % 10
       : attribute == 16 ? (sms && *sms ? atoi(sms) : 132)
                         : 0;
  return 0;
}
/* Two blocks of any kernel per multiprocessor. */
int cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, void *f, int threads, size_t shared) {
  (void)f, (void)threads, (void)shared;
  *n = 2;
  return 0;
}
int cuDevicePrimaryCtxRetain(void **c, int d) { *c = (void *)(uintptr_t)(0x42 + d); return 0; }
int cuCtxSetCurrent(void *c) {
  int d = (int)((uintptr_t)c - 0x42);
  if (d < 0 || d >= deviceCount()) return 201; /* invalid context */
  current = d;
  return 0;
}
static int optedIn(void *f);
static int resolveTensorMap(const void *map, PtxemuTensorMap *out);
/* FAKE_CUDA_EXECUTE=1: kernels run in the PTX emulator; its last error. */
static int execute(void) {
  const char *e = getenv("FAKE_CUDA_EXECUTE");
  return e && *e && *e != '0';
}
static char emuError[2048];
enum { EMU_INVALID_PTX = 218, EMU_LAUNCH_FAILED = 719 };
int cuGetErrorString(int r, const char **s) {
  *s = (r == EMU_INVALID_PTX || r == EMU_LAUNCH_FAILED) && emuError[0] ? emuError
                                                                       : "fake CUDA error";
  return 0;
}

int cuPointerGetAttribute(void *data, int attribute, unsigned long long p) {
  return fakeDeviceOrdinal(data, attribute, (uintptr_t)p); /* 1: CUDA_ERROR_INVALID_VALUE */
}

int cuModuleLoadData(void **m, const void *image) {
  const unsigned char *b = image;
  ++fakeLog.loads;
  fakeLog.lastChip = -1;
  fakeLog.lastPTX = 0;
  if (b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F') {
    uint32_t flags;
    memcpy(&flags, b + 48, 4); /* Elf64_Ehdr.e_flags */
    /* CUDA 12+ ptxas: the SM in bits 8-15; older ones: bits 0-7. */
    fakeLog.lastChip = (flags >> 8) & 0xff ? (int)((flags >> 8) & 0xff) : (int)(flags & 0xff);
  } else {
    const char *t = strstr((const char *)image, ".target sm_");
    if (t) fakeLog.lastChip = atoi(t + 11);
    fakeLog.lastPTX = strstr((const char *)image, ".version") != NULL;
  }
  *m = (void *)0x77;
  if (execute()) {
    if (!fakeLog.lastPTX) {
      snprintf(emuError, sizeof emuError,
               "the PTX emulator takes PTX, not a cubin (set HEED_CUDA_LOAD_PTX=1)");
      fprintf(stderr, "fake CUDA: %s\n", emuError);
      return EMU_INVALID_PTX;
    }
    ptxemu_set_tensor_maps(resolveTensorMap);
    *m = ptxemu_load((const char *)image, emuError, sizeof emuError);
    if (!*m) {
      fprintf(stderr, "fake CUDA: %s\n", emuError);
      return EMU_INVALID_PTX;
    }
  }
  return 0;
}
int cuModuleUnload(void *m) {
  if (execute() && m != (void *)0x77) ptxemu_unload(m);
  return 0;
}
/* Without execution every function is 0x88, but the routed rows' kernel
 * (heed_gate_rows: 21 parameter words), 0x89: a kept launch of it copies no
 * more words than it has. */
enum { GATE_ROWS_PARAMS = 21 };
int cuModuleGetFunction(void **f, void *m, const char *name) {
  *f = strcmp(name, "heed_gate_rows") == 0 ? (void *)0x89 : (void *)0x88;
  if (execute() && m != (void *)0x77) {
    *f = ptxemu_function(m, name);
    if (!*f) return 500; /* CUDA_ERROR_NOT_FOUND */
  }
  return 0;
}
/* The tensor maps encoded since the last launch (fake_cuda_tensor_maps), and
 * whether that launch passed each one, by value, as parameter
 * `mapParam` + i (set by the test: the index after heed's other parameters). */
static FakeTensorMapLog mapLog;
static int mapParam = -1, pendingMaps;
static void *mapAt[FAKE_MAX_MAPS];
const FakeTensorMapLog *fake_cuda_tensor_maps(void) { return &mapLog; }
void fake_cuda_expect_map_params(int first) { mapParam = first; }

/* Bytes of an element of each CUtensorMapDataType (UINT8 .. TFLOAT32_FTZ). */
static const unsigned elementBytes[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};
enum { MAX_ENCODED = 4096 };
static FakeTensorMap encoded[MAX_ENCODED];
static int numEncoded;
static int resolveTensorMap(const void *map, PtxemuTensorMap *out) {
  uint32_t magic;
  int i;
  memcpy(&magic, (const char *)map + 16, 4);
  memcpy(&i, (const char *)map + 20, 4);
  if (magic != 0x54454d41u || i < 0 || i >= numEncoded) return 1;
  const FakeTensorMap *m = &encoded[i];
  memset(out, 0, sizeof *out);
  out->address = m->address, out->type = m->type, out->rank = (unsigned)m->rank;
  out->elementBytes = elementBytes[m->type];
  for (int d = 0; d < m->rank; ++d) {
    out->dims[d] = m->dims[d], out->box[d] = m->box[d];
    if (d + 1 < m->rank) out->strides[d] = m->strides[d];
  }
  out->swizzle = m->swizzle, out->oobFill = m->oobFill;
  return 0;
}

int cuTensorMapEncodeTiled(void *map, int type, unsigned rank, void *address,
                           const uint64_t *dims, const uint64_t *strides, const unsigned *box,
                           const unsigned *elementStrides, int interleave, int swizzle, int l2,
                           int oobFill) {
  if (rank < 1 || rank > 5 || ((uintptr_t)map % 64)) return 1; /* CUDA_ERROR_INVALID_VALUE */
  /* What the driver checks (CUDA_ERROR_INVALID_VALUE otherwise): a 16-byte
   * aligned address, strides multiples of 16 below 2^40, dims 1..2^32,
   * boxes of 1..256 with an inner extent of whole 16-byte units, element
   * strides 1..8 (only 1 here: the emulator copies dense boxes), no
   * interleave (not emulated), swizzle modes 0..3. */
  if (type < 0 || type > 12 || ((uintptr_t)address % 16) || interleave != 0 || swizzle < 0 ||
      swizzle > 3 || oobFill < 0 || oobFill > 1)
    return 1;
  if ((box[0] * (unsigned)elementBytes[type]) % 16) return 1;
  for (unsigned i = 0; i < rank; ++i) {
    if (dims[i] < 1 || dims[i] > (1ull << 32) || box[i] < 1 || box[i] > 256 ||
        elementStrides[i] != 1)
      return 1;
    if (i + 1 < rank && (strides[i] % 16 || strides[i] >= (1ull << 40))) return 1;
  }
  if (pendingMaps == 0) mapLog.maps = 0;
  if (mapLog.maps >= FAKE_MAX_MAPS) return 1;
  FakeTensorMap *m = &mapLog.map[mapLog.maps];
  memset(m, 0, sizeof *m);
  m->type = type, m->rank = (int)rank, m->address = address;
  m->interleave = interleave, m->swizzle = swizzle, m->l2 = l2, m->oobFill = oobFill;
  for (unsigned i = 0; i < rank; ++i) {
    m->dims[i] = dims[i], m->box[i] = box[i], m->elementStrides[i] = elementStrides[i];
    if (i + 1 < rank) m->strides[i] = strides[i];
  }
  /* The map's bytes: its index and address, so a launch can tell them apart;
   * then a magic word and its entry in the list every encode call appends
   * to, which the PTX emulator's TMA copies read (FAKE_CUDA_EXECUTE). */
  memset(map, 0, 128);
  memcpy(map, &mapLog.maps, sizeof(int));
  memcpy((char *)map + 8, &address, sizeof address);
  if (numEncoded < MAX_ENCODED) {
    encoded[numEncoded] = *m;
    uint32_t magic = 0x54454d41u; /* "AMET" */
    memcpy((char *)map + 16, &magic, 4);
    memcpy((char *)map + 20, &numEncoded, 4);
    ++numEncoded;
  }
  mapAt[mapLog.maps++] = map;
  ++pendingMaps;
  return 0;
}

int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *stream, void **params, void **extra) {
  (void)extra;
  ++fakeLog.launches;
  mapLog.passed = 0;
  mapLog.sharedBytes = shared;
  mapLog.block = bx;
  for (int i = 0; pendingMaps && mapParam >= 0 && i < mapLog.maps; ++i)
    mapLog.passed += params[mapParam + i] == mapAt[i] &&
                     memcmp(params[mapParam + i], &i, sizeof i) == 0;
  pendingMaps = 0;
  record('L', stream);
  memcpy(fakeLog.prevGrid, fakeLog.grid, sizeof fakeLog.grid);
  fakeLog.grid[0] = gx, fakeLog.grid[1] = gy, fakeLog.grid[2] = gz, fakeLog.block = bx;
  /* FAKE_CUDA_TRACE=1: each launch's shape on stderr (tests read the grid). */
  if (getenv("FAKE_CUDA_TRACE"))
    fprintf(stderr, "fake-cuda: launch grid %u %u %u block %u shared %u\n", gx, gy, gz, bx,
            shared);
  fakeLog.stream = stream;
  fakeLog.launchDevice = current;
  memcpy(&fakeLog.q, params[0], sizeof fakeLog.q);
  for (int i = 0; i < keepParams && (f != (void *)0x89 || i < GATE_ROWS_PARAMS); ++i)
    memcpy(&keptParams[keptLaunches][i], params[i], sizeof keptParams[0][i]);
  if (keepParams && ++keptLaunches == keepLaunches)
    keepParams = 0;
  if (execute() && f != (void *)0x88 && f != (void *)0x89) {
    unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    /* sm_80: 163 KB of shared memory a block at most, sm_90 227 KB. */
    unsigned limit = capability() >= 90 ? 232448 : capability() >= 80 ? 166912 : 49152;
    if ((shared > 49152 && (unsigned)optedIn(f) < shared) || shared > limit) {
      snprintf(emuError, sizeof emuError,
               "a launch with %u bytes of dynamic shared memory (opted in: %d, device limit "
               "%u)", shared, optedIn(f), limit);
      fprintf(stderr, "fake CUDA: %s\n", emuError);
      return EMU_LAUNCH_FAILED;
    }
    if (ptxemu_launch(f, grid, block, shared, params, emuError, sizeof emuError)) {
      fprintf(stderr, "fake CUDA: %s\n", emuError);
      return EMU_LAUNCH_FAILED;
    }
  }
  if (failNext)
    for (int i = 0; i < numStatus; ++i)
      if (statusOf[i].stream == stream && statusOf[i].device == current) {
        *statusOf[i].word = failNext;
        failNext = 0;
      }
  return 0;
}
int cuStreamSynchronize(void *s) {
  ++fakeLog.syncs;
  record('S', s);
  return 0;
}
/* The dynamic shared memory each function was opted into (attribute 8,
 * CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES): a launch above 48 KB
 * without it fails on a GPU, and with FAKE_CUDA_EXECUTE here. */
enum { MAX_FUNCS = 64 };
static struct { void *f; int sharedBytes; } optIn[MAX_FUNCS];
static int numOptIn;
int cuFuncSetAttribute(void *f, int attribute, int value) {
  if (attribute == 8) {
    int i = 0;
    while (i < numOptIn && optIn[i].f != f) ++i;
    if (i == numOptIn && numOptIn < MAX_FUNCS) ++numOptIn;
    if (i < MAX_FUNCS) optIn[i].f = f, optIn[i].sharedBytes = value;
  }
  return 0;
}
static int optedIn(void *f) {
  for (int i = 0; i < numOptIn; ++i)
    if (optIn[i].f == f) return optIn[i].sharedBytes;
  return 0;
}
int cuMemAlloc_v2(unsigned long long *p, size_t n) {
  ++fakeLog.allocs;
  *p = (unsigned long long)(uintptr_t)calloc(1, n ? n : 1);
  if (*p) fakePlace((void *)(uintptr_t)*p, n ? n : 1, current);
  if (*p && execute()) {
    /* Device memory is not zeroed by the driver: kernels that executed see
     * 0xcd until something writes it, and accesses outside allocations fail. */
    memset((void *)(uintptr_t)*p, 0xcd, n);
    ptxemu_allocation((void *)(uintptr_t)*p, n ? n : 1, 1);
  }
  return *p ? 0 : 2; /* out of memory */
}
int cuMemFree_v2(unsigned long long p) {
  if (execute()) ptxemu_allocation((void *)(uintptr_t)p, 0, 0);
  free((void *)(uintptr_t)p);
  return 0;
}
int cuMemAllocHost_v2(void **p, size_t n) {
  ++fakeLog.hostAllocs;
  *p = calloc(1, n ? n : 1);
  return *p ? 0 : 2;
}
int cuMemFreeHost(void *p) {
  ++fakeLog.hostFrees;
  free(p);
  return 0;
}
int cuMemcpyHtoD_v2(unsigned long long d, const void *h, size_t n) {
  ++fakeLog.blockingCopies;
  memcpy((void *)(uintptr_t)d, h, n);
  return 0;
}
int cuMemcpyDtoH_v2(void *h, unsigned long long d, size_t n) {
  ++fakeLog.blockingCopies;
  memcpy(h, (const void *)(uintptr_t)d, n);
  return 0;
}
int cuMemsetD8_v2(unsigned long long d, unsigned char v, size_t n) {
  ++fakeLog.blockingCopies;
  memset((void *)(uintptr_t)d, v, n);
  return 0;
}
int cuMemcpyHtoDAsync_v2(unsigned long long d, const void *h, size_t n, void *stream) {
  record('U', stream);
  memcpy((void *)(uintptr_t)d, h, n);
  return 0;
}
int cuMemcpyDtoHAsync_v2(void *h, unsigned long long d, size_t n, void *stream) {
  record('D', stream);
  memcpy(h, (const void *)(uintptr_t)d, n);
  return 0;
}
int cuMemsetD32Async(unsigned long long d, unsigned v, size_t n, void *stream) {
  record('M', stream);
  uint32_t *w = (uint32_t *)(uintptr_t)d;
  for (size_t i = 0; i < n; ++i) w[i] = v;
  if (n == 8 && numStatus < MAX_STATUS) {
    statusOf[numStatus].stream = stream;
    statusOf[numStatus].device = current;
    statusOf[numStatus++].word = (int32_t *)w;
  }
  return 0;
}
int cuEventCreate(void **e, unsigned flags) {
  (void)flags;
  ++fakeLog.events;
  *e = (void *)(uintptr_t)(0x1000 + fakeLog.events);
  return 0;
}
int cuEventRecord(void *e, void *stream) {
  (void)e;
  record('E', stream);
  return 0;
}
int cuEventQuery(void *e) {
  (void)e;
  return holdEvents ? 600 : 0; /* CUDA_ERROR_NOT_READY */
}
/* A capture in progress on every stream while $FAKE_CUDA_CAPTURING is set
 * (CU_STREAM_CAPTURE_STATUS_ACTIVE). */
int cuStreamIsCapturing(void *s, int *status) {
  (void)s;
  const char *c = getenv("FAKE_CUDA_CAPTURING");
  *status = c && *c ? 1 : 0;
  return 0;
}
