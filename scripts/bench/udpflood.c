// SPDX-License-Identifier: MIT
// udpflood PORT SECS: send() 64-byte datagrams on a connected UDP socket to 127.0.0.1:PORT for SECS
// seconds; prints {"sent","secs","rate","start"}. For the detail-mode benchmark: Python tops out near 250k/s.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return perror("udpflood"), 1;
  char buf[64] = {0};
  long n = 0;
  double t0 = now(), end = t0 + atof(argv[2]), t;
  do {
    for (int i = 0; i < 1000; i++) n += send(fd, buf, sizeof buf, 0) == sizeof buf;
  } while ((t = now()) < end);
  /* start: CLOCK_MONOTONIC, the clock of Python's time.monotonic(), so the bench can cut its CPU samples */
  printf("{\"sent\": %ld, \"secs\": %.6f, \"rate\": %.1f, \"start\": %.6f}\n", n, t - t0, n / (t - t0), t0);
  return 0;
}
