#ifndef C_JUMPGATE_SIGNALS_H
#define C_JUMPGATE_SIGNALS_H

/// Termination signals caught by a handler of our own, which records each one before anything else runs
/// (one bit per signal number) and then writes the number as one byte to a pipe, for a thread that hands it
/// on. A thread can thus tell, without waiting, whether a signal arrived: it is still pending, or its bit
/// is set (``cjumpgate_signals_arrived``).

/// Creates the pipe the handler writes to (both ends close-on-exec, the write end non-blocking, so the
/// handler never blocks: a full pipe drops the byte, not the record). Once, before any
/// ``cjumpgate_signals_catch``. Returns the read end, or -errno.
int cjumpgate_signals_open(void);

/// Catches `number` (1-63) with the handler, restarting interrupted system calls. Returns 0, or -errno.
int cjumpgate_signals_catch(int number);

/// 1 if `number`'s disposition is to be ignored (SIG_IGN, as `nohup` leaves SIGHUP), else 0.
int cjumpgate_signals_is_ignored(int number);

/// 1 if one of `signals` (bit n for signal n, 1-63) is caught by the handler and has arrived: the handler
/// recorded it, or it is pending (sent, not yet taken by any thread; read with those signals blocked in the
/// calling thread for the moment, since the kernel reports only the signals a thread blocks). Else 0. The
/// pending set is read first, so a signal taken in between is recorded by then, unless the thread that
/// took it has not yet run its handler's first instruction.
int cjumpgate_signals_arrived(unsigned long long signals);

#endif
