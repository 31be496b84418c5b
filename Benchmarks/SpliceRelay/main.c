// SpliceRelay: a TCP relay that moves bytes with splice(2) through a pipe, for scripts/bench-nio-chain
// (NIO_CHAIN_E2E=splice).
//
//     SpliceRelay LISTEN_PORT UPSTREAM_PORT        (both on 127.0.0.1)
//
// A measurement, not a product: it answers what a gateway's relay-blind glue would cost if its bytes went
// socket -> pipe -> socket inside the kernel (page references moved, no copy to or from user space) instead
// of through a read buffer in user space, as Jumpgate's `BlindGlue` and NIOChain's relay do. Unlike
// Benchmarks/KernelRelay it has backpressure: each direction has one pipe (PIPE_BYTES), the relay reads a
// socket only while that direction's pipe has room and waits for EPOLLOUT when the other socket's send
// buffer is full, so its bulk figures are valid.
//
// SPLICE_RELAY_COPY=1 runs the same loop with read(2) and write(2) through a 1 MiB buffer per direction
// instead of the pipe (the bytes then cross user space, as in NIO's relay).
//
// One thread, one level-triggered epoll; each accepted connection gets its own upstream connection (a
// blocking connect on loopback); TCP_NODELAY on both. A side's end of file is passed on as a half-close once
// its pipe is drained; a pair closes when both directions ended or on any error. IPv4 loopback only.
#ifdef __linux__
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20)

struct direction {
    int from, to;
    int pipe[2];
    size_t capacity;   // the pipe's (PIPE_BYTES, or the default where F_SETPIPE_SZ is refused) or the buffer's
    size_t queued;     // bytes in the pipe (or the buffer, SPLICE_RELAY_COPY=1)
    size_t sent;       // of the buffer, already written (SPLICE_RELAY_COPY=1)
    char *buffer;      // SPLICE_RELAY_COPY=1 only
    int ended;         // `from` reached end of file
    int full;          // the pipe refused more (its slots count pages, not bytes) until some drain
    int shut;          // `to` got the half-close
};

struct pair {
    struct direction way[2];  // 0: inbound -> upstream, 1: upstream -> inbound
    int fd[2];                // 0: inbound, 1: upstream
    unsigned interest[2];
    int registered[2];        // in the epoll set (a socket waiting for nothing is taken out: EPOLLHUP and
                              // EPOLLERR would wake a level-triggered loop for it whatever it asked)
};

struct side {
    struct pair *pair;
    int index;
};

static int epollFD;
// SPLICE_RELAY_COPY=1: read(2) and write(2) through a buffer per direction instead, the same loop
// otherwise, to tell what splice saves from what leaving NIO's event loop saves.
static int copyMode;

static void die(const char *what) {
    fprintf(stderr, "SpliceRelay: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void closePair(struct pair *pair, struct side *sides) {
    for (int i = 0; i < 2; i++) {
        close(pair->fd[i]);
        if (pair->way[i].pipe[0] >= 0) close(pair->way[i].pipe[0]);
        if (pair->way[i].pipe[1] >= 0) close(pair->way[i].pipe[1]);
        free(pair->way[i].buffer);
    }
    free(sides);
    free(pair);
}

// What each socket waits for: to read while its outgoing pipe has room and it has not ended, to write while
// its incoming pipe holds bytes.
static void updateInterest(struct pair *pair, struct side *sides) {
    for (int i = 0; i < 2; i++) {
        struct direction *out = &pair->way[i], *in = &pair->way[1 - i];
        unsigned events = 0;
        if (!out->ended && !out->full && (copyMode ? out->queued == 0 : out->queued < out->capacity)) events |= EPOLLIN;
        if (in->queued > 0) events |= EPOLLOUT;
        if (events == pair->interest[i] && pair->registered[i] == (events != 0)) continue;
        struct epoll_event event = {.events = events, .data.ptr = &sides[i]};
        int operation = events == 0 ? EPOLL_CTL_DEL : pair->registered[i] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(epollFD, operation, pair->fd[i], &event) < 0) die("epoll_ctl");
        pair->interest[i] = events;
        pair->registered[i] = events != 0;
    }
}


