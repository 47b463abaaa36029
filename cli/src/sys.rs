//! The crate's only `unsafe`: local time conversion through libc (upstream
//! prints times with `ctime()`/`strftime()` in the local time zone and std
//! has no time-zone support), and raw-socket sends for `ctdb tickle`
//! (forged TCP ACKs, which std cannot send).

/// Broken-down local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    pub year: i32,
    pub mon: i32,
    pub mday: i32,
    pub hour: i32,
    pub min: i32,
    pub sec: i32,
    pub wday: i32,
}

/// `localtime_r(t)`; `None` if libc cannot represent the time.
pub fn localtime(t: i64) -> Option<Tm> {
    let tt: libc::time_t = t as libc::time_t;
    // SAFETY: an all-zero `struct tm` is a valid value (integers and a
    // nullable pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly aligned locals;
    // localtime_r is the re-entrant variant and writes only into `tm`.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(Tm {
        year: tm.tm_year + 1900,
        mon: tm.tm_mon,
        mday: tm.tm_mday,
        hour: tm.tm_hour,
        min: tm.tm_min,
        sec: tm.tm_sec,
        wday: tm.tm_wday,
    })
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `ctime(t)`, including the trailing newline.
pub fn ctime(t: i64) -> String {
    match localtime(t) {
        Some(tm) => format!(
            "{} {} {:2} {:02}:{:02}:{:02} {}\n",
            DAYS[tm.wday.clamp(0, 6) as usize],
            MONTHS[tm.mon.clamp(0, 11) as usize],
            tm.mday,
            tm.hour,
            tm.min,
            tm.sec,
            tm.year
        ),
        // glibc's ctime returns NULL, which printf shows as "(null)".
        None => "(null)".to_string(),
    }
}

/// `strftime("%Y/%m/%d %H:%M:%S", localtime(t))`.
pub fn timestamp(t: i64) -> String {
    match localtime(t) {
        Some(tm) => format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            tm.year,
            tm.mon + 1,
            tm.mday,
            tm.hour,
            tm.min,
            tm.sec
        ),
        None => String::new(),
    }
}

/// Standard Internet checksum over `data` (big-endian 16-bit words).
fn csum(data: &[u8], mut sum: u32) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let r = !(sum as u16);
    if r == 0 {
        0xffff
    } else {
        r
    }
}

/// A 20-byte TCP header with only ACK set and window 1234, as upstream's
/// tickle packets; checksum over the given pseudo header.
fn tcp_ack_header(sport: u16, dport: u16, pseudo: &[u8]) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x10;
    t[14..16].copy_from_slice(&1234u16.to_be_bytes());
    let mut all = pseudo.to_vec();
    all.extend_from_slice(&t);
    let sum = csum(&all, 0);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// Builds the raw packet (IP header included) of a tickle ACK.
pub fn tickle_packet(
    src: std::net::IpAddr,
    sport: u16,
    dst: std::net::IpAddr,
    dport: u16,
) -> Option<Vec<u8>> {
    use std::net::IpAddr;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6, 0, 20]);
            let tcp = tcp_ack_header(sport, dport, &pseudo);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[8] = 255;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let mut p = ip.to_vec();
            p.extend_from_slice(&tcp);
            Some(p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&20u32.to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
            let tcp = tcp_ack_header(sport, dport, &pseudo);
            let mut ip = [0u8; 40];
            ip[0] = 6 << 4;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let mut p = ip.to_vec();
            p.extend_from_slice(&tcp);
            Some(p)
        }
        _ => None,
    }
}

/// Sends `packet` (IP header included) to `dst` on a raw socket.
pub fn send_raw(dst: std::net::IpAddr, packet: &[u8]) -> std::io::Result<()> {
    use std::io::Error;
    use std::net::IpAddr;
    let family = match dst {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    let result = (|| {
        match dst {
            IpAddr::V4(d) => {
                let one: libc::c_int = 1;
                // SAFETY: `fd` is our open socket; the option value points
                // to a live c_int of the size passed.
                let r = unsafe {
                    libc::setsockopt(
                        fd,
                        libc::IPPROTO_IP,
                        libc::IP_HDRINCL,
                        &one as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if r != 0 {
                    return Err(Error::last_os_error());
                }
                // SAFETY: all-zero is a valid sockaddr_in.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(d.octets());
                // SAFETY: buffer and address point to live memory of the
                // lengths passed; `fd` is our open socket.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        packet.as_ptr() as *const libc::c_void,
                        packet.len(),
                        0,
                        &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                if n < 0 {
                    return Err(Error::last_os_error());
                }
            }
            IpAddr::V6(d) => {
                // SAFETY: all-zero is a valid sockaddr_in6.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = d.octets();
                // SAFETY: as above, for the IPv6 address.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        packet.as_ptr() as *const libc::c_void,
                        packet.len(),
                        0,
                        &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                };
                if n < 0 {
                    return Err(Error::last_os_error());
                }
            }
        }
        Ok(())
    })();
    // SAFETY: closing the descriptor we opened above, exactly once.
    unsafe { libc::close(fd) };
    result
}

/// `strerror(errno)` text (std's message without its " (os error N)").
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_shape() {
        let s = ctime(0);
        assert_eq!(s.len(), 25, "{s:?}");
        assert!(s.ends_with('\n'));
        assert_eq!(timestamp(0).len(), 19);
    }

    #[test]
    fn tickle_checksums_verify() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let p = tickle_packet(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            445,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            40000,
        )
        .unwrap();
        assert_eq!(p.len(), 40);
        // Summing pseudo header + TCP segment including its checksum gives 0.
        let mut all = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 20];
        all.extend_from_slice(&p[20..]);
        assert_eq!(csum(&all, 0), 0xffff);
        let p6 = tickle_packet(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            1,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            2,
        )
        .unwrap();
        assert_eq!(p6.len(), 60);
        assert!(tickle_packet(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            2
        )
        .is_none());
    }
}
