/* pyrt-runc create (and run), natively: config.json -> checks -> cgroup -> spawn -> state.
 *
 * The behaviour reproduced is Python's: pyrt/runtime/runtime.py (Runtime.create, run),
 * spec.py (validate_spec), translate.py (to_spawn_config), cgroups.py (open_cgroup,
 * V1Manager.create/apply) and state.py (state.json with its fast lines, as ContainerDir.write
 * writes them; the created record appended to the creating one). Python stays the reference and the fallback:
 *
 * - Everything is checked before the first side effect (the state directory). Anything
 *   this file does not handle -- a spec Python would refuse, hooks, a seccomp profile not
 *   in Python's cache of compiled ones (cached_seccomp), a user namespace, a joined user,
 *   mount or time namespace, resources other than memory(+swap)/cpu/pids limits and
 *   device rules, a cgroup v2 host, an rlimit or capability Python would adjust with a
 *   warning, a flag it does not know -- is handed to the Python CLI (delegate()) before anything is touched. Errors
 *   are therefore Python's, word for word.
 * - A failure after a side effect (a cgroup write, the console socket, the spawn, the
 *   pid file) undoes everything done so far (the same cleanup Runtime.create runs) and
 *   then delegates: Python does the create again from nothing and, failing at the same
 *   point, reports it in its own words.
 * - With PYRT_RUNC_NATIVE_ONLY in the environment nothing is handed over: such a create
 *   fails (exit status 125) after the same undo, for a caller that redoes it in process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "json.h"
#include "runc.h"
#include "sha256.h"
#include "spawn.h"

#define U32_MAX 4294967295LL
#define MAX_HIER 32

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif

/* Each check: on failure the whole command goes to Python. With PYRT_RUNC_EXPLAIN set to
 * a file name, the line of the check that handed it over is appended to that file (to see
 * why a given spec is not created natively). */
#define NEED(cond) \
  do {             \
    if (!(cond)) refuse(__LINE__); \
  } while (0)

/* With PYRT_RUNC_NATIVE_ONLY set (the engine's shim runs create so: it has Python in
 * process and redoes a create this file does not handle itself, faster than a new
 * interpreter would), a create that would be handed over fails instead, exit status 125,
 * after the same undo. */
static void give_up(int line) __attribute__((noreturn));
static void give_up(int line) {
  const char *only = getenv("PYRT_RUNC_NATIVE_ONLY");
  if (only != NULL && only[0] != '\0') {
    fprintf(stderr, "pyrt-runc: create not handled natively (create.c:%d)\n", line);
    exit(125);
  }
  delegate();
}

static void refuse(int line) __attribute__((noreturn));
static void refuse(int line) {
  const char *path = getenv("PYRT_RUNC_EXPLAIN");
  if (path != NULL && path[0] != '\0') {
    FILE *f = fopen(path, "ae");
    if (f != NULL) {
      fprintf(f, "pyrt-runc: native create: handed to Python at create.c:%d\n", line);
      fclose(f);
    }
  }
  give_up(line);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  NEED(p != NULL);
  return p;
}

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  NEED(p != NULL);
  return p;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...) {
  va_list ap;
  char *out = NULL;
  va_start(ap, fmt);
  int n = vasprintf(&out, fmt, ap);
  va_end(ap);
  NEED(n >= 0);
  return out;
}

/* ---- paths, as posixpath does them ------------------------------------------------------ */

static char *normpath(const char *p) {
  if (*p == '\0') return xstrdup(".");
  int initial = p[0] == '/' ? ((p[1] == '/' && p[2] != '/') ? 2 : 1) : 0;
  char *copy = xstrdup(p);
  size_t cap = strlen(p) / 2 + 2, n = 0;
  char **comps = xcalloc(cap, sizeof *comps);
  char *save = NULL;
  for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
    if (strcmp(tok, ".") == 0) continue;
    if (strcmp(tok, "..") != 0 || (!initial && n == 0) || (n > 0 && strcmp(comps[n - 1], "..") == 0))
      comps[n++] = tok;
    else if (n > 0)
      n--;
  }
  buf_t b = {0};
  buf_add(&b, "//", (size_t)initial);
  for (size_t i = 0; i < n; i++) {
    if (i) buf_add(&b, "/", 1);
    buf_puts(&b, comps[i]);
  }
  if (b.len == 0) buf_add(&b, ".", 1);
  NEED(!b.bad);
  return b.p;
}

static char *path_join(const char *a, const char *b) {
  if (b[0] == '/' || a[0] == '\0') return xstrdup(b);
  size_t n = strlen(a);
  return xprintf("%s%s%s", a, a[n - 1] == '/' ? "" : "/", b);
}

static char *abspath(const char *p) {
  if (p[0] == '/') return normpath(p);
  char cwd[PATH_MAX];
  NEED(getcwd(cwd, sizeof cwd) != NULL);
  return normpath(path_join(cwd, p));
}

/* ---- spec checks (spec.py's validate_spec, as a subset) ---------------------------------- */

static int is_str(const jv_t *v) { return v != NULL && v->t == J_STR; }
static int is_bool(const jv_t *v) { return v != NULL && (v->t == J_TRUE || v->t == J_FALSE); }
static int truth(const jv_t *v) { return v != NULL && v->t == J_TRUE; }
static int int_in(const jv_t *v, long long lo, long long hi) {
  return v != NULL && v->t == J_INT && v->num >= lo && v->num <= hi;
}
static int is_abspath(const jv_t *v) { return is_str(v) && v->str[0] == '/'; }
static int is_strlist(const jv_t *v) {
  if (v == NULL || v->t != J_ARR) return 0;
  for (size_t i = 0; i < v->n; i++)
    if (v->items[i].t != J_STR) return 0;
  return 1;
}
/* a key that, when present, must hold `ok` (null counts as absent when nullable) */
#define OPTIONAL(obj, key, ok) \
  do { const jv_t *_v = jget(obj, key); if (!jnone(_v)) NEED(ok(_v)); } while (0)

