/* Container process creation.
 *
 * Parent side (pyrt_spawn): clone the child, write its user-namespace maps and cgroup
 * membership, release it, run the barrier callback, and wait until it reports that it is
 * set up (or that it failed, with errno and context).
 *
 * Child side: runs between clone and execve in a copy of a possibly multi-threaded
 * process, so it calls no allocator and no Python; every failure is sent back to the
 * parent over the sync socket and the child exits.
 *
 * One clone3 suffices when the container only creates namespaces. Joining an existing
 * namespace (or exec into a running container) needs two stages: stage 1 joins, then
 * forks stage 2 with CLONE_PARENT so that the process we hand back is still our child and
 * a joined pid namespace applies to it.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* In a detached spawn, the helper's report pipe: the container closes its copy at once, or
 * the engine, waiting for the pipe's EOF, would wait until the container execs. */
static int detached_report_fd = -1;

static void close_detached_report(void) {
  if (detached_report_fd >= 0) {
    close(detached_report_fd);
    detached_report_fd = -1;
  }
}

/* The child runs in a copy of a multi-threaded process made by a raw clone3, so glibc's
 * own view of threads is stale there: its fork() takes locks other threads may have held,
 * and setgroups/setresuid/setresgid wait for every thread to follow (they never will).
 * The child therefore forks and changes ids with plain system calls. */
static pid_t raw_fork(void) {
  struct clone_args args;
  memset(&args, 0, sizeof(args));
  args.exit_signal = SIGCHLD;
  return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

/* Closes every fd from 3 up except those in keep (negative entries are ignored) and
 * the range [3, 3 + preserve). Right after the clone: the copy of the process holds every
 * fd the runtime had, other threads' pipes included, and a container waiting for `start`
 * must not hold them (their owners wait for EOF). */
static void close_fds_except(const int *keep, size_t n, int preserve) {
  int sorted[16];
  size_t m = 0;
  int first = 3 + (preserve > 0 ? preserve : 0);
  for (size_t i = 0; i < n && m < 16; i++) {
    if (keep[i] < first)
      continue;
    size_t j = m++;
    while (j > 0 && sorted[j - 1] > keep[i]) {
      sorted[j] = sorted[j - 1];
      j--;
    }
    sorted[j] = keep[i];
  }
  unsigned lo = (unsigned)first;
  for (size_t i = 0; i < m; i++) {
    unsigned k = (unsigned)sorted[i];
    if (k > lo)
      syscall(SYS_close_range, lo, k - 1, 0);
    if (k + 1 > lo)
      lo = k + 1;
  }
  syscall(SYS_close_range, lo, ~0U, 0);
}

/* the fds a child of pyrt_spawn must keep: its sync socket, the stdio and console fds it
 * will dup, and an extra one (exec mode's root fd) */
static void close_inherited_fds(const pyrt_spawn_config_t *cfg, int syncfd, int extra) {
  int keep[7] = {syncfd, cfg->stdio[0], cfg->stdio[1], cfg->stdio[2],
                 cfg->terminal ? cfg->console_fd : -1, extra, detached_report_fd};
  close_fds_except(keep, 7, cfg->preserve_fds);
}

enum { MSG_GO = 1, MSG_READY, MSG_ERROR, MSG_BARRIER, MSG_PID, MSG_USERNS, MSG_ABORT };

typedef struct {
  int type;
  int status;
  pid_t pid;
  char msg[512];
} sync_msg_t;

/* ---------- sync channel ---------- */

static int send_msg(int fd, int type, int status, pid_t pid, const char *text) {
  sync_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = type;
  m.status = status;
  m.pid = pid;
  if (text != NULL)
    snprintf(m.msg, sizeof(m.msg), "%s", text);
  ssize_t n;
  do
    n = send(fd, &m, sizeof(m), MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof(m) ? 0 : -1;
}

/* Returns 1 with a message, 0 on EOF, -1 on error. */
static int recv_msg(int fd, sync_msg_t *m) {
  ssize_t n;
  do
    n = recv(fd, m, sizeof(*m), 0);
  while (n < 0 && errno == EINTR);
  if (n == 0)
    return 0;
  if (n != (ssize_t)sizeof(*m))
    return -1;
  return 1;
}

/* ---------- child-side helpers (no allocation) ---------- */

static void child_fail(int syncfd, const pyrt_error_t *err) {
  send_msg(syncfd, MSG_ERROR, err->status ? err->status : EIO, 0, err->msg);
  _exit(125);
}

static void child_wait_go(int syncfd) {
  sync_msg_t m;
  if (recv_msg(syncfd, &m) != 1 || m.type != MSG_GO)
    _exit(125); /* the parent gave up on us */
}

static int write_file_at(int dirfd, const char *path, const char *value, pyrt_error_t *err) {
  int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return pyrt_error_set(err, errno, "open %s", path);
  size_t len = strlen(value);
  ssize_t n = write(fd, value, len);
  int saved = errno;
  close(fd);
  if (n != (ssize_t)len)
    return pyrt_error_set(err, n < 0 ? saved : EIO, "write '%s' to %s", value, path);
  return 0;
}

/* whether the process joins its cgroups itself (cgroup_self, cgroup_into): not from a new
 * or joined user namespace (no right to the host's cgroup files) or cgroup namespace */
static int joins_itself(const pyrt_spawn_config_t *cfg) {
  if (cfg->new_ns & (CLONE_NEWUSER | CLONE_NEWCGROUP))
    return 0;
  for (size_t i = 0; i < cfg->n_join; i++)
    if (cfg->join[i].nstype & (CLONE_NEWUSER | CLONE_NEWCGROUP))
      return 0;
  return 1;
}

static int openat2_in_root(int rootfd, const char *path, int flags, pyrt_error_t *err) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  while (*path == '/')
    path++;
  if (*path == '\0')
    path = ".";
  int fd;
  do
    fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
  while (fd < 0 && errno == EAGAIN);
  if (fd < 0 && err != NULL)
    pyrt_error_set(err, errno, "open %s inside the rootfs", path);
  return fd;
}

#define MAX_TARGET_LINKS 40

/* Makes every missing component of `path` (resolved inside rootfd, never outside it) and
 * returns an O_PATH fd of the final one; the last component is made a file when
 * `as_file`. Symlinks in the image resolve against the rootfs, so they can't escape it;
 * a dangling one (the image's /data -> /mnt/data) has its target made, inside the rootfs
 * too, as runc does. `links`: dangling symlinks followed so far. */
static int mkpath_in_root_at(int rootfd, const char *path, int as_file, int links,
                             pyrt_error_t *err) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
    return pyrt_error_set(err, ENAMETOOLONG, "mount target %s", path);
  int fd = openat2_in_root(rootfd, buf, O_PATH, NULL);
  if (fd >= 0)
    return fd;
  if (errno != ENOENT)
    return pyrt_error_set(err, errno, "resolve %s inside the rootfs", path);

  size_t len = strlen(buf);
  while (len > 1 && buf[len - 1] == '/')
    buf[--len] = '\0';
  char *slash = strrchr(buf, '/');
  const char *name = buf;
  int parent;
  if (slash == NULL || slash == buf) {
    parent = openat2_in_root(rootfd, "/", O_PATH | O_DIRECTORY, err);
    name = slash ? slash + 1 : buf;
  } else {
    *slash = '\0';
    parent = mkpath_in_root_at(rootfd, buf, 0, links, err);
    name = slash + 1;
  }
  if (parent < 0)
    return -1;
  int r;
  if (as_file) {
    r = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (r >= 0)
      close(r);
  } else {
    r = mkdirat(parent, name, 0755);
  }
  if (r < 0 && errno != EEXIST) {
    pyrt_error_set(err, errno, "create %s inside the rootfs", path);
    close(parent);
    return -1;
  }
  char link[PATH_MAX];
  ssize_t n = r < 0 ? readlinkat(parent, name, link, sizeof(link) - 1) : -1;
  close(parent);
  if (n > 0) { /* a dangling symlink: make what it points to */
    link[n] = '\0';
    if (links >= MAX_TARGET_LINKS)
      return pyrt_error_set(err, ELOOP, "resolve %s inside the rootfs", path);
    char next[PATH_MAX];
    const char *dir = (slash != NULL && slash != buf) ? buf : "";
    int w = link[0] == '/' ? snprintf(next, sizeof(next), "%s", link)
                           : snprintf(next, sizeof(next), "%s/%s", dir, link);
    if (w < 0 || w >= (int)sizeof(next))
      return pyrt_error_set(err, ENAMETOOLONG, "mount target %s", path);
    return mkpath_in_root_at(rootfd, next, as_file, links + 1, err);
  }
  if (slash != NULL && slash != buf)
    *slash = '/';
  fd = openat2_in_root(rootfd, path, O_PATH, err);
  return fd;
}

