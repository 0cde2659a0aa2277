/* pyrt: the C front end of pyrt's command line (the venv's bin/pyrt).
 *
 * Why: `pyrt run --rm IMAGE CMD` is the command people and the benchmarks time (Issue 5
 * wants it at most 0.2x docker's and podman's). The Python CLI spends ~50 ms starting the
 * interpreter and importing before its first request, and ~10 ms tearing down after the
 * container has exited: more than the daemon's share. So this program answers the plain
 * case itself:
 *
 *   pyrt [-H HOST | --host HOST]... [--host=HOST] run [OPTIONS] IMAGE [COMMAND...]
 *
 * without -i/-t (no stdin, no terminal), its options parsed exactly as pyrt/cli/app.py's
 * _fast_path and parse_options parse RUN_OPTIONS, the create body built as
 * pyrt/cli/containers.py's build_config builds it (byte for byte: json.dumps's key order,
 * separators and ASCII escapes), and the requests pyrt/api/client.py sends, in its order:
 * create, attach (hijacked; docker's 8-byte frames, stdout to fd 1, stderr to fd 2), wait
 * (next-exit, or removed with --rm; its headers read before the start), start, then the
 * stream until it ends. -d creates, starts and prints the id. Messages and exit statuses
 * are run_command's: 125 when the daemon refuses, 126/127 for a start that cannot invoke
 * or find the command, else the container's status. Once the container is created, the
 * signals the CLI gets are forwarded to it through the kill API (docker's --sig-proxy,
 * containers.py proxy_signals); before, SIGINT exits 130 as Python's KeyboardInterrupt.
 *
 * Everything else is handed, before any side effect, to the Python CLI by exec'ing
 * `pyrt-py` next to this binary (or `$PYRT_CLI_PYTHON -m pyrt.cli.app`) with the same
 * argv: every other command, -i/-t, --env-file, --mount, --detach-keys, --help, a value
 * this file does not read exactly as Python does (-m, --restart, -p), a malformed command
 * line (Python says what is wrong), text that is not UTF-8, a host that is not unix://, no
 * daemon answering on the socket (Python starts one and says so), and a create refused
 * with 404 "No such image" (Python pulls, then creates). PYRT_CLI_NO_FAST=1 delegates
 * everything (to time or debug the Python path through the same binary). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "json.h"

#define API_PREFIX "/v1.44"
#define DEFAULT_HOST "unix:///run/pyrt/pyrt.sock"
#define DRAIN_QUIET_MS 300 /* containers.py DRAIN_QUIET_S */
#define EXIT_DAEMON 125

static char **g_argv;

/* ---- delegation to the Python CLI -------------------------------------------------------- */

static _Noreturn void delegate(void) {
  signal(SIGINT, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  int argc = 0;
  while (g_argv[argc] != NULL) argc++;
  char **av = calloc((size_t)argc + 4, sizeof *av);
  char exe[PATH_MAX];
  if (av == NULL) exit(1);
  int k = 0;
  const char *py = getenv("PYRT_CLI_PYTHON");
  if (py != NULL && py[0] != '\0') {
    if (strlen(py) >= sizeof exe) exit(1);
    strcpy(exe, py);
    av[k++] = exe;
    av[k++] = "-m";
    av[k++] = "pyrt.cli.app";
  } else {
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = len > 0 ? (exe[len] = '\0', strrchr(exe, '/')) : NULL;
    if (slash == NULL || (size_t)(slash - exe) + sizeof "/pyrt-py" > sizeof exe) {
      fprintf(stderr, "pyrt: cannot find pyrt-py next to %s (set PYRT_CLI_PYTHON)\n",
              g_argv[0]);
      exit(1);
    }
    strcpy(slash, "/pyrt-py");
    av[k++] = exe;
  }
  for (int i = 1; i < argc; i++) av[k++] = g_argv[i];
  av[k] = NULL;
  execv(exe, av);
  fprintf(stderr, "pyrt: cannot run %s: %s\n", exe, strerror(errno));
  exit(1);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static void *xalloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (p == NULL) {
    fprintf(stderr, "pyrt: out of memory\n");
    exit(EXIT_DAEMON);
  }
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *p = xalloc(n + 1);
  memcpy(p, s, n);
  return p;
}

static int utf8(const char *s) { return json_utf8_ok(s, strlen(s)); }

/* s lower-cased as Python's str.lower() does for what the callers look for: ASCII, and
 * the two characters whose lower case is ASCII (KELVIN SIGN, and LATIN CAPITAL LETTER I
 * WITH DOT ABOVE -> "i" + COMBINING DOT ABOVE). */
static char *py_lower(const char *s) {
  char *out = xalloc(strlen(s) * 2 + 1), *o = out;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    if (p[0] == 0xE2 && p[1] == 0x84 && p[2] == 0xAA) {
      *o++ = 'k';
      p += 3;
    } else if (p[0] == 0xC4 && p[1] == 0xB0) {
      memcpy(o, "i\xcc\x87", 3);
      o += 3;
      p += 2;
    } else {
      *o++ = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
      p++;
    }
  }
  return out;
}

typedef struct {
  const char **v;
  size_t n;
} list_t;

