/* pyrt-runc: the C front end of pyrt's runc-compatible command line.
 *
 * Why this duplicates some of pyrt/runtime/cli.py and runtime.py: containerd, podman
 * and the benchmarks run one pyrt-runc process per lifecycle step (create, start, state,
 * kill, delete). A Python process costs ~15 ms before it runs a line of ours and ~10 ms
 * more to import the runtime; runc does a whole container in ~56 ms. So the hot, simple
 * commands are answered here, natively, from the fast lines of <root>/<id>/state.json
 * (pyrt.runtime.state.fast_state_text, after the record's line; ContainerDir.write):
 *
 *   state             the live status (created / running / paused / stopped)
 *   start             open exec.fifo, take the byte, mark the record running
 *   kill ID [SIG]     one signal to the init (not --all)
 *   delete [-f] ID    a stopped container without poststop hooks
 *   create, run       natively for the specs create.c fully understands (see there);
 *                     the rest is delegated before any side effect
 *
 * Everything else -- every other command, every flag this file does not know, every
 * error, every case that is not the plain one (a container still creating, hooks, a
 * state.json without those lines or marked unusable) -- is handed to the Python implementation by exec'ing
 * `<dir of this binary>/python3 -P -c "...cli.main()" <same argv>`. Errors are therefore
 * always reported by Python, with the same text and exit status; this file only ever
 * succeeds or delegates (one exception: `run` reports a state.json it cannot rewrite after
 * the container has started, as `start` below does). The status rules are runtime.py's: "stopped" when the pid is
 * gone, a zombie, or another process (start time, /proc/<pid>/stat field 22, differs);
 * "created" while exec.fifo exists; "paused" when the freezer says FROZEN.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "runc.h"

#define DEFAULT_ROOT "/run/pyrt-runc"
#define MAX_CGROUPS 64

char **g_argv;

/* ---- delegation to the Python CLI ------------------------------------------------------ */

static const char PY_MAIN[] = "import sys\nfrom pyrt.runtime.cli import main\nsys.exit(main())";

/* The fast start (python -P -S): no site module, so no .pth files and no site-packages
 * scan; argv[1] is the venv's site-packages, which this puts on sys.path itself. If pyrt
 * cannot be imported from there (an editable install through a .pth file, say), site runs
 * after all and the import is tried again. */
static const char PY_MAIN_FAST[] =
    "import sys\n"
    "sys.path.append(sys.argv.pop(1))\n"
    "try:\n"
    "    from pyrt.runtime.cli import main\n"
    "except ImportError:\n"
    "    import site\n"
    "    site.main()\n"
    "    from pyrt.runtime.cli import main\n"
    "sys.exit(main())";

/* <prefix>/lib/pythonX.Y/site-packages of the venv this binary is installed in, when the
 * fast start can be used: the interpreter is the venv's own (not PYRT_RUNC_PYTHON), the
 * venv does not include the system site-packages (which only site would add), and pyrt is
 * installed right there. 0 on success, -1 to start Python the usual way. */
static int fast_site_packages(const char *bindir, char *out, size_t n) {
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/../pyvenv.cfg", bindir) >= sizeof path) return -1;
  FILE *f = fopen(path, "re");
  if (f == NULL) return -1;
  char line[512];
  int major = -1, minor = -1, system_site = 1;
  while (fgets(line, sizeof line, f) != NULL) {
    char key[64], val[256];
    if (sscanf(line, " %63[^= \t] = %255s", key, val) != 2) continue;
    if (strcmp(key, "include-system-site-packages") == 0)
      system_site = strcasecmp(val, "false") != 0;
    else if (strcmp(key, "version") == 0 || strcmp(key, "version_info") == 0)
      if (sscanf(val, "%d.%d", &major, &minor) != 2) major = minor = -1;
  }
  fclose(f);
  if (system_site || major < 3 || minor < 0) return -1;
  char prefix[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/..", bindir) >= sizeof path ||
      realpath(path, prefix) == NULL)
    return -1;
  if ((size_t)snprintf(out, n, "%s/lib/python%d.%d/site-packages", prefix, major, minor) >= n ||
      (size_t)snprintf(path, sizeof path, "%s/pyrt/runtime/cli.py", out) >= sizeof path ||
      access(path, R_OK) != 0)
    return -1;
  return 0;
}

