/*
 * forkserver: the least a super-server can do for a spawned connection,
 * as a reference row for the spawn benchmarks.
 *
 * Usage: forkserver [-p PROCESSES | -r] [-u UID] [-g GID] HOST PORT PROGRAM
 *
 * Listens on HOST:PORT (numeric IPv4) and, for every connection, vforks
 * a child that makes the connection its fds 0, 1 and 2, takes the given
 * group and user, and execs PROGRAM.  Nothing else: no access control, no
 * limits, no logging, no environment but PATH, no reports to anyone.
 * With -p N, N processes share the listening socket and each accepts and
 * starts on its own (SIGTERM to the first stops them all).  With -r
 * (relay) one process accepts and passes each connection over a socket
 * pair (SCM_RIGHTS) to a second, which starts the child: the hop between
 * our daemon and its sub-helper, with nothing else around it.
 *
 * The bench runs it beside xinetd and ours on the same backend, so that a
 * run says how far any fork and exec server gets on this machine.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void onTerm(int sig)
{
    (void)sig;
    stopping = 1;
}

/* One byte and room for one descriptor: a message of the relay. */
typedef struct {
    char byte;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr mh;
} Message;

static void prepare(Message *m)
{
    memset(m, 0, sizeof *m);
    m->iov.iov_base = &m->byte;
    m->iov.iov_len = 1;
    m->mh.msg_iov = &m->iov;
    m->mh.msg_iovlen = 1;
    m->mh.msg_control = m->control.buf;
    m->mh.msg_controllen = sizeof m->control.buf;
}

/* The next connection: accepted from the listening socket, or (relay > 0:
 * a socket pair) received from the accepting process. */
static int nextConnection(int from, int relay)
{
    if (relay <= 0)
        return accept4(from, NULL, NULL, SOCK_CLOEXEC);
    Message m;
    prepare(&m);
    if (recvmsg(from, &m.mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m.mh);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* Accept on `listener` and pass each connection to `pair`. */
static int relayConnections(int listener, int pair)
{
    struct pollfd p = {listener, POLLIN, 0};
    while (!stopping) {
        if (poll(&p, 1, 500) <= 0)
            continue;
        for (int k = 0; k < 16; k++) {
            int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0)
                break;
            Message m;
            prepare(&m);
            m.byte = 'S';
            struct cmsghdr *h = CMSG_FIRSTHDR(&m.mh);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(h), &c, sizeof c);
            sendmsg(pair, &m.mh, MSG_NOSIGNAL);
            close(c);
        }
    }
    return 0;
}

/* Start PROGRAM on each connection from `from` (see nextConnection). */
static int serve(int from, int relay, char *program, uid_t uid, gid_t gid, int dropIds)
{
    char *argv[] = {program, NULL};
    char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    struct pollfd p = {from, POLLIN, 0};
    while (!stopping) {
        if (poll(&p, 1, 500) <= 0)
            goto reap;
        if (p.revents & POLLHUP)
            return 0;
        for (int k = 0; k < 16; k++) {
            int c = nextConnection(from, relay);
            if (c < 0)
                break;
            pid_t pid = vfork();
            if (pid == 0) {
                if (dup2(c, 0) < 0 || dup2(c, 1) < 0 || dup2(c, 2) < 0)
                    _exit(126);
                if (dropIds && (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
                    _exit(126);
                execve(program, argv, envp);
                _exit(127);
            }
            close(c);
        }
    reap:
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int processes = 1, dropIds = 0, relay = 0, opt;
    uid_t uid = 0;
    gid_t gid = 0;
    while ((opt = getopt(argc, argv, "+p:ru:g:")) != -1) {
        switch (opt) {
        case 'r':
            relay = 1;
            break;
        case 'p':
            processes = atoi(optarg);
            break;
        case 'u':
            uid = (uid_t)atol(optarg);
            dropIds = 1;
            break;
        case 'g':
            gid = (gid_t)atol(optarg);
            dropIds = 1;
            break;
        default:
            return 2;
        }
    }
    if (argc - optind != 3 || processes < 1 || (relay && processes > 1)) {
        fprintf(stderr, "usage: %s [-p PROCESSES | -r] [-u UID] [-g GID] HOST PORT PROGRAM\n",
                argv[0]);
        return 2;
    }
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &address.sin_addr) != 1) {
        fprintf(stderr, "forkserver: HOST must be a numeric IPv4 address\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(listener, (struct sockaddr *)&address, sizeof address) < 0 ||
        listen(listener, 1024) < 0) {
        fprintf(stderr, "forkserver: %s\n", strerror(errno));
        return 1;
    }
    struct sigaction term = {0};
    term.sa_handler = onTerm;
    sigaction(SIGTERM, &term, NULL);
    sigaction(SIGINT, &term, NULL);
    pid_t workers[64];
    int nWorkers = 0;
    if (relay) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            close(pair[0]);
            close(listener);
            return serve(pair[1], 1, argv[optind + 2], uid, gid, dropIds);
        }
        close(pair[1]);
        if (pid > 0)
            workers[nWorkers++] = pid;
        relayConnections(listener, pair[0]);
        close(pair[0]);
    }
    for (int k = 1; k < processes && nWorkers < 64; k++) {
        pid_t pid = fork();
        if (pid == 0)
            return serve(listener, 0, argv[optind + 2], uid, gid, dropIds);
        if (pid > 0)
            workers[nWorkers++] = pid;
    }
    if (!relay)
        serve(listener, 0, argv[optind + 2], uid, gid, dropIds);
    for (int k = 0; k < nWorkers; k++)
        kill(workers[k], SIGTERM);
    for (int k = 0; k < nWorkers; k++)
        waitpid(workers[k], NULL, 0);
    return 0;
}
