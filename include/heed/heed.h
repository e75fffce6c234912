/* heed's C API: compile attention variants, load kernels, launch them.
 *
 * Two libraries implement it:
 *   libheed          everything below (links MLIR/LLVM to compile);
 *   libheed_runtime  loading and launching only (no MLIR/LLVM): what a
 *                    program deployed with ahead-of-time kernels links.
 * Functions marked [compiler] exist in libheed only.
 *
 * ABI: structs that may grow start with `struct_size`; set it with the
 * *_init functions. Enum values and existing fields never change meaning.
 * Every function that can fail returns a heed_status; heed_last_error()
 * then gives the message (per thread, valid until the next call on that
 * thread). Nothing here aborts on bad input. */
#ifndef HEED_HEED_H
#define HEED_HEED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEED_ABI_VERSION 1

typedef enum heed_status {
  HEED_OK = 0,
  HEED_ERROR_INVALID_ARGUMENT = 1, /* a tensor, option or pointer is wrong */
  HEED_ERROR_SPEC = 2,             /* the spec does not parse or check */
  HEED_ERROR_COMPILE = 3,          /* lowering or code generation failed */
  HEED_ERROR_LOAD = 4,             /* an artifact is corrupt or for another target */
  HEED_ERROR_RUN = 5,              /* the kernel reported an error (e.g. a buffer read out of range) */
  HEED_ERROR_UNSUPPORTED = 6,      /* valid, but not available in this build/machine */
  HEED_ERROR_IO = 7                /* a file could not be read or written */
} heed_status;

/* Element types (values are heed's, not DLPack's codes). */
typedef enum heed_dtype {
  HEED_F32 = 0, HEED_F16 = 1, HEED_BF16 = 2, HEED_I8 = 3, HEED_I32 = 4, HEED_I64 = 5,
  HEED_BOOL = 6
} heed_dtype;

/* Device kinds use DLPack's DLDeviceType codes. */
typedef enum heed_device_type {
  HEED_DEVICE_CPU = 1, HEED_DEVICE_CUDA = 2, HEED_DEVICE_ROCM = 10
} heed_device_type;

typedef enum heed_layout { HEED_LAYOUT_BHSD = 0, HEED_LAYOUT_BSHD = 1 } heed_layout;

/* A tensor view, DLPack-style. Strides count elements; NULL strides mean
 * contiguous row-major. heed never takes ownership. Every dim is at most
 * 2^31 - 1 and a view spans at most 2^48 bytes (checked without overflow);
 * outputs (out, lse) must not overlap themselves (no zero, inner or negative
 * strides), an input, or each other. docs/runtime.md, "Limits". */
typedef struct heed_tensor {
  void *data;
  int32_t device_type; /* heed_device_type */
  int32_t device_id;
  int32_t dtype;       /* heed_dtype */
  int32_t ndim;
  const int64_t *shape;
  const int64_t *strides;
} heed_tensor;

typedef struct heed_kernel heed_kernel;

/* ---- errors and versions ---------------------------------------------- */
const char *heed_last_error(void);
const char *heed_status_string(heed_status status);
int heed_abi_version(void);
const char *heed_version(void);

