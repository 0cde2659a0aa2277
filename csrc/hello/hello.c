/* hello: the program inside pyrt's "hello-world" image.
 *
 * It prints what pyrt did to get it running, then exits 0. Built as a static executable
 * (no libc to find at run time: the image holds this one file), and written with write(2)
 * alone so it stays small and does nothing it does not need to.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

static const char message[] =
    "\n"
    "Hello from pyrt!\n"
    "If you can read this, your pyrt installation works.\n"
    "\n"
    "Here is what happened just now:\n"
    " 1. The pyrt client asked the pyrt daemon to run \"hello-world\".\n"
    " 2. The daemon pulled the \"hello-world\" image (or, with no registry in reach,\n"
    "    used the copy of it that ships inside pyrt).\n"
    " 3. The daemon created a container from that image; the container ran the one\n"
    "    program in it, which printed these lines.\n"
    " 4. The daemon streamed the container's output back to the client, which\n"
    "    showed it in your terminal.\n"
    "\n"
    "Something more useful to try next: a shell in a small Linux userland:\n"
    " $ pyrt run -it busybox sh\n"
    "\n"
    "More in pyrt's documentation: README.md, and `pyrt --help`.\n"
    "\n";

int main(void)
{
    const char *p = message;
    size_t left = sizeof(message) - 1;

    while (left > 0) {
        ssize_t n = write(STDOUT_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        p += n;
        left -= (size_t)n;
    }
    return 0;
}
