//! Command-line arguments and entry points shared by the twin binaries, so
//! that `chat-plain` and `chat-tls` accept the same flags and differ only in
//! the transport they pass in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use protocol::Jid;
use protocol::sasl::Mechanism;

use crate::client::ConnectOptions;
use crate::client::cli::Outcome;
use crate::client::files::FilePolicy;
use crate::server::{self, ServerConfig, Shared};
use crate::transport::{ClientTransport, ServerTransport};

pub use crate::exit::{EXIT_ERROR, EXIT_FAILED};

/// Flags of `server`, the same in both twins.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on. Loopback by default: the lab server is not meant
    /// to be reachable from other machines. Port 0 lets the system pick a free
    /// port; the `ready` line on stderr says which.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub listen: SocketAddr,
    /// The XMPP domain this server hosts.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Folder for the database (created if missing).
    #[arg(long, default_value = "./chat-data")]
    pub data: PathBuf,
    /// Largest stanza accepted, in bytes.
    #[arg(long, default_value_t = protocol::limits::MAX_STANZA_BYTES)]
    pub max_stanza: usize,
    /// Seconds a connection may take to sign in before it is closed.
    #[arg(long, default_value_t = server::DEFAULT_AUTH_TIMEOUT.as_secs())]
    pub auth_timeout: u64,
    /// Most simultaneous connections.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a signed-in client may stay silent before it is pinged
    /// (XEP-0199), so that a client whose network vanished is noticed.
    #[arg(long, value_name = "SECS", default_value_t = server::DEFAULT_PING_AFTER.as_secs())]
    pub ping_after: u64,
    /// Seconds a pinged client has to answer before it is closed
    /// (`connection-timeout`); its contacts then see it go offline.
    #[arg(long, value_name = "SECS", default_value_t = server::DEFAULT_PING_TIMEOUT.as_secs())]
    pub ping_timeout: u64,
    /// Turn off in-band registration (accounts must already exist).
    #[arg(long)]
    pub no_registration: bool,
    /// Registrations one address may make per hour, after a first burst of
    /// 100 (0: no limit, for benchmarks).
    #[arg(long, default_value_t = server::throttle::DEFAULT_REGISTRATIONS_PER_HOUR)]
    pub max_registrations_per_hour: u32,
    /// A user allowed to send announcements to everyone online (repeat the
    /// flag for several admins).
    #[arg(long = "admin", value_name = "JID")]
    pub admins: Vec<String>,
    /// PBKDF2 iterations for the SCRAM credentials of new accounts and new
    /// passwords, 4096 (RFC 7677's minimum) to 1,000,000. More makes each
    /// guess of an offline dictionary attack on a captured sign-in cost
    /// more; clients see the count in the SCRAM challenge.
    #[arg(long, value_name = "N", default_value_t = protocol::sasl::DEFAULT_ITERATIONS)]
    pub scram_iterations: u32,
    /// Keep each user's one-to-one messages this many days, for their
    /// clients to fetch (XEP-0313 message archive); 0 (the default, as in
    /// Prosody) keeps none. An archive is every conversation, stored on the
    /// server in clear: whoever runs the server reads it.
    #[arg(long, value_name = "DAYS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub archive_days: u32,
    /// Seconds a session whose connection dropped waits for its client to
    /// resume it (XEP-0198 stream management), so nothing it was sent is
    /// lost; 0 turns resumption off (acknowledgements stay on).
    #[arg(long, value_name = "SECS", default_value_t = server::DEFAULT_RESUME_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub resume_timeout: u64,
    /// Offer HTTP file upload (XEP-0363) on `upload.<domain>`, its HTTP
    /// listener on this address (loopback; port 0 lets the system pick).
    /// Plain HTTP on chat-plain, HTTPS with the server's certificate on
    /// chat-tls. Either way the server keeps every file and can read it.
    #[arg(long, value_name = "ADDR")]
    pub upload_listen: Option<SocketAddr>,
    /// Largest file the upload service takes, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_UPLOAD_MAX_SIZE,
          value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub upload_max_size: u64,
    /// Bytes of files (and open slots) each user may keep.
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_UPLOAD_QUOTA,
          value_parser = clap::value_parser!(u64).range(0..=1 << 50))]
    pub upload_quota: u64,
    /// Seconds a slot waits for its file before it is dropped.
    #[arg(long, value_name = "SECS", default_value_t = server::UPLOAD_SLOT_EXPIRY.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=7 * 86_400))]
    pub upload_expiry: u64,
    /// Log every connection and stanza error in detail.
    #[arg(short, long)]
    pub verbose: bool,
}