static int mkpath_in_root(int rootfd, const char *path, int as_file, pyrt_error_t *err) {
  return mkpath_in_root_at(rootfd, path, as_file, 0, err);
}

static void fd_path(char *out, size_t size, int fd) {
  snprintf(out, size, "/proc/self/fd/%d", fd);
}

/* Flags a bind remount must keep: in a user namespace the kernel refuses to clear them. */
static unsigned long locked_flags(const char *path) {
  struct statvfs sv;
  unsigned long flags = 0;
  if (statvfs(path, &sv) < 0)
    return 0;
  if (sv.f_flag & ST_NOSUID)
    flags |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV)
    flags |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC)
    flags |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME)
    flags |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME)
    flags |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME)
    flags |= MS_RELATIME;
  return flags;
}

#define PROPAGATION_FLAGS (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)
#define REMOUNT_FLAGS                                                                          \
  (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME |  \
   MS_STRICTATIME | MS_SYNCHRONOUS | MS_DIRSYNC)

/* The new mount API (open_tree, move_mount, mount_setattr: Linux 5.12), spelled out for
 * headers that lack it. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define PYRT_ATTR_RDONLY 0x01ULL
#define PYRT_ATTR_NOSUID 0x02ULL
#define PYRT_ATTR_NODEV 0x04ULL
#define PYRT_ATTR_NOEXEC 0x08ULL
#define PYRT_ATTR_ATIME 0x70ULL /* the atime mode's bits: 0 relatime */
#define PYRT_ATTR_NOATIME 0x10ULL
#define PYRT_ATTR_STRICTATIME 0x20ULL
#define PYRT_ATTR_NODIRATIME 0x80ULL

struct pyrt_mount_attr {
  unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

static int mount_setattr_fd(int fd, int recursive, struct pyrt_mount_attr *attr) {
  return (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0),
                      attr, sizeof(*attr));
}

/* A bind mount made detached (open_tree), given its flags (read-only, recursively with
 * rbind, as docker's "rro") before anyone can see it, attached to the fd `target` that
 * mkpath_in_root resolved inside the rootfs (move_mount), its propagation then set
 * through the same mount fd. No path is looked up after `target` was resolved, so a
 * symlink swapped in meanwhile (a shared volume another container writes) can neither
 * move the mount nor leave it writable. 1: done; 0: the kernel lacks the API; -1: error. */
static int bind_at_fd(const pyrt_mount_t *m, int target, pyrt_error_t *err) {
  int rec = (m->flags & MS_REC) != 0;
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, m->source,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0));
  if (tree < 0)
    return errno == ENOSYS ? 0 : pyrt_error_set(err, errno, "clone the tree of %s", m->source);
  struct pyrt_mount_attr attr;
  memset(&attr, 0, sizeof(attr));
  unsigned long f = m->flags;
  attr.attr_set |= (f & MS_RDONLY ? PYRT_ATTR_RDONLY : 0) | (f & MS_NOSUID ? PYRT_ATTR_NOSUID : 0) |
                   (f & MS_NODEV ? PYRT_ATTR_NODEV : 0) | (f & MS_NOEXEC ? PYRT_ATTR_NOEXEC : 0) |
                   (f & MS_NODIRATIME ? PYRT_ATTR_NODIRATIME : 0);
  if (f & (MS_NOATIME | MS_STRICTATIME | MS_RELATIME)) {
    attr.attr_clr |= PYRT_ATTR_ATIME;
    attr.attr_set |= f & MS_NOATIME ? PYRT_ATTR_NOATIME
                                    : (f & MS_STRICTATIME ? PYRT_ATTR_STRICTATIME : 0);
  }
  int r = 0, saved = 0;
  if ((attr.attr_set || attr.attr_clr) && mount_setattr_fd(tree, rec, &attr) < 0) {
    saved = errno;
    close(tree);
    return pyrt_error_set(err, saved, "set the options of the bind of %s on %s", m->source,
                          m->target);
  }
  r = (int)syscall(SYS_move_mount, tree, "", target, "",
                   MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
  if (r < 0) {
    saved = errno;
    close(tree);
    return pyrt_error_set(err, saved, "mount %s on %s (bind)", m->source, m->target);
  }
  if (m->propagation != 0) {
    memset(&attr, 0, sizeof(attr));
    attr.propagation = m->propagation & ~(unsigned long)MS_REC;
    if (mount_setattr_fd(tree, (m->propagation & MS_REC) != 0, &attr) < 0) {
      saved = errno;
      close(tree);
      return pyrt_error_set(err, saved, "set the propagation of the bind of %s on %s",
                            m->source, m->target);
    }
  }
  close(tree);
  return 1;
}

