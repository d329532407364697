/*
 * loadclient: a small epoll TCP load client for the xinetd-twisted benchmarks.
 *
 * Usage: loadclient [-t THREADS] [-r] HOST PORT CONCURRENCY TOTAL SECONDS
 *                   [PAYLOAD_BYTES [CONN_TIMEOUT_S]]
 *
 * Keeps CONCURRENCY connections in flight until TOTAL connections have been
 * started or SECONDS have passed.  For each connection: non-blocking connect,
 * optionally send PAYLOAD_BYTES bytes then shutdown(SHUT_WR), read until EOF.
 * Latency is measured from the connect() call to EOF, in microseconds.
 * Refused, reset and timed-out connections (per-connection timeout, default
 * 10 s) are errors.  In-flight connections are given until their own timeout
 * after SECONDS, so a run lasts at most SECONDS + CONN_TIMEOUT_S.
 *
 * With -t THREADS (default 1, at most CONCURRENCY) the work is split over
 * that many threads, each with its own epoll loop and its share of the
 * concurrency and of TOTAL, so that one client core is not the limit of a
 * fast server.  The results are merged: the counts are summed, the rate is
 * over the whole run (the first start to the last thread's end) and the
 * percentiles are of every connection's latency.
 *
 * With -r (a payload needed) the client does not half-close: once it has
 * read back as many bytes as it sent, it closes with SO_LINGER 0, so the
 * connection ends with a RST and neither side keeps a TIME_WAIT; latency is
 * then to the last byte of the reply.  A client that half-closes sends the
 * first FIN, so it keeps every connection's TIME_WAIT, keyed by its port:
 * from one address to one server port, the ephemeral range (28,232 ports by
 * default) lasts a minute at 470 connections a second, and beyond that each
 * connect() hunts for a port whose TIME_WAIT it may reuse.  Against an
 * in-process echo that search, not the server, sets the rate.
 *
 * Prints one JSON line with the counts, the rate, p50/p99 latency, the bytes
 * read, the threads and the client's own user+sys CPU seconds (all threads;
 * its share of one core may pass 1 with threads), so the reader can check
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
#include <pthread.h>
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

enum { MAX_THREADS = 64 };

struct conn {
    int fd;
    int state;
    size_t sent, got;
    double start;
};

/* One thread's share of the run and what it counted. */
struct worker {
    pthread_t thread;
    int epfd;
    long conc, total;
    struct conn *conns;
    struct epoll_event *evs;
    long completed, started, err_refused, err_reset, err_timeout, err_other;
    long long bytes_read;
    uint32_t *lat;
    long lat_cap;
    double ended;
    int failed;
};

/* Shared, read-only once the threads run. */
static struct sockaddr_storage addr;
static socklen_t addrlen;
static char *payload;
static size_t payload_len;
static double t0, deadline, conn_timeout;
static int reset_after_reply;

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

static void finish(struct worker *w, struct conn *c, int ok)
{
    if (ok) {
        double us = (now() - c->start) * 1e6;
        if (w->completed < w->lat_cap)
            w->lat[w->completed] = us > 4e9 ? 4000000000u : (uint32_t)us;
        w->completed++;
    }
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = S_FREE;
}

static void fail(struct worker *w, struct conn *c, int err)
{
    if (err == ECONNREFUSED)
        w->err_refused++;
    else if (err == ECONNRESET || err == EPIPE)
        w->err_reset++;
    else if (err == ETIMEDOUT)
        w->err_timeout++;
    else
        w->err_other++;
    finish(w, c, 0);
}

static void start_conn(struct worker *w, struct conn *c, long idx)
{
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->start = now();
    w->started++;
    if (fd < 0) {
        w->err_other++;
        return;
    }
    c->fd = fd;
    c->sent = 0;
    c->got = 0;
    int r = connect(fd, (struct sockaddr *)&addr, addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        int err = errno;
        c->state = S_CONNECTING;
        fail(w, c, err); /* never registered: the EPOLL_CTL_DEL in finish() is a no-op */
        return;
    }
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)idx};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Send what the socket takes; after the whole payload, half-close. */
static void do_send(struct worker *w, struct conn *c, long idx)
{
    while (c->sent < payload_len) {
        ssize_t n = send(c->fd, payload + c->sent, payload_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            fail(w, c, errno);
            return;
        }
        c->sent += (size_t)n;
    }
    if (!reset_after_reply)
        shutdown(c->fd, SHUT_WR);
    c->state = S_READING;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void do_read(struct worker *w, struct conn *c)
{
    char buf[65536];
    /* Bounded: a server that streams forever is cut by the timeout scan. */
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            w->bytes_read += n;
            c->got += (size_t)n;
            if (reset_after_reply && c->got >= payload_len) {
                struct linger now_ = {.l_onoff = 1, .l_linger = 0};
                setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &now_, sizeof now_);
                finish(w, c, 1);
                return;
            }
            continue;
        }
        if (n == 0) {
            finish(w, c, 1);
            return;
        }
        if (errno == EAGAIN || errno == EINTR)
            return;
        fail(w, c, errno);
        return;
    }
}

