/*
 * gro-server: gso-server.c that also receives trains coalesced (UDP GRO), a yardstick for
 * hellod's hello and echo when peers send trains (GSO senders, QUIC stacks, bulk tests).
 *
 * As gso-server (recvmmsg, a reply per datagram, runs of same-length replies to one peer
 * as one UDP_SEGMENT send), but the socket has UDP_GRO on: a train from one peer may come
 * as one receive into a 64 KiB slot, with a SOL_UDP/UDP_GRO control message giving the
 * segment size; it is split into its datagrams (the last may be shorter), each answered.
 * A segmented send carries at most 64 replies (the kernel's UDP_MAX_SEGMENTS) and 65507
 * bytes. bench/compare.py measures hellod against it and the other references.
 *
 * usage: gro-server PORT BATCH hello|echo [ADDRESS]   (binds ADDRESS:PORT, 127.0.0.1 by
 *   default; BATCH 1-64) hello: a datagram NAME gets "Hello, NAME!"; echo: the
 *   datagram's bytes come back. A datagram longer than 2048 bytes, or a receive cut short,
 *   is dropped. Runs until killed.
 * build: cc -O2 -Wall -Wextra -o gro-server gro-server.c   (or: make references)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 64
#define SLOT 65536                   /* a coalesced receive: up to 64 KiB */
#define MAX_DATAGRAM 2048            /* one request, as gso-server */
#define MAX_SEGMENTS 64              /* per segmented send: the kernel's UDP_MAX_SEGMENTS */
#define MAX_REPLIES (MAX_BATCH * 64) /* a batch of trains of up to 64 (UDP_GRO_CNT_MAX) */
#define MAX_SEGMENTED 65507          /* the most UDP payload one IPv4 send may carry */
#define SOCKET_BUFFER (4 << 20)      /* as hellod's; the kernel caps it at net.core.[rw]mem_max */

static char in[MAX_BATCH][SLOT], out[MAX_REPLIES][MAX_DATAGRAM + 8];
static struct sockaddr_in peer[MAX_BATCH];
static struct iovec in_iov[MAX_BATCH], out_iov[MAX_REPLIES];
static struct mmsghdr received[MAX_BATCH], replies[MAX_REPLIES];
static int source[MAX_REPLIES]; /* reply k answers received[source[k]] */
static union { char bytes[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } in_control[MAX_BATCH];
static union { char bytes[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control[MAX_REPLIES];

static void die(const char *what) { perror(what); exit(1); }

static int usage(void) {
    fprintf(stderr, "usage: gro-server PORT BATCH(1-%d) hello|echo [ADDRESS]\n", MAX_BATCH);
    return 2;
}

static int open_socket(int port, const char *host) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = SOCKET_BUFFER, on = 1;
    if (fd < 0) die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size)) die("setsockopt(SO_RCVBUF)");
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size)) die("setsockopt(SO_SNDBUF)");
    if (setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on)) die("setsockopt(UDP_GRO)");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) die("inet_pton");
    if (bind(fd, (struct sockaddr *)&address, sizeof address)) die("bind");
    return fd;
}

/* The segment size of received[k] if it came coalesced, else 0. */
static int segment_size(int k) {
    struct msghdr *m = &received[k].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            return size;
        }
    }
    return 0;
}

/* The replies of a segmented message as plain datagrams, one sendmsg each. */
static void send_plainly(int fd, const struct msghdr *segmented) {
    for (size_t k = 0; k < segmented->msg_iovlen; k++) {
        struct msghdr one = {.msg_name = segmented->msg_name, .msg_namelen = segmented->msg_namelen,
                             .msg_iov = &segmented->msg_iov[k], .msg_iovlen = 1};
        if (sendmsg(fd, &one, 0) < 0) perror("sendmsg");
    }
}

/* Sends every message; a segmented one the kernel refuses goes out plainly, any other
 * refusal is reported and skipped (lost replies). */
static void send_all(int fd, struct mmsghdr *messages, int count) {
    while (count > 0) {
        int sent = sendmmsg(fd, messages, count > 1024 ? 1024 : count, 0); /* UIO_MAXIOV a call */
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (messages->msg_hdr.msg_controllen && (errno == EIO || errno == EINVAL || errno == EMSGSIZE))
                send_plainly(fd, &messages->msg_hdr);
            else
                perror("sendmmsg");
            sent = 1;
        }
        messages += sent;
        count -= sent;
    }
}

