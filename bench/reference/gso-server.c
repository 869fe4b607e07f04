/*
 * gso-server: mmsg-server.c with UDP GSO replies, a yardstick for hellod's hello and echo.
 *
 * As mmsg-server (recvmmsg, a reply per datagram, one sendmmsg), but consecutive replies
 * to the same peer with the same length leave as one message carrying a UDP_SEGMENT
 * control message: the kernel splits it into datagrams of that length (the last may be
 * shorter), so the run costs one trip down the stack instead of one per reply. When the
 * kernel refuses a segmented send (EIO without checksum offload, EINVAL or EMSGSIZE), that
 * message's replies go out one by one as plain datagrams: nothing is lost.
 * bench/compare.py measures hellod against it, mmsg-server.c and spin-server.c.
 *
 * usage: gso-server PORT BATCH hello|echo [ADDRESS]   (binds ADDRESS:PORT, 127.0.0.1 by default;
 *   BATCH 1-64)
 *   hello: a datagram NAME gets "Hello, NAME!"; echo: the datagram's bytes come back.
 *   A datagram longer than 2048 bytes is dropped. Runs until killed.
 * build: cc -O2 -Wall -Wextra -o gso-server gso-server.c   (or: make references)
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
#define MAX_DATAGRAM 2048
#define MAX_SEGMENTED 65507 /* the most UDP payload one IPv4 send may carry */
#define SOCKET_BUFFER (4 << 20) /* as hellod's; the kernel caps it at net.core.[rw]mem_max */

static char in[MAX_BATCH][MAX_DATAGRAM], out[MAX_BATCH][MAX_DATAGRAM + 8];
static struct sockaddr_in peer[MAX_BATCH];
static struct iovec in_iov[MAX_BATCH], out_iov[MAX_BATCH];
static struct mmsghdr received[MAX_BATCH], replies[MAX_BATCH];
static int source[MAX_BATCH]; /* reply k answers received[source[k]] */
static union { char bytes[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control[MAX_BATCH];

static void die(const char *what) { perror(what); exit(1); }

static int usage(void) {
    fprintf(stderr, "usage: gso-server PORT BATCH(1-%d) hello|echo [ADDRESS]\n", MAX_BATCH);
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
        int sent = sendmmsg(fd, messages, count, 0);
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
            source[count++] = k;
        }
        /* A run: replies to one peer, each as long as the first but the last, which may be
         * shorter but not empty (an empty segment would not be sent at all). */
        int messages = 0;
        for (int first = 0, last; first < count; first = last + 1) {
            size_t size = out_iov[first].iov_len, total = size;
            last = first;
            while (last + 1 < count && same_peer(source[first], source[last + 1]) && out_iov[last].iov_len == size &&
                   out_iov[last + 1].iov_len > 0 && out_iov[last + 1].iov_len <= size &&
                   total + out_iov[last + 1].iov_len <= MAX_SEGMENTED)
                total += out_iov[++last].iov_len;
            segmented_message(&replies[messages++], first, last, size);
        }
        send_all(fd, replies, messages);
    }
}
