//! Which twin, and which way in: the variants every chat test runs over.

/// Which twin, and which way in: every end-to-end test that is about the
/// chat (not about one transport) runs once per variant, through
/// [`twin_tests!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twin {
    /// `chat-plain`: no TLS at all.
    Plain,
    /// `chat-tls` on the STARTTLS port (required).
    StartTls,
    /// `chat-tls` on its direct TLS port.
    DirectTls,
}

impl Twin {
    /// The binary.
    pub fn bin(self) -> &'static str {
        match self {
            Twin::Plain => "chat-plain",
            Twin::StartTls | Twin::DirectTls => "chat-tls",
        }
    }

    /// Whether the twin speaks TLS.
    pub fn tls(self) -> bool {
        self != Twin::Plain
    }
}

/// Instantiates scenario functions `fn name(twin: Twin)` as one test per
/// [`Twin`]: `name::plain`, `name::starttls`, `name::direct_tls`. The same
/// test body for every transport, never a copy.
#[macro_export]
macro_rules! twin_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn plain() {
                    super::$name($crate::Twin::Plain)
                }
                #[test]
                fn starttls() {
                    super::$name($crate::Twin::StartTls)
                }
                #[test]
                fn direct_tls() {
                    super::$name($crate::Twin::DirectTls)
                }
            }
        )*
    };
}
