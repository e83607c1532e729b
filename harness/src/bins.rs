//! Where the toolkit's binaries are.
//!
//! - [`beside_current_exe`]: an installed program (`labs`) runs its siblings
//!   from its own folder; cargo puts every binary of the workspace there.
//! - [`cargo_built`]: a test process builds them itself first. cargo gives
//!   `env!("CARGO_BIN_EXE_<name>")` only to the tests of the package that
//!   defines the binary, and the end-to-end tests live in their own package;
//!   picking whatever lies in `target/` instead would run an old build after
//!   an edit, and a test would pass or fail on code that no longer exists.
//!   So the first call in a test process runs `cargo build --workspace
//!   --bins` (a no-op when nothing changed), with the test binary's own
//!   profile and target folder, and every later call reuses that answer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::Error;

/// `name` in the folder of the running program, if it is there.
pub fn beside_current_exe(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::NoExe)?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        return Err(Error::Missing(path));
    }
    Ok(path)
}

/// The workspace's root folder (this crate's parent).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// The path of the workspace binary `name`, built by cargo for this test
/// process. The first call builds every binary of the workspace (once per
/// process, whatever the number of threads asking), in the profile and
/// target folder of the running test binary; an error is the build's
/// output.
pub fn cargo_built(name: &str) -> Result<PathBuf, Error> {
    static BUILT: OnceLock<Result<PathBuf, (String, String)>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build_workspace_bins)
        .as_ref()
        .map_err(|(command, output)| Error::Build {
            command: command.clone(),
            output: output.clone(),
        })?;
    let path = dir.join(name);
    if !path.exists() {
        return Err(Error::Missing(path));
    }
    Ok(path)
}

/// The variables (or prefixes) cargo sets for a test process about the
/// package under test, not about the build: none of them may reach a build.
const TEST_PACKAGE_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_BIN_EXE_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Runs `$CARGO build --workspace --bins --locked` for the running test
/// binary's profile; returns the folder the binaries are in, or the command
/// and its output.
fn build_workspace_bins() -> Result<PathBuf, (String, String)> {
    let fail = |command: &str, why: String| Err((command.to_string(), why));
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail("current_exe", e.to_string()),
    };
    // A test binary is `<target>/<profile folder>/deps/<name>-<hash>`.
    let Some(profile_dir) = exe.parent().and_then(Path::parent) else {
        return fail(
            "current_exe",
            format!("{} is not in a target folder", exe.display()),
        );
    };
    let Some(target) = profile_dir.parent() else {
        return fail(
            "current_exe",
            format!("{} has no parent", profile_dir.display()),
        );
    };
    // cargo names the folder `debug` for the dev profile (and its `test`
    // child) and after the profile otherwise (`release`, custom ones).
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    // cargo sets CARGO for the processes it runs (tests included): the same
    // cargo, so the same toolchain, as the build that made this binary.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .args(["--workspace", "--bins", "--locked", "--profile", profile])
        .arg("--target-dir")
        .arg(target);
    // cargo also gives the test process the test package's own variables
    // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Passed on, build scripts
    // that watch them (ring's watches CARGO_MANIFEST_DIR) would see a change,
    // and every other `cargo build` would rebuild the TLS stack.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if TEST_PACKAGE_VARS.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    let shown = format!("{cmd:?}");
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(profile_dir.to_path_buf()),
        Ok(out) => fail(&shown, String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => fail(&shown, e.to_string()),
    }
}
