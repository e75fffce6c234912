/* A stand-in libcuda.so.1 for capi_cuda_wiring_test.c: "device" memory is host
 * memory, kernels do nothing, and every module load and launch is recorded so
 * the test can see what heed asked of the driver. The compute capability is
 * $FAKE_CUDA_CC (e.g. 86), default 90. Never installed; found only through the
 * test's LD_LIBRARY_PATH. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int loads, launches;
  int lastChip; /* from the image: cubin e_flags or the PTX .target; -1 unknown */
  unsigned grid[3], block;
  void *stream;
  int64_t q; /* the first kernel argument: q's device pointer */
} FakeCudaLog;

static FakeCudaLog fakeLog;
const FakeCudaLog *fake_cuda_log(void) { return &fakeLog; }

static int capability(void) {
  const char *cc = getenv("FAKE_CUDA_CC");
  return cc && *cc ? atoi(cc) : 90;
}

int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return 0; }
int cuDeviceGetAttribute(int *v, int attribute, int d) {
  (void)d;
  *v = attribute == 75 ? capability() / 10 : attribute == 76 ? capability() % 10 : 0;
  return 0;
}
int cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)0x42; return 0; }
int cuCtxSetCurrent(void *c) { return c == (void *)0x42 ? 0 : 201; /* invalid context */ }
int cuGetErrorString(int r, const char **s) { (void)r; *s = "fake CUDA error"; return 0; }

int cuModuleLoadData(void **m, const void *image) {
  const unsigned char *b = image;
  ++fakeLog.loads;
  fakeLog.lastChip = -1;
  if (b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F') {
    uint32_t flags;
    memcpy(&flags, b + 48, 4); /* Elf64_Ehdr.e_flags */
    /* CUDA 12+ ptxas: the SM in bits 8-15; older ones: bits 0-7. */
    fakeLog.lastChip = (flags >> 8) & 0xff ? (int)((flags >> 8) & 0xff) : (int)(flags & 0xff);
  } else {
    const char *t = strstr((const char *)image, ".target sm_");
    if (t) fakeLog.lastChip = atoi(t + 11);
  }
  *m = (void *)0x77;
  return 0;
}
int cuModuleUnload(void *m) { (void)m; return 0; }
int cuModuleGetFunction(void **f, void *m, const char *name) {
  (void)m, (void)name;
  *f = (void *)0x88;
  return 0;
}
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *stream, void **params, void **extra) {
  (void)f, (void)by, (void)bz, (void)shared, (void)extra;
  ++fakeLog.launches;
  fakeLog.grid[0] = gx, fakeLog.grid[1] = gy, fakeLog.grid[2] = gz, fakeLog.block = bx;
  fakeLog.stream = stream;
  memcpy(&fakeLog.q, params[0], sizeof fakeLog.q);
  return 0;
}
int cuStreamSynchronize(void *s) { (void)s; return 0; }
int cuFuncSetAttribute(void *f, int attribute, int value) {
  (void)f, (void)attribute, (void)value;
  return 0;
}
int cuMemAlloc_v2(unsigned long long *p, size_t n) {
  *p = (unsigned long long)(uintptr_t)calloc(1, n ? n : 1);
  return *p ? 0 : 2; /* out of memory */
}
int cuMemFree_v2(unsigned long long p) { free((void *)(uintptr_t)p); return 0; }
int cuMemcpyHtoD_v2(unsigned long long d, const void *h, size_t n) {
  memcpy((void *)(uintptr_t)d, h, n);
  return 0;
}
int cuMemcpyDtoH_v2(void *h, unsigned long long d, size_t n) {
  memcpy(h, (const void *)(uintptr_t)d, n);
  return 0;
}
int cuMemsetD8_v2(unsigned long long d, unsigned char v, size_t n) {
  memset((void *)(uintptr_t)d, v, n);
  return 0;
}
