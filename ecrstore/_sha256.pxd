# C declarations of csrc/sha256.h, and the Sha256 type for other Cython modules.

from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef extern from "sha256.h" nogil:
    enum:
        ECR_SHA256_DIGEST_SIZE
        ECR_SHA256_BLOCK_SIZE
        ECR_SHA256_STATE_SIZE
        ECR_SHA256_STATE_VERSION

    enum:
        ECR_SHA256_OK
        ECR_SHA256_ESIZE
        ECR_SHA256_EMAGIC
        ECR_SHA256_EVERSION
        ECR_SHA256_ECHECKSUM
        ECR_SHA256_ERESERVED
        ECR_SHA256_EPADDING
        ECR_SHA256_ECOUNT
        ECR_SHA256_ETOOLONG
        ECR_SHA256_EUNKNOWN
        ECR_SHA256_EUNAVAILABLE

    ctypedef struct ecr_sha256_ctx:
        uint32_t h[8]
        uint64_t count

    void ecr_sha256_init(ecr_sha256_ctx *ctx)
    int ecr_sha256_init_kernel(ecr_sha256_ctx *ctx, const char *kernel)
    int ecr_sha256_update(ecr_sha256_ctx *ctx, const uint8_t *data, size_t len)
    void ecr_sha256_final(const ecr_sha256_ctx *ctx, uint8_t *out)
    void ecr_sha256_export(const ecr_sha256_ctx *ctx, uint8_t *out)
    int ecr_sha256_import(ecr_sha256_ctx *ctx, const uint8_t *state, size_t len)
    const char *ecr_sha256_ctx_kernel(const ecr_sha256_ctx *ctx)

    int ecr_sha256_kernel_count()
    const char *ecr_sha256_kernel_name(int index)
    int ecr_sha256_kernel_usable(int index)
    int ecr_sha256_select(const char *kernel)
    const char *ecr_sha256_active_kernel()
    const char *ecr_sha256_strerror(int code)


cdef class Sha256:
    cdef ecr_sha256_ctx _ctx
    # Set, while holding the GIL, for the duration of an update (which may run without it).
    cdef bint _busy

    cdef int _claim(self, str what) except -1
