// Benchmarks/PageTrace: which functions, or which pages, of its own code a `jumpgate` process runs (kept out
// of CI; scripts/symbol-order builds and uses it; docs/PERFORMANCE.md, "2026-12-07, twenty-first session").
//
// An LD_PRELOAD library. In a process whose executable is named `jumpgate`, with PAGETRACE_DIR set, it acts
// before the executable's own initialisers run and appends what it finds to PAGETRACE_DIR/pages-PID.txt (a
// `#` line naming the binary, then one hexadecimal offset into the executable's r-x LOAD mapping per line, in
// the order of first use). Two modes:
//
// - Functions (PAGETRACE_ENTRIES=FILE, the offsets of the functions' first bytes, one per line: what
//   scripts/symbol-order uses). An int3 goes on every listed function's first byte; its SIGTRAP handler puts
//   the byte back, records the function and runs it from its start again. Only FUNC symbols may be listed: an
//   int3 written into a data label inside .text (BoringSSL's assembly keeps tables there) would corrupt it.
// - Pages (no PAGETRACE_ENTRIES). Every permission goes off the code mapping; the SIGSEGV handler gives a
//   faulting page back read and execute, and records it. The kernel's fault-around (which maps the 64 KiB
//   around any file page that faults in) does not apply to a permission fault, so the file lists exactly the
//   4 KiB pages that ran or were read.
//
//     cc -O2 -shared -fPIC -o /tmp/pagetrace.so Benchmarks/PageTrace/pagetrace.c -ldl
//     PAGETRACE_DIR=/tmp/pages SWIFT_BACKTRACE=enable=no LD_PRELOAD=/tmp/pagetrace.so jumpgate ...
//
// SWIFT_BACKTRACE=enable=no keeps the Swift runtime's crash handler from taking SIGSEGV and SIGTRAP; once
// tracing, this library also ignores any later sigaction() for them (interposed; glibc's signal() calls its
// internal sigaction directly and is not covered). A fault it did not cause is a real crash: the default
// action is restored and the signal raised again. Measurement only, x86-64 Linux only; the process runs at
// normal speed once each function or page has been seen. (In pages mode a system call that reads a page still
// without permissions fails with EFAULT instead of faulting; code pages are rarely read that way.)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__) || !defined(__linux__)
#error "pagetrace reads the instruction pointer as x86-64 Linux keeps it"
#endif

enum { page_size = 4096 };

static uintptr_t code_start, code_end;
static int out_fd = -1;
static int tracing;  // set once a handler is installed: only then are later installs ignored
// Functions mode: the sorted offsets of the functions' first bytes, and the bytes the int3s replaced.
static uintptr_t *entries;
static unsigned char *saved;
static size_t entry_count;
// Pages mode, per page: 0 still without permissions, 1 being given back by a handler, 2 given back (a fault
// on a page in state 2 is not ours: a write into code, say).
static unsigned char *page_state;

static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void record(uintptr_t offset) {
    char line[32];
    int length = snprintf(line, sizeof line, "%lx\n", (unsigned long)offset);
    if (length > 0) (void)!write(out_fd, line, (size_t)length);
}

static void crash(int sig) {
    signal(sig, SIG_DFL);
    raise(sig);
}

static long find_entry(uintptr_t offset) {
    size_t low = 0, high = entry_count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (entries[middle] < offset) low = middle + 1;
        else high = middle;
    }
    return low < entry_count && entries[low] == offset ? (long)low : -1;
}

// An int3 at a function's first byte: put the byte back, run the function from its start, record it once.
static void on_trap(int sig, siginfo_t *info, void *context) {
    (void)info;
    ucontext_t *uc = context;
    uintptr_t at = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP] - 1;
    long index = at >= code_start && at < code_end ? find_entry(at - code_start) : -1;
    if (index < 0) {
        crash(sig);
        return;
    }
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)at;
    if (*(volatile unsigned char *)at != 0xCC) return;  // another thread put it back first
    *(volatile unsigned char *)at = saved[index];
    record(at - code_start);
}

