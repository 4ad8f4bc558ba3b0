// SPDX-License-Identifier: MIT
/*
 * Workload of scripts/bench/hooks.py: 64-byte writes on a loopback TCP connection for N seconds.
 *   hotloop send PORT SECS   connect to PORT, write 64 bytes at a time (a receiver elsewhere reads)
 *   hotloop recv PORT        accept one connection on PORT, read 64 bytes at a time until EOF
 *   hotloop pair SECS        both ends in this process: write 64, read 64 (send and recv both traced)
 * C, not Python: the interpreter's own cost per call would hide the hooks' (tens of ns).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int listener(int port, int *bound)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (void *)&a, sizeof(a)) || listen(s, 1) || getsockname(s, (void *)&a, &len)) {
		perror("listen");
		exit(1);
	}
	*bound = ntohs(a.sin_port);
	return s;
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int c = socket(AF_INET, SOCK_STREAM, 0);

	if (c < 0 || connect(c, (void *)&a, sizeof(a))) {
		perror("connect");
		exit(1);
	}
	return c;
}

int main(int argc, char **argv)
{
	char buf[64] = { 0 };
	long n = 0;
	double end;
	int port;

	if (argc == 4 && !strcmp(argv[1], "send")) {
		int c = connect_to(atoi(argv[2]));

		end = now() + atof(argv[3]);
		while ((n & 1023) || now() < end)
			if (write(c, buf, sizeof(buf)) == sizeof(buf))
				n++;
	} else if (argc == 3 && !strcmp(argv[1], "recv")) {
		int l = listener(atoi(argv[2]), &port), s = accept(l, NULL, NULL);

		while (read(s, buf, sizeof(buf)) > 0)
			n++;
	} else if (argc == 3 && !strcmp(argv[1], "pair")) {
		int l = listener(0, &port), c = connect_to(port), s = accept(l, NULL, NULL), got;

		end = now() + atof(argv[2]);
		while ((n & 1023) || now() < end) {
			if (write(c, buf, sizeof(buf)) != sizeof(buf))
				break;
			for (got = 0; got < (int)sizeof(buf);) {
				int r = read(s, buf, sizeof(buf) - got);

				if (r <= 0)
					exit(1);
				got += r;
			}
			n++;
		}
	} else {
		fprintf(stderr, "usage: hotloop send PORT SECS | recv PORT | pair SECS\n");
		return 2;
	}
	printf("%ld\n", n);
	return 0;
}