/* ---- compiling [compiler] ---------------------------------------------- */
typedef struct heed_compile_options {
  uint32_t struct_size;
  int32_t dtype;        /* of q, k, v, out: HEED_F32 (default), HEED_F16, HEED_BF16 */
  int64_t head_dim;     /* default 64 */
  int64_t head_dim_v;   /* 0: head_dim */
  int32_t layout;       /* heed_layout */
  int32_t lse;          /* nonzero: the kernel also writes log-sum-exp */
  double scale;         /* 0: 1/sqrt(head_dim) */
  const char *variant;  /* which variant of the spec; NULL: the only one */
  const char *params;   /* "name=value,name=value" overrides (each name once), or NULL */
  const char *target;   /* heed_compile: NULL or "cpu": this machine's CPU, and the kernel
                         * runs on CUDA and ROCm tensors too (compiled for the GPU at the
                         * first such call); "cuda": CUDA tensors only, no CPU code;
                         * "cuda:sm_XX" (e.g. "cuda:sm_90"): CUDA only, compiled now for
                         * that chip; "rocm": ROCm tensors only (for gfx942: HIP gives heed
                         * no chip query); "rocm:gfx90a", "rocm:gfx942", "rocm:gfx950": ROCm
                         * only, compiled now for that chip.
                         * heed_export: comma-separated; NULL or "cpu" is the portable
                         * pair x86-64-v3 + x86-64, "cpu:native" this machine exactly,
                         * "cpu:<LLVM CPU name>" one CPU (e.g. "cpu:znver4"). */
  int32_t analyze_mask; /* default 1 */
  int32_t use_cache;    /* default 1: memory and disk cache */
  /* Serving layouts (docs/decode.md: the CPU, and the GPU's tensor-core, MFMA and
   * (without pages) SIMT kernels; not the wgmma kernel). Fields added in heed
   * 0.2: a struct_size that ends before them means 0. */
  int32_t kv_lens;      /* nonzero: calls pass kv_lens, each batch entry's number of keys */
  int64_t page_size;    /* > 0: k and v are a paged cache of pages of this many keys
                         * ([pages, page_size, Hkv, D] for BSHD, [pages, Hkv, page_size, D]
                         * for BHSD) read through a page table; implies kv_lens */
  /* Ragged queries (added after the serving fields; a struct_size that ends before it means 0). */
  int32_t q_lens;       /* nonzero: calls pass q_lens, each batch entry's number of queries */
  /* Training (added after q_lens; a struct_size that ends before it means 0). */
  int32_t out_f32;      /* nonzero: out is f32 whatever dtype is, so that the backward's
                         * delta comes from the exact output (CPU only; docs/backward.md) */
  /* Packed sequences, FlashAttention's varlen layout (added after out_f32; a
   * struct_size that ends before them means 0; the CPU and the GPU kernels the
   * serving fields run on). */
  int32_t cu_seqlens_q;  /* nonzero: q, out and lse hold the entries' queries end to end
                          * (batch 1) and calls pass cu_seqlens_q; not with q_lens */
  int32_t cu_seqlens_kv; /* nonzero: k and v hold the entries' keys end to end (batch 1)
                          * and calls pass cu_seqlens_kv; not with kv_lens or page_size */
  /* Which GPU kernel (added after cu_seqlens_kv; a struct_size that ends before it means
   * NULL; heed_compile only): NULL or "auto" (matrix cores where they apply, else SIMT),
   * "tensor-cores" (mma.sync on NVIDIA, MFMA on AMD), "simt", "wgmma" (Hopper, sm_90:
   * wgmma, TMA, a producer warpgroup; not yet checked on a GPU), "wgmma-pipelined"
   * (its first, unspecialized form), "wgmma-serial" ("wgmma" without the softmax
   * overlap) or "wgmma-grid" ("wgmma" with a block per work item instead of
   * persistent workers). A kind the call's device or the options cannot
   * take is an error at the compile (for "cuda:sm_XX" targets) or at the first call. */
  const char *gpu_kernel;
  /* Patch tiling (added after gpu_kernel; a struct_size that ends before it means 1):
   * nonzero (the default) tiles a mask on a 2-D/3-D token grid (neighborhood_2d/_3d)
   * by patches of the grid on the CPU and NVIDIA's tensor-core (mma.sync) kernel;
   * 0 keeps flat tiles (docs/passes.md, "Patch tiling"). */
  int32_t patch_tiling;
} heed_compile_options;

void heed_compile_options_init(heed_compile_options *options);

/* Compiles spec text (the .attn language) to a kernel, through the cache.
 * `source_name` labels error messages (e.g. a file name); may be NULL. */
heed_status heed_compile(const char *spec_text, const char *source_name,
                         const heed_compile_options *options, heed_kernel **kernel);
/* Same, reading the spec from a file. */
heed_status heed_compile_file(const char *path, const heed_compile_options *options,
                              heed_kernel **kernel);