static void list_add(list_t *l, const char *s) {
  const char **v = realloc(l->v, (l->n + 1) * sizeof *v);
  if (v == NULL) {
    fprintf(stderr, "pyrt: out of memory\n");
    exit(EXIT_DAEMON);
  }
  v[l->n++] = s;
  l->v = v;
}

/* ---- the command line (pyrt/cli/app.py: RUN_OPTIONS, parse_options, parse_run) ------------ */

enum kind { FLAG, STR, LIST };
enum {
  O_DETACH, O_RM, O_NAME, O_INTERACTIVE, O_TTY, O_ENV, O_ENV_FILE, O_WORKDIR, O_USER,
  O_ENTRYPOINT, O_LABEL, O_HOSTNAME, O_RESTART, O_VOLUME, O_MOUNT, O_TMPFS, O_VOLUMES_FROM,
  O_MEMORY, O_DETACH_KEYS, O_QUIET, O_NETWORK, O_PUBLISH, O_PUBLISH_ALL, O_IP,
  O_NETWORK_ALIAS, O_DNS, N_OPTS
};

/* RUN_OPTIONS, in its order; `native` 0: given at all, the command goes to Python */
static const struct {
  const char *flags[2];
  enum kind kind;
  int native;
} OPTS[N_OPTS] = {
    [O_DETACH] = {{"-d", "--detach"}, FLAG, 1},
    [O_RM] = {{"--rm"}, FLAG, 1},
    [O_NAME] = {{"--name"}, STR, 1},
    [O_INTERACTIVE] = {{"-i", "--interactive"}, FLAG, 0},
    [O_TTY] = {{"-t", "--tty"}, FLAG, 0},
    [O_ENV] = {{"-e", "--env"}, LIST, 1},
    [O_ENV_FILE] = {{"--env-file"}, LIST, 0},
    [O_WORKDIR] = {{"-w", "--workdir"}, STR, 1},
    [O_USER] = {{"-u", "--user"}, STR, 1},
    [O_ENTRYPOINT] = {{"--entrypoint"}, STR, 1},
    [O_LABEL] = {{"-l", "--label"}, LIST, 1},
    [O_HOSTNAME] = {{"-h", "--hostname"}, STR, 1},
    [O_RESTART] = {{"--restart"}, STR, 1},
    [O_VOLUME] = {{"-v", "--volume"}, LIST, 1},
    [O_MOUNT] = {{"--mount"}, LIST, 0},
    [O_TMPFS] = {{"--tmpfs"}, LIST, 1},
    [O_VOLUMES_FROM] = {{"--volumes-from"}, LIST, 1},
    [O_MEMORY] = {{"-m", "--memory"}, STR, 1},
    [O_DETACH_KEYS] = {{"--detach-keys"}, STR, 0},
    [O_QUIET] = {{"-q", "--quiet"}, FLAG, 1}, /* only quiets a pull, which Python does */
    [O_NETWORK] = {{"--network", "--net"}, STR, 1},
    [O_PUBLISH] = {{"-p", "--publish"}, LIST, 1},
    [O_PUBLISH_ALL] = {{"-P", "--publish-all"}, FLAG, 1},
    [O_IP] = {{"--ip"}, STR, 1},
    [O_NETWORK_ALIAS] = {{"--network-alias"}, LIST, 1},
    [O_DNS] = {{"--dns"}, LIST, 1},
};

static struct {
  int given[N_OPTS];
  const char *str[N_OPTS]; /* STR: the last value */
  list_t list[N_OPTS];     /* LIST: every value, in order */
  const char *image;
  char **cmd;
  int ncmd;
} o;

static int find_flag(const char *flag, size_t len) {
  for (int i = 0; i < N_OPTS; i++)
    for (int k = 0; k < 2; k++) {
      const char *f = OPTS[i].flags[k];
      if (f != NULL && strlen(f) == len && strncmp(f, flag, len) == 0) return i;
    }
  return -1;
}

/* parse_options' take(): -1 for what Python reports as an error */
static int take(int opt, const char *value, char **args, int *i, int n) {
  if (OPTS[opt].kind == FLAG) {
    if (value != NULL) return -1; /* "ignored explicit argument" */
    o.given[opt] = 1;
    return 0;
  }
  if (value == NULL) {
    if (*i >= n) return -1; /* "expected one argument" */
    value = args[(*i)++];
  }
  o.given[opt] = 1;
  if (OPTS[opt].kind == LIST)
    list_add(&o.list[opt], value);
  else
    o.str[opt] = value;
  return 0;
}

