#include "digest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>

#define READ_CHUNK (1u << 20)

int pyrt_sha256_init(pyrt_sha256_t *h, pyrt_error_t *err) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  h->ctx = NULL;
  if (ctx == NULL)
    return pyrt_error_set(err, ENOMEM, "sha256: allocate digest context");
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(ctx);
    return pyrt_error_set(err, EIO, "sha256: initialise digest (libcrypto)");
  }
  h->ctx = ctx;
  return 0;
}

int pyrt_sha256_update(pyrt_sha256_t *h, const void *data, size_t len, pyrt_error_t *err) {
  if (len == 0)
    return 0;
  if (h->ctx == NULL || EVP_DigestUpdate((EVP_MD_CTX *)h->ctx, data, len) != 1)
    return pyrt_error_set(err, EIO, "sha256: update digest (libcrypto)");
  return 0;
}

int pyrt_sha256_final_hex(pyrt_sha256_t *h, char out_hex[PYRT_SHA256_HEX_LEN + 1],
                          pyrt_error_t *err) {
  static const char hexdigits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (h->ctx == NULL || EVP_DigestFinal_ex((EVP_MD_CTX *)h->ctx, md, &n) != 1 || n != 32)
    return pyrt_error_set(err, EIO, "sha256: finish digest (libcrypto)");
  for (unsigned i = 0; i < 32; i++) {
    out_hex[2 * i] = hexdigits[md[i] >> 4];
    out_hex[2 * i + 1] = hexdigits[md[i] & 15];
  }
  out_hex[PYRT_SHA256_HEX_LEN] = '\0';
  return 0;
}

int pyrt_sha256_copy(pyrt_sha256_t *dst, const pyrt_sha256_t *src, pyrt_error_t *err) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  dst->ctx = NULL;
  if (ctx == NULL)
    return pyrt_error_set(err, ENOMEM, "sha256: allocate digest context");
  if (EVP_MD_CTX_copy_ex(ctx, (const EVP_MD_CTX *)src->ctx) != 1) {
    EVP_MD_CTX_free(ctx);
    return pyrt_error_set(err, EIO, "sha256: copy digest state (libcrypto)");
  }
  dst->ctx = ctx;
  return 0;
}

void pyrt_sha256_free(pyrt_sha256_t *h) {
  if (h->ctx != NULL)
    EVP_MD_CTX_free((EVP_MD_CTX *)h->ctx);
  h->ctx = NULL;
}

int pyrt_sha256_fd(int fd, char out_hex[PYRT_SHA256_HEX_LEN + 1], uint64_t *size,
                   pyrt_error_t *err) {
  cleanup_free unsigned char *buf = NULL;
  pyrt_sha256_t h;
  uint64_t total = 0;
  int rc = -1;

  if (posix_memalign((void **)&buf, 4096, READ_CHUNK) != 0)
    return pyrt_error_set(err, ENOMEM, "sha256: allocate read buffer");
  /* advisory only: fails with ESPIPE on pipes, which is fine */
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  if (pyrt_sha256_init(&h, err) < 0)
    return -1;
  for (;;) {
    ssize_t n = read(fd, buf, READ_CHUNK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      pyrt_error_set(err, errno, "sha256: read fd %d after %llu bytes", fd,
                     (unsigned long long)total);
      goto out;
    }
    if (n == 0)
      break;
    if (pyrt_sha256_update(&h, buf, (size_t)n, err) < 0)
      goto out;
    total += (uint64_t)n;
  }
  if (pyrt_sha256_final_hex(&h, out_hex, err) < 0)
    goto out;
  if (size != NULL)
    *size = total;
  rc = 0;
out:
  pyrt_sha256_free(&h);
  return rc;
}
