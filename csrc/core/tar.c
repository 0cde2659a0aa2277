/* Image layers: streaming decompression + digests + safe tar extraction (and packing).
 *
 * Unpack runs as a two-stage pipeline. A producer thread read()s the input fd until EOF
 * (file or pipe, never seeks), hashes the compressed bytes (the blob digest), inflates
 * (ISA-L igzip, which checks each member's CRC-32 and length) or ZSTD_decompressStream()s
 * into 1 MiB chunks, hashes each chunk (the diff id) and queues it; the calling thread
 * only parses the tar and writes the tree. The two overlap, as `tar -xzf` overlaps gzip
 * and tar in two processes; all the CPU-bound work is on the producer, so the extracting
 * thread spends its time in the kernel creating files (profiled: inode allocation). igzip
 * inflates about 3x faster than zlib, which left the producer as the slower stage.
 *
 * Path safety: see tar.h. Names are cleaned lexically (no ".." ever reaches the kernel),
 * parents are opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), and the final
 * component is never followed. */
#include "tar.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>

#define CHUNK_SIZE (1u << 20)
#define NCHUNKS 8
#define BLOCK 512
#define MAX_PAX_SIZE (1u << 20)
#define MAX_FILE_SIZE (1ull << 42) /* 4 TiB: anything larger is a hostile size field */
#define NAME_SHOW 200              /* how much of a hostile name goes into a message */

enum { COMP_NONE = 0, COMP_GZIP = 1, COMP_ZSTD = 2 };
static const char *const comp_names[] = {"plain tar", "gzip", "zstd"};

/* ------------------------------------------------------------------------------------
 * The pipeline: producer (read + blob hash + decompress) -> chunk ring -> consumer.
 * ------------------------------------------------------------------------------------ */

typedef struct chunk {
  unsigned char *data;
  size_t len;
} chunk_t;

typedef struct pipeline {
  int in_fd;
  int cancel_fd; /* eventfd: wakes a producer blocked on a pipe */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  chunk_t chunks[NCHUNKS];
  int head, count; /* full chunks: head .. head+count-1 */
  int done;        /* producer finished (EOF or error) */
  int cancel;      /* consumer gave up: producer stops */
  int perr_set, perr_bad_input;
  pyrt_error_t perr;
  int kind;
  pyrt_sha256_t blob_hash;
  pyrt_sha256_t diff_hash; /* of the uncompressed tar: updated here, before publishing */
  uint64_t in_size, out_size;
  /* consumer side */
  int holding;
  size_t pos;
} pipeline_t;

static void pl_set_error(pipeline_t *pl, int bad_input, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pl_set_error(pipeline_t *pl, int bad_input, int status, const char *fmt, ...) {
  va_list ap;
  if (pl->perr_set)
    return;
  pl->perr_set = 1;
  pl->perr_bad_input = bad_input;
  pl->perr.status = status;
  va_start(ap, fmt);
  vsnprintf(pl->perr.msg, sizeof(pl->perr.msg), fmt, ap);
  va_end(ap);
}

/* Reads up to len bytes; 0 at EOF, -1 on error or cancel (perr set unless cancelled).
 * poll() first, so a consumer that gives up can wake a reader blocked on an idle pipe. */
static ssize_t pl_read(pipeline_t *pl, void *buf, size_t len) {
  struct pollfd pf[2] = {{.fd = pl->in_fd, .events = POLLIN},
                         {.fd = pl->cancel_fd, .events = POLLIN}};
  for (;;) {
    if (__atomic_load_n(&pl->cancel, __ATOMIC_ACQUIRE))
      return -1;
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      pl_set_error(pl, 0, errno, "poll layer input fd %d", pl->in_fd);
      return -1;
    }
    if (pf[1].revents)
      return -1;
    ssize_t n = read(pl->in_fd, buf, len);
    if (n >= 0) {
      if (n > 0 && pyrt_sha256_update(&pl->blob_hash, buf, (size_t)n, NULL) < 0) {
        pl_set_error(pl, 0, EIO, "sha256 of the layer blob failed");
        return -1;
      }
      pl->in_size += (uint64_t)n;
      return n;
    }
    if (errno == EINTR || errno == EAGAIN)
      continue;
    pl_set_error(pl, 0, errno, "read layer input fd %d after %" PRIu64 " bytes", pl->in_fd,
                 pl->in_size);
    return -1;
  }
}

/* 1 when a read of the input would block now (an idle pipe): the producer then hands the
 * partly filled chunk over first, so the consumer never waits on data already read. */
static int pl_would_block(pipeline_t *pl) {
  struct pollfd pf = {.fd = pl->in_fd, .events = POLLIN};
  return poll(&pf, 1, 0) == 0;
}

/* A free chunk index for the producer to fill, or -1 when cancelled. */
static int pl_acquire(pipeline_t *pl) {
  int slot;
  pthread_mutex_lock(&pl->mu);
  while (pl->count == NCHUNKS && !pl->cancel)
    pthread_cond_wait(&pl->cv, &pl->mu);
  slot = pl->cancel ? -1 : (pl->head + pl->count) % NCHUNKS;
  pthread_mutex_unlock(&pl->mu);
  return slot;
}

/* Hands a filled chunk to the consumer; 0, or -1 (perr set) when hashing fails. A plain
 * tar is its own diff: its chunks are not hashed twice (see pyrt_unpack_layer). */
static int pl_publish(pipeline_t *pl, int slot, size_t len) {
  if (pl->kind != COMP_NONE &&
      pyrt_sha256_update(&pl->diff_hash, pl->chunks[slot].data, len, NULL) < 0) {
    pl_set_error(pl, 0, EIO, "sha256 of the uncompressed layer failed");
    return -1;
  }
  pthread_mutex_lock(&pl->mu);
  pl->chunks[slot].len = len;
  pl->count++;
  pl->out_size += len;
  pthread_cond_broadcast(&pl->cv);
  pthread_mutex_unlock(&pl->mu);
  return 0;
}

static void pl_finish(pipeline_t *pl) {
  pthread_mutex_lock(&pl->mu);
  pl->done = 1;
  pthread_cond_broadcast(&pl->cv);
  pthread_mutex_unlock(&pl->mu);
}

/* After a decompression error: keep reading so the blob digest covers the whole input
 * (a digest mismatch explains a corrupt stream better than the inflate error does). */
static void pl_drain_raw(pipeline_t *pl, unsigned char *buf) {
  while (pl_read(pl, buf, CHUNK_SIZE) > 0) {
  }
}

static const char *isal_error_name(int rc) {
  switch (rc) {
  case ISAL_INVALID_BLOCK:
    return "invalid deflate block";
  case ISAL_INVALID_SYMBOL:
    return "invalid deflate symbol";
  case ISAL_INVALID_LOOKBACK:
    return "invalid distance too far back";
  case ISAL_INVALID_WRAPPER:
    return "not a gzip member (bad header)";
  case ISAL_UNSUPPORTED_METHOD:
    return "unsupported compression method";
  case ISAL_INCORRECT_CHECKSUM:
    return "checksum mismatch (header CRC-16, or the member's CRC-32 or length)";
  case ISAL_NEED_DICT:
    return "needs a preset dictionary";
  default:
    return "corrupt stream";
  }
}

/* Reads the rest of a plain tar into chunks (the peeked bytes in[0..have) first). */
static void produce_plain(pipeline_t *pl, const unsigned char *in, size_t have) {
  size_t off = 0;
  for (;;) {
    int slot = pl_acquire(pl);
    if (slot < 0)
      return;
    unsigned char *dst = pl->chunks[slot].data;
    size_t filled = 0;
    if (off < have) {
      memcpy(dst, in + off, have - off);
      filled = have - off;
      off = have;
    }
    int eof = 0;
    while (filled < CHUNK_SIZE) {
      if (filled > 0 && pl_would_block(pl))
        break;
      ssize_t n = pl_read(pl, dst + filled, CHUNK_SIZE - filled);
      if (n < 0)
        return;
      if (n == 0) {
        eof = 1;
        break;
      }
      filled += (size_t)n;
    }
    if (filled > 0 && pl_publish(pl, slot, filled) < 0)
      return;
    if (eof)
      return;
  }
}

