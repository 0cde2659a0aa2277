/* A small strict JSON reader and writer for pyrt-runc's native create.
 *
 * It accepts a subset of what Python's json module accepts and refuses (returns NULL)
 * everything else: invalid UTF-8, floats and numbers outside int64, NaN/Infinity, NUL
 * or lone surrogates in strings, duplicate keys in an object, nesting deeper than 64.
 * A refused file is handed to the Python implementation, which then reports the error or
 * handles the input, so this reader never has to say what is wrong.
 *
 * The writer reproduces json.dumps(obj, separators=(",", ":")) (ensure_ascii) for what
 * the reader produces: key order kept, strings escaped as CPython's encoder does. */
#ifndef PYRT_RUNC_JSON_H
#define PYRT_RUNC_JSON_H

#include <stddef.h>

enum jtype { J_NULL, J_FALSE, J_TRUE, J_INT, J_STR, J_ARR, J_OBJ };

typedef struct jv {
  enum jtype t;
  long long num;       /* J_INT */
  char *str;           /* J_STR: UTF-8, NUL-terminated (no NUL inside) */
  size_t n;            /* J_ARR / J_OBJ: number of items */
  struct jv *items;    /* J_ARR / J_OBJ values */
  char **keys;         /* J_OBJ keys */
} jv_t;

/* 1 when s[0..len) is valid UTF-8 as Python's strict decoder sees it. */
int json_utf8_ok(const char *s, size_t len);

/* Parses text (len bytes); NULL when refused. The result lives until exit. */
jv_t *json_parse(const char *text, size_t len);

/* obj[key] when obj is an object holding key, else NULL. */
const jv_t *jget(const jv_t *obj, const char *key);
/* 1 when v is NULL (absent) or JSON null */
static inline int jnone(const jv_t *v) { return v == NULL || v->t == J_NULL; }

/* A growable byte buffer; on allocation failure `bad` is set and writes are dropped. */
typedef struct {
  char *p;
  size_t len, cap;
  int bad;
} buf_t;

void buf_add(buf_t *b, const char *s, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal, escaped like json.dumps (ensure_ascii) */
void buf_jstr(buf_t *b, const char *s);
/* v as json.dumps(v, separators=(",", ":")) */
void buf_json(buf_t *b, const jv_t *v);
/* v as json.dumps(v) (separators ", " and ": ") */
void buf_json_spaced(buf_t *b, const jv_t *v);

#endif
