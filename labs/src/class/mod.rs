//! The class server (`labs serve`) and the runner's side of it.
//!
//! The teacher's machine holds the course secret and the class's progress;
//! students' machines hold neither. A student's first contact gets a token
//! (kept on the student's machine, its hash on the server), which every
//! later request needs: nobody can check under another student's name
//! without that student's token.
//!
//! What this does not stop, said plainly: a student who reads the runner's
//! traffic gets that lab's values (the runner needs them to play the
//! scenario: the code word classmate sends, for instance), so a determined
//! student can skip a task's tool, not another student's lab. The API is
//! plain HTTP: on a network the teacher does not trust, a sniffed token is
//! a stolen identity (lab 1's lesson), so run it on a lab network or behind
//! TLS. A student who shares a token shares an identity.

pub mod client;
pub mod server;

/// A token's SHA-256, hex: what the server keeps instead of the token.
fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
