/* See json.h. Python's json module is the reference for what is accepted and written. */
#include "json.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
  const unsigned char *p, *end;
} rd_t;

/* 1 when s[0..len) is valid UTF-8 as Python's strict decoder sees it (no overlong forms,
 * no encoded surrogates, nothing above U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    for (size_t k = 1; k <= n; k++) {
      if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += n + 1;
  }
  return 1;
}

int json_utf8_ok(const char *s, size_t len) { return utf8_ok((const unsigned char *)s, len); }

static void skip_ws(rd_t *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

static int hex4(rd_t *r, unsigned *out) {
  if (r->end - r->p < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = r->p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  r->p += 4;
  *out = v;
  return 0;
}

static void put_utf8(char **o, unsigned cp) {
  unsigned char *q = (unsigned char *)*o;
  if (cp < 0x80) *q++ = (unsigned char)cp;
  else if (cp < 0x800) *q++ = (unsigned char)(0xC0 | (cp >> 6)), *q++ = (unsigned char)(0x80 | (cp & 0x3F));
  else if (cp < 0x10000)
    *q++ = (unsigned char)(0xE0 | (cp >> 12)), *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)),
    *q++ = (unsigned char)(0x80 | (cp & 0x3F));
  else
    *q++ = (unsigned char)(0xF0 | (cp >> 18)), *q++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)),
    *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), *q++ = (unsigned char)(0x80 | (cp & 0x3F));
  *o = (char *)q;
}

/* A string after its opening quote; NULL when refused. */
static char *parse_str(rd_t *r) {
  const unsigned char *start = r->p;
  while (r->p < r->end && *r->p != '"') {
    if (*r->p < 0x20) return NULL;
    if (*r->p == '\\') r->p++;
    if (r->p < r->end) r->p++;
  }
  if (r->p >= r->end) return NULL;
  r->p = start;
  char *out = malloc((size_t)(r->end - start) + 1), *o = out;
  if (out == NULL) return NULL;
  while (*r->p != '"') {
    unsigned c = *r->p++;
    if (c != '\\') {
      *o++ = (char)c;
      continue;
    }
    c = *r->p++;
    switch (c) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (hex4(r, &cp) < 0 || cp == 0) goto bad;
        if (cp >= 0xDC00 && cp <= 0xDFFF) goto bad; /* lone low surrogate */
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u') goto bad;
          r->p += 2;
          if (hex4(r, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) goto bad;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        put_utf8(&o, cp);
        break;
      }
      default: goto bad;
    }
  }
  r->p++;
  *o = '\0';
  return out;
bad:
  free(out);
  return NULL;
}

static int parse_value(rd_t *r, jv_t *v, int depth);

static int parse_int(rd_t *r, jv_t *v) {
  int neg = 0;
  if (r->p < r->end && *r->p == '-') neg = 1, r->p++;
  if (r->p >= r->end || *r->p < '0' || *r->p > '9') return -1;
  if (*r->p == '0' && r->p + 1 < r->end && r->p[1] >= '0' && r->p[1] <= '9') return -1;
  unsigned long long mag = 0;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
    unsigned d = *r->p++ - '0';
    if (mag > (ULLONG_MAX - d) / 10) return -1;
    mag = mag * 10 + d;
  }
  if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E')) return -1; /* floats */
  if (neg ? mag > (unsigned long long)LLONG_MAX + 1 : mag > (unsigned long long)LLONG_MAX)
    return -1;
  v->t = J_INT;
  v->num = neg ? (long long)(0 - mag) : (long long)mag;
  return 0;
}

static int lit(rd_t *r, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return -1;
  r->p += n;
  return 0;
}

/* items of an array or object: grown in a temporary array, then kept */
static int parse_container(rd_t *r, jv_t *v, int depth, int is_obj) {
  size_t cap = 8, n = 0;
  jv_t *items = malloc(cap * sizeof *items);
  char **keys = is_obj ? malloc(cap * sizeof *keys) : NULL;
  if (items == NULL || (is_obj && keys == NULL)) return -1;
  skip_ws(r);
  char close = is_obj ? '}' : ']';
  if (r->p < r->end && *r->p == (unsigned char)close) {
    r->p++;
  } else {
    for (;;) {
      if (n == cap) {
        cap *= 2;
        items = realloc(items, cap * sizeof *items);
        if (is_obj) keys = realloc(keys, cap * sizeof *keys);
        if (items == NULL || (is_obj && keys == NULL)) return -1;
      }
      if (is_obj) {
        skip_ws(r);
        if (r->p >= r->end || *r->p != '"') return -1;
        r->p++;
        if ((keys[n] = parse_str(r)) == NULL) return -1;
        for (size_t k = 0; k < n; k++)
          if (strcmp(keys[k], keys[n]) == 0) return -1; /* duplicate key */
        skip_ws(r);
        if (r->p >= r->end || *r->p != ':') return -1;
        r->p++;
      }
      if (parse_value(r, &items[n], depth + 1) < 0) return -1;
      n++;
      skip_ws(r);
      if (r->p < r->end && *r->p == ',') {
        r->p++;
        continue;
      }
      if (r->p < r->end && *r->p == (unsigned char)close) {
        r->p++;
        break;
      }
      return -1;
    }
  }
  v->t = is_obj ? J_OBJ : J_ARR;
  v->n = n;
  v->items = items;
  v->keys = keys;
  return 0;
}