impl ServerArgs {
    /// The server configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let domain = Jid::parse(&self.domain)
            .ok()
            .filter(|j| j.local().is_none() && j.resource().is_none())
            .with_context(|| format!("'{}' is not a valid domain name", self.domain))?;
        if self.max_stanza < 1024 {
            anyhow::bail!("--max-stanza must be at least 1024 bytes");
        }
        let mut c = ServerConfig::new(domain.domain(), self.data.clone());
        c.limits.max_stanza_bytes = self.max_stanza;
        c.auth_timeout = Duration::from_secs(self.auth_timeout.max(1));
        c.max_connections = self.max_connections.max(1);
        c.ping_after = Duration::from_secs(self.ping_after.max(1));
        c.ping_timeout = Duration::from_secs(self.ping_timeout.max(1));
        c.registration = !self.no_registration;
        c.registrations_per_hour = self.max_registrations_per_hour;
        // The range clients accept: a server outside it could not sign in
        // anyone.
        use protocol::sasl::{MAX_ITERATIONS, MIN_ITERATIONS};
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.scram_iterations) {
            anyhow::bail!(
                "--scram-iterations must be from {MIN_ITERATIONS} (RFC 7677's minimum) to {MAX_ITERATIONS}"
            );
        }
        c.scram_iterations = self.scram_iterations;
        c.archive_days = self.archive_days;
        c.resume_timeout = Duration::from_secs(self.resume_timeout);
        for a in &self.admins {
            let j = Jid::parse(a)
                .ok()
                .filter(|j| j.local().is_some())
                .with_context(|| format!("--admin '{a}' is not a user JID (name@domain)"))?;
            if j.domain() != c.domain {
                anyhow::bail!(
                    "--admin '{a}' is not a user of this server's domain '{}'",
                    c.domain
                );
            }
            c.admins.push(j.to_bare());
        }
        Ok(c)
    }
}