static void *producer_main(void *arg) {
  pipeline_t *pl = arg;
  unsigned char *in = malloc(CHUNK_SIZE);
  size_t have = 0;
  int slot = -1;
  size_t filled = 0;
  struct inflate_state *gz = NULL; /* about 40 KiB: on the heap, not the thread stack */
  ZSTD_DCtx *zd = NULL;

  if (in == NULL) {
    pl_set_error(pl, 0, ENOMEM, "allocate layer read buffer");
    goto out;
  }
  (void)posix_fadvise(pl->in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  /* magic bytes: read until 4 bytes or EOF (a pipe may deliver them one at a time) */
  while (have < 4) {
    ssize_t n = pl_read(pl, in + have, CHUNK_SIZE - have);
    if (n < 0)
      goto out;
    if (n == 0)
      break;
    have += (size_t)n;
  }
  if (have >= 2 && in[0] == 0x1f && in[1] == 0x8b)
    pl->kind = COMP_GZIP;
  else if (have >= 4 && in[0] == 0x28 && in[1] == 0xb5 && in[2] == 0x2f && in[3] == 0xfd)
    pl->kind = COMP_ZSTD;
  else
    pl->kind = COMP_NONE;

  if (pl->kind == COMP_NONE) {
    produce_plain(pl, in, have);
    goto out;
  }
  if (pl->kind == COMP_GZIP) {
    gz = malloc(sizeof(*gz));
    if (gz == NULL) {
      pl_set_error(pl, 0, ENOMEM, "allocate the gzip inflate state");
      goto out;
    }
    isal_inflate_init(gz);
    gz->crc_flag = ISAL_GZIP; /* parse each member's header, verify its CRC-32 and ISIZE */
  } else {
    zd = ZSTD_createDCtx();
    if (zd == NULL) {
      pl_set_error(pl, 0, ENOMEM, "initialise zstd decompression");
      goto out;
    }
  }

  {
    int eof = 0;
    int in_frame = 0;  /* a gzip member / zstd frame started and has not ended */
    int pending = 0;   /* the last call filled the output: it may hold more to give */
    size_t in_pos = 0; /* consumed part of in[0..have) */
    if ((slot = pl_acquire(pl)) < 0)
      goto out;
    filled = 0;
    for (;;) {
      if (in_pos == have && !eof && !pending) {
        if (filled > 0 && pl_would_block(pl)) {
          if (pl_publish(pl, slot, filled) < 0 || (slot = pl_acquire(pl)) < 0)
            goto out;
          filled = 0;
        }
        ssize_t n = pl_read(pl, in, CHUNK_SIZE);
        if (n < 0)
          goto out;
        if (n == 0)
          eof = 1;
        have = (size_t)n;
        in_pos = 0;
      }
      if (in_pos == have && eof && !pending)
        break;
      if (pl->kind == COMP_GZIP) {
        gz->next_in = in + in_pos;
        gz->avail_in = (uint32_t)(have - in_pos);
        gz->next_out = pl->chunks[slot].data + filled;
        gz->avail_out = (uint32_t)(CHUNK_SIZE - filled);
        if (in_pos < have)
          in_frame = 1;
        int rc = isal_inflate(gz);
        in_pos = have - gz->avail_in;
        filled = CHUNK_SIZE - gz->avail_out;
        if (rc < 0 || rc == ISAL_NEED_DICT) {
          pl_set_error(pl, 1, EBADMSG, "malformed layer: gzip data error after %" PRIu64
                       " compressed bytes: %s", pl->in_size - (have - in_pos),
                       isal_error_name(rc));
          pl_drain_raw(pl, in);
          goto out;
        }
        pending = gz->avail_out == 0;
        if (gz->block_state == ISAL_BLOCK_FINISH) {
          /* member complete and verified; igzip hands back the bytes it read ahead, so
           * a following member continues the stream from in_pos */
          in_frame = 0;
          pending = 0;
          isal_inflate_reset(gz);
          gz->crc_flag = ISAL_GZIP;
        }
      } else {
        ZSTD_inBuffer ib = {in, have, in_pos};
        ZSTD_outBuffer ob = {pl->chunks[slot].data, CHUNK_SIZE, filled};
        size_t zret = ZSTD_decompressStream(zd, &ob, &ib);
        if (ZSTD_isError(zret)) {
          pl_set_error(pl, 1, EBADMSG, "malformed layer: zstd data error after %" PRIu64
                       " compressed bytes: %s", pl->in_size - (have - ib.pos),
                       ZSTD_getErrorName(zret));
          pl_drain_raw(pl, in);
          goto out;
        }
        in_pos = ib.pos;
        filled = ob.pos;
        in_frame = zret != 0; /* 0: frame complete */
        pending = filled == CHUNK_SIZE && in_frame;
      }
      if (filled == CHUNK_SIZE) {
        if (pl_publish(pl, slot, filled) < 0 || (slot = pl_acquire(pl)) < 0)
          goto out;
        filled = 0;
      }
    }
    if (filled > 0 && pl_publish(pl, slot, filled) < 0)
      goto out;
    if (in_frame)
      pl_set_error(pl, 1, EBADMSG, "truncated layer: the %s stream ends early, after %" PRIu64
                   " compressed bytes", comp_names[pl->kind], pl->in_size);
  }
out:
  free(gz);
  if (zd != NULL)
    ZSTD_freeDCtx(zd);
  free(in);
  pl_finish(pl);
  return NULL;
}

/* ------------------------------------------------------------------------------------
 * Extraction context and the consumer's view of the stream.
 * ------------------------------------------------------------------------------------ */

typedef struct xattr_kv {
  char *name;
  char *value;
  size_t len;
} xattr_kv_t;

typedef struct dirtime {
  char *path;
  struct timespec ts[2];
} dirtime_t;

typedef struct entry {
  char *name;     /* as in the archive (for messages) */
  char *path;     /* cleaned, relative to dest ("" is dest itself) */
  char *linkname; /* as in the archive */
  char type;
  uint64_t size;
  uint32_t mode;
  uint32_t uid, gid;
  struct timespec mtime, atime;
  unsigned devmajor, devminor;
  xattr_kv_t *xattrs;
  size_t nxattrs;
} entry_t;

typedef struct pax {
  char *path, *linkpath;
  int has_size, has_uid, has_gid, has_mtime, has_atime;
  uint64_t size;
  uint32_t uid, gid;
  struct timespec mtime, atime;
  xattr_kv_t *xattrs;
  size_t nxattrs;
} pax_t;

typedef struct ctx {
  pipeline_t *pl;
  const pyrt_unpack_options_t *opts;
  int rootfd;
  char *cache_path; /* parent dir cache: the last parent looked up */
  int cache_fd;
  int cache_dirty; /* something was removed: drop the cache after this entry */
  dirtime_t *dirtimes;
  size_t ndirtimes, capdirtimes;
  char last_name[NAME_SHOW + 1];
  uint64_t entries;
  uint64_t offset; /* uncompressed offset consumed so far */
  int bad_input;
  pyrt_error_t *err;
  unsigned char *iobuf; /* scratch for skipping */
} ctx_t;

/* An error caused by the archive's content (-> InvalidArgument in Python). */
static int bad(ctx_t *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(ctx_t *c, int status, const char *fmt, ...) {
  va_list ap;
  c->bad_input = 1;
  c->err->status = status;
  va_start(ap, fmt);
  vsnprintf(c->err->msg, sizeof(c->err->msg), fmt, ap);
  va_end(ap);
  return -1;
}

/* An error of the machine (-> SystemError_). */
static int sys(ctx_t *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sys(ctx_t *c, int status, const char *fmt, ...) {
  va_list ap;
  c->bad_input = 0;
  c->err->status = status;
  va_start(ap, fmt);
  vsnprintf(c->err->msg, sizeof(c->err->msg), fmt, ap);
  va_end(ap);
  return -1;
}

/* The producer's error, if any, becomes ours (with the entry as context). */
static int take_producer_error(ctx_t *c, const char *where) {
  pipeline_t *pl = c->pl;
  c->bad_input = pl->perr_bad_input;
  c->err->status = pl->perr.status;
  snprintf(c->err->msg, sizeof(c->err->msg), "%.300s (%.200s)", pl->perr.msg, where);
  return -1;
}

/* Makes bytes available: returns >0 (count at *p), 0 at EOF, -1 if the producer failed. */
static ssize_t src_peek(ctx_t *c, const unsigned char **p) {
  pipeline_t *pl = c->pl;
  if (pl->holding && pl->pos < pl->chunks[pl->head].len) {
    *p = pl->chunks[pl->head].data + pl->pos;
    return (ssize_t)(pl->chunks[pl->head].len - pl->pos);
  }
  pthread_mutex_lock(&pl->mu);
  if (pl->holding) {
    pl->head = (pl->head + 1) % NCHUNKS;
    pl->count--;
    pl->holding = 0;
    pthread_cond_broadcast(&pl->cv);
  }
  while (pl->count == 0 && !pl->done)
    pthread_cond_wait(&pl->cv, &pl->mu);
  int have = pl->count > 0;
  if (have) {
    pl->holding = 1;
    pl->pos = 0;
  }
  pthread_mutex_unlock(&pl->mu);
  if (!have)
    return pl->perr_set ? -1 : 0;
  chunk_t *ch = &pl->chunks[pl->head];
  *p = ch->data;
  return (ssize_t)ch->len;
}

static void src_consume(ctx_t *c, size_t n) {
  c->pl->pos += n;
  c->offset += n;
}

/* Copies exactly n bytes; returns n, a smaller count at EOF, or -1. */
static ssize_t src_read(ctx_t *c, void *dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    const unsigned char *p;
    ssize_t a = src_peek(c, &p);
    if (a <= 0)
      return a < 0 ? -1 : (ssize_t)got;
    size_t k = (size_t)a < n - got ? (size_t)a : n - got;
    memcpy((char *)dst + got, p, k);
    src_consume(c, k);
    got += k;
  }
  return (ssize_t)got;
}

/* Skips n bytes; returns the count skipped (< n at EOF) or -1. */
static int64_t src_skip(ctx_t *c, uint64_t n) {
  uint64_t done = 0;
  while (done < n) {
    const unsigned char *p;
    ssize_t a = src_peek(c, &p);
    if (a <= 0)
      return a < 0 ? -1 : (int64_t)done;
    uint64_t k = (uint64_t)a < n - done ? (uint64_t)a : n - done;
    src_consume(c, (size_t)k);
    done += k;
  }
  return (int64_t)done;
}

static uint64_t pad512(uint64_t n) { return (BLOCK - (n % BLOCK)) % BLOCK; }

/* Reads the data of a meta entry (pax, GNU long name) fully, plus its padding. */
static int read_meta_data(ctx_t *c, const char *what, uint64_t size, char **out) {
  char *buf = malloc(size + 1);
  if (buf == NULL)
    return sys(c, ENOMEM, "allocate %s of %" PRIu64 " bytes", what, size);
  ssize_t n = src_read(c, buf, size);
  if (n < 0 || (uint64_t)n < size) {
    free(buf);
    if (n < 0 && c->pl->perr_set)
      return take_producer_error(c, what);
    if (n < 0)
      return -1;
    return bad(c, EINVAL, "truncated layer: %s after entry '%s' ends early", what, c->last_name);
  }
  buf[size] = '\0';
  int64_t s = src_skip(c, pad512(size));
  if (s < 0) {
    free(buf);
    return c->pl->perr_set ? take_producer_error(c, what) : -1;
  }
  *out = buf;
  return 0;
}

/* ------------------------------------------------------------------------------------
 * Header fields: strict numbers, names.
 * ------------------------------------------------------------------------------------ */

/* octal (leading spaces, digits, then only NUL/space) or base-256 (0x80 lead byte).
 * Returns 0, or -1 for a malformed or negative field. An empty field is 0. */
static int parse_number(const unsigned char *f, size_t len, uint64_t *out) {
  uint64_t v = 0;
  size_t i = 0;
  if (f[0] & 0x80) {
    if (f[0] != 0x80)
      return -1; /* 0xff: negative */
    for (i = 1; i < len; i++) {
      if (v >> 55)
        return -1; /* would overflow 63 bits */
      v = (v << 8) | f[i];
    }
    *out = v;
    return 0;
  }
  while (i < len && f[i] == ' ')
    i++;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60)
      return -1;
    v = (v << 3) | (uint64_t)(f[i] - '0');
  }
  for (; i < len; i++)
    if (f[i] != '\0' && f[i] != ' ')
      return -1;
  *out = v;
  return 0;
}

static char *field_str(const unsigned char *f, size_t len) {
  size_t n = strnlen((const char *)f, len);
  char *s = malloc(n + 1);
  if (s != NULL) {
    memcpy(s, f, n);
    s[n] = '\0';
  }
  return s;
}