/* `run`'s arguments (after "run"); -1: Python must handle them (an error, --help, ...) */
static int parse_run(char **args, int n) {
  int i = 0;
  if (n == 0) return -1; /* parse_run: None, typer shows the usage */
  while (i < n) {
    const char *arg = args[i];
    if (strcmp(arg, "--help") == 0) return -1;
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    if (arg[0] != '-' || arg[1] == '\0') break;
    i++;
    if (arg[1] == '-') { /* --flag, --flag=value */
      const char *eq = strchr(arg, '=');
      int opt = find_flag(arg, eq != NULL ? (size_t)(eq - arg) : strlen(arg));
      if (opt < 0 || take(opt, eq != NULL ? eq + 1 : NULL, args, &i, n) < 0) return -1;
      continue;
    }
    for (size_t j = 1; arg[j] != '\0';) { /* -it, -dit, -eA=1, -de A=1 */
      char flag[2] = {'-', arg[j]};
      int opt = find_flag(flag, 2);
      if (opt < 0) return -1;
      if (OPTS[opt].kind == FLAG) {
        if (take(opt, NULL, args, &i, n) < 0) return -1;
        j++;
        continue;
      }
      if (take(opt, arg[j + 1] != '\0' ? arg + j + 1 : NULL, args, &i, n) < 0) return -1;
      break;
    }
  }
  if (i >= n) return -1; /* "the following arguments are required: image" */
  o.image = args[i];
  o.cmd = args + i + 1;
  o.ncmd = n - i - 1;
  for (int k = 0; k < N_OPTS; k++)
    if (o.given[k] && !OPTS[k].native) return -1;
  return 0;
}

/* ---- the create body (containers.py build_config, networks.py network_options) ------------ */

static buf_t body;

static void put(const char *s) { buf_puts(&body, s); }
static void jstr(const char *s) { buf_jstr(&body, s); }
static void jstrn(const char *s, size_t n) {
  char *c = xstrndup(s, n);
  buf_jstr(&body, c);
  free(c);
}
static void jlist(const list_t *l) {
  put("[");
  for (size_t i = 0; i < l->n; i++) {
    if (i) put(", ");
    jstr(l->v[i]);
  }
  put("]");
}
static const char *truth(int b) { return b ? "true" : "false"; }
static int nonempty(int opt) { return o.given[opt] && o.str[opt][0] != '\0'; }

/* a dict built from "k<sep>v" items, later values replacing earlier ones in place (the
 * labels, the tmpfs mounts): the index of the first item of each key, -1 for a repeat */
static size_t key_len(const char *item, char sep) {
  const char *p = strchr(item, sep);
  return p != NULL ? (size_t)(p - item) : strlen(item);
}
static void jdict(const list_t *l, char sep) {
  put("{");
  int first = 1;
  for (size_t i = 0; i < l->n; i++) {
    size_t klen = key_len(l->v[i], sep);
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++)
      seen = key_len(l->v[j], sep) == klen && strncmp(l->v[j], l->v[i], klen) == 0;
    if (seen) continue;
    const char *value = "";
    for (size_t j = i; j < l->n; j++) /* the last value of this key */
      if (key_len(l->v[j], sep) == klen && strncmp(l->v[j], l->v[i], klen) == 0)
        value = l->v[j][klen] != '\0' ? l->v[j] + klen + 1 : "";
    if (!first) put(", ");
    first = 0;
    jstrn(l->v[i], klen);
    put(": ");
    jstr(value);
  }
  put("}");
}

static int all_digits(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

/* "a-b-c": every part ASCII digits (str.isdigit, which also takes other scripts' digits:
 * the caller has made sure the text is ASCII) */
static int port_ok(const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++)
    if (i == n || s[i] == '-') {
      if (!all_digits(s + start, i - start)) return 0;
      start = i + 1;
    }
  return 1;
}

typedef struct {
  char *key, *ip, *host_port;
} port_t;

/* networks.py parse_publish; -1 for what Python refuses (or reads differently) */
static int parse_publish(const char *spec, port_t *out) {
  for (const char *p = spec; *p; p++)
    if ((unsigned char)*p >= 0x80) return -1;
  const char *slash = strchr(spec, '/');
  size_t rlen = slash != NULL ? (size_t)(slash - spec) : strlen(spec);
  const char *proto = slash != NULL && slash[1] != '\0' ? slash + 1 : "tcp";
  const char *c2 = memrchr(spec, ':', rlen), *c1 = NULL;
  if (c2 != NULL) c1 = memrchr(spec, ':', (size_t)(c2 - spec));
  const char *ip = "", *hp = "", *ctr = spec;
  size_t iplen = 0, hplen = 0, ctrlen = rlen;
  if (c2 != NULL && c1 == NULL) { /* host:ctr */
    hp = spec, hplen = (size_t)(c2 - spec);
    ctr = c2 + 1, ctrlen = rlen - hplen - 1;
  } else if (c2 != NULL) { /* ip:host:ctr */
    ip = spec, iplen = (size_t)(c1 - spec);
    hp = c1 + 1, hplen = (size_t)(c2 - c1 - 1);
    ctr = c2 + 1, ctrlen = (size_t)(spec + rlen - ctr);
    while (iplen > 0 && (*ip == '[' || *ip == ']')) ip++, iplen--; /* str.strip("[]") */
    while (iplen > 0 && (ip[iplen - 1] == '[' || ip[iplen - 1] == ']')) iplen--;
  }
  if (!port_ok(ctr, ctrlen) || (hplen > 0 && !port_ok(hp, hplen))) return -1;
  out->key = xalloc(ctrlen + strlen(proto) + 2);
  memcpy(out->key, ctr, ctrlen);
  out->key[ctrlen] = '/';
  strcpy(out->key + ctrlen + 1, proto);
  out->ip = xstrndup(ip, iplen);
  out->host_port = xstrndup(hp, hplen);
  return 0;
}