static int pumpCopy(struct direction *way) {
    // The buffer stands where the pipe stood: `queued` bytes of it from `way->sent` on wait for `to`.
    for (;;) {
        while (way->queued > 0) {
            ssize_t n = write(way->to, way->buffer + way->sent, way->queued);
            if (n > 0) {
                way->queued -= (size_t)n;
                way->sent += (size_t)n;
            } else if (n < 0 && errno == EAGAIN) {
                return 0;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                return -1;
            }
        }
        way->sent = 0;
        if (way->ended) break;
        ssize_t n = read(way->from, way->buffer, way->capacity);
        if (n > 0) {
            way->queued = (size_t)n;
        } else if (n == 0) {
            way->ended = 1;
        } else if (errno == EAGAIN) {
            break;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    if (way->ended && way->queued == 0 && !way->shut) {
        shutdown(way->to, SHUT_WR);
        way->shut = 1;
    }
    return 0;
}

// Moves what it can one way; returns -1 when the pair must close.
static int pump(struct direction *way) {
    if (copyMode) return pumpCopy(way);
    while (!way->ended && way->queued < way->capacity) {
        ssize_t n = splice(way->from, NULL, way->pipe[1], NULL, way->capacity - way->queued,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            way->queued += (size_t)n;
        } else if (n == 0) {
            way->ended = 1;
        } else if (errno == EAGAIN) {
            // No bytes in the socket, or no slot left in the pipe: wait for a drain before reading again
            // (level-triggered EPOLLIN would otherwise spin on a socket the full pipe cannot take).
            way->full = way->queued > 0;
            break;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    while (way->queued > 0) {
        ssize_t n = splice(way->pipe[0], NULL, way->to, NULL, way->queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            way->queued -= (size_t)n;
            way->full = 0;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    if (way->ended && way->queued == 0 && !way->shut) {
        shutdown(way->to, SHUT_WR);
        way->shut = 1;
    }
    return 0;
}

static void accepted(int inbound, const struct sockaddr_in *upstreamAddress) {
    int outbound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (outbound < 0 || connect(outbound, (const struct sockaddr *)upstreamAddress, sizeof(*upstreamAddress)) < 0) {
        perror("SpliceRelay: connect");
        close(inbound);
        if (outbound >= 0) close(outbound);
        return;
    }
    struct pair *pair = calloc(1, sizeof(*pair));
    struct side *sides = calloc(2, sizeof(*sides));
    if (pair == NULL || sides == NULL) die("calloc");
    pair->fd[0] = inbound;
    pair->fd[1] = outbound;
    int one = 1;
    for (int i = 0; i < 2; i++) {
        setsockopt(pair->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(pair->fd[i], F_SETFL, fcntl(pair->fd[i], F_GETFL) | O_NONBLOCK);
        struct direction *way = &pair->way[i];
        way->from = pair->fd[i];
        way->to = pair->fd[1 - i];
        way->pipe[0] = way->pipe[1] = -1;
        way->capacity = PIPE_BYTES;
        if (copyMode) {
            if ((way->buffer = malloc(PIPE_BYTES)) == NULL) die("malloc");
        } else {
            if (pipe2(way->pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe2");
            // An unprivileged user past fs.pipe-user-pages-soft gets the default size instead.
            if (fcntl(way->pipe[1], F_SETPIPE_SZ, PIPE_BYTES) < 0) {
                int size = fcntl(way->pipe[1], F_GETPIPE_SZ);
                if (size <= 0) die("F_GETPIPE_SZ");
                way->capacity = (size_t)size;
            }
        }
        sides[i] = (struct side){.pair = pair, .index = i};
        pair->interest[i] = EPOLLIN;
        pair->registered[i] = 1;
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = &sides[i]};
        if (epoll_ctl(epollFD, EPOLL_CTL_ADD, pair->fd[i], &event) < 0) die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: SpliceRelay LISTEN_PORT UPSTREAM_PORT\n");
        return 2;
    }
    struct sockaddr_in listenAddress = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    struct sockaddr_in upstream = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    listenAddress.sin_addr.s_addr = upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, (struct sockaddr *)&listenAddress, sizeof(listenAddress)) < 0) die("bind");
    if (listen(listener, 4096) < 0) die("listen");
    signal(SIGPIPE, SIG_IGN);
    copyMode = getenv("SPLICE_RELAY_COPY") != NULL && strcmp(getenv("SPLICE_RELAY_COPY"), "1") == 0;
    epollFD = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event listening = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epollFD, EPOLL_CTL_ADD, listener, &listening) < 0) die("epoll_ctl");
    struct epoll_event events[64];
    for (;;) {
        int count = epoll_wait(epollFD, events, 64, -1);
        if (count < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < count; e++) {
            struct side *side = events[e].data.ptr;
            if (side == (void *)-1) continue;  // its pair closed earlier in this batch
            if (side == NULL) {
                int inbound;
                while ((inbound = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) >= 0) accepted(inbound, &upstream);
                // Out of descriptors: the listener stays readable; wait rather than spin on it.
                if (errno == EMFILE || errno == ENFILE) usleep(100000);
                continue;
            }
            struct pair *pair = side->pair;
            struct side *sides = side - side->index;
            // Both ways: a readable socket feeds its own way, a writable one drains the other's.
            int failed = pump(&pair->way[0]) < 0 || pump(&pair->way[1]) < 0;
            int done = pair->way[0].shut && pair->way[1].shut;
            if (failed || done || (events[e].events & (EPOLLERR | EPOLLHUP) && pair->way[0].queued == 0 &&
                                   pair->way[1].queued == 0 && (pair->way[0].ended || pair->way[1].ended))) {
                // Later events of this batch may name the pair about to be freed: drop them.
                for (int later = e + 1; later < count; later++) {
                    struct side *other = events[later].data.ptr;
                    if (other == &sides[0] || other == &sides[1]) events[later].data.ptr = (void *)-1;
                }
                closePair(pair, sides);
                continue;
            }
            updateInterest(pair, sides);
        }
    }
}
#else
#include <stdio.h>
int main(void) {
    fprintf(stderr, "SpliceRelay needs Linux\n");
    return 1;
}
#endif
