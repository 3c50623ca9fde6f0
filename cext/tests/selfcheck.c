/*
 * selfcheck.c - checks the library against golden test vectors (format: include/pcn_golden.h)
 * and the C model against whole-model golden cases (.pcnm manifests, spec clause 16.7), so a
 * device without Python can verify its build (spec clauses 12 and 16).
 *
 * Usage: pcn_selfcheck FILE.pcng|FILE.pcnm...
 * Kernel vectors run with every ISA this CPU supports and with 1 and 2 threads; outputs must be
 * within the bound stored in the file, and the 1- and 2-thread outputs bit-identical. Model cases
 * run with every ISA and 1, 2 and 3 threads: the logits must be bit-identical across thread
 * counts and agree with the float64 reference's within the manifest's relative tolerance
 * (clause 11.3: max|y - r| <= t * max|r|).
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
#include "pcn_model.h"

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
    pcn_shape4 shape;
    shape.n = d[0], shape.c = d[1], shape.h = d[2], shape.w = d[3];
    o.isa = isa;
    o.threads = threads;
    o.path = (pcn_path)g->path;
    switch (g->op) {
    case PCN_GOLDEN_DWCONV2D: {
        pcn_window win;
        win.kh = d[4], win.kw = d[5], win.sh = win.sw = 1, win.ph = d[6], win.pw = d[7];
        if (!x || !w) return PCN_ERR_NULL;
        return pcn_depthwise((float *)x->data, (float *)w->data, b ? (float *)b->data : NULL, y, shape, win,
                             (pcn_layout)g->layout, &o, e);
    }
    case PCN_GOLDEN_OVERSIZED:
        if (!x || !kh || !kw) return PCN_ERR_NULL;
        return pcn_oversized((float *)x->data, (float *)kh->data, (float *)kw->data, y, shape, d[4], d[5],
                             (pcn_layout)g->layout, &o, e);
    case PCN_GOLDEN_PARC:
        if (!x || !kh || !kw || !k7) return PCN_ERR_NULL;
        return pcn_parc((float *)x->data, (float *)kh->data, (float *)kw->data, (float *)k7->data, y, shape, d[4], d[5],
                        (pcn_layout)g->layout, &o, e);
    case PCN_GOLDEN_REPARAM:
        if (!kh || !kw || !k7) return PCN_ERR_NULL;
        return pcn_reparameterize((float *)kh->data, (float *)kw->data, (float *)k7->data, y, d[1], d[4], d[5], e);
    default: return PCN_ERR_ARG;
    }
}

/* ------------------------------------------------------------------ whole-model cases (.pcnm) */

