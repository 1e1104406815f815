/* Random 4 KiB direct I/O at queue depth 1, for guests without fio (bench/vhost.sh builds
 * it static and copies it into the guest).
 *   randio DEVICE read|write SECONDS
 * Reads or writes 4 KiB blocks at random 4 KiB-aligned offsets across the whole device
 * (O_DIRECT, one at a time) for SECONDS, then prints "IOPS MB/s". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: randio DEVICE read|write SECONDS\n");
		return 2;
	}
	int wr = strcmp(argv[2], "write") == 0;
	double secs = atof(argv[3]);
	int fd = open(argv[1], (wr ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	uint64_t blocks = (uint64_t)size / 4096;
	if (blocks == 0) {
		fprintf(stderr, "%s: empty\n", argv[1]);
		return 1;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, 4096))
		return 1;
	memset(buf, 0x5a, 4096);
	/* xorshift64: the same offsets on every path for the same run. */
	uint64_t x = 0x9e3779b97f4a7c15ull, n = 0;
	double t0 = now(), t;
	do {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		off_t off = (off_t)(x % blocks) * 4096;
		ssize_t r = wr ? pwrite(fd, buf, 4096, off) : pread(fd, buf, 4096, off);
		if (r != 4096) {
			perror("randio: I/O");
			return 1;
		}
		n++;
		t = now() - t0;
	} while (t < secs);
	printf("%.1f %.3f\n", n / t, n * 4096 / t / 1e6);
	return 0;
}