static int do_mount(int rootfd, const pyrt_mount_t *m, pyrt_error_t *err) {
  int is_bind = (m->flags & MS_BIND) != 0;
  int as_file = 0;
  if (is_bind && m->source != NULL) {
    struct stat st;
    if (stat(m->source, &st) < 0)
      return pyrt_error_set(err, errno, "bind mount source %s", m->source);
    as_file = !S_ISDIR(st.st_mode);
  }
  int target = mkpath_in_root(rootfd, m->target, as_file, err);
  if (target < 0)
    return -1;
  if (is_bind && m->source != NULL) {
    int done = bind_at_fd(m, target, err);
    if (done != 0) {
      close(target);
      return done < 0 ? -1 : 0;
    }
  }
  char tpath[64];
  fd_path(tpath, sizeof(tpath), target);

  int r;
  if (is_bind) {
    r = mount(m->source, tpath, NULL, MS_BIND | (m->flags & MS_REC), NULL);
  } else {
    r = mount(m->source ? m->source : m->fstype, tpath, m->fstype,
              m->flags & ~(unsigned long)PROPAGATION_FLAGS, m->data);
    if (r < 0 && errno == EPERM && m->fstype && strcmp(m->fstype, "sysfs") == 0) {
      /* a sysfs mount is refused without a network namespace of our own: bind the host's */
      r = mount("/sys", tpath, NULL, MS_BIND | MS_REC, NULL);
      is_bind = 1;
    }
  }
  if (r < 0) {
    int saved = errno;
    close(target);
    return pyrt_error_set(err, saved, "mount %s on %s (%s)", m->source ? m->source : "none",
                          m->target, m->fstype ? m->fstype : "bind");
  }
  close(target);

  /* reopen: the fd we had points below the new mount, not at it */
  target = openat2_in_root(rootfd, m->target, O_PATH, err);
  if (target < 0)
    return -1;
  fd_path(tpath, sizeof(tpath), target);
  unsigned long remount = m->flags & REMOUNT_FLAGS;
  if (is_bind && remount != 0) {
    r = mount(NULL, tpath, NULL, MS_BIND | MS_REMOUNT | remount | locked_flags(tpath), NULL);
    if (r < 0) {
      int saved = errno;
      close(target);
      return pyrt_error_set(err, saved, "remount bind %s with its options", m->target);
    }
  }
  if (m->propagation != 0) {
    r = mount(NULL, tpath, NULL, m->propagation, NULL);
    if (r < 0) {
      int saved = errno;
      close(target);
      return pyrt_error_set(err, saved, "set propagation of %s", m->target);
    }
  }
  close(target);
  return 0;
}

static int make_device(int rootfd, const pyrt_device_t *d, pyrt_error_t *err) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof(buf), "%s", d->path) >= (int)sizeof(buf))
    return pyrt_error_set(err, ENAMETOOLONG, "device %s", d->path);
  char *slash = strrchr(buf, '/');
  if (slash == NULL || slash[1] == '\0')
    return pyrt_error_set(err, EINVAL, "device path %s", d->path);
  *slash = '\0';
  int parent = mkpath_in_root(rootfd, buf[0] ? buf : "/", 0, err);
  if (parent < 0)
    return -1;
  /* O_PATH fds can't be used with mknodat: reopen the parent as a real directory */
  char ppath[64];
  fd_path(ppath, sizeof(ppath), parent);
  int dir = open(ppath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  close(parent);
  if (dir < 0)
    return pyrt_error_set(err, errno, "open parent of device %s", d->path);
  const char *name = slash + 1;
  mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
  unlinkat(dir, name, 0);
  int r = mknodat(dir, name, type | (d->mode & 07777), makedev(d->major, d->minor));
  if (r < 0 && errno == EPERM && type != S_IFIFO) {
    /* no mknod in a user namespace: bind the host's node, which must exist */
    int fd = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
      int saved = errno;
      close(dir);
      return pyrt_error_set(err, saved, "create bind target for device %s", d->path);
    }
    close(fd);
    int t = openat2_in_root(rootfd, d->path, O_PATH, err);
    if (t < 0) {
      close(dir);
      return -1;
    }
    char tpath[64];
    fd_path(tpath, sizeof(tpath), t);
    r = mount(d->path, tpath, NULL, MS_BIND, NULL);
    int saved = errno;
    close(t);
    close(dir);
    if (r < 0)
      return pyrt_error_set(err, saved, "bind host device %s", d->path);
    return 0;
  }
  if (r < 0) {
    int saved = errno;
    close(dir);
    return pyrt_error_set(err, saved, "mknod %s", d->path);
  }
  r = fchownat(dir, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW);
  int saved = errno;
  close(dir);
  if (r < 0)
    return pyrt_error_set(err, saved, "chown device %s", d->path);
  return 0;
}

static void make_dev_symlinks(int rootfd) {
  static const char *const links[][2] = {
      {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
      {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
  };
  int dev = openat2_in_root(rootfd, "/dev", O_RDONLY | O_DIRECTORY, NULL);
  if (dev < 0)
    return;
  for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
    if (strcmp(links[i][1], "ptmx") == 0) {
      struct stat st;
      if (fstatat(dev, "pts", &st, 0) < 0)
        continue;
      unlinkat(dev, "ptmx", 0); /* a devpts instance of our own replaces any old node */
    }
    symlinkat(links[i][0], dev, links[i][1]); /* EEXIST: the image has its own, keep it */
  }
  close(dev);
}

static int do_pivot(const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  if (chdir(cfg->rootfs) < 0)
    return pyrt_error_set(err, errno, "chdir to rootfs %s", cfg->rootfs);
  if (cfg->no_pivot) {
    if (mount(cfg->rootfs, "/", NULL, MS_MOVE, NULL) < 0)
      return pyrt_error_set(err, errno, "move rootfs %s to /", cfg->rootfs);
    if (chroot(".") < 0)
      return pyrt_error_set(err, errno, "chroot to %s", cfg->rootfs);
    if (chdir("/") < 0)
      return pyrt_error_set(err, errno, "chdir to / in the rootfs");
    return 0;
  }
  int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0)
    return pyrt_error_set(err, errno, "open old root");
  /* pivot_root(".", ".") stacks the old root on top of the new one; detach it after */
  if (syscall(SYS_pivot_root, ".", ".") < 0) {
    int saved = errno;
    close(oldroot);
    return pyrt_error_set(err, saved, "pivot_root to %s", cfg->rootfs);
  }
  if (fchdir(oldroot) < 0) {
    int saved = errno;
    close(oldroot);
    return pyrt_error_set(err, saved, "fchdir to old root");
  }
  close(oldroot);
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
    return pyrt_error_set(err, errno, "make old root rslave");
  if (umount2(".", MNT_DETACH) < 0)
    return pyrt_error_set(err, errno, "detach old root");
  if (chdir("/") < 0)
    return pyrt_error_set(err, errno, "chdir to new root");
  return 0;
}