/* The bytes of a file (at most `limit`), NUL-terminated; NULL on error. */
static unsigned char *slurp(const char *path, size_t limit, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    if (!f) return NULL;
    for (;;) {
        size_t got;
        if (n == cap) {
            unsigned char *nb;
            cap = cap ? 2 * cap : 65536;
            if (cap > limit + 1) cap = limit + 1;
            if (n == cap || !(nb = (unsigned char *)realloc(buf, cap + 1))) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    if (n > limit) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *size = n;
    return buf;
}

typedef struct mcase {
    char weights[512], input[512], expected[512];
    size_t shape[4], classes;
    pcn_oversized_mode mode;
    size_t size;
    double tol;
} mcase;

/* Parses a manifest; NULL on success, else what is wrong. Paths are made relative to its folder. */
static const char *load_manifest(const char *path, mcase *m) {
    size_t n, dirlen = 0;
    unsigned char *text = slurp(path, 1 << 16, &n);
    char *line, *save = NULL;
    int have = 0;
    const char *slash = strrchr(path, '/');
    if (!text) return "cannot read";
    memset(m, 0, sizeof *m);
    if (slash) dirlen = (size_t)(slash - path) + 1;
    for (line = (char *)text; line && *line; line = save) { /* one line at a time */
        save = strchr(line, '\n');
        if (save) *save++ = '\0';
        char key[32], val[400];
        if (line[0] == '#' || sscanf(line, "%31s %399[^\n]", key, val) != 2) continue;
        if (strcmp(key, "pcnm") == 0) {
            if (strcmp(val, "1") != 0) {
                free(text);
                return "unsupported manifest version";
            }
            have |= 1;
        } else if (strcmp(key, "weights") == 0 || strcmp(key, "input") == 0 || strcmp(key, "expected") == 0) {
            char *dst = key[0] == 'w' ? m->weights : key[0] == 'i' ? m->input : m->expected;
            snprintf(dst, 512, "%.*s%s", (int)dirlen, path, val);
            have |= key[0] == 'w' ? 2 : key[0] == 'i' ? 4 : 8;
        } else if (strcmp(key, "shape") == 0) {
            if (sscanf(val, "%zu %zu %zu %zu", &m->shape[0], &m->shape[1], &m->shape[2], &m->shape[3]) == 4) have |= 16;
        } else if (strcmp(key, "oversized") == 0) {
            if (strcmp(val, "fixed") == 0)
                m->mode = PCN_OVERSIZED_FIXED;
            else if (strcmp(val, "interpolate") == 0)
                m->mode = PCN_OVERSIZED_INTERPOLATE;
            else if (sscanf(val, "size %zu", &m->size) == 1)
                m->mode = PCN_OVERSIZED_SIZE;
            else {
                free(text);
                return "bad oversized mode";
            }
            have |= 32;
        } else if (strcmp(key, "classes") == 0) {
            if (sscanf(val, "%zu", &m->classes) == 1) have |= 64;
        } else if (strcmp(key, "relative_tolerance") == 0) {
            if (sscanf(val, "%lf", &m->tol) == 1 && m->tol > 0) have |= 128;
        }
    }
    free(text);
    return have == 255 ? NULL
                       : "manifest lacks a field (pcnm, weights, input, shape, oversized, expected, classes, "
                         "relative_tolerance)";
}

/* Little-endian floats of `size` bytes each from raw into doubles. */
static void from_le(const unsigned char *raw, size_t count, size_t size, double *out) {
    size_t i, b;
    for (i = 0; i < count; i++) {
        unsigned char v[8];
        const uint32_t probe = 1;
        const int little = *(const unsigned char *)&probe == 1;
        for (b = 0; b < size; b++) v[b] = raw[i * size + (little ? b : size - 1 - b)];
        if (size == 4) {
            float f;
            memcpy(&f, v, 4);
            out[i] = f;
        } else {
            memcpy(&out[i], v, 8);
        }
    }
}

/* Runs one model case on every ISA: 0 pass, 1 fail, 2 file error. *runs counts the ISAs run. */
static int model_case(const char *path, int *runs) {
    mcase m;
    const char *msg = load_manifest(path, &m);
    size_t nin, nout, size, i, k;
    unsigned char *raw;
    double *xin, *want;
    float *x, *y[3];
    int ii, rc = 0;
    if (msg) {
        fprintf(stderr, "ERROR %s: %s\n", path, msg);
        return 2;
    }
    nin = m.shape[0] * m.shape[1] * m.shape[2] * m.shape[3];
    nout = m.shape[0] * m.classes;
    xin = (double *)malloc(sizeof(double) * (nin + nout));
    x = (float *)malloc(sizeof(float) * nin);
    want = xin + nin;
    if (!xin || !x) return 2;
    raw = slurp(m.input, (size_t)1 << 32, &size);
    if (!raw || size != 4 * nin) {
        fprintf(stderr, "ERROR %s: input %s is not %zu float32 values\n", path, m.input, nin);
        free(raw);
        free(xin);
        free(x);
        return 2;
    }
    from_le(raw, nin, 4, xin);
    free(raw);
    for (i = 0; i < nin; i++) x[i] = (float)xin[i];
    raw = slurp(m.expected, (size_t)1 << 32, &size);
    if (!raw || size != 8 * nout) {
        fprintf(stderr, "ERROR %s: expected %s is not %zu float64 values\n", path, m.expected, nout);
        free(raw);
        free(xin);
        free(x);
        return 2;
    }
    from_le(raw, nout, 8, want);
    free(raw);
    for (k = 0; k < 3; k++) y[k] = (float *)malloc(sizeof(float) * nout);
    for (ii = 0; ii < (int)(sizeof isas / sizeof isas[0]); ii++) {
        pcn_model_options mo = pcn_model_options_default();
        pcn_plan_options po = pcn_plan_options_default();
        pcn_model *model = NULL;
        pcn_plan *plan = NULL;
        pcn_error e;
        pcn_shape4 in;
        double scale = 0, worst = 0;
        size_t wi = 0;
        int t, ok = 1;
        if (!pcn_isa_available(isas[ii])) continue;
        mo.isa = isas[ii];
        mo.oversized = m.mode;
        mo.oversized_size = m.size;
        po.max_threads = 3;
        in.n = m.shape[0];
        in.c = m.shape[1];
        in.h = m.shape[2];
        in.w = m.shape[3];
        if (pcn_model_load_file(&model, m.weights, &mo, &e) != PCN_OK ||
            pcn_plan_create(&plan, model, in, &po, &e) != PCN_OK) {
            printf("FAIL %s [%s]: %s\n", path, pcn_isa_name(isas[ii]), e.message);
            pcn_model_free(model);
            rc = 1;
            continue;
        }
        for (t = 1; t <= 3 && ok; t++) {
            if (pcn_plan_run(plan, x, nin, y[t - 1], nout, t, &e) != PCN_OK) {
                printf("FAIL %s [%s, %d threads]: %s\n", path, pcn_isa_name(isas[ii]), t, e.message);
                ok = 0;
            } else if (t > 1 && memcmp(y[0], y[t - 1], nout * sizeof(float)) != 0) {
                printf("FAIL %s [%s]: 1 and %d threads differ\n", path, pcn_isa_name(isas[ii]), t);
                ok = 0;
            }
        }
        if (ok) {
            for (i = 0; i < nout; i++)
                if (fabs(want[i]) > scale) scale = fabs(want[i]);
            for (i = 0; i < nout; i++) {
                const double d = fabs((double)y[0][i] - want[i]);
                if (!(d <= worst)) {
                    worst = d;
                    wi = i;
                }
            }
            if (!(worst <= m.tol * scale)) {
                printf("FAIL %s [%s]: logit %zu: got %.9g expected %.9g, |error| %.3g > %.3g x max|logit| %.3g\n", path,
                       pcn_isa_name(isas[ii]), wi, (double)y[0][wi], want[wi], worst, m.tol, scale);
                ok = 0;
            } else {
                printf("pass %s [%s] max|error| / max|logit| = %.3g (tolerance %.3g), threads 1-3 bit-identical\n",
                       path, pcn_isa_name(isas[ii]), worst / scale, m.tol);
            }
        }
        if (!ok) rc = 1;
        (*runs)++;
        pcn_plan_free(plan);
        pcn_model_free(model);
    }
    for (k = 0; k < 3; k++) free(y[k]);
    free(xin);
    free(x);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int main(int argc, char **argv) {
    int i, failures = 0, cases = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.pcng|FILE.pcnm...\n", argv[0]);
        return 2;
    }
    printf("%s\n", pcn_build_info());
    for (i = 1; i < argc; i++) {
        gcase g;
        const char *msg = ends_with(argv[i], ".pcnm") ? NULL : load(argv[i], &g);
        garray *ex, *mag;
        float *y1 = NULL, *y2 = NULL;
        size_t ii, e;
        if (ends_with(argv[i], ".pcnm")) {
            int runs = 0, rc = model_case(argv[i], &runs);
            if (rc == 2) return 2;
            failures += rc;
            cases += runs;
            continue;
        }
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
