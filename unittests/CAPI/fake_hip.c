/* A stand-in libamdhip64.so for capi_rocm_wiring_test.c: "device" memory is
 * host memory, kernels do nothing, and every module load and launch is
 * recorded so the test can see what heed asked of HIP. $FAKE_HIP_LAUNCH_ERROR
 * set makes hipModuleLaunchKernel fail. Never installed; found only through
 * the test's LD_LIBRARY_PATH. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int loads, launches;
  int lastMachine; /* e_machine of the last image (224: EM_AMDGPU); -1 not ELF */
  int lastMach;    /* its EF_AMDGPU_MACH (0x3f gfx90a, 0x4c gfx942, 0x4f gfx950) */
  unsigned grid[3], block;
  void *stream;
  int64_t q; /* the first kernel argument: q's device pointer */
} FakeHipLog;

static FakeHipLog fakeLog;
const FakeHipLog *fake_hip_log(void) { return &fakeLog; }

int hipInit(unsigned flags) { (void)flags; return 0; }
int hipGetDeviceCount(int *n) { *n = 1; return 0; }
int hipSetDevice(int d) { return d == 0 ? 0 : 101; /* invalid device */ }
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
  fakeLog.grid[0] = gx, fakeLog.grid[1] = gy, fakeLog.grid[2] = gz, fakeLog.block = bx;
  fakeLog.stream = stream;
  memcpy(&fakeLog.q, params[0], sizeof fakeLog.q);
  return 0;
}
int hipStreamSynchronize(void *s) { (void)s; return 0; }
int hipMalloc(void **p, size_t n) {
  *p = calloc(1, n ? n : 1);
  return *p ? 0 : 2; /* out of memory */
}
int hipFree(void *p) { free(p); return 0; }
int hipMemcpyHtoD(void *d, const void *h, size_t n) { memcpy(d, h, n); return 0; }
int hipMemcpyDtoH(void *h, void *d, size_t n) { memcpy(h, d, n); return 0; }
int hipMemset(void *d, int v, size_t n) { memset(d, v, n); return 0; }