static void handle(struct worker *w, struct conn *c, long idx, uint32_t events)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(w, c, err);
            return;
        }
        if (payload_len) {
            c->state = S_SENDING;
            do_send(w, c, idx);
            return;
        }
        c->state = S_READING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        /* Data or EOF may already be waiting. */
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            do_read(w, c);
        return;
    }
    if (c->state == S_SENDING) {
        if (events & EPOLLOUT)
            do_send(w, c, idx);
        if (c->state == S_SENDING && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            do_read(w, c);
        return;
    }
    if (c->state == S_READING)
        do_read(w, c);
}

/* One thread's loop over its own connections, bounded by time as a whole:
 * after the deadline nothing new starts and the per-connection timeout
 * ends every remaining connection. */
static void *run(void *arg)
{
    struct worker *w = arg;
    long conc = w->conc;
    struct conn *conns = w->conns;
    double last_scan = now();
    long inflight = 0;
    for (long i = 0; i < conc; i++) {
        conns[i].fd = -1;
        if (w->started < w->total) {
            start_conn(w, &conns[i], i);
            if (conns[i].state != S_FREE)
                inflight++;
        }
    }
    for (;;) {
        double t = now();
        int starting = w->started < w->total && t < deadline;
        if (inflight == 0 && !starting)
            break;
        int n = epoll_wait(w->epfd, w->evs, (int)conc, 50);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            w->failed = 1;
            break;
        }
        for (int k = 0; k < n; k++) {
            long idx = (long)w->evs[k].data.u64;
            struct conn *c = &conns[idx];
            if (c->state == S_FREE)
                continue;
            handle(w, c, idx, w->evs[k].events);
        }
        t = now();
        if (t - last_scan > 0.05) {
            last_scan = t;
            for (long i = 0; i < conc; i++)
                if (conns[i].state != S_FREE && t - conns[i].start > conn_timeout)
                    fail(w, &conns[i], ETIMEDOUT);
        }
        inflight = 0;
        for (long i = 0; i < conc; i++) {
            if (conns[i].state == S_FREE && w->started < w->total && t < deadline)
                start_conn(w, &conns[i], i);
            if (conns[i].state != S_FREE)
                inflight++;
        }
    }
    w->ended = now();
    return NULL;
}

/* Give worker k of n its share (the first ones one more) of conc and total. */
static int setup_worker(struct worker *w, int k, int n, long conc, long total)
{
    memset(w, 0, sizeof *w);
    w->conc = conc / n + (k < conc % n);
    w->total = total / n + (k < total % n);
    w->lat_cap = w->total;
    w->lat = malloc(sizeof *w->lat * (size_t)(w->total ? w->total : 1));
    w->conns = calloc((size_t)w->conc, sizeof *w->conns);
    w->evs = calloc((size_t)w->conc, sizeof *w->evs);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    return w->lat && w->conns && w->evs && w->epfd >= 0;
}

static int parse_host(const char *host, int port)
{
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        addrlen = sizeof *a4;
        return 1;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        addrlen = sizeof *a6;
        return 1;
    }
    return 0;
}

