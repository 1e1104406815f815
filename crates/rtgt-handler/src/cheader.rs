//! The C header `bindings/c/rtgt_handler.h`, generated from this crate's constants so
//! the two cannot drift: a test compares the committed file with [`header`] (set
//! `RTGT_UPDATE_HEADER=1` to rewrite it). Entries are described as packed structs with
//! static assertions on their sizes and field offsets; all integers are little-endian.

use std::fmt::Write;

use crate::layout::{self, cmd_flag, dir, op, tmf};
use crate::wire::{self, device_flag, feature, kind, notify};

/// The header's text.
pub fn header() -> String {
    let mut h = String::new();
    let mut def = |name: &str, v: String| {
        let _ = writeln!(h, "#define {name:<36} {v}");
    };
    def("RTGT_HANDLER_MAJOR", format!("{}", wire::MAJOR));
    def("RTGT_HANDLER_MINOR", format!("{}", wire::MINOR));
    def(
        "RTGT_HELLO_MAGIC",
        format!("{:?}", std::str::from_utf8(wire::HELLO_MAGIC).unwrap()),
    );
    def(
        "RTGT_ACCEPT_MAGIC",
        format!("{:?}", std::str::from_utf8(wire::ACCEPT_MAGIC).unwrap()),
    );
    def(
        "RTGT_NOTIFY_MAGIC",
        format!("{:?}", std::str::from_utf8(wire::NOTIFY_MAGIC).unwrap()),
    );
    def("RTGT_HELLO_SIZE", format!("{}", wire::HELLO_SIZE));
    def("RTGT_ACCEPT_SIZE", format!("{}", wire::ACCEPT_SIZE));
    def("RTGT_NOTIFY_SIZE", format!("{}", wire::NOTIFY_SIZE));
    def("RTGT_KIND_BLOCK", format!("{}u", kind::BLOCK));
    def("RTGT_KIND_SCSI", format!("{}u", kind::SCSI));
    for (n, v) in [
        ("FLUSH", feature::FLUSH),
        ("UNMAP", feature::UNMAP),
        ("WRITE_ZEROES", feature::WRITE_ZEROES),
        ("FUA", feature::FUA),
        ("SCSI_EXCEPT", feature::SCSI_EXCEPT),
        ("FREE_NOTIFY", feature::FREE_NOTIFY),
    ] {
        def(&format!("RTGT_FEATURE_{n}"), format!("{v:#x}ull"));
    }
    for (n, v) in [
        ("READ_ONLY", device_flag::READ_ONLY),
        ("WRITE_THROUGH", device_flag::WRITE_THROUGH),
        ("UNMAP_ZEROES", device_flag::UNMAP_ZEROES),
        ("OWN_RESERVATIONS", device_flag::OWN_RESERVATIONS),
    ] {
        def(&format!("RTGT_DEVICE_{n}"), format!("{v:#x}u"));
    }
    for code in 0..=wire::REJECT_KIND_MISMATCH {
        let n = match code {
            wire::ACCEPTED => "ACCEPTED",
            wire::REJECT_VERSION => "REJECT_VERSION",
            wire::REJECT_KIND => "REJECT_KIND",
            wire::REJECT_BLOCK_SIZE => "REJECT_BLOCK_SIZE",
            wire::REJECT_GEOMETRY => "REJECT_GEOMETRY",
            wire::REJECT_BUSY => "REJECT_BUSY",
            wire::REJECT_RESERVED => "REJECT_RESERVED",
            wire::REJECT_WRITE_CACHE => "REJECT_WRITE_CACHE",
            _ => "REJECT_KIND_MISMATCH",
        };
        def(&format!("RTGT_{n}"), format!("{code}u"));
    }
    def("RTGT_NOTIFY_CAPACITY", format!("{}u", notify::CAPACITY));
    def("RTGT_HEADER_SIZE", format!("{}", layout::HEADER_SIZE));
    for (n, v) in [
        ("CMD_TAIL", layout::CMD_TAIL),
        ("CMD_CPU", layout::CMD_CPU),
        ("CMD_HEAD", layout::CMD_HEAD),
        ("CMD_SLEEPING", layout::CMD_SLEEPING),
        ("CPL_TAIL", layout::CPL_TAIL),
        ("CPL_HEAD", layout::CPL_HEAD),
        ("CPL_SLEEPING", layout::CPL_SLEEPING),
    ] {
        def(&format!("RTGT_OFF_{n}"), format!("{v}"));
    }
    def("RTGT_CMD_ENTRY", format!("{}", layout::CMD_ENTRY));
    def("RTGT_CPL_ENTRY", format!("{}", layout::CPL_ENTRY));
    def("RTGT_PAGE", format!("{}", layout::PAGE));
    def("RTGT_MAX_CDB", format!("{}", layout::MAX_CDB));
    def("RTGT_MAX_SENSE", format!("{}", layout::MAX_SENSE));
    for (n, v) in [
        ("READ", op::READ),
        ("WRITE", op::WRITE),
        ("FLUSH", op::FLUSH),
        ("UNMAP", op::UNMAP),
        ("WRITE_ZEROES", op::WRITE_ZEROES),
        ("SCSI", op::SCSI),
        ("FREE", op::FREE),
        ("TASK_MGMT", op::TASK_MGMT),
    ] {
        def(&format!("RTGT_OP_{n}"), format!("{v}"));
    }
    def("RTGT_CMD_FLAG_FUA", format!("{}", cmd_flag::FUA));
    def("RTGT_CMD_FLAG_ABORTED", format!("{}", cmd_flag::ABORTED));
    def("RTGT_DIR_NONE", format!("{}", dir::NONE));
    def("RTGT_DIR_TO_HANDLER", format!("{}", dir::TO_HANDLER));
    def("RTGT_DIR_FROM_HANDLER", format!("{}", dir::FROM_HANDLER));
    def("RTGT_TMF_ABORT_TASK", format!("{}", tmf::ABORT_TASK));
    def("RTGT_TMF_LU_RESET", format!("{}", tmf::LU_RESET));
    let defines = h;
    format!(
        r#"/* rtgt device-handler protocol {major}.{minor}: C declarations.
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

{defines}
/* Queue region: header, command ring, completion ring, arena (page-aligned). */
#define RTGT_CMD_RING(depth)   ((size_t)RTGT_HEADER_SIZE)
#define RTGT_CPL_RING(depth)   ((size_t)RTGT_HEADER_SIZE + (size_t)(depth) * RTGT_CMD_ENTRY)
#define RTGT_ARENA(depth)      ((RTGT_CPL_RING(depth) + (size_t)(depth) * RTGT_CPL_ENTRY + RTGT_PAGE - 1) / RTGT_PAGE * RTGT_PAGE)

struct __attribute__((packed)) rtgt_hello {{
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
}};

struct __attribute__((packed)) rtgt_accept {{
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
}};

struct __attribute__((packed)) rtgt_notify {{
    char magic[4];
    uint32_t kind;
    uint64_t value;
}};

struct __attribute__((packed)) rtgt_cmd {{
    uint8_t op;
    uint8_t flags;
    uint8_t cdb_len;
    uint8_t dir;
    uint32_t tag;
    uint64_t offset;
    uint64_t len;
    uint64_t data;
    uint8_t cdb[RTGT_MAX_CDB];
}};

struct __attribute__((packed)) rtgt_cpl {{
    uint32_t tag;
    int32_t status;
    uint64_t bytes;
}};

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
"#,
        major = wire::MAJOR,
        minor = wire::MINOR,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = "../../bindings/c/rtgt_handler.h";

    #[test]
    fn committed_header_is_generated_from_the_crate() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
        let want = header();
        if std::env::var_os("RTGT_UPDATE_HEADER").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let got = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            got == want,
            "{} is not what src/cheader.rs generates: run RTGT_UPDATE_HEADER=1 cargo test -p rtgt-handler",
            path.display()
        );
    }
}
