/*
 * The sub-helper, compiled: what xinetd_twisted/spawn/helper.py runs as
 * _Helper(isSub=True), without Python.  The root helper forks, sets a
 * credential set, and execs this program with two descriptors:
 *
 *     xinetd-subhelper FROM_ROOT DIRECT
 *
 * FROM_ROOT carries what the root helper forwards; DIRECT is the socket to
 * the daemon, which also sends requests on it and gets every event on it.
 * The wire is helper.py's (marshal-encoded tuples, see its docstring):
 * "T", "S", "K", "L" and "U" in; lists of "s", "f", "x", "e", "l", "u",
 * "a" and "h" events out.  Only this sub-helper takes "L": the daemon's
 * listening socket of a plain service, on which it then accepts and
 * starts each connection's server itself, reporting each with "a" (see
 * xinetd_twisted/spawn/delegation.py).
 *
 * Each server is started with clone(CLONE_VM) (vfork where raw system
 * calls are not written for the machine) and set up in the child with
 * system calls only; a failure before or at exec is left in this
 * process's memory (shared until exec) and reported as "x" when the
 * child is reaped.  Like the Python sub-helper, this one checks
 * its own resource limits (which the child inherits) once a wake-up for
 * each template, and ends when one it cannot restore was lowered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_MESSAGE 65536
#define MAX_EVENTS_PER_MESSAGE 128
#define BATCH 64
#define MAX_FDS 16

/* ---- marshal, the subset both sides use ---- */

enum { V_NONE, V_BOOL, V_INT, V_BYTES, V_SEQ };

typedef struct V {
    int kind;
    long long i;
    unsigned char *s; /* V_BYTES: NUL-terminated copy */
    size_t n;         /* V_BYTES: length; V_SEQ: items */
    struct V **items;
} V;

/* Decoded values live in an arena reset for each message. */
static unsigned char arena[1 << 20];
static size_t arenaUsed;

static void *aalloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > sizeof arena - arenaUsed)
        return NULL;
    void *p = arena + arenaUsed;
    arenaUsed += n;
    memset(p, 0, n);
    return p;
}

typedef struct {
    const unsigned char *p, *end;
    V *refs[4096];
    int nrefs;
    int bad;
} Reader;

static int need(Reader *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        r->bad = 1;
    return !r->bad;
}

static int32_t read32(Reader *r)
{
    int32_t x = 0;
    if (need(r, 4)) {
        memcpy(&x, r->p, 4);
        r->p += 4;
    }
    return x;
}

static int read8(Reader *r) { return need(r, 1) ? *r->p++ : 0; }

static V *make(Reader *r, int kind)
{
    V *v = aalloc(sizeof *v);
    if (v == NULL)
        r->bad = 1;
    else
        v->kind = kind;
    return v;
}

static V *readValue(Reader *r, int depth)
{
    int b = read8(r);
    if (r->bad || depth > 16)
        return NULL;
    int code = b & 0x7f, slot = -1;
    if (b & 0x80) { /* FLAG_REF: numbered in the order written */
        if (r->nrefs == (int)(sizeof r->refs / sizeof r->refs[0])) {
            r->bad = 1;
            return NULL;
        }
        slot = r->nrefs++;
        r->refs[slot] = NULL;
    }
    V *v = NULL;
    switch (code) {
    case 'N':
        v = make(r, V_NONE);
        break;
    case 'T':
    case 'F':
        if ((v = make(r, V_BOOL)))
            v->i = code == 'T';
        break;
    case 'i':
        if ((v = make(r, V_INT)))
            v->i = read32(r);
        break;
    case 'l': { /* digits of 15 bits, least significant first */
        int32_t n = read32(r);
        int negative = n < 0;
        if (negative)
            n = -n;
        if (n > 4) { /* beyond 60 bits: nothing we send */
            r->bad = 1;
            return NULL;
        }
        unsigned long long acc = 0;
        for (int k = 0; k < n; k++) {
            int lo = read8(r), hi = read8(r);
            acc |= (unsigned long long)(lo | hi << 8) << (15 * k);
        }
        if ((v = make(r, V_INT)))
            v->i = negative ? -(long long)acc : (long long)acc;
        break;
    }
    case 's': case 'u': case 't': case 'a': case 'A': case 'z': case 'Z': {
        size_t n = (code == 'z' || code == 'Z') ? (size_t)read8(r) : (size_t)(uint32_t)read32(r);
        if (!need(r, n) || !(v = make(r, V_BYTES)) || !(v->s = aalloc(n + 1))) {
            r->bad = 1;
            return NULL;
        }
        memcpy(v->s, r->p, n);
        v->n = n;
        r->p += n;
        break;
    }
    case ')': case '(': case '[': {
        size_t n = code == ')' ? (size_t)read8(r) : (size_t)(uint32_t)read32(r);
        if (n > MAX_MESSAGE || !(v = make(r, V_SEQ)) ||
            !(v->items = aalloc((n ? n : 1) * sizeof(V *)))) {
            r->bad = 1;
            return NULL;
        }
        v->n = n;
        if (slot >= 0)
            r->refs[slot] = v;
        for (size_t k = 0; k < n && !r->bad; k++)
            v->items[k] = readValue(r, depth + 1);
        break;
    }
    case 'r': {
        int32_t k = read32(r);
        if (r->bad || k < 0 || k >= r->nrefs || r->refs[k] == NULL) {
            r->bad = 1;
            return NULL;
        }
        return r->refs[k];
    }
    default:
        r->bad = 1;
        return NULL;
    }
    if (slot >= 0 && v != NULL)
        r->refs[slot] = v;
    return r->bad ? NULL : v;
}

