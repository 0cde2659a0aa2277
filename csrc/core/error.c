#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int pyrt_error_set(pyrt_error_t *err, int errno_value, const char *fmt, ...) {
  va_list ap;
  if (err == NULL)
    return -1;
  err->status = errno_value;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
  return -1;
}

void pyrt_cleanup_close(int *fd) {
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
    *fd = -1;
  }
}

void pyrt_cleanup_free(void *ptr) {
  void **p = (void **)ptr;
  free(*p);
  *p = NULL;
}
