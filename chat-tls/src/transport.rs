//! The TLS transport: everything `chat-tls` adds to `chat-plain`.
//!
//! - STARTTLS (RFC 6120 5) on the main port: the stream starts in plaintext
//!   and both sides switch to TLS after `<proceed/>`. With `--starttls
//!   required` (the default on both sides) nothing sensitive is ever sent
//!   before TLS: the server offers no SASL mechanism before it, and the
//!   client stops if STARTTLS is missing, which defeats STARTTLS stripping.
//! - Direct TLS (XEP-0368) on a second port: TLS from the first byte, so
//!   there is no plaintext phase to strip at all.
//! - The client checks the certificate chain against `--ca` (or the system
//!   roots) and the domain, which defeats a man in the middle with his own
//!   certificate; `--pin` also defeats one with a certificate from a CA the
//!   client trusts.
//! - Only TLS 1.3 and 1.2, with rustls's modern cipher suites: no
//!   downgrade to SSL 3, TLS 1.0 or 1.1, nor to export or RC4 suites.
//! - `SSLKEYLOGFILE` writes the session secrets for Wireshark (NSS key log
//!   format). That hands the decryption keys to whoever reads the file: for
//!   the labs only, and announced at start-up.

mod binding;
mod certs;
mod verify;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chat_core::cli::{ServerArgs, Twin, UploadTransport, run_server};
use chat_core::transport::{
    BoxStream, ClientTransport, Security, ServerTransport, StartTls, TlsInfo, TransportError,
    Trust, WebConnector, WebFuture, tcp_connect,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{KeyLog, KeyLogFile, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The TLS twin's transport.
pub struct Transport;

/// The server's STARTTLS policy.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ServerStartTls {
    /// No authentication before TLS (the stream features say so).
    Required,
    /// Offered; a client may go on without it (deliberately weak: a man in
    /// the middle can strip it).
    Optional,
}

/// The client's STARTTLS policy.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ClientStartTls {
    /// Stop unless the server offers STARTTLS.
    Required,
    /// Use it when offered, continue in plaintext otherwise (deliberately
    /// weak: this is what STARTTLS stripping exploits).
    Opportunistic,
}

/// `server` flags of the TLS twin.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerFlags {
    /// The server's certificate chain (PEM), e.g. from `chat-tls certs`.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// STARTTLS on the --listen port.
    #[arg(long, value_enum, default_value = "required")]
    pub starttls: ServerStartTls,
    /// Also serve direct TLS (XEP-0368) on this address.
    #[arg(long, value_name = "ADDR")]
    pub direct_tls: Option<SocketAddr>,
    /// Speak only this TLS version (repeat for both, the default). The
    /// labs give each student's server its own.
    #[arg(long = "tls-version", value_enum, value_name = "VERSION")]
    pub tls_versions: Vec<TlsVersion>,
    /// Offer only these cipher suites, by IANA name (repeatable), e.g.
    /// TLS_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256.
    /// Every suite offered is an AEAD with forward secrecy either way.
    #[arg(long = "cipher", value_name = "SUITE")]
    pub ciphers: Vec<String>,
}

/// A TLS version the server may be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[value(name = "1.3")]
    Tls13,
}

/// `client` flags of the TLS twin.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientFlags {
    /// CA certificate(s) to trust (PEM), e.g. the lab's ca.pem; without it,
    /// the system's trusted roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Connect with direct TLS (XEP-0368) instead of STARTTLS.
    #[arg(long)]
    pub direct_tls: bool,
    /// Whether STARTTLS is mandatory.
    #[arg(long, value_enum, default_value = "required")]
    pub starttls: ClientStartTls,
    /// Accept any certificate. Deliberately weak: anyone in the middle can
    /// then impersonate the server.
    #[arg(long)]
    pub insecure: bool,
    /// Only accept a server whose public key has this SHA-256
    /// (`sha256:BASE64`, printed by `chat-tls certs`).
    #[arg(long, value_name = "sha256:BASE64")]
    pub pin: Option<String>,
}

/// Subcommands of the TLS twin.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Commands {
    /// Create a lab CA and a server certificate signed by it.
    Certs(certs::CertsArgs),
}

