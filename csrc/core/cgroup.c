/* cgroup writes and the raw parts: mkdir -p, rmdir with retry, the v2 device filter
 * (a BPF_PROG_TYPE_CGROUP_DEVICE program built here, loaded with the bpf(2) syscall). */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int join_path(char *out, size_t size, const char *dir, const char *file,
                     pyrt_error_t *err) {
  int n;
  if (file == NULL || file[0] == '\0')
    n = snprintf(out, size, "%s", dir);
  else
    n = snprintf(out, size, "%s/%s", dir, file);
  if (n < 0 || (size_t)n >= size)
    return pyrt_error_set(err, ENAMETOOLONG, "cgroup path %s/%s", dir, file ? file : "");
  return 0;
}

int pyrt_cgroup_write(const char *dir, const char *file, const char *value,
                      pyrt_error_t *err) {
  char path[PATH_MAX];
  if (join_path(path, sizeof path, dir, file, err) < 0) return -1;
  cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return pyrt_error_set(err, errno, "write '%s' to %s", value, path);
  size_t len = strlen(value);
  ssize_t w;
  do {
    w = write(fd, value, len);
  } while (w < 0 && errno == EINTR);
  if (w < 0) return pyrt_error_set(err, errno, "write '%s' to %s", value, path);
  if ((size_t)w != len) return pyrt_error_set(err, EIO, "short write '%s' to %s", value, path);
  pyrt_error_clear(err);
  return 0;
}

int pyrt_cgroup_write_many(const char *const *paths, const char *const *values, size_t n,
                           pyrt_error_t *err) {
  for (size_t i = 0; i < n; i++)
    if (pyrt_cgroup_write(paths[i], NULL, values[i], err) < 0) return -1;
  pyrt_error_clear(err);
  return 0;
}

int pyrt_cgroup_mkdir_p(const char *path, pyrt_error_t *err) {
  char buf[PATH_MAX];
  if (join_path(buf, sizeof buf, path, NULL, err) < 0) return -1;
  size_t len = strlen(buf);
  if (len == 0) return pyrt_error_set(err, EINVAL, "mkdir cgroup: empty path");
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    if (buf[i - 1] == '/') continue; /* "//" */
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
      int e = errno;
      return pyrt_error_set(err, e, "mkdir cgroup %s", buf);
    }
    buf[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) < 0) return pyrt_error_set(err, errno, "mkdir cgroup %s", path);
  if (!S_ISDIR(st.st_mode)) return pyrt_error_set(err, ENOTDIR, "mkdir cgroup %s", path);
  pyrt_error_clear(err);
  return 0;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

int pyrt_cgroup_rmdir(const char *path, int retries, int delay_ms, pyrt_error_t *err) {
  for (int attempt = 0;; attempt++) {
    if (rmdir(path) == 0 || errno == ENOENT) {
      pyrt_error_clear(err);
      return 0;
    }
    int e = errno;
    if (e != EBUSY || attempt >= retries)
      return pyrt_error_set(err, e, "remove cgroup %s", path);
    sleep_ms(delay_ms);
  }
}

/* ---- the v2 device filter ---------------------------------------------------------- */

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

#define INSN(c, d, s, o, i) \
  ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX_W(d, s, o) INSN(BPF_LDX | BPF_W | BPF_MEM, d, s, o, 0)
#define MOV32_REG(d, s) INSN(BPF_ALU | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV32_IMM(d, i) INSN(BPF_ALU | BPF_MOV | BPF_K, d, 0, 0, i)
#define AND32_IMM(d, i) INSN(BPF_ALU | BPF_AND | BPF_K, d, 0, 0, i)
#define RSH32_IMM(d, i) INSN(BPF_ALU | BPF_RSH | BPF_K, d, 0, 0, i)
#define JNE32_IMM(d, i, o) INSN(BPF_JMP32 | BPF_JNE | BPF_K, d, 0, o, i)
#define JEQ32_IMM(d, i, o) INSN(BPF_JMP32 | BPF_JEQ | BPF_K, d, 0, o, i)
#define EXIT_INSN() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* Registers after the prologue: r3 device type, r4 requested access, r5 major, r6 minor.
 * r1 (the context) is dead afterwards and serves as scratch. */
