/*
 * relay: the plainest fast C fan-out relay, a yardstick for hellod's chat relay.
 *
 * One room and no protocol: a source (address and port) becomes a member the first time
 * it sends, and every datagram goes to every member, the sender included, straight from
 * the buffer it was received into. recvmmsg reads up to BATCH datagrams; the copies are
 * sent with sendmmsg, up to 1024 a call. No validation, no state beyond the member list,
 * which holds up to 1024 members (a datagram from a new source beyond that is dropped).
 * bench/chat.py measures hellod's chat relay against it (`hello bench --chat --raw`
 * speaks its no-protocol).
 *
 * usage: relay PORT BATCH [whole]    (binds 127.0.0.1:PORT; BATCH 1-64)
 *   A datagram longer than 2048 bytes is dropped. Runs until killed. `whole`: every
 *   datagram leaves with don't-fragment and IP ID 0 (IP_PMTUDISC_PROBE), as hellod's chat
 *   sends them; the kernel then skips its IP ID generator, a hash and an atomic add a send.
 * build: cc -O2 -Wall -Wextra -o relay relay.c   (or: make references)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 64
#define MAX_DATAGRAM 2048
#define MAX_MEMBERS 1024
#define MAX_SENDS 1024 /* messages per sendmmsg */
#define SOCKET_BUFFER (4 << 20) /* as hellod's; the kernel caps it at net.core.[rw]mem_max */

static char in[MAX_BATCH][MAX_DATAGRAM];
static struct sockaddr_in peer[MAX_BATCH], members[MAX_MEMBERS];
static int member_count;
static struct iovec in_iov[MAX_BATCH], out_iov[MAX_BATCH];
static struct mmsghdr received[MAX_BATCH], sends[MAX_SENDS];

static void die(const char *what) { perror(what); exit(1); }

static int usage(void) {
    fprintf(stderr, "usage: relay PORT BATCH(1-%d) [whole]\n", MAX_BATCH);
    return 2;
}

static int open_socket(int port, int whole) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = SOCKET_BUFFER;
    if (fd < 0) die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size)) die("setsockopt(SO_RCVBUF)");
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size)) die("setsockopt(SO_SNDBUF)");
    int probe = IP_PMTUDISC_PROBE;
    if (whole && setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probe, sizeof probe)) die("setsockopt(IP_MTU_DISCOVER)");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&address, sizeof address)) die("bind");
    return fd;
}

/* Sends every message; one the kernel refuses is reported and skipped (a lost delivery). */
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

/* Whether `source` is a member, making it one if there is room. */
static int is_member(const struct sockaddr_in *source) {
    for (int m = 0; m < member_count; m++)
        if (members[m].sin_addr.s_addr == source->sin_addr.s_addr && members[m].sin_port == source->sin_port)
            return 1;
    if (member_count == MAX_MEMBERS) return 0;
    members[member_count++] = *source;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "whole") == 0)) return usage();
    int port = atoi(argv[1]), batch = atoi(argv[2]);
    if (port < 1 || port > 65535 || batch < 1 || batch > MAX_BATCH) return usage();
    int fd = open_socket(port, argc == 4);
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
            if (!is_member(&peer[k])) continue;                      /* a new source, no room left */
            out_iov[k] = (struct iovec){.iov_base = in[k], .iov_len = received[k].msg_len};
            for (int m = 0; m < member_count; m++) {
                sends[count++].msg_hdr = (struct msghdr){.msg_name = &members[m], .msg_namelen = sizeof members[m],
                                                         .msg_iov = &out_iov[k], .msg_iovlen = 1};
                if (count == MAX_SENDS) {
                    send_all(fd, sends, count);
                    count = 0;
                }
            }
        }
        send_all(fd, sends, count);
    }
}
