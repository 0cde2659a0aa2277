/* Streaming sha256 over OpenSSL's EVP (libcrypto): content digests for blobs and layers. */
#ifndef PYRT_DIGEST_H
#define PYRT_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define PYRT_SHA256_HEX_LEN 64
/* "sha256:" + 64 hex + NUL */
#define PYRT_DIGEST_STR_LEN (7 + PYRT_SHA256_HEX_LEN + 1)

typedef struct pyrt_sha256 {
  void *ctx; /* EVP_MD_CTX *, opaque here so callers need no OpenSSL headers */
} pyrt_sha256_t;

/* Starts a new hash; on failure nothing needs freeing. */
int pyrt_sha256_init(pyrt_sha256_t *h, pyrt_error_t *err);
int pyrt_sha256_update(pyrt_sha256_t *h, const void *data, size_t len, pyrt_error_t *err);
/* Writes 64 lowercase hex digits and a NUL to out_hex; the hash may then be reused only
 * after pyrt_sha256_init. */
int pyrt_sha256_final_hex(pyrt_sha256_t *h, char out_hex[PYRT_SHA256_HEX_LEN + 1],
                          pyrt_error_t *err);
/* Copies the running state (for a digest of the data so far); dst must be uninitialised. */
int pyrt_sha256_copy(pyrt_sha256_t *dst, const pyrt_sha256_t *src, pyrt_error_t *err);
void pyrt_sha256_free(pyrt_sha256_t *h);

/* Hashes everything readable from fd (file or pipe) until EOF with 1 MiB reads; never
 * seeks. size (may be NULL) receives the byte count. */
int pyrt_sha256_fd(int fd, char out_hex[PYRT_SHA256_HEX_LEN + 1], uint64_t *size,
                   pyrt_error_t *err);

#endif