enum { R_TYPE = 3, R_ACC = 4, R_MAJ = 5, R_MIN = 6, R_TMP = 1 };

static unsigned kernel_access(unsigned acc) {
  unsigned k = 0;
  if (acc & PYRT_DEV_ACC_READ) k |= BPF_DEVCG_ACC_READ;
  if (acc & PYRT_DEV_ACC_WRITE) k |= BPF_DEVCG_ACC_WRITE;
  if (acc & PYRT_DEV_ACC_MKNOD) k |= BPF_DEVCG_ACC_MKNOD;
  return k;
}

#define KERNEL_ACC_ALL (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)

/* Emits one rule; returns the number of instructions (at most 9). Jumps with offset
 * SKIP are patched to land just past the rule. */
#define SKIP 0x7fff
static size_t emit_rule(struct bpf_insn *out, const pyrt_device_rule_t *r) {
  size_t n = 0;
  unsigned acc = kernel_access(r->access);
  if (r->type != 'a') {
    int t = r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
    out[n++] = JNE32_IMM(R_TYPE, t, SKIP);
  }
  if (acc != KERNEL_ACC_ALL) {
    out[n++] = MOV32_REG(R_TMP, R_ACC);
    if (r->allow) {
      /* allow: every requested bit must be granted by the rule */
      out[n++] = AND32_IMM(R_TMP, (int)(~acc & KERNEL_ACC_ALL));
      out[n++] = JNE32_IMM(R_TMP, 0, SKIP);
    } else {
      /* deny: any requested bit named by the rule is refused */
      out[n++] = AND32_IMM(R_TMP, (int)acc);
      out[n++] = JEQ32_IMM(R_TMP, 0, SKIP);
    }
  }
  if (r->type != 'a' && r->major >= 0) out[n++] = JNE32_IMM(R_MAJ, (int32_t)r->major, SKIP);
  if (r->type != 'a' && r->minor >= 0) out[n++] = JNE32_IMM(R_MIN, (int32_t)r->minor, SKIP);
  out[n++] = MOV32_IMM(0, r->allow ? 1 : 0);
  out[n++] = EXIT_INSN();
  for (size_t i = 0; i < n; i++)
    if (out[i].off == SKIP) out[i].off = (short)(n - i - 1);
  return n;
}

static int validate_rule(const pyrt_device_rule_t *r, size_t i, pyrt_error_t *err) {
  if (r->type != 'a' && r->type != 'b' && r->type != 'c')
    return pyrt_error_set(err, EINVAL, "device rule %zu: type must be a, b or c", i);
  if (r->access == 0 || (r->access & ~PYRT_DEV_ACC_ALL))
    return pyrt_error_set(err, EINVAL, "device rule %zu: access must be some of rwm", i);
  if (r->major < -1 || r->major > INT32_MAX || r->minor < -1 || r->minor > INT32_MAX)
    return pyrt_error_set(err, EINVAL, "device rule %zu: major/minor out of range", i);
  return 0;
}

/* Lists the ids of the BPF_CGROUP_DEVICE programs attached to dirfd itself. */
static int query_device_progs(int dirfd, uint32_t *ids, uint32_t cap, uint32_t *count,
                              const char *dir, pyrt_error_t *err) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.query.target_fd = (uint32_t)dirfd;
  attr.query.attach_type = BPF_CGROUP_DEVICE;
  attr.query.prog_ids = (uint64_t)(uintptr_t)ids;
  attr.query.prog_cnt = cap;
  if (sys_bpf(BPF_PROG_QUERY, &attr) < 0)
    return pyrt_error_set(err, errno, "query device programs of cgroup %s", dir);
  *count = attr.query.prog_cnt < cap ? attr.query.prog_cnt : cap;
  return 0;
}

#define MAX_ATTACHED 64