/* Sum the workers' counts into workers[0] and gather every latency there. */
static void merge(struct worker *ws, int n, long total)
{
    struct worker *m = &ws[0];
    uint32_t *all = malloc(sizeof *all * (size_t)(total ? total : 1));
    long nlat = 0;
    for (int k = 0; k < n; k++) {
        struct worker *w = &ws[k];
        long got = w->completed < w->lat_cap ? w->completed : w->lat_cap;
        if (all)
            memcpy(all + nlat, w->lat, sizeof *all * (size_t)got);
        nlat += got;
        if (k == 0)
            continue;
        m->completed += w->completed;
        m->started += w->started;
        m->err_refused += w->err_refused;
        m->err_reset += w->err_reset;
        m->err_timeout += w->err_timeout;
        m->err_other += w->err_other;
        m->bytes_read += w->bytes_read;
        m->failed |= w->failed;
        if (w->ended > m->ended)
            m->ended = w->ended;
    }
    if (all) {
        free(m->lat);
        m->lat = all;
    }
    m->lat_cap = all ? nlat : m->lat_cap;
}

int main(int argc, char **argv)
{
    int threads = 1, opt;
    while ((opt = getopt(argc, argv, "+t:r")) != -1) {
        if (opt == 't')
            threads = atoi(optarg);
        else if (opt == 'r')
            reset_after_reply = 1;
        else
            return 2;
    }
    argc -= optind - 1;
    argv += optind - 1;
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s [-t THREADS] [-r] HOST PORT CONCURRENCY TOTAL SECONDS "
                "[PAYLOAD_BYTES [CONN_TIMEOUT_S]]\n",
                argv[0]);
        return 2;
    }
    int port = atoi(argv[2]);
    long conc = atol(argv[3]);
    long total = atol(argv[4]);
    double limit = atof(argv[5]);
    payload_len = argc > 6 ? (size_t)atol(argv[6]) : 0;
    conn_timeout = argc > 7 ? atof(argv[7]) : 10.0;
    if (port <= 0 || port > 65535 || conc < 1 || total < 1 || limit <= 0 ||
        conn_timeout <= 0 || threads < 1 || threads > MAX_THREADS ||
        (reset_after_reply && payload_len == 0)) {
        fprintf(stderr, "loadclient: bad arguments\n");
        return 2;
    }
    if (!parse_host(argv[1], port)) {
        fprintf(stderr, "loadclient: HOST must be a numeric address\n");
        return 2;
    }
    if (conc > total)
        conc = total;
    if (threads > conc)
        threads = (int)conc;
    payload = malloc(payload_len + 1);
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (!payload || !ws) {
        fprintf(stderr, "loadclient: out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < payload_len; i++)
        payload[i] = (char)('a' + i % 26);
    for (int k = 0; k < threads; k++)
        if (!setup_worker(&ws[k], k, threads, conc, total)) {
            fprintf(stderr, "loadclient: out of memory\n");
            return 2;
        }

    t0 = now();
    deadline = t0 + limit;
    for (int k = 1; k < threads; k++)
        if (pthread_create(&ws[k].thread, NULL, run, &ws[k]) != 0) {
            fprintf(stderr, "loadclient: cannot start a thread\n");
            return 2;
        }
    run(&ws[0]);
    for (int k = 1; k < threads; k++)
        pthread_join(ws[k].thread, NULL);
    merge(ws, threads, total);
    struct worker *m = &ws[0];
    if (m->failed)
        return 1;
    double seconds = m->ended - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    long nlat = m->completed < m->lat_cap ? m->completed : m->lat_cap;
    qsort(m->lat, (size_t)nlat, sizeof *m->lat, cmp_u32);
    uint32_t p50 = nlat ? m->lat[(nlat - 1) * 50 / 100] : 0;
    uint32_t p99 = nlat ? m->lat[(nlat - 1) * 99 / 100] : 0;
    long errors = m->err_refused + m->err_reset + m->err_timeout + m->err_other;
    printf("{\"completed\": %ld, \"errors\": %ld, \"refused\": %ld, \"reset\": %ld, "
           "\"timeouts\": %ld, \"other_errors\": %ld, \"started\": %ld, "
           "\"seconds\": %.6f, \"rate\": %.1f, \"p50_us\": %u, \"p99_us\": %u, "
           "\"bytes_read\": %lld, \"threads\": %d, \"reset_after_reply\": %s, "
           "\"client_cpu_s\": %.6f, \"client_cpu_share\": %.4f}\n",
           m->completed, errors, m->err_refused, m->err_reset, m->err_timeout,
           m->err_other, m->started, seconds, seconds > 0 ? m->completed / seconds : 0.0,
           p50, p99, m->bytes_read, threads, reset_after_reply ? "true" : "false", cpu,
           seconds > 0 ? cpu / seconds : 0.0);
    return 0;
}
