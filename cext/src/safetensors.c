/*
 * safetensors.c - the header of a .safetensors file (spec clause 13.1; clause 16.1 for what the
 * C loader checks) and the tensor directory every weights source of the model shares.
 *
 * Layout: an 8-byte little-endian length n, n bytes of UTF-8 JSON, then the data section. The
 * JSON is an object mapping tensor names to {"dtype": str, "shape": [int...], "data_offsets":
 * [begin, end]} (other keys ignored), plus an optional "__metadata__" object of strings. The
 * checks are the reference reader's: n <= 100 MiB and within the file, valid UTF-8 and JSON, no
 * duplicate names, known dtypes, integer sizes, every tensor's bytes = prod(shape) * itemsize,
 * offsets inside the data section, and the tensors covering it exactly, without gaps or overlaps.
 * Memory: the directory grows with the header (which the file's size bounds), never with what it
 * declares; nesting is limited to PCN_JSON_MAX_DEPTH.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pcn_model_internal.h"

#define PCN_ST_MAX_HEADER  ((size_t)100 << 20) /* the limit of the reference implementation */
#define PCN_JSON_MAX_DEPTH 64

typedef struct dtype_desc {
    const char *code;
    int dtype;
    size_t size;
} dtype_desc;

static const dtype_desc DTYPES[] = {
    {"F64", PCN_DTYPE_F64, 8}, {"F32", PCN_DTYPE_F32, 4}, {"F16", PCN_DTYPE_F16, 2}, {"BF16", PCN_DTYPE_BF16, 2},
    {"I64", PCN_ST_I64, 8},    {"I32", PCN_ST_I32, 4},    {"I16", PCN_ST_I16, 2},    {"I8", PCN_ST_I8, 1},
    {"U8", PCN_ST_U8, 1},      {"U16", PCN_ST_U16, 2},    {"U32", PCN_ST_U32, 4},    {"U64", PCN_ST_U64, 8},
    {"BOOL", PCN_ST_BOOL, 1},  {"C64", PCN_ST_C64, 8},
};
#define NDTYPES (sizeof DTYPES / sizeof DTYPES[0])

size_t pcn_dtype_size(int dtype) {
    size_t i;
    for (i = 0; i < NDTYPES; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].size;
    return 0;
}

const char *pcn_dtype_label(int dtype) {
    size_t i;
    for (i = 0; i < NDTYPES; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].code;
    return "unknown";
}

const char *pcn_dtype_name(pcn_dtype dtype) {
    return (int)dtype >= PCN_DTYPE_F32 && (int)dtype <= PCN_DTYPE_F64 ? pcn_dtype_label((int)dtype) : "unknown";
}

pcn_status pcn_st_header_length(const unsigned char *h, size_t file_size, size_t *hlen, pcn_error *err) {
    uint64_t n = 0;
    int i;
    if (file_size < 8)
        return pcn_fail(err, PCN_ERR_FORMAT, "not a safetensors file: shorter than its 8-byte header length");
    for (i = 7; i >= 0; i--) n = n << 8 | h[i];
    if (n > PCN_ST_MAX_HEADER)
        return pcn_fail(err, PCN_ERR_FORMAT, "not a safetensors file: header length %llu is over the %zu-byte limit",
                        (unsigned long long)n, PCN_ST_MAX_HEADER);
    if (n > file_size - 8)
        return pcn_fail(err, PCN_ERR_FORMAT, "safetensors header length %llu runs past the end of the file (%zu bytes)",
                        (unsigned long long)n, file_size);
    *hlen = (size_t)n;
    return PCN_OK;
}

/* ------------------------------------------------------------------ JSON scanning */

typedef struct scanner {
    const unsigned char *p, *end;
    pcn_error *err;
    pcn_status st;
} scanner;

static int fail(scanner *s, pcn_status code, const char *msg) {
    if (s->st == PCN_OK) s->st = pcn_fail(s->err, code, "safetensors header: %s", msg);
    return 0;
}