/* Compiles and writes an artifact (the binary and its description) that
 * heed_kernel_load_file() and AOT programs load. */
heed_status heed_export(const char *spec_text, const char *source_name,
                        const heed_compile_options *options, const char *artifact_path);

/* ---- the kernel cache [compiler] --------------------------------------- */
typedef struct heed_cache_stats {
  uint32_t struct_size;
  uint64_t memory_hits, disk_hits, compiles, rejected_entries, store_failures;
  uint64_t disk_entries, disk_bytes, disk_limit_bytes;
  const char *directory; /* "" when the disk cache is off */
} heed_cache_stats;

void heed_cache_stats_init(heed_cache_stats *stats);
heed_status heed_cache_get_stats(heed_cache_stats *stats);
/* Uses `directory` for the disk cache from now on (NULL or "": memory only). */
heed_status heed_cache_set_directory(const char *directory);
/* Empties the memory cache and removes every disk entry. */
heed_status heed_cache_clear(void);

/* ---- loading (runtime) -------------------------------------------------- */
/* Loads an artifact from memory or a file; the entry for this machine is picked. */
heed_status heed_kernel_load(const void *artifact, size_t size, heed_kernel **kernel);
heed_status heed_kernel_load_file(const char *path, heed_kernel **kernel);
/* Every call checks that its kernel handle is live: a released handle (or a
 * pointer heed never returned) is HEED_ERROR_INVALID_ARGUMENT, and releasing
 * it again releases nothing (the last error says so). NULL is allowed. */
void heed_kernel_release(heed_kernel *kernel);

/* What the kernel was compiled for (NULL / -1 for a handle that is not live,
 * with the reason as the last error). */
const char *heed_kernel_name(const heed_kernel *kernel);
const char *heed_kernel_target(const heed_kernel *kernel);
int32_t heed_kernel_dtype(const heed_kernel *kernel);
int64_t heed_kernel_head_dim(const heed_kernel *kernel);
int64_t heed_kernel_head_dim_v(const heed_kernel *kernel);
int32_t heed_kernel_layout(const heed_kernel *kernel);
int32_t heed_kernel_has_lse(const heed_kernel *kernel);
double heed_kernel_scale(const heed_kernel *kernel);
int32_t heed_kernel_num_buffers(const heed_kernel *kernel);
/* 1 when calls pass kv_lens, 0 when not; the page size of a paged-cache
 * kernel, 0 for contiguous keys (-1 for a handle that is not live). */
int32_t heed_kernel_has_kv_lens(const heed_kernel *kernel);
int64_t heed_kernel_page_size(const heed_kernel *kernel);
/* 1 when calls pass q_lens, 0 when not (-1 for a handle that is not live). */
int32_t heed_kernel_has_q_lens(const heed_kernel *kernel);
/* 1 when calls pass cu_seqlens_q (cu_seqlens_kv), 0 when not (-1 for a handle
 * that is not live). */
int32_t heed_kernel_has_cu_seqlens_q(const heed_kernel *kernel);
int32_t heed_kernel_has_cu_seqlens_kv(const heed_kernel *kernel);
/* The dtype of out: HEED_F32 for a kernel compiled with out_f32, else the
 * kernel's dtype (-1 for a handle that is not live). */
int32_t heed_kernel_out_dtype(const heed_kernel *kernel);
/* The buffer's name, dtype, and symbolic shape ("H" or "B,Skv"); NULL when
 * `index` is out of range. */
const char *heed_kernel_buffer_name(const heed_kernel *kernel, int32_t index);
int32_t heed_kernel_buffer_dtype(const heed_kernel *kernel, int32_t index);
const char *heed_kernel_buffer_shape(const heed_kernel *kernel, int32_t index);

/* ---- launching (runtime) ------------------------------------------------ */
/* Block counts of a CPU run; all -1 after a GPU run (the GPU kernels do not count). */
typedef struct heed_run_stats {
  int64_t visited_blocks, full_blocks, partial_blocks, total_blocks;
} heed_run_stats;