/* Lexical clean: drops "" and "." components and a leading "/", resolves ".."; returns -1
 * when ".." would climb above the root. out gets at most strlen(raw)+1 bytes. */
static int clean_path(const char *raw, char *out) {
  size_t o = 0;
  const char *s = raw;
  while (*s) {
    while (*s == '/')
      s++;
    if (!*s)
      break;
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 1 && s[0] == '.') {
      /* skip */
    } else if (n == 2 && s[0] == '.' && s[1] == '.') {
      if (o == 0)
        return -1;
      while (o > 0 && out[o - 1] != '/')
        o--;
      if (o > 0)
        o--; /* the slash */
    } else {
      if (o > 0)
        out[o++] = '/';
      memcpy(out + o, s, n);
      o += n;
    }
    s += n;
  }
  out[o] = '\0';
  return 0;
}

static void show(char *dst, const char *name) {
  snprintf(dst, NAME_SHOW + 1, "%s", name);
}

/* ------------------------------------------------------------------------------------
 * pax records
 * ------------------------------------------------------------------------------------ */

static void xattrs_free(xattr_kv_t *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(x[i].name);
    free(x[i].value);
  }
  free(x);
}

static void pax_reset(pax_t *p) {
  free(p->path);
  free(p->linkpath);
  xattrs_free(p->xattrs, p->nxattrs);
  memset(p, 0, sizeof(*p));
}

static int parse_decimal_u(const char *s, size_t n, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    if (v > (max - (uint64_t)(s[i] - '0')) / 10)
      return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return 0;
}

/* "[-]sec[.frac]" -> timespec */
static int parse_pax_time(const char *s, size_t n, struct timespec *ts) {
  int neg = 0;
  uint64_t sec = 0;
  long nsec = 0;
  size_t i = 0;
  if (n > 0 && s[0] == '-') {
    neg = 1;
    i = 1;
  }
  size_t start = i;
  while (i < n && s[i] != '.')
    i++;
  if (parse_decimal_u(s + start, i - start, (uint64_t)INT64_MAX / 2, &sec) < 0)
    return -1;
  if (i < n) { /* fraction */
    i++;
    if (i == n)
      return -1;
    int digits = 0;
    for (; i < n; i++) {
      if (s[i] < '0' || s[i] > '9')
        return -1;
      if (digits < 9) {
        nsec = nsec * 10 + (s[i] - '0');
        digits++;
      }
    }
    for (; digits < 9; digits++)
      nsec *= 10;
  }
  if (neg) {
    ts->tv_sec = -(time_t)sec;
    if (nsec) {
      ts->tv_sec -= 1;
      nsec = 1000000000L - nsec;
    }
  } else {
    ts->tv_sec = (time_t)sec;
  }
  ts->tv_nsec = nsec;
  return 0;
}

static int xattr_add(xattr_kv_t **arr, size_t *n, const char *name, size_t nlen,
                     const char *value, size_t vlen) {
  xattr_kv_t *a = realloc(*arr, (*n + 1) * sizeof(**arr));
  if (a == NULL)
    return -1;
  *arr = a;
  a[*n].name = strndup(name, nlen);
  a[*n].value = malloc(vlen ? vlen : 1);
  if (a[*n].name == NULL || a[*n].value == NULL) {
    free(a[*n].name);
    free(a[*n].value);
    return -1;
  }
  memcpy(a[*n].value, value, vlen);
  a[*n].len = vlen;
  (*n)++;
  return 0;
}

static int parse_pax(ctx_t *c, const char *buf, size_t len, pax_t *p) {
  size_t pos = 0;
  while (pos < len) {
    size_t i = pos;
    uint64_t rlen = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - pos < 8)
      rlen = rlen * 10 + (uint64_t)(buf[i++] - '0');
    if (i == pos || i >= len || buf[i] != ' ' || rlen <= i - pos + 1 || rlen > len - pos)
      return bad(c, EINVAL, "malformed layer: bad pax record at byte %zu of the pax header "
                 "after entry '%s'", pos, c->last_name);
    const char *rec = buf + i + 1;
    const char *end = buf + pos + rlen; /* one past '\n' */
    if (end[-1] != '\n')
      return bad(c, EINVAL, "malformed layer: pax record at byte %zu does not end in a "
                 "newline (after entry '%s')", pos, c->last_name);
    const char *eq = memchr(rec, '=', (size_t)(end - 1 - rec));
    if (eq == NULL || eq == rec)
      return bad(c, EINVAL, "malformed layer: pax record at byte %zu has no key=value "
                 "(after entry '%s')", pos, c->last_name);
    size_t klen = (size_t)(eq - rec);
    const char *val = eq + 1;
    size_t vlen = (size_t)(end - 1 - val);
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(rec, s, klen) == 0)
    if (KEY("path") || KEY("linkpath")) {
      if (memchr(val, '\0', vlen) != NULL)
        return bad(c, EINVAL, "malformed layer: pax %.*s contains a NUL byte (after entry "
                   "'%s')", (int)klen, rec, c->last_name);
      if (vlen >= PATH_MAX)
        return bad(c, ENAMETOOLONG, "malformed layer: pax %.*s of %zu bytes is longer than "
                   "PATH_MAX (after entry '%s')", (int)klen, rec, vlen, c->last_name);
      char **dst = KEY("path") ? &p->path : &p->linkpath;
      free(*dst);
      *dst = vlen ? strndup(val, vlen) : NULL;
      if (vlen && *dst == NULL)
        return sys(c, ENOMEM, "allocate pax path");
    } else if (KEY("size")) {
      if (parse_decimal_u(val, vlen, MAX_FILE_SIZE, &p->size) < 0)
        return bad(c, EINVAL, "malformed layer: pax size '%.*s' is not a number up to %llu "
                   "(after entry '%s')", (int)(vlen > 40 ? 40 : vlen), val, MAX_FILE_SIZE,
                   c->last_name);
      p->has_size = 1;
    } else if (KEY("uid") || KEY("gid")) {
      uint64_t v;
      if (parse_decimal_u(val, vlen, 0xfffffffeu, &v) < 0)
        return bad(c, EINVAL, "malformed layer: pax %.*s '%.*s' is not a valid id (after "
                   "entry '%s')", (int)klen, rec, (int)(vlen > 40 ? 40 : vlen), val,
                   c->last_name);
      if (KEY("uid")) {
        p->uid = (uint32_t)v;
        p->has_uid = 1;
      } else {
        p->gid = (uint32_t)v;
        p->has_gid = 1;
      }
    } else if (KEY("mtime") || KEY("atime")) {
      struct timespec ts;
      if (parse_pax_time(val, vlen, &ts) < 0)
        return bad(c, EINVAL, "malformed layer: pax %.*s '%.*s' is not a time (after entry "
                   "'%s')", (int)klen, rec, (int)(vlen > 40 ? 40 : vlen), val, c->last_name);
      if (KEY("mtime")) {
        p->mtime = ts;
        p->has_mtime = 1;
      } else {
        p->atime = ts;
        p->has_atime = 1;
      }
    } else if (klen > 13 && memcmp(rec, "SCHILY.xattr.", 13) == 0) {
      if (memchr(rec + 13, '\0', klen - 13) != NULL || klen - 13 > XATTR_NAME_MAX)
        return bad(c, EINVAL, "malformed layer: bad xattr name in pax header (after entry "
                   "'%s')", c->last_name);
      if (xattr_add(&p->xattrs, &p->nxattrs, rec + 13, klen - 13, val, vlen) < 0)
        return sys(c, ENOMEM, "allocate xattr");
    } else if (klen > 11 && memcmp(rec, "GNU.sparse.", 11) == 0) {
      return bad(c, EINVAL, "layer: GNU sparse files are not supported (pax key '%.*s' after "
                 "entry '%s')", (int)klen, rec, c->last_name);
    }
    /* other keys (uname, gname, ctime, comment, charset, ...) are ignored */
#undef KEY
    pos += rlen;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------
 * Filesystem side: parents beneath the root, replacing entries, metadata.
 * ------------------------------------------------------------------------------------ */

static int openat2_beneath(int dirfd, const char *path, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = (uint64_t)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd, tries = 0;
  do
    fd = (int)syscall(SYS_openat2, dirfd, *path ? path : ".", &how, sizeof(how));
  while (fd < 0 && errno == EAGAIN && ++tries < 32);
  return fd;
}

static int parent_error(ctx_t *c, const char *name, const char *what, const char *dir, int e) {
  switch (e) {
  case EXDEV:
    return bad(c, EXDEV, "layer entry '%s': %s '%s' resolves outside the layer root (through "
               "a symlink)", name, what, dir);
  case ELOOP:
    return bad(c, ELOOP, "layer entry '%s': %s '%s' goes through a symlink loop or a magic "
               "link", name, what, dir);
  case ENOTDIR:
    return bad(c, ENOTDIR, "layer entry '%s': %s '%s' is not a directory", name, what, dir);
  case ENAMETOOLONG:
    return bad(c, ENAMETOOLONG, "layer entry '%s': %s '%s' has a component longer than "
               "NAME_MAX", name, what, dir);
  default:
    return sys(c, e, "layer entry '%s': open %s '%s' in the layer", name, what, dir);
  }
}

/* Opens (creating missing components 0755) the directory `dir` beneath the root. */
static int open_dir_creating(ctx_t *c, const char *name, const char *dir) {
  int fd = openat2_beneath(c->rootfd, dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0 || errno != ENOENT)
    return fd >= 0 ? fd : parent_error(c, name, "parent", dir, errno);
  /* slow path: walk component by component, each resolved from the root */
  size_t n = strlen(dir);
  char *buf = malloc(n + 1);
  if (buf == NULL)
    return sys(c, ENOMEM, "allocate path");
  memcpy(buf, dir, n + 1);
  int prev = openat2_beneath(c->rootfd, "", O_RDONLY | O_DIRECTORY);
  size_t i = 0;
  while (prev >= 0 && i < n) {
    size_t j = i;
    while (j < n && buf[j] != '/')
      j++;
    buf[j] = '\0';
    int next = openat2_beneath(c->rootfd, buf, O_RDONLY | O_DIRECTORY);
    if (next < 0 && errno == ENOENT) {
      if (mkdirat(prev, buf + i, 0755) < 0 && errno != EEXIST) {
        int e = errno;
        close(prev);
        sys(c, e, "layer entry '%s': create missing parent '%s'", name, buf);
        free(buf);
        return -1;
      }
      next = openat2_beneath(c->rootfd, buf, O_RDONLY | O_DIRECTORY);
    }
    if (next < 0) {
      int e = errno;
      close(prev);
      parent_error(c, name, "parent", buf, e);
      free(buf);
      return -1;
    }
    close(prev);
    prev = next;
    if (j < n)
      buf[j] = '/';
    i = j + 1;
  }
  free(buf);
  if (prev < 0)
    return sys(c, errno, "open the layer root");
  return prev;
}

