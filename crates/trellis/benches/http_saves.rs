//! Audited saves through the HTTP API: 32 concurrent clients on keep-alive
//! connections against `trellis serve` (a separate process) on SQLite.
//! Prints saves per second and latency percentiles.
//!
//! `cargo bench -p trellis --bench http_saves` (`BENCH_SECONDS`, default 10;
//! `BENCH_DATABASE_URL` to point it at PostgreSQL instead).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::{Conn, Server, bench_seconds, report_clients, stop_and_report};

const CLIENTS: usize = 32;
const VALUES: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let secs = bench_seconds();
    let db =
        std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| "sqlite://data/trellis.db".into());
    let server = Server::start(&db);
    let port = server.port;
    let token = server
        .run(&["user", "token", "coordinator", "--name", "bench"])
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
    report_clients(tasks, start, "").await;
    stop_and_report(server);
}
