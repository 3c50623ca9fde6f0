/*
 * fuzz.c - a seeded random-input harness over every public C entry point (spec clause 16.8; issue
 * 10), built with AddressSanitizer and UBSan by `make fuzz`:
 *
 *   pcn_fuzz [--seconds S] [--runs N] [--seed X]
 *
 * Each iteration picks an entry point and calls it either with consistent arguments (sizes that
 * match exactly-sized buffers, so any read or write past them is an ASan error) and random
 * options (ISAs, threads, paths, workspaces, some invalid), or with hostile ones: NULLs, zero
 * sizes, sizes whose products overflow or exceed what any buffer can hold, bad enums, kernels of
 * 0 or 256, workspaces too small, and mutated .safetensors / PPM bytes. A call must return a
 * pcn_status in range with a NUL-terminated message (never crash, hang or leak), hostile sizes
 * must be refused, and *out must be NULL whenever a constructor fails. Exit 0 when the budget
 * ends without a finding; a sanitizer report or a failed invariant exits non-zero.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pcn_fused.h"
#include "pcn_gemm.h"
#include "pcn_image.h"
#include "pcn_model.h"
#include "st_writer.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static size_t below(size_t n) {
    return n ? (size_t)(rnd() % n) : 0;
}
static int coin(int percent) {
    return (int)below(100) < percent;
}

static long g_calls[32], g_errors[32], g_findings;
static const char *g_names[32];

/* The invariants every call meets. */
static void check_status(int entry, pcn_status st, const pcn_error *e) {
    g_calls[entry]++;
    if ((int)st < 0 || (int)st > PCN_ERR_BUSY) {
        fprintf(stderr, "FINDING %s: status %d out of range\n", g_names[entry], (int)st);
        g_findings++;
    }
    if (st != PCN_OK) {
        g_errors[entry]++;
        if (e->code != st || memchr(e->message, '\0', sizeof e->message) == NULL || e->message[0] == '\0') {
            fprintf(stderr, "FINDING %s: status %d with error code %d / message missing\n", g_names[entry], (int)st,
                    (int)e->code);
            g_findings++;
        }
    }
}
static void must_fail(int entry, pcn_status st, const char *why) {
    if (st == PCN_OK) {
        fprintf(stderr, "FINDING %s: accepted %s\n", g_names[entry], why);
        g_findings++;
    }
}

/* A size that no buffer of the harness can back: its products overflow or pass PTRDIFF_MAX / 16. */
static size_t hostile_size(void) {
    static const size_t v[] = {SIZE_MAX, SIZE_MAX / 2, SIZE_MAX / 3 + 7, (size_t)1 << 62, ((size_t)1 << 61) + 1};
    return v[below(sizeof v / sizeof v[0])];
}
static size_t small(size_t max) {
    return 1 + below(max);
}

static pcn_options random_options(void *ws, size_t ws_cap) {
    pcn_options o = pcn_options_default();
    static const int threads[] = {0, 1, 2, 3, -1, 64, 0x7fffffff};
    o.threads = threads[below(sizeof threads / sizeof threads[0])];
    if (o.threads > 4) o.threads = coin(50) ? 4 : o.threads; /* valid but costly: keep it rare */
    o.isa = (pcn_isa)(coin(90) ? (int)below(PCN_ISA_COUNT) : (int)(rnd() % 1000) - 500);
    o.path = (pcn_path)(coin(90) ? (int)below(3) : 7);
    o.nchw_kernel = coin(90) ? (int)below(3) : -2;
    if (coin(20)) {
        o.workspace = ws;
        o.workspace_bytes = below(ws_cap + 1);
    } else if (coin(3)) {
        o.workspace_bytes = 64; /* NULL workspace with a size: an error */
    }
    return o;
}

/* Elements a buffer for a*b*c*d needs, or a small dummy count when the product is beyond what the
 * harness allocates (such sizes must be refused before any access). */
#define BIG ((size_t)1 << 22)
static size_t elems(size_t a, size_t b, size_t c, size_t d) {
    size_t r = 1;
    const size_t f[4] = {a, b, c, d};
    int i;
    for (i = 0; i < 4; i++) {
        if (f[i] != 0 && r > BIG / f[i]) return 64;
        r *= f[i];
    }
    return r + 1;
}