static V *decode(const unsigned char *data, size_t n)
{
    static Reader r;
    r.p = data;
    r.end = data + n;
    r.nrefs = 0;
    r.bad = 0;
    V *v = readValue(&r, 0);
    return r.bad ? NULL : v;
}

static int isSeq(V *v, size_t atLeast) { return v && v->kind == V_SEQ && v->n >= atLeast; }
static int isInt(V *v) { return v && (v->kind == V_INT || v->kind == V_BOOL); }
static int isBytes(V *v) { return v && v->kind == V_BYTES; }

/* ---- events for the daemon ---- */

static int direct = -1;
static unsigned char events[MAX_MESSAGE];
static size_t eventsLen;
static int nEvents;
static int eventFds[MAX_EVENTS_PER_MESSAGE];
static int nEventFds;

static void put(const void *p, size_t n)
{
    memcpy(events + eventsLen, p, n);
    eventsLen += n;
}

static void putInt(long long x)
{
    if (x >= INT32_MIN && x <= INT32_MAX) {
        int32_t y = (int32_t)x;
        put("i", 1);
        put(&y, 4);
        return;
    }
    unsigned long long m = x < 0 ? -(unsigned long long)x : (unsigned long long)x;
    unsigned char digits[10];
    int32_t n = 0;
    while (m) {
        unsigned d = (unsigned)(m & 0x7fff);
        digits[2 * n] = d & 0xff;
        digits[2 * n + 1] = d >> 8;
        m >>= 15;
        n++;
    }
    int32_t sized = x < 0 ? -n : n;
    put("l", 1);
    put(&sized, 4);
    put(digits, 2 * (size_t)n);
}

static void putText(const char *s)
{
    unsigned char h[2] = {'z', (unsigned char)strlen(s)};
    put(h, 2);
    put(s, strlen(s));
}

static void flush(void)
{
    if (nEvents == 0)
        return;
    /* The list's header, then the events as they were written. */
    unsigned char head[5] = {'['};
    int32_t n = nEvents;
    memcpy(head + 1, &n, 4);
    struct iovec iov[2] = {{head, sizeof head}, {events, eventsLen}};
    struct msghdr mh = {0};
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_EVENTS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    if (nEventFds) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nEventFds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nEventFds);
        memcpy(CMSG_DATA(c), eventFds, sizeof(int) * nEventFds);
    }
    /* Blocking, as the Python sub-helper's send: the daemon reads its end. */
    sendmsg(direct, &mh, MSG_NOSIGNAL);
    for (int k = 0; k < nEventFds; k++)
        close(eventFds[k]); /* the daemon has its copies */
    eventsLen = 0;
    nEvents = 0;
    nEventFds = 0;
}

/* Room for one more event of at most `size` bytes. */
static void room(size_t size)
{
    if (nEvents >= MAX_EVENTS_PER_MESSAGE || eventsLen + size + 5 > sizeof events)
        flush();
}

static void eventHead(const char *kind, int fields)
{
    unsigned char h[2] = {')', (unsigned char)fields};
    put(h, 2);
    putText(kind);
    nEvents++;
}

static void started(long long rid, pid_t pid)
{
    room(32);
    eventHead("s", 3);
    putInt(rid);
    putInt(pid);
}

/* Spawn `rid` failed: give back a copy of its connection for a retry. */
static void failed(long long rid, int err, int fd, const char *why)
{
    int copy = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    room(64);
    eventHead("f", 5);
    putInt(rid);
    putInt(err);
    if (why)
        putText(why);
    else
        put("N", 1);
    put(copy >= 0 ? "T" : "F", 1);
    if (copy >= 0)
        eventFds[nEventFds++] = copy;
}

static void reaped(pid_t pid, int status, int err, int stage)
{
    room(64);
    if (stage) {
        eventHead("x", 4);
        putInt(pid);
        putInt(err);
        putText(stage == 2 ? "exec" : "setup");
        status = 127 << 8;
    }
    eventHead("e", 3);
    putInt(pid);
    putInt(status);
}

/* ---- resource limits ---- */

typedef struct {
    int resource;
    struct rlimit value;
} Limit;

/* Make our own limits these (a child inherits them); 0 when one of them
 * cannot be restored (a hard limit was lowered). */
