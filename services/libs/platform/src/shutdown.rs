//! The stop signal: one sender, any number of watchers.

use tokio::sync::watch;

/// Cloneable; resolves `wait` once the process is asked to stop.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// Held by whoever decides to stop (the binary's signal handler, a test).
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger { sender }, Shutdown { receiver })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    pub async fn wait(mut self) {
        // A dropped trigger also means stop: nobody can ask any more.
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}