/* The interpreter to delegate to; *fast set when fast_site_packages found `site`. */
static int find_python(char *out, size_t n, char *site, size_t site_n, int *fast) {
  *fast = 0;
  const char *env = getenv("PYRT_RUNC_PYTHON");
  if (env != NULL && env[0] != '\0') {
    if (strlen(env) >= n) return -1;
    strcpy(out, env);
    return 0;
  }
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return -1;
  self[len] = '\0';
  char *slash = strrchr(self, '/');
  if (slash == NULL) return -1;
  *slash = '\0';
  static const char *const names[] = {"python3", "python"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if ((size_t)snprintf(out, n, "%s/%s", self, names[i]) >= n) return -1;
    if (access(out, X_OK) == 0) {
      *fast = getenv("PYRT_RUNC_SLOW_START") == NULL &&
              fast_site_packages(self, site, site_n) == 0;
      return 0;
    }
  }
  return -1;
}

void delegate(void) {
  char py[PATH_MAX], site[PATH_MAX];
  int fast;
  if (find_python(py, sizeof py, site, sizeof site, &fast) < 0) {
    fprintf(stderr, "pyrt-runc: cannot find the Python interpreter next to %s "
                    "(set PYRT_RUNC_PYTHON)\n", g_argv[0]);
    exit(1);
  }
  int argc = 0;
  while (g_argv[argc] != NULL) argc++;
  char **av = calloc((size_t)argc + 7, sizeof *av);
  if (av == NULL) exit(1);
  int k = 0;
  av[k++] = py;
  av[k++] = "-P";
  if (fast) av[k++] = "-S";
  av[k++] = "-c";
  av[k++] = (char *)(fast ? PY_MAIN_FAST : PY_MAIN);
  if (fast) av[k++] = site;
  for (int i = 1; i < argc; i++) av[k++] = g_argv[i];
  av[k] = NULL;
  fflush(stdout);
  execv(py, av);
  fprintf(stderr, "pyrt-runc: exec %s: %s\n", py, strerror(errno));
  exit(1);
}

/* ---- small helpers --------------------------------------------------------------------- */

int id_ok(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 1024) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return 0;
  }
  return 1;
}

/* Reads a whole (small) file; NULL on error. *len gets the size. */
char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  while (buf != NULL) {
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (nb == NULL) break;
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == 0) {
      close(fd);
      buf[n] = '\0';
      if (len != NULL) *len = n;
      return buf;
    }
    n += (size_t)r;
  }
  free(buf);
  close(fd);
  return NULL;
}

