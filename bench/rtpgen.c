/* Benchmark RTP generator and sink in C: the same wire format, commands and JSON report
 * as bench/rtpgen.py (read its docstring), at a fraction of the CPU, so that on a
 * 2-core machine the generator leaves the cores to the middlebox under test.
 * sendmmsg per phase group and socket; recvmmsg with SO_TIMESTAMPNS (kernel arrival
 * time, CLOCK_REALTIME like the send stamp). Latency is kept in a histogram: 1 us
 * buckets up to 100 ms, 1 ms buckets up to 100 s.
 * Build (load.py does this): cc -O2 -o rtpgen bench/rtpgen.c -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXC 8192         /* calls */
#define GROUPS 20         /* phase groups, 1 ms apart */
#define TICK_NS 1000000LL
#define FRAME 160
#define PKT (12 + FRAME)
#define MAGIC 0xB2B5
#define FLAG_B 1
#define FLAG_COUNTED 2
#define BATCH 64
#define FINE 100000       /* 1 us buckets: 0..100 ms */
#define COARSE 100000     /* 1 ms buckets: 0..100 s */
#define LAGB 100000       /* 10 us buckets: 0..1 s */

typedef struct {
    int active, counted;
    struct sockaddr_in dest;
    uint32_t seq, ts, ssrc;
    uint64_t sent;
    int64_t dtmf_at; /* monotonic ns, 0 = none */
} stream_t;

static stream_t st[2 * MAXC];
static uint64_t received[2 * MAXC];
static double jitter[2 * MAXC];
static int64_t last_transit[2 * MAXC];
static uint8_t has_last[2 * MAXC];
static uint32_t fine[FINE], coarse[COARSE], lagh[LAGB];
static uint64_t skipped_ticks;
static int64_t lag_max_ns;
static uint64_t nlat, nlag, other, sent_stopped;
static int64_t lat_max_ns;
static int max_k = -1;
static int sock[2], sink[2];

static int64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int64_t real_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int udp(const char *host, int port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int size = 4 * 1024 * 1024;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    return s;
}

static int port_of(int s) {
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &n);
    return ntohs(a.sin_port);
}

static void put16(uint8_t *p, uint32_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static void put64(uint8_t *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, (uint32_t)v); }
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t get32(const uint8_t *p) { return get16(p) << 16 | get16(p + 2); }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

/* RFC 4733 2.3: event "1", volume 10; three updates, then the end packet three times. */
static void send_digit(int idx) {
    stream_t *s = &st[idx];
    uint8_t p[16];
    for (int i = 1; i <= 6; i++) {
        int dur = i <= 3 ? i : 4, end = i > 3;
        s->seq++;
        p[0] = 0x80; p[1] = 101 | (i == 1 ? 0x80 : 0);
        put16(p + 2, s->seq); put32(p + 4, s->ts); put32(p + 8, s->ssrc);
        p[12] = 1; p[13] = (end ? 0x80 : 0) | 10; put16(p + 14, dur * FRAME);
        sendto(sock[idx & 1], p, sizeof p, 0, (struct sockaddr *)&s->dest, sizeof s->dest);
    }
}

static uint8_t bufs[2][MAXC / GROUPS * 2 + 64][PKT];
static void send_group(int g, int64_t now) {
    struct mmsghdr msgs[2][MAXC / GROUPS + 64];
    struct iovec iov[2][MAXC / GROUPS + 64];
    int n[2] = {0, 0};
    for (int k = g; k <= max_k; k += GROUPS) {
        for (int side = 0; side < 2; side++) {
            int idx = 2 * k + side;
            stream_t *s = &st[idx];
            if (!s->active) continue;
            if (s->dtmf_at && now >= s->dtmf_at) { s->dtmf_at = 0; send_digit(idx); }
            s->seq++;
            s->ts += FRAME;
            int flags = side ? FLAG_B : 0;
            if (s->counted) { flags |= FLAG_COUNTED; s->sent++; }
            uint8_t *p = bufs[side][n[side]];
            p[0] = 0x80; p[1] = 8;
            put16(p + 2, s->seq); put32(p + 4, s->ts); put32(p + 8, s->ssrc);
            put16(p + 12, MAGIC); put16(p + 14, k); p[16] = flags;
            put32(p + 17, s->seq); put64(p + 21, (uint64_t)real_ns());
            iov[side][n[side]] = (struct iovec){p, PKT};
            msgs[side][n[side]].msg_hdr = (struct msghdr){
                .msg_name = &s->dest, .msg_namelen = sizeof s->dest,
                .msg_iov = &iov[side][n[side]], .msg_iovlen = 1};
            n[side]++;
        }
    }
    for (int side = 0; side < 2; side++) {
        int done = 0, tries = 0;
        while (done < n[side] && tries++ < 4) { /* a full buffer is loss, seen by the sink */
            int r = sendmmsg(sock[side], msgs[side] + done, n[side] - done, 0);
            if (r <= 0) break;
            done += r;
        }
    }
}

