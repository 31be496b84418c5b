// KernelRelay: a TCP relay whose bytes never reach user space, for scripts/bench-nio-chain (NIO_CHAIN_E2E=kernel).
//
//     KernelRelay LISTEN_PORT UPSTREAM_PORT        (both on 127.0.0.1)
//
// A measurement, not a product: it answers what a gateway costs a tunnel when it only pairs two connections
// and the kernel carries their bytes (an eBPF sockmap verdict program redirects each segment from one socket
// to its partner's send queue), with TLS end to end between the two outer processes. Each accepted connection
// gets its own upstream connection; both go into a SOCKHASH under the key their partner's segments carry
// (remote port as the kernel presents it, local port), and one SK_SKB verdict program attached to the map
// redirects every segment to the partner. The process wakes only to accept, and to close a pair that ended.
// Needs CAP_BPF and CAP_NET_ADMIN (root here) and a kernel with CONFIG_BPF_STREAM_PARSER.
//
// Known limits, fine for tunnelbench's round trips and wrong for a product:
// - no backpressure: the verdict program takes every segment off the receive queue at once, so the sender's
//   TCP window never closes and the redirect queue grows without bound (about 1 GiB of an upload had not
//   reached the receiver when iperf3's sender finished, and was lost at the close; docs/PERFORMANCE.md):
//   bulk figures through it are not valid;
// - the end of one side closes both 100 ms later (the redirect queue has no completion to wait on): what is
//   still queued then is lost, and there is no half-close;
// - bytes that arrive before a socket is in the map stay in its own receive queue and are moved by hand once,
//   after both inserts. Segments that reach the upstream socket between the two inserts would meet a missing
//   key and be dropped, so the upstream side must stay silent until the client speaks (a TLS server does);
// - a connection that fails while being paired is closed alone; connect() blocks the loop meanwhile;
// - IPv4 loopback only, keys are ports only; the verdict-only attach needs Linux 5.13 or later.
#ifdef __linux__
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 2048

static int bpf(int cmd, union bpf_attr *attr) { return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static void die(const char *what) {
    fprintf(stderr, "KernelRelay: %s: %s\n", what, strerror(errno));
    exit(1);
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static int load(struct bpf_insn *program, unsigned count) {
    static char log[65536];
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SK_SKB;
    attr.insns = (uint64_t)(uintptr_t)program;
    attr.insn_cnt = count;
    attr.license = (uint64_t)(uintptr_t) "Dual MIT/GPL";
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = sizeof(log);
    attr.log_level = 1;
    int fd = bpf(BPF_PROG_LOAD, &attr);
    if (fd < 0) {
        fprintf(stderr, "%s\n", log);
        die("BPF_PROG_LOAD");
    }
    return fd;
}

/// The stream parser (KERNEL_RELAY_PARSER=1): every segment is a message of its own (return skb->len).
static int load_parser(void) {
    struct bpf_insn program[] = {
        INSN(BPF_LDX | BPF_MEM | BPF_W, 0, 1, offsetof(struct __sk_buff, len), 0),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    return load(program, sizeof(program) / sizeof(program[0]));
}

/// The verdict program: key = {skb->remote_port, skb->local_port}; return bpf_sk_redirect_hash(skb, map, &key, 0).
static int load_program(int map) {
    struct bpf_insn program[] = {
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),  // r6 = ctx
        INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 6, offsetof(struct __sk_buff, remote_port), 0),
        INSN(BPF_LDX | BPF_MEM | BPF_W, 3, 6, offsetof(struct __sk_buff, local_port), 0),
        INSN(BPF_STX | BPF_MEM | BPF_W, 10, 2, -8, 0),
        INSN(BPF_STX | BPF_MEM | BPF_W, 10, 3, -4, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),  // r1 = ctx
        INSN(BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, map),  // r2 = map (two instructions)
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0),  // r3 = &key
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -8),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),  // r4 = flags 0 (egress)
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    return load(program, sizeof(program) / sizeof(program[0]));
}

struct key {
    uint32_t remote;  // as __sk_buff presents it: the port in network order, shifted left 16 on little-endian
    uint32_t local;   // host order
};

/// The key under which `fd`'s own segments look up their destination; false if `fd` is no longer connected.
static int key_of(int fd, struct key *key) {
    struct sockaddr_in local, remote;
    socklen_t length = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &length) < 0) return 0;
    length = sizeof(remote);
    if (getpeername(fd, (struct sockaddr *)&remote, &length) < 0) return 0;
    *key = (struct key){.remote = htonl(ntohs(remote.sin_port)), .local = ntohs(local.sin_port)};
    return 1;
}