static int mask_path(const char *path, pyrt_error_t *err) {
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return pyrt_error_set(err, errno, "masked path %s", path);
  }
  int r;
  if (S_ISDIR(st.st_mode))
    r = mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k");
  else
    r = mount("/dev/null", path, NULL, MS_BIND, NULL);
  if (r < 0 && errno != ENOENT)
    return pyrt_error_set(err, errno, "mask %s", path);
  return 0;
}

static int readonly_path(const char *path, pyrt_error_t *err) {
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
    if (errno == ENOENT)
      return 0;
    return pyrt_error_set(err, errno, "bind %s read-only", path);
  }
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(path);
  if (mount(NULL, path, NULL, flags, NULL) < 0)
    return pyrt_error_set(err, errno, "remount %s read-only", path);
  return 0;
}

static int set_sysctls(const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  for (size_t i = 0; i < cfg->n_sysctl; i++) {
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "/proc/sys/%s", cfg->sysctl_keys[i]);
    if (n >= (int)sizeof(path))
      return pyrt_error_set(err, ENAMETOOLONG, "sysctl %s", cfg->sysctl_keys[i]);
    for (char *p = path + 10; *p; p++)
      if (*p == '.')
        *p = '/';
    if (write_file_at(AT_FDCWD, path, cfg->sysctl_values[i], err) < 0)
      return pyrt_error_set(err, err->status, "set sysctl %s=%s", cfg->sysctl_keys[i],
                            cfg->sysctl_values[i]);
  }
  return 0;
}

static int send_fd(int sock, int fd, pyrt_error_t *err) {
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof(u));
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof(u.buf)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0)
    return pyrt_error_set(err, errno, "send the pty master to the console socket");
  return 0;
}

static int setup_terminal(const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return pyrt_error_set(err, errno, "open /dev/ptmx in the container");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
    int saved = errno;
    close(master);
    return pyrt_error_set(err, saved, "unlock the pty");
  }
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    int saved = errno;
    close(master);
    return pyrt_error_set(err, saved, "open the pty peer");
  }
  if (send_fd(cfg->console_fd, master, err) < 0) {
    close(master);
    close(slave);
    return -1;
  }
  close(master);
  for (int i = 0; i < 3; i++)
    if (dup2(slave, i) < 0)
      return pyrt_error_set(err, errno, "dup the pty onto fd %d", i);
  if (slave > 2)
    close(slave);
  if (ioctl(0, TIOCSCTTY, 0) < 0)
    return pyrt_error_set(err, errno, "make the pty the controlling terminal");
  return 0;
}

static int setup_stdio(const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  for (int i = 0; i < 3; i++) {
    if (cfg->stdio[i] < 0 || cfg->stdio[i] == i)
      continue;
    if (dup2(cfg->stdio[i], i) < 0)
      return pyrt_error_set(err, errno, "dup stdio fd %d onto %d", cfg->stdio[i], i);
  }
  return 0;
}

static int install_seccomp(const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  struct sock_fprog prog = {
      .len = (unsigned short)(cfg->seccomp_len / sizeof(struct sock_filter)),
      .filter = (struct sock_filter *)cfg->seccomp_bpf,
  };
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, cfg->seccomp_flags, &prog) == 0)
    return 0;
  if (errno == ENOSYS && cfg->seccomp_flags == 0 &&
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0)
    return 0;
  return pyrt_error_set(err, errno, "load the seccomp filter");
}

static int set_capabilities(const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof(data));
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(cfg->cap_effective >> (32 * i));
    data[i].permitted = (uint32_t)(cfg->cap_permitted >> (32 * i));
    data[i].inheritable = (uint32_t)(cfg->cap_inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0)
    return pyrt_error_set(err, errno, "set capabilities");
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap < 64; cap++) {
    if (!(cfg->cap_ambient & (1ULL << cap)))
      continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      return pyrt_error_set(err, errno, "raise ambient capability %d", cap);
  }
  return 0;
}

static int last_cap(void) {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return CAP_LAST_CAP;
  char buf[16] = {0};
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n > 0 ? atoi(buf) : CAP_LAST_CAP;
}

static const char *env_get(char **envp, const char *name) {
  size_t len = strlen(name);
  for (char **e = envp; e && *e; e++)
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
      return *e + len + 1;
  return NULL;
}

/* Finds argv[0] along the container's PATH (its env, not ours), as execvp would. */
static int resolve_exec(const pyrt_spawn_config_t *cfg, char *out, size_t size,
                        pyrt_error_t *err) {
  const char *name = cfg->argv[0];
  if (strchr(name, '/') != NULL) {
    snprintf(out, size, "%s", name);
    if (access(out, F_OK) < 0)
      return pyrt_error_set(err, errno, "exec: \"%s\"", name);
    return 0;
  }
  const char *path = env_get(cfg->envp, "PATH");
  if (path == NULL)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int found_noexec = 0;
  while (*path) {
    const char *end = strchr(path, ':');
    size_t dlen = end ? (size_t)(end - path) : strlen(path);
    if (dlen == 0)
      snprintf(out, size, "%s", name);
    else
      snprintf(out, size, "%.*s/%s", (int)dlen, path, name);
    struct stat st;
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(out, X_OK) == 0)
        return 0;
      found_noexec = 1;
    }
    if (!end)
      break;
    path = end + 1;
  }
  if (found_noexec)
    return pyrt_error_set(err, EACCES, "exec: \"%s\": permission denied", name);
  return pyrt_error_set(err, ENOENT, "exec: \"%s\": executable file not found in $PATH", name);
}

