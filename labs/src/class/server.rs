//! `labs serve`: the class server. It holds the course secret and the
//! class's progress (SQLite, WAL, every write durable), hands each student
//! the values of the lab they run, checks answers and records which
//! questions were solved (never the answers), counts hints, and shows a
//! live scoreboard for the projector, with a CSV export for the gradebook.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lab::{self, LABS};
use crate::secrets::{Secrets, normalise_student};

/// The largest request body: a handful of answers.
const MAX_BODY: usize = 64 * 1024;

/// The server's state.
struct App {
    db: Mutex<Connection>,
    course: String,
    pseudonyms: bool,
}

/// An API error: its status and one line for the student.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("server error: {e}"),
    )
}

/// Opens (or creates) the class database in `data`.
fn open(data: &Path) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let path = data.join("class.db");
    let db = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    // WAL: readers (the scoreboard) never wait for a check; FULL: a check
    // the student was told is recorded survives a power cut.
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.busy_timeout(Duration::from_secs(10))?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS students (
             name TEXT PRIMARY KEY,
             shown TEXT NOT NULL,
             token_hash TEXT,
             joined INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS solved (
             name TEXT NOT NULL,
             lab INTEGER NOT NULL,
             key TEXT NOT NULL,
             at INTEGER NOT NULL,
             PRIMARY KEY (name, lab, key)
         );
         CREATE TABLE IF NOT EXISTS hints (
             name TEXT NOT NULL,
             lab INTEGER NOT NULL,
             key TEXT NOT NULL,
             level INTEGER NOT NULL,
             PRIMARY KEY (name, lab, key)
         );",
    )?;
    Ok(db)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs `f` on the database, off the async threads.
async fn with_db<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&Connection, &App) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let db = app
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&db, &app)
    })
    .await
    .map_err(internal)?
}

/// The student a request's token belongs to, who must be `student`.
fn authorise(db: &Connection, headers: &HeaderMap, student: &str) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "no token: run `labs run N --class URL --student NAME` first".into(),
            )
        })?;
    let owner: Option<String> = db
        .query_row(
            "SELECT name FROM students WHERE token_hash = ?1",
            params![super::token_hash(token.trim())],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    let Some(owner) = owner else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token: ask the teacher to reset your name (`labs class reset`)"
                .into(),
        ));
    };
    let student = normalise_student(student);
    if owner != student {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this token belongs to '{owner}', not '{student}'"),
        ));
    }
    Ok(owner)
}

/// A student's name from a request, checked as the command line checks it.
fn student_from(v: &Value) -> Result<String, ApiError> {
    let name = v
        .get("student")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the request needs \"student\""))?;
    crate::valid_student(name).map_err(bad)
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the request is not JSON: {e}")))
}

fn lab_number(n: &str) -> Result<u8, ApiError> {
    let n: u8 = n
        .parse()
        .map_err(|_| bad(format!("'{n}' is not a lab number")))?;
    lab::lab(n).map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(n)
}

/// A lab's POST: its number, the JSON body, and the student it names.
fn lab_request(n: &str, body: &Bytes) -> Result<(u8, Value, String), ApiError> {
    let n = lab_number(n)?;
    let v = json_body(body)?;
    let shown = student_from(&v)?;
    Ok((n, v, shown))
}

/// `POST /api/join {"student": NAME}`: a token for a name nobody holds.
async fn join(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, ApiError> {
    let shown = student_from(&json_body(&body)?)?;
    let name = normalise_student(&shown);
    let token = {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(internal)?;
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let hash = super::token_hash(&token);
    let taken = {
        let name = name.clone();
        with_db(&app, move |db, _| {
            // A name reset by the teacher has no token: it can be joined
            // again, keeping its progress.
            let changed = db
                .execute(
                    "INSERT INTO students (name, shown, token_hash, joined) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(name) DO UPDATE SET token_hash = ?3 WHERE token_hash IS NULL",
                    params![name, shown, hash, now()],
                )
                .map_err(internal)?;
            Ok(changed == 0)
        })
        .await?
    };
    if taken {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "'{name}' has joined already, from another machine or folder: use that one, or ask the teacher to reset the name (`labs class reset`)"
            ),
        ));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "student": name, "token": token })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct StudentQuery {
    student: Option<String>,
}

/// `GET /api/labs/{n}/scenario?student=NAME`: the values lab `n` needs for
/// this student, and nothing of any other lab.
async fn scenario(
    State(app): State<Arc<App>>,
    UrlPath(n): UrlPath<String>,
    Query(q): Query<StudentQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let n = lab_number(&n)?;
    let shown = crate::valid_student(q.student.as_deref().unwrap_or_default()).map_err(bad)?;
    let name = with_db(&app, move |db, _| authorise(db, &headers, &shown)).await?;
    let values = Secrets::new(&app.course, &name).scenario_values(n);
    Ok(axum::Json(json!({ "student": name, "lab": n, "values": values })).into_response())
}

