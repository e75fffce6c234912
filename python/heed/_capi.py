"""The C API of include/heed/heed.h as ctypes declarations: constants, structs, signatures.

Written by hand, checked field by field against the header by
``python/tests/test_capi_header.py`` (which parses heed.h), so that a change of the
header that this file does not follow fails a test instead of corrupting memory.
"""

import ctypes

ABI_VERSION = 1

# heed_status
OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_SPEC = 2
ERROR_COMPILE = 3
ERROR_LOAD = 4
ERROR_RUN = 5
ERROR_UNSUPPORTED = 6
ERROR_IO = 7

# heed_dtype
F32, F16, BF16, I8, I32, I64, BOOL = range(7)

# heed_device_type (DLPack's codes)
DEVICE_CPU = 1
DEVICE_CUDA = 2
DEVICE_ROCM = 10

# heed_layout
LAYOUT_BHSD = 0
LAYOUT_BSHD = 1

#: The enums of heed.h: C enumerator -> the value here (what the header test compares).
ENUMS = {
    "HEED_OK": OK, "HEED_ERROR_INVALID_ARGUMENT": ERROR_INVALID_ARGUMENT,
    "HEED_ERROR_SPEC": ERROR_SPEC, "HEED_ERROR_COMPILE": ERROR_COMPILE,
    "HEED_ERROR_LOAD": ERROR_LOAD, "HEED_ERROR_RUN": ERROR_RUN,
    "HEED_ERROR_UNSUPPORTED": ERROR_UNSUPPORTED, "HEED_ERROR_IO": ERROR_IO,
    "HEED_F32": F32, "HEED_F16": F16, "HEED_BF16": BF16, "HEED_I8": I8, "HEED_I32": I32,
    "HEED_I64": I64, "HEED_BOOL": BOOL,
    "HEED_DEVICE_CPU": DEVICE_CPU, "HEED_DEVICE_CUDA": DEVICE_CUDA,
    "HEED_DEVICE_ROCM": DEVICE_ROCM,
    "HEED_LAYOUT_BHSD": LAYOUT_BHSD, "HEED_LAYOUT_BSHD": LAYOUT_BSHD,
}


class heed_tensor(ctypes.Structure):
    """``heed_tensor``: a DLPack-style view; strides count elements."""
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
    ]


class heed_compile_options(ctypes.Structure):
    """``heed_compile_options``; set defaults with ``heed_compile_options_init``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("dtype", ctypes.c_int32),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("layout", ctypes.c_int32),
        ("lse", ctypes.c_int32),
        ("scale", ctypes.c_double),
        ("variant", ctypes.c_char_p),
        ("params", ctypes.c_char_p),
        ("target", ctypes.c_char_p),
        ("analyze_mask", ctypes.c_int32),
        ("use_cache", ctypes.c_int32),
        ("kv_lens", ctypes.c_int32),
        ("page_size", ctypes.c_int64),
        ("q_lens", ctypes.c_int32),
        ("out_f32", ctypes.c_int32),
        ("cu_seqlens_q", ctypes.c_int32),
        ("cu_seqlens_kv", ctypes.c_int32),
        ("gpu_kernel", ctypes.c_char_p),
        ("patch_tiling", ctypes.c_int32),
    ]


class heed_cache_stats(ctypes.Structure):
    """``heed_cache_stats``; set up with ``heed_cache_stats_init``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("memory_hits", ctypes.c_uint64),
        ("disk_hits", ctypes.c_uint64),
        ("compiles", ctypes.c_uint64),
        ("rejected_entries", ctypes.c_uint64),
        ("store_failures", ctypes.c_uint64),
        ("disk_entries", ctypes.c_uint64),
        ("disk_bytes", ctypes.c_uint64),
        ("disk_limit_bytes", ctypes.c_uint64),
        ("directory", ctypes.c_char_p),
    ]


class heed_run_stats(ctypes.Structure):
    """``heed_run_stats``: KV blocks visited, proven full, partial, and in all."""
    _fields_ = [
        ("visited_blocks", ctypes.c_int64),
        ("full_blocks", ctypes.c_int64),
        ("partial_blocks", ctypes.c_int64),
        ("total_blocks", ctypes.c_int64),
    ]


