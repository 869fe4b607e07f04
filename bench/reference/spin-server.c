/*
 * spin-server: mmsg-server.c with a bounded busy-poll, a yardstick for hellod's hello and echo.
 *
 * As mmsg-server (recvmmsg, a reply per datagram, one sendmmsg), but after each batch it
 * keeps trying a non-blocking recvmmsg (MSG_DONTWAIT) for up to SPIN_US microseconds
 * before it falls back to a blocking wait: a request that comes soon after the last is
 * read without the cost of waking a sleeping thread, which is most of a round trip on a
 * small VM. The price is a CPU kept busy for up to SPIN_US after every batch.
 * bench/compare.py measures hellod against it (SPIN_US 50, hellod's --spin-us),
 * mmsg-server.c and gso-server.c.
 *
 * usage: spin-server PORT BATCH hello|echo SPIN_US   (binds 127.0.0.1:PORT; BATCH 1-64)
 *   hello: a datagram NAME gets "Hello, NAME!"; echo: the datagram's bytes come back.
 *   A datagram longer than 2048 bytes is dropped. Runs until killed.
 * build: cc -O2 -Wall -Wextra -o spin-server spin-server.c   (or: make references)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_BATCH 64
#define MAX_DATAGRAM 2048
#define SOCKET_BUFFER (4 << 20) /* as hellod's; the kernel caps it at net.core.[rw]mem_max */

static char in[MAX_BATCH][MAX_DATAGRAM], out[MAX_BATCH][MAX_DATAGRAM + 8];
static struct sockaddr_in peer[MAX_BATCH];
static struct iovec in_iov[MAX_BATCH], out_iov[MAX_BATCH];
static struct mmsghdr received[MAX_BATCH], replies[MAX_BATCH];

static void die(const char *what) { perror(what); exit(1); }

static int usage(void) {
    fprintf(stderr, "usage: spin-server PORT BATCH(1-%d) hello|echo SPIN_US\n", MAX_BATCH);
    return 2;
}

static int open_socket(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = SOCKET_BUFFER;
    if (fd < 0) die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size)) die("setsockopt(SO_RCVBUF)");
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size)) die("setsockopt(SO_SNDBUF)");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&address, sizeof address)) die("bind");
    return fd;
}

/* Sends every message; one the kernel refuses is reported and skipped (a lost reply). */
static void send_all(int fd, struct mmsghdr *messages, int count) {
    while (count > 0) {
        int sent = sendmmsg(fd, messages, count, 0);
        if (sent < 0) {
            if (errno == EINTR) continue;
            perror("sendmmsg");
            sent = 1;
        }
        messages += sent;
        count -= sent;
    }
}

static long microseconds_since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000000L + (now.tv_nsec - start->tv_nsec) / 1000;
}

/* Up to `batch` datagrams: non-blocking attempts for up to spin_us, then a blocking wait. */
static int receive(int fd, int batch, long spin_us) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int spinning = microseconds_since(&start) < spin_us;
        for (int k = 0; k < batch; k++) received[k].msg_hdr.msg_namelen = sizeof peer[k];
        int n = recvmmsg(fd, received, batch, spinning ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
        if (n > 0) return n;
        if (n < 0 && errno != EINTR && errno != EAGAIN) die("recvmmsg");
    }
}

int main(int argc, char **argv) {
    if (argc != 5) return usage();
    int port = atoi(argv[1]), batch = atoi(argv[2]), echo = strcmp(argv[3], "echo") == 0;
    long spin_us = atol(argv[4]);
    if (port < 1 || port > 65535 || batch < 1 || batch > MAX_BATCH || (!echo && strcmp(argv[3], "hello")) ||
        spin_us < 0 || spin_us > 1000000)
        return usage();
    int fd = open_socket(port);
    for (int k = 0; k < MAX_BATCH; k++) {
        in_iov[k] = (struct iovec){.iov_base = in[k], .iov_len = MAX_DATAGRAM};
        received[k].msg_hdr = (struct msghdr){.msg_name = &peer[k], .msg_iov = &in_iov[k], .msg_iovlen = 1};
    }
    for (;;) {
        int n = receive(fd, batch, spin_us);
        int count = 0;
        for (int k = 0; k < n; k++) {
            if (received[k].msg_hdr.msg_flags & MSG_TRUNC) continue; /* longer than MAX_DATAGRAM */
            size_t length = received[k].msg_len;
            char *reply = out[count];
            if (echo) {
                memcpy(reply, in[k], length);
            } else {
                memcpy(reply, "Hello, ", 7);
                memcpy(reply + 7, in[k], length);
                reply[7 + length] = '!';
                length += 8;
            }
            out_iov[count] = (struct iovec){.iov_base = reply, .iov_len = length};
            replies[count].msg_hdr = (struct msghdr){.msg_name = &peer[k], .msg_namelen = received[k].msg_hdr.msg_namelen,
                                                     .msg_iov = &out_iov[count], .msg_iovlen = 1};
            count++;
        }
        send_all(fd, replies, count);
    }
}
