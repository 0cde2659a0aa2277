/* pyrt-shim: the parent of one container, detached from the engine.
 *
 *   pyrt-shim --id ID --bundle DIR --runtime PATH --root DIR --state-dir DIR
 *             [--log-path FILE] [--log-max-size BYTES] [--log-max-file N]
 *             [--tty] [--stdin] [--ready-fd FD] [--foreground] [--drain-timeout MS]
 *             [--exec-fifo PATH] [--no-sync]
 *   pyrt-shim --id ID --state-dir DIR --pid=PID --exec-fifo PATH   (adopt mode)
 *             [--stdin-fd FD] [--stdout-fd FD] [--stderr-fd FD] [--console-fd FD] [...]
 *
 * --no-sync: the container does not outlive a crash of the machine (an --rm container,
 * which the engine removes after one whatever it finds): exit.json is not fsync'ed.
 *
 * With --exec-fifo in runtime mode (the runtime is pyrt-runc, whose created container waits
 * on that fifo), `start` reads the fifo as adopt mode does instead of running the runtime.
 *
 * Adopt mode: the engine's spawn (pyrt._core.spawn_detached) created the container as a
 * child of this very process and exec'd the shim with --pid=<container pid>; the other
 * ends of the container's stdio pipes (or a listening socket on which the pty master
 * arrives, --console-fd) are inherited fds. No runtime runs: the shim does not fork
 * away (it must stay the container's parent), `start` opens the runtime's exec fifo,
 * reads its one byte and unlinks it, and `kill N all` is refused (the engine signals the
 * cgroup itself). --runtime, --root and --bundle are not needed.
 *
 * It daemonizes (fork, setsid, fork) unless --foreground, becomes a child subreaper, and
 * runs `RUNTIME --root ROOT create --bundle DIR --pid-file STATE/init.pid
 * [--console-socket console.sock] ID` (pyrt-runc: --pid-file /proc/self/fd/N, a pipe) with its own pipes as stdio (or, with --tty, receives
 * the pty master on STATE/console.sock). When the runtime exits the container's init is
 * reparented to the shim. The shim then writes "created <pid>\n" (or "error <text>") to
 * the ready fd, and serves STATE/shim.sock until the container has exited.
 *
 * State directory (everything an engine that restarts needs):
 *   shim.sock    commands and attach       init.pid   the runtime's pid file, but for
 *   exit.json    written (tmp + rename)               pyrt-runc, which gets a pipe
 *                at exit                   shim.log   the shim's own stderr (by the caller)
 *   console.sock (tty only, during create)
 * No pid file: the shim runs while shim.sock takes connections (it stops listening once
 * exit.json is written), and the status command tells both pids.
 * It may hold other files (the engine's bundle, config.json, is there): the shim touches
 * only these, and removes a socket only while it is its own.
 *
 * Protocol on shim.sock: the client sends one command line; the shim answers one line,
 * "ok[ <json>]\n" or "err <message>\n", and closes, except for attach.
 *   status                 ok {"id":..,"status":"created|running|stopped","pid":N,...}
 *   start                  runs `RUNTIME --root ROOT start ID`; ok, or err with its stderr
 *   kill SIG [all]         kill(2) the init (all: `RUNTIME kill --all ID SIG`)
 *   resize ROWS COLS       TIOCSWINSZ on the pty master
 *   close-stdin            close the container's stdin (tty: send the EOF character)
 *   wait                   answered when the container has exited: ok <exit json>
 *   attach [stdin]         "ok\n", then frames both ways until the exit frame:
 *     frame = 1 byte type, 4 bytes big-endian length, payload
 *     shim -> client: 1 stdout, 2 stderr (tty: all output is 1), 3 exit (json), then EOF
 *     client -> shim: 0 stdin data, 4 resize (u16 rows, u16 cols, big-endian), 5 close stdin
 * exit json: {"pid":N,"status":S,"exit_code":C,"signal":G,"core_dumped":b,
 *             "oom_killed":b,"time":"RFC 3339"}; status is C, or 128+G when signaled.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "jsonlog.h"

#define MAX_CLIENTS 64
#define MAX_OPS 8
#define CLIENT_OUT_MAX (4u << 20) /* a slower attacher is dropped */
#define STDIN_BUF 65536
#define CAPTURE_MAX 4096

/* ------------------------------------------------------------------ options */

static struct {
  const char *id, *bundle, *runtime, *root, *state_dir, *log_path;
  long long log_max_size;
  int log_max_file, tty, stdin_open, ready_fd, foreground, drain_ms, no_sync;
  /* adopt mode */
  const char *exec_fifo;
  long long adopt_pid;
  int stdin_fd, stdout_fd, stderr_fd, console_fd;
} opt = {.log_max_file = 1, .ready_fd = -1, .drain_ms = 2000, .stdin_fd = -1, .stdout_fd = -1,
         .stderr_fd = -1, .console_fd = -1};

static void die(const char *fmt, const char *a, int e) {
  dprintf(2, "pyrt-shim: ");
  dprintf(2, fmt, a);
  if (e)
    dprintf(2, ": %s", strerror(e));
  dprintf(2, "\n");
  if (opt.ready_fd >= 0) {
    dprintf(opt.ready_fd, "error pyrt-shim: ");
    dprintf(opt.ready_fd, fmt, a);
    if (e)
      dprintf(opt.ready_fd, ": %s", strerror(e));
    dprintf(opt.ready_fd, "\n");
  }
  _exit(1);
}

static void usage(const char *why, const char *what) {
  die(why, what, 0);
}

static long long parse_num(const char *name, const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < 0)
    usage("%s: expected a non-negative integer", name);
  return v;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL(name, field)                                                                         \
  if (!strcmp(a, name)) {                                                                        \
    if (!v)                                                                                      \
      usage("%s: a value is needed", name);                                                      \
    field = v;                                                                                   \
    i++;                                                                                         \
    continue;                                                                                    \
  }
    VAL("--id", opt.id)
    VAL("--bundle", opt.bundle)
    VAL("--runtime", opt.runtime)
    VAL("--root", opt.root)
    VAL("--state-dir", opt.state_dir)
    VAL("--log-path", opt.log_path)
    VAL("--exec-fifo", opt.exec_fifo)