typedef struct heed_attention_args {
  uint32_t struct_size;
  const heed_tensor *q, *k, *v, *out;
  const heed_tensor *lse;     /* [B, Hq, Sq] f32, iff the kernel writes it; else NULL */
  const heed_tensor *buffers; /* in the variant's declaration order */
  int32_t num_buffers;        /* exactly heed_kernel_num_buffers(): any other count is
                               * refused before `buffers` is read */
  int32_t num_threads;        /* CPU: 0 = all cores */
  void *stream;               /* GPU: the stream to launch on, a CUstream / cudaStream_t for
                               * CUDA tensors, a hipStream_t for ROCm tensors (NULL: the
                               * default stream); the call returns once the kernel is queued
                               * there (see heed_synchronize) */
  heed_run_stats *stats;      /* optional */
  /* Serving calls (heed 0.2; a struct_size that ends before them means NULL).
   * kv_lens, page_table, q_lens and cu_seqlens_q/kv are host (CPU) tensors for
   * every call, GPU calls too (a device tensor is refused): heed checks them and
   * sizes the launch on the host, then copies them to the device on the stream.
   * kv_lens i32 [B], entry b's keys (at most what k holds per entry, or
   * max_pages * page_size); page_table i32 [B, max_pages], the pages of
   * entry b in order (entries past its keys are not read). */
  const heed_tensor *kv_lens;
  const heed_tensor *page_table;
  /* Ragged queries (added after the serving fields; a struct_size that ends before it means NULL):
   * q_lens i32 [B], entry b's queries (at most what q holds per entry); the
   * rows of out and lse past them are not written. */
  const heed_tensor *q_lens;
  /* Packed sequences (added after q_lens; a struct_size that ends before them
   * means NULL): i32 [B+1], non-decreasing from >= 0; entry b's queries (keys)
   * are rows [cu[b], cu[b+1]) of q, out and lse (k and v), which then have
   * batch 1: q [1, total_q, Hq, D] (BSHD) or [1, Hq, total_q, D] (BHSD), lse
   * [1, Hq, total_q]. Rows past cu[B] are neither read nor written; `Sq`
   * (`Skv`) in buffer shapes is the longest entry's length. */
  const heed_tensor *cu_seqlens_q;
  const heed_tensor *cu_seqlens_kv;
} heed_attention_args;

void heed_attention_args_init(heed_attention_args *args);
/* Checks every tensor against the kernel, then runs it where the tensors are:
 * all on the CPU (device_type HEED_DEVICE_CPU), or all on one GPU, CUDA
 * (HEED_DEVICE_CUDA) or ROCm (HEED_DEVICE_ROCM), data = device pointers of
 * device device_id (checked against the driver's record of q's memory); else
 * HEED_ERROR_INVALID_ARGUMENT. On a GPU the kernel from heed_compile is
 * compiled at the first call, for the device's compute capability on CUDA,
 * for the chip of the target or gfx942 on ROCm, and kept loaded for the
 * process (shared by every kernel handle of the same variant, options and
 * chip); a kernel loaded from an artifact takes the artifact's entry for the
 * device's chip. Without the GPU's runtime (CUDA driver, HIP) or a GPU the call
 * is HEED_ERROR_UNSUPPORTED, and so are GPU tensors given to a kernel whose
 * artifact has no GPU entry. ROCm launches have never run on an AMD GPU (none
 * where heed is developed).
 *
 * A GPU call returns once its work is queued on `stream`, in stream order with
 * the caller's own work; it allocates and waits for nothing after the first
 * call on a stream (except kernels that read a buffer summary, such as
 * document masks, which wait for the stream and read that buffer). An error
 * the kernel itself records (a buffer read out of range) is reported
 * HEED_ERROR_RUN by the next heed_attention on that stream that finds it
 * finished (which then launches nothing), or by heed_synchronize. With the
 * environment variable HEED_GPU_SYNC=1 every GPU call waits and reports its
 * own error. */
heed_status heed_attention(const heed_kernel *kernel, const heed_attention_args *args);

