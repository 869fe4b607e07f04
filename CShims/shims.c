// The bodies of CShims.h that need _GNU_SOURCE (set for this target in Package.swift),
// and the checks that its declarations match the system's.
#ifndef _GNU_SOURCE
#error "CShims needs _GNU_SOURCE: set it in Package.swift's cSettings"
#endif

#include "CShims.h"

#include <sys/random.h>
#include <sys/sysinfo.h>

#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// hs_mmsghdr must be struct mmsghdr exactly: the kernel reads it.
_Static_assert(sizeof(hs_mmsghdr) == sizeof(struct mmsghdr), "hs_mmsghdr size differs from glibc's mmsghdr");
_Static_assert(offsetof(hs_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "hs_mmsghdr layout differs");
_Static_assert(sizeof(hs_in_pktinfo) == sizeof(struct in_pktinfo) &&
               offsetof(hs_in_pktinfo, ipi_spec_dst) == offsetof(struct in_pktinfo, ipi_spec_dst), "hs_in_pktinfo layout differs");
_Static_assert(sizeof(hs_in6_pktinfo) == sizeof(struct in6_pktinfo) &&
               offsetof(hs_in6_pktinfo, ipi6_ifindex) == offsetof(struct in6_pktinfo, ipi6_ifindex), "hs_in6_pktinfo layout differs");
_Static_assert(HS_UDP_SEGMENT == UDP_SEGMENT && HS_UDP_GRO == UDP_GRO && HS_SOL_UDP == SOL_UDP &&
               HS_IP_PKTINFO == IP_PKTINFO && HS_IP_MTU_DISCOVER == IP_MTU_DISCOVER &&
               HS_IP_PMTUDISC_WANT == IP_PMTUDISC_WANT && HS_IP_PMTUDISC_PROBE == IP_PMTUDISC_PROBE &&
               HS_IPV6_RECVPKTINFO == IPV6_RECVPKTINFO && HS_IPV6_PKTINFO == IPV6_PKTINFO &&
               HS_IPV6_V6ONLY == IPV6_V6ONLY, "a re-exported constant differs from the system's");

// The system calls themselves, not glibc's recvmmsg and sendmmsg: those are cancellation
// points, and in a process with threads each call turns asynchronous cancellation on and
// off around the system call, two atomic updates of the thread's state (1.4 % of the
// chat relay's CPU in a 2-member room, `perf record`). hellod never cancels a thread.
int hs_recvmmsg(int fd, hs_mmsghdr *msgs, unsigned int count, int flags, struct timespec *timeout) {
    return (int)syscall(SYS_recvmmsg, fd, (struct mmsghdr *)msgs, count, flags, timeout);
}

int hs_sendmmsg(int fd, hs_mmsghdr *msgs, unsigned int count, int flags) {
    return (int)syscall(SYS_sendmmsg, fd, (struct mmsghdr *)msgs, count, flags);
}

int hs_socket_drops(int fd, uint32_t *drops) {
    uint32_t meminfo[SK_MEMINFO_VARS];
    socklen_t len = sizeof meminfo;
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) < 0) return -errno;
    if (len < (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t)) return -EINVAL;
    *drops = meminfo[SK_MEMINFO_DROPS];
    return 0;
}

int hs_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int hs_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

int hs_ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout) {
    return ppoll(fds, count, timeout, NULL);
}

int hs_set_timer_slack(unsigned long nanoseconds) { return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0); }

int hs_unshare_file_table(void) { return unshare(CLONE_FILES) == 0 ? 0 : -errno; }

long hs_getrandom(void *buffer, size_t length) { return (long)getrandom(buffer, length, 0); }

static void hs_interrupted(int signal) { (void)signal; }

int hs_interrupt_signal(void) { return SIGRTMIN; }

int hs_install_interrupt_handler(void) {
    struct sigaction action = {.sa_handler = hs_interrupted};  // no SA_RESTART
    sigemptyset(&action.sa_mask);
    return sigaction(SIGRTMIN, &action, NULL) == 0 ? 0 : -errno;
}

int hs_unblock_interrupt(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int hs_interrupt_every(unsigned long long interval, timer_t *timer) {
    struct sigevent event = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN};
    event._sigev_un._tid = gettid();  // sigev_notify_thread_id, which glibc 2.36 does not name
    if (timer_create(CLOCK_MONOTONIC, &event, timer) != 0) return -errno;
    struct timespec every = {.tv_sec = (time_t)(interval / 1000000000), .tv_nsec = (long)(interval % 1000000000)};
    struct itimerspec schedule = {.it_interval = every, .it_value = every};
    if (timer_settime(*timer, 0, &schedule, NULL) != 0) {
        int error = errno;
        timer_delete(*timer);
        return -error;
    }
    return 0;
}

int hs_delete_timer(timer_t timer) { return timer_delete(timer) == 0 ? 0 : -errno; }

int hs_join_within(pthread_t thread, unsigned long long nanoseconds) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    unsigned long long end = (unsigned long long)deadline.tv_nsec + nanoseconds;
    deadline.tv_sec += (time_t)(end / 1000000000ULL);
    deadline.tv_nsec = (long)(end % 1000000000ULL);
    return pthread_timedjoin_np(thread, NULL, &deadline);
}

unsigned long long hs_memory_and_swap(void) {
    struct sysinfo info;
    if (sysinfo(&info) != 0) return 0;
    return ((unsigned long long)info.totalram + info.totalswap) * info.mem_unit;
}
