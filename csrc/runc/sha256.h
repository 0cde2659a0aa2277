/* SHA-256 (FIPS 180-4), for the seccomp cache's file names (translate.cached_seccomp).
 * pyrt-runc links statically and without OpenSSL, so it carries this small one. */
#ifndef PYRT_RUNC_SHA256_H
#define PYRT_RUNC_SHA256_H

#include <stddef.h>

/* the digest of data[0..len) as 64 lowercase hex digits and a NUL */
void sha256_hex(const void *data, size_t len, char out[65]);

#endif
