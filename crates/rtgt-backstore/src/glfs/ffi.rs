//! The few functions of libgfapi (GlusterFS 11.1, `libgfapi.so.0`) the glfs store uses,
//! declared by hand from `glusterfs/api/glfs.h`. Since GlusterFS 6.0 the I/O calls and
//! their completion callback carry `struct glfs_stat` pointers (pre- and post-operation
//! attributes; NULL where the caller wants none) and are exported as `@GFAPI_6.0`, the
//! default version the linker binds to. Calls return 0 (or a byte count) on success and
//! -1 with `errno` set on failure; a completion callback gets the same `ret` and finds
//! the error in its own thread's `errno`.
//!
//! Linked by its soname (`+verbatim`), so only the run-time library (Debian's
//! `libgfapi0`) is needed to build, not the `-dev` package's `libgfapi.so` link.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// `glfs_t`: a virtual mount of one volume (opaque).
pub type glfs_t = c_void;
/// `glfs_fd_t`: an open file on it (opaque).
pub type glfs_fd_t = c_void;
/// `struct glfs_stat` (opaque here: always passed as NULL or ignored).
pub type glfs_stat = c_void;

/// `glfs_io_cbk`: called on a gfapi thread when an `_async` call completes, with the
/// return value the synchronous call would have had.
pub type glfs_io_cbk = extern "C" fn(
    fd: *mut glfs_fd_t,
    ret: isize,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
    data: *mut c_void,
);

#[link(name = "libgfapi.so.0", kind = "dylib", modifiers = "+verbatim")]
extern "C" {
    pub fn glfs_new(volname: *const c_char) -> *mut glfs_t;
    pub fn glfs_set_volfile_server(
        fs: *mut glfs_t,
        transport: *const c_char,
        host: *const c_char,
        port: c_int,
    ) -> c_int;
    pub fn glfs_set_logging(fs: *mut glfs_t, logfile: *const c_char, loglevel: c_int) -> c_int;
    pub fn glfs_set_xlator_option(
        fs: *mut glfs_t,
        xlator: *const c_char,
        key: *const c_char,
        value: *const c_char,
    ) -> c_int;
    pub fn glfs_init(fs: *mut glfs_t) -> c_int;
    pub fn glfs_fini(fs: *mut glfs_t) -> c_int;
    pub fn glfs_open(fs: *mut glfs_t, path: *const c_char, flags: c_int) -> *mut glfs_fd_t;
    pub fn glfs_close(fd: *mut glfs_fd_t) -> c_int;
    pub fn glfs_fstat(fd: *mut glfs_fd_t, buf: *mut libc::stat) -> c_int;
    pub fn glfs_lseek(fd: *mut glfs_fd_t, offset: libc::off_t, whence: c_int) -> libc::off_t;
    pub fn glfs_pread_async(
        fd: *mut glfs_fd_t,
        buf: *mut c_void,
        count: usize,
        offset: libc::off_t,
        flags: c_int,
        cbk: glfs_io_cbk,
        data: *mut c_void,
    ) -> c_int;
    /// `count` is an int in this one call (glfs.h): at most 2 GiB - 1 per write.
    pub fn glfs_pwrite_async(
        fd: *mut glfs_fd_t,
        buf: *const c_void,
        count: c_int,
        offset: libc::off_t,
        flags: c_int,
        cbk: glfs_io_cbk,
        data: *mut c_void,
    ) -> c_int;
    pub fn glfs_fdatasync_async(fd: *mut glfs_fd_t, cbk: glfs_io_cbk, data: *mut c_void) -> c_int;
    pub fn glfs_discard_async(
        fd: *mut glfs_fd_t,
        offset: libc::off_t,
        len: usize,
        cbk: glfs_io_cbk,
        data: *mut c_void,
    ) -> c_int;
    pub fn glfs_zerofill_async(
        fd: *mut glfs_fd_t,
        offset: libc::off_t,
        len: libc::off_t,
        cbk: glfs_io_cbk,
        data: *mut c_void,
    ) -> c_int;
}