/* Writes data to path through a temp file and rename (as state.atomic_write, no fsync). */
int atomic_write(const char *dir, const char *name, const char *data, size_t len,
                        mode_t mode) {
  char tmp[PATH_MAX], dst[PATH_MAX];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s/.%s.%d.tmp", dir, name, (int)getpid()) >= sizeof tmp ||
      (size_t)snprintf(dst, sizeof dst, "%s/%s", dir, name) >= sizeof dst)
    return -1;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      close(fd);
      unlink(tmp);
      return -1;
    }
    off += (size_t)w;
  }
  if (close(fd) < 0 || rename(tmp, dst) < 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* ---- the fast lines of state.json ------------------------------------------------------ */

struct fast {
  int creating;
  long pid;
  long long start; /* -1: unknown */
  int poststart, poststop;
  int freezer_kind; /* 0 none, 1 v1 (freezer.state file), 2 v2 (cgroup dir) */
  char *freezer;
  int ncg;
  char *cg[MAX_CGROUPS];
  const char *head, *tail;
  size_t head_len, tail_len;
  char *buf;
};

static char *next_line(char **p, char *end) {
  char *s = *p;
  if (s >= end) return NULL;
  char *nl = memchr(s, '\n', (size_t)(end - s));
  if (nl == NULL) return NULL;
  *nl = '\0';
  *p = nl + 1;
  return s;
}

/* 0 on success; -1 when the file is missing, malformed, marked unusable, or has no fast
 * lines, or not whole (a record still creating, one being appended, or one an older pyrt
 * wrote). The record lines before them are skipped, not read. */
static int read_fast(const char *cdir, struct fast *f) {
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/state.json", cdir) >= sizeof path) return -1;
  size_t len;
  char *buf = read_file(path, &len);
  if (buf == NULL) return -1;
  memset(f, 0, sizeof *f);
  f->buf = buf;
  char *p = buf, *end = buf + len, *l;
  long long v;
  char word[32];
  while (p < end && *p == '{') /* the record lines (a create's: creating, then created) */
    if (next_line(&p, end) == NULL) return -1;
  if ((l = next_line(&p, end)) == NULL || strcmp(l, "pyrt-fast 1") != 0) return -1;
  if ((l = next_line(&p, end)) == NULL || strcmp(l, "usable 1") != 0) return -1;
  if ((l = next_line(&p, end)) == NULL || sscanf(l, "creating %d", &f->creating) != 1) return -1;
  if ((l = next_line(&p, end)) == NULL || sscanf(l, "pid %ld", &f->pid) != 1) return -1;
  if ((l = next_line(&p, end)) == NULL) return -1;
  if (strcmp(l, "start -") == 0)
    f->start = -1;
  else if (sscanf(l, "start %lld", &v) == 1)
    f->start = v;
  else
    return -1;
  if ((l = next_line(&p, end)) == NULL || sscanf(l, "poststart %d", &f->poststart) != 1)
    return -1;
  if ((l = next_line(&p, end)) == NULL || sscanf(l, "poststop %d", &f->poststop) != 1)
    return -1;
  if ((l = next_line(&p, end)) == NULL || strncmp(l, "freezer ", 8) != 0) return -1;
  if (strcmp(l + 8, "none") == 0)
    f->freezer_kind = 0;
  else if (strncmp(l + 8, "v1 ", 3) == 0)
    f->freezer_kind = 1, f->freezer = l + 11;
  else if (strncmp(l + 8, "v2 ", 3) == 0)
    f->freezer_kind = 2, f->freezer = l + 11;
  else
    return -1;
  if ((l = next_line(&p, end)) == NULL || sscanf(l, "cgroups %d", &f->ncg) != 1 || f->ncg < 0 ||
      f->ncg > MAX_CGROUPS)
    return -1;
  for (int i = 0; i < f->ncg; i++)
    if ((f->cg[i] = next_line(&p, end)) == NULL || f->cg[i][0] != '/') return -1;
  for (int part = 0; part < 2; part++) {
    unsigned long n;
    if ((l = next_line(&p, end)) == NULL) return -1;
    if (sscanf(l, "%31s %lu", word, &n) != 2 || strcmp(word, part ? "tail" : "head") != 0 ||
        n > (unsigned long)(end - p) || p[n] != '\n')
      return -1;
    if (part) f->tail = p, f->tail_len = n;
    else f->head = p, f->head_len = n;
    p += n + 1;
  }
  return 0;
}

/* ---- live status ----------------------------------------------------------------------- */

/* 1 if pid is alive, not a zombie, and (start >= 0) started at `start`. */
int process_alive(long pid, long long start) {
  if (pid <= 0) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  char *data = read_file(path, NULL);
  if (data == NULL) return 0;
  char *rp = strrchr(data, ')');
  int alive = 0;
  if (rp != NULL && rp[1] == ' ') {
    /* fields after the command: [0] state (field 3) ... [19] starttime (field 22) */
    char *save = NULL, *tok = strtok_r(rp + 2, " \n", &save);
    char state = tok ? tok[0] : 'X';
    int idx = 0;
    while (tok != NULL && idx < 19) {
      tok = strtok_r(NULL, " \n", &save);
      idx++;
    }
    if (tok != NULL && state != 'Z' && state != 'X' && state != 'x')
      alive = start < 0 || strtoll(tok, NULL, 10) == start;
  }
  free(data);
  return alive;
}

enum status { ST_CREATED, ST_RUNNING, ST_PAUSED, ST_STOPPED };
static const char *const STATUS_NAMES[] = {"created", "running", "paused", "stopped"};

/* The live status; delegates when Python would do anything but answer plainly. */
static enum status live_status(const char *cdir, const struct fast *f) {
  if (f->creating) delegate();
  if (!process_alive(f->pid, f->start)) return ST_STOPPED;
  char path[PATH_MAX + 64];
  struct stat st;
  snprintf(path, sizeof path, "%s/exec.fifo", cdir);
  if (stat(path, &st) == 0) return ST_CREATED;
  if (f->freezer_kind == 1) {
    char *s = read_file(f->freezer, NULL);
    int frozen = s != NULL && strcmp(s, "FROZEN\n") == 0;
    if (s != NULL && !frozen) {
      size_t n = strlen(s);
      while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
      frozen = strcmp(s, "FROZEN") == 0;
    }
    free(s);
    if (frozen) return ST_PAUSED;
  } else if (f->freezer_kind == 2) {
    if (stat(f->freezer, &st) != 0 || !S_ISDIR(st.st_mode)) delegate();
    snprintf(path, sizeof path, "%s/cgroup.events", f->freezer);
    char *s = read_file(path, NULL);
    int frozen = 0;
    for (char *line = s; line != NULL && *line;) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = '\0';
      long val;
      char key[64];
      if (sscanf(line, "%63s %ld", key, &val) == 2 && strcmp(key, "frozen") == 0)
        frozen = val == 1;
      line = nl ? nl + 1 : NULL;
    }
    free(s);
    if (frozen) return ST_PAUSED;
  }
  return ST_RUNNING;
}

