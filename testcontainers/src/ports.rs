//! Free loopback ports.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::Context;

/// Ports this process already handed out: never hand one out twice, even
/// when the first user has not bound it yet.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port nobody listens on right now. The caller binds it soon
/// after; another process could take it in between, which on a test machine
/// is rare enough (and shows as a clear bind error in the process log).
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .context("cannot bind an ephemeral loopback port")?;
        let port = listener
            .local_addr()
            .context("cannot read the bound address")?
            .port();
        drop(listener);
        let mut handed_out = HANDED_OUT
            .lock()
            .map_err(|_| anyhow::anyhow!("the port registry is poisoned"))?;
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port found after 100 attempts")
}
