/* The Engine API over a Unix socket, as pyrt/api/client.py speaks it: one request per
 * connection ("Connection: close"), responses framed by Content-Length, chunked transfer
 * encoding or the end of the connection; the attach request is upgraded (hijacked). */
#ifndef PYRT_CLI_HTTP_H
#define PYRT_CLI_HTTP_H

#include <stddef.h>

#include "json.h"

typedef struct {
  int fd;
  int status;
  char reason[128];
  int chunked;           /* Transfer-Encoding: chunked */
  long long length;      /* Content-Length, -1 when absent */
  int multiplexed;       /* "multiplexed" in Content-Type */
  int no_body;           /* 1xx, 204, 304 */
  int eof;               /* the peer closed the connection */
  buf_t raw;             /* bytes read past the head, not yet consumed */
} resp_t;

/* How a step failed, for the caller's message (see pyrt/api/client.py's wording). */
enum {
  HTTP_OK = 0,
  HTTP_ERRNO = 1,        /* a socket call failed: the errno is in *err */
  HTTP_CLOSED = 2,       /* the connection ended before the response's head */
  HTTP_BAD_HEAD = 3,     /* not an HTTP/1.x response, or a head over 1 MiB */
  HTTP_BAD_BODY = 4,     /* framing broken: a bad chunk size, an early end */
};

/* A connected AF_UNIX stream socket, or -errno. */
int http_dial(const char *path);
/* Every byte (MSG_NOSIGNAL); 0 or an errno. */
int http_send(int fd, const char *p, size_t n);
/* Reads the status line and headers; HTTP_*; *err gets the errno of HTTP_ERRNO. */
int http_head(int fd, resp_t *r, int *err);
/* 1 when the whole body is in r->raw (decoded into *out), 0 when more is needed,
 * -1 when the framing is broken. */
int http_body_ready(resp_t *r, buf_t *out);
/* One recv into r->raw: 0 read something, 1 end of connection, or -errno. */
int http_fill(resp_t *r);
/* Reads until the body is complete (blocking): HTTP_*. */
int http_body(resp_t *r, buf_t *out, int *err);

#endif