static int ensureLimits(const Limit *limits, int n)
{
    for (int k = 0; k < n; k++) {
        struct rlimit now;
        if (getrlimit(limits[k].resource, &now) != 0)
            continue;
        if (now.rlim_cur == limits[k].value.rlim_cur && now.rlim_max == limits[k].value.rlim_max)
            continue;
        if (setrlimit(limits[k].resource, &limits[k].value) != 0)
            return 0;
    }
    return 1;
}

static Limit ownLimits[RLIM_NLIMITS];
static int nOwnLimits;
static Limit nofileLimit;

/* ---- templates ---- */

typedef struct {
    long long id;
    char *executable;
    char **argv;
    char **env;
    int nEnv;
    int umask;
    int nice;
    Limit *limits;
    int nLimits;
    int inherited; /* every limit equal to ours: the child inherits them */
    char *chroot;
    char *cwd;
    int newSession;
    int noNewPrivileges;
    unsigned checked; /* the wake-up whose limit check it passed */
} Template;

static Template **templates;
static int nTemplates, capTemplates;
static unsigned wakeup = 1;

typedef struct {
    int inbox;
    long long id;
    unsigned char *data;
    size_t n;
} Parts;

static Parts *parts;
static int nParts;

static char *copyBytes(V *v)
{
    if (!isBytes(v))
        return NULL;
    char *s = malloc(v->n + 1);
    if (s) {
        memcpy(s, v->s, v->n);
        s[v->n] = 0;
    }
    return s;
}

static char **copyList(V *v, int *count)
{
    if (!isSeq(v, 0))
        return NULL;
    char **list = calloc(v->n + 1, sizeof(char *));
    if (list == NULL)
        return NULL;
    for (size_t k = 0; k < v->n; k++)
        if ((list[k] = copyBytes(v->items[k])) == NULL)
            return NULL; /* leaks a little, on a template that is refused */
    if (count)
        *count = (int)v->n;
    return list;
}

static void freeList(char **list)
{
    if (list)
        for (char **p = list; *p; p++)
            free(*p);
    free(list);
}

static void freeTemplate(Template *t)
{
    if (!t)
        return;
    free(t->executable);
    freeList(t->argv);
    freeList(t->env);
    free(t->limits);
    free(t->chroot);
    free(t->cwd);
    free(t);
}

static Template *findTemplate(long long id)
{
    for (int k = 0; k < nTemplates; k++)
        if (templates[k]->id == id)
            return templates[k];
    return NULL;
}

/* The fields of wire.encodeTemplate, without uid, gid and groups: we run
 * with them already. */
static Template *makeTemplate(long long id, V *f)
{
    if (!isSeq(f, 13) || !isBytes(f->items[0]) || !isInt(f->items[6]) ||
        !isSeq(f->items[8], 0) || !isBytes(f->items[10]))
        return NULL;
    Template *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->id = id;
    t->executable = copyBytes(f->items[0]);
    t->argv = copyList(f->items[1], NULL);
    t->env = copyList(f->items[2], &t->nEnv);
    t->umask = (int)f->items[6]->i;
    t->nice = isInt(f->items[7]) ? (int)f->items[7]->i : 0;
    V *limits = f->items[8];
    t->limits = calloc(limits->n + 1, sizeof(Limit));
    t->inherited = 1;
    for (size_t k = 0; t->limits && k < limits->n; k++) {
        V *l = limits->items[k];
        if (!isSeq(l, 3) || !isInt(l->items[0]) || !isInt(l->items[1]) || !isInt(l->items[2])) {
            freeTemplate(t);
            return NULL;
        }
        Limit *m = &t->limits[t->nLimits++];
        m->resource = (int)l->items[0]->i;
        /* RLIM_INFINITY is -1 in Python's resource module */
        m->value.rlim_cur = l->items[1]->i < 0 ? RLIM_INFINITY : (rlim_t)l->items[1]->i;
        m->value.rlim_max = l->items[2]->i < 0 ? RLIM_INFINITY : (rlim_t)l->items[2]->i;
        int same = 0;
        for (int j = 0; j < nOwnLimits; j++)
            if (ownLimits[j].resource == m->resource)
                same = ownLimits[j].value.rlim_cur == m->value.rlim_cur &&
                       ownLimits[j].value.rlim_max == m->value.rlim_max;
        t->inherited &= same;
    }
    t->chroot = copyBytes(f->items[9]);
    t->cwd = copyBytes(f->items[10]);
    t->newSession = isInt(f->items[11]) && f->items[11]->i;
    t->noNewPrivileges = isInt(f->items[12]) && f->items[12]->i;
    if (!t->executable || !t->argv || !t->env || !t->limits || !t->cwd) {
        freeTemplate(t);
        return NULL;
    }
    return t;
}

