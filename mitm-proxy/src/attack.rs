//! The attacks the proxy knows, each with the setting that defeats it.
//!
//! The lesson of every attack is the line beside it: which client (or
//! server) setting makes it fail. `mitm-proxy attacks` prints them all.

use serde::Serialize;

/// An attack the proxy applies to the connections it relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Passive: parse and log both directions, with the switch to TLS at
    /// the exact byte.
    Relay,
    /// Remove `<starttls/>` from the features the client sees; when the
    /// server insists on TLS, speak TLS to the server in the client's place.
    StripStarttls,
    /// Offer the client only SASL PLAIN, so a client that takes whatever is
    /// offered sends its password.
    DowngradeSasl,
    /// Pass TLS through untouched but flip one bit in the Nth
    /// application-data record from the client.
    CorruptTls,
    /// End the client's TLS with a forged certificate for the name it
    /// asked for, open TLS to the server, and read everything between.
    InterceptTls,
    /// Slip a plaintext stanza in right after `<starttls/>` (toward the
    /// server) and `<proceed/>` (toward the client).
    InjectStarttls,
    /// Play a SASL exchange the proxy saw succeed again, on a connection
    /// of its own.
    Replay,
    /// Change stanzas in flight by the rules of `--rules FILE`.
    Tamper,
    /// Add the attacker's OMEMO device to contacts' device lists and serve
    /// its bundle, then read what the client encrypts to it.
    InjectOmemoDevice,
}

/// What an attack does, against whom it works, and what stops it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Info {
    /// Its name on the command line.
    pub name: &'static str,
    /// What the proxy does.
    pub does: &'static str,
    /// The setting it succeeds against.
    pub succeeds_against: &'static str,
    /// The setting that defeats it.
    pub defeated_by: &'static str,
}