int pyrt_cgroup_device_filter(const char *cgroup_dir, const pyrt_device_rule_t *rules,
                              size_t n_rules, pyrt_error_t *err) {
  if (n_rules > 4096)
    return pyrt_error_set(err, E2BIG, "device filter for %s: too many rules", cgroup_dir);
  for (size_t i = 0; i < n_rules; i++)
    if (validate_rule(&rules[i], i, err) < 0) return -1;

  size_t cap = 7 + 9 * n_rules + 2;
  cleanup_free struct bpf_insn *prog = calloc(cap, sizeof *prog);
  if (prog == NULL) return pyrt_error_set(err, ENOMEM, "device filter for %s", cgroup_dir);
  size_t n = 0;
  /* struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major, minor } */
  prog[n++] = LDX_W(2, 1, 0);
  prog[n++] = MOV32_REG(R_TYPE, 2);
  prog[n++] = AND32_IMM(R_TYPE, 0xffff);
  prog[n++] = MOV32_REG(R_ACC, 2);
  prog[n++] = RSH32_IMM(R_ACC, 16);
  prog[n++] = LDX_W(R_MAJ, 1, 4);
  prog[n++] = LDX_W(R_MIN, 1, 8);
  /* OCI order is "last match wins": emit in reverse so the first match exits. */
  int unconditional = 0;
  for (size_t i = n_rules; i-- > 0 && !unconditional;) {
    size_t k = emit_rule(prog + n, &rules[i]);
    /* a rule without checks always exits: whatever follows would be unreachable code,
     * which the verifier refuses */
    unconditional = (k == 2);
    n += k;
  }
  if (!unconditional) {
    prog[n++] = MOV32_IMM(0, 0); /* nothing matched: deny */
    prog[n++] = EXIT_INSN();
  }

  cleanup_close int dirfd = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return pyrt_error_set(err, errno, "open cgroup %s", cgroup_dir);

  uint32_t old_ids[MAX_ATTACHED];
  uint32_t n_old = 0;
  if (query_device_progs(dirfd, old_ids, MAX_ATTACHED, &n_old, cgroup_dir, err) < 0)
    return -1;

  char log[8192];
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t)(uintptr_t)prog;
  attr.insn_cnt = (uint32_t)n;
  attr.license = (uint64_t)(uintptr_t) "Apache-2.0";
  memcpy(attr.prog_name, "pyrt_devices", sizeof "pyrt_devices");
  cleanup_close int prog_fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
  if (prog_fd < 0) {
    int e = errno;
    /* load again with the verifier's log so the error says why */
    log[0] = '\0';
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = sizeof log;
    attr.log_level = 1;
    int again = (int)sys_bpf(BPF_PROG_LOAD, &attr);
    if (again >= 0) close(again);
    size_t l = strlen(log);
    while (l > 0 && (log[l - 1] == '\n' || log[l - 1] == ' ')) log[--l] = '\0';
    return pyrt_error_set(err, e, "load device filter for %s (%zu insns)%s%.300s", cgroup_dir,
                          n, log[0] ? ": " : "", log);
  }

  memset(&attr, 0, sizeof attr);
  attr.target_fd = (uint32_t)dirfd;
  attr.attach_bpf_fd = (uint32_t)prog_fd;
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0)
    return pyrt_error_set(err, errno, "attach device filter to %s", cgroup_dir);

  /* the new filter is in place: take the old ones away */
  for (uint32_t i = 0; i < n_old; i++) {
    memset(&attr, 0, sizeof attr);
    attr.prog_id = old_ids[i];
    cleanup_close int old_fd = (int)sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
    if (old_fd < 0) {
      if (errno == ENOENT) continue;
      return pyrt_error_set(err, errno, "get old device filter %u of %s", old_ids[i],
                            cgroup_dir);
    }
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)dirfd;
    attr.attach_bpf_fd = (uint32_t)old_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (sys_bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT)
      return pyrt_error_set(err, errno, "detach old device filter %u from %s", old_ids[i],
                            cgroup_dir);
  }
  pyrt_error_clear(err);
  return 0;
}

int pyrt_cgroup_device_filter_count(const char *cgroup_dir, pyrt_error_t *err) {
  cleanup_close int dirfd = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return pyrt_error_set(err, errno, "open cgroup %s", cgroup_dir);
  uint32_t ids[MAX_ATTACHED];
  uint32_t count = 0;
  if (query_device_progs(dirfd, ids, MAX_ATTACHED, &count, cgroup_dir, err) < 0) return -1;
  pyrt_error_clear(err);
  return (int)count;
}