/* ("T", templateId, part, final, index): parts per inbox, as helper.py. */
static void registerPart(int inbox, V *m)
{
    if (!isInt(m->items[1]) || !isBytes(m->items[2]) || !isInt(m->items[3]) || !isInt(m->items[4]))
        return;
    long long id = m->items[1]->i;
    V *part = m->items[2];
    Parts *p = NULL;
    for (int k = 0; k < nParts; k++)
        if (parts[k].inbox == inbox && parts[k].id == id)
            p = &parts[k];
    if (p == NULL) {
        Parts *grown = realloc(parts, (nParts + 1) * sizeof *parts);
        if (grown == NULL)
            return;
        parts = grown;
        p = &parts[nParts++];
        p->inbox = inbox;
        p->id = id;
        p->data = NULL;
        p->n = 0;
    }
    if (m->items[4]->i == 0)
        p->n = 0; /* part 0 starts afresh */
    unsigned char *grown = realloc(p->data, p->n + part->n + 1);
    if (grown == NULL)
        return;
    p->data = grown;
    memcpy(p->data + p->n, part->s, part->n);
    p->n += part->n;
    if (!m->items[3]->i)
        return;
    /* Final: decode the whole blob (the arena still holds m: go on after it). */
    unsigned char *blob = p->data;
    size_t n = p->n;
    *p = parts[--nParts];
    Template *t = makeTemplate(id, decode(blob, n));
    free(blob);
    if (t == NULL)
        return; /* its spawns fail with EINVAL, as an unknown template's */
    for (int k = 0; k < nTemplates; k++)
        if (templates[k]->id == id) {
            freeTemplate(templates[k]);
            templates[k] = t;
            return;
        }
    if (nTemplates == capTemplates) {
        int cap = capTemplates ? capTemplates * 2 : 16;
        Template **grownT = realloc(templates, cap * sizeof *templates);
        if (grownT == NULL) {
            freeTemplate(t);
            return;
        }
        templates = grownT;
        capTemplates = cap;
    }
    templates[nTemplates++] = t;
}

/* ---- children ---- */

typedef struct {
    pid_t pid;
    int err;
    int stage; /* 0 ran; 1 failed in setup; 2 failed to exec */
} Child;

static Child *children;
static int nChildren, capChildren;
static int tampered;

static int childIndex(pid_t pid)
{
    for (int k = 0; k < nChildren; k++)
        if (children[k].pid == pid)
            return k;
    return -1;
}

/* ---- starting a server ----
 *
 * Where we can make system calls without the C library (x86-64, arm64),
 * a server is started with clone(CLONE_VM) and no CLONE_VFORK: the child
 * sets itself up on a stack of its own in our memory while we go on,
 * close our copy of the connection and report, on our own CPU.  A vfork
 * parent is woken in the middle of its child's exec, on the child's CPU:
 * it either preempts the server there or waits for it, and the client's
 * EOF waits for our close either way.
 *
 * The child shares our memory and our thread pointer until it execs, so
 * it calls nothing of the C library (even errno is ours): raw system
 * calls only, and what it reads stays as it is until the kernel has
 * cleared its slot's tid, at its exec or its exit (CLONE_CHILD_CLEARTID).
 * Each child in setup has a slot of its own: its stack, its envp and the
 * strings the request added, its report.  A spawn takes a free slot and
 * waits only when every slot's child is still setting up; a template is
 * replaced only once no child is (the slots' envp point into the
 * templates).  With one slot every spawn waited for the previous server's
 * exec, and beside a busy CPU that server may wait for a CPU first.  We
 * use one slot per CPU we may run on (at most SLOTS): on 2 CPUs, 4 or 8
 * slots raised the rate beside a busy core further but doubled the tail
 * of every connection's latency, as more servers started at once than
 * there were CPUs to run them.
 * Elsewhere (or built with -DSUBHELPER_VFORK, as the tests build it too),
 * vfork as _posixsubprocess does, with a setup in C library calls: those
 * machines include 32-bit ones, where struct rlimit is not the kernel's
 * prlimit64 layout.  The two childSetup()s do the same steps in the same
 * order (helper.py's _forkChild's); a change to one is a change to both.
 */

typedef struct {
    volatile pid_t tid; /* the kernel's: non-zero until the child execs or exits */
    pid_t pid;          /* the child still using our memory, or 0 */
    volatile int err, stage;
    const Template *t;
    int fd;
    char **envp;       /* in env */
    char *env;         /* envp and the request's strings, kept for the next */
    size_t envSize;
    unsigned long seq; /* which slot's child started first */
} Start;

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(SUBHELPER_VFORK)
#define START_WITH_CLONE 1
#ifndef SLOTS
#define SLOTS 8
#endif
#else
#define SLOTS 1 /* a vfork child has exec'd or exited when vfork returns */
#endif

static Start slots[SLOTS];
static int nSlots = 1;
static unsigned long startSeq;

#ifdef START_WITH_CLONE
#include <linux/futex.h>
#include <sched.h>