#undef VAL
    if (!strncmp(a, "--pid=", 6)) {
      opt.adopt_pid = parse_num("--pid", a + 6);
      if (opt.adopt_pid <= 0 || opt.adopt_pid > INT_MAX)
        usage("%s: expected a process id", "--pid");
      continue;
    }
    if (!strcmp(a, "--stdin-fd") || !strcmp(a, "--stdout-fd") || !strcmp(a, "--stderr-fd") ||
        !strcmp(a, "--console-fd")) {
      if (!v)
        usage("%s: a value is needed", a);
      int n = (int)parse_num(a, v);
      if (!strcmp(a, "--stdin-fd"))
        opt.stdin_fd = n;
      else if (!strcmp(a, "--stdout-fd"))
        opt.stdout_fd = n;
      else if (!strcmp(a, "--stderr-fd"))
        opt.stderr_fd = n;
      else
        opt.console_fd = n;
      fcntl(n, F_SETFD, FD_CLOEXEC);
      i++;
      continue;
    }
    if (!strcmp(a, "--log-max-size") || !strcmp(a, "--log-max-file") ||
        !strcmp(a, "--ready-fd") || !strcmp(a, "--drain-timeout")) {
      if (!v)
        usage("%s: a value is needed", a);
      long long n = parse_num(a, v);
      if (!strcmp(a, "--log-max-size"))
        opt.log_max_size = n;
      else if (!strcmp(a, "--log-max-file")) {
        if (n < 1 || n > 1000)
          usage("%s: must be between 1 and 1000", a);
        opt.log_max_file = (int)n;
      } else if (!strcmp(a, "--ready-fd"))
        opt.ready_fd = (int)n;
      else
        opt.drain_ms = (int)(n > 600000 ? 600000 : n);
      i++;
      continue;
    }
    if (!strcmp(a, "--tty"))
      opt.tty = 1;
    else if (!strcmp(a, "--stdin"))
      opt.stdin_open = 1;
    else if (!strcmp(a, "--foreground"))
      opt.foreground = 1;
    else if (!strcmp(a, "--no-sync"))
      opt.no_sync = 1;
    else
      usage("unknown argument %s", a);
  }
  if (opt.ready_fd >= 0 && fcntl(opt.ready_fd, F_SETFD, FD_CLOEXEC) < 0)
    opt.ready_fd = -1;
  if (!opt.id || !*opt.id)
    usage("%s is required", "--id");
  if (opt.adopt_pid) {
    if (!opt.exec_fifo)
      usage("%s is required with --pid", "--exec-fifo");
    if (opt.tty ? opt.console_fd < 0 : (opt.stdout_fd < 0 || opt.stderr_fd < 0))
      usage("%s", opt.tty ? "--console-fd is required with --pid and --tty"
                          : "--stdout-fd and --stderr-fd are required with --pid");
    opt.foreground = 1; /* the container is our child: never fork away from it */
  } else {
    if (!opt.bundle)
      usage("%s is required", "--bundle");
    if (!opt.runtime)
      usage("%s is required", "--runtime");
    if (!opt.root)
      usage("%s is required", "--root");
  }
  if (!opt.state_dir)
    usage("%s is required", "--state-dir");
  if (opt.log_path && !*opt.log_path)
    opt.log_path = NULL;
}

/* ------------------------------------------------------------------ state */

struct client {
  int fd;
  int attach, attach_stdin, waiting, closing, op_pending;
  char line[256];
  size_t linelen;
  /* attach input: frame header, then payload */
  unsigned char hdr[5];
  size_t hdrlen;
  uint32_t remaining;
  unsigned char ctl[8];
  size_t ctllen;
  char *out;
  size_t outlen, outcap;
};

struct op {
  pid_t pid;
  int fd; /* its stdout+stderr */
  struct client *c;
  int is_start;
  char buf[2048];
  size_t len;
};

static struct client *clients[MAX_CLIENTS];
static struct op ops[MAX_OPS];
static shim_log_t logw;
static int sigfd = -1, listen_fd = -1;
static ino_t listen_ino; /* shim.sock's inode: finish() removes the socket only while ours */
static int out_fd[3] = {-1, -1, -1}; /* [1] stdout or pty master, [2] stderr */
static int stdin_fd = -1, stdin_close_pending;
static char stdin_buf[STDIN_BUF];
static size_t stdin_len;
static pid_t init_pid;
static int started, exited, exit_status;
static struct timespec exit_time;
static char exit_json[320];
static char oom_file[PATH_MAX];
static long long oom_before = -1;
static char state_abs[PATH_MAX];

static void set_nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ clients */

static void client_free(struct client *c) {
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (clients[i] == c)
      clients[i] = NULL;
  for (int i = 0; i < MAX_OPS; i++)
    if (ops[i].c == c)
      ops[i].c = NULL;
  close(c->fd);
  free(c->out);
  free(c);
}

static void client_flush(struct client *c) {
  while (c->outlen > 0) {
    ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        c->outlen = 0, c->closing = 2; /* peer gone */
      return;
    }
    memmove(c->out, c->out + w, c->outlen - (size_t)w);
    c->outlen -= (size_t)w;
  }
  if (c->outcap > 65536) { /* give back a buffer a burst made large */
    free(c->out);
    c->out = NULL;
    c->outcap = 0;
  }
}

static void client_send(struct client *c, const void *data, size_t len) {
  if (c->closing == 2)
    return;
  const char *p = data;
  if (c->outlen == 0) {
    while (len > 0) {
      ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        if (errno != EAGAIN)
          c->closing = 2;
        break;
      }
      p += w, len -= (size_t)w;
    }
    if (len == 0 || c->closing == 2)
      return;
  }
  if (c->outlen + len > CLIENT_OUT_MAX) {
    dprintf(2, "pyrt-shim: an attached client does not keep up; dropping it\n");
    c->closing = 2;
    return;
  }
  if (c->outlen + len > c->outcap) {
    size_t cap = c->outcap ? c->outcap : 4096;
    while (cap < c->outlen + len)
      cap *= 2;
    char *n = realloc(c->out, cap);
    if (!n) {
      c->closing = 2;
      return;
    }
    c->out = n;
    c->outcap = cap;
  }
  memcpy(c->out + c->outlen, p, len);
  c->outlen += len;
}