impl Twin for Transport {
    const ABOUT: &'static str =
        "The chat over TLS: STARTTLS and direct TLS, verified certificates, pinning.";
    type ServerFlags = ServerFlags;
    type ClientFlags = ClientFlags;
    type Commands = Commands;

    async fn server(name: &str, args: ServerArgs, flags: ServerFlags) -> anyhow::Result<u8> {
        let (Some(cert), Some(key)) = (&flags.cert, &flags.key) else {
            anyhow::bail!(
                "the TLS server needs --cert and --key (make a lab pair with `{name} certs --out DIR`)"
            );
        };
        let (config, leaf) = server_config(name, cert, key, &flags)?;
        let config = Arc::new(config);
        // The server's own certificate does not change: hashed once.
        let end_point = binding::server_end_point(leaf.as_ref());
        let mode = match flags.starttls {
            ServerStartTls::Required => StartTls::Required,
            ServerStartTls::Optional => {
                eprintln!(
                    "{name} server: warning: --starttls optional: clients may sign in without TLS, and a man in the middle can strip STARTTLS"
                );
                StartTls::Optional
            }
        };
        let starttls = TlsServer {
            acceptor: TlsAcceptor::from(config.clone()),
            mode,
            direct: false,
            end_point: end_point.clone(),
        };
        let direct_tls = || TlsServer {
            acceptor: TlsAcceptor::from(config.clone()),
            mode: StartTls::Unavailable,
            direct: true,
            end_point: end_point.clone(),
        };
        let direct = flags.direct_tls.map(|addr| (addr, direct_tls()));
        // HTTPS for file upload: TLS from the first byte, as direct TLS,
        // with the same certificate.
        let upload = UploadTransport {
            transport: direct_tls(),
            https: true,
        };
        let note = match flags.starttls {
            ServerStartTls::Required => "STARTTLS required, TLS 1.2/1.3",
            ServerStartTls::Optional => "STARTTLS optional, TLS 1.2/1.3",
        };
        run_server(name, &args, starttls, direct, upload, note).await
    }

    type Client = TlsClient;

    fn client_transport(name: &str, flags: ClientFlags) -> anyhow::Result<TlsClient> {
        tls_client(name, &flags)
    }

    fn command(_name: &str, command: Commands) -> anyhow::Result<u8> {
        match command {
            Commands::Certs(a) => certs::run(&a),
        }
    }
}

/// The one crypto provider of the workspace (ring).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A cipher suite's IANA name (`TLS_AES_128_GCM_SHA256`), as the sniffer
/// and Wireshark print it.
fn suite_name(s: &rustls::SupportedCipherSuite) -> String {
    // rustls's own names for TLS 1.3 suites start `TLS13_`.
    format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1)
}

/// What a finished handshake negotiated, for the user to see.
fn tls_info<D>(
    conn: &rustls::ConnectionCommon<D>,
    bindings: Vec<protocol::sasl::ChannelBinding>,
    trust: Option<Trust>,
) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    TlsInfo {
        bindings,
        version,
        suite: conn
            .negotiated_cipher_suite()
            .map(|s| suite_name(&s))
            .unwrap_or_default(),
        trust,
    }
}

