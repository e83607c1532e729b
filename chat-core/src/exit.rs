//! Exit codes shared by every command of the twins, the line client's
//! scripts included: 0 for success, then these.

/// Exit code: a check found something or a command failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or runtime error.
pub const EXIT_ERROR: u8 = 2;
