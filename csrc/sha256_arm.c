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

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

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
