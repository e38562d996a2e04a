/* The floor of KIST's per-socket cost: getsockopt(TCP_INFO) + ioctl(SIOCOUTQNSD),
 * exactly the two calls of Tor's update_socket_info_impl(), over N connected loopback
 * sockets with unsent data queued, timed per pass with CLOCK_MONOTONIC.
 *
 * usage: tcpinfo_floor N PASSES EVICT_BYTES
 * prints one line per pass: "<ns for the whole pass>" (after a warm-up pass).
 * EVICT_BYTES > 0: before each pass, write that many bytes of a scratch buffer, so
 * the pass starts with cold caches as a scheduler run does after Tor's main loop ran.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t
now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void
die(const char *what)
{
  fprintf(stderr, "tcpinfo_floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

int
main(int argc, char **argv)
{
  int n, passes, i, p, lst, one = 1;
  long evict;
  int *cli, *srv;
  char *scratch = NULL;
  static char payload[32768];
  struct sockaddr_in addr;
  socklen_t alen = sizeof(addr);
  struct rlimit rl;
  volatile unsigned sink = 0;

  if (argc != 4)
    return 2;
  n = atoi(argv[1]);
  passes = atoi(argv[2]);
  evict = atol(argv[3]);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t) (2 * n + 16)) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  cli = calloc(n, sizeof(int));
  srv = calloc(n, sizeof(int));
  if (evict > 0 && !(scratch = malloc(evict)))
    die("malloc");
  lst = socket(AF_INET, SOCK_STREAM, 0);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (lst < 0 || bind(lst, (struct sockaddr *) &addr, sizeof(addr)) < 0 ||
      listen(lst, 4096) < 0 || getsockname(lst, (struct sockaddr *) &addr, &alen) < 0)
    die("listen");
  for (i = 0; i < n; i++) {
    cli[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (cli[i] < 0 || connect(cli[i], (struct sockaddr *) &addr, sizeof(addr)) < 0)
      die("connect");
    setsockopt(cli[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((srv[i] = accept(lst, NULL, NULL)) < 0)
      die("accept");
    /* Queue data the peer never reads: cwnd, unacked and notsent are live values. */
    if (send(cli[i], payload, sizeof(payload), MSG_DONTWAIT) < 0 && errno != EAGAIN)
      die("send");
  }
  for (p = -1; p < passes; p++) {
    uint64_t t0, t1;
    if (scratch) {
      for (long k = 0; k < evict; k += 64)
        scratch[k] = (char) (k + p);
      sink += (unsigned char) scratch[evict / 2];
    }
    t0 = now_ns();
    for (i = 0; i < n; i++) {
      struct tcp_info tcp;
      socklen_t len = sizeof(tcp);
      int notsent = 0;
      if (getsockopt(cli[i], SOL_TCP, TCP_INFO, &tcp, &len) < 0)
        die("getsockopt TCP_INFO");
      if (ioctl(cli[i], SIOCOUTQNSD, &notsent) < 0)
        die("ioctl SIOCOUTQNSD");
      sink += tcp.tcpi_snd_cwnd + (unsigned) notsent;
    }
    t1 = now_ns();
    if (p >= 0)
      printf("%llu\n", (unsigned long long) (t1 - t0));
  }
  return sink == 0xdeadbeef;
}
