//! `--json` output: every value the sniffer reports ([`crate::findings::Record`],
//! the summary rows and totals of [`crate::report`], the guard's verdicts in
//! [`crate::guard`], a followed stream's data) as one line of JSON.
//!
//! The values derive `serde::Serialize`; nothing builds JSON by hand, so a
//! field cannot be shown in the text output and forgotten in the JSON.

use serde::Serialize;
use serde_json::Value;

/// `value` as one line of JSON, its keys in sorted order.
///
/// The keys are sorted because the sniffer's JSON always had them so (its
/// objects were `serde_json::Value` maps, which are sorted), and a script
/// or a saved run compared line by line must not see the order change: the
/// value goes through a [`Value`] for that. Field order in the Rust types is
/// then free to follow what reads best.
pub fn line(value: &impl Serialize) -> String {
    serde_json::to_value(value).map_or_else(
        // Cannot happen for the sniffer's types (every map key is a string
        // and no `Serialize` of theirs fails). Should a later type fail, its
        // line is still one line of JSON, a string saying why, not a panic
        // in the middle of a capture.
        |e| Value::String(format!("unserializable: {e}")).to_string(),
        |v| v.to_string(),
    )
}
