#include "CJumpgateSignals.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_int notify_fd = -1;
static atomic_ullong recorded = 0;

// Async-signal-safe: lock-free atomics and write(2) only; errno is kept for the interrupted code.
static void handle(int number) {
    atomic_fetch_or(&recorded, 1ULL << number);
    int fd = atomic_load(&notify_fd);
    if (fd >= 0) {
        int saved = errno;
        unsigned char byte = (unsigned char)number;
        (void)write(fd, &byte, 1);
        errno = saved;
    }
}

void cjumpgate_signals_set_notify(int fd) {
    atomic_store(&notify_fd, fd);
}

int cjumpgate_signals_catch(int number) {
    if (number < 1 || number > 63) {
        return -EINVAL;
    }
    struct sigaction action = {0};
    action.sa_handler = handle;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    return sigaction(number, &action, NULL) == 0 ? 0 : -errno;
}

int cjumpgate_signals_is_ignored(int number) {
    struct sigaction current;
    if (sigaction(number, NULL, &current) != 0) {
        return 0;
    }
    return current.sa_handler == SIG_IGN ? 1 : 0;
}

int cjumpgate_signals_arrived(int number) {
    if (number < 1 || number > 63) {
        return 0;
    }
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, number) == 1) {
        return 1;
    }
    return (atomic_load(&recorded) & (1ULL << number)) != 0 ? 1 : 0;
}
