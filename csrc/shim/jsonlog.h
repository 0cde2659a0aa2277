/* Docker's json-file log format, written by pyrt-shim.
 *
 * One JSON object per line:
 *   {"log":"hello\n","stream":"stdout","time":"2026-11-28T03:30:15.123456789Z"}
 * Output is split at '\n'; a line longer than SHIM_LOG_LINE_MAX is written in pieces of
 * that size without the newline (docker's partial messages). Invalid UTF-8 bytes become
 * U+FFFD. The file rotates at max_size into file.1, file.2 ... file.<max_file-1>. */
#ifndef PYRT_SHIM_JSONLOG_H
#define PYRT_SHIM_JSONLOG_H

#include <stddef.h>
#include <time.h>

#define SHIM_LOG_LINE_MAX 16384

enum { SHIM_STDOUT = 1, SHIM_STDERR = 2 };

typedef struct {
  char buf[SHIM_LOG_LINE_MAX];
  size_t len;
} shim_linebuf_t;

typedef struct {
  const char *path; /* NULL: logging off */
  int fd;
  long long size;
  long long max_size; /* <= 0: no rotation */
  int max_file;       /* >= 1 */
  int failed;         /* a write failed (reported once) */
  shim_linebuf_t line[3];
} shim_log_t;

/* Opens (appends to) path; returns -1 with errno on failure. */
int shimlog_open(shim_log_t *l, const char *path, long long max_size, int max_file);
/* Feed raw output of one stream; complete lines (and 16 KiB pieces) are written. */
void shimlog_feed(shim_log_t *l, int stream, const char *data, size_t len);
/* Write what is buffered for a stream (at EOF) as a final entry without newline. */
void shimlog_flush(shim_log_t *l, int stream);
void shimlog_close(shim_log_t *l);

/* JSON string body of in[0..len) into out (room for 6*len bytes); returns its length. */
size_t shim_json_escape(char *out, const unsigned char *in, size_t len);
/* RFC 3339 UTC with nanoseconds: 2026-11-28T03:30:15.123456789Z (31 bytes + NUL). */
void shim_format_time(char out[40], const struct timespec *ts);

#endif
