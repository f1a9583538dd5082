//! Audited saves through the HTTP API: 32 concurrent clients on keep-alive
//! connections against `trellis serve` (a separate process) on SQLite.
//! Prints saves per second and latency percentiles.
//!
//! `cargo bench -p trellis --bench http_saves` (`BENCH_SECONDS`, default 10;
//! `BENCH_DATABASE_URL` to point it at PostgreSQL instead).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

const CLIENTS: usize = 32;
const VALUES: usize = 10;

struct Conn {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    async fn open(port: u16) -> Self {
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
    async fn send(&mut self, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
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
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let secs = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let dir = tempfile::tempdir().unwrap();
    let db =
        std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| "sqlite://data/trellis.db".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trellis"));
        c.current_dir(dir.path())
            .env("TRELLIS_DATABASE_URL", &db)
            .env("TRELLIS_DATA_DIR", dir.path().join("data"))
            .env("TRELLIS_LOG", "warn")
            .args(args);
        c
    };
    let mut server = run(&["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    while !lines
        .next()
        .unwrap()
        .unwrap()
        .contains("Trellis is serving")
    {}
    std::thread::spawn(move || for _ in lines {});
    let token = String::from_utf8(
        run(&["user", "token", "coordinator", "--name", "bench"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();

    let mut c = Conn::open(port).await;
    let (_, studies) = c.send("GET", "/api/v1/studies", &token, "").await;
    let study = serde_json::from_str::<serde_json::Value>(&studies).unwrap()["studies"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, subjects) = c
        .send(
            "GET",
            &format!("/api/v1/studies/{study}/subjects"),
            &token,
            "",
        )
        .await;
    let subjects: Vec<String> =
        serde_json::from_str::<serde_json::Value>(&subjects).unwrap()["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();

    println!(
        "HTTP API saves: {CLIENTS} clients, keep-alive, PUT of {VALUES} values (+{VALUES} audit entries, durable) on {db}, {}s",
        secs.as_secs()
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let (token, path) = (
            token.clone(),
            format!(
                "/api/v1/studies/{study}/subjects/{}/items",
                subjects[k % subjects.len()]
            ),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port).await;
            let mut lat = Vec::new();
            let mut n = 0;
            while start.elapsed() < secs {
                let body = format!(
                    "{{\"values\": {{{}}}}}",
                    (0..VALUES)
                        .map(|j| format!("\"K{k}N{n}_{j}\": \"{j}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let t0 = Instant::now();
                let (status, text) = c.send("PUT", &path, &token, &body).await;
                assert_eq!(status, 200, "{text}");
                lat.push(t0.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{:>10.0} saves/s   p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms   ({} saves)",
        lat.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.len()
    );
    server.kill().unwrap();
    server.wait().unwrap();
    let verify = run(&["audit", "verify"]).output().unwrap();
    println!(
        "audit verify after the run: {}",
        if verify.status.success() {
            "ok"
        } else {
            "FAILED"
        }
    );
}
