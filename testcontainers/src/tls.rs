//! A throwaway PKI for HTTPS servers under test (the registry role), made
//! with the `openssl` CLI like the secured broker's: a CA, a server
//! certificate for 127.0.0.1 and localhost signed by it with an
//! unencrypted PKCS#8 key, and a second CA that signed nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::broker::run_to_end;
use crate::wait::Deadline;

/// The files of a server PKI.
#[derive(Debug, Clone)]
pub struct ServerPki {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the server presents.
    pub untrusted_ca: PathBuf,
    /// The server's certificate (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM, PKCS#8, unencrypted).
    pub key: PathBuf,
}

/// Makes a [`ServerPki`] in `directory` (created if missing).
pub fn server_pki(directory: &Path) -> anyhow::Result<ServerPki> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("create {}", directory.display()))?;
    let openssl = |args: &[&str]| openssl(directory, args);
    make_ca(directory, "ca.key", "ca.pem", "/CN=foldline-test-server-ca")?;
    make_ca(
        directory,
        "untrusted-ca.key",
        "untrusted-ca.pem",
        "/CN=foldline-untrusted-server-ca",
    )?;
    std::fs::write(
        directory.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .with_context(|| format!("write server.ext in {}", directory.display()))?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server-any.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    // PKCS#8 whatever the openssl version writes by default.
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "server-any.key",
        "-out",
        "server.key",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ])?;
    Ok(ServerPki {
        ca: directory.join("ca.pem"),
        untrusted_ca: directory.join("untrusted-ca.pem"),
        certificate: directory.join("server.pem"),
        key: directory.join("server.key"),
    })
}

/// Runs `openssl <args>` in `directory`, its output in `openssl.log`.
pub(crate) fn openssl(directory: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new("openssl");
    command.args(args).current_dir(directory);
    run_to_end(command, &directory.join("openssl.log"), Deadline::secs(30))
        .with_context(|| format!("run openssl {}", args.join(" ")))
}

/// A self-signed CA (`key`, `certificate`) in `directory`.
pub(crate) fn make_ca(
    directory: &Path,
    key: &str,
    certificate: &str,
    subject: &str,
) -> anyhow::Result<()> {
    openssl(
        directory,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            certificate,
            "-days",
            "3",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}
