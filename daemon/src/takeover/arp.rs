//! Announcing an address after a takeover (upstream's
//! `ctdb_announce_vnn_iface` / `ctdb_sys_send_arp`): a gratuitous ARP for
//! IPv4, an unsolicited neighbour advertisement for IPv6, sent
//! `CTDB_ARP_REPEAT` times a second apart, with tickle ACKs for the
//! address's known TCP connections.
//!
//! Why only outside test mode: upstream sends none with
//! `CTDB_TEST_MODE` (`do_checkpublicip` false) and skips loopback
//! interfaces, so test clusters on 127.x never see one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::time::Duration;

use ctdb_protocol::types::Connection;

use crate::state::Daemon;

/// How many announcements (upstream's CTDB_ARP_REPEAT).
pub const ARP_REPEAT: u32 = 3;

/// Sends the announcements in the background. `vnn`: stop once that
/// public address is no longer on an interface here (released meanwhile).
pub fn spawn_announce(
    d: &Rc<Daemon>,
    addr: IpAddr,
    iface: String,
    tickles: Vec<Connection>,
    vnn: Option<IpAddr>,
) {
    let d = d.clone();
    glommio::spawn_local(async move {
        for n in 0..ARP_REPEAT {
            if let Some(v) = vnn {
                let t = d.takeover.table.borrow();
                let held = t.find(&v).is_some_and(|i| t.vnns[i].iface.is_some());
                if !held {
                    tracing::info!("Cancelling ARP send for released IP {v}");
                    return;
                }
            }
            if let Err(e) = send_arp(addr, &iface) {
                tracing::error!("Failed to send ARP on interface {iface}: {e}");
            }
            for c in &tickles {
                tracing::info!(
                    "Send TCP tickle ACK: {}",
                    c.to_text(false).unwrap_or_else(|| "UNKNOWN".into())
                );
                if let Err(e) = send_tickle_ack(c) {
                    tracing::error!("Failed to send TCP tickle ACK: {e}");
                }
            }
            if n + 1 < ARP_REPEAT {
                glommio::timer::sleep(Duration::from_millis(1100)).await;
            }
        }
    })
    .detach();
}

/// `ARPHRD_ETHER` and `ARPHRD_LOOPBACK`.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// One gratuitous ARP (request, then unsolicited reply) or neighbour
/// advertisement for `addr` on `iface`; nothing on a loopback interface.
pub fn send_arp(addr: IpAddr, iface: &str) -> std::io::Result<()> {
    let (index, hwtype, mac) = crate::sys::iface_hw(iface)
        .map_err(|e| std::io::Error::new(e.kind(), format!("interface '{iface}': {e}")))?;
    if hwtype == ARPHRD_LOOPBACK {
        tracing::debug!("Ignoring loopback arp request");
        return Ok(());
    }
    if hwtype != ARPHRD_ETHER {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("Not an ethernet address family (0x{hwtype:x})"),
        ));
    }
    match addr {
        IpAddr::V4(a) => {
            crate::sys::packet_send(index, [0xff; 6], &arp_frame(a, mac, false))?;
            crate::sys::packet_send(index, [0xff; 6], &arp_frame(a, mac, true))
        }
        IpAddr::V6(a) => {
            let dst = [0x33, 0x33, 0, 0, 0, 1];
            crate::sys::packet_send(index, dst, &na_frame(a, mac))
        }
    }
}

/// A gratuitous ARP frame (upstream's `arp_build`): request or reply for
/// `ip` from `mac`, to the broadcast address, padded to 64 bytes.
pub fn arp_frame(ip: Ipv4Addr, mac: [u8; 6], reply: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f.push(6);
    f.push(4);
    f.extend_from_slice(&(if reply { 2u16 } else { 1u16 }).to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&if reply { mac } else { [0; 6] });
    f.extend_from_slice(&ip.octets());
    f.resize(64, 0);
    f
}