impl Attack {
    /// Every attack, in the order `mitm-proxy attacks` lists them.
    pub const ALL: [Attack; 9] = [
        Attack::Relay,
        Attack::StripStarttls,
        Attack::DowngradeSasl,
        Attack::InterceptTls,
        Attack::CorruptTls,
        Attack::InjectStarttls,
        Attack::Replay,
        Attack::Tamper,
        Attack::InjectOmemoDevice,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Whether it only watches: the bytes go on exactly as they came
    /// (`replay` acts after the connection, on a connection of its own).
    pub fn is_passive(self) -> bool {
        matches!(self, Attack::Relay | Attack::Replay)
    }

    /// What it does and what defeats it.
    pub fn info(self) -> Info {
        match self {
            Attack::Relay => Info {
                name: "relay",
                does: "reads and logs both directions; once TLS starts it sees only record sizes",
                succeeds_against: "chat-plain: every stanza, password included, is readable",
                defeated_by: "TLS (chat-tls): nothing after the TLS switch is readable",
            },
            Attack::StripStarttls => Info {
                name: "strip-starttls",
                does: "removes <starttls/> from the server's features; if the server requires TLS, \
                       the proxy speaks TLS to the server itself, so the server sees an encrypted client",
                succeeds_against: "chat-tls client --starttls opportunistic: goes on in plaintext and sends its password",
                defeated_by: "chat-tls client --starttls required (the default): stops when STARTTLS is missing; \
                              or --direct-tls, which has no plaintext phase to strip",
            },
            Attack::DowngradeSasl => Info {
                name: "downgrade-sasl",
                does: "cuts the server's SASL mechanisms down to those of --offer (PLAIN by default; \
                       e.g. SCRAM-SHA-256,SCRAM-SHA-1 removes -PLUS and the channel-binding types)",
                succeeds_against: "a client that takes whatever is offered: chat-* client --sasl PLAIN \
                                   (sends its password), or one that does not check the offer",
                defeated_by: "a minimum mechanism (the client's default: SCRAM, never PLAIN); the \
                              server's signed offer (XEP-0474), which shows any mechanism removed; \
                              channel binding's `y` flag, which shows -PLUS removed; and TLS, inside \
                              which the list cannot be changed at all",
            },
            Attack::InterceptTls => Info {
                name: "intercept-tls",
                does: "answers the client's TLS (after <proceed/>, or direct TLS) with a certificate \
                       for the name it asked for: self-signed, minted by the attacker's CA \
                       (--ca-dir, see 'mitm-proxy ca'), or given (--cert/--key); opens its own TLS \
                       to the server and reads both legs (--keylog writes their secrets)",
                succeeds_against: "chat-tls client --insecure (any certificate); --ca attacker-ca.pem \
                                   (a client told to trust the attacker's CA)",
                defeated_by: "certificate validation against the right CA (the default); --pin with \
                              the server's key, even against a CA the client trusts by mistake; \
                              channel binding (SCRAM-*-PLUS, the default over TLS): the client's TLS \
                              is not the server's, so the server refuses the relayed sign-in",
            },
            Attack::InjectStarttls => Info {
                name: "inject-starttls",
                does: "pipelines a plaintext <message/> right after the client's <starttls/> \
                       (command injection) and after the server's <proceed/> (response \
                       injection), in the same TCP segment (NO STARTTLS, USENIX Security 2021; \
                       CVE-2011-0411)",
                succeeds_against: "a server or client that keeps bytes read before the TLS switch \
                                   and treats them as protected",
                defeated_by: "discarding whatever was read before the switch (both our server and \
                              our client do; the server logs it): only the peer can tell, the proxy \
                              sees the session go on either way",
            },
            Attack::Replay => Info {
                name: "replay",
                does: "records a SASL exchange that succeeded and plays it again on a connection \
                       of its own, to sign in as the user without the password",
                succeeds_against: "SASL PLAIN read off the wire (chat-plain, or with strip-starttls \
                                   or intercept-tls): the same bytes sign in every time",
                defeated_by: "SCRAM: the server's nonce is new on every connection, so the recorded \
                              proof fails; and TLS, which hides the exchange",
            },
            Attack::Tamper => Info {
                name: "tamper",
                does: "changes stanzas in flight by the rules of --rules FILE: replace a body, set \
                       an attribute, drop, inject, delay, or swap a file offered over SI/IBB together \
                       with the SHA-256 in its offer",
                succeeds_against: "chat-plain: every stanza can be changed, and a checksum sent with \
                                   the data is recomputed along with it",
                defeated_by: "TLS: the proxy cannot read, let alone change, what is inside it \
                              (integrity that protects needs a key the attacker lacks)",
            },
            Attack::InjectOmemoDevice => Info {
                name: "inject-omemo-device",
                does: "adds the attacker's own OMEMO device to every contact's device list the \
                       client is sent (both versions), answers the client's request for its \
                       bundle with the attacker's keys under the contact's name, and decrypts \
                       every message the client then encrypts to it (XEP-0384's warning)",
                succeeds_against: "an OMEMO client that trusts a contact's new devices blindly \
                                   (blind trust before verification, the default): it encrypts \
                                   each message to the attacker too; on chat-plain, or chat-tls \
                                   --insecure with intercept-tls",
                defeated_by: "verifying the contact's fingerprint out of band (/verify): a new \
                              device of a verified contact is not trusted, gets no key, and the \
                              client warns; and TLS with a checked certificate, which keeps the \
                              proxy out of the stream",
            },
            Attack::CorruptTls => Info {
                name: "corrupt-tls",
                does: "flips one bit in the Nth TLS application-data record from the client \
                       (--corrupt-record N, default 3)",
                succeeds_against: "nothing that uses TLS: only a protocol without integrity \
                                   protection would accept the changed record",
                defeated_by: "TLS's AEAD: the record's authentication tag no longer matches, \
                              the server refuses it (bad_record_mac) and ends the connection",
            },
        }
    }
}

impl std::fmt::Display for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_attack_names_what_defeats_it_and_parses_from_its_name() {
        for a in Attack::ALL {
            let info = a.info();
            assert!(!info.defeated_by.is_empty(), "{a:?}");
            assert!(!info.succeeds_against.is_empty(), "{a:?}");
            assert_eq!(Attack::from_str(info.name, false), Ok(a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::from(info.name)
            );
        }
        assert_eq!(Attack::ALL.len(), Attack::value_variants().len());
    }
}