static inline __attribute__((always_inline)) long sys(long n, long a, long b, long c, long d)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
#else
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
#endif
}

/* Only the pages a child touches become ours: one or two each. */
static unsigned char childStacks[SLOTS][64 * 1024] __attribute__((aligned(64)));

/* helper.py's _forkChild, in its order, minus the credentials we already
 * have; a failure is left in its slot and the child exits 127. */
static int childSetup(void *arg)
{
    Start *s = arg;
    const Template *t = s->t;
    int stage = 1;
    long r = 0;
    if (t->newSession && (r = sys(SYS_setsid, 0, 0, 0, 0)) < 0)
        goto fail;
    if (t->chroot && (r = sys(SYS_chroot, (long)t->chroot, 0, 0, 0)) < 0)
        goto fail;
    if ((r = sys(SYS_chdir, (long)t->cwd, 0, 0, 0)) < 0)
        goto fail;
    if (t->nice) {
        /* nice(3): the kernel's getpriority is 20 - nice. */
        if ((r = sys(SYS_getpriority, PRIO_PROCESS, 0, 0, 0)) < 0)
            goto fail;
        r = sys(SYS_setpriority, PRIO_PROCESS, 0, 20 - r + t->nice, 0);
        if (r == -EACCES)
            r = -EPERM;
        if (r < 0)
            goto fail;
    }
    if (!t->inherited)
        for (int k = 0; k < t->nLimits; k++)
            if ((r = sys(SYS_prlimit64, 0, t->limits[k].resource, (long)&t->limits[k].value, 0)) < 0)
                goto fail;
    sys(SYS_umask, t->umask, 0, 0, 0);
    if (t->noNewPrivileges && (r = sys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0)) < 0)
        goto fail;
    for (int target = 0; target < 3; target++) {
        /* dup3 refuses its own descriptor; dup2 would keep its CLOEXEC. */
        r = s->fd == target ? sys(SYS_fcntl, target, F_SETFD, 0, 0) : sys(SYS_dup3, s->fd, target, 0, 0);
        if (r < 0)
            goto fail;
    }
    if (sys(SYS_close_range, 3, ~0U, 0, 0) < 0) {
        struct rlimit lim;
        long top = 65536;
        if (sys(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, (long)&lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
            top = (long)lim.rlim_cur;
        for (long fd = 3; fd < top; fd++)
            sys(SYS_close, fd, 0, 0, 0);
    }
    /* Our SIGCHLD is blocked for signalfd: the server starts unblocked. */
    unsigned long none = 0;
    sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof none);
    stage = 2;
    r = sys(SYS_execve, (long)t->executable, (long)t->argv, (long)s->envp, 0);
fail:
    s->err = (int)-r;
    s->stage = stage;
    for (;;)
        sys(SYS_exit_group, 127, 0, 0, 0);
    return 127; /* not reached */
}

static pid_t startChild(Start *s)
{
    unsigned char *stack = childStacks[s - slots];
    return clone(childSetup, stack + sizeof childStacks[0],
                 CLONE_VM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD, s,
                 (pid_t *)&s->tid, NULL, (pid_t *)&s->tid);
}

#else

static void closeFrom(int low)
{
    if (syscall(SYS_close_range, low, ~0U, 0) == 0)
        return;
    struct rlimit r;
    long top = getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY ? (long)r.rlim_cur : 65536;
    for (long fd = low; fd < top; fd++)
        close((int)fd);
}

/* In the vfork child: helper.py's _forkChild, in its order, minus the
 * credentials we already have.  Our memory is the child's until it
 * execs or exits, so it may use the C library and leave a failure in
 * its slot. */
static void __attribute__((noreturn)) childSetup(const Template *t, int fd, char **envp)
{
    int stage = 1;
    sigset_t none;
    sigemptyset(&none);
    if (t->newSession && setsid() < 0)
        goto fail;
    if (t->chroot && chroot(t->chroot) != 0)
        goto fail;
    if (chdir(t->cwd) != 0)
        goto fail;
    if (t->nice) {
        errno = 0;
        if (nice(t->nice) == -1 && errno)
            goto fail;
    }
    if (!t->inherited)
        for (int k = 0; k < t->nLimits; k++)
            if (setrlimit(t->limits[k].resource, &t->limits[k].value) != 0)
                goto fail;
    umask((mode_t)t->umask);
    if (t->noNewPrivileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        goto fail;
    for (int target = 0; target < 3; target++)
        if (dup2(fd, target) < 0)
            goto fail;
    closeFrom(3);
    sigprocmask(SIG_SETMASK, &none, NULL);
    stage = 2;
    execve(t->executable, t->argv, envp);
fail:
    slots[0].err = errno;
    slots[0].stage = stage;
    _exit(127);
}

/* Nothing of the caller's is live across the vfork: the child runs on
 * this stack until it execs. */
static pid_t __attribute__((noinline)) startChild(Start *s)
{
    pid_t pid = vfork();
    if (pid == 0)
        childSetup(s->t, s->fd, s->envp);
    return pid;
}

#endif

/* Wait (if block) for the child still using slot s to exec or exit, and
 * keep how its setup went for its exit report.  Whether s is free. */
static int settle(Start *s, int block)
{
    if (s->pid == 0)
        return 1;
    for (;;) {
        pid_t tid = __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);
        if (tid == 0)
            break;
        if (!block)
            return 0;
#ifdef START_WITH_CLONE
        syscall(SYS_futex, &s->tid, FUTEX_WAIT, tid, NULL, NULL, 0);
#endif
    }
    int k = childIndex(s->pid);
    if (k >= 0) {
        children[k].err = s->err;
        children[k].stage = s->stage;
    }
    s->pid = 0;
    return 1;
}

