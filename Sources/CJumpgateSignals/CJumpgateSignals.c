#define _GNU_SOURCE
#include "CJumpgateSignals.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

// The handler may use only lock-free atomics.
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic int must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "atomic long long must be lock-free");

static atomic_int notify_fd = -1;
static atomic_ullong recorded = 0;
static atomic_ullong caught = 0;

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

int cjumpgate_signals_open(void) {
    int ends[2];
#ifdef __linux__
    if (pipe2(ends, O_CLOEXEC) != 0) {
        return -errno;
    }
#else
    // Not atomic: a process spawned by another thread in between could inherit the pipe.
    if (pipe(ends) != 0) {
        return -errno;
    }
    fcntl(ends[0], F_SETFD, FD_CLOEXEC);
    fcntl(ends[1], F_SETFD, FD_CLOEXEC);
#endif
    if (fcntl(ends[1], F_SETFL, O_NONBLOCK) != 0) {
        int error = errno;
        close(ends[0]);
        close(ends[1]);
        return -error;
    }
    atomic_store(&notify_fd, ends[1]);
    return ends[0];
}

int cjumpgate_signals_catch(int number) {
    if (number < 1 || number > 63) {
        return -EINVAL;
    }
    struct sigaction action = {0};
    action.sa_handler = handle;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    // Marked caught first: a signal the handler records as soon as it is installed counts at once.
    unsigned long long bit = 1ULL << number;
    unsigned long long before = atomic_fetch_or(&caught, bit);
    if (sigaction(number, &action, NULL) != 0) {
        int error = errno;
        if ((before & bit) == 0) {
            atomic_fetch_and(&caught, ~bit);
        }
        return -error;
    }
    return 0;
}

int cjumpgate_signals_is_ignored(int number) {
    struct sigaction current;
    if (sigaction(number, NULL, &current) != 0) {
        return 0;
    }
    return current.sa_handler == SIG_IGN ? 1 : 0;
}

int cjumpgate_signals_arrived(unsigned long long signals) {
    unsigned long long asked = signals & atomic_load(&caught);
    if (asked == 0) {
        return 0;
    }
    sigset_t only, previous, pending;
    sigemptyset(&only);
    for (int number = 1; number <= 63; number++) {
        if (asked & (1ULL << number)) {
            sigaddset(&only, number);
        }
    }
    int pendingNow = 0;
    if (pthread_sigmask(SIG_BLOCK, &only, &previous) == 0) {
        if (sigpending(&pending) == 0) {
            for (int number = 1; number <= 63; number++) {
                if ((asked & (1ULL << number)) && sigismember(&pending, number) == 1) {
                    pendingNow = 1;
                }
            }
        }
        // Unblocked again if they were: a signal pending for this thread is handled here, now.
        pthread_sigmask(SIG_SETMASK, &previous, NULL);
    }
    if (pendingNow) {
        return 1;
    }
    return (atomic_load(&recorded) & asked) != 0 ? 1 : 0;
}