/* ^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?\n?$ with major 1 and minor <= 2 */
static int version_ok(const char *s) {
  long nums[3];
  for (int k = 0; k < 3; k++) {
    const char *start = s;
    long v = 0;
    while (*s >= '0' && *s <= '9') {
      if (v > 1000000) return 0;
      v = v * 10 + (*s++ - '0');
    }
    if (s == start) return 0;
    nums[k] = v;
    if (k < 2 && *s++ != '.') return 0;
  }
  if (*s == '-' || *s == '+')
    for (s++; *s && *s != '\n'; s++)
      if (!(strchr(".+-", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
            (*s >= 'A' && *s <= 'Z')))
        return 0;
  if (*s == '\n') s++;
  return *s == '\0' && nums[0] == 1 && nums[1] <= 2;
}

static const char *const NS_NAMES[] = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"};
static const int NS_FLAGS[] = {CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWIPC,
                               CLONE_NEWUTS, CLONE_NEWUSER, CLONE_NEWCGROUP, CLONE_NEWTIME};

static const char *const CAP_NAMES[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};
#define N_CAPS (int)(sizeof CAP_NAMES / sizeof CAP_NAMES[0])

static const char *const RLIMIT_NAMES[] = {
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
    "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
    "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
};

static const char *const PROPAGATIONS[] = {"shared", "rshared", "slave", "rslave",
                                           "private", "rprivate", "unbindable", "runbindable"};
static const unsigned long PROPAGATION_FLAGS[] = {
    MS_SHARED, MS_SHARED | MS_REC, MS_SLAVE, MS_SLAVE | MS_REC,
    MS_PRIVATE, MS_PRIVATE | MS_REC, MS_UNBINDABLE, MS_UNBINDABLE | MS_REC};

static int index_of(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}
#define INDEX(s, arr) index_of(s, arr, (int)(sizeof arr / sizeof arr[0]))

/* the kernel's highest capability (capabilities.kernel_last_cap) */
static int kernel_last_cap(void) {
  char *s = read_file("/proc/sys/kernel/cap_last_cap", NULL);
  int v = s ? atoi(s) : N_CAPS - 1;
  free(s);
  return v;
}

/* a capability list as a mask; a name above the kernel's last cap is left to Python (it
 * warns) */
static uint64_t cap_mask(const jv_t *list, int last_cap) {
  uint64_t mask = 0;
  if (jnone(list)) return 0;
  NEED(is_strlist(list));
  for (size_t i = 0; i < list->n; i++) {
    int bit = -1;
    for (int k = 0; k < N_CAPS; k++)
      if (strcasecmp(list->items[i].str, CAP_NAMES[k]) == 0) bit = k;
    NEED(bit >= 0 && bit <= last_cap);
    mask |= 1ULL << bit;
  }
  return mask;
}

/* sysctl key -> the namespace it belongs to (spec.sysctl_namespace), or -1 (global) */
static int sysctl_ns(const char *key) {
  char *k = xstrdup(key);
  for (char *c = k; *c; c++)
    if (*c == '/') *c = '.';
  int ns = -1;
  if (strncmp(k, "kernel.msg", 10) == 0 || strncmp(k, "kernel.shm", 10) == 0 ||
      strcmp(k, "kernel.sem") == 0 || strncmp(k, "fs.mqueue.", 10) == 0)
    ns = CLONE_NEWIPC;
  else if (strncmp(k, "net.", 4) == 0)
    ns = CLONE_NEWNET;
  else if (strcmp(k, "kernel.hostname") == 0 || strcmp(k, "kernel.domainname") == 0)
    ns = CLONE_NEWUTS;
  free(k);
  return ns;
}

/* ---- mount options (translate.mount_options) ------------------------------------------- */

static const struct { const char *name; int clear; unsigned long flag; } MOUNT_FLAGS[] = {
    {"ro", 0, MS_RDONLY}, {"rw", 1, MS_RDONLY}, {"nosuid", 0, MS_NOSUID},
    {"suid", 1, MS_NOSUID}, {"nodev", 0, MS_NODEV}, {"dev", 1, MS_NODEV},
    {"noexec", 0, MS_NOEXEC}, {"exec", 1, MS_NOEXEC}, {"sync", 0, MS_SYNCHRONOUS},
    {"async", 1, MS_SYNCHRONOUS}, {"dirsync", 0, MS_DIRSYNC}, {"remount", 0, MS_REMOUNT},
    {"mand", 0, MS_MANDLOCK}, {"nomand", 1, MS_MANDLOCK}, {"atime", 1, MS_NOATIME},
    {"noatime", 0, MS_NOATIME}, {"diratime", 1, MS_NODIRATIME},
    {"nodiratime", 0, MS_NODIRATIME}, {"relatime", 0, MS_RELATIME},
    {"norelatime", 1, MS_RELATIME}, {"strictatime", 0, MS_STRICTATIME},
    {"nostrictatime", 1, MS_STRICTATIME}, {"lazytime", 0, MS_LAZYTIME},
    {"nolazytime", 1, MS_LAZYTIME}, {"iversion", 0, MS_I_VERSION},
    {"noiversion", 1, MS_I_VERSION}, {"silent", 0, MS_SILENT}, {"loud", 1, MS_SILENT},
    {"nosymfollow", 0, MS_NOSYMFOLLOW}, {"bind", 0, MS_BIND}, {"rbind", 0, MS_BIND | MS_REC},
};

static void mount_options(const jv_t *opts, unsigned long *flags, unsigned long *prop,
                          char **data) {
  *flags = *prop = 0;
  buf_t d = {0};
  for (size_t i = 0; opts != NULL && i < opts->n; i++) {
    const char *o = opts->items[i].str;
    int k, known = 0;
    for (k = 0; k < (int)(sizeof MOUNT_FLAGS / sizeof MOUNT_FLAGS[0]); k++)
      if (strcmp(o, MOUNT_FLAGS[k].name) == 0) {
        if (MOUNT_FLAGS[k].clear) *flags &= ~MOUNT_FLAGS[k].flag;
        else *flags |= MOUNT_FLAGS[k].flag;
        known = 1;
      }
    if (known) continue;
    if ((k = INDEX(o, PROPAGATIONS)) >= 0) {
      *prop = PROPAGATION_FLAGS[k];
      continue;
    }
    if (strcmp(o, "defaults") == 0) continue;
    if (d.len) buf_add(&d, ",", 1);
    buf_puts(&d, o);
  }
  NEED(!d.bad);
  *data = d.len ? d.p : NULL;
}

/* ---- cgroups (cgroups.open_cgroup and V1Manager, for v1 and hybrid hosts) -------------- */

static const char *const V1_SUBSYSTEMS[] = {
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
    "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"};

struct cg {
  int n;                         /* controllers, in mountinfo order */
  char *ctrl[MAX_HIER * 4];
  char *mountpoint[MAX_HIER * 4]; /* of the controller's hierarchy */
  char *path[MAX_HIER * 4];      /* the container's directory in it */
  char *unified, *unified_mount; /* hybrid: the container's dir in the v2 hierarchy */
  int ndirs;
  char *dirs[MAX_HIER * 4 + 1];  /* V1Manager._dirs(): unique paths, then unified */
};

/* mountinfo's octal escapes undone */
static char *unescape(const char *s) {
  char *out = xstrdup(s), *o = out;
  while (*s) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
        s[3] >= '0' && s[3] <= '7') {
      *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 4;
    } else {
      *o++ = *s++;
    }
  }
  *o = '\0';
  return out;
}

/* cgroups._fs_path */
static char *fs_path(const char *mountpoint, const char *hroot, const char *own, int absolute,
                     const char *rel) {
  char *cg = absolute ? xprintf("/%s", rel) : path_join(own && *own ? own : "/", rel);
  cg = normpath(cg);
  if (strcmp(hroot, "/") != 0) {
    size_t n = strlen(hroot);
    while (n > 1 && hroot[n - 1] == '/') n--;
    if (strncmp(cg, hroot, n) == 0 && (cg[n] == '\0' || cg[n] == '/'))
      cg = cg[n] ? cg + n : xstrdup("/");
  }
  while (*cg == '/') cg++;
  char *out = path_join(mountpoint, cg);
  size_t n = strlen(out);
  while (n > 0 && out[n - 1] == '/') out[--n] = '\0';
  return out;
}

/* own cgroup path for a controller key ("" for v2) from /proc/self/cgroup text */
static const char *own_cgroup(char *text, const char *key) {
  static char line[PATH_MAX * 2];
  for (char *l = text; l && *l;) {
    char *nl = strchr(l, '\n');
    size_t len = nl ? (size_t)(nl - l) : strlen(l);
    if (len < sizeof line) {
      memcpy(line, l, len);
      line[len] = '\0';
      char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
      if (c2) {
        *c2 = '\0';
        char *ctrls = c1 + 1;
        if (key[0] == '\0' && ctrls[0] == '\0') return c2 + 1;
        char *save = NULL;
        for (char *t = strtok_r(ctrls, ",", &save); t; t = strtok_r(NULL, ",", &save))
          if (key[0] && strcmp(t, key) == 0) return c2 + 1;
      }
    }
    l = nl ? nl + 1 : NULL;
  }
  return "/";
}

/* open_cgroup for linux.cgroupsPath; delegates on a v2-only host or a bad path */
static void open_cgroup(struct cg *cg, const jv_t *cgroups_path, const char *id) {
  memset(cg, 0, sizeof *cg);
  int absolute;
  char *rel;
  if (jnone(cgroups_path) || cgroups_path->str[0] == '\0') {
    absolute = 1;
    rel = xprintf("pyrt/%s", id);
  } else {
    const char *p = cgroups_path->str;
    NEED(strchr(p, ':') == NULL && strchr(p, '\n') == NULL);
    buf_t b = {0};
    char *copy = xstrdup(p), *save = NULL;
    for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
      if (strcmp(t, ".") == 0) continue;
      NEED(strcmp(t, "..") != 0);
      if (b.len) buf_add(&b, "/", 1);
      buf_puts(&b, t);
    }
    NEED(b.len > 0 && !b.bad);
    absolute = p[0] == '/';
    rel = b.p;
  }
  char *proc_cgroup = absolute ? NULL : read_file("/proc/self/cgroup", NULL);
  NEED(absolute || proc_cgroup != NULL);
  size_t len;
  char *mi = read_file("/proc/self/mountinfo", &len);
  NEED(mi != NULL);
  int has_v1 = 0;
  for (char *l = mi; l && *l;) {
    char *nl = strchr(l, '\n');
    if (nl) *nl = '\0';
    char *f[64];
    int nf = 0;
    char *save = NULL;
    for (char *t = strtok_r(l, " ", &save); t && nf < 64; t = strtok_r(NULL, " ", &save))
      f[nf++] = t;
    int sep = -1;
    for (int i = 6; i < nf; i++)
      if (strcmp(f[i], "-") == 0) {
        sep = i;
        break;
      }
    NEED(nf == 0 || (sep > 0 && sep + 1 < nf));
    if (nf > 0 && strcmp(f[sep + 1], "cgroup2") == 0 && cg->unified_mount == NULL) {
      cg->unified_mount = unescape(f[4]);
      cg->unified = fs_path(cg->unified_mount, unescape(f[3]),
                            absolute ? NULL : own_cgroup(proc_cgroup, ""), absolute, rel);
    } else if (nf > 0 && strcmp(f[sep + 1], "cgroup") == 0 && sep + 3 < nf) {
      char *opts = f[sep + 3], *s2 = NULL;
      for (char *o = strtok_r(opts, ",", &s2); o; o = strtok_r(NULL, ",", &s2)) {
        int is_sub = INDEX(o, V1_SUBSYSTEMS) >= 0;
        if (!is_sub && strncmp(o, "name=", 5) != 0) continue;
        int seen = 0;
        for (int i = 0; i < cg->n; i++) seen |= strcmp(cg->ctrl[i], o) == 0;
        if (seen) continue; /* the first mount of a hierarchy wins over bind mounts */
        NEED(cg->n < MAX_HIER * 4);
        has_v1 |= is_sub;
        cg->ctrl[cg->n] = xstrdup(o);
        cg->mountpoint[cg->n] = unescape(f[4]);
        cg->path[cg->n] = fs_path(cg->mountpoint[cg->n], unescape(f[3]),
                                  absolute ? NULL : own_cgroup(proc_cgroup, o), absolute, rel);
        cg->n++;
      }
    }
    l = nl ? nl + 1 : NULL;
  }
  NEED(has_v1); /* a v2-only host (or none): Python's V2Manager */
  for (int i = 0; i < cg->n; i++) {
    int dup = 0;
    for (int k = 0; k < cg->ndirs; k++) dup |= strcmp(cg->dirs[k], cg->path[i]) == 0;
    if (!dup) cg->dirs[cg->ndirs++] = cg->path[i];
  }
  if (cg->unified) {
    int dup = 0;
    for (int k = 0; k < cg->ndirs; k++) dup |= strcmp(cg->dirs[k], cg->unified) == 0;
    if (!dup) cg->dirs[cg->ndirs++] = cg->unified;
  }
  for (int k = 0; k < cg->ndirs; k++) NEED(strchr(cg->dirs[k], '\n') == NULL);
}