/* Waits for `stream` (NULL: the default stream) of GPU `device_id`
 * (device_type HEED_DEVICE_CUDA or HEED_DEVICE_ROCM) and reports an error a
 * heed kernel launched on it recorded since the last report: HEED_ERROR_RUN,
 * naming the variant and the buffer, else HEED_OK. [runtime] */
heed_status heed_synchronize(int32_t device_type, int32_t device_id, void *stream);

/* ---- the backward pass [compiler] (docs/backward.md) -------------------- */
typedef struct heed_backward heed_backward;

/* Compiles the backward of the spec's variant for this machine's CPU (the
 * options as heed_compile's; lse and target are ignored; on CUDA or ROCm tensors
 * the two GPU kernels are compiled at the first call, for the device's chip), through the kernel
 * cache (memory, then disk) unless use_cache = 0. HEED_ERROR_COMPILE names the buffer or
 * op where the score cannot be differentiated. Gated (MoH) variants get the
 * gate buffer's gradient too (docs/backward.md, "Gated variants"). */
heed_status heed_backward_compile(const char *spec_text, const char *source_name,
                                  const heed_compile_options *options,
                                  heed_backward **backward);
/* NULL is allowed; a handle heed did not return (or released) is refused. */
void heed_backward_release(heed_backward *backward);
/* How many buffer gradients the backward writes (-1 for a bad handle), and
 * the variant buffer (its index) whose gradient is the i-th: the float
 * buffers the score (or sink) is differentiable in and a gated variant's gate
 * buffer, in declaration order. */
int32_t heed_backward_num_buffer_grads(const heed_backward *backward);
int32_t heed_backward_buffer_grad_index(const heed_backward *backward, int32_t i);

typedef struct heed_backward_args {
  uint32_t struct_size;
  /* All on the CPU, or all on one CUDA or ROCm device (the GPU backward's dQ and
   * dK/dV kernels, docs/backward.md "GPU kernels"; buffer gradients there are summed
   * with float atomics: not bitwise reproducible). q, k, v, buffers as given
   * to heed_attention; out and lse (f32 [B, Hq, Sq]) as the forward (compiled
   * with lse) wrote them; dout shaped like out. */
  const heed_tensor *q, *k, *v, *out, *lse, *dout;
  const heed_tensor *buffers;
  int32_t num_buffers;
  /* Written: dq, dk, dv shaped like q, k, v in the kernel's dtype; one
   * contiguous f32 tensor per buffer gradient, shaped like its buffer. */
  const heed_tensor *dq, *dk, *dv;
  const heed_tensor *buffer_grads;
  int32_t num_buffer_grads;
  int32_t num_threads; /* 0 = all cores; the result is bitwise reproducible per count */
  heed_run_stats *stats; /* optional; all -1 after a GPU run */
  /* GPU tensors: the stream (NULL: the default one); the call returns once both
   * kernels are queued there (see heed_synchronize). Added after `stats`: a
   * struct_size that ends before it means NULL. */
  void *stream;
  /* A ragged batch (docs/backward.md, "Ragged batches"; added after `stream`: a
   * struct_size that ends before them means NULL), for a backward compiled with
   * the options kv_lens, q_lens, cu_seqlens_q, cu_seqlens_kv (not page_size): the
   * forward's lengths, host (CPU) tensors as heed_attention takes them. Packed
   * (cu_seqlens), dout and dq hold the entries' rows end to end as q does, dk and
   * dv as k does. Rows past an entry's length get zero gradients (on GPUs dq, dk
   * and dv must then be contiguous). */
  const heed_tensor *kv_lens, *q_lens, *cu_seqlens_q, *cu_seqlens_kv;
} heed_backward_args;

void heed_backward_args_init(heed_backward_args *args);
/* Runs the backward: HEED_OK, or the status with the reason as the last error. */
heed_status heed_attention_backward(const heed_backward *backward,
                                    const heed_backward_args *args);

#ifdef __cplusplus
}
#endif

#endif /* HEED_HEED_H */