static void receive(int s) {
    static uint8_t data[BATCH][2048];
    static char ctrl[BATCH][64];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int round = 0; round < 64; round++) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){data[i], sizeof data[i]};
            msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1,
                                              .msg_control = ctrl[i], .msg_controllen = 64};
        }
        int r = recvmmsg(s, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (r <= 0) return;
        for (int i = 0; i < r; i++) {
            const uint8_t *p = data[i];
            unsigned len = msgs[i].msg_len;
            if (len < 29 || (p[1] & 0x7F) != 8 || get16(p + 12) != MAGIC) { other++; continue; }
            unsigned k = get16(p + 14), flags = p[16];
            if (!(flags & FLAG_COUNTED) || k >= MAXC) { other++; continue; }
            int64_t rx = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
                 c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
                    struct timespec t;
                    memcpy(&t, CMSG_DATA(c), sizeof t);
                    rx = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
                }
            }
            if (!rx) rx = real_ns();
            int64_t transit = rx - (int64_t)get64(p + 21);
            int idx = 2 * k + (flags & FLAG_B);
            received[idx]++;
            if (has_last[idx]) {
                double d = fabs((double)(transit - last_transit[idx]));
                jitter[idx] += (d - jitter[idx]) / 16;
            }
            has_last[idx] = 1;
            last_transit[idx] = transit;
            if (transit < 0) transit = 0;
            if (transit > lat_max_ns) lat_max_ns = transit;
            int64_t us = transit / 1000;
            if (us < FINE) fine[us]++;
            else coarse[us / 1000 < COARSE ? us / 1000 : COARSE - 1]++;
            nlat++;
        }
    }
}

static void drain(int s) {
    char b[2048];
    for (int i = 0; i < 256 && recv(s, b, sizeof b, MSG_DONTWAIT) > 0; i++) {}
}

/* value in ms at quantile q of the latency histograms */
static double lat_q(double q) {
    if (!nlat) return NAN;
    uint64_t want = (uint64_t)ceil(q * nlat), acc = 0;
    if (want < 1) want = 1;
    for (int i = 0; i < FINE; i++) if ((acc += fine[i]) >= want) return i / 1000.0;
    for (int i = 0; i < COARSE; i++) if ((acc += coarse[i]) >= want) return (double)i;
    return NAN;
}