static void settleAll(void)
{
    for (int k = 0; k < nSlots; k++)
        settle(&slots[k], 1);
}

/* A slot no child uses: waits for the one whose child started first if
 * every slot is in use. */
static Start *freeSlot(void)
{
    Start *oldest = &slots[0];
    for (int k = 0; k < nSlots; k++) {
        if (settle(&slots[k], 0))
            return &slots[k];
        if (slots[k].seq < oldest->seq)
            oldest = &slots[k];
    }
    settle(oldest, 1);
    return oldest;
}

/* s's envp: the template's environment, then the request's strings, all
 * in s's own buffer but for the template's (which outlive every slot's
 * child: see registerPart's caller). */
static char **slotEnv(Start *s, const Template *t, V *extra, int nExtra)
{
    size_t size = (size_t)(t->nEnv + nExtra + 1) * sizeof(char *);
    for (int k = 0; k < nExtra; k++)
        if (isBytes(extra->items[k]))
            size += extra->items[k]->n + 1;
    if (size > s->envSize) {
        char *grown = realloc(s->env, size);
        if (grown == NULL)
            return NULL;
        s->env = grown;
        s->envSize = size;
    }
    char **envp = (char **)s->env;
    char *strings = s->env + (size_t)(t->nEnv + nExtra + 1) * sizeof(char *);
    int n = 0;
    for (int k = 0; k < t->nEnv; k++)
        envp[n++] = t->env[k];
    for (int k = 0; k < nExtra; k++) {
        V *v = extra->items[k];
        if (!isBytes(v))
            continue;
        memcpy(strings, v->s, v->n);
        strings[v->n] = 0;
        envp[n++] = strings;
        strings += v->n + 1;
    }
    envp[n] = NULL;
    return envp;
}

/* Start template t's server on fd, with the strings of extra (a V_SEQ of
 * V_BYTES, or anything else for none) added to its environment.  Its pid,
 * or -1 with errno set and *why "rlimits" when our limits were lowered
 * beyond repair (we end: the root helper starts another). */
static pid_t startServer(Template *t, int fd, V *extra, const char **why)
{
    *why = NULL;
    if (t->inherited && t->checked != wakeup) {
        if (!ensureLimits(t->limits, t->nLimits)) {
            /* Someone lowered our hard limits: no child of ours can get
             * the right ones.  The root helper starts a new sub-helper. */
            *why = "rlimits";
            tampered = 1;
            errno = EPERM;
            return -1;
        }
        t->checked = wakeup;
    }
    int nExtra = isSeq(extra, 0) ? (int)extra->n : 0;
    Start *s = freeSlot();
    char **envp = slotEnv(s, t, extra, nExtra);
    if (nChildren == capChildren) {
        int cap = capChildren ? capChildren * 2 : 64;
        Child *grown = realloc(children, cap * sizeof *children);
        if (grown != NULL) {
            children = grown;
            capChildren = cap;
        }
    }
    if (envp == NULL || nChildren == capChildren) {
        errno = ENOMEM;
        return -1;
    }
    s->err = 0;
    s->stage = 0;
    s->t = t;
    s->fd = fd;
    s->envp = envp;
    s->tid = 0;
    s->seq = ++startSeq;
    pid_t pid = startChild(s);
    if (pid < 0)
        return -1;
    children[nChildren].pid = pid;
    children[nChildren].err = 0;
    children[nChildren].stage = 0;
    nChildren++;
    s->pid = pid;
    /* A vfork child has exec'd or exited by now: this only keeps its
     * report. */
    settle(s, 0);
    return pid;
}

/* ("S", requestId, templateId, extraEnv, lane) with the connection. */
static void spawn(V *m, int fd)
{
    if (!isInt(m->items[1]) || !isInt(m->items[2])) {
        return;
    }
    long long rid = m->items[1]->i;
    Template *t = findTemplate(m->items[2]->i);
    if (t == NULL || fd < 0) {
        if (fd < 0 && !ensureLimits(ownLimits, nOwnLimits)) {
            /* The descriptor did not fit under a lowered RLIMIT_NOFILE. */
            failed(rid, EPERM, -1, "rlimits");
            tampered = 1;
            return;
        }
        failed(rid, EINVAL, fd, NULL);
        return;
    }
    const char *why;
    pid_t pid = startServer(t, fd, m->items[3], &why);
    if (pid < 0) {
        failed(rid, errno, fd, why);
        return;
    }
    started(rid, pid);
}