/* containers.py parse_bytes for the plain forms: digits, a k/m/g/t unit, a b; -1 else */
static int parse_memory(const char *text, long long *out) {
  size_t n = strlen(text), d = 0;
  while (d < n && text[d] >= '0' && text[d] <= '9') d++;
  if (d == 0 || d > 15) return -1; /* 15 digits: exact as Python's float */
  const char *u = text + d;
  long long mult = 1;
  char c = (char)(*u | 0x20);
  if (*u != '\0' && (c == 'k' || c == 'm' || c == 'g' || c == 't')) {
    mult = c == 'k' ? 1LL << 10 : c == 'm' ? 1LL << 20 : c == 'g' ? 1LL << 30 : 1LL << 40;
    u++;
  }
  if (*u == 'b' || *u == 'B') u++;
  if (*u != '\0') return -1;
  long long v = 0;
  for (size_t i = 0; i < d; i++) v = v * 10 + (text[i] - '0');
  return __builtin_mul_overflow(v, mult, out) ? -1 : 0;
}

/* {port: [bindings...]} (PortBindings) or {port: {}} (ExposedPorts), each port once, in
 * first-seen order, as the dicts network_options builds */
static void put_ports(const port_t *ports, size_t np, int bindings) {
  put("{");
  for (size_t i = 0, groups = 0; i < np; i++) {
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++) seen = strcmp(ports[j].key, ports[i].key) == 0;
    if (seen) continue;
    if (groups++) put(", ");
    jstr(ports[i].key);
    if (!bindings) {
      put(": {}");
      continue;
    }
    put(": [");
    for (size_t j = i, k = 0; j < np; j++) {
      if (strcmp(ports[j].key, ports[i].key) != 0) continue;
      if (k++) put(", ");
      put("{\"HostIp\": ");
      jstr(ports[j].ip);
      put(", \"HostPort\": ");
      jstr(ports[j].host_port);
      put("}");
    }
    put("]");
  }
  put("}");
}

/* The body; -1 when something must be left to Python. */
static int build_body(void) {
  int detach = o.given[O_DETACH];
  put("{\"Image\": ");
  jstr(o.image);
  put(", \"Cmd\": ");
  if (o.ncmd == 0) {
    put("null");
  } else {
    put("[");
    for (int i = 0; i < o.ncmd; i++) {
      if (i) put(", ");
      jstr(o.cmd[i]);
    }
    put("]");
  }
  put(", \"Env\": [");
  int first = 1;
  for (size_t i = 0; i < o.list[O_ENV].n; i++) {
    const char *item = o.list[O_ENV].v[i];
    if (strchr(item, '=') == NULL) { /* -e NAME: from this environment, if set there */
      const char *value = item[0] != '\0' ? getenv(item) : NULL;
      if (value == NULL) continue;
      if (!utf8(value)) return -1;
      char *kv = xalloc(strlen(item) + strlen(value) + 2);
      sprintf(kv, "%s=%s", item, value);
      item = kv;
    }
    if (!first) put(", ");
    first = 0;
    jstr(item);
  }
  put("], \"Tty\": false, \"OpenStdin\": false, \"StdinOnce\": false, \"AttachStdin\": false");
  buf_printf(&body, ", \"AttachStdout\": %s, \"AttachStderr\": %s", truth(!detach),
             truth(!detach));
  put(", \"Labels\": ");
  jdict(&o.list[O_LABEL], '=');
  buf_printf(&body, ", \"HostConfig\": {\"AutoRemove\": %s", truth(o.given[O_RM]));
  if (nonempty(O_RESTART)) {
    const char *r = o.str[O_RESTART], *colon = strchr(r, ':');
    size_t nlen = colon != NULL ? (size_t)(colon - r) : strlen(r);
    const char *count = colon != NULL ? colon + 1 : "";
    static const char *const names[] = {"no", "always", "unless-stopped", "on-failure"};
    int known = 0;
    for (size_t i = 0; i < 4; i++)
      known |= strlen(names[i]) == nlen && strncmp(names[i], r, nlen) == 0;
    size_t clen = strlen(count);
    if (!known || clen > 18 || (clen > 0 && !all_digits(count, clen))) return -1;
    put(", \"RestartPolicy\": {\"Name\": ");
    jstrn(r, nlen);
    buf_printf(&body, ", \"MaximumRetryCount\": %lld}", clen ? atoll(count) : 0LL);
  }
  if (o.list[O_VOLUME].n) {
    put(", \"Binds\": ");
    jlist(&o.list[O_VOLUME]);
  }
  if (o.list[O_TMPFS].n) {
    put(", \"Tmpfs\": ");
    jdict(&o.list[O_TMPFS], ':');
  }
  if (o.list[O_VOLUMES_FROM].n) {
    put(", \"VolumesFrom\": ");
    jlist(&o.list[O_VOLUMES_FROM]);
  }
  if (nonempty(O_MEMORY)) {
    long long mem;
    if (parse_memory(o.str[O_MEMORY], &mem) < 0) return -1;
    buf_printf(&body, ", \"Memory\": %lld", mem);
  }
  /* networks.py network_options: PortBindings grouped by port, in first-seen order */
  size_t np = o.list[O_PUBLISH].n;
  port_t *ports = xalloc(np * sizeof *ports);
  for (size_t i = 0; i < np; i++)
    if (parse_publish(o.list[O_PUBLISH].v[i], &ports[i]) < 0) return -1;
  if (np) {
    put(", \"PortBindings\": ");
    put_ports(ports, np, 1);
  }
  if (o.given[O_PUBLISH_ALL]) put(", \"PublishAllPorts\": true");
  if (o.list[O_DNS].n) {
    put(", \"Dns\": ");
    jlist(&o.list[O_DNS]);
  }
  if (nonempty(O_NETWORK)) {
    put(", \"NetworkMode\": ");
    jstr(o.str[O_NETWORK]);
  }
  put("}");
  if (o.given[O_ENTRYPOINT]) {
    put(", \"Entrypoint\": [");
    jstr(o.str[O_ENTRYPOINT]);
    put("]");
  }
  static const struct {
    int opt;
    const char *key;
  } strs[] = {{O_WORKDIR, "WorkingDir"}, {O_USER, "User"}, {O_HOSTNAME, "Hostname"}};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    if (nonempty(strs[i].opt)) {
      buf_printf(&body, ", \"%s\": ", strs[i].key);
      jstr(o.str[strs[i].opt]);
    }
  if (np) {
    put(", \"ExposedPorts\": ");
    put_ports(ports, np, 0);
  }
  if (nonempty(O_IP) || o.list[O_NETWORK_ALIAS].n) {
    put(", \"NetworkingConfig\": {\"EndpointsConfig\": {");
    jstr(nonempty(O_NETWORK) ? o.str[O_NETWORK] : "default");
    put(": {");
    if (nonempty(O_IP)) {
      put("\"IPAMConfig\": {\"IPv4Address\": ");
      jstr(o.str[O_IP]);
      put("}");
    }
    if (o.list[O_NETWORK_ALIAS].n) {
      if (nonempty(O_IP)) put(", ");
      put("\"Aliases\": ");
      jlist(&o.list[O_NETWORK_ALIAS]);
    }
    put("}}}");
  }
  put("}");
  return body.bad ? -1 : 0;
}

