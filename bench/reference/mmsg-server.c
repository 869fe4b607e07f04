/*
 * mmsg-server: the plainest fast C UDP server, a yardstick for hellod's hello and echo.
 *
 * recvmmsg reads up to BATCH datagrams in one call, each reply is written into a buffer
 * of its own, and one sendmmsg sends them all back, each to its sender. Nothing else: no
 * GSO, no polling, no rate limit, no counters. bench/compare.py measures hellod's CPU per
 * reply and round trip against it and against its two variants, gso-server.c (UDP GSO
 * replies) and spin-server.c (a bounded busy-poll before sleeping).
 *
 * usage: mmsg-server PORT BATCH hello|echo [ADDRESS]  (binds ADDRESS:PORT, 127.0.0.1 by default;
 *   BATCH 1-64)
 *   hello: a datagram NAME gets "Hello, NAME!"; echo: the datagram's bytes come back.
 *   A datagram longer than 2048 bytes is dropped. Runs until killed.
 * build: cc -O2 -Wall -Wextra -o mmsg-server mmsg-server.c   (or: make references)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 64
#define MAX_DATAGRAM 2048
#define SOCKET_BUFFER (4 << 20) /* as hellod's; the kernel caps it at net.core.[rw]mem_max */

static char in[MAX_BATCH][MAX_DATAGRAM], out[MAX_BATCH][MAX_DATAGRAM + 8];
static struct sockaddr_in peer[MAX_BATCH];
static struct iovec in_iov[MAX_BATCH], out_iov[MAX_BATCH];
static struct mmsghdr received[MAX_BATCH], replies[MAX_BATCH];

static void die(const char *what) { perror(what); exit(1); }

static int usage(void) {
    fprintf(stderr, "usage: mmsg-server PORT BATCH(1-%d) hello|echo [ADDRESS]\n", MAX_BATCH);
    return 2;
}

static int open_socket(int port, const char *host) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = SOCKET_BUFFER;
    if (fd < 0) die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size)) die("setsockopt(SO_RCVBUF)");
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size)) die("setsockopt(SO_SNDBUF)");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) die("inet_pton");
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

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) return usage();
    int port = atoi(argv[1]), batch = atoi(argv[2]), echo = strcmp(argv[3], "echo") == 0;
    if (port < 1 || port > 65535 || batch < 1 || batch > MAX_BATCH || (!echo && strcmp(argv[3], "hello")))
        return usage();
    int fd = open_socket(port, argc == 5 ? argv[4] : "127.0.0.1");
    for (int k = 0; k < MAX_BATCH; k++) {
        in_iov[k] = (struct iovec){.iov_base = in[k], .iov_len = MAX_DATAGRAM};
        received[k].msg_hdr = (struct msghdr){.msg_name = &peer[k], .msg_iov = &in_iov[k], .msg_iovlen = 1};
    }
    for (;;) {
        for (int k = 0; k < batch; k++) received[k].msg_hdr.msg_namelen = sizeof peer[k];
        int n = recvmmsg(fd, received, batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
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