/* ---- listening sockets handed over by the daemon ----
 *
 * ("L", listenerId, templateId) with a plain service's listening socket:
 * accept on it and start each connection's server as a spawn of the
 * template with REMOTE_HOST, reporting ("a", listenerId, pid, host, port);
 * answered ("l", listenerId) once we accept, ("u", listenerId) when we do
 * not (anymore).  ("U", listenerId): stop, answered "u" (every "a" of it
 * comes before).  A connection we cannot start goes back to the daemon,
 * ("h", listenerId) with it in SCM_RIGHTS, which serves it as one it
 * accepted itself (and retries a failed fork as xinetd does).  Out of
 * descriptors we give the socket up ("u") rather than spin on it. */

#define MAX_LISTENERS 64

typedef struct {
    long long id, templateId;
    int fd;
} Listener;

static Listener listeners[MAX_LISTENERS];
static int nListeners;

static void listenerEvent(const char *kind, long long id)
{
    room(32);
    eventHead(kind, 2);
    putInt(id);
}

static int listenerIndex(long long id)
{
    for (int k = 0; k < nListeners; k++)
        if (listeners[k].id == id)
            return k;
    return -1;
}

static void dropListener(int k)
{
    close(listeners[k].fd);
    listenerEvent("u", listeners[k].id);
    listeners[k] = listeners[--nListeners];
}

static void listenOn(V *m, int fd)
{
    if (!isInt(m->items[1]) || !isInt(m->items[2]))
        return;
    long long id = m->items[1]->i;
    int copy = -1;
    if (fd >= 0 && findTemplate(m->items[2]->i) != NULL && listenerIndex(id) < 0 &&
        nListeners < MAX_LISTENERS)
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* handle() closes fd */
    /* Non-blocking (as the daemon's own sockets are): a batch of accepts
     * ends when none waits. */
    int flags = copy >= 0 ? fcntl(copy, F_GETFL) : -1;
    if (flags < 0 || fcntl(copy, F_SETFL, flags | O_NONBLOCK) < 0) {
        if (copy >= 0)
            close(copy);
        listenerEvent("u", id);
        return;
    }
    listeners[nListeners].id = id;
    listeners[nListeners].templateId = m->items[2]->i;
    listeners[nListeners].fd = copy;
    nListeners++;
    listenerEvent("l", id);
}

static void unlisten(V *m)
{
    if (!isInt(m->items[1]))
        return;
    int k = listenerIndex(m->items[1]->i);
    if (k >= 0)
        dropListener(k);
    else
        listenerEvent("u", m->items[1]->i);
}

static void handBack(long long id, int conn)
{
    room(32);
    eventHead("h", 2);
    putInt(id);
    eventFds[nEventFds++] = conn; /* flush() closes our copy once sent */
}

/* Accept and start up to a batch on listener k; whether it stays. */
static int acceptOn(int k)
{
    Listener *l = &listeners[k];
    for (int n = 0; n < BATCH; n++) {
        struct sockaddr_storage peer;
        socklen_t size = sizeof peer;
        int conn = accept4(l->fd, (struct sockaddr *)&peer, &size, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            /* Out of descriptors or memory, or worse: the daemon, which
             * pauses and retries, takes the socket back. */
            dropListener(k);
            return 0;
        }
        char host[NI_MAXHOST], port[NI_MAXSERV];
        Template *t = findTemplate(l->templateId);
        if (t == NULL || getnameinfo((struct sockaddr *)&peer, size, host, sizeof host, port,
                                     sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
            handBack(l->id, conn);
            continue;
        }
        static char variable[sizeof "REMOTE_HOST=" + NI_MAXHOST];
        size_t length = (size_t)snprintf(variable, sizeof variable, "REMOTE_HOST=%s", host);
        arenaUsed = 0;
        V *extra = aalloc(sizeof *extra), *item = aalloc(sizeof *item);
        V **items = aalloc(sizeof *items);
        extra->kind = V_SEQ;
        extra->n = 1;
        extra->items = items;
        items[0] = item;
        item->kind = V_BYTES;
        item->s = (unsigned char *)variable;
        item->n = length;
        const char *why;
        pid_t pid = startServer(t, conn, extra, &why);
        if (pid < 0) {
            handBack(l->id, conn);
            if (tampered)
                return 1;
            continue;
        }
        close(conn);
        room(64 + strlen(host));
        eventHead("a", 5);
        putInt(l->id);
        putInt(pid);
        putText(host);
        putInt(atoi(port));
    }
    return 1;
}

static void signalChild(V *m)
{
    if (!isInt(m->items[1]) || !isInt(m->items[2]))
        return;
    pid_t pid = (pid_t)m->items[1]->i;
    /* Ours and unreaped: cannot be a recycled pid. */
    if (childIndex(pid) >= 0)
        kill(pid, (int)m->items[2]->i);
}

static void reap(void)
{
    while (nChildren > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int j = 0; j < nSlots; j++)
            if (slots[j].pid == pid)
                settle(&slots[j], 0); /* it has exited: its tid is clear */
        int k = childIndex(pid);
        if (k < 0) {
            reaped(pid, status, 0, 0);
            continue;
        }
        reaped(pid, status, children[k].err, children[k].stage);
        children[k] = children[--nChildren];
    }
}