static double lag_q(double q) {
    if (!nlag) return NAN;
    uint64_t want = (uint64_t)ceil(q * nlag), acc = 0;
    if (want < 1) want = 1;
    for (int i = 0; i < LAGB; i++) if ((acc += lagh[i]) >= want) return i / 100.0;
    return 1000.0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void json_num(const char *key, double v, const char *end) {
    if (isnan(v)) printf("\"%s\": null%s", key, end);
    else printf("\"%s\": %.3f%s", key, v, end);
}

static void report(void) {
    uint64_t sent = sent_stopped, recv_total = 0;
    static double jit[2 * MAXC];
    int nj = 0;
    for (int i = 0; i < 2 * MAXC; i++) {
        if (st[i].active) sent += st[i].sent;
        recv_total += received[i];
        if (has_last[i] && received[i] > 1) jit[nj++] = jitter[i] / 1e6;
    }
    qsort(jit, nj, sizeof jit[0], cmp_d);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
                 (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("{\"sent\": %llu, \"received\": %llu, ", (unsigned long long)sent,
           (unsigned long long)recv_total);
    json_num("loss_pct", sent ? 100.0 * ((double)sent - (double)recv_total) / sent : NAN, ", ");
    printf("\"latency_ms\": {");
    json_num("p50", lat_q(0.5), ", ");
    json_num("p99", lat_q(0.99), ", ");
    json_num("max", nlat ? lat_max_ns / 1e6 : NAN, "}, ");
    printf("\"jitter_ms\": {");
    json_num("p50", nj ? jit[(int)(0.5 * (nj - 1))] : NAN, ", ");
    json_num("p99", nj ? jit[(int)(0.99 * (nj - 1))] : NAN, ", ");
    json_num("max", nj ? jit[nj - 1] : NAN, "}, ");
    printf("\"other_packets\": %llu, \"sender_tick_lag_ms\": {", (unsigned long long)other);
    json_num("p50", lag_q(0.5), ", ");
    json_num("p99", lag_q(0.99), ", ");
    json_num("max", lag_max_ns / 1e6, "}, ");
    printf("\"skipped_ticks\": %llu, ", (unsigned long long)skipped_ticks);
    json_num("cpu_s", cpu, "");
    printf(", \"generator\": \"c\"}\n");
    fflush(stdout);
}

static int command(char *line, int64_t now) {
    char cmd[16] = "", which[32] = "", side[4] = "", host[64] = "";
    int k, port;
    double delay = -1;
    if (sscanf(line, "%15s", cmd) != 1) return 0;
    if (!strcmp(cmd, "start")) {
        int n = sscanf(line, "%*s %d %3s %63s %d %lf", &k, side, host, &port, &delay);
        if (n < 4 || k < 0 || k >= MAXC) return 0;
        int idx = 2 * k + (side[0] == 'b');
        stream_t *s = &st[idx];
        if (s->active) sent_stopped += s->sent;
        memset(s, 0, sizeof *s);
        s->dest.sin_family = AF_INET;
        s->dest.sin_port = htons(port);
        inet_pton(AF_INET, host, &s->dest.sin_addr);
        s->ssrc = (uint32_t)random() ^ (uint32_t)idx << 16;
        s->dtmf_at = n == 5 ? now + (int64_t)(delay * 1e9) : 0;
        s->active = 1;
        if (k > max_k) max_k = k;
    } else if (!strcmp(cmd, "count") || !strcmp(cmd, "uncount") || !strcmp(cmd, "stop")) {
        if (sscanf(line, "%*s %31s", which) != 1) return 0;
        int lo = 0, hi = max_k;
        if (strcmp(which, "all")) lo = hi = atoi(which);
        for (int kk = lo; kk <= hi && kk < MAXC; kk++)
            for (int sd = 0; sd < 2; sd++) {
                stream_t *s = &st[2 * kk + sd];
                if (!s->active) continue;
                if (cmd[0] == 'c') s->counted = 1;
                else if (cmd[0] == 'u') s->counted = 0;
                else { sent_stopped += s->sent; s->active = 0; }
            }
    } else if (!strcmp(cmd, "quit")) {
        return 1;
    }
    return 0;
}

int main(void) {
    sock[0] = udp("127.0.0.2", 0);
    sock[1] = udp("127.0.0.3", 0);
    sink[0] = udp("127.0.0.2", port_of(sock[0]) + 1);
    sink[1] = udp("127.0.0.3", port_of(sock[1]) + 1);
    int on = 1;
    for (int i = 0; i < 2; i++) setsockopt(sock[i], SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    srandom((unsigned)real_ns());
    printf("ready %d %d\n", port_of(sock[0]), port_of(sock[1]));
    fflush(stdout);
    static char in[1 << 20];
    size_t have = 0;
    int64_t t0 = mono_ns();
    int64_t tick_no = 1;
    for (;;) {
        int64_t now = mono_ns(), next = t0 + tick_no * TICK_NS;
        if (now >= next) {
            int64_t lag = (now - next) / 10000;
            lagh[lag < LAGB ? lag : LAGB - 1]++;
            nlag++;
            int64_t due = (now - t0) / TICK_NS;
            /* at most one round of groups after a stall (then skip ahead: the streams'
             * timestamps then lag real time for good, as a sender clock jump would) */
            for (int i = 0; i < GROUPS && tick_no <= due; i++, tick_no++)
                send_group((int)(tick_no % GROUPS), now);
            if (tick_no <= due) { skipped_ticks += (uint64_t)(due + 1 - tick_no); tick_no = due + 1; }
            if (now - next > lag_max_ns) lag_max_ns = now - next;
            continue;
        }
        struct pollfd fds[5] = {{0, POLLIN, 0}, {sock[0], POLLIN, 0}, {sock[1], POLLIN, 0},
                                {sink[0], POLLIN, 0}, {sink[1], POLLIN, 0}};
        int64_t wait = next - now;
        struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
        if (ppoll(fds, 5, &ts, NULL) < 0 && errno != EINTR) { perror("ppoll"); return 1; }
        if (fds[1].revents) receive(sock[0]);
        if (fds[2].revents) receive(sock[1]);
        if (fds[3].revents) drain(sink[0]);
        if (fds[4].revents) drain(sink[1]);
        if (fds[0].revents) {
            ssize_t r = read(0, in + have, sizeof in - have - 1);
            if (r == 0) { report(); return 0; }
            if (r > 0) {
                have += (size_t)r;
                char *start = in, *nl;
                while ((nl = memchr(start, '\n', have - (size_t)(start - in)))) {
                    *nl = 0;
                    if (command(start, mono_ns())) { report(); return 0; }
                    start = nl + 1;
                }
                have -= (size_t)(start - in);
                memmove(in, start, have);
            }
        }
    }
}
