/* memdisk: a block-kind rtgt device handler in C, serving an in-memory disk of
 * SIZE MiB from one queue. Only rtgt_handler.h and libc.
 *
 *   cc -std=c11 -O2 -Wall -I bindings/c bindings/c/memdisk.c -o memdisk
 *   ./memdisk /run/rtgt/handlers/NAME.sock 64
 *
 * See docs/handler-protocol.md: HELLO, ACCEPT with three descriptors per queue by
 * SCM_RIGHTS (memfd, command eventfd, completion eventfd), then commands on the ring. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rtgt_handler.h"

static uint32_t load(uint8_t *region, size_t off) {
    return __atomic_load_n((uint32_t *)(region + off), __ATOMIC_ACQUIRE);
}

static void store(uint8_t *region, size_t off, uint32_t v) {
    __atomic_store_n((uint32_t *)(region + off), v, __ATOMIC_RELEASE);
}

static void kick(int fd) {
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
        perror("memdisk: eventfd");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET SIZE_MIB\n", argv[0]);
        return 2;
    }
    uint64_t size = strtoull(argv[2], NULL, 10) << 20;
    uint8_t *disk = calloc(1, size);
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, argv[1], sizeof sa.sun_path - 1);
    if (!disk || sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("memdisk: connect");
        return 1;
    }

    struct rtgt_hello hello;
    memset(&hello, 0, sizeof hello);
    memcpy(hello.magic, RTGT_HELLO_MAGIC, 8);
    hello.major = RTGT_HANDLER_MAJOR;
    hello.minor = RTGT_HANDLER_MINOR;
    hello.kind = RTGT_KIND_BLOCK;
    hello.features = RTGT_FEATURE_FLUSH | RTGT_FEATURE_WRITE_ZEROES;
    hello.capacity = size;
    hello.block_size = 512;
    hello.queues = 1;
    strcpy(hello.name, "c-memdisk");
    if (write(sock, &hello, sizeof hello) != sizeof hello) {
        perror("memdisk: HELLO");
        return 1;
    }

    struct rtgt_accept acc;
    char ctl[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {.iov_base = &acc, .iov_len = sizeof acc};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &mh, MSG_WAITALL) != sizeof acc || memcmp(acc.magic, RTGT_ACCEPT_MAGIC, 8)) {
        fprintf(stderr, "memdisk: no ACCEPT\n");
        return 1;
    }
    if (acc.status != RTGT_ACCEPTED) {
        fprintf(stderr, "memdisk: refused, status %u\n", acc.status);
        return 1;
    }
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(3 * sizeof(int))) {
        fprintf(stderr, "memdisk: ACCEPT without one queue's descriptors\n");
        return 1;
    }
    int fds[3];
    memcpy(fds, CMSG_DATA(cm), sizeof fds);
    int cmd_efd = fds[1], cpl_efd = fds[2];
    uint32_t depth = acc.depth;
    uint8_t *region = mmap(NULL, acc.region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (region == MAP_FAILED) {
        perror("memdisk: mmap");
        return 1;
    }
    uint8_t *arena = region + RTGT_ARENA(depth);
    uint64_t arena_size = (uint64_t)depth * acc.slot_size;
    printf("memdisk: attached, depth %u, slot %u bytes\n", depth, acc.slot_size);
    fflush(stdout);

    uint32_t head = 0, cpl_tail = 0;
    for (;;) {
        uint32_t done = 0;
        while (load(region, RTGT_OFF_CMD_TAIL) != head) {
            struct rtgt_cmd c;
            memcpy(&c, region + RTGT_CMD_RING(depth) + (size_t)(head % depth) * RTGT_CMD_ENTRY, sizeof c);
            store(region, RTGT_OFF_CMD_HEAD, ++head);
            struct rtgt_cpl r = {.tag = c.tag, .status = 0, .bytes = 0};
            int io = c.op == RTGT_OP_READ || c.op == RTGT_OP_WRITE;
            if (io && (c.offset > size || c.len > size - c.offset || c.data > arena_size ||
                       c.len > arena_size - c.data)) {
                r.status = -EIO;
            } else if (c.op == RTGT_OP_READ) {
                memcpy(arena + c.data, disk + c.offset, c.len);
                r.bytes = c.len;
            } else if (c.op == RTGT_OP_WRITE) {
                memcpy(disk + c.offset, arena + c.data, c.len);
                r.bytes = c.len;
            } else if (c.op == RTGT_OP_WRITE_ZEROES && c.offset <= size && c.len <= size - c.offset) {
                memset(disk + c.offset, 0, c.len);
            } else if (c.op != RTGT_OP_FLUSH && c.op != RTGT_OP_TASK_MGMT) {
                r.status = -EOPNOTSUPP;
            }
            memcpy(region + RTGT_CPL_RING(depth) + (size_t)(cpl_tail % depth) * RTGT_CPL_ENTRY, &r, sizeof r);
            store(region, RTGT_OFF_CPL_TAIL, ++cpl_tail);
            done++;
        }
        if (done) {
            /* One wake-up per batch, and only if rtgtd sleeps. */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (load(region, RTGT_OFF_CPL_SLEEPING))
                kick(cpl_efd);
            continue;
        }
        /* Announce the sleep, re-check, then sleep on the command eventfd. */
        store(region, RTGT_OFF_CMD_SLEEPING, 1);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (load(region, RTGT_OFF_CMD_TAIL) == head) {
            struct pollfd p[2] = {{.fd = cmd_efd, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
            if (poll(p, 2, 1000) > 0) {
                if (p[1].revents)
                    break; /* rtgtd closed the connection */
                uint64_t n;
                if (read(cmd_efd, &n, sizeof n) < 0 && errno != EAGAIN)
                    perror("memdisk: eventfd");
            }
        }
        store(region, RTGT_OFF_CMD_SLEEPING, 0);
    }
    printf("memdisk: rtgtd closed the connection\n");
    return 0;
}