/* Elements of a rows x cols matrix with leading dimension ld (its last row needs only cols). */
static size_t mat(size_t rows, size_t cols, size_t ld) {
    if (rows == 0 || cols > BIG) return 64;
    if (rows == 1) return cols + 1;
    if (ld > BIG || rows > BIG || (rows - 1) > BIG / (ld ? ld : 1)) return 64;
    return (rows - 1) * ld + cols + 1;
}

static float *fbuf(size_t n) {
    float *p = (float *)malloc((n ? n : 1) * sizeof(float));
    size_t i;
    for (i = 0; i < n; i++) p[i] = (float)check_rand(&rng_state) * 4.0f;
    return p;
}

/* ------------------------------------------------------------------ convolutions (parcnetv2.h) */

static void fuzz_conv(int entry) {
    static char ws[1 << 16];
    pcn_error e;
    pcn_options o = random_options(ws, sizeof ws);
    size_t N = small(2), C = small(20), H = small(12), W = small(12), KH = small(9), KW = small(9), PH = below(5),
           PW = below(5);
    const pcn_layout layout = (pcn_layout)(coin(95) ? (int)below(2) : 5);
    const int hostile = coin(30);
    float *x, *y, *w, *k2;
    pcn_status st;
    if (hostile) { /* one size beyond any buffer, the others small */
        switch (below(6)) {
        case 0: N = hostile_size(); break;
        case 1: C = hostile_size(); break;
        case 2: H = hostile_size(); break;
        case 3: W = hostile_size(); break;
        case 4: KH = coin(50) ? 0 : 256 + below(1000); break;
        default: PH = hostile_size(); break;
        }
    }
    x = fbuf(elems(N, C, H, W));
    w = fbuf(elems(C, KH + 1, KW + 1, 1));
    k2 = fbuf(elems(C, KW + 49, 1, 1));
    y = fbuf(entry == 0 ? elems(N, C, H + 2 * PH + 2, W + 2 * PW + 2) : elems(N, C, H + KH + 2, W + KW + 2));
    switch (entry) {
    case 0:
        if (coin(50)) {
            pcn_shape4 sh;
            pcn_window win;
            sh.n = N, sh.c = C, sh.h = H, sh.w = W;
            win.kh = KH, win.kw = KW, win.sh = coin(95) ? 1 : below(3), win.sw = 1, win.ph = PH, win.pw = PW;
            st = pcn_depthwise(coin(3) ? NULL : x, w, coin(50) ? k2 : NULL, y, sh, win, layout, &o, &e);
        } else {
            st = pcn_depthwise(coin(3) ? NULL : x, w, coin(50) ? k2 : NULL, y, s4(N, C, H, W), win1(KH, KW, PH, PW),
                               layout, &o, &e);
        }
        break;
    case 1: st = pcn_oversized(x, w, k2, coin(3) ? NULL : y, s4(N, C, H, W), KH, KW, layout, &o, &e); break;
    case 2: {
        const size_t kv = KH | 1, kw = KW | 1;
        float *k7 = fbuf(elems(C, 49, 1, 1));
        st = pcn_parc(x, w, k2, k7, y, s4(N, C, H, W), hostile && KH == 0 ? 0 : kv, kw, layout, &o, &e);
        free(k7);
        break;
    }
    case 3: {
        const size_t kv = KH | 1, kw = KW | 1;
        float *k7 = fbuf(elems(C, 49, 1, 1)), *out = fbuf(elems(C, kv + 7, kw + 7, 1));
        st = pcn_reparameterize(w, k2, k7, out, C, hostile && KH > 255 ? KH : kv, kw, &e);
        free(k7);
        free(out);
        break;
    }
    default: { /* the workspace queries and the cost model */
        size_t r;
        double cs, cd;
        pcn_error e2;
        r = pcn_oversized_workspace(s4(N, C, H, W), KH, KW, layout, &o, &e2);
        r += pcn_parc_workspace(s4(N, C, H, W), KH | 1, KW | 1, layout, &o, &e2);
        r = pcn_depthwise_workspace(s4(N, C, H, W), win1(KH, KW, PH, PW), layout, coin(20) ? NULL : &o, &e);
        st = r ? PCN_OK : e.code;
        (void)pcn_parc_path(s4(N, C, H, W), KH, KW, coin(50) ? &cs : NULL, &cd);
        (void)r;
        break;
    }
    }
    check_status(entry, st, &e);
    if (hostile && entry <= 2 &&
        (N > 1000 || C > 1000 || H > 1000 || W > 1000 || KH == 0 || KH > 255 || (entry == 0 && PH > 1000)))
        must_fail(entry, st, "a hostile size");
    free(x), free(w), free(k2), free(y);
}

