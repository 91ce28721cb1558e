/*
 * echoload: a closed-loop echo load generator driven by epoll (level-triggered).
 *
 * Opens C connections (TCP or a Unix stream socket), and on each keeps exactly one message of S
 * bytes in flight: send it, wait until S bytes have come back, record the round-trip time, send
 * the next.  A warm-up phase of W seconds is run and not counted; then requests completed during
 * the next D seconds are counted and their latencies kept.  The result is one JSON object on
 * stdout: requests per second and latency percentiles in microseconds.
 *
 * Built on first use by benchmarks/loadgen.py with `cc -O2`.  Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t sent;     /* bytes of the current message written so far */
    size_t received; /* bytes of the current message echoed back so far */
    double started;  /* when the current message was first written */
    int want_out;    /* EPOLLOUT currently in the interest set */
    int dead;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "echoload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void usage(void) {
    fprintf(stderr,
            "usage: echoload [-H host] [-p port | -u unix_path] [-c conns] [-s size]\n"
            "                [-d seconds] [-w warmup_seconds]\n");
    exit(2);
}

static int dial(const char *host, int port, const char *unix_path) {
    int fd;
    if (unix_path) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        strncpy(sun.sun_path, unix_path, sizeof sun.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) die("connect");
    } else {
        struct sockaddr_in sin;
        int one = 1;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fprintf(stderr, "echoload: bad IPv4 address %s\n", host);
            exit(2);
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    return fd;
}

static void set_interest(int ep, struct conn *c, int idx, int want_out) {
    struct epoll_event ev;
    if (c->want_out == want_out) return;
    ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0);
    ev.data.u32 = (uint32_t)idx;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want_out;
}

/* Write as much of the current message as the socket takes. Returns -1 on a dead connection. */
static int pump_out(int ep, struct conn *c, int idx, const char *msg, size_t size) {
    while (c->sent < size) {
        ssize_t n = send(c->fd, msg + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_interest(ep, c, idx, 1);
            return 0;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    set_interest(ep, c, idx, 0);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *s, size_t n, double q) {
    double pos;
    size_t lo, hi;
    if (n == 0) return 0.0;
    pos = (double)(n - 1) * q / 100.0;
    lo = (size_t)pos;
    hi = lo + 1 < n ? lo + 1 : n - 1;
    return s[lo] + (s[hi] - s[lo]) * (pos - (double)lo);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *unix_path = NULL;
    int port = 0, nconns = 10, opt, ep, i, alive;
    size_t size = 1024, nlat = 0, caplat = 1 << 16;
    double duration = 1.0, warmup = 0.2, t_start, t_measure, t_end, t_now, elapsed, sum = 0.0;
    long long requests = 0, warm_requests = 0, errors = 0;
    char *msg, *scratch;
    double *lat;
    struct conn *conns;
    struct epoll_event events[256];
    const size_t scratch_size = 256 * 1024;

    while ((opt = getopt(argc, argv, "H:p:u:c:s:d:w:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': unix_path = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        default: usage();
        }
    }
    if ((!unix_path && port <= 0) || nconns <= 0 || size == 0 || duration <= 0) usage();

    msg = malloc(size);
    scratch = malloc(scratch_size);
    lat = malloc(caplat * sizeof *lat);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!msg || !scratch || !lat || !conns) die("malloc");
    memset(msg, 'x', size);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (i = 0; i < nconns; i++) {
        struct epoll_event ev;
        conns[i].fd = dial(host, port, unix_path);
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl");
    }

    t_start = now();
    t_measure = t_start + warmup;
    t_end = t_measure + duration;
    for (i = 0; i < nconns; i++) {
        conns[i].started = t_start;
        if (pump_out(ep, &conns[i], i, msg, size) < 0) { conns[i].dead = 1; errors++; }
    }
    alive = nconns - (int)errors;

    while (alive > 0) {
        int n, k, timeout_ms;
        t_now = now();
        if (t_now >= t_end) break;
        timeout_ms = (int)((t_end - t_now) * 1000.0) + 1;
        if (timeout_ms > 50) timeout_ms = 50;
        n = epoll_wait(ep, events, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (k = 0; k < n; k++) {
            int idx = (int)events[k].data.u32;
            struct conn *c = &conns[idx];
            if (c->dead) continue;
            if (events[k].events & EPOLLOUT) {
                if (pump_out(ep, c, idx, msg, size) < 0) goto broken;
            }
            if (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    ssize_t r = recv(c->fd, scratch, scratch_size, 0);
                    if (r > 0) {
                        c->received += (size_t)r;
                        if (c->received >= size) {
                            double t = now();
                            if (c->started >= t_measure && t <= t_end) {
                                double us = (t - c->started) * 1e6;
                                if (nlat == caplat) {
                                    caplat *= 2;
                                    lat = realloc(lat, caplat * sizeof *lat);
                                    if (!lat) die("realloc");
                                }
                                lat[nlat++] = us;
                                sum += us;
                                requests++;
                            } else if (c->started < t_measure) {
                                warm_requests++;
                            }
                            c->received = 0;
                            c->sent = 0;
                            c->started = t;
                            if (t >= t_end) break;
                            if (pump_out(ep, c, idx, msg, size) < 0) goto broken;
                        }
                    } else if (r == 0) {
                        goto broken;
                    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        break;
                    } else if (errno != EINTR) {
                        goto broken;
                    }
                }
            }
            continue;
        broken:
            c->dead = 1;
            errors++;
            alive--;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
    }
    t_now = now();
    elapsed = (t_now < t_end ? t_now : t_end) - t_measure;
    if (elapsed <= 0) elapsed = 1e-9;
    for (i = 0; i < nconns; i++) close(conns[i].fd);
    close(ep);

    qsort(lat, nlat, sizeof *lat, cmp_double);
    printf("{\"requests\": %lld, \"warmup_requests\": %lld, \"seconds\": %.6f, \"rps\": %.2f, "
           "\"conns\": %d, \"size\": %zu, \"errors\": %lld, \"latency_us\": {\"mean\": %.2f, "
           "\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f}}\n",
           requests, warm_requests, elapsed, (double)requests / elapsed, nconns, size, errors,
           nlat ? sum / (double)nlat : 0.0, pct(lat, nlat, 50), pct(lat, nlat, 90),
           pct(lat, nlat, 99), pct(lat, nlat, 99.9), nlat ? lat[nlat - 1] : 0.0);
    free(msg);
    free(scratch);
    free(lat);
    free(conns);
    return errors == nconns ? 1 : 0;
}
