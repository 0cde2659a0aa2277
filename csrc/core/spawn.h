/* Spawning a container process: new or joined namespaces, rootfs, process attributes.
 * The parent side runs in the runtime (pyrt-runc or the engine); the child side runs
 * between clone and execve without touching Python. */
#ifndef PYRT_SPAWN_H
#define PYRT_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

typedef struct {
  char *source;           /* NULL for none */
  char *target;           /* absolute path inside the container */
  char *fstype;           /* NULL for bind mounts */
  char *data;             /* fs-specific options, or NULL */
  unsigned long flags;    /* MS_* flags; MS_BIND marks a bind mount */
  unsigned long propagation; /* MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (|MS_REC), or 0 */
} pyrt_mount_t;

typedef struct {
  char *path;             /* absolute path inside the container */
  char type;              /* 'c', 'b', 'p' (fifo) */
  unsigned major, minor;
  mode_t mode;            /* permission bits */
  uid_t uid;
  gid_t gid;
} pyrt_device_t;

typedef struct {
  int resource;           /* RLIMIT_* */
  uint64_t soft, hard;
} pyrt_rlimit_t;

typedef struct {
  int nstype;             /* CLONE_NEW* */
  char *path;             /* e.g. /proc/123/ns/net */
} pyrt_nsjoin_t;

typedef struct {
  char *path;
  char **argv;            /* NULL-terminated */
  char **envp;            /* NULL-terminated */
  int timeout;            /* seconds, 0 for none */
} pyrt_hook_t;

typedef struct {
  /* namespaces */
  int new_ns;                     /* CLONE_NEW* to create */
  pyrt_nsjoin_t *join; size_t n_join;
  char *uid_map, *gid_map;        /* written by the parent for a new user namespace */
  char **cgroup_procs; size_t n_cgroup_procs; /* the parent writes the pid into each */
  /* cgroup v1 "tasks" files the process writes "0" into itself, first thing after the
   * parent's go: a single-threaded task moving itself is spared the kernel's global
   * threadgroup lock, whose writer waits for an RCU grace period while every fork and exit
   * on the machine waits for it. The parent writes the pid into them instead when the
   * process is in a new or joined user or cgroup namespace (pyrt_spawn_joins_itself). */
  char **cgroup_self; size_t n_cgroup_self;
  /* a cgroup v2 directory the process is cloned into (CLONE_INTO_CGROUP: no global lock
   * either); the parent writes the pid into its cgroup.procs when that cannot be */
  char *cgroup_into;

  /* rootfs (init mode only) */
  char *rootfs;                   /* absolute host path; NULL in exec mode */
  int rootfs_readonly;
  int no_pivot;
  unsigned long rootfs_propagation; /* applied to "/" before mounting; 0 → MS_REC|MS_SLAVE */
  pyrt_mount_t *mounts; size_t n_mounts;
  pyrt_device_t *devices; size_t n_devices;
  char **masked_paths; size_t n_masked;
  char **readonly_paths; size_t n_readonly;
  char *hostname, *domainname;    /* NULL: leave alone */
  char **sysctl_keys, **sysctl_values; size_t n_sysctl;

  /* exec mode: join this running container's root (its namespaces come in join[]) */
  pid_t target_pid;

  /* process */
  char **argv, **envp;            /* NULL-terminated */
  char *cwd;
  uid_t uid; gid_t gid;
  gid_t *gids; size_t n_gids; int set_gids;
  int umask;                      /* -1: leave alone */
  pyrt_rlimit_t *rlimits; size_t n_rlimits;
  int set_caps;                   /* 0: leave capabilities as they are */
  uint64_t cap_bounding, cap_effective, cap_inheritable, cap_permitted, cap_ambient;
  int no_new_privileges;
  unsigned char *seccomp_bpf; size_t seccomp_len; /* struct sock_filter[], or NULL */
  unsigned seccomp_flags;         /* SECCOMP_FILTER_FLAG_* */
  int set_oom_score_adj; int oom_score_adj;
  int terminal; int console_fd;   /* with terminal: a connected socket for the pty master */
  int stdio[3];                   /* fds for 0,1,2; -1 keeps the caller's */
  int preserve_fds;               /* fds 3 .. 3+n-1 stay open */
  char *exec_fifo;                /* if set: block on it after setup (create/start split) */
  int barrier;                    /* 1: stop before pivot_root and let the parent run hooks */
  pyrt_hook_t *start_hooks; size_t n_start_hooks; /* run in the container before exec */
  char *state_json;               /* stdin of the start hooks */
} pyrt_spawn_config_t;

/* Called by the parent at the barrier (namespaces made, mounts done, before pivot_root).
 * Returns 0 to go on, negative to abort the spawn. */
typedef int (*pyrt_barrier_cb)(void *arg, pid_t pid);

/* Spawns the container process and returns its host pid once it is set up (and, with
 * exec_fifo, waiting for start), or -1 with err filled. The process is the caller's
 * child. On failure nothing of it remains. */
pid_t pyrt_spawn(const pyrt_spawn_config_t *cfg, pyrt_barrier_cb cb, void *cb_arg,
                 pyrt_error_t *err);

/* Starts argv[0] (a path) with envp through vfork: the child shares the caller's memory
 * until it execs, so nothing of a big caller's page tables is copied. Its
 * stdin, stdout and stderr are /dev/null and fds[i] becomes its fd 3+i (each fds[i] must
 * be 3+i itself or not among the targets 3 .. 3+n_fds-1); its signal mask is empty and
 * SIGPIPE and SIGXFSZ are at their defaults. Returns its pid, or -1 with err filled. */
pid_t pyrt_spawn_exec(char *const argv[], char *const envp[], const int *fds, size_t n_fds,
                      pyrt_error_t *err);

#endif

/* Spawns the container from a detached helper process that then becomes `shim_argv`:
 * engine → A (exits at once) → B: setsid, child subreaper, pyrt_spawn(), then execve of
 * the shim, which so stays the container's parent across an engine restart. The argument
 * equal to "--pid=" in shim_argv is completed with the container's pid. keep_fds stay
 * open (without close-on-exec) in the shim. No barrier callback in this mode.
 * Returns the container pid and stores the shim's pid, or -1 with err filled. */
pid_t pyrt_spawn_detached(const pyrt_spawn_config_t *cfg, char *const shim_argv[],
                          const int *keep_fds, size_t n_keep, pid_t *shim_pid,
                          pyrt_error_t *err);