static void client_reply(struct client *c, const char *status, const char *text) {
  client_send(c, status, strlen(status));
  if (text && *text) {
    client_send(c, " ", 1);
    /* one line: newlines of a runtime's stderr become spaces */
    for (const char *p = text; *p; p++)
      client_send(c, *p == '\n' ? " " : p, 1);
  }
  client_send(c, "\n", 1);
  c->closing = c->closing ? c->closing : 1;
}

static void send_frame(struct client *c, int type, const void *data, size_t len) {
  unsigned char h[5] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                        (unsigned char)(len >> 8), (unsigned char)len};
  client_send(c, h, 5);
  client_send(c, data, len);
}

/* ------------------------------------------------------------------ processes */

/* fork + exec argv with the given stdio (-1: /dev/null); cwd is the state dir */
static pid_t spawn(char *const argv[], int in, int out, int err) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGPIPE, SIG_DFL);
  int null = open("/dev/null", O_RDWR);
  int fds[3] = {in < 0 ? null : in, out < 0 ? null : out, err < 0 ? null : err};
  int tmp[3];
  for (int i = 0; i < 3; i++) /* move above 2 first so dup2 cannot clobber */
    tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
  for (int i = 0; i < 3; i++)
    if (tmp[i] < 0 || dup2(tmp[i], i) < 0)
      _exit(126);
  execv(argv[0], argv);
  dprintf(2, "pyrt-shim: exec %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

static int start_op(struct client *c, int is_start, char *const argv[]) {
  int slot = -1;
  for (int i = 0; i < MAX_OPS; i++)
    if (ops[i].pid == 0) {
      slot = i;
      break;
    }
  if (slot < 0)
    return -1;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return -1;
  pid_t pid = spawn(argv, -1, p[1], p[1]);
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    return -1;
  }
  set_nonblock(p[0]);
  struct op *o = &ops[slot];
  memset(o, 0, sizeof(*o));
  o->pid = pid;
  o->fd = p[0];
  o->c = c;
  o->is_start = is_start;
  if (c)
    c->op_pending = 1;
  return 0;
}

static void op_read(struct op *o) {
  for (;;) {
    char tmp[1024];
    ssize_t r = read(o->fd, tmp, sizeof(tmp));
    if (r <= 0)
      return;
    size_t room = sizeof(o->buf) - 1 - o->len;
    size_t n = (size_t)r < room ? (size_t)r : room;
    memcpy(o->buf + o->len, tmp, n);
    o->len += n;
  }
}

static void op_done(struct op *o, int status) {
  op_read(o);
  o->buf[o->len] = '\0';
  int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (ok && o->is_start)
    started = 1;
  if (o->c) {
    o->c->op_pending = 0;
    if (ok)
      client_reply(o->c, "ok", NULL);
    else if (o->len)
      client_reply(o->c, "err", o->buf);
    else
      client_reply(o->c, "err", "the runtime failed without a message");
  }
  if (!ok)
    dprintf(2, "pyrt-shim: runtime (pid %d) failed: %s\n", (int)o->pid, o->buf);
  close(o->fd);
  memset(o, 0, sizeof(*o));
}

/* ------------------------------------------------------------------ exit */

static long long read_oom_count(void) {
  if (!oom_file[0])
    return -1;
  int fd = open(oom_file, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  char buf[1024];
  ssize_t r = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (r <= 0)
    return -1;
  buf[r] = '\0';
  for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (!strncmp(p, "oom_kill ", 9))
      return strtoll(p + 9, NULL, 10);
  return -1;
}

/* Find the container's memory cgroup (v1 memory controller, else v2) for the OOM check. */
static void find_oom_file(void) {
  char path[64], buf[4096];
  snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)init_pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t r = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (r <= 0)
    return;
  buf[r] = '\0';
  char *v2 = NULL;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c2 = '\0';
    const char *ctl = c1 + 1, *cg = c2 + 1;
    if (!strcmp(line, "0") && !*ctl) {
      v2 = c2 + 1;
      continue;
    }
    for (const char *p = ctl; p;) { /* "memory" in a comma list */
      if (!strncmp(p, "memory", 6) && (p[6] == ',' || !p[6])) {
        snprintf(oom_file, sizeof(oom_file), "/sys/fs/cgroup/memory%s/memory.oom_control", cg);
        goto found;
      }
      p = strchr(p, ',');
      p = p ? p + 1 : NULL;
    }
  }
  if (v2)
    snprintf(oom_file, sizeof(oom_file), "/sys/fs/cgroup%s%smemory.events", v2,
             v2[strlen(v2) - 1] == '/' ? "" : "/");
found:
  oom_before = read_oom_count();
  if (oom_before < 0)
    oom_file[0] = '\0';
}

static void write_exit_file(void) {
  int code = 0, sig = 0, core = 0;
  if (WIFSIGNALED(exit_status)) {
    sig = WTERMSIG(exit_status);
    core = WCOREDUMP(exit_status) ? 1 : 0;
  } else if (WIFEXITED(exit_status))
    code = WEXITSTATUS(exit_status);
  long long oom_after = read_oom_count();
  int oom = oom_before >= 0 && oom_after > oom_before;
  char when[40];
  shim_format_time(when, &exit_time);
  int n = snprintf(exit_json, sizeof(exit_json),
                   "{\"pid\":%d,\"status\":%d,\"exit_code\":%d,\"signal\":%d,"
                   "\"core_dumped\":%s,\"oom_killed\":%s,\"time\":\"%s\"}",
                   (int)init_pid, sig ? 128 + sig : code, code, sig, core ? "true" : "false",
                   oom ? "true" : "false", when);
  int fd = open("exit.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, exit_json, (size_t)n) != n || write(fd, "\n", 1) != 1 ||
      (!opt.no_sync && fsync(fd) < 0)) {
    dprintf(2, "pyrt-shim: write exit.json.tmp: %s\n", strerror(errno));
  } else if (rename("exit.json.tmp", "exit.json") < 0) {
    dprintf(2, "pyrt-shim: rename exit.json: %s\n", strerror(errno));
  }
  if (fd >= 0)
    close(fd);
  int dfd = opt.no_sync ? -1 : open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0)
      return;
    if (pid == init_pid && !exited) {
      exited = 1;
      exit_status = status;
      clock_gettime(CLOCK_REALTIME, &exit_time);
      continue;
    }
    for (int i = 0; i < MAX_OPS; i++)
      if (ops[i].pid == pid)
        op_done(&ops[i], status);
    /* anything else: an orphan of the container, reparented to us; reaped */
  }
}