/* ------------------------------------------------------------------ fused kernels (pcn_fused.h) */

static void fuzz_fused(int entry) {
    static char ws[256];
    pcn_error e;
    pcn_options o = random_options(ws, sizeof ws);
    size_t rows = small(40), C = small(40), ld = C + below(4), HW = small(10), K = small(30);
    const int hostile = coin(30);
    float *x, *y, *s, *v, *v2, *h;
    pcn_status st;
    o.workspace = NULL; /* the fused kernels take no workspace, but a size without pointer is an error */
    if (coin(5))
        o.workspace_bytes = 8;
    else
        o.workspace_bytes = 0;
    if (hostile) {
        switch (below(4)) {
        case 0: rows = coin(30) ? 0 : hostile_size(); break;
        case 1: C = coin(30) ? 0 : hostile_size(); break;
        case 2: ld = coin(50) ? C - 1 : hostile_size(); break;
        default: K = coin(30) ? 0 : hostile_size(); break;
        }
    }
    x = fbuf(hostile ? mat(rows, C, ld) : mat(rows, 2 * C, 2 * ld) + rows * ld);
    y = fbuf(mat(rows, C, ld));
    s = fbuf(mat(rows, C, ld));
    v = fbuf(elems(2 * C + 1, 1, 1, 1));
    v2 = fbuf(elems(2 * C + 1, 1, 1, 1));
    h = fbuf(mat(rows, 2 * C, 2 * ld));
    switch (entry) {
    case 5: {
        const size_t n = hostile ? (coin(50) ? 0 : hostile_size()) : mat(rows, C, ld) - 1;
        st = pcn_erf(coin(3) ? NULL : x, y, n, &o, &e);
        if (hostile) must_fail(entry, st, "an erf of 0 or too many elements");
        break;
    }
    case 6: st = pcn_bias_gelu(x, ld, coin(50) ? v : NULL, y, ld, rows, C, &o, &e); break;
    case 7: st = pcn_gate(x, ld, coin(50) ? v : NULL, s, ld, y, ld, rows, C, &o, &e); break;
    case 8: st = pcn_gelu_gate(h, 2 * ld, coin(50) ? v : NULL, y, ld, rows, C, &o, &e); break;
    case 9: st = pcn_layer_norm_general(x, ld, v, y, ld, rows, C, 1e-6f, &o, &e); break;
    case 10:
        st = pcn_residual_norm(x, ld, coin(50) ? v : NULL, s, ld, coin(50) ? v2 : NULL, y, ld, rows, C, 1e-6f, &o, &e);
        break;
    case 11: st = pcn_layer_norm(x, ld, v, v2, y, ld, rows, C, 1e-6f, &o, &e); break;
    case 12: {
        const size_t n = hostile ? rows : small(3);
        float *feat = fbuf(elems(n, C, 1, 1)), *logits = fbuf(elems(n, K, 1, 1));
        float *xx = fbuf(elems(n, HW, C, 1)), *wt = fbuf(elems(C, K, 1, 1)), *kb = fbuf(elems(K, 1, 1, 1));
        st = pcn_head(xx, n, HW, C, v, v2, 1e-6f, wt, coin(50) ? kb : NULL, K, feat, logits, &o, &e);
        free(feat), free(logits), free(xx), free(wt), free(kb);
        break;
    }
    case 13: {
        const size_t n = small(2), c = small(5), hh = small(9), ww = small(9), kh = hostile ? 256 : small(5),
                     kw = small(5), sh = hostile && coin(50) ? 0 : small(3), sw = small(3), ph = below(3),
                     pw = below(3);
        const size_t oh = hh + 2 * ph >= kh ? (hh + 2 * ph - kh) / (sh ? sh : 1) + 1 : 0;
        const size_t ow = ww + 2 * pw >= kw ? (ww + 2 * pw - kw) / sw + 1 : 0;
        float *xx = fbuf(n * c * hh * ww), *cols = fbuf(elems(n * oh, ow, kh * kw * c + 1, 1));
        st = pcn_patches(xx, cols, s4(n, c, hh, ww), pwin(kh, kw, sh, sw, ph, pw), (pcn_layout)below(2), (int)below(2),
                         &o, &e);
        free(xx), free(cols);
        if (hostile) must_fail(13, st, "a kernel of 256 or a stride of 0");
        break;
    }
    default: { /* the output-shape queries a binding sizes its arrays with */
        pcn_shape4 in = s4(small(3), C, small(9), small(9)), got;
        pcn_window w = pwin(small(5), small(5), 1, 1, below(3), below(3));
        size_t r = 0, c = 0;
        if (hostile) w.kh = coin(50) ? 0 : 256;
        switch (below(3)) {
        case 0: st = pcn_depthwise_shape(in, w, coin(3) ? NULL : &got, &e); break;
        case 1: st = pcn_oversized_shape(in, w.kh, w.kw, coin(3) ? NULL : &got, &e); break;
        default:
            w.sh = hostile && coin(50) ? 0 : small(3);
            st = pcn_patches_shape(in, w, (int)below(3), &r, coin(3) ? NULL : &c, &e);
            break;
        }
        check_status(entry, st, &e);
        if (hostile) must_fail(entry, st, "a kernel of 0 or 256");
        free(x), free(y), free(s), free(v), free(v2), free(h);
        return;
    }
    }
    check_status(entry, st, &e);
    if (hostile && entry != 13 && entry != 5 && (rows > 100000 || C > 100000 || (ld < C && entry >= 6 && entry <= 11)))
        must_fail(entry, st, "a hostile size");
    free(x), free(y), free(s), free(v), free(v2), free(h);
}

