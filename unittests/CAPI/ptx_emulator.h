/* An interpreter for the PTX of heed's NVIDIA kernels (sm_80: the mma.sync
 * tensor-core and SIMT kernels, forward, split-KV, serving, the backward's
 * dQ and dK/dV; sm_90a: the wgmma kernels with TMA, mbarriers and warp
 * specialization), so that the stand-in CUDA driver can execute a kernel on
 * the CPU instead of doing nothing (fake_cuda.c with FAKE_CUDA_EXECUTE=1;
 * docs/testing.md, "GPU kernels on the CPU").
 *
 * It follows the PTX ISA, not heed's lowering: the fragment layouts of
 * mma.sync m16n8k16, ldmatrix and wgmma m64nNk16 (accumulators, A from
 * registers), wgmma's shared-memory descriptors (K- and MN-major, 32/64/128-
 * byte swizzles), TMA tile copies (boxes, out-of-bounds fill, swizzle),
 * mbarrier phases with transaction counts, named barriers with thread
 * counts, shfl.sync, cp.async groups, the rounding modes of fma. Threads run
 * one after another between collectives: a warp's collective (mma,
 * ldmatrix, shfl) runs when its 32 lanes reach it, a warpgroup's (wgmma)
 * when its 128 threads do, a barrier releases once its count has arrived,
 * an mbarrier wait blocks until its phase completes. Copies land late: a
 * cp.async at its wait_group, a TMA copy at the first wait on its mbarrier,
 * and any access to their bytes before that is an error.
 *
 * Errors, each with the PTX line, never a silent result: shared-memory
 * races (two threads, one writing, in one barrier interval with no warp
 * collective between), accesses outside shared memory or outside every
 * device allocation, misaligned accesses, collectives reached by part of a
 * warp or warpgroup, deadlocks, launches above the shared-memory opt-in,
 * undeclared registers, any instruction, modifier or form it does not
 * implement. Registers start as NaN, device memory as 0xcd bytes.
 * Not covered: AMD code, textures, clusters, TMA stores and im2col,
 * sparse wgmma, timing, and the hardware's approximate ex2/rcp (exact here).
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
/* A tensor map as cuTensorMapEncodeTiled was given it (CUtensorMapDataType
 * and its element size, rank, global address, dims, byte strides of dims 1.., box, swizzle 0 none
 * 1 32B 2 64B 3 128B, oobFill 0 zeros 1 NaN), for TMA copies (sm_90). */
typedef struct {
  const void *address;
  int type;
  unsigned elementBytes; /* of `type` */
  unsigned rank;
  unsigned long long dims[5], strides[4];
  unsigned box[5];
  int swizzle, oobFill;
} PtxemuTensorMap;
/* Resolves the 128 bytes of a kernel's tensor-map parameter: 0 and *out
 * filled, or nonzero for bytes no encode call made. */
typedef int (*PtxemuTensorMapResolver)(const void *map, PtxemuTensorMap *out);
void ptxemu_set_tensor_maps(PtxemuTensorMapResolver resolver);
/* Declares device memory [p, p + bytes) allocated (live) or freed (!live).
 * Once any is declared, a kernel's global accesses outside all of them are
 * errors. */
void ptxemu_allocation(const void *p, size_t bytes, int live);

#ifdef __cplusplus
}
#endif

#endif
