/* A stand-in libamdhip64.so for capi_rocm_wiring_test.c: "device" memory is
 * host memory, kernels do nothing, and every module load, launch and
 * stream-ordered call is recorded so the test can see what heed asked of HIP.
 * $FAKE_HIP_LAUNCH_ERROR set makes hipModuleLaunchKernel fail. The test places
 * its "device" arrays with fake_hip_place (hipPointerGetAttribute fails for
 * other memory). Never installed; found only through the test's
 * LD_LIBRARY_PATH. */
#include "fake_placed.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_CALLS = 256 };

typedef struct {
  char kind; /* 'L' launch, 'M' memset, 'U' upload, 'D' download, 'E' event record, 'S' sync */
  void *stream;
  int device;
} FakeHipCall;

typedef struct {
  int loads, launches;
  int lastMachine; /* e_machine of the last image (224: EM_AMDGPU); -1 not ELF */
  int lastMach;    /* its EF_AMDGPU_MACH (0x3f gfx90a, 0x4c gfx942, 0x4f gfx950) */
  unsigned grid[3], block;
  void *stream;
  int64_t q; /* the first kernel argument: q's device pointer */
  int allocs, syncs, blockingCopies; /* hipMalloc, hipStreamSynchronize, hipMemcpy*D/H */
  int calls;
  FakeHipCall call[MAX_CALLS];
  unsigned prevGrid[3]; /* the grid of the launch before the last */
} FakeHipLog;

static FakeHipLog fakeLog;
const FakeHipLog *fake_hip_log(void) { return &fakeLog; }
void fake_hip_clear_calls(void) { fakeLog.calls = 0; }

void fake_hip_place(const void *p, size_t bytes, int device) { fakePlace(p, bytes, device); }

static int current;
static void record(char kind, void *stream) {
  if (fakeLog.calls < MAX_CALLS) {
    FakeHipCall c = {kind, stream, current};
    fakeLog.call[fakeLog.calls++] = c;
  }
}

int hipInit(unsigned flags) { (void)flags; return 0; }
int hipGetDeviceCount(int *n) { *n = 1; return 0; }
/* 63: hipDeviceAttributeMultiprocessorCount (304 compute units, an MI300X);
 * two blocks of any kernel per unit. */
int hipDeviceGetAttribute(int *v, int attribute, int device) {
  (void)device;
  *v = attribute == 63 ? 304 : 0;
  return 0;
}
/* The properties' gcnArchName ($FAKE_HIP_ARCH, else an MI300X's) at an
 * offset of this stand-in's choosing, after the marketing name. */
int hipGetDevicePropertiesR0600(void *props, int device) {
  (void)device;
  const char *arch = getenv("FAKE_HIP_ARCH");
  strcpy((char *)props, "AMD Instinct MI300X");
  strcpy((char *)props + 1160, arch && *arch ? arch : "gfx942:sramecc+:xnack-");
  return 0;
}
int hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(int *n, void *f, int threads,
                                                       size_t shared) {
  (void)f, (void)threads, (void)shared;
  *n = 2;
  return 0;
}
int hipSetDevice(int d) {
  if (d != 0) return 101; /* invalid device */
  current = d;
  return 0;
}
int hipPointerGetAttribute(void *data, int attribute, void *p) {
  return fakeDeviceOrdinal(data, attribute, (uintptr_t)p); /* 1: hipErrorInvalidValue */
}
const char *hipGetErrorString(int r) { (void)r; return "fake HIP error"; }

int hipModuleLoadData(void **m, const void *image) {
  const unsigned char *b = image;
  ++fakeLog.loads;
  fakeLog.lastMachine = fakeLog.lastMach = -1;
  if (b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F') {
    uint16_t machine;
    uint32_t flags;
    memcpy(&machine, b + 18, 2); /* Elf64_Ehdr.e_machine */
    memcpy(&flags, b + 48, 4);   /* Elf64_Ehdr.e_flags */
    fakeLog.lastMachine = machine;
    fakeLog.lastMach = (int)(flags & 0xff);
  }
  *m = (void *)0x77;
  return 0;
}
int hipModuleUnload(void *m) { (void)m; return 0; }
int hipModuleGetFunction(void **f, void *m, const char *name) {
  (void)m, (void)name;
  *f = (void *)0x88;
  return 0;
}
int hipModuleLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                          unsigned by, unsigned bz, unsigned shared, void *stream,
                          void **params, void **extra) {
  (void)f, (void)by, (void)bz, (void)shared, (void)extra;
  if (getenv("FAKE_HIP_LAUNCH_ERROR")) return 98; /* invalid image */
  ++fakeLog.launches;
  record('L', stream);
  memcpy(fakeLog.prevGrid, fakeLog.grid, sizeof fakeLog.grid);
  fakeLog.grid[0] = gx, fakeLog.grid[1] = gy, fakeLog.grid[2] = gz, fakeLog.block = bx;
  fakeLog.stream = stream;
  memcpy(&fakeLog.q, params[0], sizeof fakeLog.q);
  return 0;
}
int hipStreamSynchronize(void *s) {
  ++fakeLog.syncs;
  record('S', s);
  return 0;
}
int hipMalloc(void **p, size_t n) {
  ++fakeLog.allocs;
  *p = calloc(1, n ? n : 1);
  if (*p) fakePlace(*p, n ? n : 1, current);
  return *p ? 0 : 2; /* out of memory */
}
int hipFree(void *p) { free(p); return 0; }
int hipHostMalloc(void **p, size_t n, unsigned flags) {
  (void)flags;
  *p = calloc(1, n ? n : 1);
  return *p ? 0 : 2;
}
int hipHostFree(void *p) {
  free(p);
  return 0;
}
int hipMemcpyHtoD(void *d, const void *h, size_t n) {
  ++fakeLog.blockingCopies;
  memcpy(d, h, n);
  return 0;
}
int hipMemcpyDtoH(void *h, void *d, size_t n) {
  ++fakeLog.blockingCopies;
  memcpy(h, d, n);
  return 0;
}
int hipMemcpyHtoDAsync(void *d, const void *h, size_t n, void *stream) {
  record('U', stream);
  memcpy(d, h, n);
  return 0;
}
int hipMemcpyDtoHAsync(void *h, void *d, size_t n, void *stream) {
  record('D', stream);
  memcpy(h, d, n);
  return 0;
}
int hipMemsetD32Async(void *d, int v, size_t n, void *stream) {
  record('M', stream);
  for (size_t i = 0; i < n; ++i) ((int32_t *)d)[i] = v;
  return 0;
}
int hipEventCreateWithFlags(void **e, unsigned flags) {
  (void)flags;
  *e = (void *)0x1000;
  return 0;
}
int hipEventRecord(void *e, void *stream) {
  (void)e;
  record('E', stream);
  return 0;
}
int hipEventQuery(void *e) { (void)e; return 0; }
