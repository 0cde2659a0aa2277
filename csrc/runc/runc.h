/* What main.c (the fast start/state/kill/delete) and create.c (native create and run)
 * share. */
#ifndef PYRT_RUNC_H
#define PYRT_RUNC_H

#include <stddef.h>
#include <sys/types.h>

extern char **g_argv;

/* exec the Python CLI with the same argv; never returns */
void delegate(void) __attribute__((noreturn));
int id_ok(const char *id);
/* a whole (small) file, NUL-terminated; NULL on error */
char *read_file(const char *path, size_t *len);
/* dir/name through a temp file and rename, as state.atomic_write (no fsync) */
int atomic_write(const char *dir, const char *name, const char *data, size_t len, mode_t mode);
/* pid alive, not a zombie, and started at `start` (start < 0: any) */
int process_alive(long pid, long long start);
/* rmdir a cgroup and every cgroup below it (EBUSY retried); -1 on failure */
int remove_tree(const char *dir, int depth);
/* rm -rf, ignoring errors as shutil.rmtree(ignore_errors=True) */
int remove_dir(const char *path, int depth);
/* -name / --name[=value] matching; see main.c */
extern const char *const NOMATCH;
const char *flag(const char *arg, const char *name);

/* pyrt-runc create / run with the arguments after the command; delegates whenever the
 * spec or the flags are anything but what create.c handles (see its top comment). */
int cmd_create_native(const char *root, int argc, char **argv, int run);

#endif