/* ---- talking to the daemon (pyrt/api/client.py) ------------------------------------------- */

static const char *g_path;  /* the daemon's Unix socket */
static int g_first_fd = -1; /* the create's connection, made before deciding to go native */
static char g_what[PATH_MAX + 64]; /* "pyrt daemon at unix://PATH", client.py's `what` */

/* How a request failed, as the Python CLI would see it. */
enum { F_UNAVAILABLE = 1, F_STATUS, F_OSERROR };
typedef struct {
  int kind;    /* F_UNAVAILABLE: client.py's Unavailable; F_STATUS: an error response; */
  int status;  /* F_OSERROR: an OSError client.py lets through */
  int clean;   /* F_STATUS: the message is the body's "message" string */
  char *msg;
} failure_t;

static failure_t g_fail;

static int fail_with(int kind, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_with(int kind, int status, const char *fmt, ...) {
  buf_t b = {0};
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  buf_puts(&b, tmp);
  g_fail = (failure_t){kind, status, 0, b.p != NULL ? b.p : ""};
  return -1;
}

/* str(OSError): "[Errno 32] Broken pipe" */
static int fail_errno(const char *prefix, int err) {
  if (prefix != NULL)
    return fail_with(F_UNAVAILABLE, 0, "%s: [Errno %d] %s", prefix, err, strerror(err));
  return fail_with(F_OSERROR, 0, "[Errno %d] %s", err, strerror(err));
}

/* client.py _raise_for: the body's "message", else the body, else the reason */
static int fail_status(resp_t *r) {
  buf_t b = {0};
  int err = 0;
  if (http_body(r, &b, &err) != HTTP_OK)
    return err ? fail_errno(NULL, err)
               : fail_with(F_UNAVAILABLE, 0, "%s: connection closed before the end of the body",
                           g_what);
  jv_t *v = json_parse(b.p, b.len);
  const jv_t *m = v != NULL ? jget(v, "message") : NULL;
  g_fail = (failure_t){F_STATUS, r->status, 0, NULL};
  if (m != NULL && m->t == J_STR && m->str[0] != '\0') {
    g_fail.msg = m->str;
    g_fail.clean = 1;
  } else if (v != NULL && v->t == J_OBJ) {
    /* a falsy "message" (absent, null, "", 0): the body as it is; one that is not a string
     * (Python prints its str()) is not read here either: `clean` stays 0 */
    g_fail.msg = b.p;
  } else { /* not JSON (or not an object): the body stripped, else the reason */
    size_t s = 0, e = b.len;
    while (s < e && (b.p[s] == ' ' || (b.p[s] >= '\t' && b.p[s] <= '\r'))) s++;
    while (e > s && (b.p[e - 1] == ' ' || (b.p[e - 1] >= '\t' && b.p[e - 1] <= '\r'))) e--;
    g_fail.msg = e > s ? xstrndup(b.p + s, e - s) : xstrndup(r->reason, strlen(r->reason));
  }
  return -1;
}

/* pyrt.cli.report for the run command: the message, exit 125 */
static _Noreturn void report(void) {
  if (g_fail.kind == F_UNAVAILABLE || (g_fail.kind == F_STATUS && g_fail.status == 503 &&
                                       strstr(g_fail.msg, "pyrt daemon") != NULL))
    fprintf(stderr, "pyrt: %s\n", g_fail.msg);
  else
    fprintf(stderr, "Error response from daemon: %s\n", g_fail.msg);
  exit(EXIT_DAEMON);
}

static void url_quote(buf_t *b, const char *s, const char *safe) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned c = *p;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        strchr("_.-~", (int)c) != NULL || (c != 0 && strchr(safe, (int)c) != NULL)) {
      char ch = c == ' ' ? '+' : (char)c; /* only the query's safe set has ' ' */
      buf_add(b, &ch, 1);
    } else {
      char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
      buf_add(b, esc, 3);
    }
  }
}

