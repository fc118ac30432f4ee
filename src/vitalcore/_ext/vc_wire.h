/* Low-level helpers of the wire-format v1 codec: CRC-32C, little-endian loads and
 * stores, DELTA8 sample coding. Plain C so the compiler sees through them; the Cython
 * codec (framecodec.pyx) is the only user.
 *
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78, init and final XOR
 * 0xFFFFFFFF): the SSE4.2 crc32 instruction where the CPU has it (checked once at run
 * time), else a slicing-by-8 table. Both give identical results.
 */
#ifndef VC_WIRE_H
#define VC_WIRE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if !defined(__BYTE_ORDER__) || (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ && __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__)
#error "vitalcore: unknown byte order"
#endif

/* ---- little-endian loads and stores (unaligned-safe) ---------------------------- */
static inline uint16_t vc_ld_u16(const uint8_t *p) {
    uint16_t v; memcpy(&v, p, 2);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    return v;
}
static inline uint32_t vc_ld_u32(const uint8_t *p) {
    uint32_t v; memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
static inline uint64_t vc_ld_u64(const uint8_t *p) {
    uint64_t v; memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline float vc_ld_f32(const uint8_t *p) {
    uint32_t u = vc_ld_u32(p); float f; memcpy(&f, &u, 4); return f;
}
static inline void vc_st_u16(uint8_t *p, uint16_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    memcpy(p, &v, 2);
}
static inline void vc_st_u32(uint8_t *p, uint32_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}
static inline void vc_st_u64(uint8_t *p, uint64_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}
static inline void vc_st_f32(uint8_t *p, float f) {
    uint32_t u; memcpy(&u, &f, 4); vc_st_u32(p, u);
}

/* ---- CRC-32C ---------------------------------------------------------------------- */
static uint32_t vc_crc_table[8][256];
static int vc_crc_ready = 0;
static int vc_crc_hw = 0;

static void vc_crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        vc_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            vc_crc_table[t][i] = (vc_crc_table[t - 1][i] >> 8) ^ vc_crc_table[0][vc_crc_table[t - 1][i] & 0xFF];
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    vc_crc_hw = __builtin_cpu_supports("sse4.2");
#endif
    vc_crc_ready = 1;
}

static uint32_t vc_crc32c_sw(uint32_t c, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { c = vc_crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint32_t lo = vc_ld_u32(p) ^ c, hi = vc_ld_u32(p + 4);
        c = vc_crc_table[7][lo & 0xFF] ^ vc_crc_table[6][(lo >> 8) & 0xFF] ^
            vc_crc_table[5][(lo >> 16) & 0xFF] ^ vc_crc_table[4][lo >> 24] ^
            vc_crc_table[3][hi & 0xFF] ^ vc_crc_table[2][(hi >> 8) & 0xFF] ^
            vc_crc_table[1][(hi >> 16) & 0xFF] ^ vc_crc_table[0][hi >> 24];
        p += 8; n -= 8;
    }
    while (n--) c = vc_crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2")))
static uint32_t vc_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); c = _mm_crc32_u64(c, w); p += 8; n -= 8; }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

/* CRC-32C of p[0:n], continuing from a previous result `crc` (0 to start). */
static inline uint32_t vc_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    uint32_t c = crc ^ 0xFFFFFFFFu;
#if defined(__x86_64__)
    if (vc_crc_hw) return vc_crc32c_hw(c, p, n) ^ 0xFFFFFFFFu;
#endif
    return vc_crc32c_sw(c, p, n) ^ 0xFFFFFFFFu;
}

static inline int vc_crc32c_hw_available(void) { return vc_crc_hw; }

/* ---- DELTA8 ------------------------------------------------------------------------- */
/* Decode n samples from p[0:avail] into out. Returns the number of bytes used, or -1 if
 * the data ends early. Sample arithmetic wraps modulo 2**16 like the reference. */
static inline ptrdiff_t vc_undelta8(const uint8_t *p, size_t avail, int16_t *out, uint32_t n) {
    if (avail < 2) return -1;
    uint16_t prev = vc_ld_u16(p);
    out[0] = (int16_t)prev;
    size_t i = 2;
    uint32_t k = 1;
    while (k < n) {
        /* fast path: 8 plain deltas (no 0x80 escape byte among them) */
        if (k + 8 <= n && i + 8 <= avail) {
#if defined(__SSE2__)
            /* sign-extend 8 int8 deltas to int16 lanes, prefix-sum them in 3 shifted adds */
            __m128i d = _mm_loadl_epi64((const __m128i *)(p + i));
            if ((_mm_movemask_epi8(_mm_cmpeq_epi8(d, _mm_set1_epi8((char)0x80))) & 0xFF) == 0) {
                __m128i x = _mm_unpacklo_epi8(d, _mm_cmpgt_epi8(_mm_setzero_si128(), d));
                x = _mm_add_epi16(x, _mm_slli_si128(x, 2));
                x = _mm_add_epi16(x, _mm_slli_si128(x, 4));
                x = _mm_add_epi16(x, _mm_slli_si128(x, 8));
                x = _mm_add_epi16(x, _mm_set1_epi16((short)prev));
                _mm_storeu_si128((__m128i *)(out + k), x);
                prev = (uint16_t)_mm_extract_epi16(x, 7);
                k += 8;
                i += 8;
                continue;
            }
#else
            uint64_t v = vc_ld_u64(p + i);
            uint64_t x = v ^ 0x8080808080808080ULL; /* escape bytes become 0x00 */
            if (!((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL)) {
                for (int j = 0; j < 8; j++) {
                    prev = (uint16_t)(prev + (uint16_t)(int16_t)(int8_t)(uint8_t)(v >> (8 * j)));
                    out[k + j] = (int16_t)prev;
                }
                k += 8;
                i += 8;
                continue;
            }
#endif
        }
        if (i >= avail) return -1;
        uint8_t b = p[i];
        if (b == 0x80) {
            if (i + 3 > avail) return -1;
            prev = vc_ld_u16(p + i + 1);
            i += 3;
        } else {
            prev = (uint16_t)(prev + (uint16_t)(int16_t)(int8_t)b);
            i += 1;
        }
        out[k++] = (int16_t)prev;
    }
    return (ptrdiff_t)i;
}

/* Encode n samples into out (room for 3*n bytes at least). Returns bytes written. */
static inline size_t vc_delta8(const int16_t *x, uint32_t n, uint8_t *out) {
    vc_st_u16(out, (uint16_t)x[0]);
    size_t o = 2;
    for (uint32_t k = 1; k < n; k++) {
        int32_t d = (int32_t)x[k] - (int32_t)x[k - 1];
        if (d >= -127 && d <= 127) {
            out[o++] = (uint8_t)(int8_t)d;
        } else {
            out[o] = 0x80;
            vc_st_u16(out + o + 1, (uint16_t)x[k]);
            o += 3;
        }
    }
    return o;
}

/* Position of the next "VC" at or after start, or n if none. */
static inline size_t vc_find_magic(const uint8_t *p, size_t start, size_t n) {
    while (start + 1 < n) {
        const uint8_t *q = memchr(p + start, 'V', n - start - 1);
        if (!q) return n;
        size_t i = (size_t)(q - p);
        if (p[i + 1] == 'C') return i;
        start = i + 1;
    }
    return n;
}

#endif /* VC_WIRE_H */
