/*
 * spawnfloor: what starting a server costs this machine, with no
 * super-server around it.
 *
 * Usage: spawnfloor PROGRAM COUNT
 *
 * Starts PROGRAM (no arguments, standard output on /dev/null) COUNT times,
 * one after the other: vfork, exec, waitpid.  Prints one JSON line with
 * the mean wall time of one start-to-reaped cycle in microseconds.  A
 * super-server's spawned connection at C=1 holds one such cycle plus its
 * own work and the TCP round trip, so 1e6 / per_spawn_us bounds its rate.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3 || atol(argv[2]) < 1) {
        fprintf(stderr, "usage: spawnfloor PROGRAM COUNT\n");
        return 2;
    }
    const char *program = argv[1];
    long count = atol(argv[2]);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) {
        perror("/dev/null");
        return 1;
    }
    double start = now();
    for (long i = 0; i < count; i++) {
        pid_t pid = vfork();
        if (pid < 0) {
            perror("vfork");
            return 1;
        }
        if (pid == 0) {
            dup2(devnull, 1);
            execl(program, program, (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "spawnfloor: %s did not exit 0\n", program);
            return 1;
        }
    }
    printf("{\"per_spawn_us\": %.1f, \"count\": %ld}\n", (now() - start) / count * 1e6, count);
    return 0;
}