static const char *cg_dir(const struct cg *cg, const char *ctrl) {
  for (int i = 0; i < cg->n; i++)
    if (strcmp(cg->ctrl[i], ctrl) == 0) return cg->path[i];
  return NULL;
}

static int read_trimmed(const char *path, char *out, size_t n) {
  char *s = read_file(path, NULL);
  if (s == NULL) return -1;
  size_t len = strlen(s);
  while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = '\0';
  char *p = s;
  while (*p == ' ' || *p == '\t' || *p == '\n') p++;
  int rc = strlen(p) < n ? 0 : -1;
  if (rc == 0) strcpy(out, p);
  free(s);
  return rc;
}

/* V1Manager.create: every directory, then the cpuset values copied down */
static int cg_create(const struct cg *cg) {
  pyrt_error_t err;
  for (int k = 0; k < cg->ndirs; k++)
    if (pyrt_cgroup_mkdir_p(cg->dirs[k], &err) < 0) return -1;
  const char *leaf = cg_dir(cg, "cpuset");
  if (leaf == NULL) return 0;
  char *chain[256];
  int n = 0;
  chain[n++] = xstrdup(leaf);
  for (;;) {
    char *cur = xstrdup(chain[n - 1]);
    char *slash = strrchr(cur, '/');
    if (slash == NULL || slash == cur || n >= 256) break;
    *slash = '\0';
    char *f = xprintf("%s/cpuset.cpus", cur);
    int exists = access(f, F_OK) == 0;
    free(f);
    if (!exists) break;
    chain[n++] = cur;
  }
  for (int i = n - 1; i > 0; i--) {
    static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
    for (int k = 0; k < 2; k++) {
      char v[4096];
      char *child = xprintf("%s/%s", chain[i - 1], files[k]);
      char *parent = xprintf("%s/%s", chain[i], files[k]);
      if (read_trimmed(child, v, sizeof v) < 0) return -1;
      if (v[0] == '\0' && (read_trimmed(parent, v, sizeof v) < 0 ||
                           pyrt_cgroup_write(child, NULL, v, &err) < 0))
        return -1;
    }
  }
  return 0;
}

static void cg_destroy(const struct cg *cg) {
  for (int k = 0; k < cg->ndirs; k++) remove_tree(cg->dirs[k], 0);
}

/* ---- the whole translation ------------------------------------------------------------- */

struct devrule {
  char type;
  long long major, minor;
  char access[4];
  int allow;
};

struct plan {
  const char *id, *root, *bundle, *console, *pid_file;
  int no_pivot, preserve_fds, run, detach, keep;
  jv_t *spec;
  char *bundle_abs, *rootfs_rec, *rootfs_real;
  struct cg cg;
  int new_ns;
  size_t n_writes; /* cgroup writes of linux.resources, in V1Manager._plan's order */
  char **wpath, **wvalue;
  pyrt_spawn_config_t sc;
  buf_t warnings; /* what Python's logger would print on stderr during the create */
};

/* translate._has_sys_resource: CAP_SYS_RESOURCE (24) in our effective set */
static int has_sys_resource(void) {
  char *status = read_file("/proc/self/status", NULL);
  char *line = status ? strstr(status, "\nCapEff:") : NULL;
  int has = line != NULL && ((strtoull(line + 8, NULL, 16) >> 24) & 1);
  free(status);
  return has;
}

static void check_process(struct plan *pl, const jv_t *proc) {
  pyrt_spawn_config_t *sc = &pl->sc;
  NEED(proc != NULL && proc->t == J_OBJ);
  const jv_t *v;
  if ((v = jget(proc, "terminal")) != NULL) NEED(is_bool(v));
  sc->terminal = truth(v);
  if (!jnone(v = jget(proc, "consoleSize"))) {
    NEED(v->t == J_OBJ);
    const jv_t *h = jget(v, "height"), *w = jget(v, "width");
    NEED((h == NULL || int_in(h, 0, 0xFFFF)) && (w == NULL || int_in(w, 0, 0xFFFF)));
  }
  const jv_t *args = jget(proc, "args");
  NEED(is_strlist(args) && args->n > 0 && args->items[0].str[0] != '\0');
  sc->argv = xcalloc(args->n + 1, sizeof(char *));
  for (size_t i = 0; i < args->n; i++) sc->argv[i] = args->items[i].str;
  v = jget(proc, "cwd");
  NEED(is_abspath(v));
  sc->cwd = v->str;
  v = jget(proc, "env");
  size_t nenv = jnone(v) ? 0 : v->n;
  if (!jnone(v)) NEED(is_strlist(v));
  sc->envp = xcalloc(nenv + 1, sizeof(char *));
  for (size_t i = 0; i < nenv; i++) {
    const char *e = v->items[i].str, *eq = strchr(e, '=');
    NEED(eq != NULL && eq != e);
    sc->envp[i] = (char *)e;
  }

  const jv_t *user = jget(proc, "user");
  if (user != NULL) {
    NEED(user->t == J_OBJ);
    const jv_t *uid = jget(user, "uid"), *gid = jget(user, "gid");
    NEED(int_in(uid, 0, U32_MAX) && int_in(gid, 0, U32_MAX));
    sc->uid = (uid_t)uid->num;
    sc->gid = (gid_t)gid->num;
    v = jget(user, "umask");
    if (!jnone(v)) NEED(int_in(v, 0, 0777));
    sc->umask = jnone(v) ? 022 : (int)v->num;
    v = jget(user, "additionalGids");
    if (!jnone(v)) {
      NEED(v->t == J_ARR);
      sc->gids = xcalloc(v->n, sizeof(gid_t));
      for (size_t i = 0; i < v->n; i++) {
        NEED(int_in(&v->items[i], 0, U32_MAX));
        sc->gids[i] = (gid_t)v->items[i].num;
      }
      sc->n_gids = v->n;
      sc->set_gids = 1;
    }
    OPTIONAL(user, "username", is_str);
  } else {
    sc->umask = 022;
  }
  if (!sc->set_gids && geteuid() == 0) sc->set_gids = 1; /* drop the runtime's own groups */

  if (!jnone(v = jget(proc, "capabilities"))) {
    NEED(v->t == J_OBJ);
    int last = kernel_last_cap();
    sc->set_caps = 1;
    sc->cap_bounding = cap_mask(jget(v, "bounding"), last);
    sc->cap_effective = cap_mask(jget(v, "effective"), last);
    sc->cap_inheritable = cap_mask(jget(v, "inheritable"), last);
    sc->cap_permitted = cap_mask(jget(v, "permitted"), last);
    sc->cap_ambient = cap_mask(jget(v, "ambient"), last);
  }

  if (!jnone(v = jget(proc, "rlimits"))) {
    NEED(v->t == J_ARR);
    sc->rlimits = xcalloc(v->n, sizeof(pyrt_rlimit_t));
    for (size_t i = 0; i < v->n; i++) {
      const jv_t *rl = &v->items[i], *type = jget(rl, "type");
      NEED(rl->t == J_OBJ && is_str(type));
      int num = INDEX(type->str, RLIMIT_NAMES);
      NEED(num >= 0);
      for (size_t k = 0; k < i; k++) NEED(sc->rlimits[k].resource != num);
      const jv_t *soft = jget(rl, "soft"), *hard = jget(rl, "hard");
      NEED(int_in(soft, 0, LLONG_MAX) && int_in(hard, 0, LLONG_MAX) && soft->num <= hard->num);
      /* translate.clamp_rlimit: without CAP_SYS_RESOURCE a hard limit above ours is
       * lowered to ours, with its warning (printed once the create has succeeded: a
       * create handed to Python after all prints it there) */
      struct rlimit cur;
      NEED(getrlimit(num, &cur) == 0);
      uint64_t s_lim = (uint64_t)soft->num, h_lim = (uint64_t)hard->num;
      if (cur.rlim_max != RLIM_INFINITY && h_lim > cur.rlim_max && !has_sys_resource()) {
        buf_printf(&pl->warnings, "process.rlimits %s: hard limit %llu lowered to %llu "
                   "(no CAP_SYS_RESOURCE)\n", type->str, (unsigned long long)h_lim,
                   (unsigned long long)cur.rlim_max);
        h_lim = cur.rlim_max;
        s_lim = s_lim < h_lim ? s_lim : h_lim;
      }
      sc->rlimits[i] = (pyrt_rlimit_t){num, s_lim, h_lim};
    }
    sc->n_rlimits = v->n;
  }
  if ((v = jget(proc, "noNewPrivileges")) != NULL) NEED(is_bool(v));
  sc->no_new_privileges = truth(v);
  if (!jnone(v = jget(proc, "oomScoreAdj"))) {
    NEED(int_in(v, -1000, 1000));
    sc->set_oom_score_adj = 1;
    sc->oom_score_adj = (int)v->num;
  }
  OPTIONAL(proc, "apparmorProfile", is_str);
  OPTIONAL(proc, "selinuxLabel", is_str);
  NEED(jnone(jget(proc, "scheduler")) && jnone(jget(proc, "ioPriority")) &&
       jnone(jget(proc, "execCPUAffinity")));
}

