/* File-tree helpers the engine calls often enough for Python's versions to show. */
#ifndef PYRT_FSUTIL_H
#define PYRT_FSUTIL_H

/* rm -rf of path, as shutil.rmtree(path, ignore_errors=True) but in C: symlinks are
 * removed, never followed, and a directory on another file system (a mount point left
 * below path) is not descended into. Best effort: 0 when path is gone (or was never
 * there), -1 when something could not be removed. */
int pyrt_remove_all(const char *path);

#endif