/* ------------------------------------------------------------------ output and stdin */

static void close_stdin_now(void) {
  if (stdin_fd < 0)
    return;
  if (opt.tty) {
    struct termios t;
    char eof = 4;
    if (tcgetattr(stdin_fd, &t) == 0 && t.c_cc[VEOF])
      eof = (char)t.c_cc[VEOF];
    if (write(stdin_fd, &eof, 1) < 0) {
      /* the pty is gone or full: nothing more to do */
    }
    stdin_fd = -1; /* the master stays open for output */
  } else {
    close(stdin_fd);
    stdin_fd = -1;
  }
}

static void request_close_stdin(void) {
  if (stdin_len > 0)
    stdin_close_pending = 1;
  else
    close_stdin_now();
}

static void flush_stdin(void) {
  while (stdin_len > 0 && stdin_fd >= 0) {
    ssize_t w = write(stdin_fd, stdin_buf, stdin_len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN) { /* the container closed its stdin: drop what is queued */
        stdin_len = 0;
        if (!opt.tty) {
          close(stdin_fd);
          stdin_fd = -1;
        }
      }
      break;
    }
    memmove(stdin_buf, stdin_buf + w, stdin_len - (size_t)w);
    stdin_len -= (size_t)w;
  }
  if (stdin_len == 0 && stdin_close_pending) {
    stdin_close_pending = 0;
    close_stdin_now();
  }
}

static char iobuf[32768];

/* read what one output stream has; returns 0 at EOF */
static int pump_output(int stream) {
  for (int rounds = 0; rounds < 8; rounds++) {
    ssize_t r = read(out_fd[stream], iobuf, sizeof(iobuf));
    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return 1;
      r = 0; /* EIO from a pty whose last slave closed: EOF */
    }
    if (r == 0) {
      shimlog_flush(&logw, stream);
      close(out_fd[stream]);
      out_fd[stream] = -1;
      return 0;
    }
    shimlog_feed(&logw, stream, iobuf, (size_t)r);
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i] && clients[i]->attach && !clients[i]->closing)
        send_frame(clients[i], stream, iobuf, (size_t)r);
  }
  return 1;
}

/* ------------------------------------------------------------------ commands */

static void runtime_argv(const char *argv[], int n, const char *const *rest) {
  int i = 0;
  argv[i++] = opt.runtime;
  argv[i++] = "--root";
  argv[i++] = opt.root;
  for (int k = 0; rest[k] && i < n - 1; k++)
    argv[i++] = rest[k];
  argv[i] = NULL;
}

/* Adopt mode's start (and with --exec-fifo, the runtime mode's: no runtime process for
 * a pyrt-runc container): be the reader of the runtime's exec fifo. The container, blocked in
 * open(O_WRONLY), writes one byte and execs its program; the fifo is then unlinked, which
 * is what tells the runtime's state that the container is running. */
static void fifo_start(struct client *c) {
  int fd = open(opt.exec_fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    client_reply(c, "err", errno == ENOENT ? "the container was already started"
                                           : "cannot open the exec fifo");
    return;
  }
  int ok = 0;
  long long deadline = now_ms() + 10000;
  while (!ok && !exited && now_ms() < deadline) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 20) > 0) {
      char b;
      ssize_t r = read(fd, &b, 1);
      if (r == 1)
        ok = 1;
    }
    if (!ok)
      reap();
  }
  close(fd);
  if (!ok) {
    client_reply(c, "err", exited ? "the container has exited" : "the container did not start");
    return;
  }
  unlink(opt.exec_fifo);
  started = 1;
  client_reply(c, "ok", NULL);
}

static const char *status_word(void) {
  return exited ? "stopped" : started ? "running" : "created";
}

