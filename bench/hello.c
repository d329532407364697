/*
 * hello: the smallest useful spawned server for the benchmarks.  Writes one
 * line to its stdout (the client socket) and exits; no stdio, no locale.
 */
#include <unistd.h>

int main(void)
{
    static const char line[] = "hello from a spawned server\n";
    return write(1, line, sizeof line - 1) == (long)(sizeof line - 1) ? 0 : 1;
}