static void skip_ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int expect(scanner *s, unsigned char c) {
    skip_ws(s);
    if (s->p >= s->end || *s->p != c) return 0;
    s->p++;
    return 1;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(scanner *s, unsigned *v) {
    int i;
    *v = 0;
    if (s->end - s->p < 4) return 0;
    for (i = 0; i < 4; i++) {
        int h = hexval(s->p[i]);
        if (h < 0) return 0;
        *v = *v << 4 | (unsigned)h;
    }
    s->p += 4;
    return 1;
}

static size_t put_utf8(unsigned char *o, unsigned long cp) {
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string at s->p; decoded into out (when not NULL; a decoded string is never longer than
 * its source, so out needs the source length) with its length in *len. */
static int read_string(scanner *s, unsigned char *out, size_t *len) {
    size_t n = 0;
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"') return fail(s, PCN_ERR_FORMAT, "expected a string");
    s->p++;
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = *s->p++;
        if (c < 0x20) return fail(s, PCN_ERR_FORMAT, "control character in a string");
        if (c == '\\') {
            unsigned v;
            unsigned long cp;
            if (s->p >= s->end) break;
            c = *s->p++;
            switch (c) {
            case '"':
            case '\\':
            case '/': cp = c; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (!read_hex4(s, &v)) return fail(s, PCN_ERR_FORMAT, "bad \\u escape in a string");
                cp = v;
                if (v >= 0xD800 && v < 0xDC00) { /* a surrogate pair, else kept as the lone code unit */
                    unsigned lo;
                    if (s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u') {
                        const unsigned char *save = s->p;
                        s->p += 2;
                        if (read_hex4(s, &lo) && lo >= 0xDC00 && lo < 0xE000)
                            cp = 0x10000 + ((unsigned long)(v - 0xD800) << 10) + (lo - 0xDC00);
                        else
                            s->p = save;
                    }
                }
                break;
            default: return fail(s, PCN_ERR_FORMAT, "bad escape in a string");
            }
            if (out)
                n += put_utf8(out + n, cp);
            else
                n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        } else {
            if (out) out[n] = c;
            n++;
        }
    }
    if (s->p >= s->end) return fail(s, PCN_ERR_FORMAT, "unterminated string");
    s->p++;
    *len = n;
    return 1;
}

/* A JSON number; *is_int when it has neither fraction nor exponent, then *v holds it (negative
 * values and overflow are reported through *neg and *ovf). */
static int read_number(scanner *s, int *is_int, uint64_t *v, int *neg, int *ovf) {
    const unsigned char *st;
    *is_int = 1;
    *v = 0;
    *neg = 0;
    *ovf = 0;
    skip_ws(s);
    st = s->p;
    if (s->p < s->end && *s->p == '-') {
        *neg = 1;
        s->p++;
    }
    if (s->p >= s->end || *s->p < '0' || *s->p > '9') return fail(s, PCN_ERR_FORMAT, "expected a value");
    if (*s->p == '0') {
        s->p++;
    } else {
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
            unsigned d = (unsigned)(*s->p++ - '0');
            if (*v > (UINT64_MAX - d) / 10)
                *ovf = 1;
            else
                *v = *v * 10 + d;
        }
    }
    if (s->p < s->end && *s->p == '.') {
        *is_int = 0;
        s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9') return fail(s, PCN_ERR_FORMAT, "bad number");
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        *is_int = 0;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9') return fail(s, PCN_ERR_FORMAT, "bad number");
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    }
    return s->p > st;
}

static int skip_literal(scanner *s, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return fail(s, PCN_ERR_FORMAT, "expected a value");
    s->p += n;
    return 1;
}