/// `POST /api/labs/{n}/check {"student", "answers": ["K=V", ...]}`.
async fn check(
    State(app): State<Arc<App>>,
    UrlPath(n): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (n, v, shown) = lab_request(&n, &body)?;
    let answers: Vec<String> = v
        .get("answers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the request needs \"answers\": [\"KEY=VALUE\", ...]"))?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("each answer is a string"))
        })
        .collect::<Result<_, _>>()?;
    let checked = with_db(&app, move |db, app| {
        let name = authorise(db, &headers, &shown)?;
        let s = Secrets::new(&app.course, &name);
        let checked = lab::verdicts(n, &s, &answers, None).map_err(|e| bad(e.to_string()))?;
        // Which questions, never what was answered.
        for key in &checked.right {
            db.execute(
                "INSERT OR IGNORE INTO solved (name, lab, key, at) VALUES (?1, ?2, ?3, ?4)",
                params![name, n, key, now()],
            )
            .map_err(internal)?;
        }
        Ok(checked)
    })
    .await?;
    Ok(axum::Json(json!(checked)).into_response())
}

/// `POST /api/labs/{n}/hint {"student", "question"}`: the next hint for
/// that question, counted.
async fn hint(
    State(app): State<Arc<App>>,
    UrlPath(n): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (n, v, shown) = lab_request(&n, &body)?;
    let key = v
        .get("question")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the request needs \"question\""))?
        .to_string();
    // The question must exist before anything is counted.
    lab::hint(n, &key, 1).map_err(|e| bad(e.to_string()))?;
    let text = with_db(&app, move |db, _| {
        let name = authorise(db, &headers, &shown)?;
        let level: u8 = db
            .query_row(
                "INSERT INTO hints (name, lab, key, level) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(name, lab, key) DO UPDATE SET level = min(level + 1, 3)
                 RETURNING level",
                params![name, n, key],
                |r| r.get(0),
            )
            .map_err(internal)?;
        lab::hint(n, &key, level).map_err(|e| bad(e.to_string()))
    })
    .await?;
    Ok(axum::Json(json!({ "hint": text })).into_response())
}

/// Each student's solved questions and hints, as the page and the CSV
/// show them.
struct Board {
    rows: Vec<Row>,
}

/// One student on the board.
struct Row {
    /// The name as typed, or a pseudonym.
    label: String,
    /// Lab and question of each solved one.
    solved: std::collections::BTreeSet<(u8, String)>,
    /// Hints taken, all levels counted.
    hints: u32,
}

fn board(db: &Connection, app: &App) -> Result<Board, ApiError> {
    board_as(db, app.pseudonyms.then_some(app.course.as_str()))
}

/// The board, with names shown as typed, or as pseudonyms keyed by the
/// course secret.
fn board_as(db: &Connection, pseudonyms: Option<&str>) -> Result<Board, ApiError> {
    let mut rows = Vec::new();
    let mut students = db
        .prepare("SELECT name, shown FROM students ORDER BY joined, name")
        .map_err(internal)?;
    let names: Vec<(String, String)> = students
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(internal)?
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    for (name, shown) in names {
        let mut solved = std::collections::BTreeSet::new();
        let mut q = db
            .prepare("SELECT lab, key FROM solved WHERE name = ?1")
            .map_err(internal)?;
        let keys = q
            .query_map(params![name], |r| {
                Ok((r.get::<_, u8>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(internal)?;
        for k in keys {
            solved.insert(k.map_err(internal)?);
        }
        let hints: u32 = db
            .query_row(
                "SELECT COALESCE(SUM(level), 0) FROM hints WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .map_err(internal)?;
        let label = match pseudonyms {
            Some(course) => pseudonym(course, &name),
            None => shown,
        };
        rows.push(Row {
            label,
            solved,
            hints,
        });
    }
    Ok(Board { rows })
}

/// A name for the projector that does not show who it is: stable for the
/// course, different between courses.
fn pseudonym(course: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{course}\0pseudonym\0{name}").as_bytes());
    format!("student-{:02x}{:02x}{:02x}", h[0], h[1], h[2])
}

/// `GET /api/scoreboard`.
async fn scoreboard(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let b = with_db(&app, board).await?;
    let labs: Vec<Value> = LABS
        .iter()
        .map(|l| {
            json!({
                "number": l.number,
                "title": l.title,
                "keys": l.keys.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            })
        })
        .collect();
    let students: Vec<Value> = b
        .rows
        .iter()
        .map(|Row { label, solved, hints }| {
            let per_lab: serde_json::Map<String, Value> = LABS
                .iter()
                .map(|l| {
                    let keys: Vec<&str> = l
                        .keys
                        .iter()
                        .map(|(k, _)| *k)
                        .filter(|k| solved.contains(&(l.number, (*k).to_string())))
                        .collect();
                    (l.number.to_string(), json!(keys))
                })
                .collect();
            json!({ "student": label, "solved": per_lab, "count": solved.len(), "hints": hints })
        })
        .collect();
    let total: usize = LABS.iter().map(|l| l.keys.len()).sum();
    Ok(
        axum::Json(json!({ "labs": labs, "students": students, "questions": total }))
            .into_response(),
    )
}

/// `GET /export.csv`: one row per student, one column per lab (questions
/// solved), the total and the hints used.
async fn export(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let b = with_db(&app, board).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"labs.csv\"",
            ),
        ],
        csv(&b),
    )
        .into_response())
}

/// The gradebook: one row per student, a column per lab (questions
/// solved), the total and the hints used.
fn csv(b: &Board) -> String {
    let mut csv = String::from("student");
    for l in &LABS {
        csv.push_str(&format!(",lab {} (of {})", l.number, l.keys.len()));
    }
    csv.push_str(",solved,hints\r\n");
    for Row {
        label,
        solved,
        hints,
    } in &b.rows
    {
        csv.push_str(&csv_field(label));
        for l in &LABS {
            let n = solved.iter().filter(|(lab, _)| *lab == l.number).count();
            csv.push_str(&format!(",{n}"));
        }
        csv.push_str(&format!(",{},{hints}\r\n", solved.len()));
    }
    csv
}

/// `labs class export`: the gradebook with the names as students typed
/// them, read from the data folder on the teacher's machine (the server's
/// own `/export.csv` shows pseudonyms when it runs with `--pseudonyms`).
pub fn export_local(data: &Path) -> anyhow::Result<u8> {
    let db = open(data)?;
    let b = board_as(&db, None).map_err(|e| anyhow::anyhow!(e.1))?;
    protocol::out!("{}", csv(&b));
    Ok(0)
}

/// A CSV field (RFC 4180), and never a formula a spreadsheet would run.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `GET /`: the scoreboard page.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Self-contained: nothing but this page and its own API.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        include_str!("page.html"),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such page: try / or /api/scoreboard".into(),
    )
}

