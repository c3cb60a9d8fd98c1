//! When the kernel received each datagram (socket(7) SO_TIMESTAMPNS), so
//! the SIP side can tell how long a request waited before the peer read
//! it: the queue age its load shedding decides on (`sip::overload`).
//! tokio's `UdpSocket` reads datagrams without their control messages,
//! so the read itself is `recvmsg(2)` on the socket's descriptor, inside
//! tokio's readiness handling.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel to stamp every datagram `socket` receives.
pub fn enable(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `on`.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram into `buf`: its length, its source, and when the kernel
/// received it (`None` when it carried no stamp).
pub async fn recv_from(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    socket
        .async_io(Interest::READABLE, || recvmsg(socket.as_raw_fd(), buf))
        .await
}

fn recvmsg(fd: libc::c_int, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    // SAFETY: socket2 hands over storage for any socket address and its
    // length; recvmsg writes at most that much there and sets the length.
    let ((n, stamp), from) = unsafe {
        socket2::SockAddr::try_init(|source, length| {
            // Room for one cmsghdr carrying a timespec, aligned as cmsghdr wants.
            let mut control = [0u64; 8];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // All-zero bytes are a valid msghdr.
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = source.cast();
            msg.msg_namelen = *length;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 8]>() as _;
            // Every pointer in `msg` points at live buffers of the sizes
            // given, which outlive the call.
            let n = libc::recvmsg(fd, &mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *length = msg.msg_namelen;
            // The CMSG_* macros walk the control buffer the kernel filled,
            // within `msg_controllen`; a timestamp message holds one timespec.
            let mut stamp = None;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    stamp = UNIX_EPOCH.checked_add(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            Ok((n as usize, stamp))
        })?
    };
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    Ok((n, from, stamp))
}

/// How long ago `stamp` was, in ms; `None` when the clock disagrees (it
/// stepped back, or forward by more than a minute).
pub fn age_ms(stamp: Option<SystemTime>, now: SystemTime) -> Option<u64> {
    let age = now.duration_since(stamp?).ok()?;
    (age < Duration::from_secs(60)).then_some(age.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_comes_with_its_source_and_a_recent_stamp() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable(&socket).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sender.send_to(b"hello", socket.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from, stamp) = recv_from(&socket, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, sender.local_addr().unwrap());
        let age = age_ms(stamp, SystemTime::now()).expect("stamped");
        assert!(age < 1_000, "{age} ms");
    }

    #[test]
    fn ages_across_a_clock_step_are_unknown() {
        let now = SystemTime::now();
        assert_eq!(age_ms(Some(now - Duration::from_millis(30)), now), Some(30));
        assert_eq!(age_ms(Some(now + Duration::from_secs(1)), now), None);
        assert_eq!(age_ms(Some(now - Duration::from_secs(120)), now), None);
        assert_eq!(age_ms(None, now), None);
    }
}