/* client.py _request: its own connection, "Connection: close"; the head read into *r.
 * -1 with g_fail set (the request may have reached the daemon). */
static int request(resp_t *r, const char *method, const char *url, const char *body_json) {
  int fd = g_first_fd >= 0 ? g_first_fd : http_dial(g_path);
  g_first_fd = -1;
  if (fd < 0)
    return fail_with(F_UNAVAILABLE, 0, "cannot connect to the pyrt daemon at unix://%s: %s",
                     g_path, strerror(-fd));
  buf_t req = {0};
  buf_printf(&req, "%s ", method);
  buf_puts(&req, url);
  buf_puts(&req, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
  if (body_json != NULL) buf_puts(&req, "Content-Type: application/json\r\n");
  if (body_json != NULL || strcmp(method, "POST") == 0)
    buf_printf(&req, "Content-Length: %zu\r\n", body_json != NULL ? strlen(body_json) : 0);
  buf_puts(&req, "\r\n");
  if (body_json != NULL) buf_puts(&req, body_json);
  if (req.bad) return fail_with(F_UNAVAILABLE, 0, "%s: out of memory", g_what);
  int err = http_send(fd, req.p, req.len), rc = HTTP_OK;
  free(req.p);
  if (err == 0) rc = http_head(fd, r, &err);
  if (err != 0 || rc == HTTP_ERRNO) {
    close(fd);
    return fail_errno(g_what, err);
  }
  if (rc != HTTP_OK) {
    close(fd);
    return fail_with(F_UNAVAILABLE, 0, rc == HTTP_CLOSED
                     ? "%s: connection closed before the response"
                     : "%s: not an HTTP/1.1 response", g_what);
  }
  return 0;
}

/* client.py _json: the request, its whole body in *out (NULL: not wanted); -1 on an error
 * response or a failure (g_fail) */
static int call(const char *method, const char *url, const char *body_json, buf_t *out) {
  resp_t r;
  if (request(&r, method, url, body_json) < 0) return -1;
  int rc = 0;
  if (r.status >= 400) {
    rc = fail_status(&r);
  } else if (out != NULL) {
    int err = 0;
    if (http_body(&r, out, &err) != HTTP_OK)
      rc = err ? fail_errno(NULL, err)
               : fail_with(F_UNAVAILABLE, 0, "%s: connection closed before the end of the "
                           "body", g_what);
  }
  close(r.fd);
  free(r.raw.p);
  return rc;
}

static char *container_url(const char *cid, const char *tail) {
  buf_t u = {0};
  buf_puts(&u, API_PREFIX "/containers/");
  url_quote(&u, cid, "/:@");
  buf_puts(&u, tail);
  return u.p;
}

/* containers.py exit_code_of_start_error */
static int start_error_code(const char *msg) {
  char *t = py_lower(msg);
  int code = EXIT_DAEMON;
  if (strstr(t, "no such file") || (strstr(t, "not found") && strstr(t, "executable")))
    code = 127;
  else if (strstr(t, "permission denied") || strstr(t, "cannot invoke") ||
           strstr(t, "exec format"))
    code = 126;
  free(t);
  return code;
}

/* run_command's failed start: "Error response from daemon: <e>" with 125/126/127 */
static _Noreturn void start_failed(void) {
  int code = start_error_code(g_fail.msg);
  fprintf(stderr, "Error response from daemon: %s\n", g_fail.msg);
  exit(code);
}

/* ---- the attached stream ------------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EPIPE) exit(0); /* BrokenPipeError: app.py main returns 0 */
    if (w < 0) {
      fail_errno(NULL, errno);
      report();
    }
    p += w;
    n -= (size_t)w;
  }
}

