//! The proxy's own TLS client, for the leg to the server.
//!
//! When the server requires STARTTLS and the proxy strips it from the
//! client, the proxy encrypts the server leg itself: the server sees an
//! encrypted client and has no reason to complain, while the client talks
//! to the proxy in plaintext. That is why a server-side `required` does not
//! protect a client that does not insist on TLS itself.
//!
//! The attacker has no reason to check who the server is, so this client
//! accepts any certificate (deliberately: the opposite of what a real
//! client must do).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, KeyLog, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Accepts any server certificate, checking only that the handshake's
/// signatures are made with the key in it.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Deliberately weak: the attacker does not care who the server is.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector for the server leg: the workspace's one crypto provider
/// (ring), any certificate accepted.
pub fn connector(keylog: Option<Arc<dyn KeyLog>>) -> Result<TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    if let Some(k) = keylog {
        config.key_log = k;
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs the TLS handshake with the server over `tcp`, naming `domain`;
/// with `keylog`, its secrets are written down.
pub async fn connect(
    tcp: TcpStream,
    domain: &str,
    keylog: Option<Arc<dyn KeyLog>>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(domain.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    connector(keylog)
        .map_err(std::io::Error::other)?
        .connect(name, tcp)
        .await
}
