/*
 * rawecho: the `raw-c` reference subject, a minimal C echo server on edge-triggered epoll.
 *
 * What native code does for the echo workloads with no event-loop layers at all: one epoll set,
 * every socket registered once with EPOLLIN|EPOLLET, an accept loop, recv(64 KiB) until a short
 * read or EAGAIN, and send() of what was read (a partial send keeps the rest and waits for
 * EPOLLOUT).  It bounds what a native event loop (uvloop, rloop) can reach on the same workload;
 * benchmarks/rawecho.py is the same server in pure Python, the bound for pure-Python loops.
 *
 *     rawecho [-H host] [-p port | -u unix_path]
 *
 * Once listening it prints one JSON line {"ready": true, "port": N, "pid": P, "edgeloop": null}
 * (port 0 for a Unix socket) and serves until SIGTERM.  It asks the kernel for SIGTERM when the
 * harness dies (PR_SET_PDEATHSIG), like every subject.
 *
 * Built on first use by benchmarks/proc.py (build_c) with `cc -O2`, as echoload.c is.  Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_SIZE 65536

struct conn {
    char *pending;  /* bytes read but not yet sent (a partial send), in order */
    size_t len;
};

static struct conn *conns;
static size_t nconns;
static char buf[READ_SIZE];

static void die(const char *what) {
    fprintf(stderr, "rawecho: %s: %s\n", what, strerror(errno));
    exit(2);
}

static struct conn *conn_of(int fd) {
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 64;
        while (n <= (size_t)fd) n *= 2;
        conns = realloc(conns, n * sizeof *conns);
        if (!conns) die("realloc");
        memset(conns + nconns, 0, (n - nconns) * sizeof *conns);
        nconns = n;
    }
    return &conns[fd];
}

static void set_events(int ep, int fd, uint32_t events) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl MOD");
}

/* Keep data[0:n] to send once the socket is writable again. */
static void keep(int ep, int fd, struct conn *c, const char *data, size_t n) {
    int was_empty = c->len == 0;
    c->pending = realloc(c->pending, c->len + n);
    if (!c->pending) die("realloc");
    memcpy(c->pending + c->len, data, n);
    c->len += n;
    if (was_empty) set_events(ep, fd, EPOLLIN | EPOLLOUT | EPOLLET);
}

/* Send what is pending. Returns -1 when the connection is dead. */
static int flush(int ep, int fd, struct conn *c) {
    size_t off = 0;
    while (off < c->len) {
        ssize_t n = send(fd, c->pending + off, c->len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            memmove(c->pending, c->pending + off, c->len - off);
            c->len -= off;
            return 0;
        } else {
            return -1;
        }
    }
    free(c->pending);
    c->pending = NULL;
    c->len = 0;
    set_events(ep, fd, EPOLLIN | EPOLLET);
    return 0;
}

/* Read until a short read or EAGAIN, echoing each chunk. Returns -1 on EOF or error. */
static int echo(int ep, int fd, struct conn *c) {
    for (;;) {
        ssize_t r = recv(fd, buf, READ_SIZE, 0);
        if (r > 0) {
            if (c->len) {
                keep(ep, fd, c, buf, (size_t)r);
            } else {
                ssize_t n = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
                if (n < 0) {
                    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
                    n = 0;
                }
                if (n < r) keep(ep, fd, c, buf + n, (size_t)(r - n));
            }
            if (r < READ_SIZE) return 0;  /* short read: the socket is drained */
        } else if (r == 0) {
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

static int listen_on(const char *host, int port, const char *unix_path, int *bound_port) {
    int fd, one = 1;
    if (unix_path) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        strncpy(sun.sun_path, unix_path, sizeof sun.sun_path - 1);
        unlink(unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) die("bind");
        *bound_port = 0;
    } else {
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fprintf(stderr, "rawecho: bad IPv4 address %s\n", host);
            exit(2);
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) die("bind");
        if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0) die("getsockname");
        *bound_port = ntohs(sin.sin_port);
    }
    if (listen(fd, 1024) < 0) die("listen");
    return fd;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *unix_path = NULL, *parent;
    int port = 0, bound = 0, opt, lfd, ep, one = 1;
    struct epoll_event ev, events[256];

    while ((opt = getopt(argc, argv, "H:p:u:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': unix_path = optarg; break;
        default:
            fprintf(stderr, "usage: rawecho [-H host] [-p port | -u unix_path]\n");
            return 2;
        }
    }
    /* die with the harness, as benchmarks/proc.py's die_with_parent does for Python subjects */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    parent = getenv("EDGELOOP_BENCH_PARENT");
    if (parent && getppid() != (pid_t)atol(parent)) return 1;
    signal(SIGPIPE, SIG_IGN);

    lfd = listen_on(host, port, unix_path, &bound);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = lfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl ADD");
    printf("{\"ready\": true, \"port\": %d, \"pid\": %d, \"edgeloop\": null}\n", bound,
           (int)getpid());
    fflush(stdout);

    for (;;) {
        int n = epoll_wait(ep, events, 256, -1), k;
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (k = 0; k < n; k++) {
            int fd = events[k].data.fd;
            uint32_t got = events[k].events;
            struct conn *c;
            if (fd == lfd) {
                for (;;) {  /* edge-triggered: accept until EAGAIN */
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED) continue;
                        break;  /* EAGAIN, or EMFILE and the like: wait for the next edge */
                    }
                    if (!unix_path) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = conn_of(cfd);
                    c->pending = NULL;
                    c->len = 0;
                    ev.events = EPOLLIN | EPOLLET;
                    ev.data.fd = cfd;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) < 0) die("epoll_ctl ADD");
                }
                continue;
            }
            c = conn_of(fd);
            if (((got & EPOLLOUT) && c->len && flush(ep, fd, c) < 0) ||
                ((got & (EPOLLIN | EPOLLHUP | EPOLLERR)) && echo(ep, fd, c) < 0)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                free(c->pending);
                c->pending = NULL;
                c->len = 0;
            }
        }
    }
}
