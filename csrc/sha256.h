/*
 * SHA-256 (FIPS 180-4) for ecrstore: one C API over several block kernels.
 *
 * Kernels
 *   "portable"  plain C, every CPU.
 *   "shani"     x86-64 SHA extensions (SHA-NI + SSSE3 + SSE4.1), csrc/sha256_x86.c.
 *   "armv8"     ARMv8 SHA2 instructions, csrc/sha256_arm.c (aarch64 only).
 * A kernel is only the block-compression function; buffering, padding and the exported state
 * are shared, so every kernel produces the same bytes and a state exported under one kernel
 * resumes under any other.
 *
 * The CPU is probed once, on first use. The best usable kernel is active by default;
 * ecr_sha256_select() changes that (the module does so at import when a kernel is demanded),
 * and a context can be pinned to any usable kernel with ecr_sha256_init_kernel().
 *
 * Threads: a context belongs to one thread at a time (the caller serialises). The kernel
 * table is immutable; ecr_sha256_select() writes a global and is meant for start-up.
 *
 * Exported state (ECR_SHA256_STATE_SIZE = 120 bytes, all integers big-endian)
 *
 *   offset  size  field
 *        0     4  magic "ES2\0" (0x45 0x53 0x32 0x00)
 *        4     1  format version, 1
 *        5     3  reserved, zero
 *        8    32  chaining words H0..H7, 4 bytes each
 *       40     8  total message bytes hashed so far (n)
 *       48    64  buffered partial block: its first n % 64 bytes are the message bytes not
 *                 yet compressed, the rest are zero
 *      112     8  checksum: the first 8 bytes of SHA-256(bytes 0..111)
 *
 * Import checks, in this order: size, magic, version, checksum, reserved bytes, padding after
 * the partial block, and consistency (n < 2^61, the SHA-256 message limit; while n < 64 no
 * block has been compressed, so H must be the initial value). The first failure is returned as
 * an error code and the context is left untouched: a bad state never becomes a wrong digest.
 */
#ifndef ECR_SHA256_H
#define ECR_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ECR_SHA256_DIGEST_SIZE 32
#define ECR_SHA256_BLOCK_SIZE 64
#define ECR_SHA256_STATE_SIZE 120
#define ECR_SHA256_STATE_VERSION 1
#define ECR_SHA256_STATE_MAGIC "ES2\0" /* 4 bytes, including the NUL */
/* FIPS 180-4 limits a message to 2^64 - 1 bits. */
#define ECR_SHA256_MAX_BYTES (UINT64_C(1) << 61)

/* Error codes: 0 is success, every failure is negative. */
enum {
    ECR_SHA256_OK = 0,
    ECR_SHA256_ESIZE = -1,        /* state of the wrong length */
    ECR_SHA256_EMAGIC = -2,       /* not an exported sha256 state */
    ECR_SHA256_EVERSION = -3,     /* a state format this build does not read */
    ECR_SHA256_ECHECKSUM = -4,    /* state corrupted */
    ECR_SHA256_ERESERVED = -5,    /* reserved bytes not zero */
    ECR_SHA256_EPADDING = -6,     /* bytes after the partial block not zero */
    ECR_SHA256_ECOUNT = -7,       /* byte count out of range or inconsistent with H */
    ECR_SHA256_ETOOLONG = -8,     /* update would pass the 2^61-byte message limit */
    ECR_SHA256_EUNKNOWN = -9,     /* no kernel of that name */
    ECR_SHA256_EUNAVAILABLE = -10 /* this CPU cannot run that kernel */
};

/* Compress nblocks consecutive 64-byte blocks at p into the chaining words h. */
typedef void (*ecr_sha256_blocks_fn)(uint32_t h[8], const uint8_t *p, size_t nblocks);

typedef struct {
    uint32_t h[8];
    uint64_t count;   /* total message bytes */
    uint8_t buf[ECR_SHA256_BLOCK_SIZE]; /* the first count % 64 bytes are pending */
    ecr_sha256_blocks_fn blocks;
} ecr_sha256_ctx;

/* Start a message with the active kernel. */
void ecr_sha256_init(ecr_sha256_ctx *ctx);
/* Start a message pinned to the named kernel; on error ctx is untouched. */
int ecr_sha256_init_kernel(ecr_sha256_ctx *ctx, const char *kernel);
/* Append len bytes; 0, or ECR_SHA256_ETOOLONG (ctx untouched) past the message limit. */
int ecr_sha256_update(ecr_sha256_ctx *ctx, const uint8_t *data, size_t len);
/* The digest of everything hashed so far. ctx is not modified: updates may continue. */
void ecr_sha256_final(const ecr_sha256_ctx *ctx, uint8_t out[ECR_SHA256_DIGEST_SIZE]);
/* Serialise ctx (layout above). */
void ecr_sha256_export(const ecr_sha256_ctx *ctx, uint8_t out[ECR_SHA256_STATE_SIZE]);
/* Load a serialised state into ctx, keeping ctx's kernel; on error ctx is untouched. */
int ecr_sha256_import(ecr_sha256_ctx *ctx, const uint8_t *state, size_t len);
/* The name of the kernel ctx runs on. */
const char *ecr_sha256_ctx_kernel(const ecr_sha256_ctx *ctx);

/* Kernels known to this build (usable or not), indexed 0 .. count - 1 in preference order
 * from least to most preferred. */
int ecr_sha256_kernel_count(void);
const char *ecr_sha256_kernel_name(int index);
int ecr_sha256_kernel_usable(int index);
/* Make the named kernel the active one (0, ECR_SHA256_EUNKNOWN or ECR_SHA256_EUNAVAILABLE). */
int ecr_sha256_select(const char *kernel);
const char *ecr_sha256_active_kernel(void);

/* A fixed English description of an error code. */
const char *ecr_sha256_strerror(int code);

/* Kernel entry points, for the dispatch in sha256.c. */
/* The 64 round constants (FIPS 180-4, 4.2.2), shared by every kernel. */
extern const uint32_t ecr_sha256_K[64];

void ecr_sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t nblocks);
#if defined(__x86_64__) || defined(__i386__)
#define ECR_SHA256_HAVE_X86 1
int ecr_sha256_cpu_has_shani(void);
void ecr_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks);
#endif
#if defined(__aarch64__)
#define ECR_SHA256_HAVE_ARM 1
int ecr_sha256_cpu_has_armv8(void);
void ecr_sha256_blocks_armv8(uint32_t h[8], const uint8_t *p, size_t nblocks);
#endif

#ifdef __cplusplus
}
#endif

#endif /* ECR_SHA256_H */
