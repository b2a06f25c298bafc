// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The raw throughput of a stream transport, as the baseline of the
 * migration benchmark (bench/migration.py): one connection, send(2) from
 * a 256 KiB buffer of non-zero bytes, read(2) into another until EOF.
 *
 *   tcp_raw recv PORT			listen on all addresses, take one peer
 *   tcp_raw send HOST PORT BYTES
 *   tcp_raw unix recv PATH		the same over a unix stream socket
 *   tcp_raw unix send PATH BYTES
 *
 * BYTES takes a K, M or G suffix (powers of 1024). The receiver says
 * "listening" once it can be connected to, reads to EOF and closes. The
 * sender times from before connect(2) until it has sent everything, shut
 * its side down and seen the receiver close: every byte was delivered
 * and read, as a migration's total time includes its destination's
 * answer. Both print one line:
 *
 *   tcp_raw: send 268435456 bytes in 0.123456 s: 2174.3 MB/s; cpu user 0.001 s sys 0.098 s
 *
 * (MB = 10^6 bytes; cpu: this process's getrusage(2)). Errors: one line on stderr, exit 1; usage: exit 2.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)

static unsigned char buf[BUF_SIZE];

static __attribute__((noreturn)) void die(const char *what)
{
	fprintf(stderr, "tcp_raw: %s: %s\n", what, strerror(errno));
	exit(1);
}

static __attribute__((noreturn)) void usage(void)
{
	fprintf(stderr, "usage: tcp_raw recv PORT | tcp_raw send HOST PORT BYTES |\n"
		"       tcp_raw unix recv PATH | tcp_raw unix send PATH BYTES\n");
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		die("clock_gettime");
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *parse_port(const char *s)
{
	char *end;
	unsigned long p;

	errno = 0;
	p = strtoul(s, &end, 10);
	if (errno || end == s || *end || p < 1 || p > 65535) {
		fprintf(stderr, "tcp_raw: port '%s': want a number from 1 to 65535\n", s);
		exit(2);
	}
	return s;
}

static uint64_t parse_bytes(const char *s)
{
	char *end;
	unsigned long long n;
	unsigned int shift = 0;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (!errno && end != s && *end && !end[1]) {
		switch (*end) {
		case 'K': case 'k': shift = 10; end++; break;
		case 'M': case 'm': shift = 20; end++; break;
		case 'G': case 'g': shift = 30; end++; break;
		}
	}
	if (errno || end == s || *end || s[0] == '-' || !n || n > (UINT64_MAX >> shift)) {
		fprintf(stderr, "tcp_raw: bytes '%s': want a positive number, K, M or G after it\n",
			s);
		exit(2);
	}
	return (uint64_t)n << shift;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void report(const char *dir, uint64_t bytes, double secs)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		die("getrusage");
	printf("tcp_raw: %s %" PRIu64 " bytes in %.6f s: %.1f MB/s; cpu user %.3f s sys %.3f s\n",
	       dir, bytes, secs, secs > 0 ? (double)bytes / secs / 1e6 : 0.0, tv_s(ru.ru_utime),
	       tv_s(ru.ru_stime));
	if (fflush(stdout) == EOF)
		die("write stdout");
}

static void listening(void)
{
	printf("tcp_raw: listening\n");
	if (fflush(stdout) == EOF)
		die("write stdout");
}

/* Accept one peer on lfd, read it to EOF, close: the receiver's side. */
static void receive(int lfd)
{
	uint64_t total = 0;
	double t0;
	int fd;

	if (listen(lfd, 1) < 0)
		die("listen");
	listening();
	do
		fd = accept(lfd, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die("accept");
	t0 = now_s();
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (!r)
			break;
		total += (uint64_t)r;
	}
	report("recv", total, now_s() - t0);
	if (close(fd) < 0)
		die("close");
	if (close(lfd) < 0)
		die("close listener");
}

/* Send bytes on a connected fd, shut down, wait for the peer's close. */
static void transmit(int fd, uint64_t bytes, double t0)
{
	uint64_t left = bytes;

	while (left) {
		size_t k = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		ssize_t r = send(fd, buf, k, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("send");
		left -= (uint64_t)r;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read the receiver's close");
		if (!r)
			break;
	}
	report("send", bytes, now_s() - t0);
	if (close(fd) < 0)
		die("close");
}

static void tcp_recv(const char *port)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	uint16_t p = (uint16_t)atoi(port);
	int one = 1, zero = 0, fd;
	bool v6 = true;

	a6.sin6_port = a4.sin_port = htons(p);
	/* Both families on one IPv6 socket; IPv4 alone where IPv6 is off. */
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		if (errno != EAFNOSUPPORT)
			die("socket");
		v6 = false;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket");
	}
	if (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		die("setsockopt IPV6_V6ONLY");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("setsockopt SO_REUSEADDR");
	if (v6 ? bind(fd, (struct sockaddr *)&a6, sizeof(a6)) :
		 bind(fd, (struct sockaddr *)&a4, sizeof(a4)))
		die("bind");
	receive(fd);
}

static void tcp_send(const char *host, const char *port, uint64_t bytes)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	double t0 = now_s();
	int r, fd = -1, err = 0;

	r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		fprintf(stderr, "tcp_raw: resolve '%s': %s\n", host,
			r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		exit(1);
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (!connect(fd, ai->ai_addr, ai->ai_addrlen))
			break;
		err = errno;
		if (close(fd) < 0)
			die("close");
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "tcp_raw: connect to %s port %s: %s\n", host, port, strerror(err));
		exit(1);
	}
	transmit(fd, bytes, t0);
}

static void unix_addr(const char *path, struct sockaddr_un *sa)
{
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "tcp_raw: unix socket path longer than %zu bytes: %s\n",
			sizeof(sa->sun_path) - 1, path);
		exit(2);
	}
	memcpy(sa->sun_path, path, strlen(path));
}

static void unix_recv(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	unix_addr(path, &sa);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	receive(fd);
	if (unlink(path) < 0)
		die("unlink the socket");
}

static void unix_send(const char *path, uint64_t bytes)
{
	struct sockaddr_un sa;
	double t0 = now_s();
	int fd;

	unix_addr(path, &sa);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "tcp_raw: connect to unix:%s: %s\n", path, strerror(errno));
		exit(1);
	}
	transmit(fd, bytes, t0);
}

int main(int argc, char **argv)
{
	bool unix_mode = argc > 1 && !strcmp(argv[1], "unix");
	char **a = argv + 1 + unix_mode;
	int n = argc - 1 - unix_mode;

	/* Non-zero, not one byte repeated: nothing on the way can shortcut it. */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + 7) | 1;
	if (n == 2 && !strcmp(a[0], "recv")) {
		if (unix_mode)
			unix_recv(a[1]);
		else
			tcp_recv(parse_port(a[1]));
	} else if (unix_mode && n == 3 && !strcmp(a[0], "send")) {
		unix_send(a[1], parse_bytes(a[2]));
	} else if (!unix_mode && n == 4 && !strcmp(a[0], "send")) {
		tcp_send(a[1], parse_port(a[2]), parse_bytes(a[3]));
	} else {
		usage();
	}
	return 0;
}