static void run_start_hooks(const pyrt_spawn_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_start_hooks; i++) {
    const pyrt_hook_t *h = &cfg->start_hooks[i];
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
      _exit(125);
    pid_t pid = raw_fork();
    if (pid < 0)
      _exit(125);
    if (pid == 0) {
      dup2(pipefd[0], 0);
      execve(h->path, h->argv, h->envp);
      dprintf(2, "pyrt: startContainer hook %s: %s\n", h->path, strerror(errno));
      _exit(127);
    }
    close(pipefd[0]);
    if (cfg->state_json) {
      size_t len = strlen(cfg->state_json);
      ssize_t w = write(pipefd[1], cfg->state_json, len);
      (void)w;
    }
    close(pipefd[1]);
    int status = 0;
    int waited = 0;
    for (;;) {
      pid_t r = waitpid(pid, &status, h->timeout > 0 ? WNOHANG : 0);
      if (r == pid)
        break;
      if (r < 0 && errno != EINTR)
        break;
      if (h->timeout > 0) {
        if (waited >= h->timeout * 100) {
          kill(pid, SIGKILL);
          waitpid(pid, &status, 0);
          dprintf(2, "pyrt: startContainer hook %s timed out\n", h->path);
          _exit(125);
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited++;
      }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      dprintf(2, "pyrt: startContainer hook %s failed\n", h->path);
      _exit(125);
    }
  }
}

/* Everything about the process itself, shared by init and exec: limits, identity,
 * capabilities, seccomp, cwd, fds, and finally execve. Never returns. */
static void finish_process(const pyrt_spawn_config_t *cfg, int syncfd, int fifofd, int procfd) {
  pyrt_error_t err;
  pyrt_error_clear(&err);

  if (cfg->terminal) {
    if (setup_terminal(cfg, &err) < 0)
      child_fail(syncfd, &err);
  } else if (setup_stdio(cfg, &err) < 0) {
    child_fail(syncfd, &err);
  }
  if (cfg->set_oom_score_adj) {
    char v[32];
    snprintf(v, sizeof(v), "%d", cfg->oom_score_adj);
    if (write_file_at(AT_FDCWD, "/proc/self/oom_score_adj", v, &err) < 0)
      child_fail(syncfd, &err);
  }
  for (size_t i = 0; i < cfg->n_rlimits; i++) {
    struct rlimit rl = {.rlim_cur = cfg->rlimits[i].soft, .rlim_max = cfg->rlimits[i].hard};
    if (setrlimit(cfg->rlimits[i].resource, &rl) < 0) {
      pyrt_error_set(&err, errno, "set rlimit %d to %llu/%llu", cfg->rlimits[i].resource,
                     (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
      child_fail(syncfd, &err);
    }
  }
  if (cfg->umask >= 0)
    umask((mode_t)cfg->umask);

  if (cfg->set_caps) {
    int last = last_cap();
    for (int cap = 0; cap <= last; cap++) {
      if (cfg->cap_bounding & (1ULL << cap))
        continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
        pyrt_error_set(&err, errno, "drop capability %d from the bounding set", cap);
        child_fail(syncfd, &err);
      }
    }
  }
  /* without no_new_privs the filter needs CAP_SYS_ADMIN, which setuid may take away */
  if (cfg->seccomp_bpf && !cfg->no_new_privileges && install_seccomp(cfg, &err) < 0)
    child_fail(syncfd, &err);

  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
    pyrt_error_set(&err, errno, "keep capabilities across setuid");
    child_fail(syncfd, &err);
  }
  if (cfg->set_gids && syscall(SYS_setgroups, cfg->n_gids, cfg->gids) < 0 &&
      !(errno == EPERM && cfg->n_gids == 0)) {
    pyrt_error_set(&err, errno, "set additional groups");
    child_fail(syncfd, &err);
  }
  if (syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid) < 0) {
    pyrt_error_set(&err, errno, "set gid %u", (unsigned)cfg->gid);
    child_fail(syncfd, &err);
  }
  if (syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid) < 0) {
    pyrt_error_set(&err, errno, "set uid %u", (unsigned)cfg->uid);
    child_fail(syncfd, &err);
  }
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  if (cfg->set_caps && set_capabilities(cfg, &err) < 0)
    child_fail(syncfd, &err);

  if (cfg->cwd && chdir(cfg->cwd) < 0) {
    pyrt_error_set(&err, errno, "chdir to cwd %s", cfg->cwd);
    child_fail(syncfd, &err);
  }
  if (cfg->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    pyrt_error_set(&err, errno, "set no_new_privs");
    child_fail(syncfd, &err);
  }

  /* Whatever fds the runtime had open close at exec; ours are O_CLOEXEC already. */
  unsigned first = 3 + (unsigned)(cfg->preserve_fds > 0 ? cfg->preserve_fds : 0);
  if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    for (int fd = (int)first; fd < 65536; fd++) {
      int fl = fcntl(fd, F_GETFD);
      if (fl >= 0)
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
  }
  for (int fd = 3; fd < (int)first; fd++)
    fcntl(fd, F_SETFD, 0);

  char exe[PATH_MAX];
  if (resolve_exec(cfg, exe, sizeof(exe), &err) < 0)
    child_fail(syncfd, &err);

  if (fifofd >= 0) {
    /* created: tell the parent, then wait for `start` to open the fifo */
    send_msg(syncfd, MSG_READY, 0, 0, NULL);
    char p[64];
    snprintf(p, sizeof(p), "thread-self/fd/%d", fifofd);
    int w = openat(procfd, p, O_WRONLY | O_CLOEXEC);
    if (w < 0) {
      dprintf(2, "pyrt: open exec fifo: %s\n", strerror(errno));
      _exit(125);
    }
    if (write(w, "0", 1) != 1) {
      dprintf(2, "pyrt: write exec fifo: %s\n", strerror(errno));
      _exit(125);
    }
    close(w);
    close(fifofd);
    close(procfd);
    run_start_hooks(cfg);
  }
  if (cfg->seccomp_bpf && cfg->no_new_privileges && install_seccomp(cfg, &err) < 0) {
    if (fifofd < 0)
      child_fail(syncfd, &err);
    dprintf(2, "pyrt: %s: %s\n", err.msg, strerror(err.status));
    _exit(125);
  }
  execve(exe, cfg->argv, cfg->envp);
  int code = errno == ENOENT ? 127 : 126;
  pyrt_error_set(&err, errno, "exec %s", exe);
  if (fifofd < 0) {
    send_msg(syncfd, MSG_ERROR, err.status, 0, err.msg);
    _exit(code);
  }
  dprintf(2, "pyrt: %s: %s\n", err.msg, strerror(err.status));
  _exit(code);
}

/* The container's first process: rootfs, then the process. Never returns. */
/* A network namespace the clone made has only lo, and down: up, as runc and crun leave
 * it (the engine no longer makes NetworkMode none's namespace itself). */