/* ---- the container directory ----------------------------------------------------------- */

/* room for "<dir>/<file name>" */
#define SUBPATH_MAX (PATH_MAX + 64)

struct ctr {
  char dir[PATH_MAX];
  int lockfd;
  struct fast f;
};

/* Opens <root>/<id> and reads its fast lines; delegates on anything unexpected. */
static void load(const char *root, const char *id, struct ctr *c, int lock) {
  if (!id_ok(id)) delegate();
  if ((size_t)snprintf(c->dir, sizeof c->dir, "%s/%s", root, id) >= sizeof c->dir) delegate();
  c->lockfd = -1;
  if (lock) {
    c->lockfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->lockfd < 0 || flock(c->lockfd, LOCK_EX) < 0) delegate();
  }
  if (read_fast(c->dir, &c->f) < 0) {
    if (c->lockfd >= 0) close(c->lockfd);
    delegate();
  }
}

static void unlock_and_delegate(struct ctr *c) __attribute__((noreturn));
static void unlock_and_delegate(struct ctr *c) {
  if (c->lockfd >= 0) {
    flock(c->lockfd, LOCK_UN);
    close(c->lockfd);
  }
  delegate();
}

/* ---- commands -------------------------------------------------------------------------- */

static int cmd_state(const char *root, const char *id) {
  struct ctr c;
  load(root, id, &c, 0);
  enum status s = live_status(c.dir, &c.f);
  fwrite(c.f.head, 1, c.f.head_len, stdout);
  printf("%ld,\n  \"status\": \"%s\"", s == ST_STOPPED ? 0L : c.f.pid, STATUS_NAMES[s]);
  fwrite(c.f.tail, 1, c.f.tail_len, stdout);
  putchar('\n');
  return fflush(stdout) == 0 ? 0 : 1;
}

/* state.json: the record's "status":"created" becomes "status":"running", as
 * Runtime.start writes it. The needle follows the record's "id", which is plain ASCII; the
 * creating record before it (a native create's) and the fast lines after it (indented
 * JSON, `"id": "..."`) cannot hold it. */
static int mark_running(struct ctr *c, const char *id) {
  char path[SUBPATH_MAX];
  snprintf(path, sizeof path, "%s/state.json", c->dir);
  size_t len;
  char *data = read_file(path, &len);
  if (data == NULL) return -1;
  size_t nlen = strlen(id) + 40;
  char *needle = malloc(nlen);
  if (needle == NULL) return -1;
  snprintf(needle, nlen, "\"id\":\"%s\",\"status\":\"created\"", id);
  char *hit = strstr(data, needle);
  int rc = -1;
  if (hit != NULL) {
    memcpy(hit + strlen(needle) - strlen("created\""), "running\"", 8);
    rc = atomic_write(c->dir, "state.json", data, len, 0600);
  }
  free(needle);
  free(data);
  return rc;
}

