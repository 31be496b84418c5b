#ifndef C_JUMPGATE_PTY_H
#define C_JUMPGATE_PTY_H

#include <signal.h>
#include <spawn.h>
#include <stddef.h>

/// Opens a pseudo-terminal's master side (read-write, not the caller's controlling terminal, close-on-exec),
/// grants and unlocks it, and writes its terminal's path into `name`. Returns the descriptor, or -errno.
/// (posix_openpt, grantpt, unlockpt and ptsname_r need _GNU_SOURCE, which Swift's Glibc module lacks.)
int cjumpgate_open_pty(char *name, size_t length);

/// posix_spawn_file_actions_addchdir_np (glibc 2.29).
int cjumpgate_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34): every descriptor from `from` up is closed in the
/// child, whatever its close-on-exec flag (NIO's sockets and epoll descriptor have none).
int cjumpgate_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/// The pid and the status (exit code or signal) in a SIGCHLD `siginfo_t` (a union Swift does not name).
pid_t cjumpgate_siginfo_pid(const siginfo_t *info);
int cjumpgate_siginfo_status(const siginfo_t *info);

/// POSIX_SPAWN_SETSID (glibc 2.26): the child calls setsid() before its file actions.
short cjumpgate_posix_spawn_setsid(void);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec. Returns 0, or -errno.
int cjumpgate_pipe_cloexec(int fds[2]);

#endif
