/*
 * hello-raw: hello (bench/hello.c) with no C library at all.  It writes
 * the same line to its stdout (the client socket) with the write system
 * call and exits with exit_group: no start-up code runs before it.
 *
 * A static glibc program's start-up probes the CPU's caches with CPUID
 * before main; under a hypervisor every CPUID traps to the host, and on
 * some hosts that start-up is most of the program's life.  Measured beside
 * hello, this backend shows what the super-server's own spawn path costs
 * with the backend's start-up taken out.
 *
 * Build: cc -O2 -static -nostdlib -fno-stack-protector (x86-64, aarch64).
 */

static const char line[] = "hello from a spawned server\n";

#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}
#define SYS_WRITE 1
#define SYS_EXIT_GROUP 231
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
#define SYS_WRITE 64
#define SYS_EXIT_GROUP 94
#else
#error "hello-raw knows the system calls of x86-64 and aarch64 only"
#endif

void _start(void)
{
    long n = sizeof line - 1;
    long written = sys3(SYS_WRITE, 1, (long)line, n);
    sys3(SYS_EXIT_GROUP, written == n ? 0 : 1, 0, 0);
    for (;;) {
    }
}
