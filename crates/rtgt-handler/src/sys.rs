//! Thin wrappers over the system calls the protocol uses: memfd with seals, eventfd,
//! SCM_RIGHTS, SO_PEERCRED, poll. Linux only, libc only.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A memfd of `size` bytes, sealed so neither side can shrink or grow it (a shrunk
/// file would SIGBUS rtgtd on access) nor change the seals.
pub fn sealed_memfd(name: &str, size: u64) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a valid C string; the flags are constants.
    let fd = cvt(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: memfd_create returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// The seals on a memfd (the handler may check them).
pub fn seals(fd: RawFd) -> io::Result<i32> {
    cvt(unsafe { libc::fcntl(fd, libc::F_GET_SEALS) })
}

/// A close-on-exec eventfd, blocking or not.
pub fn eventfd(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::EFD_CLOEXEC;
    if nonblocking {
        flags |= libc::EFD_NONBLOCK;
    }
    let fd = cvt(unsafe { libc::eventfd(0, flags) })?;
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd (wakes its reader).
pub fn kick(fd: RawFd) {
    let one: u64 = 1;
    // A full counter (EAGAIN) still leaves the reader woken; nothing else can fail.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Binds the calling thread to one CPU (sched_setaffinity).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it (checked).
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads an eventfd's counter (blocks on a blocking one until it is non-zero).
pub fn drain(fd: RawFd) -> io::Result<u64> {
    let mut v: u64 = 0;
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if r == 8 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits up to `timeout_ms` (-1: forever) for `fds` to be readable; returns which are
/// (hang-up and errors count as readable, so the caller's read sees them).
pub fn poll_read(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(p.iter().map(|x| x.revents != 0).collect());
    }
}

/// A shared read-write mapping of `len` bytes of `fd`.
pub fn map_shared(fd: RawFd, len: usize) -> io::Result<*mut u8> {
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

/// Sends `data` with `fds` attached (SCM_RIGHTS) on a connected Unix socket.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let fd_bytes = std::mem::size_of_val(fds);
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is CMSG_SPACE bytes for `fds`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), fd_bytes);
        }
    }
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short sendmsg"));
    }
    Ok(())
}

/// Receives exactly `buf.len()` bytes and up to `max_fds` descriptors sent with them.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], max_fds: usize) -> io::Result<Vec<OwnedFd>> {
    let space = unsafe { libc::CMSG_SPACE((max_fds * 4) as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8).max(1)];
    let mut fds = Vec::new();
    let mut got = 0;
    while got < buf.len() {
        let mut iov = libc::iovec {
            iov_base: buf[got..].as_mut_ptr().cast(),
            iov_len: buf.len() - got,
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        got += n as usize;
        // SAFETY: walking the control messages the kernel wrote into our buffer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                    for i in 0..len / 4 {
                        let mut fd: RawFd = 0;
                        std::ptr::copy_nonoverlapping(
                            data.add(i * 4),
                            (&mut fd as *mut RawFd).cast(),
                            4,
                        );
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
    }
    Ok(fds)
}

/// The peer of a connected Unix socket: (pid, uid, gid), from SO_PEERCRED.
pub fn peer_cred(sock: RawFd) -> io::Result<(i32, u32, u32)> {
    let mut c: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((c.pid, c.uid, c.gid))
}

/// This process's effective uid.
pub fn euid() -> u32 {
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn fds_travel_and_memfd_is_sealed() {
        let (a, b) = UnixStream::pair().unwrap();
        let m = sealed_memfd("t", 8192).unwrap();
        let e = eventfd(false).unwrap();
        send_with_fds(a.as_raw_fd(), b"hi", &[m.as_raw_fd(), e.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 2];
        let fds = recv_with_fds(b.as_raw_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf, b"hi");
        assert_eq!(fds.len(), 2);
        let s = seals(fds[0].as_raw_fd()).unwrap();
        assert_eq!(
            s & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL
        );
        // A sealed memfd cannot shrink.
        assert!(unsafe { libc::ftruncate(fds[0].as_raw_fd(), 0) } < 0);
        kick(fds[1].as_raw_fd());
        assert_eq!(drain(e.as_raw_fd()).unwrap(), 1);
        let (pid, uid, _) = peer_cred(a.as_raw_fd()).unwrap();
        assert_eq!(pid as u32, std::process::id());
        assert_eq!(uid, euid());
    }
}
