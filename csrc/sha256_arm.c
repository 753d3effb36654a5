/*
 * SHA-256 block kernel for ARMv8 CPUs with the SHA2 crypto extension ("armv8").
 *
 * Built only for aarch64. As on x86, the target attribute sits on the kernel function alone,
 * and the dispatch in sha256.c calls it only when the kernel reports HWCAP_SHA2.
 */
#include "sha256.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <sys/auxv.h>

#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1UL << 6) /* arch/arm64/include/uapi/asm/hwcap.h */
#endif

int ecr_sha256_cpu_has_armv8(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
}

#define K ecr_sha256_K

/* Four rounds on Wa = W[4i..4i+3] (sha256h/h2 take the state as ABCD and EFGH). */
#define QUAD(i, Wa)                                                    \
    do {                                                               \
        uint32x4_t wk_ = vaddq_u32((Wa), vld1q_u32(&K[4 * (i)]));     \
        uint32x4_t abcd_ = abcd;                                       \
        abcd = vsha256hq_u32(abcd, efgh, wk_);                         \
        efgh = vsha256h2q_u32(efgh, abcd_, wk_);                       \
    } while (0)

/* Four rounds, then Wa becomes W[4i+16..4i+19] from itself and the three quads after it. */
#define QUAD_SCHED(i, Wa, Wb, Wc, Wd)                                  \
    do {                                                               \
        QUAD(i, Wa);                                                   \
        Wa = vsha256su1q_u32(vsha256su0q_u32((Wa), (Wb)), (Wc), (Wd)); \
    } while (0)

__attribute__((target("+crypto")))
void ecr_sha256_blocks_armv8(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    uint32x4_t abcd = vld1q_u32(&h[0]);
    uint32x4_t efgh = vld1q_u32(&h[4]);

    while (nblocks--) {
        const uint32x4_t abcd_save = abcd, efgh_save = efgh;
        uint32x4_t w0 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 0)));
        uint32x4_t w1 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 16)));
        uint32x4_t w2 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 32)));
        uint32x4_t w3 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 48)));

        QUAD_SCHED(0, w0, w1, w2, w3);
        QUAD_SCHED(1, w1, w2, w3, w0);
        QUAD_SCHED(2, w2, w3, w0, w1);
        QUAD_SCHED(3, w3, w0, w1, w2);
        QUAD_SCHED(4, w0, w1, w2, w3);
        QUAD_SCHED(5, w1, w2, w3, w0);
        QUAD_SCHED(6, w2, w3, w0, w1);
        QUAD_SCHED(7, w3, w0, w1, w2);
        QUAD_SCHED(8, w0, w1, w2, w3);
        QUAD_SCHED(9, w1, w2, w3, w0);
        QUAD_SCHED(10, w2, w3, w0, w1);
        QUAD_SCHED(11, w3, w0, w1, w2);
        QUAD(12, w0);
        QUAD(13, w1);
        QUAD(14, w2);
        QUAD(15, w3);

        abcd = vaddq_u32(abcd, abcd_save);
        efgh = vaddq_u32(efgh, efgh_save);
        p += ECR_SHA256_BLOCK_SIZE;
    }

    vst1q_u32(&h[0], abcd);
    vst1q_u32(&h[4], efgh);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int ecr_sha256_arm_unused;

#endif