static void cache_drop(ctx_t *c) {
  if (c->cache_fd >= 0)
    close(c->cache_fd);
  c->cache_fd = -1;
  free(c->cache_path);
  c->cache_path = NULL;
  c->cache_dirty = 0;
}

/* The parent directory fd of path (borrowed: owned by the cache); *base -> last component */
static int get_parent(ctx_t *c, const char *name, const char *path, const char **base) {
  const char *slash = strrchr(path, '/');
  size_t plen = slash ? (size_t)(slash - path) : 0;
  *base = slash ? slash + 1 : path;
  if (c->cache_path != NULL && strlen(c->cache_path) == plen &&
      memcmp(c->cache_path, path, plen) == 0)
    return c->cache_fd;
  cache_drop(c);
  char *dir = strndup(path, plen);
  if (dir == NULL)
    return sys(c, ENOMEM, "allocate path");
  int fd = open_dir_creating(c, name, dir);
  if (fd < 0) {
    free(dir);
    return -1;
  }
  c->cache_fd = fd;
  c->cache_path = dir;
  return fd;
}

/* rm -rf of dirfd/name (a directory), never following symlinks */
static int remove_tree(int dirfd, const char *name) {
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -1;
  }
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(fd, de->d_name, 0) == 0)
      continue;
    if ((errno == EISDIR || errno == EPERM) && remove_tree(fd, de->d_name) == 0)
      continue;
    rc = -1;
    break;
  }
  int saved = errno;
  closedir(d);
  if (rc < 0) {
    errno = saved;
    return -1;
  }
  return unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* Removes whatever is at pfd/base (file, symlink, or a whole directory). */
static int remove_existing(ctx_t *c, const char *name, int pfd, const char *base) {
  c->cache_dirty = 1;
  if (unlinkat(pfd, base, 0) == 0 || errno == ENOENT)
    return 0;
  if ((errno == EISDIR || errno == EPERM) && remove_tree(pfd, base) == 0)
    return 0;
  return sys(c, errno, "layer entry '%s': remove the existing '%s'", name, base);
}

static int check_xattr_name(ctx_t *c, const entry_t *e, const char *xname) {
  if (strncmp(xname, "trusted.overlay.", 16) == 0)
    return bad(c, EPERM, "layer entry '%s': xattr '%s' is reserved for overlayfs", e->name,
               xname);
  return 0;
}

static int set_xattrs_fd(ctx_t *c, const entry_t *e, int fd) {
  for (size_t i = 0; i < e->nxattrs; i++) {
    if (check_xattr_name(c, e, e->xattrs[i].name) < 0)
      return -1;
    if (fsetxattr(fd, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0) < 0)
      return sys(c, errno, "layer entry '%s': set xattr '%s'", e->name, e->xattrs[i].name);
  }
  return 0;
}

/* xattrs on a node that cannot be opened for writing (symlink, device, fifo): through the
 * parent's /proc/self/fd link and the final name, without following it (lsetxattr). */
static int set_xattrs_at(ctx_t *c, const entry_t *e, int pfd, const char *base) {
  char p[64 + NAME_MAX];
  if (e->nxattrs == 0)
    return 0;
  snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", pfd, base);
  for (size_t i = 0; i < e->nxattrs; i++) {
    if (check_xattr_name(c, e, e->xattrs[i].name) < 0)
      return -1;
    if (lsetxattr(p, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0) < 0)
      return sys(c, errno, "layer entry '%s': set xattr '%s'", e->name, e->xattrs[i].name);
  }
  return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int data_truncated(ctx_t *c, const entry_t *e, uint64_t got) {
  if (c->pl->perr_set) {
    char where[NAME_SHOW + 40];
    snprintf(where, sizeof(where), "in entry '%s'", e->name);
    return take_producer_error(c, where);
  }
  return bad(c, EINVAL, "truncated layer: entry '%s' ends after %" PRIu64 " of %" PRIu64
             " data bytes", e->name, got, e->size);
}

/* Skips an entry's data and padding. */
static int skip_data(ctx_t *c, const entry_t *e) {
  uint64_t total = e->size + pad512(e->size);
  int64_t n = src_skip(c, total);
  if (n < 0 && !c->pl->perr_set)
    return -1;
  if (n < 0 || (uint64_t)n < total)
    return data_truncated(c, e, n < 0 ? 0 : (uint64_t)n);
  return 0;
}

static int extract_file(ctx_t *c, const entry_t *e, int pfd, const char *base) {
  int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    if (remove_existing(c, e->name, pfd, base) < 0)
      return -1;
    fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  }
  if (fd < 0)
    return sys(c, errno, "layer entry '%s': create file", e->name);
  uint64_t left = e->size;
  while (left > 0) {
    const unsigned char *p;
    ssize_t a = src_peek(c, &p);
    if (a <= 0) {
      close(fd);
      if (a < 0 && !c->pl->perr_set)
        return -1;
      return data_truncated(c, e, e->size - left);
    }
    size_t k = (uint64_t)a < left ? (size_t)a : (size_t)left;
    if (write_all(fd, p, k) < 0) {
      int er = errno;
      close(fd);
      return sys(c, er, "layer entry '%s': write", e->name);
    }
    src_consume(c, k);
    left -= k;
  }
  uint64_t pad = pad512(e->size);
  int64_t s = src_skip(c, pad);
  if (s < 0 || (uint64_t)s < pad) {
    close(fd);
    if (s < 0 && !c->pl->perr_set)
      return -1;
    return data_truncated(c, e, e->size);
  }
  /* chown first: it clears setuid/setgid bits and security.capability */
  if (fchown(fd, e->uid, e->gid) < 0 || fchmod(fd, e->mode) < 0) {
    int er = errno;
    close(fd);
    return sys(c, er, "layer entry '%s': set owner %u:%u and mode %04o", e->name, e->uid,
               e->gid, e->mode);
  }
  if (set_xattrs_fd(c, e, fd) < 0) {
    close(fd);
    return -1;
  }
  struct timespec ts[2] = {e->atime, e->mtime};
  if (futimens(fd, ts) < 0) {
    int er = errno;
    close(fd);
    return sys(c, er, "layer entry '%s': set times", e->name);
  }
  if (close(fd) < 0)
    return sys(c, errno, "layer entry '%s': close", e->name);
  return 0;
}

static int record_dirtime(ctx_t *c, const entry_t *e) {
  if (c->ndirtimes == c->capdirtimes) {
    size_t cap = c->capdirtimes ? c->capdirtimes * 2 : 256;
    dirtime_t *d = realloc(c->dirtimes, cap * sizeof(*d));
    if (d == NULL)
      return sys(c, ENOMEM, "allocate directory times");
    c->dirtimes = d;
    c->capdirtimes = cap;
  }
  c->dirtimes[c->ndirtimes].path = strdup(e->path);
  if (c->dirtimes[c->ndirtimes].path == NULL)
    return sys(c, ENOMEM, "allocate path");
  c->dirtimes[c->ndirtimes].ts[0] = e->atime;
  c->dirtimes[c->ndirtimes].ts[1] = e->mtime;
  c->ndirtimes++;
  return 0;
}