static int cmd_start(const char *root, const char *id) {
  struct ctr c;
  load(root, id, &c, 1);
  if (c.f.poststart || live_status(c.dir, &c.f) != ST_CREATED) unlock_and_delegate(&c);
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)c.f.pid, 0);
  if (pidfd < 0 || !process_alive(c.f.pid, c.f.start)) unlock_and_delegate(&c);
  char fifo[SUBPATH_MAX];
  snprintf(fifo, sizeof fifo, "%s/exec.fifo", c.dir);
  int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) unlock_and_delegate(&c);
  /* wait for the init's byte, or for the init to exit (then Python says why) */
  for (;;) {
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    int n = poll(pf, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) unlock_and_delegate(&c);
    if (pf[0].revents & (POLLIN | POLLHUP)) {
      char b;
      ssize_t r = read(fd, &b, 1);
      if (r == 1) break;
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    }
    if (pf[1].revents & POLLIN) {
      close(fd);
      unlock_and_delegate(&c);
    }
    if (pf[0].revents & POLLHUP) {
      /* a writer came and went without a byte: wait for the next one or the exit */
      struct pollfd one = {.fd = pidfd, .events = POLLIN};
      if (poll(&one, 1, 5) == 1) {
        close(fd);
        unlock_and_delegate(&c);
      }
    }
  }
  close(fd);
  close(pidfd);
  unlink(fifo);
  if (mark_running(&c, id) < 0) {
    fprintf(stderr, "pyrt-runc: container '%s': cannot update state.json: %s\n", id,
            strerror(errno ? errno : EIO));
    return 1;
  }
  return 0;
}

static const struct { const char *name; int num; } SIGNALS[] = {
    {"ABRT", SIGABRT}, {"ALRM", SIGALRM},     {"BUS", SIGBUS},       {"CHLD", SIGCHLD},
    {"CLD", SIGCHLD},  {"CONT", SIGCONT},     {"FPE", SIGFPE},       {"HUP", SIGHUP},
    {"ILL", SIGILL},   {"INT", SIGINT},       {"IO", SIGIO},         {"IOT", SIGIOT},
    {"KILL", SIGKILL}, {"PIPE", SIGPIPE},     {"POLL", SIGPOLL},     {"PROF", SIGPROF},
    {"PWR", SIGPWR},   {"QUIT", SIGQUIT},     {"SEGV", SIGSEGV},     {"STKFLT", SIGSTKFLT},
    {"STOP", SIGSTOP}, {"SYS", SIGSYS},       {"TERM", SIGTERM},     {"TRAP", SIGTRAP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2},     {"VTALRM", SIGVTALRM}, {"WINCH", SIGWINCH},
    {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
};

/* The plain spellings of parse_signal: a number, or a standard name with or without SIG
 * (any case). Anything else (RTMIN+n, bad input) returns -1: Python handles it. */
static int parse_signal(const char *text) {
  size_t n = strlen(text);
  if (n == 0 || n > 16) return -1;
  if (strspn(text, "0123456789") == n) {
    long v = strtol(text, NULL, 10);
    return (v > 0 && v < 65) ? (int)v : -1;
  }
  char up[20];
  for (size_t i = 0; i <= n; i++)
    up[i] = (char)((text[i] >= 'a' && text[i] <= 'z') ? text[i] - 32 : text[i]);
  const char *name = strncmp(up, "SIG", 3) == 0 ? up + 3 : up;
  for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++)
    if (strcmp(name, SIGNALS[i].name) == 0) return SIGNALS[i].num;
  return -1;
}

static int cmd_kill(const char *root, const char *id, const char *sigtext) {
  int sig = parse_signal(sigtext);
  if (sig < 0) delegate();
  struct ctr c;
  load(root, id, &c, 0);
  if (live_status(c.dir, &c.f) == ST_STOPPED) delegate();
  if (kill((pid_t)c.f.pid, sig) < 0) delegate();
  return 0;
}

/* rmdir dir and every cgroup below it, deepest first; EBUSY is retried (50 x 20 ms) as the
 * C core's pyrt_cgroup_rmdir does. -1 leaves the rest to Python. */
int remove_tree(const char *dir, int depth) {
  if (depth > 32) return -1;
  DIR *d = opendir(dir);
  if (d == NULL) return errno == ENOENT ? 0 : -1;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    char sub[PATH_MAX];
    if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= sizeof sub) rc = -1;
    else rc = remove_tree(sub, depth + 1);
  }
  closedir(d);
  if (rc < 0) return -1;
  for (int i = 0; i < 50; i++) {
    if (rmdir(dir) == 0 || errno == ENOENT) return 0;
    if (errno != EBUSY) return -1;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

int remove_dir(const char *path, int depth) {
  if (depth > 8) return -1;
  DIR *d = opendir(path);
  if (d == NULL) return errno == ENOENT ? 0 : -1;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char sub[PATH_MAX];
    if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub) {
      rc = -1;
      continue;
    }
    if (e->d_type == DT_DIR) rc |= remove_dir(sub, depth + 1);
    else if (unlink(sub) < 0 && errno != ENOENT) rc = -1;
  }
  closedir(d);
  if (rmdir(path) < 0 && errno != ENOENT) rc = -1;
  return rc;
}