static void do_command(struct client *c, char *line) {
  char *argv[4] = {0};
  int argc = 0;
  for (char *tok = strtok(line, " \t\r"); tok && argc < 4; tok = strtok(NULL, " \t\r"))
    argv[argc++] = tok;
  if (argc == 0) {
    client_reply(c, "err", "empty command");
    return;
  }
  const char *cmd = argv[0];
  if (!strcmp(cmd, "status")) {
    char buf[700];
    snprintf(buf, sizeof(buf),
             "{\"id\":\"%s\",\"status\":\"%s\",\"pid\":%d,\"shim_pid\":%d,\"tty\":%s,"
             "\"stdin_open\":%s,\"exit\":%s}",
             opt.id, status_word(), (int)init_pid, (int)getpid(), opt.tty ? "true" : "false",
             stdin_fd >= 0 ? "true" : "false", exit_json[0] ? exit_json : "null");
    client_reply(c, "ok", buf);
  } else if (!strcmp(cmd, "wait")) {
    if (exit_json[0])
      client_reply(c, "ok", exit_json);
    else
      c->waiting = 1;
  } else if (!strcmp(cmd, "attach")) {
    if (exit_json[0]) {
      client_send(c, "ok\n", 3);
      send_frame(c, 3, exit_json, strlen(exit_json));
      c->closing = 1;
      return;
    }
    c->attach = 1;
    c->attach_stdin = argc > 1 && !strcmp(argv[1], "stdin");
    client_send(c, "ok\n", 3);
  } else if (!strcmp(cmd, "start")) {
    if (exited)
      client_reply(c, "err", "the container has exited");
    else if (started)
      client_reply(c, "err", "the container was already started");
    else if (opt.exec_fifo)
      fifo_start(c); /* adopt mode, or a runtime whose exec fifo we were told */
    else {
      const char *rest[] = {"start", opt.id, NULL};
      const char *av[8];
      runtime_argv(av, 8, rest);
      if (start_op(c, 1, (char *const *)av) < 0)
        client_reply(c, "err", "cannot run the runtime");
    }
  } else if (!strcmp(cmd, "kill")) {
    char *end = NULL;
    long sig = argc > 1 ? strtol(argv[1], &end, 10) : 0;
    if (argc < 2 || *end || sig <= 0 || sig >= 65) {
      client_reply(c, "err", "kill: a signal number between 1 and 64 is needed");
    } else if (exited) {
      client_reply(c, "err", "the container has exited");
    } else if (argc > 2 && !strcmp(argv[2], "all") && opt.adopt_pid) {
      client_reply(c, "err", "kill all: not available in adopt mode (signal the cgroup)");
    } else if (argc > 2 && !strcmp(argv[2], "all")) {
      const char *rest[] = {"kill", "--all", opt.id, argv[1], NULL};
      const char *av[10];
      runtime_argv(av, 10, rest);
      if (start_op(c, 0, (char *const *)av) < 0)
        client_reply(c, "err", "cannot run the runtime");
    } else if (kill(init_pid, (int)sig) < 0) {
      client_reply(c, "err", strerror(errno));
    } else
      client_reply(c, "ok", NULL);
  } else if (!strcmp(cmd, "resize")) {
    char *e1 = NULL, *e2 = NULL;
    long rows = argc > 2 ? strtol(argv[1], &e1, 10) : -1;
    long cols = argc > 2 ? strtol(argv[2], &e2, 10) : -1;
    if (argc < 3 || *e1 || *e2 || rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535) {
      client_reply(c, "err", "resize: rows and columns between 1 and 65535 are needed");
    } else if (!opt.tty || out_fd[1] < 0) {
      client_reply(c, "err", "resize: the container has no terminal");
    } else {
      struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
      if (ioctl(out_fd[1], TIOCSWINSZ, &ws) < 0)
        client_reply(c, "err", strerror(errno));
      else
        client_reply(c, "ok", NULL);
    }
  } else if (!strcmp(cmd, "close-stdin")) {
    request_close_stdin();
    client_reply(c, "ok", NULL);
  } else {
    client_reply(c, "err", "unknown command (status, start, kill, resize, close-stdin, wait, "
                           "attach)");
  }
}

/* attach input: frames of stdin, resize and close-stdin */
static void attach_input(struct client *c) {
  for (;;) {
    if (c->hdrlen < 5) {
      ssize_t r = recv(c->fd, c->hdr + c->hdrlen, 5 - c->hdrlen, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        c->closing = 2;
        return;
      }
      if (r < 0)
        return;
      c->hdrlen += (size_t)r;
      if (c->hdrlen < 5)
        return;
      c->remaining = (uint32_t)c->hdr[1] << 24 | (uint32_t)c->hdr[2] << 16 |
                     (uint32_t)c->hdr[3] << 8 | c->hdr[4];
      c->ctllen = 0;
      if (c->hdr[0] != 0 && c->remaining > sizeof(c->ctl)) {
        c->closing = 2; /* a bad frame */
        return;
      }
    }
    if (c->hdr[0] == 0) { /* stdin: straight into the stdin buffer */
      if (c->remaining > 0) {
        size_t room = STDIN_BUF - stdin_len;
        if (room == 0)
          return; /* back-pressure: poll skips this client until stdin drains */
        size_t want = c->remaining < room ? c->remaining : room;
        ssize_t r = recv(c->fd, stdin_buf + stdin_len, want, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          c->closing = 2;
          return;
        }
        if (r < 0)
          return;
        if (c->attach_stdin && stdin_fd >= 0)
          stdin_len += (size_t)r; /* kept; otherwise the bytes are dropped */
        c->remaining -= (uint32_t)r;
        flush_stdin();
        if (c->remaining > 0)
          continue;
      }
    } else if (c->remaining > 0) {
      ssize_t r = recv(c->fd, c->ctl + c->ctllen, c->remaining, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        c->closing = 2;
        return;
      }
      if (r < 0)
        return;
      c->ctllen += (size_t)r;
      c->remaining -= (uint32_t)r;
      if (c->remaining > 0)
        continue;
    }
    /* a whole frame */
    if (c->hdr[0] == 4 && c->ctllen == 4 && opt.tty && out_fd[1] >= 0) {
      struct winsize ws = {.ws_row = (unsigned short)(c->ctl[0] << 8 | c->ctl[1]),
                           .ws_col = (unsigned short)(c->ctl[2] << 8 | c->ctl[3])};
      ioctl(out_fd[1], TIOCSWINSZ, &ws);
    } else if (c->hdr[0] == 5 && c->attach_stdin) {
      request_close_stdin();
    }
    c->hdrlen = 0;
  }
}