static void add_mount(pyrt_mount_t **ms, size_t *n, pyrt_mount_t m) {
  *ms = realloc(*ms, (*n + 1) * sizeof **ms);
  NEED(*ms != NULL);
  (*ms)[(*n)++] = m;
}

/* the cgroup hierarchies as translate._cgroup_mounts sees them: sorted mountpoint names */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cgroup_mounts(struct plan *pl, const char *dest, unsigned long flags,
                          pyrt_mount_t **ms, size_t *n) {
  int readonly = (flags & MS_RDONLY) != 0;
  unsigned long base = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
  /* _cgroup_dirs: hierarchy mountpoint basename -> the container's dir, and "unified" */
  char *names[MAX_HIER * 4 + 1], *dirs[MAX_HIER * 4 + 1];
  int k = 0;
  for (int i = 0; i < pl->cg.n; i++) {
    const char *base_name = strrchr(pl->cg.mountpoint[i], '/');
    base_name = base_name ? base_name + 1 : pl->cg.mountpoint[i];
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= strcmp(names[j], base_name) == 0;
    if (dup) continue;
    names[k] = (char *)base_name;
    dirs[k++] = pl->cg.path[i];
  }
  if (pl->cg.unified) {
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= strcmp(names[j], "unified") == 0;
    if (dup) refuse(__LINE__); /* a v1 hierarchy mounted at .../unified: leave it to Python */
    names[k] = "unified";
    dirs[k++] = pl->cg.unified;
  }
  /* sort names, keeping dirs alongside */
  char *pairs[MAX_HIER * 8 + 2];
  for (int i = 0; i < k; i++) pairs[i] = xprintf("%s%c%s", names[i], '\0', dirs[i]);
  qsort(pairs, (size_t)k, sizeof pairs[0], cmp_str);
  add_mount(ms, n, (pyrt_mount_t){"tmpfs", (char *)dest, "tmpfs", "mode=755",
                                  base | (k == 0 && readonly ? MS_RDONLY : 0), 0});
  if (k == 0) return;
  size_t dl = strlen(dest);
  while (dl > 0 && dest[dl - 1] == '/') dl--;
  for (int i = 0; i < k; i++) {
    const char *name = pairs[i], *dir = pairs[i] + strlen(pairs[i]) + 1;
    char *target = xprintf("%.*s/%s", (int)dl, dest, name);
    add_mount(ms, n, (pyrt_mount_t){(char *)dir, target, NULL, NULL,
                                    MS_BIND | MS_REC | base | (readonly ? MS_RDONLY : 0), 0});
  }
  if (readonly)
    add_mount(ms, n, (pyrt_mount_t){"tmpfs", (char *)dest, "tmpfs", "mode=755",
                                    MS_REMOUNT | MS_RDONLY | base, 0});
}

static void check_mounts(struct plan *pl, const jv_t *mounts) {
  if (jnone(mounts)) return;
  NEED(mounts->t == J_ARR);
  pyrt_mount_t *ms = NULL;
  size_t n = 0;
  for (size_t i = 0; i < mounts->n; i++) {
    const jv_t *m = &mounts->items[i];
    NEED(m->t == J_OBJ);
    const jv_t *dest = jget(m, "destination"), *type = jget(m, "type"),
               *source = jget(m, "source"), *opts = jget(m, "options");
    NEED(is_abspath(dest));
    if (!jnone(type)) NEED(is_str(type));
    if (!jnone(source)) NEED(is_str(source));
    if (!jnone(opts)) {
      NEED(is_strlist(opts));
      for (size_t k = 0; k < opts->n; k++) {
        const char *o = opts->items[k].str;
        NEED(strcmp(o, "idmap") && strcmp(o, "ridmap") && strcmp(o, "tmpcopyup"));
      }
    }
    NEED(jnone(jget(m, "uidMappings")) && jnone(jget(m, "gidMappings")));
    unsigned long flags, prop;
    char *data;
    mount_options(jnone(opts) ? NULL : opts, &flags, &prop, &data);
    const char *fstype = (!jnone(type) && type->str[0]) ? type->str : NULL;
    const char *src = jnone(source) ? NULL : source->str;
    if ((fstype && strcmp(fstype, "bind") == 0) || (flags & MS_BIND)) {
      NEED(src != NULL && src[0] != '\0');
      char *s = src[0] == '/' ? (char *)src : path_join(pl->bundle_abs, src);
      add_mount(&ms, &n, (pyrt_mount_t){s, dest->str, NULL, data, flags | MS_BIND, prop});
      continue;
    }
    NEED(fstype != NULL);
    if (strcmp(fstype, "cgroup") == 0) {
      cgroup_mounts(pl, dest->str, flags, &ms, &n);
      continue;
    }
    add_mount(&ms, &n, (pyrt_mount_t){src ? (char *)src : (char *)fstype, dest->str,
                                      (char *)fstype, data, flags, prop});
  }
  pl->sc.mounts = ms;
  pl->sc.n_mounts = n;
}

