/*
 * SHA-256 block kernel for x86-64 CPUs with the SHA extensions ("shani").
 *
 * Only the kernel function carries target("sha,sse4.1"): the rest of the extension is built
 * for the baseline ISA, so a CPU without SHA-NI never meets these instructions unless the
 * dispatch in sha256.c chose this kernel after ecr_sha256_cpu_has_shani() said yes.
 *
 * The structure is the one of Intel's reference code and Linux's sha256_ni_transform: the
 * state lives in two registers as ABEF/CDGH for the whole call, each sha256rnds2 does two
 * rounds, and the message schedule for quad-round i+1..i+3 (sha256msg1/msg2) is computed
 * between the two halves of quad-round i so it overlaps the round latency.
 */
#include "sha256.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

int ecr_sha256_cpu_has_shani(void)
{
    unsigned int eax, ebx, ecx, edx;

    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    if (!(ecx & (1u << 9)) || !(ecx & (1u << 19))) /* SSSE3, SSE4.1 */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1u << 29)) != 0; /* SHA */
}

#define K ecr_sha256_K

/* Quad-round i on Wa = W[4i..4i+3]. Between its two halves the schedule moves on: msg2
 * completes Wb = W[4i+4..4i+7], msg1 starts Wd = W[4i+12..4i+15]. */
#define QUAD(i, Wa, Wb, Wd, SCHED_B, SCHED_D)                                        \
    do {                                                                           \
        __m128i msg_ = _mm_add_epi32(Wa, _mm_load_si128((const __m128i *)&K[4 * (i)])); \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg_);                            \
        SCHED_B(Wa, Wb, Wd);                                                       \
        msg_ = _mm_shuffle_epi32(msg_, 0x0E);                                      \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, msg_);                            \
        SCHED_D(Wa, Wd);                                                           \
    } while (0)

/* Wb += W[t-7] (the 4 words straddling Wd|Wa), then the sigma1 terms (msg2). */
#define MSG2(Wa, Wb, Wd)                                                           \
    do {                                                                           \
        Wb = _mm_add_epi32(Wb, _mm_alignr_epi8(Wa, Wd, 4));                        \
        Wb = _mm_sha256msg2_epu32(Wb, Wa);                                         \
    } while (0)
#define NO_MSG2(Wa, Wb, Wd) ((void)0)
/* Wd = W[t-16] + sigma0(W[t-15]) for the quad three ahead (msg1). */
#define MSG1(Wa, Wd) (Wd = _mm_sha256msg1_epu32(Wd, Wa))
#define NO_MSG1(Wa, Wd) ((void)0)

__attribute__((target("sha,sse4.1")))
void ecr_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef, cdgh, tmp, w0, w1, w2, w3;

    /* h[0..7] = A..H; the instructions want ABEF and CDGH (high to low lanes). */
    tmp = _mm_loadu_si128((const __m128i *)&h[0]);  /* DCBA */
    cdgh = _mm_loadu_si128((const __m128i *)&h[4]); /* HGFE */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);             /* CDAB */
    cdgh = _mm_shuffle_epi32(cdgh, 0x1B);           /* EFGH */
    abef = _mm_alignr_epi8(tmp, cdgh, 8);           /* ABEF */
    cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);        /* CDGH */

    while (nblocks--) {
        const __m128i abef_save = abef, cdgh_save = cdgh;

        w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
        w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);

        QUAD(0, w0, w1, w3, NO_MSG2, NO_MSG1);
        QUAD(1, w1, w2, w0, NO_MSG2, MSG1);
        QUAD(2, w2, w3, w1, NO_MSG2, MSG1);
        QUAD(3, w3, w0, w2, MSG2, MSG1);
        QUAD(4, w0, w1, w3, MSG2, MSG1);
        QUAD(5, w1, w2, w0, MSG2, MSG1);
        QUAD(6, w2, w3, w1, MSG2, MSG1);
        QUAD(7, w3, w0, w2, MSG2, MSG1);
        QUAD(8, w0, w1, w3, MSG2, MSG1);
        QUAD(9, w1, w2, w0, MSG2, MSG1);
        QUAD(10, w2, w3, w1, MSG2, MSG1);
        QUAD(11, w3, w0, w2, MSG2, MSG1);
        QUAD(12, w0, w1, w3, MSG2, MSG1);
        QUAD(13, w1, w2, w0, MSG2, NO_MSG1);
        QUAD(14, w2, w3, w1, MSG2, NO_MSG1);
        QUAD(15, w3, w0, w2, NO_MSG2, NO_MSG1);

        abef = _mm_add_epi32(abef, abef_save);
        cdgh = _mm_add_epi32(cdgh, cdgh_save);
        p += ECR_SHA256_BLOCK_SIZE;
    }

    tmp = _mm_shuffle_epi32(abef, 0x1B);     /* FEBA */
    cdgh = _mm_shuffle_epi32(cdgh, 0xB1);    /* DCHG */
    abef = _mm_blend_epi16(tmp, cdgh, 0xF0); /* DCBA */
    cdgh = _mm_alignr_epi8(cdgh, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&h[0], abef);
    _mm_storeu_si128((__m128i *)&h[4], cdgh);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int ecr_sha256_x86_unused;

#endif
