//! What the HTTP benchmarks share: a `trellis serve` child process on a scratch data
//! folder, the CLI against the same database, and a minimal keep-alive HTTP/1.1 client
//! (so the client's own overhead stays small and visible).
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

pub struct Conn {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    pub async fn open(port: u16) -> Self {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.set_nodelay(true).unwrap();
        let (r, w) = s.into_split();
        Self {
            r: tokio::io::BufReader::new(r),
            w,
        }
    }

    /// One request on the kept-alive connection; returns (status, body).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.w.write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).await.unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        self.r.read_exact(&mut buf).await.unwrap();
        (status, String::from_utf8(buf).unwrap())
    }

    /// A GET whose JSON body is returned.
    pub async fn get_json(&mut self, path: &str, token: &str) -> serde_json::Value {
        let (status, body) = self.send("GET", path, token, "").await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// `trellis serve --demo` on a scratch data folder and the given database.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub port: u16,
    child: Child,
}

impl Server {
    pub fn start(database_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = cli(dir.path(), database_url)
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while !lines
            .next()
            .unwrap()
            .unwrap()
            .contains("Trellis is serving")
        {}
        std::thread::spawn(move || for _ in lines {});
        Self {
            dir,
            database_url: database_url.to_owned(),
            port,
            child,
        }
    }

    /// Runs a CLI command against the server's database; panics with its stderr if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = cli(self.dir.path(), &self.database_url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trellis {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the server and re-computes every audit chain.
    pub fn stop_and_verify(mut self) -> bool {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        cli(self.dir.path(), &self.database_url)
            .args(["audit", "verify"])
            .output()
            .unwrap()
            .status
            .success()
    }
}

fn cli(dir: &Path, database_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trellis"));
    c.current_dir(dir)
        .env("TRELLIS_DATABASE_URL", database_url)
        .env("TRELLIS_DATA_DIR", dir.join("data"))
        .env("TRELLIS_LOG", "warn");
    c
}

/// A fresh PostgreSQL database for one benchmark run.
pub struct ScratchPg {
    pub url: String,
    admin: String,
    name: String,
}

impl ScratchPg {
    /// `None` (with a message) if no server answers at `TRELLIS_TEST_PG_URL`.
    pub async fn create(label: &str) -> Option<Self> {
        use sqlx::Connection as _;
        let admin = std::env::var("TRELLIS_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut c = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                println!(
                    "PostgreSQL at {admin} unreachable ({e}): its half of the benchmark is skipped"
                );
                return None;
            }
        };
        let name = format!("trellis_bench_{label}_{}", std::process::id());
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        }
        let mut u = url::Url::parse(&admin).unwrap();
        u.set_path(&name);
        Some(Self {
            url: u.to_string(),
            admin,
            name,
        })
    }

    pub async fn drop(self) {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut c)
        .await;
    }
}

/// Latency percentile in milliseconds of sorted durations.
fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Waits for the clients and prints the rate and latency percentiles of all their saves
/// since `start`; `target` is appended.
pub async fn report_clients(
    clients: Vec<tokio::task::JoinHandle<Vec<std::time::Duration>>>,
    start: std::time::Instant,
    target: &str,
) {
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.unwrap());
    }
    print_rate(latencies, start.elapsed().as_secs_f64(), target);
}

/// Prints the rate and latency percentiles of a run's saves; `target` is appended.
fn print_rate(mut latencies: Vec<std::time::Duration>, elapsed_secs: f64, target: &str) {
    latencies.sort();
    println!(
        "{:>10.0} saves/s   p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms   ({} saves{target})",
        latencies.len() as f64 / elapsed_secs,
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0),
        latencies.len()
    );
}

/// Stops the server, re-computes every audit chain and says whether it verified.
pub fn stop_and_report(server: Server) {
    println!(
        "audit verify after the run: {}",
        if server.stop_and_verify() {
            "ok"
        } else {
            "FAILED"
        }
    );
}

/// How long the clients save: `BENCH_SECONDS`, default 10.
pub fn bench_seconds() -> std::time::Duration {
    std::time::Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}