static int loopback_up(pyrt_error_t *err) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return pyrt_error_set(err, errno, "socket to bring lo up");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, "lo", 3);
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int e = errno;
  close(s);
  return rc < 0 ? pyrt_error_set(err, e, "bring lo up in the new network namespace") : 0;
}

static void init_child(const pyrt_spawn_config_t *cfg, int syncfd) {
  pyrt_error_t err;
  pyrt_error_clear(&err);
  close_detached_report();
  close_inherited_fds(cfg, syncfd, -1);
  child_wait_go(syncfd);
  if (joins_itself(cfg))
    for (size_t i = 0; i < cfg->n_cgroup_self; i++)
      if (write_file_at(AT_FDCWD, cfg->cgroup_self[i], "0", &err) < 0)
        child_fail(syncfd, &err);
  if ((cfg->new_ns & CLONE_NEWNET) && loopback_up(&err) < 0)
    child_fail(syncfd, &err);

  if (setsid() < 0) {
    pyrt_error_set(&err, errno, "setsid");
    child_fail(syncfd, &err);
  }
  int fifofd = -1, procfd = -1;
  if (cfg->exec_fifo) {
    fifofd = open(cfg->exec_fifo, O_PATH | O_CLOEXEC);
    if (fifofd < 0) {
      pyrt_error_set(&err, errno, "open exec fifo %s", cfg->exec_fifo);
      child_fail(syncfd, &err);
    }
    procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0) {
      pyrt_error_set(&err, errno, "open /proc");
      child_fail(syncfd, &err);
    }
  }
  if (cfg->new_ns & CLONE_NEWNS) {
    unsigned long prop = cfg->rootfs_propagation ? cfg->rootfs_propagation : MS_REC | MS_SLAVE;
    if (mount(NULL, "/", NULL, prop, NULL) < 0) {
      pyrt_error_set(&err, errno, "set propagation of / in the container");
      child_fail(syncfd, &err);
    }
  }
  if (mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
    pyrt_error_set(&err, errno, "bind rootfs %s onto itself", cfg->rootfs);
    child_fail(syncfd, &err);
  }
  int rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) {
    pyrt_error_set(&err, errno, "open rootfs %s", cfg->rootfs);
    child_fail(syncfd, &err);
  }
  for (size_t i = 0; i < cfg->n_mounts; i++)
    if (do_mount(rootfd, &cfg->mounts[i], &err) < 0)
      child_fail(syncfd, &err);
  for (size_t i = 0; i < cfg->n_devices; i++)
    if (make_device(rootfd, &cfg->devices[i], &err) < 0)
      child_fail(syncfd, &err);
  make_dev_symlinks(rootfd);
  close(rootfd);

  if (cfg->barrier) {
    send_msg(syncfd, MSG_BARRIER, 0, 0, NULL);
    child_wait_go(syncfd);
  }
  if (do_pivot(cfg, &err) < 0)
    child_fail(syncfd, &err);
  /* sysctls go in before /proc/sys turns read-only below */
  if (set_sysctls(cfg, &err) < 0)
    child_fail(syncfd, &err);
  for (size_t i = 0; i < cfg->n_masked; i++)
    if (mask_path(cfg->masked_paths[i], &err) < 0)
      child_fail(syncfd, &err);
  for (size_t i = 0; i < cfg->n_readonly; i++)
    if (readonly_path(cfg->readonly_paths[i], &err) < 0)
      child_fail(syncfd, &err);
  if (cfg->rootfs_readonly &&
      mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"), NULL) < 0) {
    pyrt_error_set(&err, errno, "remount the rootfs read-only");
    child_fail(syncfd, &err);
  }
  if (cfg->hostname && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0) {
    pyrt_error_set(&err, errno, "set hostname %s", cfg->hostname);
    child_fail(syncfd, &err);
  }
  if (cfg->domainname && setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0) {
    pyrt_error_set(&err, errno, "set domainname %s", cfg->domainname);
    child_fail(syncfd, &err);
  }
  finish_process(cfg, syncfd, fifofd, procfd);
}

/* exec: enter the running container's root (namespaces were joined by stage 1). */
static void exec_child(const pyrt_spawn_config_t *cfg, int syncfd, int rootfd) {
  pyrt_error_t err;
  pyrt_error_clear(&err);
  close_detached_report();
  close_inherited_fds(cfg, syncfd, rootfd);
  child_wait_go(syncfd);
  if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0) {
    pyrt_error_set(&err, errno, "enter the root of container process %d", (int)cfg->target_pid);
    child_fail(syncfd, &err);
  }
  close(rootfd);
  if (cfg->terminal && setsid() < 0) {
    pyrt_error_set(&err, errno, "setsid");
    child_fail(syncfd, &err);
  }
  finish_process(cfg, syncfd, -1, -1);
}

/* clone3 into the cgroup v2 directory at cgroup_fd (CLONE_INTO_CGROUP) when it is >= 0 */
static pid_t clone3_fork_into(unsigned long long flags, int cgroup_fd, pyrt_error_t *err) {
  struct clone_args args;
  memset(&args, 0, sizeof(args));
  args.flags = flags;
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (unsigned long long)cgroup_fd;
  }
  /* with CLONE_PARENT the child inherits our exit signal; clone3 wants 0 then */
  args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0 && errno == ENOSYS && (flags & CLONE_NEWTIME) == 0 && cgroup_fd < 0)
    pid = syscall(SYS_clone, (unsigned long)flags | ((flags & CLONE_PARENT) ? 0 : SIGCHLD), NULL,
                  NULL, NULL, 0);
  if (pid < 0)
    return pyrt_error_set(err, errno, "clone with namespaces 0x%llx", flags);
  return (pid_t)pid;
}

static pid_t clone3_fork(unsigned long long flags, pyrt_error_t *err) {
  return clone3_fork_into(flags, -1, err);
}