static void client_input(struct client *c) {
  if (c->attach) {
    attach_input(c);
    return;
  }
  ssize_t r = recv(c->fd, c->line + c->linelen, sizeof(c->line) - 1 - c->linelen, MSG_DONTWAIT);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    c->closing = 2;
    return;
  }
  if (r < 0)
    return;
  c->linelen += (size_t)r;
  c->line[c->linelen] = '\0';
  char *nl = strchr(c->line, '\n');
  if (!nl) {
    if (c->linelen == sizeof(c->line) - 1)
      client_reply(c, "err", "command line too long");
    return;
  }
  *nl = '\0';
  size_t used = (size_t)(nl - c->line) + 1;
  char cmd[sizeof(c->line)];
  memcpy(cmd, c->line, used);
  /* whatever follows the command line is the first attach input */
  memmove(c->line, c->line + used, c->linelen - used);
  c->linelen -= used;
  do_command(c, cmd);
  if (c->attach && c->linelen > 0) {
    /* rare: frames sent together with the command; feed them through a socketpair-free
     * path by treating them as a protocol error is too strict, so parse them here */
    size_t n = c->linelen;
    c->linelen = 0;
    for (size_t i = 0; i < n;) {
      if (c->hdrlen < 5) {
        c->hdr[c->hdrlen++] = (unsigned char)c->line[i++];
        if (c->hdrlen == 5)
          c->remaining = (uint32_t)c->hdr[1] << 24 | (uint32_t)c->hdr[2] << 16 |
                         (uint32_t)c->hdr[3] << 8 | c->hdr[4];
        if (c->hdrlen == 5 && c->remaining == 0 && c->hdr[0] == 5) {
          request_close_stdin();
          c->hdrlen = 0;
        }
        continue;
      }
      size_t take = n - i < c->remaining ? n - i : c->remaining;
      if (c->hdr[0] == 0 && c->attach_stdin && stdin_fd >= 0 && take <= STDIN_BUF - stdin_len) {
        memcpy(stdin_buf + stdin_len, c->line + i, take);
        stdin_len += take;
      } else if (c->hdr[0] != 0 && c->ctllen + take <= sizeof(c->ctl)) {
        memcpy(c->ctl + c->ctllen, c->line + i, take);
        c->ctllen += take;
      }
      i += take;
      c->remaining -= (uint32_t)take;
      if (c->remaining == 0) {
        if (c->hdr[0] == 5 && c->attach_stdin)
          request_close_stdin();
        c->hdrlen = 0;
        c->ctllen = 0;
      }
    }
    flush_stdin();
  }
}

static void accept_clients(void) {
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
      return;
    int slot = -1;
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (!clients[i]) {
        slot = i;
        break;
      }
    struct client *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
      static const char busy[] = "err too many clients\n";
      if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing to do */
      }
      close(fd);
      continue;
    }
    c->fd = fd;
    clients[slot] = c;
  }
}

/* ------------------------------------------------------------------ setup */

static int listen_unix(const char *name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    die("socket %s", name, errno);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name); /* relative: we live in state dir */
  unlink(name);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    die("bind %s", name, errno);
  chmod(name, 0600);
  if (listen(fd, 64) < 0)
    die("listen %s", name, errno);
  return fd;
}

/* The pty master the runtime sent over the console socket (one SCM_RIGHTS message). */
static int receive_master(int lfd) {
  int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0)
    return -1;
  char byte[64];
  struct iovec iov = {.iov_base = byte, .iov_len = sizeof(byte)};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 4)];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof(u.buf)};
  ssize_t r = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  close(conn);
  if (r < 0)
    return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof(int));
      return fd;
    }
  errno = EBADMSG;
  return -1;
}

static void daemonize(void) {
  pid_t pid = fork();
  if (pid < 0)
    die("%s", "fork", errno);
  if (pid > 0)
    _exit(0); /* the launcher reaps this one at once */
  if (setsid() < 0)
    die("%s", "setsid", errno);
  pid = fork();
  if (pid < 0)
    die("%s", "fork", errno);
  if (pid > 0)
    _exit(0); /* the shim is now an orphan, adopted by init or a subreaper */
}


static char capture[CAPTURE_MAX];
static size_t capture_len;

static void capture_read(int fd) {
  for (;;) {
    char tmp[1024];
    ssize_t r = read(fd, tmp, sizeof(tmp));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    size_t room = sizeof(capture) - 1 - capture_len;
    size_t n = (size_t)r < room ? (size_t)r : room;
    memcpy(capture + capture_len, tmp, n);
    capture_len += n;
  }
}

/* Run the runtime's create with the container's stdio; sets init_pid or exits with the
 * runtime's messages on the ready fd. pyrt-runc (--exec-fifo) writes the pid into a pipe
 * (a --pid-file that is a fifo gets the pid itself); another runtime writes init.pid. */
