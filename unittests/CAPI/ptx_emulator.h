/* An interpreter for the PTX that heed's sm_80 kernels are made of (the
 * mma.sync tensor-core and SIMT kernels: forward, split-KV, serving, the
 * backward's dQ and dK/dV), so that the stand-in CUDA driver can execute a
 * kernel on the CPU instead of doing nothing (fake_cuda.c with
 * FAKE_CUDA_EXECUTE=1; docs/testing.md, "GPU kernels on the CPU").
 *
 * It follows the PTX ISA, not heed's lowering: the fragment layouts of
 * mma.sync m16n8k16 and ldmatrix, shfl.sync, cp.async groups (a copy lands
 * only at the cp.async.wait_group that covers it, so a read before the wait
 * sees the old bytes), bar.sync, the rounding modes of fma. Threads run one
 * after the other between warp-collective instructions (mma, ldmatrix,
 * shfl), which run once every lane of the warp has reached the same one;
 * bar.sync releases a block once all its live threads wait at it. Shared
 * memory accesses outside the launch's shared bytes, collectives reached by
 * part of a warp, a barrier never reached by all, and any instruction it
 * does not know are errors with the instruction's line, never a silent
 * result. Not covered: sm_90's wgmma, TMA and mbarriers; textures;
 * generic addressing of shared memory; floating-point exceptions.
 */
#ifndef HEED_UNITTESTS_PTX_EMULATOR_H
#define HEED_UNITTESTS_PTX_EMULATOR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses a PTX module (NUL-terminated text). NULL and a message in err on
 * failure. */
void *ptxemu_load(const char *ptx, char *err, size_t errLen);
void ptxemu_unload(void *module);
/* The entry `name` of a module, or NULL. */
void *ptxemu_function(void *module, const char *name);
/* Runs the entry on a grid of grid[0..2] blocks of block[0..2] threads with
 * `sharedBytes` of dynamic shared memory; params[i] points at parameter i's
 * value. 0 on success, else 1 and a message in err. */
int ptxemu_launch(void *function, const unsigned grid[3], const unsigned block[3],
                  unsigned sharedBytes, void **params, char *err, size_t errLen);
/* Instructions executed by every launch so far (all threads). */
unsigned long long ptxemu_instructions(void);
/* Declares device memory [p, p + bytes) allocated (live) or freed (!live).
 * Once any is declared, a kernel's global accesses outside all of them are
 * errors. */
void ptxemu_allocation(const void *p, size_t bytes, int live);

#ifdef __cplusplus
}
#endif

#endif