/// Ones' complement sum of 16-bit big-endian words.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += u32::from(w);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An unsolicited neighbour advertisement (override flag, target
/// link-layer address option) to all nodes (upstream's `ip6_na_build`).
pub fn na_frame(ip: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136u8, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 octets
    icmp.extend_from_slice(&mac);
    let mut acc = sum16(&ip.octets(), 0);
    acc = sum16(&all_nodes.octets(), acc);
    acc += icmp.len() as u32 + 58;
    let ck = fold(sum16(&icmp, acc));
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    let mut f = Vec::with_capacity(86);
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(58); // ICMPv6
    f.push(255);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

/// A tickle ACK (upstream's `ctdb_sys_send_tcp(client, server, 0, 0, 0)`):
/// an ACK with sequence 0 from the public address to the client, whose
/// answer the new host resets. `None` for mixed address families.
pub fn tickle_packet(c: &Connection) -> Option<(IpAddr, Vec<u8>)> {
    let (server, client) = (c.dst.ip()?, c.src.ip()?);
    let (sport, dport) = (c.dst.port(), c.src.port());
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes()); // seq
    tcp.extend_from_slice(&0u32.to_be_bytes()); // ack
    tcp.push(5 << 4);
    tcp.push(0x10); // ACK
    tcp.extend_from_slice(&1234u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    match (server, client) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut acc = sum16(&s.octets(), 0);
            acc = sum16(&d.octets(), acc);
            acc += 6 + tcp.len() as u32;
            let ck = fold(sum16(&tcp, acc));
            tcp[16..18].copy_from_slice(&ck.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 0, 255, 6, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let ck = fold(sum16(&ip, 0));
            ip[10..12].copy_from_slice(&ck.to_be_bytes());
            ip.extend_from_slice(&tcp);
            Some((client, ip))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut acc = sum16(&s.octets(), 0);
            acc = sum16(&d.octets(), acc);
            acc += 6 + tcp.len() as u32;
            let ck = fold(sum16(&tcp, acc));
            tcp[16..18].copy_from_slice(&ck.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            ip.push(6);
            ip.push(64);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend_from_slice(&tcp);
            Some((client, ip))
        }
        _ => None,
    }
}

/// One tickle ACK for a connection to an address taken over.
pub fn send_tickle_ack(c: &Connection) -> std::io::Result<()> {
    let (dst, pkt) = tickle_packet(c).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "mixed address families")
    })?;
    crate::sys::raw_ip_send(dst, &pkt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctdb_protocol::types::SockAddr;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    #[test]
    fn arp_request_and_reply() {
        let ip = Ipv4Addr::new(10, 1, 2, 3);
        let q = arp_frame(ip, MAC, false);
        assert_eq!(q.len(), 64);
        assert_eq!(&q[12..14], &[0x08, 0x06]);
        assert_eq!(&q[20..22], &[0, 1]);
        assert_eq!(&q[28..32], &ip.octets());
        assert_eq!(&q[32..38], &[0; 6]);
        assert_eq!(&q[38..42], &ip.octets());
        let r = arp_frame(ip, MAC, true);
        assert_eq!(&r[20..22], &[0, 2]);
        assert_eq!(&r[32..38], &MAC);
    }

    #[test]
    fn advertisement_checksum_verifies() {
        let ip: Ipv6Addr = "fd00::5".parse().unwrap();
        let f = na_frame(ip, MAC);
        assert_eq!(f.len(), 86);
        let icmp = &f[54..];
        let mut acc = sum16(&f[22..38], 0);
        acc = sum16(&f[38..54], acc);
        acc += icmp.len() as u32 + 58;
        assert_eq!(fold(sum16(icmp, acc)), 0, "checksum over the packet is 0");
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0x20, "override flag");
    }

    #[test]
    fn tickle_goes_from_the_public_address_to_the_client() {
        let c = Connection {
            src: SockAddr::parse_with_port("192.168.7.9:40000").unwrap(),
            dst: SockAddr::parse_with_port("10.0.0.1:445").unwrap(),
        };
        let (to, p) = tickle_packet(&c).unwrap();
        assert_eq!(to.to_string(), "192.168.7.9");
        assert_eq!(p.len(), 40);
        assert_eq!(fold(sum16(&p[..20], 0)), 0, "IP header checksum");
        assert_eq!(&p[12..16], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), 445);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 40000);
        let mut acc = sum16(&p[12..16], 0);
        acc = sum16(&p[16..20], acc);
        acc += 6 + 20;
        assert_eq!(fold(sum16(&p[20..], acc)), 0, "TCP checksum");
        assert_eq!(p[33], 0x10, "ACK");
    }

    #[test]
    fn loopback_is_skipped_and_unknown_interfaces_fail() {
        assert!(send_arp("127.0.0.1".parse().unwrap(), "lo").is_ok());
        let e = send_arp("10.0.0.1".parse().unwrap(), "nosuchif0").unwrap_err();
        assert!(e.to_string().contains("nosuchif0"), "{e}");
    }
}