/// TLS 1.3 and 1.2 only.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The key log for `SSLKEYLOGFILE`, announced when it is set.
fn key_log(name: &str, side: &str) -> Arc<dyn KeyLog> {
    match std::env::var_os("SSLKEYLOGFILE") {
        Some(path) if !path.is_empty() => {
            eprintln!(
                "{name} {side}: SSLKEYLOGFILE is set: TLS session secrets are written to {} (anyone with that file can decrypt captures of this {side})",
                Path::new(&path).display()
            );
            Arc::new(KeyLogFile::new())
        }
        _ => Arc::new(rustls::NoKeyLog),
    }
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The server's TLS configuration, and its own certificate (what
/// `tls-server-end-point` hashes).
fn server_config(
    name: &str,
    cert: &Path,
    key: &Path,
    flags: &ServerFlags,
) -> anyhow::Result<(rustls::ServerConfig, CertificateDer<'static>)> {
    let chain = load_certs(cert)?;
    let leaf = chain[0].clone();
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let versions: Vec<_> = VERSIONS
        .iter()
        .copied()
        .filter(|v| {
            let mine = match v.version {
                rustls::ProtocolVersion::TLSv1_2 => TlsVersion::Tls12,
                _ => TlsVersion::Tls13,
            };
            flags.tls_versions.is_empty() || flags.tls_versions.contains(&mine)
        })
        .collect();
    let mut provider = rustls::crypto::ring::default_provider();
    if !flags.ciphers.is_empty() {
        let all = provider.cipher_suites.clone();
        for c in &flags.ciphers {
            if !all.iter().any(|s| suite_name(s).eq_ignore_ascii_case(c)) {
                anyhow::bail!(
                    "--cipher {c}: not a suite this server has (it has {})",
                    all.iter().map(suite_name).collect::<Vec<_>>().join(", ")
                );
            }
        }
        provider.cipher_suites.retain(|s| {
            flags
                .ciphers
                .iter()
                .any(|c| suite_name(s).eq_ignore_ascii_case(c))
        });
    }
    if !provider
        .cipher_suites
        .iter()
        .any(|s| versions.iter().any(|v| s.version().version == v.version))
    {
        anyhow::bail!("none of the --cipher suites belongs to the --tls-version chosen");
    }
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not belong together")?;
    config.key_log = key_log(name, "server");
    Ok((config, leaf))
}

/// The server side: STARTTLS on the main port, or direct TLS.
struct TlsServer {
    acceptor: TlsAcceptor,
    mode: StartTls,
    direct: bool,
    /// `tls-server-end-point` of our certificate.
    end_point: Option<Vec<u8>>,
}

impl TlsServer {
    async fn handshake(&self, stream: BoxStream) -> io::Result<(BoxStream, Security)> {
        let tls = self.acceptor.accept(stream).await?;
        let conn = tls.get_ref().1;
        let bindings = binding::channel_bindings(conn, self.end_point.clone());
        let info = tls_info(conn, bindings, None);
        Ok((Box::new(tls), Security::Tls(info)))
    }
}

impl ServerTransport for TlsServer {
    async fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> io::Result<(BoxStream, Security)> {
        if self.direct {
            self.handshake(Box::new(tcp)).await
        } else {
            Ok((Box::new(tcp), Security::Plaintext))
        }
    }

    fn starttls(&self) -> StartTls {
        self.mode
    }

    async fn upgrade(&self, stream: BoxStream) -> io::Result<(BoxStream, Security)> {
        self.handshake(stream).await
    }
}

fn tls_client(name: &str, flags: &ClientFlags) -> anyhow::Result<TlsClient> {
    let provider = provider();
    let pin = flags.pin.as_deref().map(verify::parse_pin).transpose()?;
    let webpki = if flags.insecure {
        eprintln!(
            "{name}: WARNING: --insecure: the server's certificate is NOT checked; anyone in the middle can pose as the server and read everything"
        );
        None
    } else {
        let mut roots = RootCertStore::empty();
        match &flags.ca {
            Some(ca) => {
                for c in load_certs(ca)? {
                    roots.add(c).with_context(|| {
                        format!("{} holds an unusable CA certificate", ca.display())
                    })?;
                }
            }
            None => {
                if pin.is_some() {
                    // A pin narrows trust, it does not replace it: the
                    // certificate must still come from a trusted CA.
                    eprintln!(
                        "{name}: note: --pin is checked in addition to trust in the certificate's CA (here: this system's trusted roots); for the lab's own CA add --ca ca.pem"
                    );
                }
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    anyhow::bail!(
                        "no trusted CA certificates found on this system: pass --ca FILE (the lab's ca.pem)"
                    );
                }
            }
        }
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .context("cannot build the certificate verifier")?,
        )
    };
    let unchecked = webpki.is_none();
    let trust = match (&webpki, &pin, &flags.ca) {
        (None, _, _) => Trust::Insecure,
        (Some(_), Some(_), _) => Trust::Pinned,
        (Some(_), None, Some(_)) => Trust::Ca,
        (Some(_), None, None) => Trust::SystemRoots,
    };
    let verifier = Arc::new(verify::Verifier::new(webpki, pin, provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.key_log = key_log(name, "client");
    let mode = match flags.starttls {
        ClientStartTls::Required => StartTls::Required,
        ClientStartTls::Opportunistic => {
            eprintln!(
                "{name}: WARNING: --starttls opportunistic: if STARTTLS is not offered (or a man in the middle removes it) this client continues in PLAINTEXT"
            );
            StartTls::Optional
        }
    };
    Ok(TlsClient {
        connector: TlsConnector::from(Arc::new(config)),
        direct: flags.direct_tls,
        mode,
        verifier,
        unchecked: unchecked.then(|| name.to_string()),
        trust,
    })
}

/// The client side: STARTTLS or direct TLS, with the verifier above.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    direct: bool,
    mode: StartTls,
    /// It remembers the key each server showed.
    verifier: Arc<verify::Verifier>,
    /// With `--insecure`, the program's name: the key accepted unchecked is
    /// then said, for the user to compare with the real one.
    unchecked: Option<String>,
    /// How the certificate is checked, for the user to see.
    trust: Trust,
}

