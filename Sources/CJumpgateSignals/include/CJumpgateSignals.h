#ifndef C_JUMPGATE_SIGNALS_H
#define C_JUMPGATE_SIGNALS_H

/// Termination signals caught by a handler of our own, which records each one before anything else runs
/// (one bit per signal number) and then writes the number as one byte to a pipe, for a thread that hands it
/// on. A thread can thus tell, without waiting, whether a signal arrived: it is still pending for the
/// process, or its bit is set (``cjumpgate_signals_arrived``).

/// Makes `fd` (a pipe's write end, non-blocking) the descriptor the handler writes to. Once, before any
/// ``cjumpgate_signals_catch``.
void cjumpgate_signals_set_notify(int fd);

/// Catches `number` (1-63) with the handler, restarting interrupted system calls. Returns 0, or -errno.
int cjumpgate_signals_catch(int number);

/// 1 if `number`'s disposition is to be ignored (SIG_IGN, as `nohup` leaves SIGHUP), else 0.
int cjumpgate_signals_is_ignored(int number);

/// 1 if `number` is pending for the process or this thread (sent, not yet taken by the handler), or the
/// handler recorded it; else 0. The pending set is read first: a signal taken in between is then recorded.
int cjumpgate_signals_arrived(int number);

#endif