static int parse_value(rd_t *r, jv_t *v, int depth) {
  if (depth > MAX_DEPTH) return -1;
  memset(v, 0, sizeof *v);
  skip_ws(r);
  if (r->p >= r->end) return -1;
  switch (*r->p) {
    case '{': r->p++; return parse_container(r, v, depth, 1);
    case '[': r->p++; return parse_container(r, v, depth, 0);
    case '"':
      r->p++;
      v->t = J_STR;
      return (v->str = parse_str(r)) == NULL ? -1 : 0;
    case 'n': v->t = J_NULL; return lit(r, "null");
    case 't': v->t = J_TRUE; return lit(r, "true");
    case 'f': v->t = J_FALSE; return lit(r, "false");
    default: return parse_int(r, v);
  }
}

jv_t *json_parse(const char *text, size_t len) {
  if (!utf8_ok((const unsigned char *)text, len)) return NULL;
  rd_t r = {(const unsigned char *)text, (const unsigned char *)text + len};
  jv_t *v = malloc(sizeof *v);
  if (v == NULL || parse_value(&r, v, 0) < 0) return NULL;
  skip_ws(&r);
  return r.p == r.end ? v : NULL;
}

const jv_t *jget(const jv_t *obj, const char *key) {
  if (obj == NULL || obj->t != J_OBJ) return NULL;
  for (size_t i = 0; i < obj->n; i++)
    if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
  return NULL;
}

/* ---- writing ---------------------------------------------------------------------------- */

void buf_add(buf_t *b, const char *s, size_t n) {
  if (b->bad) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->bad = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void buf_puts(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_printf(buf_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    b->bad = 1;
    return;
  }
  buf_add(b, tmp, (size_t)n);
}

static void u_escape(buf_t *b, unsigned v) { buf_printf(b, "\\u%04x", v); }

void buf_jstr(buf_t *b, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  buf_add(b, "\"", 1);
  while (*s) {
    unsigned c = *s;
    if (c >= 0x80) { /* the reader checked the UTF-8 */
      unsigned cp;
      int n;
      if ((c & 0xE0) == 0xC0) cp = c & 0x1F, n = 1;
      else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, n = 2;
      else cp = c & 0x07, n = 3;
      for (int k = 1; k <= n; k++) cp = (cp << 6) | (s[k] & 0x3F);
      s += n + 1;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        u_escape(b, 0xD800 | (cp >> 10));
        u_escape(b, 0xDC00 | (cp & 0x3FF));
      } else {
        u_escape(b, cp);
      }
      continue;
    }
    s++;
    switch (c) {
      case '"': buf_add(b, "\\\"", 2); break;
      case '\\': buf_add(b, "\\\\", 2); break;
      case '\n': buf_add(b, "\\n", 2); break;
      case '\r': buf_add(b, "\\r", 2); break;
      case '\t': buf_add(b, "\\t", 2); break;
      case '\b': buf_add(b, "\\b", 2); break;
      case '\f': buf_add(b, "\\f", 2); break;
      default:
        if (c < 0x20 || c == 0x7F) u_escape(b, c);
        else buf_add(b, (const char *)&s[-1], 1);
    }
  }
  buf_add(b, "\"", 1);
}

static void dump(buf_t *b, const jv_t *v, const char *item_sep, const char *key_sep);

void buf_json(buf_t *b, const jv_t *v) { dump(b, v, ",", ":"); }
void buf_json_spaced(buf_t *b, const jv_t *v) { dump(b, v, ", ", ": "); }

static void dump(buf_t *b, const jv_t *v, const char *item_sep, const char *key_sep) {
  switch (v->t) {
    case J_NULL: buf_puts(b, "null"); break;
    case J_TRUE: buf_puts(b, "true"); break;
    case J_FALSE: buf_puts(b, "false"); break;
    case J_INT: buf_printf(b, "%lld", v->num); break;
    case J_STR: buf_jstr(b, v->str); break;
    case J_ARR:
    case J_OBJ:
      buf_add(b, v->t == J_OBJ ? "{" : "[", 1);
      for (size_t i = 0; i < v->n; i++) {
        if (i) buf_puts(b, item_sep);
        if (v->t == J_OBJ) {
          buf_jstr(b, v->keys[i]);
          buf_puts(b, key_sep);
        }
        dump(b, &v->items[i], item_sep, key_sep);
      }
      buf_add(b, v->t == J_OBJ ? "}" : "]", 1);
      break;
  }
}