static void handle(int inbox, const unsigned char *data, size_t n, int *fds, int nFds)
{
    /* No child reads the arena: a spawn copies into its slot. */
    arenaUsed = 0;
    V *m = decode(data, n);
    if (isSeq(m, 1) && isBytes(m->items[0]) && m->items[0]->n == 1) {
        switch (m->items[0]->s[0]) {
        case 'S':
            if (m->n >= 4)
                spawn(m, nFds ? fds[0] : -1);
            break;
        case 'T':
            /* A template replaced may be a setting-up child's. */
            settleAll();
            if (m->n >= 5)
                registerPart(inbox, m);
            break;
        case 'K':
            if (m->n >= 3)
                signalChild(m);
            break;
        case 'L':
            if (m->n >= 3)
                listenOn(m, nFds ? fds[0] : -1);
            break;
        case 'U':
            if (m->n >= 2)
                unlisten(m);
            break;
        }
    }
    for (int k = 0; k < nFds; k++)
        close(fds[k]);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int inboxes[2] = {atoi(argv[1]), atoi(argv[2])};
    direct = inboxes[1];
    for (int k = 0; k < 2; k++)
        fcntl(inboxes[k], F_SETFD, FD_CLOEXEC);
    /* Python ignored these in the root helper, and exec kept that. */
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit value;
        if (getrlimit(r, &value) == 0) {
            ownLimits[nOwnLimits].resource = r;
            ownLimits[nOwnLimits].value = value;
            nOwnLimits++;
        }
    }
#ifdef START_WITH_CLONE
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
        nSlots = CPU_COUNT(&cpus);
    nSlots = nSlots < 1 ? 1 : nSlots > SLOTS ? SLOTS : nSlots;
#endif
    nofileLimit.resource = RLIMIT_NOFILE;
    getrlimit(RLIMIT_NOFILE, &nofileLimit.value);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        return 1;
    struct pollfd pfd[3 + MAX_LISTENERS] = {
        {inboxes[0], POLLIN, 0}, {inboxes[1], POLLIN, 0}, {sfd, POLLIN, 0}};
    long long polled[MAX_LISTENERS];
    static unsigned char buf[MAX_MESSAGE];
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } control;
    for (;;) {
        int nPolled = nListeners;
        for (int k = 0; k < nPolled; k++) {
            pfd[3 + k].fd = listeners[k].fd;
            pfd[3 + k].events = POLLIN;
            pfd[3 + k].revents = 0;
            polled[k] = listeners[k].id;
        }
        if (poll(pfd, 3 + (nfds_t)nPolled, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        wakeup++;
        for (int b = 0; b < 2; b++) {
            if (pfd[b].fd < 0 || !pfd[b].revents)
                continue;
            /* A lowered soft RLIMIT_NOFILE would drop the descriptors of
             * the requests we are to read. */
            ensureLimits(&nofileLimit, 1);
            for (int k = 0; k < BATCH; k++) {
                struct iovec iov = {buf, sizeof buf};
                struct msghdr mh = {0};
                mh.msg_iov = &iov;
                mh.msg_iovlen = 1;
                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof control.buf;
                ssize_t n = recvmsg(pfd[b].fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0)
                    break;
                int fds[MAX_FDS], nFds = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t j = 0; CMSG_LEN((j + 1) * sizeof(int)) <= c->cmsg_len && nFds < MAX_FDS; j++)
                            memcpy(&fds[nFds++], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
                if (n == 0) {
                    if (b == 0) {
                        /* The root helper has gone: go on reaping,
                         * reporting and signalling for the daemon. */
                        pfd[0].fd = -1;
                        break;
                    }
                    flush(); /* the daemon has gone: so do we */
                    return 0;
                }
                handle(b, buf, (size_t)n, fds, nFds);
            }
        }
        if (pfd[2].revents) {
            struct signalfd_siginfo info;
            while (read(sfd, &info, sizeof info) > 0) {
            }
            reap();
        }
        /* After the messages: a listener given up ("U") is not used. */
        for (int k = 0; k < nPolled && !tampered; k++) {
            if (!pfd[3 + k].revents)
                continue;
            int j = listenerIndex(polled[k]);
            if (j >= 0)
                acceptOn(j);
        }
        flush();
        if (tampered)
            return 0;
    }
}