static void create_container(void) {
  char pidfile[PATH_MAX + 16];
  int pid_pipe[2] = {-1, -1};
  if (opt.exec_fifo) {
    /* the write end without O_CLOEXEC: the runtime inherits it (its container marks its
     * fds close-on-exec); ours is closed once the runtime runs */
    if (pipe(pid_pipe) < 0 || fcntl(pid_pipe[0], F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(pid_pipe[0], F_SETFL, O_NONBLOCK) < 0)
      die("%s", "pipe", errno);
    snprintf(pidfile, sizeof(pidfile), "/proc/self/fd/%d", pid_pipe[1]);
  } else {
    snprintf(pidfile, sizeof(pidfile), "%s/init.pid", state_abs);
  }
  const char *av[16];
  int n = 0;
  av[n++] = opt.runtime;
  av[n++] = "--root";
  av[n++] = opt.root;
  av[n++] = "create";
  av[n++] = "--bundle";
  av[n++] = opt.bundle;
  av[n++] = "--pid-file";
  av[n++] = pidfile;
  if (opt.tty) {
    av[n++] = "--console-socket";
    av[n++] = "console.sock";
  }
  av[n++] = opt.id;
  av[n] = NULL;

  int console_lfd = opt.tty ? listen_unix("console.sock") : -1;
  int cap_fd[2] = {-1, -1}; /* where the runtime's own messages can appear */
  pid_t pid;
  if (opt.tty) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
      die("%s", "pipe", errno);
    pid = spawn((char *const *)av, -1, p[1], p[1]);
    close(p[1]);
    cap_fd[0] = p[0];
  } else {
    int in[2] = {-1, -1}, out[2], err[2];
    if ((opt.stdin_open && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(err, O_CLOEXEC) < 0)
      die("%s", "pipe", errno);
    pid = spawn((char *const *)av, in[0], out[1], err[1]);
    if (in[0] >= 0)
      close(in[0]);
    close(out[1]);
    close(err[1]);
    stdin_fd = in[1];
    out_fd[1] = out[0];
    out_fd[2] = err[0];
    /* the container waits for start: until the runtime exits, output is the runtime's */
    cap_fd[0] = out[0];
    cap_fd[1] = err[0];
  }
  if (pid < 0)
    die("fork %s", opt.runtime, errno);
  if (pid_pipe[1] >= 0)
    close(pid_pipe[1]);
  for (int i = 0; i < 2; i++)
    if (cap_fd[i] >= 0)
      set_nonblock(cap_fd[i]);

  int status = 0;
  for (;;) {
    struct pollfd pf[3] = {{.fd = sigfd, .events = POLLIN},
                           {.fd = cap_fd[0], .events = POLLIN},
                           {.fd = cap_fd[1], .events = POLLIN}};
    if (poll(pf, 3, 200) < 0 && errno != EINTR)
      die("%s", "poll", errno);
    if (pf[0].revents) {
      struct signalfd_siginfo si;
      while (read(sigfd, &si, sizeof(si)) > 0) {
      }
    }
    for (int i = 0; i < 2; i++)
      if (cap_fd[i] >= 0 && pf[i + 1].revents)
        capture_read(cap_fd[i]);
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid)
      break;
  }
  for (int i = 0; i < 2; i++)
    if (cap_fd[i] >= 0)
      capture_read(cap_fd[i]);
  if (opt.tty)
    close(cap_fd[0]);
  capture[capture_len] = '\0';

  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char why[64];
    if (WIFSIGNALED(status))
      snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(status));
    else
      snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(status));
    /* before the report: the state dir is the container's run dir, which the engine
     * reuses at once (its next create could bind a console.sock of its own there) */
    unlink("console.sock");
    dprintf(2, "pyrt-shim: runtime create failed (%s): %s\n", why, capture);
    if (opt.ready_fd >= 0)
      dprintf(opt.ready_fd, "error runtime create failed (%s): %s", why, capture);
    _exit(1);
  }
  if (capture_len)
    dprintf(2, "pyrt-shim: runtime create said: %s\n", capture);

  char buf[32] = {0};
  /* the pipe: one write, done before the runtime exited (the container, which holds the
   * write end until it execs, keeps it from reaching EOF: one read, not until EOF) */
  int fd = pid_pipe[0] >= 0 ? pid_pipe[0] : open("init.pid", O_RDONLY | O_CLOEXEC);
  ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  if (fd >= 0)
    close(fd);
  init_pid = r > 0 ? (pid_t)strtol(buf, NULL, 10) : 0;
  if (init_pid <= 0)
    die("%s: the runtime wrote no pid", pid_pipe[0] >= 0 ? "pid pipe" : "init.pid",
        r < 0 ? errno : 0);

  if (opt.tty) {
    int m = receive_master(console_lfd);
    if (m < 0)
      die("%s: no pty master from the runtime", "console.sock", errno);
    close(console_lfd);
    unlink("console.sock");
    set_nonblock(m);
    out_fd[1] = m;
    stdin_fd = opt.stdin_open ? m : -1;
  } else if (stdin_fd >= 0) {
    set_nonblock(stdin_fd);
  }
}

static int receive_master(int lfd);

/* Adopt mode: the container already exists as our child; take over its stdio. */
static void adopt_container(void) {
  init_pid = (pid_t)opt.adopt_pid;
  if (opt.tty) {
    int m = receive_master(opt.console_fd);
    if (m < 0)
      die("%s: no pty master from the container", "--console-fd", errno);
    close(opt.console_fd);
    set_nonblock(m);
    out_fd[1] = m;
    stdin_fd = opt.stdin_open ? m : -1;
    if (opt.stdin_fd >= 0)
      close(opt.stdin_fd);
  } else {
    out_fd[1] = opt.stdout_fd;
    out_fd[2] = opt.stderr_fd;
    set_nonblock(out_fd[1]);
    set_nonblock(out_fd[2]);
    stdin_fd = opt.stdin_fd;
    if (stdin_fd >= 0)
      set_nonblock(stdin_fd);
  }
}

static void finish(void) {
  for (int s = 1; s <= 2; s++) {
    if (out_fd[s] >= 0) {
      pump_output(s);
      if (out_fd[s] >= 0) {
        close(out_fd[s]);
        out_fd[s] = -1;
      }
    }
    shimlog_flush(&logw, s);
  }
  shimlog_close(&logw);
  write_exit_file();
  close(listen_fd);
  /* the engine may start the container again in this directory once exit.json is there:
   * a new shim's socket is not ours to remove */
  struct stat st;
  if (stat("shim.sock", &st) == 0 && st.st_ino == listen_ino)
    unlink("shim.sock");
  for (int i = 0; i < MAX_CLIENTS; i++) {
    struct client *c = clients[i];
    if (!c)
      continue;
    if (c->attach)
      send_frame(c, 3, exit_json, strlen(exit_json));
    else if (c->waiting)
      client_reply(c, "ok", exit_json);
    else if (c->op_pending)
      client_reply(c, "err", "the container has exited");
    c->closing = c->closing ? c->closing : 1;
  }
  /* give the clients up to two seconds to take what is queued for them */
  long long deadline = now_ms() + 2000;
  for (;;) {
    struct pollfd pf[MAX_CLIENTS];
    int n = 0;
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i] && clients[i]->outlen > 0 && clients[i]->closing != 2)
        pf[n++] = (struct pollfd){.fd = clients[i]->fd, .events = POLLOUT};
    long long left = deadline - now_ms();
    if (n == 0 || left <= 0)
      break;
    poll(pf, (nfds_t)n, (int)left);
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i])
        client_flush(clients[i]);
  }
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (clients[i])
      client_free(clients[i]);
  _exit(0);
}

enum { K_SIG, K_LISTEN, K_OUT, K_STDIN, K_OP, K_CLIENT };

