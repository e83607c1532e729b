//! The runner's side of the class server: a token per class and student
//! (kept in this user's state folder, readable by this user only), the
//! lab's values, answers checked, hints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use protocol::display::Safe;
use protocol::outln;
use serde_json::{Value, json};

use crate::secrets::{Secrets, normalise_student};

/// Where tokens are kept: `URL` and student name to token.
fn tokens_path() -> PathBuf {
    crate::lab::state_dir().join("class-tokens.json")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        // A refusal's status and message are the answer, not a failure of
        // the request.
        .http_status_as_error(false)
        .build()
        .into()
}

/// The class server's URL, without a trailing `/`.
fn base(url: &str) -> anyhow::Result<String> {
    let u = url.trim().trim_end_matches('/');
    if !u.starts_with("http://") && !u.starts_with("https://") {
        bail!(
            "--class '{url}' is not a URL: give the address the teacher wrote up, like http://10.0.0.1:8470"
        );
    }
    Ok(u.to_string())
}

/// The JSON answer, or the server's one-line refusal as the error.
fn answer(
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<Value> {
    let mut resp = result.with_context(|| format!("cannot reach the class server at {url}"))?;
    let status = resp.status();
    let v: Value = resp
        .body_mut()
        .read_json()
        .with_context(|| format!("{url} did not answer as a class server does ({status})"))?;
    if !status.is_success() {
        // The server's words, escaped: a terminal must not run what a
        // server (or someone posing as it on the network) sends.
        bail!(
            "the class server refused: {}",
            Safe(
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )
        );
    }
    Ok(v)
}

/// `POST {url}/api/{path}` with `token` and a JSON `body`.
fn post(url: &str, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
    answer(
        url,
        agent()
            .post(&format!("{url}/api/{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body),
    )
}

fn key(url: &str, student: &str) -> String {
    format!("{url} {}", normalise_student(student))
}

/// This student's token for the class at `url`: the one kept here, or a
/// new one from the server on first contact.
fn token(url: &str, student: &str) -> anyhow::Result<String> {
    let path = tokens_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _lock = crate::lab::lock_beside(&path)?;
    let mut all: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{} is damaged: remove it and run again", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Some(t) = all.get(&key(url, student)) {
        return Ok(t.clone());
    }
    let v = answer(
        url,
        agent()
            .post(&format!("{url}/api/join"))
            .send_json(json!({ "student": student })),
    )?;
    let t = v
        .get("token")
        .and_then(Value::as_str)
        .context("the class server gave no token")?
        .to_string();
    all.insert(key(url, student), t.clone());
    // The token is this student's identity: this user's eyes only.
    crate::secrets::write_private(&path, serde_json::to_string_pretty(&all)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(t)
}

/// Lab `n`'s values for `student`, from the class at `url`.
pub fn scenario(url: &str, n: u8, student: &str) -> anyhow::Result<Secrets> {
    let url = base(url)?;
    let t = token(&url, student)?;
    let v = answer(
        &url,
        agent()
            .get(&format!("{url}/api/labs/{n}/scenario"))
            .query("student", student)
            .header("Authorization", &format!("Bearer {t}"))
            .call(),
    )?;
    let values: BTreeMap<String, String> = serde_json::from_value(v["values"].clone())
        .context("the class server's values are not a map")?;
    Secrets::given(student, &values, n).map_err(anyhow::Error::msg)
}

/// `labs check N --class URL`: the server checks and records; exit 0 when
/// every answer is right, 1 otherwise.
pub fn check(url: &str, n: u8, student: &str, answers: &[String]) -> anyhow::Result<u8> {
    let url = base(url)?;
    let t = token(&url, student)?;
    let v = post(
        &url,
        &format!("labs/{n}/check"),
        &t,
        json!({ "student": student, "answers": answers }),
    )?;
    let checked: crate::lab::Checked =
        serde_json::from_value(v).context("the class server's verdicts are malformed")?;
    for line in &checked.verdicts {
        outln!("{}", Safe(line));
    }
    if checked.wrong > 0 {
        let s = Secrets::new("", student);
        let tag = crate::lab::Course::Class(url.clone()).tag();
        if let Some(why) = crate::lab::last_run_mismatch(n, &s, &tag) {
            outln!("note: {why}");
        }
    }
    Ok(if checked.wrong == 0 { 0 } else { 1 })
}

/// `labs hint N QUESTION --class URL`: the next hint, counted by the
/// server.
pub fn hint(url: &str, n: u8, student: &str, question: &str) -> anyhow::Result<u8> {
    let url = base(url)?;
    let t = token(&url, student)?;
    let v = post(
        &url,
        &format!("labs/{n}/hint"),
        &t,
        json!({ "student": student, "question": question }),
    )?;
    outln!("{}", Safe(v["hint"].as_str().unwrap_or("(no hint)")));
    Ok(0)
}
