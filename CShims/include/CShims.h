// CShims: the few pieces of Linux and libsystemd that Swift cannot call directly.
//
// Every symbol carries the prefix hs_. The rules, after swift-nio's CNIOLinux:
//  - struct mmsghdr and recvmmsg/sendmmsg need _GNU_SOURCE, which Swift's Glibc module
//    does not define, so mmsghdr is declared again here (its size is checked against
//    glibc's in shims.c) and the two calls are wrapped;
//  - CMSG_* are macros Swift cannot import: they become small inline functions;
//  - constants that live behind _GNU_SOURCE or in kernel headers are re-exported.
#ifndef HELLOD_CSHIMS_H
#define HELLOD_CSHIMS_H

#include <netinet/in.h>
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

static const int HS_UDP_SEGMENT = 103;        // linux/udp.h: GSO segment size, per send
static const int HS_UDP_MAX_SEGMENTS = 64;    // the kernel's limit on segments per GSO send
static const int HS_IP_PKTINFO = 8;           // linux/in.h
static const int HS_IPV6_RECVPKTINFO = 49;    // linux/in6.h
static const int HS_IPV6_PKTINFO = 50;
static const int HS_IPV6_V6ONLY = 26;

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

// MARK: - sockaddr_storage helpers

// The port in host byte order, 0 for a family that has none.
static inline uint16_t hs_sockaddr_port(const struct sockaddr_storage *ss) {
    switch (ss->ss_family) {
    case AF_INET: return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    case AF_INET6: return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    default: return 0;
    }
}

// Two socket addresses the kernel wrote are equal when their first len bytes are.
static inline bool hs_sockaddr_equal(const struct sockaddr_storage *a, socklen_t alen,
                                     const struct sockaddr_storage *b, socklen_t blen) {
    return alen == blen && memcmp(a, b, alen) == 0;
}

// MARK: - Control messages

// What the control messages of one received datagram said.
typedef struct {
    bool has_local4;              // IP_PKTINFO: the IPv4 address the datagram came to
    struct in_addr local4;
    bool has_local6;              // IPV6_PKTINFO: the IPv6 (maybe v4-mapped) address
    struct in6_addr local6;
    unsigned int ifindex6;
} hs_received_control;

static inline void hs_parse_control(const struct msghdr *msg, hs_received_control *out) {
    memset(out, 0, sizeof *out);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == HS_IP_PKTINFO) {
            hs_in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            // ipi_spec_dst is the local address (right for broadcasts too), but it is
            // filled when the datagram is queued: one queued before IP_PKTINFO was set
            // (under socket activation, the datagram that started hellod) has 0.0.0.0
            // there. ipi_addr, the header's destination, is filled at receive time.
            uint32_t addr = ntohl(info.ipi_addr.s_addr);
            bool group = (addr >> 28) == 0xe || addr == 0xffffffff;  // multicast, broadcast
            if (info.ipi_spec_dst.s_addr != 0) {
                out->has_local4 = true;
                out->local4 = info.ipi_spec_dst;
            } else if (!group) {
                out->has_local4 = true;
                out->local4 = info.ipi_addr;
            }
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == HS_IPV6_PKTINFO) {
            hs_in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            out->has_local6 = true;
            out->local6 = info.ipi6_addr;
            out->ifindex6 = info.ipi6_ifindex;
        }
    }
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
int hs_set_thread_name(const char *name);
// prctl(PR_SET_TIMERSLACK): how late the kernel may wake this thread from a sleep.
int hs_set_timer_slack(unsigned long nanoseconds);

// MARK: - libsystemd

// sd_listen_fds_with_names(3), keeping the environment for no one else (unset_environment).
int hs_listen_fds_with_names(char ***names);
// sd_is_socket(3) for a datagram socket of any family; the family is written to *family.
int hs_is_datagram_socket(int fd, int *family);
// sd_notify(3) without unsetting NOTIFY_SOCKET.
int hs_notify(const char *state);
// sd_watchdog_enabled(3): >0 and the interval in microseconds when systemd wants pings.
int hs_watchdog_enabled(uint64_t *usec);
// sd_journal_sendv(3): one entry of FIELD=value strings.
int hs_journal_sendv(const struct iovec *fields, int count);
// SD_LISTEN_FDS_START, the first inherited descriptor.
int hs_listen_fds_start(void);

#endif
