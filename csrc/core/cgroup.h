/* cgroup writes on the start path and the raw parts of cgroup management (v1, v2,
 * hybrid). Policy (which file gets which value) lives in pyrt/runtime/cgroups.py. */
#ifndef PYRT_CGROUP_H
#define PYRT_CGROUP_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Writes value to dir/file (file NULL or "": dir is the whole path). Opens with
 * O_WRONLY|O_CLOEXEC and writes the value in one write(2), as cgroupfs wants.
 * Error context: "write 'value' to dir/file". */
int pyrt_cgroup_write(const char *dir, const char *file, const char *value,
                      pyrt_error_t *err);

/* Writes values[i] to paths[i] in order; stops at the first failure. */
int pyrt_cgroup_write_many(const char *const *paths, const char *const *values, size_t n,
                           pyrt_error_t *err);

/* mkdir -p with mode 0755; existing directories are fine. */
int pyrt_cgroup_mkdir_p(const char *path, pyrt_error_t *err);

/* rmdir, retrying on EBUSY (processes still exiting) up to `retries` times with
 * `delay_ms` between attempts. A missing directory counts as success. */
int pyrt_cgroup_rmdir(const char *path, int retries, int delay_ms, pyrt_error_t *err);

/* Device access bits as in the OCI spec's "access" string. */
#define PYRT_DEV_ACC_READ 1u
#define PYRT_DEV_ACC_WRITE 2u
#define PYRT_DEV_ACC_MKNOD 4u
#define PYRT_DEV_ACC_ALL 7u

typedef struct pyrt_device_rule {
  char type;       /* 'a' (all), 'b' (block), 'c' (char) */
  int64_t major;   /* -1: any */
  int64_t minor;   /* -1: any */
  unsigned access; /* PYRT_DEV_ACC_* bits, non-zero */
  int allow;       /* 1 allow, 0 deny */
} pyrt_device_rule_t;

/* Builds a BPF_PROG_TYPE_CGROUP_DEVICE program from rules (OCI order: the last matching
 * rule wins; no match denies), loads it and attaches it to the cgroup v2 directory with
 * BPF_F_ALLOW_MULTI. Programs this call finds already attached to the directory are
 * detached after the new one is in place, so a second call replaces the filter.
 * An allow rule matches when every requested access bit is in the rule; a deny rule
 * matches when any requested bit is in it. */
int pyrt_cgroup_device_filter(const char *cgroup_dir, const pyrt_device_rule_t *rules,
                              size_t n_rules, pyrt_error_t *err);

/* Number of BPF_CGROUP_DEVICE programs attached to the directory, or -1. */
int pyrt_cgroup_device_filter_count(const char *cgroup_dir, pyrt_error_t *err);

#endif