/* ------------------------------------------------------------------ packed GEMM (pcn_gemm.h) */

static void fuzz_gemm(int entry) {
    static char ws[1 << 14];
    pcn_error e;
    pcn_options o = random_options(ws, sizeof ws);
    size_t M = small(40), K = small(70), N = small(70);
    const int tr = coin(95) ? (int)below(2) : 3, hostile = coin(25);
    const size_t ldb = (tr == 1 ? K : N) + below(3);
    float *a, *b, *c, *bias;
    pcn_packed_matrix *pm = (pcn_packed_matrix *)&e; /* must be overwritten with NULL on failure */
    pcn_status st;
    if (hostile) {
        if (coin(50))
            K = coin(30) ? 0 : hostile_size();
        else
            N = coin(30) ? 0 : hostile_size();
    }
    b = fbuf(elems(tr == 1 ? N : K, ldb, 1, 1));
    bias = fbuf(elems(N, 1, 1, 1));
    st = pcn_gemm_pack(coin(2) ? NULL : &pm, coin(2) ? NULL : b, ldb, tr, coin(50) ? bias : NULL, K, N,
                       (pcn_isa)(coin(95) ? (int)below(PCN_ISA_COUNT) : 77), &e);
    check_status(entry, st, &e);
    if (hostile) must_fail(entry, st, "a hostile K or N");
    if (st != PCN_OK) {
        if (pm != (pcn_packed_matrix *)&e && pm != NULL) {
            fprintf(stderr, "FINDING pcn_gemm_pack: *out not NULL after an error\n");
            g_findings++;
        }
        free(b), free(bias);
        return;
    }
    if (coin(20)) M = coin(30) ? 0 : hostile_size();
    a = fbuf(M < 1000 ? M * (K + 2) : 64);
    c = fbuf(M < 1000 ? M * (N + 2) : 64);
    st = pcn_gemm_packed(pm, a, K + below(3), c, N + below(3), M, &o, &e);
    check_status(entry, st, &e);
    if (M == 0 || M > 1000) must_fail(entry, st, "a hostile M");
    (void)pcn_gemm_workspace_size(pm, M, &o, &e);
    pcn_gemm_free(pm);
    free(a), free(b), free(c), free(bias);
}

