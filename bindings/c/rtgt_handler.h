/* rtgt device-handler protocol 1.2: C declarations.
 * GENERATED from the Rust crate rtgt-handler (src/cheader.rs); do not edit.
 * A test compares this file with the generator: RTGT_UPDATE_HEADER=1 cargo test -p
 * rtgt-handler rewrites it. The protocol is described in docs/handler-protocol.md.
 * All integers are little-endian; ring indices are free-running uint32_t counters,
 * entry i at i % depth; load the other side's index with acquire semantics and store
 * yours with release semantics after writing the entries it publishes. */
#ifndef RTGT_HANDLER_H
#define RTGT_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#define RTGT_HANDLER_MAJOR                   1
#define RTGT_HANDLER_MINOR                   2
#define RTGT_HELLO_MAGIC                     "RTGTHELO"
#define RTGT_ACCEPT_MAGIC                    "RTGTACPT"
#define RTGT_NOTIFY_MAGIC                    "RTGN"
#define RTGT_HELLO_SIZE                      128
#define RTGT_ACCEPT_SIZE                     64
#define RTGT_NOTIFY_SIZE                     16
#define RTGT_KIND_BLOCK                      1u
#define RTGT_KIND_SCSI                       2u
#define RTGT_FEATURE_FLUSH                   0x1ull
#define RTGT_FEATURE_UNMAP                   0x2ull
#define RTGT_FEATURE_WRITE_ZEROES            0x4ull
#define RTGT_FEATURE_FUA                     0x8ull
#define RTGT_FEATURE_SCSI_EXCEPT             0x10ull
#define RTGT_FEATURE_FREE_NOTIFY             0x20ull
#define RTGT_DEVICE_READ_ONLY                0x1u
#define RTGT_DEVICE_WRITE_THROUGH            0x2u
#define RTGT_DEVICE_UNMAP_ZEROES             0x4u
#define RTGT_DEVICE_OWN_RESERVATIONS         0x8u
#define RTGT_ACCEPTED                        0u
#define RTGT_REJECT_VERSION                  1u
#define RTGT_REJECT_KIND                     2u
#define RTGT_REJECT_BLOCK_SIZE               3u
#define RTGT_REJECT_GEOMETRY                 4u
#define RTGT_REJECT_BUSY                     5u
#define RTGT_REJECT_RESERVED                 6u
#define RTGT_REJECT_WRITE_CACHE              7u
#define RTGT_REJECT_KIND_MISMATCH            8u
#define RTGT_NOTIFY_CAPACITY                 1u
#define RTGT_HEADER_SIZE                     512
#define RTGT_OFF_CMD_TAIL                    64
#define RTGT_OFF_CMD_CPU                     68
#define RTGT_OFF_CMD_HEAD                    128
#define RTGT_OFF_CMD_SLEEPING                132
#define RTGT_OFF_CPL_TAIL                    192
#define RTGT_OFF_CPL_HEAD                    256
#define RTGT_OFF_CPL_SLEEPING                260
#define RTGT_CMD_ENTRY                       64
#define RTGT_CPL_ENTRY                       16
#define RTGT_PAGE                            4096
#define RTGT_MAX_CDB                         32
#define RTGT_MAX_SENSE                       252
#define RTGT_OP_READ                         1
#define RTGT_OP_WRITE                        2
#define RTGT_OP_FLUSH                        3
#define RTGT_OP_UNMAP                        4
#define RTGT_OP_WRITE_ZEROES                 5
#define RTGT_OP_SCSI                         6
#define RTGT_OP_FREE                         7
#define RTGT_OP_TASK_MGMT                    8
#define RTGT_CMD_FLAG_FUA                    1
#define RTGT_CMD_FLAG_ABORTED                2
#define RTGT_DIR_NONE                        0
#define RTGT_DIR_TO_HANDLER                  1
#define RTGT_DIR_FROM_HANDLER                2
#define RTGT_TMF_ABORT_TASK                  1
#define RTGT_TMF_LU_RESET                    2

/* Queue region: header, command ring, completion ring, arena (page-aligned). */
#define RTGT_CMD_RING(depth)   ((size_t)RTGT_HEADER_SIZE)
#define RTGT_CPL_RING(depth)   ((size_t)RTGT_HEADER_SIZE + (size_t)(depth) * RTGT_CMD_ENTRY)
#define RTGT_ARENA(depth)      ((RTGT_CPL_RING(depth) + (size_t)(depth) * RTGT_CPL_ENTRY + RTGT_PAGE - 1) / RTGT_PAGE * RTGT_PAGE)

struct __attribute__((packed)) rtgt_hello {
    char magic[8];
    uint16_t major, minor;
    uint32_t kind;
    uint64_t features;
    uint64_t capacity;
    uint32_t block_size;
    uint32_t queues;
    uint32_t depth;
    uint32_t flags;
    uint32_t max_xfer;
    uint8_t reserved[12];
    char name[64];
};

struct __attribute__((packed)) rtgt_accept {
    char magic[8];
    uint16_t major, minor;
    uint32_t status;
    uint64_t features;
    uint32_t queues;
    uint32_t depth;
    uint32_t slot_size;
    uint32_t generation;
    uint64_t region_size;
    uint8_t reserved[16];
};

struct __attribute__((packed)) rtgt_notify {
    char magic[4];
    uint32_t kind;
    uint64_t value;
};

struct __attribute__((packed)) rtgt_cmd {
    uint8_t op;
    uint8_t flags;
    uint8_t cdb_len;
    uint8_t dir;
    uint32_t tag;
    uint64_t offset;
    uint64_t len;
    uint64_t data;
    uint8_t cdb[RTGT_MAX_CDB];
};

struct __attribute__((packed)) rtgt_cpl {
    uint32_t tag;
    int32_t status;
    uint64_t bytes;
};

_Static_assert(sizeof(struct rtgt_hello) == RTGT_HELLO_SIZE, "HELLO size");
_Static_assert(offsetof(struct rtgt_hello, kind) == 12, "HELLO kind");
_Static_assert(offsetof(struct rtgt_hello, capacity) == 24, "HELLO capacity");
_Static_assert(offsetof(struct rtgt_hello, max_xfer) == 48, "HELLO max_xfer");
_Static_assert(offsetof(struct rtgt_hello, name) == 64, "HELLO name");
_Static_assert(sizeof(struct rtgt_accept) == RTGT_ACCEPT_SIZE, "ACCEPT size");
_Static_assert(offsetof(struct rtgt_accept, slot_size) == 32, "ACCEPT slot_size");
_Static_assert(offsetof(struct rtgt_accept, region_size) == 40, "ACCEPT region_size");
_Static_assert(sizeof(struct rtgt_notify) == RTGT_NOTIFY_SIZE, "NOTIFY size");
_Static_assert(sizeof(struct rtgt_cmd) == RTGT_CMD_ENTRY, "command entry size");
_Static_assert(offsetof(struct rtgt_cmd, tag) == 4, "command tag");
_Static_assert(offsetof(struct rtgt_cmd, data) == 24, "command data");
_Static_assert(offsetof(struct rtgt_cmd, cdb) == 32, "command cdb");
_Static_assert(sizeof(struct rtgt_cpl) == RTGT_CPL_ENTRY, "completion entry size");

#endif /* RTGT_HANDLER_H */
