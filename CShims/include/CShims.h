// CShims: the few pieces of Linux and libsystemd that Swift cannot call directly.
//
// Every symbol carries the prefix hs_. The rules, after swift-nio's CNIOLinux:
//  - struct mmsghdr and recvmmsg/sendmmsg need _GNU_SOURCE, which Swift's Glibc module
//    does not define, so mmsghdr is declared again here (its size is checked against
//    glibc's in shims.c) and the two calls are wrapped;
//  - CMSG_* are macros Swift cannot import: they become small inline functions;
//  - constants that live behind _GNU_SOURCE or in kernel headers are re-exported, and
//    checked against the system's headers;
//  - no policy: what to do with what the kernel said is decided in Swift.
// libsystemd is not here: hellod alone links it (CShims/libsystemd, module CSystemd).
#ifndef HELLOD_CSHIMS_H
#define HELLOD_CSHIMS_H

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

// MARK: - Batched datagram I/O

typedef struct {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} hs_mmsghdr;

int hs_recvmmsg(int fd, hs_mmsghdr *msgs, unsigned int count, int flags, struct timespec *timeout);
int hs_sendmmsg(int fd, hs_mmsghdr *msgs, unsigned int count, int flags);

// MARK: - Constants Swift cannot see

// Each is checked against the system's headers in shims.c.
static const int HS_UDP_SEGMENT = 103;        // netinet/udp.h: GSO segment size, per send
static const int HS_UDP_GRO = 104;            // netinet/udp.h: receive trains coalesced (UDP GRO)
static const int HS_SOL_UDP = 17;             // netinet/udp.h: the level of both
static const int HS_IP_PKTINFO = 8;           // netinet/in.h
static const int HS_IP_MTU_DISCOVER = 10;     // DF and path MTU discovery, per socket
static const int HS_IP_PMTUDISC_WANT = 1;     // a new socket's: path MTU discovery
static const int HS_IP_PMTUDISC_PROBE = 3;    // DF set, the path MTU ignored
static const int HS_IPV6_RECVPKTINFO = 49;
static const int HS_IPV6_PKTINFO = 50;
static const int HS_IPV6_V6ONLY = 26;
// The kernel's limit on segments in one UDP GSO send (UDP_MAX_SEGMENTS in the kernel's
// private include/linux/udp.h, which no installed header exports: a send over it fails
// with EINVAL, which the sender survives by sending plain datagrams).
static const int HS_UDP_MAX_SEGMENTS = 64;

// The in_pktinfo and in6_pktinfo of Linux and RFC 3542 (glibc hides both behind _GNU_SOURCE).
typedef struct {
    int ipi_ifindex;
    struct in_addr ipi_spec_dst;
    struct in_addr ipi_addr;
} hs_in_pktinfo;

typedef struct {
    struct in6_addr ipi6_addr;
    unsigned int ipi6_ifindex;
} hs_in6_pktinfo;

// MARK: - Control messages

// The PKTINFO control messages of one received datagram, copied out as they are: which
// address to answer from is Swift's decision (HelloDatagram's Arrival), not the shim's.
typedef struct {
    bool has_ipv4;                // IP_PKTINFO
    hs_in_pktinfo ipv4;
    bool has_ipv6;                // IPV6_PKTINFO
    hs_in6_pktinfo ipv6;
} hs_pktinfo;

static inline void hs_read_pktinfo(const struct msghdr *msg, hs_pktinfo *out) {
    memset(out, 0, sizeof *out);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == HS_IP_PKTINFO) {
            out->has_ipv4 = true;
            memcpy(&out->ipv4, CMSG_DATA(c), sizeof out->ipv4);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == HS_IPV6_PKTINFO) {
            out->has_ipv6 = true;
            memcpy(&out->ipv6, CMSG_DATA(c), sizeof out->ipv6);
        }
    }
}

// The segment size of a coalesced receive (UDP GRO's SOL_UDP/UDP_GRO control message, an
// int), or 0 for a datagram that arrived alone: it carries no such message.
static inline int hs_read_gro_segment_size(const struct msghdr *msg) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == HS_SOL_UDP && c->cmsg_type == HS_UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            return size;
        }
    }
    return 0;
}