/* ------------------------------------------------------------------ weights files and the model */

static unsigned char *g_valid; /* a valid small model file */
static size_t g_valid_size;

static unsigned char *mutate(size_t *size) {
    unsigned char *d = (unsigned char *)malloc(g_valid_size + 4096);
    size_t n = g_valid_size, hlen = 0, i, k, edits = 1 + below(4);
    memcpy(d, g_valid, n);
    for (k = 0; k < 8; k++) hlen |= (size_t)d[k] << (8 * k);
    for (i = 0; i < edits && n > 0; i++) {     /* a truncation may leave nothing to edit */
        const size_t at = 8 + below(hlen + 8); /* mostly inside the header */
        switch (below(8)) {
        case 0: d[at % n] ^= (unsigned char)(1u << below(8)); break;
        case 1: {
            static const char tokens[] = "{}[]\":,0123456789-.eE \\u";
            d[at % n] = (unsigned char)tokens[below(sizeof tokens - 1)];
            break;
        }
        case 2: /* truncate */ n = below(n + 1); break;
        case 3: { /* delete a range */
            const size_t len = below(40), p = at % (n ? n : 1);
            if (p + len <= n) {
                memmove(d + p, d + p + len, n - p - len);
                n -= len;
            }
            break;
        }
        case 4: { /* duplicate a range (a repeated entry) */
            const size_t len = below(120), p = at % (n ? n : 1);
            if (p + len <= n && n + len <= g_valid_size + 4096) {
                memmove(d + p + len, d + p, n - p);
                n += len;
            }
            break;
        }
        case 5: /* the header length field */
            for (k = 0; k < 8; k++) d[k] = (unsigned char)(coin(50) ? rnd() : d[k]);
            break;
        case 6: { /* a digit run replaced by a huge number */
            size_t p = at % (n ? n : 1);
            while (p < n && (d[p] < '0' || d[p] > '9')) p++;
            for (k = 0; k < 6 && p + k < n && d[p + k] >= '0' && d[p + k] <= '9'; k++) d[p + k] = '9';
            break;
        }
        default: /* grow the data section */
            if (n + 8 <= g_valid_size + 4096) n += 8;
            break;
        }
    }
    *size = n;
    return d;
}

static void fuzz_model(int entry) {
    pcn_error e;
    pcn_model *m = (pcn_model *)&e;
    pcn_model_options mo = pcn_model_options_default();
    pcn_status st;
    size_t size;
    unsigned char *d;
    if (coin(10)) {
        d = (unsigned char *)memcpy(malloc(g_valid_size), g_valid, g_valid_size);
        size = g_valid_size;
    } else {
        d = mutate(&size);
    }
    if (coin(10)) mo.isa = (pcn_isa)below(PCN_ISA_COUNT + 2);
    if (coin(20)) {
        mo.oversized = (pcn_oversized_mode)below(4);
        mo.oversized_size = below(300);
    }
    if (entry == 16 && coin(20)) { /* the file route */
        char path[64];
        FILE *f;
        snprintf(path, sizeof path, "/tmp/pcn_fuzz_%ld.safetensors", (long)g_calls[entry] % 4);
        f = fopen(path, "wb");
        if (f) {
            fwrite(d, 1, size, f);
            fclose(f);
            st = pcn_model_load_file(&m, path, &mo, &e);
            remove(path);
        } else {
            st = pcn_model_load_memory(&m, d, size, &mo, &e);
        }
    } else {
        st = pcn_model_load_memory(&m, d, size, &mo, &e);
    }
    check_status(entry, st, &e);
    if (st != PCN_OK && m != NULL) {
        fprintf(stderr, "FINDING pcn_model_load: *out not NULL after an error\n");
        g_findings++;
    }
    if (st == PCN_OK) { /* plans with random shapes, runs with random counts */
        pcn_shape4 in;
        pcn_plan *p = NULL;
        pcn_plan_options po = pcn_plan_options_default();
        pcn_model_info info;
        in.n = coin(80) ? small(2) : coin(50) ? 0 : hostile_size();
        in.c = coin(90) ? 3 : below(6);
        in.h = coin(90) ? small(40) : coin(50) ? below(3) : hostile_size();
        in.w = coin(90) ? small(40) : below(3);
        po.max_threads = (int)below(4);
        po.path = (pcn_path)below(coin(95) ? 3 : 9);
        pcn_model_get_info(m, &info, &e);
        st = pcn_plan_create(&p, m, in, &po, &e);
        check_status(17, st, &e);
        if (st == PCN_OK) {
            const size_t nx = in.n * in.c * in.h * in.w, nl = in.n * info.num_classes;
            float *x = fbuf(nx), *y = fbuf(nl);
            const size_t bx = coin(90) ? nx : nx + 1 - 2 * below(2);
            st = pcn_plan_run(p, coin(3) ? NULL : x, bx, y, nl, (int)below(5) - 1, &e);
            check_status(18, st, &e);
            free(x), free(y);
            pcn_plan_free(p);
        }
        pcn_model_free(m);
    }
    free(d);
}