static int extract_dir(ctx_t *c, const entry_t *e, int pfd, const char *base) {
  int fd;
  if (*e->path == '\0') {
    fd = openat(c->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else {
    if (mkdirat(pfd, base, 0700) < 0) {
      struct stat st;
      if (errno != EEXIST)
        return sys(c, errno, "layer entry '%s': create directory", e->name);
      if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sys(c, errno, "layer entry '%s': stat the existing entry", e->name);
      if (!S_ISDIR(st.st_mode)) {
        if (remove_existing(c, e->name, pfd, base) < 0)
          return -1;
        if (mkdirat(pfd, base, 0700) < 0)
          return sys(c, errno, "layer entry '%s': create directory", e->name);
      }
    }
    fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0)
    return sys(c, errno, "layer entry '%s': open directory", e->name);
  if (fchown(fd, e->uid, e->gid) < 0 || fchmod(fd, e->mode) < 0) {
    int er = errno;
    close(fd);
    return sys(c, er, "layer entry '%s': set owner %u:%u and mode %04o", e->name, e->uid,
               e->gid, e->mode);
  }
  int rc = set_xattrs_fd(c, e, fd);
  close(fd);
  if (rc < 0)
    return -1;
  return record_dirtime(c, e);
}

/* owner, mode (not for symlinks), xattrs and times of a node made by name */
static int finish_node(ctx_t *c, const entry_t *e, int pfd, const char *base, int is_link) {
  if (fchownat(pfd, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
    return sys(c, errno, "layer entry '%s': set owner %u:%u", e->name, e->uid, e->gid);
  /* the node was just made here by us and is not a symlink: fchmodat cannot be misled */
  if (!is_link && fchmodat(pfd, base, e->mode, 0) < 0)
    return sys(c, errno, "layer entry '%s': set mode %04o", e->name, e->mode);
  if (set_xattrs_at(c, e, pfd, base) < 0)
    return -1;
  struct timespec ts[2] = {e->atime, e->mtime};
  if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
    return sys(c, errno, "layer entry '%s': set times", e->name);
  return 0;
}

static int extract_symlink(ctx_t *c, const entry_t *e, int pfd, const char *base) {
  if (*e->linkname == '\0')
    return bad(c, EINVAL, "layer entry '%s': symlink with an empty target", e->name);
  if (symlinkat(e->linkname, pfd, base) < 0) {
    if (errno != EEXIST)
      return sys(c, errno, "layer entry '%s': create symlink", e->name);
    if (remove_existing(c, e->name, pfd, base) < 0)
      return -1;
    if (symlinkat(e->linkname, pfd, base) < 0)
      return sys(c, errno, "layer entry '%s': create symlink", e->name);
  }
  return finish_node(c, e, pfd, base, 1);
}

static int make_node(ctx_t *c, const entry_t *e, int pfd, const char *base, mode_t type,
                     dev_t dev) {
  if (mknodat(pfd, base, type | 0600, dev) < 0) {
    if (errno != EEXIST)
      return sys(c, errno, "layer entry '%s': create node", e->name);
    if (remove_existing(c, e->name, pfd, base) < 0)
      return -1;
    if (mknodat(pfd, base, type | 0600, dev) < 0)
      return sys(c, errno, "layer entry '%s': create node", e->name);
  }
  return 0;
}

static int extract_hardlink(ctx_t *c, const entry_t *e, int pfd, const char *base) {
  size_t n = strlen(e->linkname);
  char *target = malloc(n + 1);
  int rc = -1, tpfd = -1;
  if (target == NULL)
    return sys(c, ENOMEM, "allocate path");
  if (clean_path(e->linkname, target) < 0) {
    bad(c, EXDEV, "layer entry '%s': hard link target '%s' leaves the layer root", e->name,
        e->linkname);
    goto out;
  }
  if (*target == '\0') {
    bad(c, EINVAL, "layer entry '%s': hard link to the layer root", e->name);
    goto out;
  }
  if (strcmp(target, e->path) == 0) {
    bad(c, EINVAL, "layer entry '%s': hard link to itself", e->name);
    goto out;
  }
  const char *slash = strrchr(target, '/');
  const char *tbase = slash ? slash + 1 : target;
  if (slash)
    *(char *)slash = '\0';
  tpfd = openat2_beneath(c->rootfd, slash ? target : "", O_RDONLY | O_DIRECTORY);
  if (tpfd < 0) {
    int er = errno;
    if (er == ENOENT)
      bad(c, ENOENT, "layer entry '%s': hard link target '%s' does not exist in the layer",
          e->name, e->linkname);
    else
      parent_error(c, e->name, "hard link target directory", slash ? target : ".", er);
    goto out;
  }
  struct stat st;
  if (fstatat(tpfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT)
      bad(c, ENOENT, "layer entry '%s': hard link target '%s' does not exist in the layer",
          e->name, e->linkname);
    else
      sys(c, errno, "layer entry '%s': stat hard link target '%s'", e->name, e->linkname);
    goto out;
  }
  if (S_ISDIR(st.st_mode)) {
    bad(c, EPERM, "layer entry '%s': hard link target '%s' is a directory", e->name,
        e->linkname);
    goto out;
  }
  if (linkat(tpfd, tbase, pfd, base, 0) < 0) {
    if (errno != EEXIST) {
      sys(c, errno, "layer entry '%s': hard link to '%s'", e->name, e->linkname);
      goto out;
    }
    if (remove_existing(c, e->name, pfd, base) < 0)
      goto out;
    if (linkat(tpfd, tbase, pfd, base, 0) < 0) {
      if (errno == ENOENT)
        bad(c, ENOENT, "layer entry '%s': hard link target '%s' was removed by replacing "
            "the entry", e->name, e->linkname);
      else
        sys(c, errno, "layer entry '%s': hard link to '%s'", e->name, e->linkname);
      goto out;
    }
  }
  rc = 0;
out:
  if (tpfd >= 0)
    close(tpfd);
  free(target);
  return rc;
}

static int extract_whiteout(ctx_t *c, const entry_t *e, int pfd, const char *base) {
  const char *victim = base + 4;
  if (strcmp(victim, ".wh..opq") == 0) {
    if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
      return sys(c, errno, "layer entry '%s': set trusted.overlay.opaque on its directory",
                 e->name);
    return 0;
  }
  if (strncmp(victim, ".wh.", 4) == 0)
    return 0; /* aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not a whiteout, ignored */
  if (*victim == '\0' || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
    return bad(c, EINVAL, "layer entry '%s': invalid whiteout (it names '%s')", e->name,
               victim);
  if (remove_existing(c, e->name, pfd, victim) < 0)
    return -1;
  if (mknodat(pfd, victim, S_IFCHR | 0, makedev(0, 0)) < 0)
    return sys(c, errno, "layer entry '%s': create the overlay whiteout '%s'", e->name, victim);
  if (fchownat(pfd, victim, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
    return sys(c, errno, "layer entry '%s': set owner of the whiteout", e->name);
  struct timespec ts[2] = {e->atime, e->mtime};
  if (utimensat(pfd, victim, ts, AT_SYMLINK_NOFOLLOW) < 0)
    return sys(c, errno, "layer entry '%s': set times of the whiteout", e->name);
  return 0;
}

static int apply_entry(ctx_t *c, const entry_t *e) {
  const char *base = NULL;
  int is_data = e->type == '0' || e->type == '\0' || e->type == '7';

  if (*e->path == '\0' && e->type != '5')
    return bad(c, EINVAL, "layer entry '%s': only a directory may name the layer root",
               e->name);
  int pfd = -1;
  if (*e->path != '\0') {
    pfd = get_parent(c, e->name, e->path, &base);
    if (pfd < 0)
      return -1;
  }
  if (base != NULL && strncmp(base, ".wh.", 4) == 0) {
    if (is_data && skip_data(c, e) < 0)
      return -1;
    return extract_whiteout(c, e, pfd, base);
  }
  switch (e->type) {
  case '0':
  case '\0':
  case '7':
    return extract_file(c, e, pfd, base);
  case '5':
    return extract_dir(c, e, pfd, base);
  case '2':
    return extract_symlink(c, e, pfd, base);
  case '1':
    return extract_hardlink(c, e, pfd, base);
  case '3':
  case '4':
    if (!c->opts->allow_devices)
      return bad(c, EPERM, "layer entry '%s': device nodes are not allowed (allow_devices is "
                 "off)", e->name);
    if (make_node(c, e, pfd, base, e->type == '3' ? S_IFCHR : S_IFBLK,
                  makedev(e->devmajor, e->devminor)) < 0)
      return -1;
    return finish_node(c, e, pfd, base, 0);
  case '6':
    if (make_node(c, e, pfd, base, S_IFIFO, 0) < 0)
      return -1;
    return finish_node(c, e, pfd, base, 0);
  default:
    return bad(c, EINVAL, "layer entry '%s': unsupported entry type '%c' (0x%02x)", e->name,
               isprint((unsigned char)e->type) ? e->type : '?', (unsigned char)e->type);
  }
}

static void entry_free(entry_t *e) {
  free(e->name);
  free(e->path);
  free(e->linkname);
  xattrs_free(e->xattrs, e->nxattrs);
  memset(e, 0, sizeof(*e));
}

/* ------------------------------------------------------------------------------------
 * The archive loop.
 * ------------------------------------------------------------------------------------ */

static int header_truncated(ctx_t *c, ssize_t got) {
  if (c->pl->perr_set) {
    char where[NAME_SHOW + 40];
    snprintf(where, sizeof(where), "after entry '%s'", c->last_name);
    return take_producer_error(c, where);
  }
  if (got == 0)
    return bad(c, EINVAL, "truncated layer: archive ends without an end-of-archive marker "
               "after entry '%s'", c->last_name);
  return bad(c, EINVAL, "truncated layer: archive ends inside the header that follows entry "
             "'%s' (%zd of 512 bytes)", c->last_name, got);
}

static int header_checksum_ok(const unsigned char *h) {
  uint64_t stored;
  if (parse_number(h + 148, 8, &stored) < 0)
    return 0;
  unsigned long usum = 0;
  long ssum = 0;
  for (int i = 0; i < BLOCK; i++) {
    unsigned char b = (i >= 148 && i < 156) ? ' ' : h[i];
    usum += b;
    ssum += (signed char)b;
  }
  return stored == usum || (long)stored == ssum;
}

static int is_zero_block(const unsigned char *h) {
  for (int i = 0; i < BLOCK; i++)
    if (h[i])
      return 0;
  return 1;
}

static int num_field(ctx_t *c, const unsigned char *h, size_t off, size_t len,
                     const char *field, const char *name, uint64_t max, uint64_t *out) {
  if (parse_number(h + off, len, out) < 0 || *out > max)
    return bad(c, EINVAL, "malformed layer: entry '%s': %s field is not a valid number "
               "(octal or base-256, at most %" PRIu64 ")", name, field, max);
  return 0;
}

static int run_archive(ctx_t *c) {
  unsigned char h[BLOCK];
  pax_t pax;
  char *gnu_name = NULL, *gnu_link = NULL;
  entry_t e;
  int rc = -1;
  memset(&pax, 0, sizeof(pax));
  memset(&e, 0, sizeof(e));
  show(c->last_name, "(start of archive)");

  for (;;) {
    ssize_t got = src_read(c, h, BLOCK);
    if (got < 0 && !c->pl->perr_set)
      goto out;
    if (got < BLOCK) {
      header_truncated(c, got < 0 ? 0 : got);
      goto out;
    }
    if (is_zero_block(h))
      break; /* end of archive (what follows is padding) */
    char raw_name[101];
    memcpy(raw_name, h, 100);
    raw_name[100] = '\0';
    if (!header_checksum_ok(h)) {
      bad(c, EINVAL, "malformed layer: bad header checksum at offset %" PRIu64
          " (entry '%.100s' after '%s')", c->offset - BLOCK, raw_name, c->last_name);
      goto out;
    }
    char type = (char)h[156];
    int posix = memcmp(h + 257, "ustar\0", 6) == 0;
    uint64_t size;
    if (num_field(c, h, 124, 12, "size", raw_name, MAX_FILE_SIZE, &size) < 0)
      goto out;

    if (type == 'x' || type == 'g') {
      if (size > MAX_PAX_SIZE) {
        bad(c, EFBIG, "malformed layer: pax header of %" PRIu64 " bytes (more than 1 MiB) "
            "after entry '%s'", size, c->last_name);
        goto out;
      }
      char *data = NULL;
      if (read_meta_data(c, "pax header", size, &data) < 0)
        goto out;
      int prc = type == 'x' ? parse_pax(c, data, (size_t)size, &pax) : 0;
      free(data);
      if (prc < 0)
        goto out;
      continue;
    }
    if (type == 'L' || type == 'K') {
      const char *what = type == 'L' ? "GNU long name" : "GNU long link";
      if (size > PATH_MAX) {
        bad(c, ENAMETOOLONG, "malformed layer: %s of %" PRIu64 " bytes is longer than "
            "PATH_MAX (after entry '%s')", what, size, c->last_name);
        goto out;
      }
      char *data = NULL;
      if (read_meta_data(c, what, size, &data) < 0)
        goto out;
      size_t n = strnlen(data, (size_t)size);
      for (size_t i = n; i < size; i++)
        if (data[i] != '\0') {
          free(data);
          bad(c, EINVAL, "malformed layer: %s contains a NUL byte (after entry '%s')", what,
              c->last_name);
          goto out;
        }
      char **dst = type == 'L' ? &gnu_name : &gnu_link;
      free(*dst);
      *dst = data;
      continue;
    }
    if (type == 'S') {
      bad(c, EINVAL, "layer entry '%.100s': GNU sparse files are not supported", raw_name);
      goto out;
    }

    /* a real entry: name, link, numbers */
    if (pax.path != NULL) {
      e.name = pax.path;
      pax.path = NULL;
    } else if (gnu_name != NULL) {
      e.name = gnu_name;
      gnu_name = NULL;
    } else if (posix && h[345] != '\0') {
      char *prefix = field_str(h + 345, 155);
      char *nm = field_str(h, 100);
      if (prefix && nm) {
        e.name = malloc(strlen(prefix) + strlen(nm) + 2);
        if (e.name)
          sprintf(e.name, "%s/%s", prefix, nm);
      }
      free(prefix);
      free(nm);
    } else {
      e.name = field_str(h, 100);
    }
    if (pax.linkpath != NULL) {
      e.linkname = pax.linkpath;
      pax.linkpath = NULL;
    } else if (gnu_link != NULL) {
      e.linkname = gnu_link;
      gnu_link = NULL;
    } else {
      e.linkname = field_str(h + 157, 100);
    }
    if (e.name == NULL || e.linkname == NULL) {
      sys(c, ENOMEM, "allocate entry name");
      goto out;
    }
    if (strlen(e.name) >= PATH_MAX) {
      bad(c, ENAMETOOLONG, "layer entry '%.*s...': path longer than PATH_MAX", NAME_SHOW,
          e.name);
      goto out;
    }
    if (*e.name == '\0') {
      bad(c, EINVAL, "malformed layer: entry with an empty name after entry '%s'",
          c->last_name);
      goto out;
    }
    e.type = type;
    uint64_t v;
    if (num_field(c, h, 100, 8, "mode", e.name, 07777777, &v) < 0)
      goto out;
    e.mode = (uint32_t)(v & 07777);
    if (num_field(c, h, 108, 8, "uid", e.name, 0xfffffffeu, &v) < 0)
      goto out;
    e.uid = pax.has_uid ? pax.uid : (uint32_t)v;
    if (num_field(c, h, 116, 8, "gid", e.name, 0xfffffffeu, &v) < 0)
      goto out;
    e.gid = pax.has_gid ? pax.gid : (uint32_t)v;
    if (num_field(c, h, 136, 12, "mtime", e.name, (uint64_t)INT64_MAX / 2, &v) < 0)
      goto out;
    if (pax.has_mtime) {
      e.mtime = pax.mtime;
    } else {
      e.mtime.tv_sec = (time_t)v;
      e.mtime.tv_nsec = 0;
    }
    e.atime = pax.has_atime ? pax.atime : e.mtime;
    if (type == '3' || type == '4') {
      if (num_field(c, h, 329, 8, "devmajor", e.name, 0xfff, &v) < 0)
        goto out;
      e.devmajor = (unsigned)v;
      if (num_field(c, h, 337, 8, "devminor", e.name, 0xfffff, &v) < 0)
        goto out;
      e.devminor = (unsigned)v;
    }
    if (pax.has_size)
      size = pax.size;
    /* header-only types carry no data whatever their size field says */
    e.size = (type == '0' || type == '\0' || type == '7') ? size : 0;
    e.xattrs = pax.xattrs;
    e.nxattrs = pax.nxattrs;
    pax.xattrs = NULL;
    pax.nxattrs = 0;

    e.path = malloc(strlen(e.name) + 1);
    if (e.path == NULL) {
      sys(c, ENOMEM, "allocate path");
      goto out;
    }
    if (clean_path(e.name, e.path) < 0) {
      bad(c, EXDEV, "layer entry '%s': path leaves the layer root", e.name);
      goto out;
    }
    if (apply_entry(c, &e) < 0)
      goto out;
    if (c->cache_dirty)
      cache_drop(c);
    c->entries++;
    show(c->last_name, e.name);
    entry_free(&e);
    pax_reset(&pax);
  }
  rc = 0;
out:
  entry_free(&e);
  pax_reset(&pax);
  free(gnu_name);
  free(gnu_link);
  return rc;
}

static int apply_dirtimes(ctx_t *c) {
  for (size_t i = c->ndirtimes; i-- > 0;) {
    dirtime_t *d = &c->dirtimes[i];
    int fd = openat2_beneath(c->rootfd, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0)
      continue; /* replaced by a later entry: its times are not ours to set */
    int r = futimens(fd, d->ts);
    int er = errno;
    close(fd);
    if (r < 0)
      return sys(c, er, "layer directory '%s': set times", d->path);
  }
  return 0;
}

/* Drains what is left of the stream (tar padding after the end marker, or everything after
 * an error when the blob digest must still be checked). */
static void drain(ctx_t *c) {
  const unsigned char *p;
  ssize_t n;
  while ((n = src_peek(c, &p)) > 0)
    src_consume(c, (size_t)n);
}

int pyrt_unpack_layer(int in_fd, const char *dest, const pyrt_unpack_options_t *opts,
                      pyrt_layer_result_t *result, pyrt_error_t *err) {
  pipeline_t pl;
  ctx_t c;
  pthread_t producer;
  int started = 0, rc = -1, hashes = 0;
  pyrt_unpack_options_t defaults = {NULL, 1};
  if (opts == NULL)
    opts = &defaults;

  memset(&pl, 0, sizeof(pl));
  memset(&c, 0, sizeof(c));
  memset(result, 0, sizeof(*result));
  pl.in_fd = in_fd;
  pl.cancel_fd = -1;
  c.pl = &pl;
  c.err = err;
  c.opts = opts;
  c.rootfd = -1;
  c.cache_fd = -1;
  pthread_mutex_init(&pl.mu, NULL);
  pthread_cond_init(&pl.cv, NULL);

  if (opts->expected_digest != NULL &&
      (strncmp(opts->expected_digest, "sha256:", 7) != 0 ||
       strlen(opts->expected_digest) != 7 + PYRT_SHA256_HEX_LEN ||
       strspn(opts->expected_digest + 7, "0123456789abcdef") != PYRT_SHA256_HEX_LEN)) {
    pyrt_error_set(err, EINVAL, "expected digest '%.100s' is not sha256:<64 lowercase hex>",
                   opts->expected_digest);
    result->bad_input = 1;
    goto out;
  }
  c.rootfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (c.rootfd < 0) {
    pyrt_error_set(err, errno, "open layer destination '%s'", dest);
    goto out;
  }
  if (pyrt_sha256_init(&pl.blob_hash, err) < 0)
    goto out;
  if (pyrt_sha256_init(&pl.diff_hash, err) < 0) {
    pyrt_sha256_free(&pl.blob_hash);
    goto out;
  }
  hashes = 1;
  for (int i = 0; i < NCHUNKS; i++) {
    pl.chunks[i].data = malloc(CHUNK_SIZE);
    if (pl.chunks[i].data == NULL) {
      pyrt_error_set(err, ENOMEM, "allocate layer buffers");
      goto out;
    }
  }
  pl.cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (pl.cancel_fd < 0) {
    pyrt_error_set(err, errno, "eventfd");
    goto out;
  }
  if ((errno = pthread_create(&producer, NULL, producer_main, &pl)) != 0) {
    pyrt_error_set(err, errno, "start the layer reader thread");
    goto out;
  }
  started = 1;

  int arc = run_archive(&c);
  if (arc < 0 && opts->expected_digest == NULL) {
    /* stop the producer: nothing more is wanted from the input */
    pthread_mutex_lock(&pl.mu);
    __atomic_store_n(&pl.cancel, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pl.cv);
    pthread_mutex_unlock(&pl.mu);
    uint64_t one = 1;
    (void)!write(pl.cancel_fd, &one, sizeof(one));
  } else {
    drain(&c); /* the digests cover the whole stream */
  }
  pthread_join(producer, NULL);
  started = 0;

  if (arc == 0 && pl.perr_set) {
    take_producer_error(&c, "after the end of the archive");
    arc = -1;
  }
  if (arc == 0 && !pl.cancel) {
    if (apply_dirtimes(&c) < 0)
      arc = -1;
  }
  if (!pl.cancel) {
    char hex[PYRT_SHA256_HEX_LEN + 1];
    pyrt_error_t herr;
    if (pyrt_sha256_final_hex(&pl.blob_hash, hex, &herr) < 0 ||
        (snprintf(result->digest, sizeof(result->digest), "sha256:%s", hex),
         pl.kind != COMP_NONE && pyrt_sha256_final_hex(&pl.diff_hash, hex, &herr) < 0)) {
      *err = herr;
      goto out;
    }
    /* a plain tar is its own diff: the producer hashed it once, as the blob */
    snprintf(result->diff_id, sizeof(result->diff_id), "sha256:%s", hex);
    if (opts->expected_digest != NULL && strcmp(opts->expected_digest, result->digest) != 0) {
      char first[sizeof(err->msg)];
      snprintf(first, sizeof(first), "%s", arc < 0 ? err->msg : "");
      pyrt_error_set(err, EBADMSG, "layer blob digest mismatch: expected %s, got %s (%" PRIu64
                     " bytes)%s%.200s", opts->expected_digest, result->digest, pl.in_size,
                     arc < 0 ? "; while unpacking: " : "", first);
      c.bad_input = 1;
      goto out;
    }
  }
  if (arc < 0)
    goto out;
  result->size = pl.in_size;
  result->diff_size = pl.out_size;
  result->entries = c.entries;
  rc = 0;
out:
  if (rc < 0)
    result->bad_input = result->bad_input || c.bad_input;
  if (started) {
    __atomic_store_n(&pl.cancel, 1, __ATOMIC_RELEASE);
    pthread_join(producer, NULL);
  }
  if (hashes) {
    pyrt_sha256_free(&pl.blob_hash);
    pyrt_sha256_free(&pl.diff_hash);
  }
  cache_drop(&c);
  for (size_t i = 0; i < c.ndirtimes; i++)
    free(c.dirtimes[i].path);
  free(c.dirtimes);
  for (int i = 0; i < NCHUNKS; i++)
    free(pl.chunks[i].data);
  if (pl.cancel_fd >= 0)
    close(pl.cancel_fd);
  if (c.rootfd >= 0)
    close(c.rootfd);
  pthread_mutex_destroy(&pl.mu);
  pthread_cond_destroy(&pl.cv);
  return rc;
}

/* ------------------------------------------------------------------------------------
 * Packing: a reproducible tar of a directory (commit / export).
 * ------------------------------------------------------------------------------------ */

typedef struct hardlink {
  dev_t dev;
  ino_t ino;
  char *path;
} hardlink_t;

typedef struct packer {
  int out_fd;
  int gzip;
  int whiteouts;
  z_stream zs;
  int z_inited;
  unsigned char *obuf; /* compressed (or plain) output staging */
  size_t olen;
  pyrt_sha256_t blob, diff;
  uint64_t size, diff_size, entries;
  hardlink_t *links;
  size_t nlinks, caplinks;
  pyrt_error_t *err;
} packer_t;

static int pk_flush(packer_t *pk) {
  if (pk->olen == 0)
    return 0;
  if (pyrt_sha256_update(&pk->blob, pk->obuf, pk->olen, pk->err) < 0)
    return -1;
  if (write_all(pk->out_fd, pk->obuf, pk->olen) < 0)
    return pyrt_error_set(pk->err, errno, "write layer to fd %d", pk->out_fd);
  pk->size += pk->olen;
  pk->olen = 0;
  return 0;
}

static int pk_deflate(packer_t *pk, const void *data, size_t n, int flush) {
  pk->zs.next_in = (Bytef *)data;
  pk->zs.avail_in = (uInt)n;
  for (;;) {
    pk->zs.next_out = pk->obuf + pk->olen;
    pk->zs.avail_out = (uInt)(CHUNK_SIZE - pk->olen);
    int rc = deflate(&pk->zs, flush);
    pk->olen = CHUNK_SIZE - pk->zs.avail_out;
    if (rc == Z_STREAM_ERROR)
      return pyrt_error_set(pk->err, EIO, "zlib deflate failed");
    if (pk->olen == CHUNK_SIZE && pk_flush(pk) < 0)
      return -1;
    if (flush == Z_FINISH ? rc == Z_STREAM_END : (pk->zs.avail_in == 0 && pk->zs.avail_out != 0))
      return 0;
  }
}

/* Appends uncompressed tar bytes. */
static int pk_write(packer_t *pk, const void *data, size_t n) {
  if (pyrt_sha256_update(&pk->diff, data, n, pk->err) < 0)
    return -1;
  pk->diff_size += n;
  if (pk->gzip)
    return pk_deflate(pk, data, n, Z_NO_FLUSH);
  const unsigned char *p = data;
  while (n > 0) {
    size_t k = CHUNK_SIZE - pk->olen < n ? CHUNK_SIZE - pk->olen : n;
    memcpy(pk->obuf + pk->olen, p, k);
    pk->olen += k;
    p += k;
    n -= k;
    if (pk->olen == CHUNK_SIZE && pk_flush(pk) < 0)
      return -1;
  }
  return 0;
}

static void put_octal(unsigned char *f, size_t len, uint64_t v) {
  /* len-1 octal digits, zero padded, then NUL */
  f[len - 1] = '\0';
  for (size_t i = len - 1; i-- > 0;) {
    f[i] = (unsigned char)('0' + (v & 7));
    v >>= 3;
  }
}

static int fits_octal(uint64_t v, size_t len) { return v < (1ull << (3 * (len - 1))); }

typedef struct strbuf {
  char *p;
  size_t len, cap;
} strbuf_t;

static int sb_add(strbuf_t *b, const void *data, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
      return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

/* "<len> key=value\n", the length counting itself */
static int pax_record(strbuf_t *b, const char *key, const char *val, size_t vlen) {
  size_t base = strlen(key) + vlen + 3, total = base;
  char num[24];
  for (;;) {
    int d = snprintf(num, sizeof(num), "%zu", total);
    if (base + (size_t)d == total)
      break;
    total = base + (size_t)d;
  }
  return (sb_add(b, num, strlen(num)) < 0 || sb_add(b, " ", 1) < 0 ||
          sb_add(b, key, strlen(key)) < 0 || sb_add(b, "=", 1) < 0 ||
          sb_add(b, val, vlen) < 0 || sb_add(b, "\n", 1) < 0)
             ? -1
             : 0;
}

static const unsigned char zeros[BLOCK];

static int pk_pad(packer_t *pk, uint64_t n) {
  uint64_t pad = pad512(n);
  return pad ? pk_write(pk, zeros, (size_t)pad) : 0;
}

static void fill_header(unsigned char *h, const char *name, char type, uint32_t mode,
                        uint64_t uid, uint64_t gid, uint64_t size, int64_t mtime,
                        const char *link, unsigned maj, unsigned min) {
  memset(h, 0, BLOCK);
  strncpy((char *)h, name, 100);
  put_octal(h + 100, 8, mode);
  put_octal(h + 108, 8, fits_octal(uid, 8) ? uid : 0);
  put_octal(h + 116, 8, fits_octal(gid, 8) ? gid : 0);
  put_octal(h + 124, 12, fits_octal(size, 12) ? size : 0);
  put_octal(h + 136, 12, mtime >= 0 && fits_octal((uint64_t)mtime, 12) ? (uint64_t)mtime : 0);
  h[156] = (unsigned char)type;
  if (link)
    strncpy((char *)h + 157, link, 100);
  memcpy(h + 257, "ustar\0" "00", 8);
  put_octal(h + 329, 8, maj);
  put_octal(h + 337, 8, min);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < BLOCK; i++)
    sum += h[i];
  put_octal(h + 148, 7, sum);
  h[155] = ' ';
}

typedef struct pk_entry {
  const char *path; /* tar name */
  char type;
  const struct stat *st;
  const char *link;
  strbuf_t *xattrs_pax; /* SCHILY.xattr records already built */
} pk_entry_t;

static int pk_emit(packer_t *pk, const pk_entry_t *pe, uint64_t size) {
  strbuf_t pax = {0};
  unsigned char h[BLOCK];
  const struct stat *st = pe->st;
  int rc = -1;
  if (strlen(pe->path) > 100 && pax_record(&pax, "path", pe->path, strlen(pe->path)) < 0)
    goto nomem;
  if (pe->link && strlen(pe->link) > 100 &&
      pax_record(&pax, "linkpath", pe->link, strlen(pe->link)) < 0)
    goto nomem;
  char num[48];
  if (!fits_octal(st->st_uid, 8)) {
    snprintf(num, sizeof(num), "%u", (unsigned)st->st_uid);
    if (pax_record(&pax, "uid", num, strlen(num)) < 0)
      goto nomem;
  }
  if (!fits_octal(st->st_gid, 8)) {
    snprintf(num, sizeof(num), "%u", (unsigned)st->st_gid);
    if (pax_record(&pax, "gid", num, strlen(num)) < 0)
      goto nomem;
  }
  if (!fits_octal(size, 12)) {
    snprintf(num, sizeof(num), "%" PRIu64, size);
    if (pax_record(&pax, "size", num, strlen(num)) < 0)
      goto nomem;
  }
  int64_t sec = st->st_mtim.tv_sec;
  if (st->st_mtim.tv_nsec != 0 || sec < 0 || !fits_octal((uint64_t)sec, 12)) {
    struct timespec t = st->st_mtim;
    if (t.tv_sec < 0 && t.tv_nsec)
      snprintf(num, sizeof(num), "-%lld.%09ld", -(long long)t.tv_sec - 1, 1000000000L - t.tv_nsec);
    else
      snprintf(num, sizeof(num), "%lld.%09ld", (long long)t.tv_sec, t.tv_nsec);
    if (pax_record(&pax, "mtime", num, strlen(num)) < 0)
      goto nomem;
  }
  if (pe->xattrs_pax && pe->xattrs_pax->len &&
      sb_add(&pax, pe->xattrs_pax->p, pe->xattrs_pax->len) < 0)
    goto nomem;
  if (pax.len) {
    char pname[101];
    const char *b = strrchr(pe->path, '/');
    snprintf(pname, sizeof(pname), "PaxHeaders/%s", b && b[1] ? b + 1 : pe->path);
    fill_header(h, pname, 'x', 0644, 0, 0, pax.len, 0, NULL, 0, 0);
    if (pk_write(pk, h, BLOCK) < 0 || pk_write(pk, pax.p, pax.len) < 0 ||
        pk_pad(pk, pax.len) < 0)
      goto out;
  }
  fill_header(h, pe->path, pe->type, st->st_mode & 07777, st->st_uid, st->st_gid, size,
              sec, pe->link, pe->type == '3' || pe->type == '4' ? major(st->st_rdev) : 0,
              pe->type == '3' || pe->type == '4' ? minor(st->st_rdev) : 0);
  if (pk_write(pk, h, BLOCK) < 0)
    goto out;
  pk->entries++;
  rc = 0;
  goto out;
nomem:
  pyrt_error_set(pk->err, ENOMEM, "allocate pax header");
out:
  free(pax.p);
  return rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SCHILY.xattr records of dirfd/name, sorted, without trusted.overlay.*; *opaque set when
 * trusted.overlay.opaque=y */
static int pk_xattrs(packer_t *pk, int dirfd, const char *name, const char *path,
                     strbuf_t *out, int *opaque) {
  char proc[64 + NAME_MAX];
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, name);
  *opaque = 0;
  ssize_t n = llistxattr(proc, NULL, 0);
  if (n < 0) {
    if (errno == ENOTSUP)
      return 0;
    return pyrt_error_set(pk->err, errno, "list xattrs of '%s'", path);
  }
  if (n == 0)
    return 0;
  char *names = malloc((size_t)n + 1);
  char **v = NULL;
  char *val = NULL;
  int rc = -1;
  if (names == NULL)
    goto nomem;
  n = llistxattr(proc, names, (size_t)n);
  if (n < 0) {
    pyrt_error_set(pk->err, errno, "list xattrs of '%s'", path);
    goto out;
  }
  size_t count = 0;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1)
    count++;
  v = calloc(count ? count : 1, sizeof(*v));
  if (v == NULL)
    goto nomem;
  count = 0;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1)
    v[count++] = names + i;
  qsort(v, count, sizeof(*v), cmp_str);
  for (size_t i = 0; i < count; i++) {
    ssize_t vl = lgetxattr(proc, v[i], NULL, 0);
    if (vl < 0) {
      pyrt_error_set(pk->err, errno, "read xattr '%s' of '%s'", v[i], path);
      goto out;
    }
    free(val);
    val = malloc((size_t)vl + 1);
    if (val == NULL)
      goto nomem;
    vl = lgetxattr(proc, v[i], val, (size_t)vl);
    if (vl < 0) {
      pyrt_error_set(pk->err, errno, "read xattr '%s' of '%s'", v[i], path);
      goto out;
    }
    if (strncmp(v[i], "trusted.overlay.", 16) == 0) {
      if (strcmp(v[i], "trusted.overlay.opaque") == 0 && vl == 1 && val[0] == 'y')
        *opaque = 1;
      continue;
    }
    char key[16 + XATTR_NAME_MAX];
    snprintf(key, sizeof(key), "SCHILY.xattr.%s", v[i]);
    if (pax_record(out, key, val, (size_t)vl) < 0)
      goto nomem;
  }
  rc = 0;
  goto out;
nomem:
  pyrt_error_set(pk->err, ENOMEM, "allocate xattrs");
out:
  free(val);
  free(v);
  free(names);
  return rc;
}

static int pk_file_data(packer_t *pk, int dirfd, const char *name, const char *path,
                        uint64_t size) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return pyrt_error_set(pk->err, errno, "open '%s' for the layer", path);
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  unsigned char *buf = malloc(CHUNK_SIZE);
  uint64_t done = 0;
  int rc = -1;
  if (buf == NULL) {
    pyrt_error_set(pk->err, ENOMEM, "allocate read buffer");
    goto out;
  }
  while (done < size) {
    size_t want = size - done < CHUNK_SIZE ? (size_t)(size - done) : CHUNK_SIZE;
    ssize_t n = read(fd, buf, want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      pyrt_error_set(pk->err, errno, "read '%s' for the layer", path);
      goto out;
    }
    if (n == 0) {
      pyrt_error_set(pk->err, EIO, "'%s' shrank while being packed (%" PRIu64 " of %" PRIu64
                     " bytes)", path, done, size);
      goto out;
    }
    if (pk_write(pk, buf, (size_t)n) < 0)
      goto out;
    done += (uint64_t)n;
  }
  if (pk_pad(pk, size) < 0)
    goto out;
  rc = 0;
out:
  free(buf);
  close(fd);
  return rc;
}

static int pk_dir(packer_t *pk, int dirfd, const char *prefix);

static int pk_one(packer_t *pk, int dirfd, const char *name, const char *prefix) {
  struct stat st;
  size_t plen = strlen(prefix), nlen = strlen(name);
  char *path = malloc(plen + nlen + 2 + 4);
  strbuf_t xs = {0};
  int rc = -1, opaque = 0;
  char *link = NULL;
  if (path == NULL)
    return pyrt_error_set(pk->err, ENOMEM, "allocate path");
  memcpy(path, prefix, plen);
  memcpy(path + plen, name, nlen + 1);
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    pyrt_error_set(pk->err, errno, "stat '%s'", path);
    goto out;
  }
  if (S_ISSOCK(st.st_mode)) {
    rc = 0; /* sockets cannot be archived; tar and docker skip them too */
    goto out;
  }
  if (pk->whiteouts && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
    /* overlay whiteout -> .wh.<name>, an empty regular file */
    char *wh = malloc(plen + nlen + 5);
    if (wh == NULL) {
      pyrt_error_set(pk->err, ENOMEM, "allocate path");
      goto out;
    }
    sprintf(wh, "%s.wh.%s", prefix, name);
    struct stat w = st;
    w.st_mode = S_IFREG | 0;
    pk_entry_t pe = {wh, '0', &w, NULL, NULL};
    rc = pk_emit(pk, &pe, 0);
    free(wh);
    goto out;
  }
  if (pk_xattrs(pk, dirfd, name, path, &xs, &opaque) < 0)
    goto out;
  if (S_ISDIR(st.st_mode)) {
    memcpy(path + plen + nlen, "/", 2);
    pk_entry_t pe = {path, '5', &st, NULL, &xs};
    if (pk_emit(pk, &pe, 0) < 0)
      goto out;
    if (opaque && pk->whiteouts) {
      char *op = malloc(strlen(path) + 13);
      if (op == NULL) {
        pyrt_error_set(pk->err, ENOMEM, "allocate path");
        goto out;
      }
      sprintf(op, "%s.wh..wh..opq", path);
      struct stat w = st;
      w.st_mode = S_IFREG | 0;
      w.st_uid = w.st_gid = 0;
      pk_entry_t oe = {op, '0', &w, NULL, NULL};
      int r = pk_emit(pk, &oe, 0);
      free(op);
      if (r < 0)
        goto out;
    }
    int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      pyrt_error_set(pk->err, errno, "open directory '%s'", path);
      goto out;
    }
    rc = pk_dir(pk, sub, path);
    close(sub);
    goto out;
  }
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    for (size_t i = 0; i < pk->nlinks; i++)
      if (pk->links[i].dev == st.st_dev && pk->links[i].ino == st.st_ino) {
        pk_entry_t pe = {path, '1', &st, pk->links[i].path, &xs};
        rc = pk_emit(pk, &pe, 0);
        goto out;
      }
    if (pk->nlinks == pk->caplinks) {
      size_t cap = pk->caplinks ? pk->caplinks * 2 : 64;
      hardlink_t *l = realloc(pk->links, cap * sizeof(*l));
      if (l == NULL) {
        pyrt_error_set(pk->err, ENOMEM, "allocate hard link table");
        goto out;
      }
      pk->links = l;
      pk->caplinks = cap;
    }
    pk->links[pk->nlinks].dev = st.st_dev;
    pk->links[pk->nlinks].ino = st.st_ino;
    pk->links[pk->nlinks].path = strdup(path);
    if (pk->links[pk->nlinks].path == NULL) {
      pyrt_error_set(pk->err, ENOMEM, "allocate path");
      goto out;
    }
    pk->nlinks++;
  }
  if (S_ISREG(st.st_mode)) {
    pk_entry_t pe = {path, '0', &st, NULL, &xs};
    if (pk_emit(pk, &pe, (uint64_t)st.st_size) < 0)
      goto out;
    rc = pk_file_data(pk, dirfd, name, path, (uint64_t)st.st_size);
  } else if (S_ISLNK(st.st_mode)) {
    link = malloc(PATH_MAX + 1);
    if (link == NULL) {
      pyrt_error_set(pk->err, ENOMEM, "allocate link");
      goto out;
    }
    ssize_t n = readlinkat(dirfd, name, link, PATH_MAX);
    if (n < 0) {
      pyrt_error_set(pk->err, errno, "readlink '%s'", path);
      goto out;
    }
    link[n] = '\0';
    pk_entry_t pe = {path, '2', &st, link, &xs};
    rc = pk_emit(pk, &pe, 0);
  } else {
    char t = S_ISCHR(st.st_mode) ? '3' : S_ISBLK(st.st_mode) ? '4' : '6';
    pk_entry_t pe = {path, t, &st, NULL, &xs};
    rc = pk_emit(pk, &pe, 0);
  }
out:
  free(link);
  free(xs.p);
  free(path);
  return rc;
}

static int pk_dir(packer_t *pk, int dirfd, const char *prefix) {
  int fd = dup(dirfd);
  if (fd < 0)
    return pyrt_error_set(pk->err, errno, "dup directory fd");
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return pyrt_error_set(pk->err, errno, "read directory '%s'", *prefix ? prefix : ".");
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = -1;
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof(*nn));
      if (nn == NULL)
        goto nomem;
      names = nn;
    }
    if ((names[n] = strdup(de->d_name)) == NULL)
      goto nomem;
    n++;
  }
  qsort(names, n, sizeof(*names), cmp_str);
  rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = pk_one(pk, dirfd, names[i], prefix);
  goto out;
