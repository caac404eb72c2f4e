//! Runs the test suite's Apache Kafka (a single KRaft node from its Maven
//! jars, `foldline_testcontainers::broker`) outside the tests, for benches
//! and by hand: prints `bootstrap.servers=HOST:PORT` once it serves, and
//! runs until its standard input closes (or this process is killed; the
//! broker's watchdog stops it either way).

use std::io::{BufRead, Write};

fn main() -> anyhow::Result<()> {
    let broker = foldline_testcontainers::dedicated_broker()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "bootstrap.servers={}", broker.bootstrap_servers())?;
    writeln!(stdout, "log={}", broker.log_path().display())?;
    stdout.flush()?;
    drop(stdout);
    // Until end of input: the caller holds the pipe, closing it stops the broker.
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    broker.stop()
}