class heed_attention_args(ctypes.Structure):
    """``heed_attention_args``; set up with ``heed_attention_args_init``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("q", ctypes.POINTER(heed_tensor)),
        ("k", ctypes.POINTER(heed_tensor)),
        ("v", ctypes.POINTER(heed_tensor)),
        ("out", ctypes.POINTER(heed_tensor)),
        ("lse", ctypes.POINTER(heed_tensor)),
        ("buffers", ctypes.POINTER(heed_tensor)),
        ("num_buffers", ctypes.c_int32),
        ("num_threads", ctypes.c_int32),
        ("stream", ctypes.c_void_p),
        ("stats", ctypes.POINTER(heed_run_stats)),
        ("kv_lens", ctypes.POINTER(heed_tensor)),
        ("page_table", ctypes.POINTER(heed_tensor)),
        ("q_lens", ctypes.POINTER(heed_tensor)),
        ("cu_seqlens_q", ctypes.POINTER(heed_tensor)),
        ("cu_seqlens_kv", ctypes.POINTER(heed_tensor)),
    ]


class heed_backward_args(ctypes.Structure):
    """``heed_backward_args``; set up with ``heed_backward_args_init`` (docs/backward.md)."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("q", ctypes.POINTER(heed_tensor)),
        ("k", ctypes.POINTER(heed_tensor)),
        ("v", ctypes.POINTER(heed_tensor)),
        ("out", ctypes.POINTER(heed_tensor)),
        ("lse", ctypes.POINTER(heed_tensor)),
        ("dout", ctypes.POINTER(heed_tensor)),
        ("buffers", ctypes.POINTER(heed_tensor)),
        ("num_buffers", ctypes.c_int32),
        ("dq", ctypes.POINTER(heed_tensor)),
        ("dk", ctypes.POINTER(heed_tensor)),
        ("dv", ctypes.POINTER(heed_tensor)),
        ("buffer_grads", ctypes.POINTER(heed_tensor)),
        ("num_buffer_grads", ctypes.c_int32),
        ("num_threads", ctypes.c_int32),
        ("stats", ctypes.POINTER(heed_run_stats)),
        ("stream", ctypes.c_void_p),
        ("kv_lens", ctypes.POINTER(heed_tensor)),
        ("q_lens", ctypes.POINTER(heed_tensor)),
        ("cu_seqlens_q", ctypes.POINTER(heed_tensor)),
        ("cu_seqlens_kv", ctypes.POINTER(heed_tensor)),
    ]


#: Every struct of heed.h by its C name.
STRUCTS = {cls.__name__: cls for cls in (heed_tensor, heed_compile_options, heed_cache_stats,
                                         heed_run_stats, heed_attention_args,
                                         heed_backward_args)}

kernel_p = ctypes.c_void_p  # heed_kernel * (opaque)
backward_p = ctypes.c_void_p  # heed_backward * (opaque)
status_t = ctypes.c_int     # heed_status (a C enum)

#: name: (restype, argtypes, compiler_only). compiler_only functions are absent
#: from libheed_runtime (marked [compiler] in heed.h).
SIGNATURES = {
    "heed_last_error": (ctypes.c_char_p, [], False),
    "heed_status_string": (ctypes.c_char_p, [status_t], False),
    "heed_abi_version": (ctypes.c_int, [], False),
    "heed_version": (ctypes.c_char_p, [], False),
    "heed_compile_options_init": (None, [ctypes.POINTER(heed_compile_options)], True),
    "heed_compile": (status_t, [ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.POINTER(heed_compile_options),
                                ctypes.POINTER(kernel_p)], True),
    "heed_compile_file": (status_t, [ctypes.c_char_p, ctypes.POINTER(heed_compile_options),
                                     ctypes.POINTER(kernel_p)], True),
    "heed_export": (status_t, [ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.POINTER(heed_compile_options), ctypes.c_char_p], True),
    "heed_cache_stats_init": (None, [ctypes.POINTER(heed_cache_stats)], True),
    "heed_cache_get_stats": (status_t, [ctypes.POINTER(heed_cache_stats)], True),
    "heed_cache_set_directory": (status_t, [ctypes.c_char_p], True),
    "heed_cache_clear": (status_t, [], True),
    "heed_kernel_load": (status_t, [ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.POINTER(kernel_p)], False),
    "heed_kernel_load_file": (status_t, [ctypes.c_char_p, ctypes.POINTER(kernel_p)], False),
    "heed_kernel_release": (None, [kernel_p], False),
    "heed_kernel_name": (ctypes.c_char_p, [kernel_p], False),
    "heed_kernel_target": (ctypes.c_char_p, [kernel_p], False),
    "heed_kernel_dtype": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_head_dim": (ctypes.c_int64, [kernel_p], False),
    "heed_kernel_head_dim_v": (ctypes.c_int64, [kernel_p], False),
    "heed_kernel_layout": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_has_lse": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_scale": (ctypes.c_double, [kernel_p], False),
    "heed_kernel_num_buffers": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_has_kv_lens": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_page_size": (ctypes.c_int64, [kernel_p], False),
    "heed_kernel_has_q_lens": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_has_cu_seqlens_q": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_has_cu_seqlens_kv": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_out_dtype": (ctypes.c_int32, [kernel_p], False),
    "heed_kernel_buffer_name": (ctypes.c_char_p, [kernel_p, ctypes.c_int32], False),
    "heed_kernel_buffer_dtype": (ctypes.c_int32, [kernel_p, ctypes.c_int32], False),
    "heed_kernel_buffer_shape": (ctypes.c_char_p, [kernel_p, ctypes.c_int32], False),
    "heed_attention_args_init": (None, [ctypes.POINTER(heed_attention_args)], False),
    "heed_attention": (status_t, [kernel_p, ctypes.POINTER(heed_attention_args)], False),
    "heed_synchronize": (status_t, [ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p], False),
    "heed_backward_compile": (status_t, [ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.POINTER(heed_compile_options),
                                         ctypes.POINTER(backward_p)], True),
    "heed_backward_release": (None, [backward_p], True),
    "heed_backward_num_buffer_grads": (ctypes.c_int32, [backward_p], True),
    "heed_backward_buffer_grad_index": (ctypes.c_int32, [backward_p, ctypes.c_int32], True),
    "heed_backward_args_init": (None, [ctypes.POINTER(heed_backward_args)], True),
    "heed_attention_backward": (status_t, [backward_p, ctypes.POINTER(heed_backward_args)],
                                True),
}
