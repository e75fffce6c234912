# Writes ${OUT}: a header defining HEED_SOURCE_HASH, the SHA-256 of every
# compiler source under ${ROOT} (lib, dialects, include, and runtime, whose
# launch convention the kernels follow). The kernel cache key
# contains it, so a rebuilt compiler never reuses kernels of an older one.
file(GLOB_RECURSE sources
  ${ROOT}/lib/*.cpp ${ROOT}/lib/*.h ${ROOT}/dialects/*.cpp ${ROOT}/dialects/*.h
  ${ROOT}/dialects/*.td ${ROOT}/include/*.h ${ROOT}/include/*.td ${ROOT}/runtime/*.cpp)
list(SORT sources)
set(all "")
foreach(f ${sources})
  file(SHA256 ${f} h)
  string(APPEND all "${h}")
endforeach()
string(SHA256 hash "${all}")
string(SUBSTRING ${hash} 0 16 short)
set(text "#define HEED_SOURCE_HASH \"${short}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
