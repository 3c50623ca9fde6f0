/*
 * predict.c - pcn_predict: ParCNetV2 inference without Python (spec clause 16.6).
 *
 *   pcn_predict [options] WEIGHTS.safetensors IMAGE
 *
 * IMAGE is a binary PPM (P6, maxval 255), preprocessed as the official evaluation does (shorter
 * side resized to 256 with Pillow's bicubic filter, centre 224 x 224 crop, ImageNet mean and std;
 * pcn_image.h), or raw little-endian float32 NCHW data (--shape N,3,H,W; default 1,3,S,S from the
 * file size). Prints the top-K classes per image with their softmax probability (float64) and
 * logit. Non-finite input values and non-finite logits are refused (spec clause 1.4). Exit status:
 * 0 success, 2 bad input or usage (one line on stderr).
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#endif
#include "pcn_image.h"
#include "pcn_model.h"

#define PCN_PREDICT_STR2(x) #x
#define PCN_PREDICT_STR(x)  PCN_PREDICT_STR2(x)
#define MAX_FILE_BYTES      ((size_t)1 << 34) /* 16 GiB: an input file larger than this is refused */

static const char *USAGE =
    "usage: pcn_predict [--shape N,3,H,W] [--threads T] [--top K] [--isa NAME] [--interpolate fixed|true|S]\n"
    "                   [--labels FILE] [--logits FILE] [--bench N] [--warmup W] [--spin US]\n"
    "                   WEIGHTS.safetensors IMAGE\n";

static int fail(const char *fmt, const char *a, const char *b) {
    fputs("pcn_predict: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* The whole file (a regular file) into memory; NULL with errno-free message on failure. */
static unsigned char *read_file(const char *path, size_t *size, const char **why) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long end;
    *why = "cannot open";
    if (!f) return NULL;
#if defined(__unix__) || defined(__APPLE__)
    {
        struct stat sb;
        if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
            fclose(f);
            *why = "is not a regular file";
            return NULL;
        }
    }
#endif
    if (fseek(f, 0, SEEK_END) != 0 || (end = ftell(f)) < 0 || (unsigned long)end > MAX_FILE_BYTES ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        *why = "cannot be read (or is larger than 16 GiB)";
        return NULL;
    }
    buf = (unsigned char *)malloc((size_t)end + 1);
    if (!buf || fread(buf, 1, (size_t)end, f) != (size_t)end) {
        free(buf);
        fclose(f);
        *why = "cannot be read";
        return NULL;
    }
    fclose(f);
    *size = (size_t)end;
    return buf;
}

static int parse_size(const char *s, size_t *v) {
    char *end;
    unsigned long long x;
    if (!s || !*s || *s == '-') return 0;
    errno = 0;
    x = strtoull(s, &end, 10);
    if (errno || *end || x > (1ull << 40)) return 0;
    *v = (size_t)x;
    return 1;
}

static int little_endian(void) {
    const unsigned probe = 1;
    return *(const unsigned char *)&probe == 1;
}

static double now_seconds(void) {
#if defined(CLOCK_MONOTONIC)
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* This process's peak resident memory in KiB (Linux: VmHWM, which exec resets, unlike getrusage's
 * ru_maxrss that keeps a forking parent's), or 0 where unknown. */
static size_t peak_rss_kib(void) {
    size_t kib = 0;
#if defined(__linux__)
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0 && sscanf(line + 6, "%zu", &kib) == 1) break;
    fclose(f);
#endif
    return kib;
}

/* Line `index` (0-based) of a labels file, into out; "" when missing. */
static void label_of(const unsigned char *labels, size_t size, size_t index, char *out, size_t cap) {
    size_t i = 0, line = 0, n = 0;
    out[0] = '\0';
    if (!labels) return;
    while (i < size && line < index) {
        if (labels[i++] == '\n') line++;
    }
    while (i < size && labels[i] != '\n' && labels[i] != '\r' && n + 1 < cap) out[n++] = (char)labels[i++];
    out[n] = '\0';
}