static int cmd_delete(const char *root, const char *id) {
  struct ctr c;
  load(root, id, &c, 1);
  if (c.f.poststop || live_status(c.dir, &c.f) != ST_STOPPED) unlock_and_delegate(&c);
  for (int i = 0; i < c.f.ncg; i++)
    if (remove_tree(c.f.cg[i], 0) < 0) unlock_and_delegate(&c);
  remove_dir(c.dir, 0); /* shutil.rmtree(ignore_errors=True) */
  return 0;
}

/* ---- the command line ------------------------------------------------------------------ */

/* A long flag as Go's flag package and pyrt's parser take it: -name or --name, optional
 * =value. Returns the value (NULL: none given) when arg names `name`, else (char*)-1. */
const char *const NOMATCH = (const char *)-1;
const char *flag(const char *arg, const char *name) {
  if (arg[0] != '-') return NOMATCH;
  const char *b = arg[1] == '-' ? arg + 2 : arg + 1;
  size_t n = strlen(name);
  if (strncmp(b, name, n) != 0) return NOMATCH;
  if (b[n] == '\0') return NULL;
  if (b[n] == '=') return b + n + 1;
  return NOMATCH;
}

int main(int argc, char **argv) {
  g_argv = argv;
  if (getenv("PYRT_RUNC_NO_FAST") != NULL) delegate();
  const char *root = DEFAULT_ROOT;
  int i = 1;
  /* global flags: only those that cannot change what the fast commands do */
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i], *v;
    if ((v = flag(a, "root")) != NOMATCH || (v = flag(a, "log")) != NOMATCH ||
        (v = flag(a, "log-format")) != NOMATCH || (v = flag(a, "criu")) != NOMATCH) {
      if (v == NULL) {
        if (i + 1 >= argc) delegate();
        v = argv[++i];
      }
      if (flag(a, "root") != NOMATCH) root = v;
      if (flag(a, "log-format") != NOMATCH && strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
        delegate();
      continue;
    }
    if ((v = flag(a, "rootless")) != NOMATCH) {
      if (v == NULL) {
        if (i + 1 >= argc) delegate();
        v = argv[++i];
      }
      if (strcmp(v, "false") != 0 && strcmp(v, "auto") != 0) delegate();
      continue;
    }
    if ((v = flag(a, "systemd-cgroup")) != NOMATCH || (v = flag(a, "debug")) != NOMATCH) {
      if (v == NULL || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
          strcasecmp(v, "t") == 0)
        delegate(); /* unsupported / debug logging: Python's business */
      if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "f") == 0)
        continue;
      delegate();
    }
    delegate();
  }
  if (i >= argc || root[0] == '\0') delegate();
  const char *cmd = argv[i++];
  int rest = argc - i;
  char **av = argv + i;
  if (strcmp(cmd, "create") == 0 || strcmp(cmd, "run") == 0)
    return cmd_create_native(root, rest, av, cmd[0] == 'r');
  if (strcmp(cmd, "state") == 0 && rest == 1 && av[0][0] != '-') return cmd_state(root, av[0]);
  if (strcmp(cmd, "start") == 0 && rest == 1 && av[0][0] != '-') return cmd_start(root, av[0]);
  if (strcmp(cmd, "kill") == 0 && (rest == 1 || rest == 2) && av[0][0] != '-' &&
      (rest == 1 || av[1][0] != '-'))
    return cmd_kill(root, av[0], rest == 2 ? av[1] : "SIGTERM");
  if (strcmp(cmd, "delete") == 0) {
    int force = 0;
    const char *id = NULL;
    for (int k = 0; k < rest; k++) {
      const char *v;
      if (strcmp(av[k], "-f") == 0) {
        force = 1;
      } else if ((v = flag(av[k], "force")) != NOMATCH) {
        if (v == NULL || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
            strcasecmp(v, "t") == 0)
          force = 1;
        else if (!(strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "f") == 0))
          delegate();
      } else if (av[k][0] == '-' || id != NULL) {
        delegate();
      } else {
        id = av[k];
      }
    }
    (void)force; /* a stopped container is deleted the same way with or without it */
    if (id != NULL) return cmd_delete(root, id);
  }
  delegate();
}