/* translate.devices_config, and the cgroup allow rules _with_default_devices adds */
static void check_devices(struct plan *pl, const jv_t *devs) {
  static const struct { const char *path; unsigned major, minor; } DEFAULTS[] = {
      {"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/full", 1, 7},
      {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};
  size_t nd = jnone(devs) ? 0 : devs->n, n = 0;
  pyrt_device_t *out = xcalloc(6 + nd, sizeof *out);
  for (int i = 0; i < 6; i++)
    out[n++] = (pyrt_device_t){(char *)DEFAULTS[i].path, 'c', DEFAULTS[i].major,
                               DEFAULTS[i].minor, 0666, 0, 0};
  if (!jnone(devs)) NEED(devs->t == J_ARR);
  for (size_t i = 0; i < nd; i++) {
    const jv_t *d = &devs->items[i];
    NEED(d->t == J_OBJ);
    const jv_t *path = jget(d, "path"), *type = jget(d, "type"), *major = jget(d, "major"),
               *minor = jget(d, "minor"), *mode = jget(d, "fileMode"), *uid = jget(d, "uid"),
               *gid = jget(d, "gid");
    NEED(is_abspath(path) && is_str(type) && strlen(type->str) == 1 &&
         strchr("cbup", type->str[0]) != NULL);
    char t = type->str[0];
    /* null major/minor would need Python's `or 0` and `None -> any`: leave to Python */
    if (t != 'p') NEED(major != NULL && minor != NULL);
    NEED(major == NULL || int_in(major, 0, U32_MAX));
    NEED(minor == NULL || int_in(minor, 0, U32_MAX));
    if (!jnone(mode)) NEED(int_in(mode, 0, 07777));
    if (!jnone(uid)) NEED(int_in(uid, 0, U32_MAX));
    if (!jnone(gid)) NEED(int_in(gid, 0, U32_MAX));
    pyrt_device_t dev = {path->str, t == 'u' ? 'c' : t,
                         major ? (unsigned)major->num : 0, minor ? (unsigned)minor->num : 0,
                         jnone(mode) ? 0666 : (mode_t)mode->num,
                         jnone(uid) ? 0 : (uid_t)uid->num, jnone(gid) ? 0 : (gid_t)gid->num};
    size_t k;
    for (k = 0; k < n; k++)
      if (strcmp(out[k].path, dev.path) == 0) break;
    out[k] = dev; /* a listed path replaces the earlier entry in its place */
    if (k == n) n++;
  }
  pl->sc.devices = out;
  pl->sc.n_devices = n;
}

static void add_write(struct plan *pl, const char *dir, const char *file, char *value) {
  NEED(dir != NULL); /* a controller that is not mounted: Python says so */
  pl->wpath = realloc(pl->wpath, (pl->n_writes + 1) * sizeof(char *));
  pl->wvalue = realloc(pl->wvalue, (pl->n_writes + 1) * sizeof(char *));
  NEED(pl->wpath != NULL && pl->wvalue != NULL);
  pl->wpath[pl->n_writes] = xprintf("%s/%s", dir, file);
  pl->wvalue[pl->n_writes++] = value;
}

/* an integer field of a resources object: 1 and *out set when present and in range (lo..hi,
 * or `also`), 0 when absent or null; out of range or not an integer delegates */
static int res_int(const jv_t *obj, const char *key, long long lo, long long hi, long long also,
                   long long *out) {
  const jv_t *v = jget(obj, key);
  if (jnone(v)) return 0;
  NEED(v->t == J_INT && (v->num == also || (v->num >= lo && v->num <= hi)));
  *out = v->num;
  return 1;
}

/* an object-valued resources key: NULL when absent or null; its keys must be in `keys`,
 * and those after the first `handled` must be null (or ignored: the rest of the list) */
static const jv_t *res_obj(const jv_t *res, const char *name, const char *const *keys,
                           int handled, int nulls) {
  const jv_t *o = jget(res, name);
  if (jnone(o)) return NULL;
  NEED(o->t == J_OBJ);
  for (size_t i = 0; i < o->n; i++) {
    int k = -1;
    for (int j = 0; keys[j] != NULL; j++)
      if (strcmp(o->keys[i], keys[j]) == 0) k = j;
    NEED(k >= 0);
    if (k >= handled && k < handled + nulls) NEED(o->items[i].t == J_NULL);
  }
  return o;
}

/* linux.resources as V1Manager._plan writes it, for memory limit/swap/reservation, cpu
 * shares/period/quota, pids and device rules; any other setting goes to Python */
static void check_resources(struct plan *pl, const jv_t *lx, const jv_t *res) {
  if (jnone(res)) return;
  NEED(res->t == J_OBJ);
  static const char *const TOP_KEYS[] = {"memory", "cpu", "pids", "devices", "hugepageLimits",
                                         "unified", "blockIO", "network", "rdma"};
  for (size_t i = 0; i < res->n; i++) {
    int k = INDEX(res->keys[i], TOP_KEYS);
    NEED(k >= 0 && (k < 4 || res->items[i].t == J_NULL));
  }
  /* _with_default_devices: resources without device rules and no other content are {} */
  long long v;
  static const char *const MEM_KEYS[] = {"limit", "reservation", "swap", "swappiness",
                                         "disableOOMKiller", "kernel", "kernelTCP",
                                         "useHierarchy", "checkBeforeUpdate", NULL};
  const jv_t *mem = res_obj(res, "memory", MEM_KEYS, 3, 2);
  if (mem != NULL) {
    const char *d = cg_dir(&pl->cg, "memory");
    long long limit = 0, swap = 0;
    int has_limit = res_int(mem, "limit", 1, LLONG_MAX, -1, &limit);
    int has_swap = res_int(mem, "swap", 1, LLONG_MAX, -1, &swap);
    /* V1Manager._plan: memory+swap is at least memory (else Python's error); it must never
     * drop below memory, so it goes first when unlimited (a new cgroup's memsw is) and
     * last otherwise; a cgroup whose memsw already holds a smaller value makes the write
     * fail, and Python redoes the create */
    NEED(!has_swap || !has_limit || limit == -1 || swap == -1 || swap >= limit);
    if (has_swap && swap == -1)
      add_write(pl, d, "memory.memsw.limit_in_bytes", xstrdup("-1"));
    if (has_limit)
      add_write(pl, d, "memory.limit_in_bytes", xprintf("%lld", limit));
    if (has_swap && swap != -1)
      add_write(pl, d, "memory.memsw.limit_in_bytes", xprintf("%lld", swap));
    if (res_int(mem, "reservation", 0, LLONG_MAX, -1, &v))
      add_write(pl, d, "memory.soft_limit_in_bytes", xprintf("%lld", v));
  }
  static const char *const CPU_KEYS[] = {"shares", "period", "quota", "burst",
                                         "realtimeRuntime", "realtimePeriod", "idle",
                                         "cpus", "mems", NULL};
  const jv_t *cpu = res_obj(res, "cpu", CPU_KEYS, 3, 4);
  if (cpu != NULL) {
    for (int k = 7; k < 9; k++) { /* "" is skipped, as None */
      const jv_t *s = jget(cpu, CPU_KEYS[k]);
      NEED(jnone(s) || (is_str(s) && s->str[0] == '\0'));
    }
    const char *d = cg_dir(&pl->cg, "cpu");
    if (res_int(cpu, "shares", 2, 262144, 2, &v))
      add_write(pl, d, "cpu.shares", xprintf("%lld", v));
    if (res_int(cpu, "period", 1000, 1000000, 1000, &v))
      add_write(pl, d, "cpu.cfs_period_us", xprintf("%lld", v));
    if (res_int(cpu, "quota", 1000, LLONG_MAX, -1, &v))
      add_write(pl, d, "cpu.cfs_quota_us", xprintf("%lld", v));
  }
  static const char *const PIDS_KEYS[] = {"limit", NULL};
  const jv_t *pids = res_obj(res, "pids", PIDS_KEYS, 1, 0);
  if (pids != NULL && res_int(pids, "limit", 0, LLONG_MAX, -1, &v))
    add_write(pl, cg_dir(&pl->cg, "pids"), "pids.max", v > 0 ? xprintf("%lld", v) : "max");

  const jv_t *devs = jget(res, "devices");
  if (jnone(devs)) return;
  NEED(devs->t == J_ARR);
  const char *dd = cg_dir(&pl->cg, "devices");
  add_write(pl, dd, "devices.deny", "a");
  struct devrule *rules = xcalloc(devs->n + 64, sizeof *rules);
  size_t n = 0;
  for (size_t i = 0; i < devs->n; i++) {
    const jv_t *d = &devs->items[i];
    NEED(d->t == J_OBJ);
    for (size_t k = 0; k < d->n; k++)
      NEED(INDEX(d->keys[k], ((const char *const[]){"allow", "type", "major", "minor", "access"})) >= 0);
    const jv_t *allow = jget(d, "allow"), *type = jget(d, "type"), *access = jget(d, "access");
    NEED(is_bool(allow));
    struct devrule r = {'a', -1, -1, "", allow->t == J_TRUE};
    if (!jnone(type) && !(is_str(type) && type->str[0] == '\0')) {
      NEED(is_str(type) && strlen(type->str) == 1 && strchr("abc", type->str[0]));
      r.type = type->str[0];
    }
    res_int(d, "major", -1, 0xFFF, -1, &r.major);
    res_int(d, "minor", -1, 0xFFFFF, -1, &r.minor);
    const char *acc = "rwm";
    if (!jnone(access) && !(is_str(access) && access->str[0] == '\0')) {
      NEED(is_str(access) && strspn(access->str, "rwm") == strlen(access->str));
      acc = access->str;
    }
    int k = 0;
    for (const char *c = "rwm"; *c; c++)
      if (strchr(acc, *c)) r.access[k++] = *c;
    rules[n++] = r;
  }
  const jv_t *ldevs = jget(lx, "devices");
  for (size_t i = 0; !jnone(ldevs) && i < ldevs->n; i++) {
    const jv_t *d = &ldevs->items[i];
    const char *t = jget(d, "type")->str;
    if (strcmp(t, "c") && strcmp(t, "b")) continue;
    long long maj = jget(d, "major")->num, mnr = jget(d, "minor")->num;
    NEED(maj <= 0xFFF && mnr <= 0xFFFFF && n < devs->n + 56);
    rules[n++] = (struct devrule){t[0], maj, mnr, "rwm", 1};
  }
  static const struct devrule DEFAULT_RULES[] = {
      {'c', 1, 3, "rwm", 1}, {'c', 1, 5, "rwm", 1}, {'c', 1, 7, "rwm", 1},
      {'c', 1, 8, "rwm", 1}, {'c', 1, 9, "rwm", 1}, {'c', 5, 0, "rwm", 1},
      {'c', 5, 2, "rwm", 1}, {'c', 136, -1, "rwm", 1}};
  for (size_t i = 0; i < sizeof DEFAULT_RULES / sizeof DEFAULT_RULES[0]; i++)
    rules[n++] = DEFAULT_RULES[i];
  for (size_t i = 0; i < n; i++) {
    const struct devrule *r = &rules[i];
    char maj[24] = "*", mnr[24] = "*";
    if (r->major >= 0) snprintf(maj, sizeof maj, "%lld", r->major);
    if (r->minor >= 0) snprintf(mnr, sizeof mnr, "%lld", r->minor);
    add_write(pl, dd, r->allow ? "devices.allow" : "devices.deny",
              r->type == 'a' ? "a" : xprintf("%c %s:%s %s", r->type, maj, mnr, r->access));
  }
}

static char **str_array(const jv_t *list, size_t *n) {
  *n = 0;
  if (jnone(list)) return NULL;
  NEED(list->t == J_ARR);
  char **out = xcalloc(list->n + 1, sizeof(char *));
  for (size_t i = 0; i < list->n; i++) {
    NEED(is_abspath(&list->items[i]));
    out[i] = list->items[i].str;
  }
  *n = list->n;
  return out;
}

/* linux.seccomp from the cache Python keeps under <root>/.seccomp-cache (see
 * translate.cached_seccomp): the file named by the SHA-256 of the cache version, the
 * machine and json.dumps(seccomp) holds "<flags>\n" and the sock_filter program. Python
 * writes it only after the profile validated and compiled, so a hit is a valid profile;
 * a miss (the first container with a profile) is Python's work. */
static void cached_seccomp(struct plan *pl, const jv_t *seccomp) {
  struct utsname u;
  NEED(uname(&u) == 0);
  buf_t key = {0};
  buf_puts(&key, "pyrt-seccomp-cache 2\n"); /* translate._SECCOMP_CACHE_VERSION */
  buf_puts(&key, u.machine);
  buf_puts(&key, "\n");
  buf_json_spaced(&key, seccomp);
  NEED(!key.bad);
  char hex[65];
  sha256_hex(key.p, key.len, hex);
  size_t len;
  char *data = read_file(xprintf("%s/.seccomp-cache/%s.bpf", pl->root, hex), &len);
  NEED(data != NULL);
  char *nl = memchr(data, '\n', len);
  NEED(nl != NULL && nl > data && nl - data < 10);
  for (char *c = data; c < nl; c++) NEED(*c >= '0' && *c <= '9');
  size_t prog = len - (size_t)(nl + 1 - data);
  NEED(prog > 0 && prog % 8 == 0);
  pl->sc.seccomp_flags = (unsigned)atoi(data);
  pl->sc.seccomp_bpf = (unsigned char *)nl + 1;
  pl->sc.seccomp_len = prog;
}

/* validate_spec + to_spawn_config, or delegate */
static void check_spec(struct plan *pl) {
  const jv_t *spec = pl->spec, *v;
  pyrt_spawn_config_t *sc = &pl->sc;
  NEED(spec->t == J_OBJ);
  v = jget(spec, "ociVersion");
  NEED(is_str(v) && version_ok(v->str));

  const jv_t *root = jget(spec, "root");
  NEED(root != NULL && root->t == J_OBJ);
  v = jget(root, "path");
  NEED(is_str(v) && v->str[0] != '\0');
  char *full = path_join(pl->bundle_abs, v->str);
  struct stat st;
  NEED(stat(full, &st) == 0 && S_ISDIR(st.st_mode));
  pl->rootfs_rec = normpath(full);
  char real[PATH_MAX];
  NEED(realpath(full, real) != NULL);
  pl->rootfs_real = xstrdup(real);
  if ((v = jget(root, "readonly")) != NULL) NEED(is_bool(v));
  sc->rootfs_readonly = truth(v);

  const jv_t *lx = jget(spec, "linux");
  static const jv_t EMPTY = {.t = J_OBJ};
  if (lx == NULL) lx = &EMPTY;
  NEED(lx->t == J_OBJ);
  if (!jnone(v = jget(lx, "namespaces"))) {
    NEED(v->t == J_ARR);
    int seen = 0;
    const char *join_path[sizeof NS_NAMES / sizeof NS_NAMES[0]] = {0};
    for (size_t i = 0; i < v->n; i++) {
      const jv_t *ns = &v->items[i], *type = jget(ns, "type"), *path = jget(ns, "path");
      NEED(ns->t == J_OBJ && is_str(type));
      int k = INDEX(type->str, NS_NAMES);
      NEED(k >= 0 && !(seen & NS_FLAGS[k]) && NS_FLAGS[k] != CLONE_NEWUSER);
      seen |= NS_FLAGS[k];
      if (jnone(path) || (is_str(path) && path->str[0] == '\0')) {
        pl->new_ns |= NS_FLAGS[k];
        continue;
      }
      /* a namespace joined by path (spec._validate_namespaces: absolute and there);
       * joining the user, mount or time namespace is Python's */
      NEED(is_abspath(path) && NS_FLAGS[k] != CLONE_NEWNS && NS_FLAGS[k] != CLONE_NEWTIME);
      struct stat nst;
      NEED(stat(path->str, &nst) == 0);
      join_path[k] = path->str;
    }
    /* translate.JOIN_ORDER, without user, time and mount: ipc, uts, network, pid, cgroup */
    static const int ORDER[] = {CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWPID,
                                CLONE_NEWCGROUP};
    sc->join = xcalloc(sizeof ORDER / sizeof ORDER[0], sizeof *sc->join);
    for (size_t o = 0; o < sizeof ORDER / sizeof ORDER[0]; o++)
      for (size_t k = 0; k < sizeof NS_NAMES / sizeof NS_NAMES[0]; k++)
        if (NS_FLAGS[k] == ORDER[o] && join_path[k] != NULL)
          sc->join[sc->n_join++] = (pyrt_nsjoin_t){ORDER[o], (char *)join_path[k]};
  }
  sc->new_ns = pl->new_ns;

  check_process(pl, jget(spec, "process"));
  if (sc->terminal) NEED(pl->console != NULL);
  else NEED(pl->console == NULL);

  static const char *const NAMES[] = {"hostname", "domainname"};
  for (int i = 0; i < 2; i++) {
    v = jget(spec, NAMES[i]);
    if (jnone(v)) continue;
    NEED(is_str(v));
    if (v->str[0] == '\0') continue;
    NEED(pl->new_ns & CLONE_NEWUTS);
    if (i == 0) sc->hostname = v->str;
    else sc->domainname = v->str;
  }

  v = jget(spec, "hooks");
  NEED(jnone(v) || (v->t == J_OBJ && v->n == 0)); /* hooks: Python */
  if (!jnone(v = jget(spec, "annotations"))) {
    NEED(v->t == J_OBJ);
    for (size_t i = 0; i < v->n; i++) NEED(v->items[i].t == J_STR);
  }

  /* linux */
  static const char *const MAPS[] = {"uidMappings", "gidMappings"};
  for (int i = 0; i < 2; i++) {
    v = jget(lx, MAPS[i]);
    NEED(jnone(v) || (v->t == J_ARR && v->n == 0));
  }
  if (!jnone(v = jget(lx, "sysctl"))) {
    NEED(v->t == J_OBJ);
    sc->sysctl_keys = xcalloc(v->n, sizeof(char *));
    sc->sysctl_values = xcalloc(v->n, sizeof(char *));
    for (size_t i = 0; i < v->n; i++) {
      NEED(v->items[i].t == J_STR);
      int ns = sysctl_ns(v->keys[i]);
      NEED(ns >= 0 && (pl->new_ns & ns));
      sc->sysctl_keys[i] = v->keys[i];
      sc->sysctl_values[i] = v->items[i].str;
    }
    sc->n_sysctl = v->n;
  }
  check_devices(pl, jget(lx, "devices"));
  sc->masked_paths = str_array(jget(lx, "maskedPaths"), &sc->n_masked);
  sc->readonly_paths = str_array(jget(lx, "readonlyPaths"), &sc->n_readonly);
  sc->rootfs_propagation = MS_SLAVE | MS_REC;
  v = jget(lx, "rootfsPropagation");
  if (!jnone(v) && !(is_str(v) && v->str[0] == '\0')) {
    NEED(is_str(v));
    int k = INDEX(v->str, PROPAGATIONS);
    NEED(k >= 0);
    sc->rootfs_propagation = PROPAGATION_FLAGS[k];
  }
  const jv_t *cgpath = jget(lx, "cgroupsPath");
  if (!jnone(cgpath)) NEED(is_str(cgpath));
  NEED(jnone(v = jget(lx, "mountLabel")) || is_str(v));
  if (!jnone(v = jget(lx, "seccomp"))) cached_seccomp(pl, v);
  NEED(jnone(jget(lx, "timeOffsets")) && jnone(jget(lx, "personality")) &&
       jnone(jget(lx, "intelRdt")));
  /* a pure cgroup v2 host: V2Manager, Python's */
  NEED(access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0);
  open_cgroup(&pl->cg, cgpath, pl->id);
  NEED(cg_dir(&pl->cg, "freezer") != NULL); /* the fast lines need it */
  const jv_t *res = jget(lx, "resources");
  if (!jnone(res)) NEED(res->t == J_OBJ);
  check_resources(pl, lx, res);
  check_mounts(pl, jget(spec, "mounts"));

  sc->rootfs = pl->rootfs_real;
  sc->no_pivot = pl->no_pivot;
  sc->preserve_fds = pl->preserve_fds;
  sc->console_fd = -1;
  sc->stdio[0] = sc->stdio[1] = sc->stdio[2] = -1;
  /* the v1 directories the init joins itself (through "tasks": see pyrt_spawn_config_t),
   * the hybrid host's v2 one it is cloned into */
  sc->cgroup_self = xcalloc((size_t)pl->cg.ndirs + 1, sizeof(char *));
  for (int k = 0; k < pl->cg.ndirs; k++) {
    if (pl->cg.unified != NULL && strcmp(pl->cg.dirs[k], pl->cg.unified) == 0)
      sc->cgroup_into = pl->cg.dirs[k];
    else
      sc->cgroup_self[sc->n_cgroup_self++] = xprintf("%s/tasks", pl->cg.dirs[k]);
  }
}

/* ---- state files ----------------------------------------------------------------------- */

static char *now_rfc3339(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char head[64];
  strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
  return xprintf("%s.%06ld000Z", head, ts.tv_nsec / 1000);
}

static long long pid_start_time(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  char *data = read_file(path, NULL);
  if (data == NULL) return -1;
  char *rp = strrchr(data, ')');
  long long v = -1;
  if (rp != NULL) {
    char *save = NULL, *tok = strtok_r(rp + 1, " \n", &save);
    for (int idx = 0; tok != NULL && idx < 19; idx++) tok = strtok_r(NULL, " \n", &save);
    if (tok != NULL) v = strtoll(tok, NULL, 10);
  }
  free(data);
  return v;
}

struct record {
  const char *created;
  pid_t pid;
  long long pid_start; /* -1: null */
  const char *status;
};

/* state.json: json_dumps(record, separators=(",", ":")) with Runtime.create's keys */
static void record_json(buf_t *b, const struct plan *pl, const struct record *r) {
  const jv_t *ver = jget(pl->spec, "ociVersion"), *ann = jget(pl->spec, "annotations");
  buf_puts(b, "{\"ociVersion\":");
  buf_jstr(b, ver->str);
  buf_puts(b, ",\"id\":");
  buf_jstr(b, pl->id);
  buf_printf(b, ",\"status\":\"%s\",\"pid\":%d,\"pid_start\":", r->status, (int)r->pid);
  if (r->pid_start < 0) buf_puts(b, "null");
  else buf_printf(b, "%lld", r->pid_start);
  buf_puts(b, ",\"bundle\":");
  buf_jstr(b, pl->bundle_abs);
  buf_puts(b, ",\"rootfs\":");
  buf_jstr(b, pl->rootfs_rec);
  buf_puts(b, ",\"annotations\":");
  if (jnone(ann) || ann->n == 0) buf_puts(b, "{}");
  else buf_json(b, ann);
  buf_puts(b, ",\"created\":");
  buf_jstr(b, r->created);
  buf_puts(b, ",\"owner\":\"\",\"cgroup\":{\"kind\":\"v1\",\"paths\":{");
  for (int i = 0; i < pl->cg.n; i++) {
    if (i) buf_puts(b, ",");
    buf_jstr(b, pl->cg.ctrl[i]);
    buf_puts(b, ":");
    buf_jstr(b, pl->cg.path[i]);
  }
  buf_puts(b, "},\"unified\":");
  if (pl->cg.unified) buf_jstr(b, pl->cg.unified);
  else buf_puts(b, "null");
  buf_puts(b, ",\"unified_mount\":");
  if (pl->cg.unified_mount) buf_jstr(b, pl->cg.unified_mount);
  else buf_puts(b, "null");
  buf_puts(b, "},\"config\":");
  buf_json(b, pl->spec);
  buf_puts(b, "}");
}

/* the fast lines (state.fast_state_text) of a created container's state.json */
static void fast_text(buf_t *b, const struct plan *pl, const struct record *r) {
  const jv_t *ver = jget(pl->spec, "ociVersion"), *ann = jget(pl->spec, "annotations");
  buf_t head = {0}, tail = {0};
  buf_puts(&head, "{\n  \"ociVersion\": ");
  buf_jstr(&head, ver->str);
  buf_puts(&head, ",\n  \"id\": ");
  buf_jstr(&head, pl->id);
  buf_puts(&head, ",\n  \"pid\": ");
  buf_puts(&tail, ",\n  \"bundle\": ");
  buf_jstr(&tail, pl->bundle_abs);
  buf_puts(&tail, ",\n  \"rootfs\": ");
  buf_jstr(&tail, pl->rootfs_rec);
  buf_puts(&tail, ",\n  \"created\": ");
  buf_jstr(&tail, r->created);
  buf_puts(&tail, ",\n  \"owner\": \"\"");
  if (!jnone(ann) && ann->n > 0) {
    buf_puts(&tail, ",\n  \"annotations\": {");
    for (size_t i = 0; i < ann->n; i++) {
      buf_puts(&tail, i ? ",\n    " : "\n    ");
      buf_jstr(&tail, ann->keys[i]);
      buf_puts(&tail, ": ");
      buf_jstr(&tail, ann->items[i].str);
    }
    buf_puts(&tail, "\n  }");
  }
  buf_puts(&tail, "\n}");
  NEED(!head.bad && !tail.bad);
  buf_printf(b, "pyrt-fast 1\nusable 1\ncreating 0\npid %d\n", (int)r->pid);
  if (r->pid_start < 0) buf_puts(b, "start -\n");
  else buf_printf(b, "start %lld\n", r->pid_start);
  buf_puts(b, "poststart 0\npoststop 0\nfreezer v1 ");
  buf_puts(b, cg_dir(&pl->cg, "freezer"));
  buf_printf(b, "/freezer.state\ncgroups %d\n", pl->cg.ndirs);
  for (int k = 0; k < pl->cg.ndirs; k++) {
    buf_puts(b, pl->cg.dirs[k]);
    buf_puts(b, "\n");
  }
  buf_printf(b, "head %zu\n", head.len);
  buf_add(b, head.p, head.len);
  buf_printf(b, "\ntail %zu\n", tail.len);
  buf_add(b, tail.p, tail.len);
  buf_puts(b, "\n");
}

/* what ContainerDir.write writes: the record's line, then the fast lines (none while
 * creating) */
static void state_text(buf_t *b, const struct plan *pl, const struct record *r) {
  record_json(b, pl, r);
  buf_puts(b, "\n");
  if (strcmp(r->status, "creating") != 0) fast_text(b, pl, r);
}

/* state.json, whole (through a temp file and rename) */
static int write_state(const char *cdir, const struct plan *pl, const struct record *r) {
  buf_t b = {0};
  state_text(&b, pl, r);
  if (b.bad || atomic_write(cdir, "state.json", b.p, b.len, 0600) < 0) return -1;
  free(b.p);
  return 0;
}

/* The created record, appended to the creating one's state.json instead of a new file (a
 * new inode; see state.py): a reader sees the creating record until the created one's
 * line is whole, and the C front end delegates until the fast lines are. */
static int append_state(const char *cdir, const struct plan *pl, const struct record *r) {
  buf_t b = {0};
  state_text(&b, pl, r);
  if (b.bad) return -1;
  char *path = path_join(cdir, "state.json");
  int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  free(path);
  if (fd < 0) return -1;
  size_t off = 0;
  while (off < b.len) {
    ssize_t w = write(fd, b.p + off, b.len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  free(b.p);
  return close(fd) == 0 && off == b.len ? 0 : -1;
}

/* ---- the command ----------------------------------------------------------------------- */

/* runc's create/run flags as pyrt.runtime.cli parses them; anything else delegates */
static void parse_flags(struct plan *pl, int argc, char **argv) {
  int done = 0;
  pl->bundle = ".";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!done && strcmp(a, "--") == 0) {
      done = 1;
      continue;
    }
    if (done || a[0] != '-' || strcmp(a, "-") == 0) {
      NEED(pl->id == NULL);
      pl->id = a;
      continue;
    }
    const char **str_dest = NULL;
    if ((v = flag(a, "bundle")) != NOMATCH || (v = flag(a, "b")) != NOMATCH)
      str_dest = &pl->bundle;
    else if ((v = flag(a, "console-socket")) != NOMATCH)
      str_dest = &pl->console;
    else if ((v = flag(a, "pid-file")) != NOMATCH)
      str_dest = &pl->pid_file;
    if (str_dest != NULL || (v = flag(a, "preserve-fds")) != NOMATCH) {
      if (v == NULL) {
        NEED(i + 1 < argc);
        v = argv[++i];
      }
      if (str_dest != NULL) {
        *str_dest = v;
      } else {
        NEED(v[0] != '\0' && strspn(v, "0123456789") == strlen(v) && strlen(v) < 7);
        pl->preserve_fds = atoi(v);
      }
      continue;
    }
    int *bool_dest = NULL, ignored = 0;
    if ((v = flag(a, "no-pivot")) != NOMATCH) bool_dest = &pl->no_pivot;
    else if ((v = flag(a, "no-new-keyring")) != NOMATCH) bool_dest = &ignored;
    else if (pl->run && ((v = flag(a, "detach")) != NOMATCH || (v = flag(a, "d")) != NOMATCH))
      bool_dest = &pl->detach;
    else if (pl->run && (v = flag(a, "keep")) != NOMATCH) bool_dest = &pl->keep;
    else if (pl->run && (v = flag(a, "no-subreaper")) != NOMATCH) bool_dest = &ignored;
    NEED(bool_dest != NULL); /* unknown flag, -h: Python */
    if (v == NULL || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "t") == 0)
      *bool_dest = 1;
    else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "f") == 0)
      *bool_dest = 0;
    else
      refuse(__LINE__);
  }
  NEED(pl->id != NULL && id_ok(pl->id));
}

