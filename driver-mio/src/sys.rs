//! A connection's reads and writes, as bare syscalls on Linux, and how
//! much its socket holds unread.
//!
//! glibc's `recv` and `writev` (what std's `read` and `write_vectored` on a
//! socket call) are cancellation points: a process with more than one
//! thread pays two calls into pthread's async-cancel switch around each, some
//! 65 instructions per request of the keep-alive benchmark. A worker is
//! never cancelled, so it makes the syscalls through `syscall(2)`, which
//! is a plain trap. Elsewhere std's calls do.

use std::io::{self, IoSlice};

use mio::net::TcpStream;

/// Reads into `buf`, as `Read::read` would: the same `recvfrom` as glibc's
/// `recv`, so the syscalls a worker makes are the ones std's would be.
#[cfg(target_os = "linux")]
pub(crate) fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is writable for its length, no address is asked for,
    // and the descriptor is the stream's own, open while it is borrowed.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            stream.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    result(n)
}

/// Writes `slices` in one write, as `Write::write_vectored` would.
#[cfg(target_os = "linux")]
pub(crate) fn write_vectored(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: an `IoSlice` is an `iovec` (std guarantees the layout on
    // Unix), and the slices are readable for their lengths; the descriptor
    // is the stream's own, open while it is borrowed.
    let n = unsafe {
        libc::syscall(
            libc::SYS_writev,
            stream.as_raw_fd(),
            slices.as_ptr(),
            slices.len(),
        )
    };
    result(n)
}

/// A syscall's return: a count, or -1 with the error in `errno`.
#[cfg(target_os = "linux")]
fn result(n: libc::c_long) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    io::Read::read(&mut stream, buf)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn write_vectored(mut stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    io::Write::write_vectored(&mut stream, slices)
}

/// How many bytes the socket holds that have not been read (`FIONREAD`),
/// asked once per connection as the drain begins.
pub(crate) fn unread(stream: &TcpStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, to a live local;
    // the descriptor is the stream's own, open while it is borrowed.
    if unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut unread) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(unread).unwrap_or(0))
}