/// Flags of `client`, the same in both twins.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub server: String,
    /// Your account, `name@domain` (optionally `/resource`).
    #[arg(long)]
    pub jid: String,
    /// Create the account first (in-band registration).
    #[arg(long)]
    pub register: bool,
    /// Sign in with SASL PLAIN even when SCRAM is offered. Deliberately weak:
    /// PLAIN sends the password itself, only base64-encoded.
    #[arg(long)]
    pub plain: bool,
    /// The weakest SASL mechanism accepted: PLAIN, SCRAM-SHA-1,
    /// SCRAM-SHA-256, SCRAM-SHA-1-PLUS or SCRAM-SHA-256-PLUS. A server (or a
    /// man in the middle) offering only weaker ones is refused. `--sasl
    /// PLAIN` is deliberately weak: it lets a downgrade to PLAIN through.
    #[arg(long, value_name = "MECH", default_value = crate::client::DEFAULT_MIN_MECHANISM.name(), value_parser = parse_mechanism)]
    pub sasl: Mechanism,
    /// Do not bind the sign-in to the TLS channel (no SCRAM-*-PLUS).
    /// Deliberately weak: a man in the middle with a certificate this
    /// client accepts can then relay the sign-in (intercept-tls).
    #[arg(long)]
    pub no_channel_binding: bool,
    /// Accept every file offered, without asking (for scripts).
    #[arg(long)]
    pub accept_files: bool,
    /// Where received files are saved.
    #[arg(long, default_value = "./downloads")]
    pub downloads: PathBuf,
    /// Largest file accepted, in bytes; bigger offers are refused at once.
    #[arg(long, default_value_t = crate::client::files::DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
    /// Pad every stanza sent after sign-in with white space to a multiple
    /// of N bytes (XMPP allows white space between stanzas), so that under
    /// TLS the record sizes no longer tell one message from another (lab
    /// 10). Costs up to N-1 bytes a stanza; 0 (the default) pads nothing.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=16384))]
    pub pad: u16,
    /// Do not use stream management (XEP-0198). Without it, what the server
    /// writes into a connection that just dropped is lost without anyone
    /// knowing, and a dropped connection ends the session.
    #[arg(long)]
    pub no_stream_management: bool,
    /// Print events as JSON lines (implies --line).
    #[arg(long)]
    pub json: bool,
    /// End-to-end encryption (OMEMO) of chat messages: `on` encrypts to
    /// every contact who has an OMEMO device (in the clear, with a
    /// warning, to one who has none), `require` refuses to send without a
    /// trusted device. Its keys are kept in --data.
    #[arg(long, value_enum, value_name = "MODE", default_value = "off")]
    pub e2e: crate::client::omemo::E2eMode,
    /// The client's own folder: its OMEMO keys, sessions and trusted
    /// contacts' keys (readable by you alone), one folder per account.
    #[arg(long, value_name = "DIR", default_value = "./chat-client-data")]
    pub data: PathBuf,
    /// The line client even at a terminal: one command per line in, one
    /// event per line out (without it, a terminal gets the full-screen
    /// UI; pipes and scripts always get lines).
    #[arg(long)]
    pub line: bool,
    /// Show protocol details in errors, and every roster change in text
    /// mode.
    #[arg(short, long)]
    pub verbose: bool,
}

/// A SASL mechanism by its IANA name, any case.
fn parse_mechanism(s: &str) -> Result<Mechanism, String> {
    Mechanism::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
        let names: Vec<&str> = Mechanism::ALL.iter().map(|m| m.name()).collect();
        format!("unknown mechanism '{s}' (one of: {})", names.join(", "))
    })
}

impl ClientArgs {
    /// The terminal UI: a person at a terminal (stdin and stdout both one,
    /// and a terminal that can draw), and no `--line` or `--json`.
    pub fn wants_tui(&self) -> bool {
        use std::io::IsTerminal;
        !self.line
            && !self.json
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
            && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
    }

    /// Connection options; the password comes from `CHAT_PASSWORD` or a
    /// prompt without echo.
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let jid = Jid::parse(&self.jid).with_context(|| format!("invalid --jid '{}'", self.jid))?;
        if jid.local().is_none() {
            anyhow::bail!(
                "--jid '{}' names a server, not an account: a JID is name@domain (for example {}@localhost)",
                self.jid,
                self.jid
            );
        }
        let password = match std::env::var("CHAT_PASSWORD") {
            Ok(p) if !p.is_empty() => p,
            _ => {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!(
                        "no password: set CHAT_PASSWORD (stdin carries commands when it is not a terminal)"
                    );
                }
                let p = rpassword::prompt_password(format!("password for {}: ", jid.to_bare()))
                    .context("cannot read the password")?;
                if self.register {
                    // A new password is typed blind: once more, so a typo
                    // does not become the account's password.
                    let again = rpassword::prompt_password("the same password again: ")
                        .context("cannot read the password")?;
                    if again != p {
                        anyhow::bail!("the two passwords differ: nothing was registered");
                    }
                }
                p
            }
        };
        let account = crate::util::file_safe(&jid.to_bare().to_string());
        Ok(ConnectOptions {
            server: self.server.clone(),
            jid,
            password,
            register: self.register,
            force_plain: self.plain,
            min_mechanism: self.sasl,
            channel_binding: !self.no_channel_binding,
            files: FilePolicy {
                downloads: self.downloads.clone(),
                max_size: self.max_file_size,
                auto_accept: self.accept_files,
            },
            events: Default::default(),
            pad: usize::from(self.pad),
            stream_management: !self.no_stream_management,
            e2e: Some(crate::client::omemo::E2eOptions {
                mode: self.e2e,
                // A folder per account: two accounts on one computer must
                // never share keys.
                dir: self.data.join(account).join("omemo"),
            }),
        })
    }
}