int main(int argc, char **argv) {
    const char *weights = NULL, *image = NULL, *labels_path = NULL, *logits_path = NULL, *why;
    size_t shape[4] = {0, 0, 0, 0}, top = 5, bench = 0, warmup = 0, i, n, k, size = 0, labels_size = 0, count;
    int threads = 0, have_shape = 0, status = 0;
    pcn_model_options mo = pcn_model_options_default();
    pcn_plan_options po = pcn_plan_options_default();
    pcn_model *model = NULL;
    pcn_plan *plan = NULL;
    pcn_model_info info;
    pcn_error err;
    unsigned char *data = NULL, *labels = NULL;
    float *x = NULL, *logits = NULL;
    for (i = 1; i < (size_t)argc; i++) {
        const char *a = argv[i], *v = i + 1 < (size_t)argc ? argv[i + 1] : NULL;
        size_t t;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (a[0] == '-' && a[1] == '-' && !v) return fail("option %s needs a value%s", a, "");
        if (strcmp(a, "--shape") == 0) {
            if (sscanf(v, "%zu,%zu,%zu,%zu", &shape[0], &shape[1], &shape[2], &shape[3]) != 4)
                return fail("--shape %s is not N,3,H,W%s", v, "");
            have_shape = 1;
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_size(v, &t) || t < 1 || t > PCN_MAX_THREADS)
                return fail("--threads %s is not an integer in 1..%s", v, PCN_PREDICT_STR(PCN_MAX_THREADS));
            threads = (int)t;
        } else if (strcmp(a, "--top") == 0) {
            if (!parse_size(v, &top) || top < 1) return fail("--top %s is not a positive integer%s", v, "");
        } else if (strcmp(a, "--bench") == 0) {
            if (!parse_size(v, &bench) || bench > 100000)
                return fail("--bench %s is not an integer in 0..100000%s", v, "");
        } else if (strcmp(a, "--spin") == 0) {
            long us;
            char *end;
            errno = 0;
            us = strtol(v, &end, 10);
            if (errno || *end || us < -1 || us > 1000000)
                return fail("--spin %s is not an integer in -1..1000000 (microseconds; -1: sleep at once)%s", v, "");
            po.spin_us = (int)us;
        } else if (strcmp(a, "--warmup") == 0) {
            if (!parse_size(v, &warmup) || warmup > 100000)
                return fail("--warmup %s is not an integer in 0..100000%s", v, "");
        } else if (strcmp(a, "--isa") == 0) {
            int found = 0, q;
            for (q = 0; q < PCN_ISA_COUNT; q++)
                if (strcmp(v, pcn_isa_name((pcn_isa)q)) == 0) {
                    mo.isa = (pcn_isa)q;
                    found = 1;
                }
            if (!found) return fail("--isa %s is not one of auto, scalar, avx2, avx512, neon%s", v, "");
        } else if (strcmp(a, "--interpolate") == 0) {
            if (strcmp(v, "fixed") == 0 || strcmp(v, "false") == 0) {
                mo.oversized = PCN_OVERSIZED_FIXED;
            } else if (strcmp(v, "true") == 0) {
                mo.oversized = PCN_OVERSIZED_INTERPOLATE;
            } else if (parse_size(v, &t)) {
                mo.oversized = PCN_OVERSIZED_SIZE;
                mo.oversized_size = t;
            } else {
                return fail("--interpolate %s is not fixed, true or an odd size%s", v, "");
            }
        } else if (strcmp(a, "--labels") == 0) {
            labels_path = v;
        } else if (strcmp(a, "--logits") == 0) {
            logits_path = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return fail("unknown option %s (see --help)%s", a, "");
        } else {
            if (!weights)
                weights = a;
            else if (!image)
                image = a;
            else
                return fail("unexpected argument %s (see --help)%s", a, "");
            continue;
        }
        i++;
    }
    if (!weights || !image) return fail("expected WEIGHTS.safetensors IMAGE (see --help)%s%s", "", "");
    if (pcn_model_load_file(&model, weights, &mo, &err) != PCN_OK) return fail("%s: %s", weights, err.message);
    pcn_model_get_info(model, &info, &err);
    if (labels_path && !(labels = read_file(labels_path, &labels_size, &why))) {
        pcn_model_free(model);
        return fail("labels file %s %s", labels_path, why);
    }
    if (!(data = read_file(image, &size, &why))) {
        status = fail("%s %s", image, why);
        goto done;
    }
    if (size >= 2 && data[0] == 'P' && data[1] == '6') { /* a PPM image */
        size_t w, h;
        const unsigned char *px;
        if (have_shape) {
            status = fail("%s is a PPM image: --shape is for raw float32 input%s", image, "");
            goto done;
        }
        if (pcn_ppm_parse(data, size, &w, &h, &px, &err) != PCN_OK) {
            status = fail("%s: %s", image, err.message);
            goto done;
        }
        shape[0] = 1;
        shape[1] = 3;
        shape[2] = shape[3] = 224;
        x = (float *)malloc(sizeof(float) * 3 * 224 * 224);
        if (!x || pcn_image_preprocess(px, w, h, 256, 224, x, &err) != PCN_OK) {
            status = fail("%s: %s", image, x ? err.message : "out of memory");
            goto done;
        }
    } else { /* raw float32 NCHW */
        if (size % 4) {
            status = fail("%s is neither a PPM image (P6) nor raw float32 data (its size is not a multiple of 4)%s",
                          image, "");
            goto done;
        }
        count = size / 4;
        if (!have_shape) {
            size_t s = (size_t)sqrt((double)(count / 3));
            while (s * s * 3 < count) s++;
            if (s * s * 3 != count) {
                status = fail("%s: %s float32 values are not 3*S*S; give --shape N,3,H,W", image, "its");
                goto done;
            }
            shape[0] = 1;
            shape[1] = 3;
            shape[2] = shape[3] = s;
        }
        if (shape[0] * shape[1] * shape[2] * shape[3] != count || shape[0] == 0) {
            status = fail("%s: the file holds a different number of float32 values than --shape %s", image, "N,3,H,W");
            goto done;
        }
        x = (float *)malloc(size);
        if (!x) {
            status = fail("%s: out of memory%s", image, "");
            goto done;
        }
        for (i = 0; i < count; i++) { /* little-endian in the file */
            unsigned char b[4];
            memcpy(b, data + 4 * i, 4);
            if (!little_endian()) {
                unsigned char s0 = b[0], s1 = b[1];
                b[0] = b[3];
                b[1] = b[2];
                b[2] = s1;
                b[3] = s0;
            }
            memcpy(&x[i], b, 4);
            if (!(x[i] == x[i]) || x[i] - x[i] != 0.0f) {
                status = fail("%s holds a non-finite value (NaN or infinity)%s", image, "");
                goto done;
            }
        }
    }
    {
        pcn_shape4 in;
        in.n = shape[0];
        in.c = shape[1];
        in.h = shape[2];
        in.w = shape[3];
        po.max_threads = threads;
        if (pcn_plan_create(&plan, model, in, &po, &err) != PCN_OK) {
            status = fail("%s: %s", image, err.message);
            goto done;
        }
    }
    count = shape[0] * shape[1] * shape[2] * shape[3];
    logits = (float *)malloc(sizeof(float) * shape[0] * info.num_classes);
    if (!logits || pcn_plan_run(plan, x, count, logits, shape[0] * info.num_classes, threads, &err) != PCN_OK) {
        status = fail("run: %s%s", logits ? err.message : "out of memory", "");
        goto done;
    }
    for (i = 0; i < shape[0] * info.num_classes; i++)
        if (!(logits[i] - logits[i] == 0.0f)) { /* NaN or infinity (spec clause 1.4) */
            status = fail("%s: the logits are not finite (weights with non-finite or extreme values)%s", weights, "");
            goto done;
        }
    if (top > info.num_classes) top = info.num_classes;
    for (n = 0; n < shape[0]; n++) {
        const float *l = logits + n * info.num_classes;
        double mx = l[0], z = 0;
        size_t *best = (size_t *)malloc(top * sizeof(size_t));
        if (!best) {
            status = fail("out of memory%s%s", "", "");
            goto done;
        }
        for (k = 0; k < info.num_classes; k++)
            if (l[k] > mx) mx = l[k];
        for (k = 0; k < info.num_classes; k++) z += exp((double)l[k] - mx);
        for (k = 0; k < top; k++) { /* selection: the k-th largest, lowest index first on ties */
            size_t c, pick = (size_t)-1;
            for (c = 0; c < info.num_classes; c++) {
                size_t q;
                int taken = 0;
                for (q = 0; q < k; q++) taken |= best[q] == c;
                if (!taken && (pick == (size_t)-1 || l[c] > l[pick])) pick = c;
            }
            best[k] = pick;
        }
        if (shape[0] > 1) printf("image %zu\n", n);
        for (k = 0; k < top; k++) {
            char name[128];
            label_of(labels, labels_size, best[k], name, sizeof name);
            printf("%zu  class %zu  p=%.6f  logit=%.6g%s%s\n", k + 1, best[k], exp((double)l[best[k]] - mx) / z,
                   (double)l[best[k]], name[0] ? "  " : "", name);
        }
        free(best);
    }
    if (logits_path) {
        FILE *f = fopen(logits_path, "wb");
        if (!f || fwrite(logits, sizeof(float), shape[0] * info.num_classes, f) != shape[0] * info.num_classes ||
            fclose(f) != 0) {
            status = fail("cannot write %s%s", logits_path, "");
            goto done;
        }
    }
    if (bench) {
        double *t = (double *)malloc(bench * sizeof(double));
        if (!t) {
            status = fail("out of memory%s%s", "", "");
            goto done;
        }
        for (i = 0; i < warmup + bench; i++) {
            const double t0 = now_seconds();
            if (pcn_plan_run(plan, x, count, logits, shape[0] * info.num_classes, threads, &err) != PCN_OK) {
                free(t);
                status = fail("a run of the benchmark failed: %s%s", err.message, "");
                goto done;
            }
            if (i >= warmup) t[i - warmup] = now_seconds() - t0;
        }
        qsort(t, bench, sizeof(double), cmp_double);
        printf("bench: %zu runs, batch %zu, %zux%zu, threads %d, isa %s: median %.3f ms, min %.3f ms, p10 %.3f ms, "
               "p90 %.3f ms, peak RSS %.1f MiB\n",
               bench, shape[0], shape[2], shape[3], threads, pcn_isa_name(info.isa), 1e3 * t[bench / 2], 1e3 * t[0],
               1e3 * t[bench / 10], 1e3 * t[(bench * 9) / 10 < bench ? (bench * 9) / 10 : bench - 1],
               (double)peak_rss_kib() / 1024.0);
        free(t);
    }
done:
    free(logits);
    free(x);
    free(data);
    free(labels);
    pcn_plan_free(plan);
    pcn_model_free(model);
    return status;
}