/* Any JSON value (an ignored key's), at most PCN_JSON_MAX_DEPTH levels deep. */
static int skip_value(scanner *s, int depth) {
    size_t len;
    skip_ws(s);
    if (depth > PCN_JSON_MAX_DEPTH) return fail(s, PCN_ERR_FORMAT, "values nested too deeply");
    if (s->p >= s->end) return fail(s, PCN_ERR_FORMAT, "unexpected end");
    switch (*s->p) {
    case '"': return read_string(s, NULL, &len);
    case '{':
        s->p++;
        if (expect(s, '}')) return 1;
        do {
            if (!read_string(s, NULL, &len) || !expect(s, ':')) return fail(s, PCN_ERR_FORMAT, "bad object");
            if (!skip_value(s, depth + 1)) return 0;
        } while (expect(s, ','));
        return expect(s, '}') ? 1 : fail(s, PCN_ERR_FORMAT, "bad object");
    case '[':
        s->p++;
        if (expect(s, ']')) return 1;
        do {
            if (!skip_value(s, depth + 1)) return 0;
        } while (expect(s, ','));
        return expect(s, ']') ? 1 : fail(s, PCN_ERR_FORMAT, "bad array");
    case 't': return skip_literal(s, "true");
    case 'f': return skip_literal(s, "false");
    case 'n': return skip_literal(s, "null");
    default: {
        int is_int, neg, ovf;
        uint64_t v;
        return read_number(s, &is_int, &v, &neg, &ovf);
    }
    }
}

/* An array of non-negative integers (at most `cap`, the count in *n). */
static int read_uint_array(scanner *s, size_t cap, size_t *vals, size_t *n, const char *what, const char *name) {
    char msg[160];
    *n = 0;
    if (!expect(s, '[')) {
        snprintf(msg, sizeof msg, "tensor '%.60s': %s is not a list", name, what);
        return fail(s, PCN_ERR_FORMAT, msg);
    }
    if (expect(s, ']')) return 1;
    do {
        int is_int, neg, ovf;
        uint64_t v;
        skip_ws(s);
        if (!read_number(s, &is_int, &v, &neg, &ovf) || !is_int || (neg && v != 0)) {
            snprintf(msg, sizeof msg, "tensor '%.60s': %s must be non-negative integers", name, what);
            return fail(s, PCN_ERR_FORMAT, msg);
        }
        if (ovf || v > SIZE_MAX / 2) {
            snprintf(msg, sizeof msg, "tensor '%.60s': %s holds a number too large", name, what);
            return fail(s, PCN_ERR_FORMAT, msg);
        }
        if (*n >= cap) {
            snprintf(msg, sizeof msg, "tensor '%.60s': %s has more than %zu entries", name, what, cap);
            return fail(s, PCN_ERR_FORMAT, msg);
        }
        vals[(*n)++] = (size_t)v;
    } while (expect(s, ','));
    if (!expect(s, ']')) {
        snprintf(msg, sizeof msg, "tensor '%.60s': bad %s list", name, what);
        return fail(s, PCN_ERR_FORMAT, msg);
    }
    return 1;
}