/* what Runtime.create undoes on failure: the child, the cgroup, the state directory */
struct undo {
  const char *cdir;
  int lockfd;
  const struct cg *cg;
  pid_t pid;
  int console;
};

static void undo_and_delegate_at(struct undo *u, int line) __attribute__((noreturn));
#define undo_and_delegate(u) undo_and_delegate_at(u, __LINE__)
static void undo_and_delegate_at(struct undo *u, int line) {
  if (u->pid > 0) {
    kill(u->pid, SIGKILL);
    while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
      ;
  }
  if (u->console >= 0) close(u->console);
  if (u->cg) cg_destroy(u->cg);
  remove_dir(u->cdir, 0);
  if (u->lockfd >= 0) {
    flock(u->lockfd, LOCK_UN);
    close(u->lockfd);
  }
  give_up(line);
}

/* _Plan.check_files, then run: every file must exist before anything is written */
static int write_cgroup_rules(const struct plan *pl) {
  for (size_t i = 0; i < pl->n_writes; i++)
    if (access(pl->wpath[i], F_OK) != 0) return -1;
  pyrt_error_t err;
  return pyrt_cgroup_write_many((const char *const *)pl->wpath, (const char *const *)pl->wvalue,
                                pl->n_writes, &err);
}

static int connect_console(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) return -1;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* the pid file, written as Runtime._write_pid_file does: into it when it is a fifo or a
 * pipe (/proc/self/fd/N: pyrt-shim's), else through a temp file and rename */
static int write_pid_file(const char *path, pid_t pid) {
  char *abs = abspath(path);
  char text[24];
  int n = snprintf(text, sizeof text, "%d", (int)pid);
  struct stat st;
  if (stat(abs, &st) == 0 && S_ISFIFO(st.st_mode)) {
    int fd = open(abs, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    int ok = fd >= 0 && write(fd, text, (size_t)n) == n;
    if (fd >= 0) close(fd);
    return ok ? 0 : -1;
  }
  char *slash = strrchr(abs, '/');
  char *dir = slash == abs ? xstrdup("/") : xprintf("%.*s", (int)(slash - abs), abs);
  return atomic_write(dir, slash + 1, text, (size_t)n, 0644);
}

/* ---- run: start, wait, delete (Runtime.run) -------------------------------------------- */

static volatile sig_atomic_t g_fwd_pid;
static void forward(int sig) {
  if (g_fwd_pid > 0) kill((pid_t)g_fwd_pid, sig);
}

/* Runtime.start for a container this process just created: the fifo's byte, or the
 * init's exit. 0, or -1 when the init exited first. */
static int start_created(const char *cdir, pid_t pid) {
  char *fifo = xprintf("%s/exec.fifo", cdir);
  int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0 || pidfd < 0) return -1;
  for (;;) {
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    int n = poll(pf, 2, 50);
    if (n < 0 && errno != EINTR) return -1;
    if (n > 0 && (pf[0].revents & (POLLIN | POLLHUP))) {
      char b;
      if (read(fd, &b, 1) == 1) break;
    }
    if (n > 0 && (pf[1].revents & POLLIN)) return -1;
  }
  close(fd);
  close(pidfd);
  unlink(fifo);
  return 0;
}

static int exit_status(int st) {
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 255;
}

int cmd_create_native(const char *root_arg, int argc, char **argv, int run) {
  struct plan pl;
  memset(&pl, 0, sizeof pl);
  pl.run = run;
  parse_flags(&pl, argc, argv);
  if (run && !pl.detach) {
    /* cli._Forwarder: installed before anything else, as cmd_run does */
    static const int SIGS[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    for (size_t i = 0; i < sizeof SIGS / sizeof SIGS[0]; i++) sigaction(SIGS[i], &sa, NULL);
  }
  char *root = abspath(root_arg);
  pl.root = root;
  pl.bundle_abs = abspath(pl.bundle);
  char *cfg_path = path_join(pl.bundle_abs, "config.json");
  size_t len;
  char *text = read_file(cfg_path, &len);
  NEED(text != NULL);
  pl.spec = json_parse(text, len);
  NEED(pl.spec != NULL);
  check_spec(&pl);
  NEED(!pl.warnings.bad);
  if (pl.console != NULL) NEED(strlen(pl.console) < sizeof(((struct sockaddr_un *)0)->sun_path));

  /* side effects from here on */
  struct undo u = {.cdir = NULL, .lockfd = -1, .cg = NULL, .pid = 0, .console = -1};
  char *cdir = path_join(root, pl.id);
  {
    /* os.makedirs(root, 0o700, exist_ok=True): missing parents get 0777 (less the umask) */
    char *p = xstrdup(root);
    for (char *s = p + 1;; s++) {
      if (*s == '/' || *s == '\0') {
        char c = *s;
        *s = '\0';
        if (mkdir(p, c == '\0' ? 0700 : 0777) < 0 && errno != EEXIST) refuse(__LINE__);
        *s = c;
        if (c == '\0') break;
      }
    }
  }
  if (mkdir(cdir, 0711) < 0) refuse(__LINE__); /* exists: Python's Conflict */
  u.cdir = cdir;
  u.lockfd = open(cdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (u.lockfd < 0 || flock(u.lockfd, LOCK_EX) < 0) undo_and_delegate(&u);

  struct record rec = {now_rfc3339(), 0, -1, "creating"};
  if (write_state(cdir, &pl, &rec) < 0) undo_and_delegate(&u);
  u.cg = &pl.cg;
  if (cg_create(&pl.cg) < 0 || write_cgroup_rules(&pl) < 0) undo_and_delegate(&u);
  char *fifo = xprintf("%s/exec.fifo", cdir);
  if (mkfifo(fifo, 0622) < 0 || chmod(fifo, 0622) < 0) undo_and_delegate(&u);
  pl.sc.exec_fifo = fifo;
  if (pl.console != NULL) {
    if ((u.console = connect_console(pl.console)) < 0) undo_and_delegate(&u);
    pl.sc.console_fd = u.console;
  }
  pyrt_error_t err;
  pyrt_error_clear(&err);
  pid_t pid = pyrt_spawn(&pl.sc, NULL, NULL, &err);
  if (pid < 0) undo_and_delegate(&u);
  u.pid = pid;
  if (u.console >= 0) {
    close(u.console);
    u.console = -1;
  }
  rec.pid = pid;
  rec.pid_start = pid_start_time(pid);
  rec.status = "created";
  if (append_state(cdir, &pl, &rec) < 0) undo_and_delegate(&u);
  if (pl.pid_file != NULL && write_pid_file(pl.pid_file, pid) < 0) undo_and_delegate(&u);
  flock(u.lockfd, LOCK_UN);
  close(u.lockfd);
  if (pl.warnings.len) fputs(pl.warnings.p, stderr);
  if (!run) return 0;

  /* run: start (the record becomes "running"), then wait and delete unless asked not to */
  if (start_created(cdir, pid) < 0) {
    /* the init died before its program ran: nothing of the container has been seen;
     * undo it all and let Python run it (and say what goes wrong) */
    u.lockfd = -1;
    undo_and_delegate(&u);
  }
  rec.status = "running";
  if (write_state(cdir, &pl, &rec) < 0) {
    int e = errno ? errno : EIO;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    cg_destroy(&pl.cg);
    remove_dir(cdir, 0);
    fprintf(stderr, "pyrt-runc: container '%s': cannot update state.json: %s\n", pl.id,
            strerror(e));
    return 1;
  }
  if (pl.detach) return 0;
  g_fwd_pid = pid;
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 1;
  g_fwd_pid = 0;
  if (!pl.keep) {
    int lockfd = open(cdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lockfd >= 0) flock(lockfd, LOCK_EX);
    for (int k = 0; k < pl.cg.ndirs; k++)
      if (remove_tree(pl.cg.dirs[k], 0) < 0)
        fprintf(stderr, "warning: container '%s': cgroup: cannot remove %s: %s\n", pl.id,
                pl.cg.dirs[k], strerror(errno));
    remove_dir(cdir, 0);
    if (lockfd >= 0) close(lockfd);
  }
  return exit_status(st);
}
