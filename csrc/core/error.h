/* crun-style errors: a fallible function takes pyrt_error_t *err, fills it and
 * returns a negative value. Only the binding layer turns them into exceptions. */
#ifndef PYRT_ERROR_H
#define PYRT_ERROR_H

#include <stddef.h>

typedef struct pyrt_error {
  int status;     /* errno of the failure, 0 if none */
  char msg[512];  /* "mount overlay on /x" — the context, without strerror */
} pyrt_error_t;

/* Records errno_value and a printf-style context; always returns -1. */
int pyrt_error_set(pyrt_error_t *err, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void pyrt_error_clear(pyrt_error_t *err) {
  err->status = 0;
  err->msg[0] = '\0';
}

/* cleanup helpers, as crun does, so early returns never leak */
void pyrt_cleanup_close(int *fd);
void pyrt_cleanup_free(void *ptr);
#define cleanup_close __attribute__((cleanup(pyrt_cleanup_close)))
#define cleanup_free __attribute__((cleanup(pyrt_cleanup_free)))

#endif
