//! The sniffer binary (commands are being built).
fn main() {}