// A permission fault on a code page not yet given back: give it back (read and execute) and record it.
static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)context;
    uintptr_t address = (uintptr_t)info->si_addr;
    if (info->si_code != SEGV_ACCERR || address < code_start || address >= code_end) {
        crash(sig);
        return;
    }
    size_t page = (address - code_start) / page_size;
    unsigned char expected = 0;
    if (!__atomic_compare_exchange_n(&page_state[page], &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        // 1: another thread's handler is giving this page back; the access runs again once it has.
        if (expected == 2) crash(sig);  // a write into code, or any other fault this library did not cause
        return;
    }
    mprotect((void *)(code_start + page * page_size), page_size, PROT_READ | PROT_EXEC);
    __atomic_store_n(&page_state[page], 2, __ATOMIC_RELEASE);
    record(page * page_size);
}

int sigaction(int number, const struct sigaction *action, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (tracing && (number == SIGSEGV || number == SIGTRAP) && action != NULL) {
        return real_sigaction(number, NULL, old);
    }
    return real_sigaction(number, action, old);
}

static void install(int number, void (*handler)(int, siginfo_t *, void *)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    real_sigaction(number, &action, NULL);
    tracing = 1;
}

// The executable's r-x mapping, from /proc/self/maps.
static int find_code(const char *exe) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return 0;
    char line[8192];
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char permissions[8];
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, permissions, &path_at) < 3) continue;
        char *path = line + path_at;
        path[strcspn(path, "\n")] = 0;
        if (strcmp(permissions, "r-xp") == 0 && strcmp(path, exe) == 0) {
            code_start = start;
            code_end = end;
            break;
        }
    }
    fclose(maps);
    return code_start != 0;
}

static int trace_functions(const char *entry_file) {
    FILE *list = fopen(entry_file, "r");
    if (!list) return 0;
    size_t capacity = 1 << 16;
    entries = malloc(capacity * sizeof *entries);
    unsigned long offset;
    while (entries && fscanf(list, "%lx", &offset) == 1) {
        if (offset >= code_end - code_start) continue;
        if (entry_count == capacity) entries = realloc(entries, (capacity *= 2) * sizeof *entries);
        if (entries) entries[entry_count++] = offset;
    }
    fclose(list);
    saved = malloc(entry_count ? entry_count : 1);
    if (!entries || !saved) return 0;
    if (mprotect((void *)code_start, code_end - code_start, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) return 0;
    for (size_t i = 0; i < entry_count; i++) {
        unsigned char *at = (unsigned char *)(code_start + entries[i]);
        saved[i] = *at;
        *at = 0xCC;
    }
    install(SIGTRAP, on_trap);
    return 1;
}

static int trace_pages(void) {
    page_state = calloc((code_end - code_start) / page_size + 1, 1);
    if (!page_state) return 0;
    install(SIGSEGV, on_fault);
    return mprotect((void *)code_start, code_end - code_start, PROT_NONE) == 0;
}

__attribute__((constructor)) static void start(void) {
    char exe[4096];
    ssize_t length = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *dir = getenv("PAGETRACE_DIR");
    if (length <= 0 || !dir) return;
    exe[length] = 0;
    const char *name = strrchr(exe, '/');
    if (strcmp(name ? name + 1 : exe, "jumpgate") != 0 || !find_code(exe)) return;
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");

    char file[4096];
    snprintf(file, sizeof file, "%s/pages-%d.txt", dir, (int)getpid());
    out_fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) return;
    dprintf(out_fd, "# %s %lx\n", exe, (unsigned long)(code_end - code_start));
    const char *entry_file = getenv("PAGETRACE_ENTRIES");
    if (!(entry_file ? trace_functions(entry_file) : trace_pages())) {
        dprintf(out_fd, "# failed to start tracing\n");
    }
}
