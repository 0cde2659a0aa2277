/* See fsutil.h. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 256

/* Empties the directory open as dfd (closed here), then nothing else. */
static int empty_dir(int dfd, dev_t dev, int depth) {
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    close(dfd);
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    int is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        continue;
      is_dir = S_ISDIR(st.st_mode);
    }
    if (!is_dir) {
      if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
        rc = -1;
      continue;
    }
    if (depth >= MAX_DEPTH) {
      rc = -1;
      continue;
    }
    int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      if (errno != ENOENT)
        rc = -1;
      continue;
    }
    struct stat st;
    if (fstat(sub, &st) < 0 || st.st_dev != dev) { /* a mount point: leave it */
      close(sub);
      rc = -1;
      continue;
    }
    if (empty_dir(sub, dev, depth + 1) < 0)
      rc = -1;
    if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
      rc = -1;
  }
  closedir(d);
  return rc;
}

int pyrt_remove_all(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode))
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return errno == ENOENT ? 0 : -1;
  int rc = empty_dir(dfd, st.st_dev, 0);
  if (rmdir(path) < 0 && errno != ENOENT)
    rc = -1;
  return rc;
}
