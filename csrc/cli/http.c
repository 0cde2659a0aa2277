/* See http.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define RECV_SIZE 65536
#define MAX_HEAD (1 << 20)

int http_dial(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n >= sizeof addr.sun_path) return -ENAMETOOLONG;
  memcpy(addr.sun_path, path, n + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    if (errno == EINTR) continue;
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

int http_send(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int http_fill(resp_t *r) {
  char tmp[RECV_SIZE];
  for (;;) {
    ssize_t n = recv(r->fd, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) {
      r->eof = 1;
      return 1;
    }
    buf_add(&r->raw, tmp, (size_t)n);
    return r->raw.bad ? -ENOMEM : 0;
  }
}

/* The value of header `name` in the head's lines [p, end), or NULL; several fields of
 * one name are not joined (the daemon sends each once). */
static const char *header(const char *p, const char *end, const char *name, size_t *len) {
  size_t nlen = strlen(name);
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (eol == NULL) eol = end;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon != NULL) {
      const char *k = p, *ke = colon;
      while (k < ke && (*k == ' ' || *k == '\t')) k++;
      while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
      if ((size_t)(ke - k) == nlen && strncasecmp(k, name, nlen) == 0) {
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        *len = (size_t)(ve - v);
        return v;
      }
    }
    p = eol + 2;
  }
  return NULL;
}

static int contains_ci(const char *v, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (strncasecmp(v + i, needle, n) == 0) return 1;
  return 0;
}

int http_head(int fd, resp_t *r, int *err) {
  memset(r, 0, sizeof *r);
  r->fd = fd;
  r->length = -1;
  char *end;
  for (;;) {
    end = r->raw.len ? memmem(r->raw.p, r->raw.len, "\r\n\r\n", 4) : NULL;
    if (end != NULL) break;
    if (r->raw.len > MAX_HEAD) return HTTP_BAD_HEAD;
    int rc = http_fill(r);
    if (rc < 0) {
      *err = -rc;
      return HTTP_ERRNO;
    }
    if (rc == 1) return HTTP_CLOSED;
  }
  const char *p = r->raw.p, *line_end = memmem(p, (size_t)(end - p), "\r\n", 2);
  if (line_end == NULL) line_end = end;
  /* "HTTP/1.x CODE REASON" */
  if ((size_t)(line_end - p) < 12 || strncmp(p, "HTTP/1.", 7) != 0) return HTTP_BAD_HEAD;
  const char *sp = memchr(p, ' ', (size_t)(line_end - p));
  if (sp == NULL) return HTTP_BAD_HEAD;
  int code = 0, digits = 0;
  const char *q = sp + 1;
  while (q < line_end && *q >= '0' && *q <= '9' && digits < 4) code = code * 10 + (*q++ - '0'), digits++;
  if (digits == 0 || (q < line_end && *q != ' ')) return HTTP_BAD_HEAD;
  r->status = code;
  while (q < line_end && *q == ' ') q++;
  size_t rlen = (size_t)(line_end - q);
  if (rlen >= sizeof r->reason) rlen = sizeof r->reason - 1;
  memcpy(r->reason, q, rlen);
  r->reason[rlen] = '\0';

  const char *hp = line_end + 2;
  size_t len;
  const char *v = header(hp, end, "Transfer-Encoding", &len);
  r->chunked = v != NULL && contains_ci(v, len, "chunked");
  v = header(hp, end, "Content-Type", &len);
  r->multiplexed = v != NULL && contains_ci(v, len, "multiplexed");
  v = header(hp, end, "Content-Length", &len);
  if (v != NULL && !r->chunked) {
    long long n = 0;
    if (len == 0 || len > 18) return HTTP_BAD_HEAD;
    for (size_t i = 0; i < len; i++) {
      if (v[i] < '0' || v[i] > '9') return HTTP_BAD_HEAD;
      n = n * 10 + (v[i] - '0');
    }
    r->length = n;
  }
  r->no_body = code < 200 || code == 204 || code == 304;
  /* keep only what follows the head */
  size_t head_len = (size_t)(end + 4 - r->raw.p);
  memmove(r->raw.p, r->raw.p + head_len, r->raw.len - head_len);
  r->raw.len -= head_len;
  return HTTP_OK;
}

/* Decodes a chunked body from raw; 1 complete, 0 incomplete, -1 broken. */
static int dechunk(const char *p, size_t n, buf_t *out) {
  size_t i = 0;
  out->len = 0;
  for (;;) {
    const char *eol = memmem(p + i, n - i, "\r\n", 2);
    if (eol == NULL) return 0;
    size_t size = 0, k = i, digits = 0;
    while (p + k < eol && p[k] != ';') {
      char c = p[k++];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (c == ' ' || c == '\t') continue;
      if (d < 0 || ++digits > 12) return -1;
      size = size * 16 + (size_t)d;
    }
    if (digits == 0) return -1;
    i = (size_t)(eol - p) + 2;
    if (size == 0) { /* trailer fields up to an empty line */
      for (;;) {
        eol = memmem(p + i, n - i, "\r\n", 2);
        if (eol == NULL) return 0;
        if (eol == p + i) return 1;
        i = (size_t)(eol - p) + 2;
      }
    }
    if (n - i < size) return 0;
    buf_add(out, p + i, size);
    i += size;
    eol = memmem(p + i, n - i, "\r\n", 2); /* the line that ends the chunk's data */
    if (eol == NULL) return 0;
    i = (size_t)(eol - p) + 2;
  }
}

int http_body_ready(resp_t *r, buf_t *out) {
  out->len = 0;
  if (r->no_body) return 1;
  if (r->chunked) {
    int rc = dechunk(r->raw.p, r->raw.len, out);
    if (rc == 0 && r->eof) return -1;
    return rc;
  }
  if (r->length >= 0) {
    if ((long long)r->raw.len >= r->length) {
      buf_add(out, r->raw.p ? r->raw.p : "", (size_t)r->length);
      return 1;
    }
    return r->eof ? -1 : 0;
  }
  if (!r->eof) return 0;
  buf_add(out, r->raw.p ? r->raw.p : "", r->raw.len);
  return 1;
}

int http_body(resp_t *r, buf_t *out, int *err) {
  for (;;) {
    int rc = http_body_ready(r, out);
    if (rc == 1) {
      buf_add(out, "", 0); /* out->p is a NUL-terminated string even when empty */
      return out->bad ? HTTP_BAD_BODY : HTTP_OK;
    }
    if (rc < 0) return HTTP_BAD_BODY;
    rc = http_fill(r);
    if (rc < 0) {
      *err = -rc;
      return HTTP_ERRNO;
    }
  }
}