static int map_update(int map, struct key key, int fd) {
    uint32_t value = (uint32_t)fd;
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = map;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&value;
    attr.flags = BPF_ANY;
    return bpf(BPF_MAP_UPDATE_ELEM, &attr);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/// Moves what `from` received before it entered the map (read from its ordinary queue) to `to`.
static void move_early_bytes(int from, int to) {
    char buffer[65536];
    for (;;) {
        ssize_t got = recv(from, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (got <= 0) return;
        // Never blocks the loop: a few KiB into an empty send buffer. If it would, the rest is dropped (a
        // known limit: a client that sends more than a socket buffer before it is paired).
        for (ssize_t sent = 0; sent < got;) {
            ssize_t n = send(to, buffer + sent, got - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n <= 0) return;
            sent += n;
        }
    }
}

struct pair {
    int fds[2];
    double closeAt;  // 0 while open
};

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: KernelRelay LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1)\n");
        return 2;
    }
    struct sockaddr_in listenAddress = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    struct sockaddr_in upstream = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    listenAddress.sin_addr.s_addr = upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_SOCKHASH;
    attr.key_size = sizeof(struct key);
    attr.value_size = sizeof(uint32_t);
    attr.max_entries = 2 * MAX_PAIRS;
    int map = bpf(BPF_MAP_CREATE, &attr);
    if (map < 0) die("BPF_MAP_CREATE (SOCKHASH)");
    int program = load_program(map);
    const char *parser = getenv("KERNEL_RELAY_PARSER");
    int withParser = parser != NULL && strcmp(parser, "1") == 0;
    if (withParser) {
        memset(&attr, 0, sizeof(attr));
        attr.target_fd = map;
        attr.attach_bpf_fd = load_parser();
        attr.attach_type = BPF_SK_SKB_STREAM_PARSER;
        if (bpf(BPF_PROG_ATTACH, &attr) < 0) die("BPF_PROG_ATTACH (SK_SKB_STREAM_PARSER)");
    }
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = map;
    attr.attach_bpf_fd = program;
    attr.attach_type = withParser ? BPF_SK_SKB_STREAM_VERDICT : BPF_SK_SKB_VERDICT;
    if (bpf(BPF_PROG_ATTACH, &attr) < 0) die("BPF_PROG_ATTACH (verdict)");

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, (struct sockaddr *)&listenAddress, sizeof(listenAddress)) < 0) die("bind");
    if (listen(listener, 4096) < 0) die("listen");

    static struct pair pairs[MAX_PAIRS];
    int count = 0;
    static struct pollfd polled[1 + 2 * MAX_PAIRS];
    for (;;) {
        int n = 0, closing = 0;
        polled[n++] = (struct pollfd){.fd = listener, .events = POLLIN};
        for (int i = 0; i < count; i++) {
            // A closing pair is left out (a negative fd is skipped): an RST keeps POLLERR set until it closes.
            int open = pairs[i].closeAt == 0;
            closing |= !open;
            polled[n++] = (struct pollfd){.fd = open ? pairs[i].fds[0] : -1, .events = POLLRDHUP};
            polled[n++] = (struct pollfd){.fd = open ? pairs[i].fds[1] : -1, .events = POLLRDHUP};
        }
        if (poll(polled, n, closing ? 20 : -1) < 0 && errno != EINTR) die("poll");
        double t = now();
        for (int i = 0; i < count; i++) {
            struct pair *pair = &pairs[i];
            if (pair->closeAt == 0 && ((polled[1 + 2 * i].revents | polled[2 + 2 * i].revents) & ~POLLOUT)) {
                pair->closeAt = t + 0.1;
            }
        }
        for (int i = 0; i < count;) {
            if (pairs[i].closeAt != 0 && pairs[i].closeAt <= t) {
                close(pairs[i].fds[0]);
                close(pairs[i].fds[1]);
                pairs[i] = pairs[--count];
            } else {
                i++;
            }
        }
        if (!(polled[0].revents & POLLIN)) continue;
        int inbound = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (inbound < 0) {
            // Out of descriptors (EMFILE) leaves the listener readable: wait instead of spinning on it.
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) usleep(100000);
            continue;
        }
        int outbound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (count == MAX_PAIRS || connect(outbound, (struct sockaddr *)&upstream, sizeof(upstream)) < 0) {
            close(inbound);
            close(outbound);
            continue;
        }
        setsockopt(inbound, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(outbound, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        // The first insert puts `outbound` in the map (under the inbound socket's key), so from then on the
        // upstream's own segments are judged, and find no key until the second insert: the upstream must stay
        // silent until the client speaks (see the limits above). A connection that ended meanwhile (the map
        // refuses a socket that is not established) is closed, and the relay goes on.
        struct key inboundKey, outboundKey;
        if (!key_of(inbound, &inboundKey) || !key_of(outbound, &outboundKey)
            || map_update(map, inboundKey, outbound) < 0 || map_update(map, outboundKey, inbound) < 0) {
            fprintf(stderr, "KernelRelay: a connection ended while it was paired: %s\n", strerror(errno));
            close(inbound);
            close(outbound);
            continue;
        }
        move_early_bytes(inbound, outbound);
        move_early_bytes(outbound, inbound);
        pairs[count++] = (struct pair){.fds = {inbound, outbound}, .closeAt = 0};
    }
}
#else
#include <stdio.h>
int main(void) {
    fprintf(stderr, "KernelRelay needs Linux (eBPF sockmap)\n");
    return 1;
}
#endif