/// `labs serve`: runs until Ctrl-C.
pub fn serve(
    listen: SocketAddr,
    course: String,
    data: PathBuf,
    pseudonyms: bool,
) -> anyhow::Result<u8> {
    let db = open(&data)?;
    let app = Arc::new(App {
        db: Mutex::new(db),
        course,
        pseudonyms,
    });
    let router = Router::new()
        .route("/", get(page))
        .route("/api/scoreboard", get(scoreboard))
        .route("/export.csv", get(export))
        .route("/api/join", post(join))
        .route("/api/labs/{n}/scenario", get(scenario))
        .route("/api/labs/{n}/check", post(check))
        .route("/api/labs/{n}/hint", post(hint))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "labs serve: class data in {}; scoreboard at http://{addr}/",
            data.join("class.db").display()
        );
        eprintln!("labs serve: ready listen={addr}");
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                while harness::signals::check_interrupt().is_ok() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .context("the class server failed")?;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// `labs class list`: every student who joined, with what they solved and
/// whether their token stands.
pub fn list(data: &Path) -> anyhow::Result<u8> {
    let db = open(data)?;
    let mut q = db.prepare(
        "SELECT s.name, s.shown, s.token_hash IS NOT NULL,
                (SELECT COUNT(*) FROM solved WHERE name = s.name),
                (SELECT COALESCE(SUM(level), 0) FROM hints WHERE name = s.name)
         FROM students s ORDER BY s.joined, s.name",
    )?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["student", "as typed", "token", "solved", "hints"]);
    for r in rows {
        let (name, shown, token, solved, hints) = r?;
        table.add_row(vec![
            name,
            shown,
            if token { "active" } else { "reset" }.into(),
            solved.to_string(),
            hints.to_string(),
        ]);
    }
    protocol::outln!("{table}");
    Ok(0)
}

/// `labs class reset NAME`: revokes the student's token (progress stays);
/// their next run joins again and gets a new one.
pub fn reset(data: &Path, student: &str) -> anyhow::Result<u8> {
    let db = open(data)?;
    let name = normalise_student(student);
    let n = db.execute(
        "UPDATE students SET token_hash = NULL WHERE name = ?1",
        params![name],
    )?;
    if n == 0 {
        anyhow::bail!("no student '{name}' has joined (`labs class list` shows who has)");
    }
    protocol::outln!("{name}: token revoked; their next `labs run --class` gets a new one");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_course_and_csv_fields_are_inert() {
        let a = pseudonym("c1", "ada-lovelace");
        assert_eq!(a, pseudonym("c1", "ada-lovelace"));
        assert_ne!(a, pseudonym("c1", "alan-turing"));
        assert_ne!(a, pseudonym("c2", "ada-lovelace"));
        assert!(a.starts_with("student-") && !a.contains("ada"));
        assert_eq!(csv_field("Ada Lovelace"), "Ada Lovelace");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
