/*
 * loadclient: a small epoll TCP load client for the xinetd-twisted benchmarks.
 *
 * Usage: loadclient HOST PORT CONCURRENCY TOTAL SECONDS [PAYLOAD_BYTES [CONN_TIMEOUT_S]]
 *
 * Keeps CONCURRENCY connections in flight until TOTAL connections have been
 * started or SECONDS have passed.  For each connection: non-blocking connect,
 * optionally send PAYLOAD_BYTES bytes then shutdown(SHUT_WR), read until EOF.
 * Latency is measured from the connect() call to EOF, in microseconds.
 * Refused, reset and timed-out connections (per-connection timeout, default
 * 10 s) are errors.  In-flight connections are given until their own timeout
 * after SECONDS, so a run lasts at most SECONDS + CONN_TIMEOUT_S.
 *
 * Prints one JSON line with the counts, the rate, p50/p99 latency, the bytes
 * read and the client's own user+sys CPU seconds, so the reader can check
 * that the client was not the bottleneck.
 *
 * Loopback only by intent: HOST must be a numeric IPv4 or IPv6 address.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { S_FREE = 0, S_CONNECTING, S_SENDING, S_READING };

struct conn {
    int fd;
    int state;
    size_t sent;
    double start;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static struct sockaddr_storage addr;
static socklen_t addrlen;
static int epfd;
static char *payload;
static size_t payload_len;

static long completed, started, err_refused, err_reset, err_timeout, err_other;
static long long bytes_read;
static uint32_t *lat;
static long lat_cap;

static void finish(struct conn *c, int ok)
{
    if (ok) {
        double us = (now() - c->start) * 1e6;
        if (completed < lat_cap)
            lat[completed] = us > 4e9 ? 4000000000u : (uint32_t)us;
        completed++;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = S_FREE;
}

static void fail(struct conn *c, int err)
{
    if (err == ECONNREFUSED)
        err_refused++;
    else if (err == ECONNRESET || err == EPIPE)
        err_reset++;
    else if (err == ETIMEDOUT)
        err_timeout++;
    else
        err_other++;
    finish(c, 0);
}

static void start_conn(struct conn *c, long idx)
{
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->start = now();
    started++;
    if (fd < 0) {
        err_other++;
        return;
    }
    c->fd = fd;
    c->sent = 0;
    int r = connect(fd, (struct sockaddr *)&addr, addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        int err = errno;
        c->state = S_CONNECTING;
        fail(c, err); /* never registered: the EPOLL_CTL_DEL in finish() is a no-op */
        return;
    }
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)idx};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Send what the socket takes; after the whole payload, half-close. */
static void do_send(struct conn *c, long idx)
{
    while (c->sent < payload_len) {
        ssize_t n = send(c->fd, payload + c->sent, payload_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            fail(c, errno);
            return;
        }
        c->sent += (size_t)n;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = S_READING;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void do_read(struct conn *c)
{
    char buf[65536];
    /* Bounded: a server that streams forever is cut by the timeout scan. */
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            bytes_read += n;
            continue;
        }
        if (n == 0) {
            finish(c, 1);
            return;
        }
        if (errno == EAGAIN || errno == EINTR)
            return;
        fail(c, errno);
        return;
    }
}

static void handle(struct conn *c, long idx, uint32_t events)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c, err);
            return;
        }
        if (payload_len) {
            c->state = S_SENDING;
            do_send(c, idx);
            return;
        }
        c->state = S_READING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        /* Data or EOF may already be waiting. */
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            do_read(c);
        return;
    }
    if (c->state == S_SENDING) {
        if (events & EPOLLOUT)
            do_send(c, idx);
        if (c->state == S_SENDING && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            do_read(c);
        return;
    }
    if (c->state == S_READING)
        do_read(c);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s HOST PORT CONCURRENCY TOTAL SECONDS [PAYLOAD_BYTES [CONN_TIMEOUT_S]]\n",
                argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    long conc = atol(argv[3]);
    long total = atol(argv[4]);
    double limit = atof(argv[5]);
    payload_len = argc > 6 ? (size_t)atol(argv[6]) : 0;
    double conn_timeout = argc > 7 ? atof(argv[7]) : 10.0;
    if (port <= 0 || port > 65535 || conc < 1 || total < 1 || limit <= 0 || conn_timeout <= 0) {
        fprintf(stderr, "loadclient: bad arguments\n");
        return 2;
    }
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        addrlen = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        addrlen = sizeof *a6;
    } else {
        fprintf(stderr, "loadclient: HOST must be a numeric address\n");
        return 2;
    }
    if (conc > total)
        conc = total;
    payload = malloc(payload_len + 1);
    for (size_t i = 0; i < payload_len; i++)
        payload[i] = (char)('a' + i % 26);
    lat_cap = total;
    lat = malloc(sizeof *lat * (size_t)total);
    struct conn *conns = calloc((size_t)conc, sizeof *conns);
    struct epoll_event *evs = calloc((size_t)conc, sizeof *evs);
    if (!payload || !lat || !conns || !evs) {
        fprintf(stderr, "loadclient: out of memory\n");
        return 2;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);

    double t0 = now();
    double deadline = t0 + limit;
    double last_scan = t0;
    long inflight = 0;
    for (long i = 0; i < conc; i++) {
        conns[i].fd = -1;
        if (started < total) {
            start_conn(&conns[i], i);
            if (conns[i].state != S_FREE)
                inflight++;
        }
    }
    /* Bounded by time: after the deadline nothing new starts and the
     * per-connection timeout ends every remaining connection. */
    for (;;) {
        double t = now();
        int starting = started < total && t < deadline;
        if (inflight == 0 && !starting)
            break;
        int n = epoll_wait(epfd, evs, (int)conc, 50);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            long idx = (long)evs[k].data.u64;
            struct conn *c = &conns[idx];
            if (c->state == S_FREE)
                continue;
            handle(c, idx, evs[k].events);
        }
        t = now();
        if (t - last_scan > 0.05) {
            last_scan = t;
            for (long i = 0; i < conc; i++)
                if (conns[i].state != S_FREE && t - conns[i].start > conn_timeout)
                    fail(&conns[i], ETIMEDOUT);
        }
        inflight = 0;
        for (long i = 0; i < conc; i++) {
            if (conns[i].state == S_FREE && started < total && t < deadline)
                start_conn(&conns[i], i);
            if (conns[i].state != S_FREE)
                inflight++;
        }
    }
    double seconds = now() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    long nlat = completed < lat_cap ? completed : lat_cap;
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_u32);
    uint32_t p50 = nlat ? lat[(nlat - 1) * 50 / 100] : 0;
    uint32_t p99 = nlat ? lat[(nlat - 1) * 99 / 100] : 0;
    long errors = err_refused + err_reset + err_timeout + err_other;
    printf("{\"completed\": %ld, \"errors\": %ld, \"refused\": %ld, \"reset\": %ld, "
           "\"timeouts\": %ld, \"other_errors\": %ld, \"started\": %ld, "
           "\"seconds\": %.6f, \"rate\": %.1f, \"p50_us\": %u, \"p99_us\": %u, "
           "\"bytes_read\": %lld, \"client_cpu_s\": %.6f, \"client_cpu_share\": %.4f}\n",
           completed, errors, err_refused, err_reset, err_timeout, err_other, started, seconds,
           seconds > 0 ? completed / seconds : 0.0, p50, p99, bytes_read, cpu,
           seconds > 0 ? cpu / seconds : 0.0);
    return 0;
}