/* Stage 1: join namespaces, create new ones, fork the real process with CLONE_PARENT. */
static void stage1(const pyrt_spawn_config_t *cfg, int syncfd) {
  pyrt_error_t err;
  pyrt_error_clear(&err);
  close_inherited_fds(cfg, syncfd, -1); /* keeps the detached report fd: stage 2 closes it */
  int rootfd = -1;
  if (cfg->target_pid > 0) {
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/root", (int)cfg->target_pid);
    rootfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
      pyrt_error_set(&err, errno, "open the root of container process %d", (int)cfg->target_pid);
      child_fail(syncfd, &err);
    }
  }
  /* all fds first: once in the container's mount namespace the paths are gone */
  int fds[16];
  size_t n = cfg->n_join < 16 ? cfg->n_join : 16;
  for (size_t i = 0; i < n; i++) {
    fds[i] = open(cfg->join[i].path, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) {
      pyrt_error_set(&err, errno, "open namespace %s", cfg->join[i].path);
      child_fail(syncfd, &err);
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (setns(fds[i], cfg->join[i].nstype) < 0) {
      pyrt_error_set(&err, errno, "join namespace %s", cfg->join[i].path);
      child_fail(syncfd, &err);
    }
    close(fds[i]);
  }
  if (cfg->new_ns) {
    if (unshare(cfg->new_ns) < 0) {
      pyrt_error_set(&err, errno, "unshare namespaces 0x%x", cfg->new_ns);
      child_fail(syncfd, &err);
    }
    if (cfg->new_ns & CLONE_NEWUSER) {
      send_msg(syncfd, MSG_USERNS, 0, getpid(), NULL);
      child_wait_go(syncfd);
    }
  }
  pid_t pid = clone3_fork(CLONE_PARENT, &err);
  if (pid < 0)
    child_fail(syncfd, &err);
  if (pid == 0) {
    if (cfg->target_pid > 0)
      exec_child(cfg, syncfd, rootfd);
    init_child(cfg, syncfd);
  }
  send_msg(syncfd, MSG_PID, 0, pid, NULL);
  _exit(0);
}

/* ---------- parent side ---------- */

static int write_id_maps(pid_t pid, const pyrt_spawn_config_t *cfg, pyrt_error_t *err) {
  char path[64];
  if (cfg->uid_map) {
    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    if (write_file_at(AT_FDCWD, path, cfg->uid_map, err) < 0)
      return -1;
  }
  if (cfg->gid_map) {
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    if (write_file_at(AT_FDCWD, path, cfg->gid_map, err) < 0)
      return -1;
  }
  return 0;
}

/* the parent's part of the cgroup joins: cgroup_procs, and cgroup_self and cgroup_into
 * when the process does not join them itself (cloned_into: CLONE_INTO_CGROUP was used) */
static int join_cgroups(pid_t pid, const pyrt_spawn_config_t *cfg, int cloned_into,
                        pyrt_error_t *err) {
  char v[32];
  snprintf(v, sizeof(v), "%d", (int)pid);
  for (size_t i = 0; i < cfg->n_cgroup_procs; i++)
    if (write_file_at(AT_FDCWD, cfg->cgroup_procs[i], v, err) < 0)
      return -1;
  if (!joins_itself(cfg))
    for (size_t i = 0; i < cfg->n_cgroup_self; i++)
      if (write_file_at(AT_FDCWD, cfg->cgroup_self[i], v, err) < 0)
        return -1;
  if (cfg->cgroup_into != NULL && !cloned_into) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/cgroup.procs", cfg->cgroup_into) >= (int)sizeof(path))
      return pyrt_error_set(err, ENAMETOOLONG, "cgroup %s", cfg->cgroup_into);
    if (write_file_at(AT_FDCWD, path, v, err) < 0)
      return -1;
  }
  return 0;
}

static void reap(pid_t pid) {
  if (pid <= 0)
    return;
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
}

