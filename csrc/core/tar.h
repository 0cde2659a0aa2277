/* Image layers: streaming decompression + digests + safe tar extraction, and the reverse
 * (a reproducible tar of a directory, overlay whiteouts turned back into .wh. entries).
 *
 * Safety model of pyrt_unpack_layer: dest is opened once as a directory fd; every entry
 * name is cleaned lexically (leading "/" and "." components dropped, ".." resolved; a ".."
 * that would climb above the root is refused), then its parent directory is opened with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so a symlink that points outside the
 * layer (absolute, or relative climbing out) makes the entry an ERROR rather than being
 * followed or silently clamped; the final component is always handled with *at() calls
 * that do not follow symlinks (O_NOFOLLOW / AT_SYMLINK_NOFOLLOW / unlink first). Hard link
 * targets are resolved the same way. Nothing is ever created outside dest. */
#ifndef PYRT_TAR_H
#define PYRT_TAR_H

#include <stdint.h>

#include "digest.h"
#include "error.h"

typedef struct pyrt_unpack_options {
  const char *expected_digest; /* "sha256:<hex>" of the compressed blob, or NULL */
  int allow_devices;           /* 0: refuse char/block device entries */
} pyrt_unpack_options_t;

typedef struct pyrt_layer_result {
  char digest[PYRT_DIGEST_STR_LEN];  /* sha256 of the stream as read (the blob) */
  char diff_id[PYRT_DIGEST_STR_LEN]; /* sha256 of the uncompressed tar */
  uint64_t size;                     /* bytes read (compressed) */
  uint64_t diff_size;                /* bytes of uncompressed tar */
  uint64_t entries;                  /* tar entries applied (pax/GNU meta headers excluded) */
  int bad_input; /* on failure: 1 if the input (archive, digest) was at fault, 0 if the
                    machine was (I/O, permissions, memory) */
} pyrt_layer_result_t;

/* Reads in_fd until EOF (a file or a pipe; never seeks), detects gzip / zstd / plain tar
 * from the magic bytes, and extracts into the existing directory dest. Overlay form for
 * whiteouts: ".wh.<name>" becomes a 0/0 char device <name>, ".wh..wh..opq" sets
 * trusted.overlay.opaque=y on its directory. On failure dest may be partly filled: the
 * caller discards it. */
int pyrt_unpack_layer(int in_fd, const char *dest, const pyrt_unpack_options_t *opts,
                      pyrt_layer_result_t *result, pyrt_error_t *err);

typedef enum { PYRT_COMPRESS_NONE = 0, PYRT_COMPRESS_GZIP = 1 } pyrt_compression_t;

typedef struct pyrt_pack_options {
  pyrt_compression_t compression;
  int whiteouts; /* 1: 0/0 char devices and opaque dirs become .wh. entries */
} pyrt_pack_options_t;

/* Writes a reproducible tar of src_dir's contents to out_fd: entries sorted bytewise per
 * directory, uname/gname empty, pax records for long names, big numbers, nanosecond mtimes
 * and xattrs (trusted.overlay.* never written), gzip header without name or time. */
int pyrt_pack_layer(const char *src_dir, int out_fd, const pyrt_pack_options_t *opts,
                    pyrt_layer_result_t *result, pyrt_error_t *err);

#endif