/* pcn_model_from_reader's reader over the fuzzed array: the tensor's data (at least `bytes`: the
 * dtypes drawn are never wider than the float32 data), or a failure now and then. */
static int fuzz_read(void *context, size_t index, void *data, size_t bytes) {
    const pcn_tensor *t = (const pcn_tensor *)context;
    if (!t[index].data || coin(2)) return -1;
    memcpy(data, t[index].data, bytes);
    return 0;
}

static void fuzz_tensors(int entry) {
    static const size_t depths[4] = {1, 0, 1, 1}, dims[4] = {4, 6, 8, 10}, kernels[4] = {5, 3, 3, 1};
    st_model sm;
    pcn_tensor *t;
    pcn_model *m = (pcn_model *)&sm;
    pcn_error e;
    pcn_status st;
    size_t i, k, n;
    st_model_make(&sm, 4, depths, dims, kernels, 3, rnd());
    n = sm.n;
    t = (pcn_tensor *)calloc(n + 2, sizeof *t);
    for (i = 0; i < n; i++) {
        t[i].name = sm.t[i].name;
        t[i].dtype = PCN_DTYPE_F32;
        t[i].ndim = sm.t[i].ndim;
        for (k = 0; k < t[i].ndim; k++) t[i].shape[k] = sm.t[i].shape[k];
        t[i].data = sm.t[i].data;
    }
    for (k = below(4); k > 0; k--) { /* corrupt a few entries (never beyond their data) */
        pcn_tensor *v = &t[below(n)];
        switch (below(6)) {
        case 0: v->name = NULL; break;
        case 1:
            v->dtype = (pcn_dtype)below(8);
            v->dtype = v->dtype == PCN_DTYPE_F64 ? PCN_DTYPE_F32 : v->dtype;
            break;
        case 2: v->ndim = coin(50) ? 9 : 0; break;
        case 3:
            v->shape[0] = hostile_size();
            v->data = NULL;
            break;
        case 4: v->data = NULL; break;
        default: v->name = t[below(n)].name; break;
        }
    }
    if (coin(50))
        st = pcn_model_from_tensors(&m, coin(2) ? NULL : t, coin(5) ? n + 2 : n - below(2), NULL, &e);
    else
        st = pcn_model_from_reader(&m, coin(2) ? NULL : t, coin(5) ? n + 2 : n - below(2), coin(2) ? NULL : fuzz_read,
                                   t, NULL, &e);
    check_status(entry, st, &e);
    if (st != PCN_OK && m != NULL) {
        fprintf(stderr, "FINDING pcn_model_from_tensors: *out not NULL after an error\n");
        g_findings++;
    }
    pcn_model_free(st == PCN_OK ? m : NULL);
    free(t);
    st_model_free(&sm);
}

/* ------------------------------------------------------------------ images (pcn_image.h) */