impl TlsClient {
    async fn handshake(
        &self,
        stream: BoxStream,
        domain: &str,
    ) -> Result<(BoxStream, Security), TransportError> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| {
            TransportError::BadServerName {
                domain: domain.to_string(),
                reason: e.to_string(),
            }
        })?;
        self.verifier.forget();
        match self.connector.connect(name, stream).await {
            Ok(tls) => {
                if let (Some(name), Some(key)) = (&self.unchecked, self.verifier.seen_key()) {
                    eprintln!(
                        "{name}: WARNING: accepted without any check a certificate for '{domain}' whose key is {key}: is that the server's?"
                    );
                }
                let conn = tls.get_ref().1;
                let end_point = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| binding::server_end_point(c.as_ref()));
                let bindings = binding::channel_bindings(conn, end_point);
                let info = tls_info(conn, bindings, Some(self.trust));
                Ok((Box::new(tls), Security::Tls(info)))
            }
            // A TLS failure, not a connection failure: the client says the
            // server could not prove who it is, not that it is down.
            Err(e) => Err(TransportError::Tls {
                domain: domain.to_string(),
                reason: with_key(verify::explain(&e, domain), self.verifier.seen_key()),
            }),
        }
    }
}

/// A refusal's reason, with the key of the certificate refused when the
/// reason does not name it already (a pin mismatch does): the user can
/// compare it with the server's real key.
fn with_key(reason: String, key: Option<String>) -> String {
    match key {
        Some(k) if !reason.contains(&k) => format!("{reason}; the certificate's key is {k}"),
        _ => reason,
    }
}

impl ClientTransport for TlsClient {
    async fn connect(
        &self,
        addr: &str,
        domain: &str,
    ) -> Result<(BoxStream, Security), TransportError> {
        let tcp: BoxStream = Box::new(tcp_connect(addr).await?);
        if self.direct {
            self.handshake(tcp, domain).await
        } else {
            Ok((tcp, Security::Plaintext))
        }
    }

    fn starttls(&self) -> StartTls {
        self.mode
    }

    async fn upgrade(
        &self,
        stream: BoxStream,
        domain: &str,
    ) -> Result<(BoxStream, Security), TransportError> {
        self.handshake(stream, domain).await
    }

    fn web(&self) -> Arc<dyn WebConnector> {
        Arc::new(self.clone())
    }
}

/// Shared files over HTTPS, checked exactly as the chat's server is (the
/// same CA or pin; `--insecure` is as weak here as there). The TLS twin has
/// no plain `http` at all: a file fetched in the clear could be read or
/// swapped on the way, whatever protects the chat.
impl WebConnector for TlsClient {
    fn scheme(&self) -> &'static str {
        "https"
    }

    fn open<'a>(&'a self, addr: &'a str, host: &'a str) -> WebFuture<'a> {
        Box::pin(async move {
            let tcp: BoxStream = Box::new(tcp_connect(addr).await?);
            Ok(self.handshake(tcp, host).await?.0)
        })
    }
}