static int same_peer(int a, int b) {
    return peer[a].sin_addr.s_addr == peer[b].sin_addr.s_addr && peer[a].sin_port == peer[b].sin_port;
}

/* Replies [first, last] to one peer as one message; segmented by `size` if more than one. */
static void segmented_message(struct mmsghdr *message, int first, int last, size_t size) {
    message->msg_hdr = (struct msghdr){.msg_name = &peer[source[first]],
                                       .msg_namelen = received[source[first]].msg_hdr.msg_namelen,
                                       .msg_iov = &out_iov[first], .msg_iovlen = last - first + 1};
    if (last == first) return;
    message->msg_hdr.msg_control = control[message - replies].bytes;
    message->msg_hdr.msg_controllen = sizeof control[0].bytes;
    struct cmsghdr *c = CMSG_FIRSTHDR(&message->msg_hdr);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t segment = size;
    memcpy(CMSG_DATA(c), &segment, sizeof segment);
}

/* Writes reply `count` to bytes [offset, offset + length) of received[k]; the next count. */
static int answer(int count, int k, size_t offset, size_t length, int echo) {
    char *reply = out[count];
    if (echo) {
        memcpy(reply, in[k] + offset, length);
    } else {
        memcpy(reply, "Hello, ", 7);
        memcpy(reply + 7, in[k] + offset, length);
        reply[7 + length] = '!';
        length += 8;
    }
    out_iov[count] = (struct iovec){.iov_base = reply, .iov_len = length};
    source[count] = k;
    return count + 1;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) return usage();
    int port = atoi(argv[1]), batch = atoi(argv[2]), echo = strcmp(argv[3], "echo") == 0;
    if (port < 1 || port > 65535 || batch < 1 || batch > MAX_BATCH || (!echo && strcmp(argv[3], "hello")))
        return usage();
    int fd = open_socket(port, argc == 5 ? argv[4] : "127.0.0.1");
    for (int k = 0; k < MAX_BATCH; k++) {
        in_iov[k] = (struct iovec){.iov_base = in[k], .iov_len = SLOT};
        received[k].msg_hdr = (struct msghdr){.msg_name = &peer[k], .msg_iov = &in_iov[k], .msg_iovlen = 1};
    }
    for (;;) {
        for (int k = 0; k < batch; k++) {
            received[k].msg_hdr.msg_namelen = sizeof peer[k];
            received[k].msg_hdr.msg_control = in_control[k].bytes;
            received[k].msg_hdr.msg_controllen = sizeof in_control[k].bytes;
        }
        int n = recvmmsg(fd, received, batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        int count = 0;
        for (int k = 0; k < n; k++) {
            if (received[k].msg_hdr.msg_flags & MSG_TRUNC) continue; /* longer than a slot */
            size_t total = received[k].msg_len, size = segment_size(k);
            if (size == 0 || size > total) size = total ? total : 1; /* alone: one segment */
            for (size_t offset = 0; offset < total || offset == 0; offset += size) {
                size_t length = total - offset < size ? total - offset : size;
                if (length <= MAX_DATAGRAM) count = answer(count, k, offset, length, echo);
            }
        }
        /* A run: replies to one peer, each as long as the first but the last, which may be
         * shorter but not empty (an empty segment would not be sent at all). */
        int messages = 0;
        for (int first = 0, last; first < count; first = last + 1) {
            size_t size = out_iov[first].iov_len, total = size;
            last = first;
            while (last + 1 < count && last + 1 - first < MAX_SEGMENTS && same_peer(source[first], source[last + 1]) &&
                   out_iov[last].iov_len == size && out_iov[last + 1].iov_len > 0 && out_iov[last + 1].iov_len <= size &&
                   total + out_iov[last + 1].iov_len <= MAX_SEGMENTED)
                total += out_iov[++last].iov_len;
            segmented_message(&replies[messages++], first, last, size);
        }
        send_all(fd, replies, messages);
    }
}