static int utf8_valid(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t k, need;
        unsigned long cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            need = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 3, cp = c & 0x07;
        else
            return 0;
        if (n - i <= need) return 0;
        for (k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int cmp_begin(const void *a, const void *b) {
    const pcn_tensor_ref *x = *(pcn_tensor_ref *const *)a, *y = *(pcn_tensor_ref *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

pcn_status pcn_st_parse(const unsigned char *json, size_t hlen, size_t data_len, pcn_tensor_set *set, pcn_error *err) {
    scanner s;
    size_t cap = 0, names_used = 0, i;
    pcn_tensor_ref **order = NULL;
    char msg[200];
    memset(set, 0, sizeof *set);
    s.p = json;
    s.end = json + hlen;
    s.err = err;
    s.st = PCN_OK;
    if (!utf8_valid(json, hlen)) return pcn_fail(err, PCN_ERR_FORMAT, "safetensors header is not UTF-8");
    if (hlen == 0 || json[0] != '{') return pcn_fail(err, PCN_ERR_FORMAT, "safetensors header is not a JSON object");
    /* names are decoded into one buffer no longer than the header */
    set->names = (char *)malloc(hlen + 1);
    if (!set->names) return pcn_fail(err, PCN_ERR_NOMEM, "safetensors header: out of memory");
    s.p++;
    if (!expect(&s, '}')) {
        do {
            size_t len;
            unsigned char *name = (unsigned char *)set->names + names_used;
            if (!read_string(&s, name, &len) || !expect(&s, ':')) {
                fail(&s, PCN_ERR_FORMAT, "expected \"name\": value");
                break;
            }
            if (len == 12 && memcmp(name, "__metadata__", 12) == 0) {
                size_t l2;
                if (!expect(&s, '{')) {
                    fail(&s, PCN_ERR_FORMAT, "__metadata__ must map strings to strings");
                    break;
                }
                if (!expect(&s, '}')) {
                    do {
                        if (!read_string(&s, NULL, &l2) || !expect(&s, ':') || !read_string(&s, NULL, &l2)) {
                            fail(&s, PCN_ERR_FORMAT, "__metadata__ must map strings to strings");
                            break;
                        }
                    } while (expect(&s, ','));
                    if (s.st || !expect(&s, '}')) {
                        fail(&s, PCN_ERR_FORMAT, "__metadata__ must map strings to strings");
                        break;
                    }
                }
                continue;
            }
            /* a tensor entry */
            if (set->count == cap) {
                size_t ncap = cap ? 2 * cap : 64;
                pcn_tensor_ref *nt = (pcn_tensor_ref *)realloc(set->t, ncap * sizeof *nt);
                if (!nt) {
                    fail(&s, PCN_ERR_NOMEM, "out of memory");
                    break;
                }
                set->t = nt;
                cap = ncap;
            }
            {
                pcn_tensor_ref *t = &set->t[set->count];
                int have_dtype = 0, have_shape = 0, have_offs = 0;
                memset(t, 0, sizeof *t);
                name[len] = '\0';
                t->name = (const char *)name;
                t->name_len = len;
                names_used += len + 1;
                set->count++;
                if (!expect(&s, '{')) {
                    snprintf(msg, sizeof msg, "tensor '%.60s': entry is not an object", t->name);
                    fail(&s, PCN_ERR_FORMAT, msg);
                    break;
                }
                if (!expect(&s, '}')) {
                    do {
                        unsigned char key[16];
                        size_t klen;
                        const unsigned char *kstart;
                        skip_ws(&s);
                        kstart = s.p;
                        if (!read_string(&s, NULL, &klen) || !expect(&s, ':')) {
                            fail(&s, PCN_ERR_FORMAT, "bad tensor entry");
                            break;
                        }
                        if (klen < sizeof key) { /* decode short keys to compare them */
                            scanner k2 = s;
                            k2.p = kstart;
                            read_string(&k2, key, &klen);
                        } else {
                            klen = 0;
                        }
                        if (klen == 5 && memcmp(key, "dtype", 5) == 0) {
                            unsigned char code[8];
                            size_t clen, d;
                            const unsigned char *vstart;
                            skip_ws(&s);
                            vstart = s.p;
                            if (have_dtype++ || !read_string(&s, NULL, &clen)) {
                                snprintf(msg, sizeof msg, "tensor '%.60s': bad or repeated dtype", t->name);
                                fail(&s, PCN_ERR_FORMAT, msg);
                                break;
                            }
                            if (clen < sizeof code) {
                                scanner k2 = s;
                                k2.p = vstart;
                                read_string(&k2, code, &clen);
                            } else {
                                clen = 0;
                            }
                            for (d = 0; d < NDTYPES; d++)
                                if (clen == strlen(DTYPES[d].code) && memcmp(code, DTYPES[d].code, clen) == 0) break;
                            if (d == NDTYPES) {
                                snprintf(msg, sizeof msg,
                                         "tensor '%.60s': dtype is not supported (supported: F64, F32, F16, BF16, "
                                         "I64, I32, I16, I8, U8, U16, U32, U64, BOOL, C64)",
                                         t->name);
                                fail(&s, PCN_ERR_FORMAT, msg);
                                break;
                            }
                            t->dtype = DTYPES[d].dtype;
                            t->itemsize = DTYPES[d].size;
                        } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
                            if (have_shape++) {
                                fail(&s, PCN_ERR_FORMAT, "repeated shape");
                                break;
                            }
                            if (!read_uint_array(&s, PCN_TENSOR_MAX_DIMS, t->shape, &t->ndim, "shape", t->name)) break;
                        } else if (klen == 12 && memcmp(key, "data_offsets", 12) == 0) {
                            size_t offs[2], n;
                            if (have_offs++) {
                                fail(&s, PCN_ERR_FORMAT, "repeated data_offsets");
                                break;
                            }
                            if (!read_uint_array(&s, 2, offs, &n, "data_offsets", t->name)) break;
                            if (n != 2 || offs[0] > offs[1]) {
                                snprintf(msg, sizeof msg, "tensor '%.60s': data_offsets is not [begin, end]", t->name);
                                fail(&s, PCN_ERR_FORMAT, msg);
                                break;
                            }
                            t->begin = offs[0];
                            t->end = offs[1];
                        } else if (!skip_value(&s, 2)) {
                            break;
                        }
                    } while (expect(&s, ','));
                    if (s.st) break;
                    if (!expect(&s, '}')) {
                        snprintf(msg, sizeof msg, "tensor '%.60s': bad entry", t->name);
                        fail(&s, PCN_ERR_FORMAT, msg);
                        break;
                    }
                }
                if (!have_dtype || !have_shape || !have_offs) {
                    snprintf(msg, sizeof msg, "tensor '%.60s': entry lacks dtype/shape/data_offsets", t->name);
                    fail(&s, PCN_ERR_FORMAT, msg);
                    break;
                }
            }
        } while (expect(&s, ','));
        if (s.st == PCN_OK && !expect(&s, '}')) fail(&s, PCN_ERR_FORMAT, "expected ',' or '}'");
    }
    if (s.st == PCN_OK) {
        skip_ws(&s);
        if (s.p != s.end) fail(&s, PCN_ERR_FORMAT, "extra data after the JSON object");
    }
    if (s.st != PCN_OK) {
        pcn_tensor_set_free(set);
        return s.st;
    }
    /* sizes and the data section */
    for (i = 0; i < set->count; i++) {
        pcn_tensor_ref *t = &set->t[i];
        size_t k, count = 1, nbytes;
        int ovf = 0;
        for (k = 0; k < t->ndim; k++) ovf |= pcn_mul_ovf(count, t->shape[k], &count);
        ovf |= pcn_mul_ovf(count, t->itemsize, &nbytes);
        if (t->end > data_len) {
            pcn_fail(err, PCN_ERR_FORMAT, "tensor '%.60s': data_offsets [%zu, %zu] run past the %zu data bytes",
                     t->name, t->begin, t->end, data_len);
            pcn_tensor_set_free(set); /* after the message: it names the tensor */
            return PCN_ERR_FORMAT;
        }
        if (ovf || t->end - t->begin != nbytes) {
            pcn_fail(err, PCN_ERR_FORMAT, "tensor '%.60s': %zu data bytes for its shape of %s (%s bytes)", t->name,
                     t->end - t->begin, pcn_dtype_label(t->dtype), ovf ? "too many" : "a different number of");
            pcn_tensor_set_free(set);
            return PCN_ERR_FORMAT;
        }
        t->count = count;
        t->little = 1;
    }
    if (set->count) {
        size_t pos = 0;
        order = (pcn_tensor_ref **)malloc(set->count * sizeof *order);
        if (!order) {
            pcn_tensor_set_free(set);
            return pcn_fail(err, PCN_ERR_NOMEM, "safetensors header: out of memory");
        }
        for (i = 0; i < set->count; i++) order[i] = &set->t[i];
        qsort(order, set->count, sizeof *order, cmp_begin);
        for (i = 0; i < set->count; i++) {
            if (order[i]->begin != pos) {
                pcn_fail(err, PCN_ERR_FORMAT, "tensor '%.60s': data_offsets [%zu, %zu] %s", order[i]->name,
                         order[i]->begin, order[i]->end,
                         order[i]->begin < pos ? "overlap another tensor" : "leave a gap");
                free(order);
                pcn_tensor_set_free(set);
                return PCN_ERR_FORMAT;
            }
            pos = order[i]->end;
        }
        free(order);
        if (pos != data_len) {
            pcn_tensor_set_free(set);
            return pcn_fail(err, PCN_ERR_FORMAT, "safetensors data is %zu bytes but the tensors cover %zu", data_len,
                            pos);
        }
    } else if (data_len != 0) {
        pcn_tensor_set_free(set);
        return pcn_fail(err, PCN_ERR_FORMAT, "safetensors data is %zu bytes but the tensors cover 0", data_len);
    }
    return PCN_OK;
}

/* ------------------------------------------------------------------ the directory */

static int name_cmp(const char *a, size_t la, const char *b, size_t lb) {
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la < lb ? -1 : la > lb);
}

typedef struct name_key {
    const char *name;
    size_t len;
    size_t index;
} name_key;

static int key_cmp(const void *a, const void *b) {
    const name_key *x = (const name_key *)a, *y = (const name_key *)b;
    return name_cmp(x->name, x->len, y->name, y->len);
}

pcn_status pcn_tensor_set_index(pcn_tensor_set *set, pcn_error *err) {
    static const char prefix[] = "module.";
    const size_t pl = sizeof prefix - 1;
    name_key *keys;
    size_t i;
    for (i = 0; i < set->count; i++) {
        pcn_tensor_ref *t = &set->t[i];
        if (t->name_len >= pl && memcmp(t->name, prefix, pl) == 0) {
            t->name += pl;
            t->name_len -= pl;
        }
    }
    if (!set->count) return PCN_OK;
    keys = (name_key *)malloc(set->count * sizeof *keys);
    set->sorted = (size_t *)malloc(set->count * sizeof *set->sorted);
    if (!keys || !set->sorted) {
        free(keys);
        return pcn_fail(err, PCN_ERR_NOMEM, "tensor directory: out of memory");
    }
    for (i = 0; i < set->count; i++) {
        keys[i].name = set->t[i].name;
        keys[i].len = set->t[i].name_len;
        keys[i].index = i;
    }
    qsort(keys, set->count, sizeof *keys, key_cmp);
    for (i = 0; i < set->count; i++) {
        set->sorted[i] = keys[i].index;
        if (i && key_cmp(&keys[i - 1], &keys[i]) == 0) {
            pcn_fail(err, PCN_ERR_FORMAT, "the tensor name '%.80s' appears twice (after stripping a 'module.' prefix)",
                     keys[i].name);
            free(keys);
            return PCN_ERR_FORMAT;
        }
    }
    free(keys);
    return PCN_OK;
}

const pcn_tensor_ref *pcn_tensor_set_find(const pcn_tensor_set *set, const char *name) {
    size_t lo = 0, hi = set->count, len = strlen(name);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const pcn_tensor_ref *t = &set->t[set->sorted[mid]];
        int c = name_cmp(t->name, t->name_len, name, len);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void pcn_tensor_set_free(pcn_tensor_set *set) {
    free(set->t);
    free(set->names);
    free(set->sorted);
    memset(set, 0, sizeof *set);
}