static void fuzz_image(int entry) {
    char head[96];
    size_t w = small(40), h = small(40), len, total, pw, ph;
    const unsigned char *px;
    unsigned char *d;
    pcn_error e;
    pcn_status st;
    int maxval = coin(90) ? 255 : (int)below(70000);
    len = (size_t)snprintf(head, sizeof head, coin(10) ? "P6\n# c\n%zu %zu\n%d\n" : "P6 %zu %zu %d\n",
                           coin(95) ? w : w + 100000, h, maxval);
    total = len + w * h * 3 - (coin(10) ? below(w * h * 3 + 1) : 0);
    d = (unsigned char *)malloc(total + 1);
    memcpy(d, head, len < total ? len : total);
    if (total > len) memset(d + len, (int)below(256), total - len);
    if (coin(20)) d[below(len)] ^= (unsigned char)(1u << below(8));
    st = pcn_ppm_parse(d, total, &pw, &ph, &px, &e);
    check_status(entry, st, &e);
    if (st == PCN_OK) {
        const size_t crop = small(32), resize = crop + below(20);
        float *out = fbuf(3 * crop * crop);
        st = pcn_image_preprocess(px, pw, ph, coin(95) ? resize : crop - 1, crop, out, &e);
        check_status(entry, st, &e);
        free(out);
    }
    free(d);
}

int main(int argc, char **argv) {
    double seconds = 60, start;
    long runs = 0, i;
    uint64_t seed = (uint64_t)time(NULL);
    int a;
    st_model sm;
    static const size_t depths[4] = {1, 1, 1, 1}, dims[4] = {4, 6, 8, 10}, kernels[4] = {7, 5, 3, 1};
    for (a = 1; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--seconds") == 0)
            seconds = atof(argv[a + 1]);
        else if (strcmp(argv[a], "--runs") == 0)
            runs = atol(argv[a + 1]);
        else if (strcmp(argv[a], "--seed") == 0)
            seed = strtoull(argv[a + 1], NULL, 10);
    }
    rng_state = seed | 1;
    (void)g_fail, (void)g_checks; /* check.h's counters: this program counts findings */
    printf("pcn_fuzz: seed %llu, %.0f s, %ld runs (0: unlimited); %s\n", (unsigned long long)seed, seconds, runs,
           pcn_build_info());
    st_model_make(&sm, 4, depths, dims, kernels, 5, 7);
    g_valid = st_write(sm.t, sm.n, &g_valid_size);
    st_model_free(&sm);
    {
        static const char *names[] = {"pcn_depthwise",
                                      "pcn_oversized",
                                      "pcn_parc",
                                      "pcn_reparameterize",
                                      "workspace/parc_path",
                                      "pcn_erf",
                                      "pcn_bias_gelu",
                                      "pcn_gate",
                                      "pcn_gelu_gate",
                                      "pcn_layer_norm_general",
                                      "pcn_residual_norm",
                                      "pcn_layer_norm",
                                      "pcn_head",
                                      "pcn_patches",
                                      "shape queries",
                                      "pcn_gemm_pack/packed",
                                      "pcn_model_load",
                                      "pcn_plan_create",
                                      "pcn_plan_run",
                                      "pcn_model_from_*",
                                      "pcn_ppm/image"};
        for (a = 0; a < 21; a++) g_names[a] = names[a];
    }
    start = (double)clock() / CLOCKS_PER_SEC;
    for (i = 0; runs == 0 || i < runs; i++) {
        const int entry = (int)below(20);
        if (entry <= 4)
            fuzz_conv(entry);
        else if (entry <= 14)
            fuzz_fused(entry);
        else if (entry == 15)
            fuzz_gemm(entry);
        else if (entry <= 18)
            fuzz_model(16);
        else if (entry == 19)
            fuzz_tensors(19);
        if (coin(5)) fuzz_image(20);
        if ((i & 63) == 0 && (double)clock() / CLOCKS_PER_SEC - start > seconds) break;
    }
    free(g_valid);
    for (a = 0; a < 21; a++) printf("  %-24s %8ld calls, %8ld refused\n", g_names[a], g_calls[a], g_errors[a]);
    printf("pcn_fuzz: %ld iterations in %.1f s CPU, %ld findings\n", i, (double)clock() / CLOCKS_PER_SEC - start,
           g_findings);
    return g_findings ? 1 : 0;
}