// Writers of outgoing control messages. Each appends one cmsg at buf + used, where buf
// is aligned for cmsghdr, and returns the new used length (0 if it would not fit).
static inline size_t hs_put_cmsg(void *buf, size_t used, size_t cap, int level, int type,
                                 const void *data, size_t len) {
    if (used + CMSG_SPACE(len) > cap) return 0;
    struct cmsghdr *c = (struct cmsghdr *)((char *)buf + used);
    memset(c, 0, CMSG_SPACE(len));
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), data, len);
    return used + CMSG_SPACE(len);
}

// Send from this IPv4 address (also to v4-mapped peers on a dual-stack socket).
static inline size_t hs_put_source4(void *buf, size_t used, size_t cap, struct in_addr local) {
    hs_in_pktinfo info;
    memset(&info, 0, sizeof info);
    info.ipi_spec_dst = local;
    return hs_put_cmsg(buf, used, cap, IPPROTO_IP, HS_IP_PKTINFO, &info, sizeof info);
}

// Send from this IPv6 address, out of this interface (needed for link-local addresses).
static inline size_t hs_put_source6(void *buf, size_t used, size_t cap, struct in6_addr local, unsigned int ifindex) {
    hs_in6_pktinfo info;
    memset(&info, 0, sizeof info);
    info.ipi6_addr = local;
    info.ipi6_ifindex = ifindex;
    return hs_put_cmsg(buf, used, cap, IPPROTO_IPV6, HS_IPV6_PKTINFO, &info, sizeof info);
}

// Cut this send into datagrams of segment_size bytes (UDP GSO; the last may be shorter).
static inline size_t hs_put_segment_size(void *buf, size_t used, size_t cap, uint16_t segment_size) {
    return hs_put_cmsg(buf, used, cap, IPPROTO_UDP, HS_UDP_SEGMENT, &segment_size, sizeof segment_size);
}

// MARK: - Small things

// The socket's count of datagrams the kernel dropped for it (a full receive queue, mostly):
// SO_MEMINFO's SK_MEMINFO_DROPS. 0 on success, -errno on failure. (SO_RXQ_OVFL would report
// the same count only with datagrams queued after the drops, and UDP does not stamp it.)
int hs_socket_drops(int fd, uint32_t *drops);

int hs_eventfd(void);
// ppoll(2) without a signal mask: poll with a timeout in nanoseconds, not milliseconds
// (a chat room's held events are due in microseconds). Glibc declares it behind _GNU_SOURCE.
int hs_ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout);
int hs_set_thread_name(const char *name);
// prctl(PR_SET_TIMERSLACK): how late the kernel may wake this thread from a sleep.
int hs_set_timer_slack(unsigned long nanoseconds);
// unshare(CLONE_FILES) (behind _GNU_SOURCE): the calling thread's own copy of the file
// descriptor table. While threads share a table, every system call on a descriptor takes
// and drops a reference to its file; on a table of one thread's it does not. 0 or -errno.
int hs_unshare_file_table(void);

// The signal that interrupts a thread blocked in a system call (SIGRTMIN, a function call
// in glibc), and its handler: one that does nothing, installed without SA_RESTART, so that
// the call returns EINTR (a receive with SO_RCVTIMEO never restarts: signal(7)). 0 or -errno.
int hs_interrupt_signal(void);
int hs_install_interrupt_handler(void);
// Unblocks it in the calling thread (a thread inherits its creator's mask, which may block it).
int hs_unblock_interrupt(void);
// A timer that sends the calling thread that signal every `interval` nanoseconds, the first
// `interval` from now (timer_create(2) with SIGEV_THREAD_ID, behind _GNU_SOURCE). 0 and the
// timer in *timer, or -errno. hs_delete_timer stops and frees it.
int hs_interrupt_every(unsigned long long interval, timer_t *timer);
int hs_delete_timer(timer_t timer);
// pthread_timedjoin_np(3) (behind _GNU_SOURCE) with a deadline `nanoseconds` from now: 0 once
// the thread has ended and is joined, ETIMEDOUT if it runs on.
int hs_join_within(pthread_t thread, unsigned long long nanoseconds);

/// getrandom(2), whose header the Glibc module does not bring: fills `length` bytes from
/// the kernel's random pool, blocking only until it is initialised. The bytes read, or -1.
long hs_getrandom(void *buffer, size_t length);

/// sysinfo(2)'s memory and swap, in bytes (whose header the Glibc module does not bring
/// either): more than this in one allocation, Linux refuses by default as an obvious
/// overcommit. 0 if sysinfo fails.
unsigned long long hs_memory_and_swap(void);

#endif
