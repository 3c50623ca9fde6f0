/*
 * selfcheck.c - checks the library against golden test vectors (format: include/pcn_golden.h),
 * so a device without Python can verify its build (spec clause 12).
 *
 * Usage: pcn_selfcheck FILE.pcng...
 * Every file is run with every ISA this CPU supports and with 1 and 2 threads; outputs must be
 * within the bound stored in the file, and the 1- and 2-thread outputs bit-identical.
 * Exit status: 0 all passed, 1 a check failed, 2 usage or file error.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "parcnetv2.h"
#include "pcn_golden.h"

typedef struct {
    char name[17];
    uint32_t dtype, ndim;
    uint64_t dims[4], count;
    void *data;
} garray;

typedef struct {
    uint32_t op, layout, path, flags, narrays;
    uint64_t dim[8], n;
    double c, u;
    garray arr[16];
} gcase;

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static double rdf64(const unsigned char *p) {
    uint64_t v = rd64(p);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

/* Reads one case; returns NULL-terminated error text or NULL on success. */
static const char *load(const char *path, gcase *g) {
    unsigned char h[PCN_GOLDEN_HEADER_BYTES], ah[PCN_GOLDEN_ARRAY_HEADER_BYTES];
    FILE *f = fopen(path, "rb");
    uint32_t i, k;
    memset(g, 0, sizeof *g);
    if (!f) return "cannot open";
    if (fread(h, 1, sizeof h, f) != sizeof h) {
        fclose(f);
        return "truncated header";
    }
    if (memcmp(h, PCN_GOLDEN_MAGIC, 8) != 0) {
        fclose(f);
        return "bad magic";
    }
    if (rd32(h + 8) != PCN_GOLDEN_VERSION) {
        fclose(f);
        return "unsupported version";
    }
    if (rd32(h + 12) != PCN_GOLDEN_BOM) {
        fclose(f);
        return "bad byte-order mark";
    }
    g->op = rd32(h + 16);
    g->layout = rd32(h + 20);
    g->path = rd32(h + 24);
    g->flags = rd32(h + 28);
    for (i = 0; i < 8; i++) g->dim[i] = rd64(h + 32 + 8 * i);
    g->n = rd64(h + 96);
    g->c = rdf64(h + 104);
    g->u = rdf64(h + 112);
    g->narrays = rd32(h + 120);
    if (g->narrays > 16) {
        fclose(f);
        return "too many arrays";
    }
    for (i = 0; i < g->narrays; i++) {
        garray *a = &g->arr[i];
        size_t esz;
        if (fread(ah, 1, sizeof ah, f) != sizeof ah) {
            fclose(f);
            return "truncated array header";
        }
        memcpy(a->name, ah, 16);
        a->name[16] = '\0';
        a->dtype = rd32(ah + 16);
        a->ndim = rd32(ah + 20);
        if (a->ndim < 1 || a->ndim > 4 || (a->dtype != PCN_GOLDEN_F32 && a->dtype != PCN_GOLDEN_F64)) {
            fclose(f);
            return "bad array header";
        }
        a->count = 1;
        for (k = 0; k < 4; k++) {
            a->dims[k] = rd64(ah + 24 + 8 * k);
            if (k < a->ndim) {
                if (a->dims[k] > ((uint64_t)1 << 32) || a->count > ((uint64_t)1 << 32)) {
                    fclose(f);
                    return "array too large";
                }
                a->count *= a->dims[k];
            }
        }
        esz = a->dtype == PCN_GOLDEN_F32 ? 4 : 8;
        a->data = malloc((size_t)a->count * esz + 1);
        if (!a->data) {
            fclose(f);
            return "out of memory";
        }
        if (fread(a->data, esz, (size_t)a->count, f) != (size_t)a->count) {
            fclose(f);
            return "truncated data";
        }
        /* convert from little-endian in place if this host is big-endian */
        {
            const uint32_t probe = 1;
            if (*(const unsigned char *)&probe == 0) {
                unsigned char *p = (unsigned char *)a->data;
                uint64_t e;
                for (e = 0; e < a->count; e++) {
                    unsigned char *q = p + e * esz;
                    size_t b;
                    for (b = 0; b < esz / 2; b++) {
                        unsigned char t = q[b];
                        q[b] = q[esz - 1 - b];
                        q[esz - 1 - b] = t;
                    }
                }
            }
        }
    }
    fclose(f);
    return NULL;
}

static garray *find(gcase *g, const char *name, uint32_t dtype) {
    uint32_t i;
    for (i = 0; i < g->narrays; i++)
        if (strcmp(g->arr[i].name, name) == 0 && g->arr[i].dtype == dtype) return &g->arr[i];
    return NULL;
}

static const pcn_isa isas[] = {PCN_ISA_SCALAR, PCN_ISA_AVX2, PCN_ISA_AVX512, PCN_ISA_NEON};