/* containers.py stream_io's flush: whole frames only, stream 2 to stderr, others stdout */
static void flush_frames(buf_t *b, int multiplexed) {
  if (b->len == 0) return;
  if (!multiplexed) {
    write_all(1, b->p, b->len);
    b->len = 0;
    return;
  }
  size_t off = 0;
  while (b->len - off >= 8) {
    const unsigned char *h = (const unsigned char *)b->p + off;
    size_t size = (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
    if (b->len - off < 8 + size) break;
    write_all(h[0] == 2 ? 2 : 1, b->p + off + 8, size);
    off += 8 + size;
  }
  if (off == 0) return;
  memmove(b->p, b->p + off, b->len - off);
  b->len -= off;
}

static void on_sigint(int sig) {
  (void)sig;
  _exit(130); /* app.py main: KeyboardInterrupt -> 130 */
}

/* containers.py PROXIED_SIGNALS: what `run` forwards to its container (POST
 * /containers/{id}/kill?signal=NAME) from its create on, as docker's --sig-proxy does */
static const struct {
  int sig;
  const char *name;
} PROXIED[] = {
    {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},     {SIGUSR1, "SIGUSR1"},
    {SIGUSR2, "SIGUSR2"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},     {SIGCONT, "SIGCONT"},
    {SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"}, {SIGTTOU, "SIGTTOU"},     {SIGXCPU, "SIGXCPU"},
    {SIGXFSZ, "SIGXFSZ"}, {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"},
    {SIGIO, "SIGIO"},     {SIGPWR, "SIGPWR"},
};
#define N_PROXIED (sizeof PROXIED / sizeof PROXIED[0])

static volatile sig_atomic_t g_pending[N_PROXIED], g_any_pending;
static const char *g_proxy_cid;

static void on_proxied(int sig) {
  for (size_t i = 0; i < N_PROXIED; i++)
    if (PROXIED[i].sig == sig) g_pending[i] = 1;
  g_any_pending = 1;
}

/* From here on the signals go to the container. SA_RESTART: a request in progress goes on
 * (the signal is forwarded after it); poll() is interrupted all the same. */
static void proxy_signals(const char *cid) {
  g_proxy_cid = cid;
  struct sigaction sa = {.sa_handler = on_proxied, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < N_PROXIED; i++) sigaction(PROXIED[i].sig, &sa, NULL);
}

/* The kill requests of the signals received since the last call; a failed one is ignored
 * (the container may have exited), as Python's and docker's are. */
static void forward_signals(void) {
  while (g_proxy_cid != NULL && g_any_pending) {
    g_any_pending = 0;
    for (size_t i = 0; i < N_PROXIED; i++) {
      if (!g_pending[i]) continue;
      g_pending[i] = 0;
      char tail[64];
      snprintf(tail, sizeof tail, "/kill?signal=%s", PROXIED[i].name);
      failure_t saved = g_fail;
      call("POST", container_url(g_proxy_cid, tail), NULL, NULL);
      g_fail = saved;
    }
  }
}

/* ---- run ----------------------------------------------------------------------------------- */

static int run(void) {
  int detach = o.given[O_DETACH], rm = o.given[O_RM];
  signal(SIGINT, on_sigint);
  signal(SIGPIPE, SIG_IGN);
  /* create, on a connection made first: no daemon there -> Python (it starts one) */
  buf_t url = {0};
  buf_puts(&url, API_PREFIX "/containers/create");
  if (o.given[O_NAME] && o.str[O_NAME][0] != '\0') {
    buf_puts(&url, "?name=");
    url_quote(&url, o.str[O_NAME], " ");
  }
  g_first_fd = http_dial(g_path);
  if (g_first_fd < 0) delegate();
  buf_t out = {0};
  if (call("POST", url.p, body.p, &out) < 0) {
    if (g_fail.kind == F_STATUS) {
      char *lower = py_lower(g_fail.msg);
      /* nothing was created: Python pulls the image ("Unable to find image"), or says
       * what it makes of a response this file does not read */
      if (!g_fail.clean || (g_fail.status == 404 && strstr(lower, "image") != NULL)) delegate();
    }
    report();
  }
  jv_t *created = json_parse(out.p, out.len);
  const jv_t *id = jget(created, "Id");
  if (id == NULL || id->t != J_STR) {
    fail_with(F_UNAVAILABLE, 0, "%s: the create answer has no Id: %.200s", g_what, out.p);
    report();
  }
  const char *cid = id->str;

  if (detach) {
    if (call("POST", container_url(cid, "/start"), NULL, NULL) < 0) start_failed();
    buf_t line = {0};
    buf_puts(&line, cid);
    buf_puts(&line, "\n");
    write_all(1, line.p, line.len);
    return 0;
  }

  proxy_signals(cid); /* the run is not detached and has no TTY (-t goes to Python) */

  /* attach (client.py hijack) */
  int afd = http_dial(g_path);
  if (afd < 0) {
    fail_with(F_UNAVAILABLE, 0, "cannot connect to the pyrt daemon at unix://%s: %s", g_path,
              strerror(-afd));
    report();
  }
  buf_t req = {0};
  buf_puts(&req, "POST ");
  buf_puts(&req, container_url(cid, "/attach?stdin=0&stdout=1&stderr=1&logs=0&stream=1"));
  buf_puts(&req, " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n");
  resp_t ar;
  int err = http_send(afd, req.p, req.len), rc = HTTP_OK;
  if (err == 0) rc = http_head(afd, &ar, &err);
  if (err != 0 || rc == HTTP_ERRNO) {
    fail_errno(g_what, err);
    report();
  }
  if (rc != HTTP_OK) {
    fail_with(F_UNAVAILABLE, 0, rc == HTTP_CLOSED
              ? "%s, POST /containers/%s/attach: connection closed before the response"
              : "%s, POST /containers/%s/attach: not an HTTP/1.1 response", g_what, cid);
    report();
  }
  if (ar.status >= 400) {
    fail_status(&ar);
    report();
  }

  /* wait (client.py wait_begin): the daemon is waiting once its head is read */
  resp_t wr;
  if (request(&wr, "POST", container_url(cid, rm ? "/wait?condition=removed"
                                                   : "/wait?condition=next-exit"), NULL) < 0)
    report();
  if (wr.status >= 400) {
    fail_status(&wr);
    report();
  }
  forward_signals();

  if (call("POST", container_url(cid, "/start"), NULL, NULL) < 0) {
    failure_t f = g_fail;
    close(afd);
    if (rm) call("DELETE", container_url(cid, "?force=1&v=0"), NULL, NULL);
    g_fail = f;
    start_failed();
  }

  /* stream_io: until the attach stream ends, or the wait has answered and the stream has
   * been quiet for DRAIN_QUIET_MS; then (as Python joins its waiter) until the wait has
   * answered. Signals are forwarded all along. */
  buf_t frames = ar.raw, result = {0};
  int waited = 0, attached = 1;
  flush_frames(&frames, ar.multiplexed);
  for (;;) {
    forward_signals();
    if (waited && !attached) break;
    struct pollfd p[2];
    int n = 0, ai = -1, wi = -1;
    if (attached) ai = n, p[n++] = (struct pollfd){.fd = afd, .events = POLLIN};
    if (!waited) wi = n, p[n++] = (struct pollfd){.fd = wr.fd, .events = POLLIN};
    int ready = poll(p, (nfds_t)n, waited ? DRAIN_QUIET_MS : -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      fail_errno(NULL, errno);
      report();
    }
    if (waited && ready == 0) break; /* the stream has gone quiet after the exit */
    if (wi >= 0 && p[wi].revents) {
      int f = http_fill(&wr);
      if (f < 0) {
        fail_errno(NULL, -f);
        report();
      }
      int done = http_body_ready(&wr, &result);
      if (done < 0) {
        fail_with(F_UNAVAILABLE, 0, "%s: connection closed before the end of the body", g_what);
        report();
      }
      waited = done == 1;
    }
    if (ai >= 0 && p[ai].revents) {
      char tmp[65536];
      ssize_t got = recv(afd, tmp, sizeof tmp, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        fail_errno(NULL, errno);
        report();
      }
      if (got == 0) {
        attached = 0;
        continue;
      }
      buf_add(&frames, tmp, (size_t)got);
      flush_frames(&frames, ar.multiplexed);
    }
  }
  close(afd);
  buf_add(&result, "", 0);
  jv_t *res = json_parse(result.p, result.len);
  if (res == NULL || res->t != J_OBJ) {
    fail_with(F_UNAVAILABLE, 0, "%s: the wait answer is not a JSON object: %.200s", g_what,
              result.p);
    report();
  }
  const jv_t *e = jget(res, "Error"), *m = jget(e, "Message");
  if (m != NULL && m->t == J_STR && m->str[0] != '\0') fprintf(stderr, "Error: %s\n", m->str);
  const jv_t *code = jget(res, "StatusCode");
  if (code == NULL) return EXIT_DAEMON;
  if (code->t != J_INT) {
    fail_with(F_UNAVAILABLE, 0, "%s: the wait answer's StatusCode is not a number", g_what);
    report();
  }
  return (int)(code->num & 0xFF);
}

int main(int argc, char **argv) {
  g_argv = argv;
  if (getenv("PYRT_CLI_NO_FAST") != NULL) delegate();
  /* app.py _fast_path: -H X / --host X (repeated), then one --host=X, then "run" */
  int i = 1;
  const char *host = NULL;
  while (i + 1 < argc && (strcmp(argv[i], "-H") == 0 || strcmp(argv[i], "--host") == 0)) {
    host = argv[i + 1];
    i += 2;
  }
  if (i < argc && strncmp(argv[i], "--host=", 7) == 0) host = argv[i++] + 7;
  if (i >= argc || strcmp(argv[i], "run") != 0) delegate();
  for (int k = i + 1; k < argc; k++)
    if (!utf8(argv[k])) delegate();
  if (parse_run(argv + i + 1, argc - i - 1) < 0) delegate();
  if (host == NULL || host[0] == '\0') host = getenv("PYRT_HOST");
  if (host == NULL || host[0] == '\0') host = DEFAULT_HOST;
  if (strncmp(host, "unix://", 7) != 0 || !utf8(host)) delegate();
  g_path = host + 7;
  snprintf(g_what, sizeof g_what, "pyrt daemon at unix://%s", g_path);
  if (build_body() < 0) delegate();
  return run();
}
