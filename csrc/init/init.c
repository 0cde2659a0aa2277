/* pyrt-init: a tiny init for containers run with --init.
 *
 *   pyrt-init [--] COMMAND [ARG...]
 *
 * Runs as pid 1 of the container: spawns COMMAND, forwards the signals a container gets
 * (TERM, INT, HUP, QUIT, USR1, USR2, WINCH, CONT, ALRM, PIPE...) to it, reaps every zombie
 * that is reparented to it, and exits with the command's status (128+signal if it was
 * killed). Not pid 1, it makes itself a child subreaper so orphans still come to it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE,
                                SIGALRM, SIGTERM, SIGCONT, SIGWINCH, SIGTSTP, SIGTTIN,
                                SIGTTOU, SIGURG,  SIGVTALRM, SIGPROF, SIGIO, SIGPWR};

int main(int argc, char **argv) {
  int first = 1;
  if (first < argc && !strcmp(argv[first], "--"))
    first++;
  if (first >= argc) {
    dprintf(2, "pyrt-init: usage: pyrt-init [--] COMMAND [ARG...]\n");
    return 2;
  }
  if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
    dprintf(2, "pyrt-init: PR_SET_CHILD_SUBREAPER: %s (orphans will not be reaped)\n",
            strerror(errno));

  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
    sigaddset(&set, forwarded[i]);
  sigprocmask(SIG_BLOCK, &set, &old);

  pid_t child = fork();
  if (child < 0) {
    dprintf(2, "pyrt-init: fork: %s\n", strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* a process group of its own, and the terminal's foreground one if there is a tty */
    setpgid(0, 0);
    if (isatty(0)) {
      signal(SIGTTOU, SIG_IGN);
      tcsetpgrp(0, getpid());
      signal(SIGTTOU, SIG_DFL);
    }
    execvp(argv[first], argv + first);
    int e = errno;
    dprintf(2, "pyrt-init: exec %s: %s\n", argv[first], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }

  int child_status = -1;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) {
      if (errno == EINTR)
        continue;
      dprintf(2, "pyrt-init: sigwaitinfo: %s\n", strerror(errno));
      return 1;
    }
    if (sig != SIGCHLD) {
      if (child_status < 0)
        kill(child, sig);
      continue;
    }
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0)
        break;
      if (pid == child)
        child_status = status;
    }
    if (child_status >= 0) {
      /* the command is gone: reap what is left for a moment, then leave (pid 1 leaving
       * kills the rest of the pid namespace) */
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
      if (WIFSIGNALED(child_status))
        return 128 + WTERMSIG(child_status);
      return WEXITSTATUS(child_status);
    }
  }
}