/* Runs the case once; fills y. Returns the status. */
static pcn_status run(gcase *g, pcn_isa isa, int threads, float *y, pcn_error *e) {
    pcn_options o = pcn_options_default();
    const uint64_t *d = g->dim;
    garray *x = find(g, "x", 1), *w = find(g, "weight", 1), *b = find(g, "bias", 1);
    garray *kh = find(g, "k_h", 1), *kw = find(g, "k_w", 1), *k7 = find(g, "k7", 1);
    o.isa = isa;
    o.threads = threads;
    o.path = (pcn_path)g->path;
    switch (g->op) {
    case PCN_GOLDEN_DWCONV2D:
        if (!x || !w) return PCN_ERR_NULL;
        return pcn_dwconv2d((float *)x->data, (float *)w->data, b ? (float *)b->data : NULL, y, d[0], d[1], d[2], d[3],
                            d[4], d[5], d[6], d[7], (pcn_layout)g->layout, &o, e);
    case PCN_GOLDEN_OVERSIZED:
        if (!x || !kh || !kw) return PCN_ERR_NULL;
        return pcn_oversized_conv((float *)x->data, (float *)kh->data, (float *)kw->data, y, d[0], d[1], d[2], d[3],
                                  d[4], d[5], (pcn_layout)g->layout, &o, e);
    case PCN_GOLDEN_PARC:
        if (!x || !kh || !kw || !k7) return PCN_ERR_NULL;
        return pcn_parc_spatial((float *)x->data, (float *)kh->data, (float *)kw->data, (float *)k7->data, y, d[0],
                                d[1], d[2], d[3], d[4], d[5], (pcn_layout)g->layout, &o, e);
    case PCN_GOLDEN_REPARAM:
        if (!kh || !kw || !k7) return PCN_ERR_NULL;
        return pcn_reparameterize((float *)kh->data, (float *)kw->data, (float *)k7->data, y, d[1], d[4], d[5], e);
    default: return PCN_ERR_ARG;
    }
}

int main(int argc, char **argv) {
    int i, failures = 0, cases = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.pcng...\n", argv[0]);
        return 2;
    }
    printf("%s\n", pcn_build_info());
    for (i = 1; i < argc; i++) {
        gcase g;
        const char *msg = load(argv[i], &g);
        garray *ex, *mag;
        float *y1 = NULL, *y2 = NULL;
        size_t ii, e;
        if (msg) {
            fprintf(stderr, "ERROR %s: %s\n", argv[i], msg);
            return 2;
        }
        ex = find(&g, "expected", 2);
        mag = find(&g, "magnitude", 2);
        if (!ex || !mag || ex->count != mag->count) {
            fprintf(stderr, "ERROR %s: expected/magnitude arrays missing\n", argv[i]);
            return 2;
        }
        y1 = (float *)malloc(sizeof(float) * (size_t)ex->count + 1);
        y2 = (float *)malloc(sizeof(float) * (size_t)ex->count + 1);
        for (ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
            pcn_error err;
            double worst = 0;
            size_t wi = 0;
            int t, ok = 1;
            if (!pcn_isa_available(isas[ii])) continue;
            for (t = 1; t <= 2; t++) {
                float *y = t == 1 ? y1 : y2;
                pcn_status st = run(&g, isas[ii], t, y, &err);
                if (st != PCN_OK) {
                    printf("FAIL %s [%s, %d threads]: status %d: %s\n", argv[i], pcn_isa_name(isas[ii]), t, (int)st,
                           st == PCN_ERR_NULL ? "missing input array" : err.message);
                    ok = 0;
                    break;
                }
            }
            if (ok) {
                const double *r = (const double *)ex->data, *m = (const double *)mag->data;
                const double scale = g.c * sqrt((double)g.n) * g.u;
                for (e = 0; e < ex->count; e++) {
                    double ratio = fabs((double)y1[e] - r[e]) / (scale * m[e] + FLT_MIN);
                    if (!(ratio <= worst)) {
                        worst = ratio;
                        wi = e;
                    }
                }
                if (!(worst <= 1.0)) {
                    printf("FAIL %s [%s]: element %zu: got %.9g expected %.9g (%.3g x the bound)\n", argv[i],
                           pcn_isa_name(isas[ii]), wi, (double)y1[wi], r[wi], worst);
                    ok = 0;
                } else if (memcmp(y1, y2, sizeof(float) * (size_t)ex->count) != 0) {
                    printf("FAIL %s [%s]: 1 and 2 threads differ\n", argv[i], pcn_isa_name(isas[ii]));
                    ok = 0;
                } else {
                    printf("pass %s [%s] worst %.3f of the bound\n", argv[i], pcn_isa_name(isas[ii]), worst);
                }
            }
            cases++;
            failures += !ok;
        }
        free(y1);
        free(y2);
        for (ii = 0; ii < g.narrays; ii++) free(g.arr[ii].data);
    }
    printf("%d runs, %d failures\n", cases, failures);
    return failures ? 1 : 0;
}