/// Sets up logging to stderr: warnings (or everything with `--verbose`),
/// overridable with `RUST_LOG`.
pub fn init_tracing(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour codes only for a terminal: a log redirected to a file, or
        // read by `labs`, stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Builds the runtime and runs `f`, turning an error into one line on stderr
/// and exit code 2. Leaving waits for the runtime's blocking work (a
/// server's storage writes) to finish.
pub fn run_main<F, Fut>(name: &str, verbose: bool, f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    run_main_waiting(name, verbose, None, f)
}

/// [`run_main`], waiting at most `exit_wait` for blocking work at the end.
/// The client reads stdin on a blocking thread that no one can interrupt:
/// when the connection ends, leaving must not wait for the user to press
/// Enter (and swallow the line they type).
pub fn run_main_waiting<F, Fut>(
    name: &str,
    verbose: bool,
    exit_wait: Option<Duration>,
    f: F,
) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = rt.block_on(f());
    if let Some(wait) = exit_wait {
        rt.shutdown_timeout(wait);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors can carry the server's own words (a stream error's
            // text, a SASL failure): escaped like everything else the
            // network sends to a terminal.
            let text = if verbose {
                format!("{e:?}")
            } else {
                format!("{e:#}")
            };
            // Line by line: --verbose keeps anyhow's "Caused by" layout.
            for (i, line) in text.lines().enumerate() {
                let safe = protocol::display::Safe(line);
                if i == 0 {
                    eprintln!("{name}: {safe}");
                } else {
                    eprintln!("{safe}");
                }
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// A future that completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Opens storage and binds the listeners, with errors that say what to
/// do: the chat's, and the upload listener when asked (`--upload-listen`;
/// `https`: whether its transport is TLS, for the URLs it hands out).
async fn prepare_server(
    args: &ServerArgs,
    https: Option<bool>,
) -> anyhow::Result<(
    Arc<Shared>,
    tokio::net::TcpListener,
    Option<tokio::net::TcpListener>,
)> {
    let mut config = args.config()?;
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another server running there?)"))
    };
    let listener = bind(args.listen).await?;
    let upload = match (args.upload_listen, https) {
        (Some(addr), Some(https)) => {
            let l = bind(addr).await?;
            let at = l.local_addr().unwrap_or(addr);
            let scheme = if https { "https" } else { "http" };
            config.upload = Some(server::UploadConfig {
                domain: format!("upload.{}", config.domain),
                base_url: format!("{scheme}://{at}"),
                max_size: args.upload_max_size.max(1),
                quota: args.upload_quota,
                expiry: Duration::from_secs(args.upload_expiry.max(1)),
            });
            Some(l)
        }
        _ => None,
    };
    let shared =
        Shared::new(config).context("cannot open the data folder (is another server using it?)")?;
    Ok((shared, listener, upload))
}

/// How a twin serves HTTP file upload: the transport of its listener, and
/// whether that is TLS.
pub struct UploadTransport<U> {
    /// Accepts each connection (a TLS handshake, or nothing).
    pub transport: U,
    /// Whether the URLs are `https`.
    pub https: bool,
}

/// Runs a server until Ctrl-C or SIGTERM: `transport` on `--listen`,
/// `direct` (direct TLS, XEP-0368) on a second address when given, and the
/// upload listener on `--upload-listen`. All share one set of accounts,
/// rooms and sessions.
pub async fn run_server<T: ServerTransport, D: ServerTransport, U: ServerTransport>(
    name: &str,
    args: &ServerArgs,
    transport: T,
    direct: Option<(SocketAddr, D)>,
    upload: UploadTransport<U>,
    note: &str,
) -> anyhow::Result<u8> {
    let (shared, listener, upload_listener) = prepare_server(args, Some(upload.https)).await?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    eprintln!(
        "{name} server: listening on {addr} for domain '{}', data in {} ({note})",
        shared.config.domain,
        shared.storage.path().display()
    );
    let direct = match direct {
        Some((daddr, d)) => {
            let l = tokio::net::TcpListener::bind(daddr)
                .await
                .with_context(|| {
                    format!("cannot listen on {daddr} (is another server running there?)")
                })?;
            // With port 0 the kernel picks: report the port we got.
            let daddr = l.local_addr().unwrap_or(daddr);
            eprintln!("{name} server: direct TLS on {daddr}");
            Some((l, daddr, d))
        }
        None => None,
    };
    let upload_addr = upload_listener.as_ref().map(|l| {
        l.local_addr()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    });
    if let (Some(a), Some(u)) = (upload_addr, &shared.config.upload) {
        eprintln!("{name} server: HTTP file upload on {a} ({})", u.base_url);
    }
    for a in std::iter::once(addr)
        .chain(direct.as_ref().map(|d| d.1))
        .chain(upload_addr)
    {
        if !a.ip().is_loopback() {
            eprintln!(
                "{name} server: warning: {a} is not a loopback address; other machines can connect"
            );
        }
    }
    // One machine-readable line once every listener is bound, for scripts
    // and the test harness (harness/src/chat.rs reads it): with `--listen
    // 127.0.0.1:0` the kernel picks a free port as it binds, so nothing can
    // take the port between choosing it and using it, as it could when a
    // caller picked a "free" port first. Connections that arrive before
    // `serve` runs wait in the listen backlog.
    let mut ready = format!("{name} server: ready listen={addr}");
    if let Some((_, daddr, _)) = &direct {
        ready.push_str(&format!(" direct-tls={daddr}"));
    }
    if let Some(a) = upload_addr {
        ready.push_str(&format!(" upload={a}"));
    }
    eprintln!("{ready}");
    let uploads = upload_listener.map(|l| {
        tokio::spawn(server::http::serve(
            shared.clone(),
            l,
            Arc::new(upload.transport),
            shutdown_signal(),
        ))
    });
    let main = server::serve(
        shared.clone(),
        listener,
        Arc::new(transport),
        shutdown_signal(),
    );
    match direct {
        Some((l, _, d)) => {
            let second = server::serve(shared.clone(), l, Arc::new(d), shutdown_signal());
            tokio::join!(main, second);
        }
        None => main.await,
    }
    // Every session was told `system-shutdown`: a few seconds for them to
    // say it and close their streams properly.
    shared.drained(Duration::from_secs(3)).await;
    if let Some(u) = uploads {
        // A stalled upload does not hold the server up past a few seconds.
        let _ = tokio::time::timeout(Duration::from_secs(5), u).await;
    }
    eprintln!("{name} server: stopped");
    Ok(0)
}

/// How long a client's blocking work (a file being written) may hold up
/// its exit; a read of stdin is never waited for.
const CLIENT_EXIT_WAIT: Duration = Duration::from_millis(500);

/// Runs the line client; returns its exit code.
pub async fn run_client<T: ClientTransport>(
    name: &str,
    args: &ClientArgs,
    transport: T,
) -> anyhow::Result<u8> {
    let opts = args.connect_options()?;
    if args.no_channel_binding {
        eprintln!(
            "{name}: WARNING: --no-channel-binding: the sign-in is not bound to the TLS channel; a man in the middle with a certificate this client accepts can relay it"
        );
    }
    if !args.plain && args.sasl == Mechanism::Plain {
        eprintln!(
            "{name}: WARNING: --sasl PLAIN: if the offer is cut down to PLAIN (a man in the middle can do that on a plaintext stream), this client sends its password"
        );
    }
    let outcome = if args.wants_tui() {
        crate::client::cli::tui::run(name, transport, opts, args.verbose).await
    } else {
        crate::client::cli::run(name, transport, opts, args.json, args.verbose).await
    };
    Ok(match outcome {
        Outcome::Done => 0,
        Outcome::Failed => EXIT_FAILED,
        Outcome::Error => EXIT_ERROR,
    })
}

/// No flags beyond the common ones (the plaintext twin's transport has none).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoFlags {}

/// No subcommands beyond `server` and `client`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NoCommands {}

/// What a twin's transport adds to the shared command line: its own flags
/// for `server` and `client`, its own subcommands (`chat-tls certs`), and
/// how to run each with the transport built from those flags.
pub trait Twin {
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Flags `server` takes beyond [`ServerArgs`].
    type ServerFlags: clap::Args + Send + 'static;
    /// Flags `client` takes beyond [`ClientArgs`].
    type ClientFlags: clap::Args + Send + 'static;
    /// Subcommands beyond `server` and `client`.
    type Commands: clap::Subcommand + Send + 'static;

    /// Runs the server.
    fn server(
        name: &str,
        args: ServerArgs,
        flags: Self::ServerFlags,
    ) -> impl std::future::Future<Output = anyhow::Result<u8>>;
    /// The client's transport, built from its flags (for `client` and
    /// `bench`).
    type Client: ClientTransport;
    /// Builds the client transport.
    fn client_transport(name: &str, flags: Self::ClientFlags) -> anyhow::Result<Self::Client>;
    /// Runs one of [`Twin::Commands`].
    fn command(name: &str, command: Self::Commands) -> anyhow::Result<u8>;
}

#[derive(clap::Parser)]
struct TwinCli<S: clap::Args, C: clap::Args, X: clap::Subcommand> {
    #[command(subcommand)]
    command: TwinCommand<S, C, X>,
}

#[derive(clap::Subcommand)]
enum TwinCommand<S: clap::Args, C: clap::Args, X: clap::Subcommand> {
    /// Run the chat server.
    Server {
        #[command(flatten)]
        args: ServerArgs,
        #[command(flatten)]
        flags: S,
    },
    /// Run the chat client (interactive, or scripted from stdin).
    Client {
        #[command(flatten)]
        args: ClientArgs,
        #[command(flatten)]
        flags: C,
    },
    /// Load-test a server (ours or any other XMPP server on loopback).
    Bench {
        #[command(flatten)]
        args: crate::bench::BenchArgs,
        #[command(flatten)]
        flags: C,
    },
    #[command(flatten)]
    Other(X),
}

/// The whole `main` of a twin binary: parse the shared command line plus
/// the transport's additions, run, and turn errors into one line and an
/// exit code.
pub fn twin_main<T: Twin>(name: &'static str) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = TwinCli::<T::ServerFlags, T::ClientFlags, T::Commands>::command()
        .name(name)
        .bin_name(name)
        .about(T::ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .get_matches();
    let cli =
        match TwinCli::<T::ServerFlags, T::ClientFlags, T::Commands>::from_arg_matches(&matches) {
            Ok(c) => c,
            Err(e) => e.exit(),
        };
    match cli.command {
        TwinCommand::Server { args, flags } => {
            init_tracing(args.verbose);
            let verbose = args.verbose;
            run_main(name, verbose, || T::server(name, args, flags))
        }
        TwinCommand::Client { args, flags } => {
            // Not under the terminal UI: log lines would write over it.
            if args.verbose && !args.wants_tui() {
                init_tracing(true);
            }
            // While there is one thread (see the function).
            crate::client::cli::tui::remember_local_offset();
            let verbose = args.verbose;
            run_main_waiting(name, verbose, Some(CLIENT_EXIT_WAIT), || async move {
                run_client(name, &args, T::client_transport(name, flags)?).await
            })
        }
        TwinCommand::Bench { args, flags } => run_main(name, false, || async move {
            crate::bench::run(name, &args, T::client_transport(name, flags)?).await
        }),
        TwinCommand::Other(cmd) => match T::command(name, cmd) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("{name}: {e:#}");
                ExitCode::from(EXIT_ERROR)
            }
        },
    }
}