pid_t pyrt_spawn(const pyrt_spawn_config_t *cfg, pyrt_barrier_cb cb, void *cb_arg,
                 pyrt_error_t *err) {
  int sv[2];
  if (cfg->argv == NULL || cfg->argv[0] == NULL)
    return pyrt_error_set(err, EINVAL, "process.args is empty");
  if (cfg->rootfs == NULL && cfg->target_pid <= 0)
    return pyrt_error_set(err, EINVAL, "spawn needs a rootfs or a target process");
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return pyrt_error_set(err, errno, "socketpair for the container sync channel");

  int two_stage = cfg->n_join > 0 || cfg->target_pid > 0 || (cfg->new_ns & CLONE_NEWTIME);
  /* straight into the v2 cgroup when the process is cloned here (one stage) */
  int into_fd = -1;
  if (cfg->cgroup_into != NULL && !two_stage && joins_itself(cfg))
    into_fd = open(cfg->cgroup_into, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  pid_t first = clone3_fork_into(two_stage ? 0 : (unsigned long long)cfg->new_ns, into_fd, err);
  if (first < 0 && into_fd >= 0) { /* a kernel before 5.7: the parent writes it below */
    close(into_fd);
    into_fd = -1;
    pyrt_error_clear(err);
    first = clone3_fork(two_stage ? 0 : (unsigned long long)cfg->new_ns, err);
  }
  int cloned_into = into_fd >= 0;
  if (into_fd >= 0)
    close(into_fd);
  if (first < 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (first == 0) {
    close(sv[0]);
    if (two_stage)
      stage1(cfg, sv[1]);
    init_child(cfg, sv[1]);
  }
  close(sv[1]);
  int sync = sv[0];
  pid_t pid = two_stage ? 0 : first;
  sync_msg_t m;

  if (two_stage) {
    for (;;) {
      int r = recv_msg(sync, &m);
      if (r <= 0) {
        pyrt_error_set(err, r < 0 ? errno : EIO, "stage 1 of the container process ended early");
        goto fail;
      }
      if (m.type == MSG_ERROR) {
        pyrt_error_set(err, m.status, "%s", m.msg);
        goto fail;
      }
      if (m.type == MSG_USERNS) {
        if (write_id_maps(first, cfg, err) < 0 || send_msg(sync, MSG_GO, 0, 0, NULL) < 0)
          goto fail;
        continue;
      }
      if (m.type == MSG_PID) {
        pid = m.pid;
        break;
      }
    }
    while (waitpid(first, NULL, 0) < 0 && errno == EINTR)
      ;
    first = 0;
  } else if (cfg->new_ns & CLONE_NEWUSER) {
    if (write_id_maps(pid, cfg, err) < 0)
      goto fail;
  }
  if (join_cgroups(pid, cfg, cloned_into, err) < 0)
    goto fail;
  if (send_msg(sync, MSG_GO, 0, 0, NULL) < 0) {
    pyrt_error_set(err, errno, "release the container process");
    goto fail;
  }
  for (;;) {
    int r = recv_msg(sync, &m);
    if (r < 0) {
      pyrt_error_set(err, errno, "read the container sync channel");
      goto fail;
    }
    if (r == 0) /* exec succeeded: the channel closed on exec */
      break;
    if (m.type == MSG_READY)
      break;
    if (m.type == MSG_ERROR) {
      pyrt_error_set(err, m.status, "%s", m.msg);
      goto fail;
    }
    if (m.type == MSG_BARRIER) {
      if (cb != NULL && cb(cb_arg, pid) < 0) {
        if (err->msg[0] == '\0')
          pyrt_error_set(err, ECANCELED, "a hook at the barrier failed");
        goto fail;
      }
      if (send_msg(sync, MSG_GO, 0, 0, NULL) < 0) {
        pyrt_error_set(err, errno, "resume the container process after hooks");
        goto fail;
      }
    }
  }
  close(sync);
  return pid;

fail:
  close(sync);
  reap(first);
  reap(pid);
  return -1;
}

/* ---------- detached spawn: the shim becomes the container's parent ---------- */

typedef struct {
  int status;   /* 0: ok */
  pid_t pid;    /* container pid (first report) */
  pid_t shim;   /* the helper's pid, which becomes the shim */
  char msg[512];
} detach_report_t;

static void write_report(int fd, const detach_report_t *r) {
  ssize_t n;
  do
    n = write(fd, r, sizeof(*r));
  while (n < 0 && errno == EINTR);
}

pid_t pyrt_spawn_detached(const pyrt_spawn_config_t *cfg, char *const shim_argv[],
                          const int *keep_fds, size_t n_keep, pid_t *shim_pid,
                          pyrt_error_t *err) {
  if (cfg->barrier)
    return pyrt_error_set(err, EINVAL, "a detached spawn takes no barrier hooks");
  if (shim_argv == NULL || shim_argv[0] == NULL)
    return pyrt_error_set(err, EINVAL, "a detached spawn needs the shim's command line");
  int report[2];
  if (pipe2(report, O_CLOEXEC) < 0)
    return pyrt_error_set(err, errno, "pipe for the detached spawn");

  pid_t a = clone3_fork(0, err);
  if (a < 0) {
    close(report[0]);
    close(report[1]);
    return -1;
  }
  if (a == 0) {
    close(report[0]);
    detach_report_t r;
    memset(&r, 0, sizeof(r));
    setsid();
    pid_t b = clone3_fork(0, err);
    if (b != 0)
      _exit(b < 0 ? 1 : 0);
    /* B: outlives the engine; its children (the container) are reaped by it */
    r.shim = getpid();
    detached_report_fd = report[1];
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    pyrt_error_t e;
    pyrt_error_clear(&e);
    pid_t pid = pyrt_spawn(cfg, NULL, NULL, &e);
    if (pid < 0) {
      r.status = e.status ? e.status : EIO;
      snprintf(r.msg, sizeof(r.msg), "%s", e.msg);
      write_report(report[1], &r);
      _exit(1);
    }
    r.pid = pid;
    write_report(report[1], &r);
    /* our own copy of argv: fill in the pid (no allocation after fork) */
    char *argv[64];
    char pidarg[32];
    size_t i = 0;
    for (; shim_argv[i] != NULL && i < 63; i++) {
      if (strcmp(shim_argv[i], "--pid=") == 0) {
        snprintf(pidarg, sizeof(pidarg), "--pid=%d", (int)pid);
        argv[i] = pidarg;
      } else {
        argv[i] = shim_argv[i];
      }
    }
    argv[i] = NULL;
    for (size_t k = 0; k < n_keep; k++)
      fcntl(keep_fds[k], F_SETFD, 0);
    /* stdio of the shim itself: nothing of the engine's terminal */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      for (int fd = 0; fd < 3; fd++) {
        int keep = 0;
        for (size_t k = 0; k < n_keep; k++)
          keep |= keep_fds[k] == fd;
        if (!keep)
          dup2(devnull, fd);
      }
    }
    execv(argv[0], argv);
    r.status = errno;
    snprintf(r.msg, sizeof(r.msg), "exec shim %s", argv[0]);
    write_report(report[1], &r);
    kill(pid, SIGKILL);
    _exit(127);
  }
  close(report[1]);
  while (waitpid(a, NULL, 0) < 0 && errno == EINTR)
    ;
  detach_report_t r;
  ssize_t n;
  do
    n = read(report[0], &r, sizeof(r));
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof(r)) {
    close(report[0]);
    return pyrt_error_set(err, EIO, "the detached spawn helper ended without a report");
  }
  if (r.status != 0) {
    close(report[0]);
    return pyrt_error_set(err, r.status, "%s", r.msg);
  }
  pid_t pid = r.pid;
  *shim_pid = r.shim;
  detach_report_t r2;
  do
    n = read(report[0], &r2, sizeof(r2));
  while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n == (ssize_t)sizeof(r2) && r2.status != 0)
    return pyrt_error_set(err, r2.status, "%s", r2.msg); /* the helper killed the container */
  return pid;
}

/* ---------- a plain program, without copying the caller ---------- */

pid_t pyrt_spawn_exec(char *const argv[], char *const envp[], const int *fds, size_t n_fds,
                      pyrt_error_t *err) {
  if (argv == NULL || argv[0] == NULL)
    return pyrt_error_set(err, EINVAL, "spawn: no program");
  for (size_t i = 0; i < n_fds; i++)
    for (size_t k = 0; k < n_fds; k++)
      if (k != i && fds[k] == (int)(3 + i))
        return pyrt_error_set(err, EINVAL, "spawn %s: fd %d would be overwritten", argv[0],
                              fds[k]);
  /* vfork: the child runs in our memory until execve, so it must not run a signal handler
   * of ours: every signal is blocked around it, and the child resets the handled ones to
   * their defaults (its handler table is its own) before unblocking */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  volatile int child_errno = 0;
  pid_t pid = vfork();
  if (pid == 0) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
      struct sigaction cur;
      if (sigaction(sig, NULL, &cur) < 0)
        continue;
      int handled = cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN;
      if (handled || sig == SIGPIPE || sig == SIGXFSZ)
        sigaction(sig, &dfl, NULL);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) {
      child_errno = errno;
      _exit(127);
    }
    for (size_t i = 0; i < n_fds; i++) {
      int target = (int)(3 + i);
      if (fds[i] == target ? fcntl(target, F_SETFD, 0) < 0 : dup2(fds[i], target) < 0) {
        child_errno = errno;
        _exit(127);
      }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(argv[0], argv, envp);
    child_errno = errno ? errno : ENOEXEC;
    _exit(127);
  }
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0)
    return pyrt_error_set(err, e, "spawn %s: vfork", argv[0]);
  if (child_errno != 0) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    return pyrt_error_set(err, child_errno, "spawn %s", argv[0]);
  }
  return pid;
}