int main(int argc, char **argv) {
  parse_args(argc, argv);
  if (mkdir(opt.state_dir, 0700) < 0 && errno != EEXIST)
    die("state dir %s", opt.state_dir, errno);
  if (!realpath(opt.state_dir, state_abs))
    die("state dir %s", opt.state_dir, errno);
  static char bundle_abs[PATH_MAX], root_abs[PATH_MAX], log_abs[PATH_MAX + 2];
  if (opt.bundle) {
    if (!realpath(opt.bundle, bundle_abs))
      die("bundle %s", opt.bundle, errno);
    opt.bundle = bundle_abs;
  }
  if (opt.root) {
    if (mkdir(opt.root, 0700) < 0 && errno != EEXIST)
      die("runtime root %s", opt.root, errno);
    if (!realpath(opt.root, root_abs))
      die("runtime root %s", opt.root, errno);
    opt.root = root_abs;
  }
  if (opt.log_path && opt.log_path[0] != '/') {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
      die("%s", "getcwd", errno);
    if (snprintf(log_abs, sizeof(log_abs), "%s/%s", cwd, opt.log_path) >= (int)sizeof(log_abs))
      die("log path %s: too long", opt.log_path, 0);
    opt.log_path = log_abs;
  }
  if (opt.runtime && strchr(opt.runtime, '/') == NULL)
    die("runtime %s: an absolute or relative path is needed", opt.runtime, 0);
  static char runtime_abs[PATH_MAX];
  if (opt.runtime && opt.runtime[0] != '/') {
    if (!realpath(opt.runtime, runtime_abs))
      die("runtime %s", opt.runtime, errno);
    opt.runtime = runtime_abs;
  }
  if (opt.runtime && access(opt.runtime, X_OK) < 0)
    die("runtime %s", opt.runtime, errno);
  if (chdir(state_abs) < 0)
    die("state dir %s", state_abs, errno);
  if (shimlog_open(&logw, opt.log_path, opt.log_max_size, opt.log_max_file) < 0)
    die("log file %s", opt.log_path, errno);

  if (!opt.foreground)
    daemonize();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
    die("%s", "PR_SET_CHILD_SUBREAPER", errno);
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGQUIT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0)
    die("%s", "signalfd", errno);
  unlink("exit.json");

  if (opt.adopt_pid)
    adopt_container();
  else
    create_container();
  find_oom_file();
  listen_fd = listen_unix("shim.sock");
  struct stat sock_st;
  if (stat("shim.sock", &sock_st) == 0)
    listen_ino = sock_st.st_ino;
  if (opt.ready_fd >= 0) {
    dprintf(opt.ready_fd, "created %d\n", (int)init_pid);
    close(opt.ready_fd);
    opt.ready_fd = -1;
  }
  /* stdio is the shim.log the launcher gave us (or /dev/null): keep it for messages */
  reap(); /* the init may already have died */

  long long drain_deadline = 0;
  for (;;) {
    if (exited && !drain_deadline)
      drain_deadline = now_ms() + opt.drain_ms;
    if (exited) {
      /* a runtime command still running (a start racing a quick exit) gets its answer
       * first, within reason */
      int busy = 0;
      for (int i = 0; i < MAX_OPS; i++)
        busy |= ops[i].pid != 0;
      long long now = now_ms();
      if ((!busy || now >= drain_deadline + 10000) &&
          ((out_fd[1] < 0 && out_fd[2] < 0) || now >= drain_deadline))
        finish();
    }

    struct pollfd pf[4 + 2 + MAX_OPS + MAX_CLIENTS];
    int kind[4 + 2 + MAX_OPS + MAX_CLIENTS], idx[4 + 2 + MAX_OPS + MAX_CLIENTS];
    int n = 0;
#define ADD(f, ev, k, i) (pf[n] = (struct pollfd){.fd = (f), .events = (ev)}, kind[n] = (k), idx[n++] = (i))
    ADD(sigfd, POLLIN, K_SIG, 0);
    ADD(listen_fd, POLLIN, K_LISTEN, 0);
    for (int s = 1; s <= 2; s++)
      if (out_fd[s] >= 0)
        ADD(out_fd[s], POLLIN, K_OUT, s);
    if (stdin_fd >= 0 && stdin_len > 0)
      ADD(stdin_fd, POLLOUT, K_STDIN, 0);
    for (int i = 0; i < MAX_OPS; i++)
      if (ops[i].pid)
        ADD(ops[i].fd, POLLIN, K_OP, i);
    for (int i = 0; i < MAX_CLIENTS; i++) {
      struct client *c = clients[i];
      if (!c)
        continue;
      short ev = 0;
      int blocked = c->attach && c->hdrlen == 5 && c->hdr[0] == 0 && c->remaining > 0 &&
                    stdin_len == STDIN_BUF;
      if (!blocked && !c->closing)
        ev |= POLLIN;
      if (c->outlen > 0)
        ev |= POLLOUT;
      ADD(c->fd, ev, K_CLIENT, i);
    }
#undef ADD
    int timeout = -1;
    if (exited) {
      long long left = drain_deadline - now_ms();
      timeout = left < 0 ? 100 : (int)left; /* past the deadline: waiting for an op */
    }
    if (poll(pf, (nfds_t)n, timeout) < 0) {
      if (errno == EINTR)
        continue;
      die("%s", "poll", errno);
    }
    for (int k = 0; k < n; k++) {
      if (!pf[k].revents)
        continue;
      switch (kind[k]) {
      case K_SIG: {
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof(si)) > 0) {
        }
        reap();
        break;
      }
      case K_LISTEN:
        accept_clients();
        break;
      case K_OUT:
        if (out_fd[idx[k]] >= 0)
          pump_output(idx[k]);
        break;
      case K_STDIN:
        flush_stdin();
        break;
      case K_OP:
        if (ops[idx[k]].pid)
          op_read(&ops[idx[k]]);
        break;
      case K_CLIENT: {
        struct client *c = clients[idx[k]];
        if (!c)
          break;
        if (pf[k].revents & POLLOUT)
          client_flush(c);
        if (pf[k].revents & (POLLIN | POLLHUP | POLLERR))
          client_input(c);
        break;
      }
      }
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
      struct client *c = clients[i];
      if (c && (c->closing == 2 || (c->closing == 1 && c->outlen == 0 && !c->op_pending)))
        client_free(c);
    }
  }
}