nomem:
  pyrt_error_set(pk->err, ENOMEM, "allocate directory listing");
out:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  closedir(d);
  return rc;
}

int pyrt_pack_layer(const char *src_dir, int out_fd, const pyrt_pack_options_t *opts,
                    pyrt_layer_result_t *result, pyrt_error_t *err) {
  packer_t pk;
  int rc = -1, rootfd = -1, hashes = 0;
  char hex[PYRT_SHA256_HEX_LEN + 1];
  memset(&pk, 0, sizeof(pk));
  memset(result, 0, sizeof(*result));
  pk.out_fd = out_fd;
  pk.gzip = opts->compression == PYRT_COMPRESS_GZIP;
  pk.whiteouts = opts->whiteouts;
  pk.err = err;
  rootfd = open(src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) {
    pyrt_error_set(err, errno, "open layer source '%s'", src_dir);
    goto out;
  }
  pk.obuf = malloc(CHUNK_SIZE);
  if (pk.obuf == NULL) {
    pyrt_error_set(err, ENOMEM, "allocate output buffer");
    goto out;
  }
  if (pyrt_sha256_init(&pk.blob, err) < 0)
    goto out;
  if (pyrt_sha256_init(&pk.diff, err) < 0) {
    pyrt_sha256_free(&pk.blob);
    goto out;
  }
  hashes = 1;
  if (pk.gzip) {
    /* gzip wrapper with a fixed header: no name, mtime 0, OS unknown -> reproducible */
    if (deflateInit2(&pk.zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      pyrt_error_set(err, ENOMEM, "initialise zlib deflate");
      goto out;
    }
    pk.z_inited = 1;
    gz_header gh;
    memset(&gh, 0, sizeof(gh));
    gh.os = 255;
    deflateSetHeader(&pk.zs, &gh);
  }
  if (pk_dir(&pk, rootfd, "") < 0)
    goto out;
  unsigned char end[2 * BLOCK];
  memset(end, 0, sizeof(end));
  if (pk_write(&pk, end, sizeof(end)) < 0)
    goto out;
  if (pk.gzip && pk_deflate(&pk, NULL, 0, Z_FINISH) < 0)
    goto out;
  if (pk_flush(&pk) < 0)
    goto out;
  if (pyrt_sha256_final_hex(&pk.blob, hex, err) < 0)
    goto out;
  snprintf(result->digest, sizeof(result->digest), "sha256:%s", hex);
  if (pyrt_sha256_final_hex(&pk.diff, hex, err) < 0)
    goto out;
  snprintf(result->diff_id, sizeof(result->diff_id), "sha256:%s", hex);
  result->size = pk.size;
  result->diff_size = pk.diff_size;
  result->entries = pk.entries;
  rc = 0;
out:
  if (pk.z_inited)
    deflateEnd(&pk.zs);
  if (hashes) {
    pyrt_sha256_free(&pk.blob);
    pyrt_sha256_free(&pk.diff);
  }
  for (size_t i = 0; i < pk.nlinks; i++)
    free(pk.links[i].path);
  free(pk.links);
  free(pk.obuf);
  if (rootfd >= 0)
    close(rootfd);
  return rc;
}
