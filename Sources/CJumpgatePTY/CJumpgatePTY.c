#define _GNU_SOURCE
#include "CJumpgatePTY.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int cjumpgate_open_pty(char *name, size_t length) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (grantpt(fd) != 0 || unlockpt(fd) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    int named = ptsname_r(fd, name, length);
    if (named != 0) {
        close(fd);
        return -named;
    }
    return fd;
}

int cjumpgate_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cjumpgate_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

pid_t cjumpgate_siginfo_pid(const siginfo_t *info) {
    return info->si_pid;
}

int cjumpgate_siginfo_status(const siginfo_t *info) {
    return info->si_status;
}

short cjumpgate_posix_spawn_setsid(void) {
    return POSIX_SPAWN_SETSID;
}

int cjumpgate_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno;
}
