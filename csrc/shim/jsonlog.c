/* json-file log writer of pyrt-shim; see jsonlog.h for the format. */
#include "jsonlog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* worst case: every byte escaped as \u00XX, plus the envelope */
static char entry[SHIM_LOG_LINE_MAX * 6 + 128];

static const char hexd[] = "0123456789abcdef";

/* length of the valid UTF-8 sequence at in (n bytes left), 0 if the byte is invalid */
static size_t utf8_len(const unsigned char *in, size_t n) {
  unsigned char c = in[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    need = 1;
  else if (c >= 0xe0 && c <= 0xef) {
    need = 2;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f; /* no UTF-16 surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 3;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
  } else
    return 0;
  if (n < need + 1)
    return 0;
  if (in[1] < lo || in[1] > hi)
    return 0;
  for (size_t i = 2; i <= need; i++)
    if ((in[i] & 0xc0) != 0x80)
      return 0;
  return need + 1;
}

size_t shim_json_escape(char *out, const unsigned char *in, size_t len) {
  char *o = out;
  size_t i = 0;
  while (i < len) {
    unsigned char c = in[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      *o++ = (char)c;
      i++;
      continue;
    }
    if (c < 0x80) {
      *o++ = '\\';
      switch (c) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '\n': *o++ = 'n'; break;
      case '\r': *o++ = 'r'; break;
      case '\t': *o++ = 't'; break;
      default:
        *o++ = 'u', *o++ = '0', *o++ = '0';
        *o++ = hexd[c >> 4], *o++ = hexd[c & 15];
      }
      i++;
      continue;
    }
    size_t n = utf8_len(in + i, len - i);
    if (n == 0) { /* invalid byte: U+FFFD, one per byte */
      memcpy(o, "\\ufffd", 6);
      o += 6;
      i++;
      continue;
    }
    /* U+2028 / U+2029 break JavaScript parsers: escape them as Go does */
    if (n == 3 && c == 0xe2 && in[i + 1] == 0x80 && (in[i + 2] == 0xa8 || in[i + 2] == 0xa9)) {
      memcpy(o, in[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
      o += 6;
    } else {
      memcpy(o, in + i, n);
      o += n;
    }
    i += n;
  }
  return (size_t)(o - out);
}

static char *put_num(char *o, unsigned long v, int width) {
  for (int i = width - 1; i >= 0; i--) {
    o[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return o + width;
}

void shim_format_time(char out[40], const struct timespec *ts) {
  struct tm tm;
  time_t t = ts->tv_sec;
  gmtime_r(&t, &tm);
  char *o = out;
  o = put_num(o, (unsigned long)tm.tm_year + 1900, 4);
  *o++ = '-';
  o = put_num(o, (unsigned long)tm.tm_mon + 1, 2);
  *o++ = '-';
  o = put_num(o, (unsigned long)tm.tm_mday, 2);
  *o++ = 'T';
  o = put_num(o, (unsigned long)tm.tm_hour, 2);
  *o++ = ':';
  o = put_num(o, (unsigned long)tm.tm_min, 2);
  *o++ = ':';
  o = put_num(o, (unsigned long)tm.tm_sec, 2);
  *o++ = '.';
  o = put_num(o, (unsigned long)ts->tv_nsec, 9);
  *o++ = 'Z';
  *o = '\0';
}

static int open_log(const char *path, int trunc) {
  return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (trunc ? O_TRUNC : 0), 0640);
}

int shimlog_open(shim_log_t *l, const char *path, long long max_size, int max_file) {
  memset(l, 0, sizeof(*l));
  l->fd = -1;
  l->path = path;
  l->max_size = max_size;
  l->max_file = max_file < 1 ? 1 : max_file;
  if (!path)
    return 0;
  l->fd = open_log(path, 0);
  if (l->fd < 0)
    return -1;
  struct stat st;
  if (fstat(l->fd, &st) == 0)
    l->size = st.st_size;
  return 0;
}

static void rotate(shim_log_t *l) {
  char from[PATH_MAX], to[PATH_MAX];
  if (l->max_file > 1) {
    for (int i = l->max_file - 1; i >= 1; i--) {
      if (i == 1)
        snprintf(from, sizeof(from), "%s", l->path);
      else
        snprintf(from, sizeof(from), "%s.%d", l->path, i - 1);
      snprintf(to, sizeof(to), "%s.%d", l->path, i);
      if (rename(from, to) < 0 && errno != ENOENT)
        dprintf(2, "pyrt-shim: rotate %s to %s: %s\n", from, to, strerror(errno));
    }
  }
  int fd = open_log(l->path, 1);
  if (fd < 0) {
    dprintf(2, "pyrt-shim: reopen log %s: %s\n", l->path, strerror(errno));
    return; /* keep writing to the old descriptor */
  }
  close(l->fd);
  l->fd = fd;
  l->size = 0;
}

static void write_entry(shim_log_t *l, int stream, const char *data, size_t len) {
  if (l->fd < 0 || len == 0)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char *o = entry;
  memcpy(o, "{\"log\":\"", 8);
  o += 8;
  o += shim_json_escape(o, (const unsigned char *)data, len);
  const char *mid = stream == SHIM_STDERR ? "\",\"stream\":\"stderr\",\"time\":\""
                                          : "\",\"stream\":\"stdout\",\"time\":\"";
  size_t ml = strlen(mid);
  memcpy(o, mid, ml);
  o += ml;
  shim_format_time(o, &ts);
  o += strlen(o);
  memcpy(o, "\"}\n", 3);
  o += 3;
  size_t n = (size_t)(o - entry);
  if (l->max_size > 0 && l->size > 0 && l->size + (long long)n > l->max_size)
    rotate(l);
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(l->fd, entry + off, n - off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (!l->failed)
        dprintf(2, "pyrt-shim: write log %s: %s\n", l->path, strerror(errno));
      l->failed = 1;
      return;
    }
    off += (size_t)w;
  }
  l->size += (long long)n;
}

void shimlog_feed(shim_log_t *l, int stream, const char *data, size_t len) {
  shim_linebuf_t *lb = &l->line[stream == SHIM_STDERR ? 2 : 1];
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    size_t take = nl ? (size_t)(nl - data) + 1 : len;
    if (lb->len == 0 && nl && take <= SHIM_LOG_LINE_MAX) {
      write_entry(l, stream, data, take); /* a whole line, no copy */
      data += take, len -= take;
      continue;
    }
    size_t room = SHIM_LOG_LINE_MAX - lb->len;
    size_t n = take < room ? take : room;
    memcpy(lb->buf + lb->len, data, n);
    lb->len += n;
    data += n, len -= n;
    if (lb->len == SHIM_LOG_LINE_MAX || (nl && n == take)) {
      write_entry(l, stream, lb->buf, lb->len);
      lb->len = 0;
    }
  }
}

void shimlog_flush(shim_log_t *l, int stream) {
  shim_linebuf_t *lb = &l->line[stream == SHIM_STDERR ? 2 : 1];
  write_entry(l, stream, lb->buf, lb->len);
  lb->len = 0;
}

void shimlog_close(shim_log_t *l) {
  if (l->fd >= 0)
    close(l->fd);
  l->fd = -1;
}
