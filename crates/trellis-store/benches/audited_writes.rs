//! Durable, audited writes per second: the storage layer against the disk's
//! fsync rate and a raw-database baseline measured in the same run.
//!
//! `cargo bench -p trellis-store --bench audited_writes` (PostgreSQL from
//! `TRELLIS_TEST_PG_URL`, default postgres://postgres@127.0.0.1:5432/postgres;
//! skipped if unreachable). `BENCH_SECONDS` sets each measurement's length (default 5);
//! `BENCH_ONLY=sqlite` or `BENCH_ONLY=postgres` runs one backend's figures (for profiling).
//! With `pgbench` on the PATH (Debian's postgresql-client), PostgreSQL's baseline also
//! comes from the instrument the figures were measured with, in the same run.
//!
//! A "save" is what a CRF save does: 10 item values and their 10 audit entries,
//! durable (fsync'd commit) before it is acknowledged.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use trellis_domain::*;
use trellis_store::*;

const WRITERS: usize = 16;
const VALUES: usize = 10;

fn secs() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

fn fsync_rate(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let buf = [7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Raw SQLite, WAL + synchronous=FULL, one connection, one save per transaction.
async fn raw_sqlite(dir: &std::path::Path) -> f64 {
    let url = format!("sqlite://{}?mode=rwc", dir.join("raw.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE v (k TEXT PRIMARY KEY, val TEXT); CREATE TABLE a (id INTEGER PRIMARY KEY, k TEXT, val TEXT, h BLOB);").execute(&mut c).await.unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs() {
        let mut tx = c.begin_with("BEGIN IMMEDIATE").await.unwrap();
        for j in 0..VALUES {
            let k = format!("{n}_{j}");
            sqlx::query("INSERT INTO v (k, val) VALUES ($1, 'x')")
                .bind(&k)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("INSERT INTO a (k, val, h) VALUES ($1, 'x', zeroblob(32))")
                .bind(&k)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Raw SQLite through rusqlite (direct calls, as the Python baseline): WAL +
/// synchronous=FULL, one connection, `per_commit` saves per transaction.
fn raw_sqlite_direct(dir: &std::path::Path, per_commit: usize) -> f64 {
    let c = rusqlite::Connection::open(dir.join(format!("raw_direct{per_commit}.db"))).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE v (k TEXT PRIMARY KEY, val TEXT); CREATE TABLE a (id INTEGER PRIMARY KEY, k TEXT, val TEXT, h BLOB);").unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs() {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        for _ in 0..per_commit {
            for j in 0..VALUES {
                let k = format!("{n}_{j}");
                c.prepare_cached("INSERT INTO v (k, val) VALUES (?1, 'x')")
                    .unwrap()
                    .execute([&k])
                    .unwrap();
                c.prepare_cached("INSERT INTO a (k, val, h) VALUES (?1, 'x', zeroblob(32))")
                    .unwrap()
                    .execute([&k])
                    .unwrap();
            }
            n += 1;
        }
        c.execute_batch("COMMIT").unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Raw PostgreSQL, 16 connections, one save per transaction each.
async fn raw_pg(url: &str) -> f64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE v (k TEXT PRIMARY KEY, val TEXT); CREATE TABLE a (id BIGSERIAL PRIMARY KEY, k TEXT, val TEXT, h BYTEA);").execute(&mut c).await.unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut n = 0u64;
            while start.elapsed() < secs() {
                let mut tx = c.begin().await.unwrap();
                for j in 0..VALUES {
                    let k = format!("{w}_{n}_{j}");
                    sqlx::query("INSERT INTO v (k, val) VALUES ($1, 'x')")
                        .bind(&k)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    sqlx::query("INSERT INTO a (k, val, h) VALUES ($1, 'x', '\\x00')")
                        .bind(&k)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The issue's own instrument, when `pgbench` is installed: 16 clients, prepared statements,
/// a transaction of 10 value inserts and 10 audit-row inserts, first alone, then also
/// updating one chain-head row of 1 (every transaction holds the one study's head through
/// its commit) and of 16 (16 studies). Saves per second for the three, or `None`.
fn pgbench(url: &str, dir: &std::path::Path) -> Option<[f64; 3]> {
    let save = String::from("\\set r random(1, 1000000000)\nBEGIN;\n");
    let mut rows = String::new();
    for j in 0..VALUES {
        rows.push_str(&format!(
            "INSERT INTO v (k, val) VALUES (:client_id || '_' || :r || '_{j}', 'x') ON CONFLICT DO NOTHING;\n\
             INSERT INTO a (k, val, h) VALUES ('k{j}', 'x', '\\x00');\n"
        ));
    }
    let scripts = [
        format!("{save}{rows}END;\n"),
        format!("{save}UPDATE heads SET seq = seq + {VALUES} WHERE chain = 0;\n{rows}END;\n"),
        format!(
            "{save}UPDATE heads SET seq = seq + {VALUES} WHERE chain = :client_id % {WRITERS};\n{rows}END;\n"
        ),
    ];
    let mut out = [0.0; 3];
    for (i, script) in scripts.iter().enumerate() {
        let path = dir.join(format!("pgbench_{i}.sql"));
        std::fs::write(&path, script).ok()?;
        let run = std::process::Command::new("pgbench")
            .args([
                "-n",
                "-c",
                &WRITERS.to_string(),
                "-j",
                "2",
                "-M",
                "prepared",
            ])
            .args(["-T", &secs().as_secs().to_string(), "-f"])
            .arg(&path)
            .arg(url)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&run.stdout);
        out[i] = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|x| x.parse().ok())?;
    }
    Some(out)
}

struct Target {
    study: StudyId,
    subject: SubjectId,
}

async fn seed(store: &Store, studies: usize) -> Vec<Target> {
    let org = OrgId::new();
    store
        .write(WriteRequest::new(
            Actor::system(),
            vec![Mutation::CreateOrganization {
                id: org,
                kind: OrgKind::Sponsor,
                name: DisplayName::parse(&format!("Bench {org}")).unwrap(),
            }],
        ))
        .await
        .unwrap();
    let mut out = Vec::new();
    for i in 0..studies {
        let (study, site, subject) = (StudyId::new(), SiteId::new(), SubjectId::new());
        store
            .write(WriteRequest::new(
                Actor::system(),
                vec![
                    Mutation::CreateStudy {
                        id: study,
                        sponsor: org,
                        code: StudyCode::parse(&format!("B-{}", study.as_uuid().simple())).unwrap(),
                        title: DisplayName::parse("Bench").unwrap(),
                        time_zone: TzName::utc(),
                    },
                    Mutation::CreateSite {
                        study,
                        id: site,
                        code: SiteCode::parse("S1").unwrap(),
                        name: DisplayName::parse("Site").unwrap(),
                        country: CountryCode::parse("DE").unwrap(),
                        time_zone: TzName::utc(),
                    },
                    Mutation::CreateSubject {
                        study,
                        id: subject,
                        site,
                        screening_number: ScreeningNumber::parse(&format!("S{i}")).unwrap(),
                    },
                ],
            ))
            .await
            .unwrap();
        out.push(Target { study, subject });
    }
    out
}

/// 16 concurrent writers doing saves through `Store::write`; returns (saves/s, p50 ms, p99 ms).
async fn through_store(store: &Store, studies: usize) -> (f64, f64, f64) {
    let targets = std::sync::Arc::new(seed(store, studies).await);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, targets) = (store.clone(), targets.clone());
        tasks.push(tokio::spawn(async move {
            let t = &targets[w % targets.len()];
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < secs() {
                let values = (0..VALUES)
                    .map(|j| (format!("W{w}_{n}_{j}"), Some("120".to_owned())))
                    .collect();
                let t0 = Instant::now();
                store
                    .write(WriteRequest::new(
                        Actor::system(),
                        vec![Mutation::SaveItems {
                            study: t.study,
                            subject: t.subject,
                            values,
                        }],
                    ))
                    .await
                    .unwrap();
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
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    (rate, pct(0.5), pct(0.99))
}

/// Where the time went: saves per commit and the writers' time (summed over writers; on
/// SQLite there is one, so its busy share says how close it is to its limit).
fn print_writer(stats: &WriteStats) {
    let run = secs().as_secs_f64();
    println!(
        "{:<58} {:>10.1} saves/commit  (writers busy {:.0}% of the run, {:.0}% of that committing)",
        "  group commit",
        stats.requests_per_batch(),
        stats.busy.as_secs_f64() / run * 100.0,
        stats.committing.as_secs_f64() / stats.busy.as_secs_f64().max(1e-9) * 100.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    println!(
        "audited writes: {WRITERS} concurrent writers, saves of {VALUES} values + {VALUES} audit entries, durable before acknowledged, {}s per figure\n",
        secs().as_secs()
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let fsync = fsync_rate(dir.path());
    println!(
        "{:<58} {:>10.0} /s",
        "disk fdatasync rate (4 KiB writes)", fsync
    );

    if only != "postgres" {
        sqlite_figures(dir.path(), fsync).await;
    }
    if only != "sqlite" {
        postgres_figures().await;
    }
}

async fn sqlite_figures(dir: &std::path::Path, fsync: f64) {
    let raw = raw_sqlite(dir).await;
    println!(
        "{:<58} {:>10.0} saves/s",
        "raw SQLite baseline (WAL, synchronous=FULL, 1 save/commit)", raw
    );
    let direct: Vec<f64> = [1, WRITERS]
        .into_iter()
        .map(|per_commit| {
            let r = raw_sqlite_direct(dir, per_commit);
            println!(
                "{:<58} {:>10.0} saves/s",
                format!("raw SQLite, direct calls (rusqlite), {per_commit} save(s)/commit"),
                r
            );
            r
        })
        .collect();
    for studies in [1, WRITERS] {
        let url = DatabaseUrl::Sqlite(dir.join(format!("store{studies}.db")));
        let store = Store::open(
            &url,
            &StoreOptions {
                create: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let (rate, p50, p99) = through_store(&store, studies).await;
        let stats = store.write_stats();
        println!(
            "{:<58} {:>10.0} saves/s  ({:.1}x raw via sqlx, {:.2}x / {:.2}x raw direct 1 / 16 per commit, {:.1}x fsync rate; p50 {p50:.1} ms, p99 {p99:.1} ms)",
            format!(
                "Trellis store on SQLite, {studies} stud{}",
                if studies == 1 { "y (one chain)" } else { "ies" }
            ),
            rate,
            rate / raw,
            rate / direct[0],
            rate / direct[1],
            rate / fsync
        );
        print_writer(&stats);
        store.verify_audit(None).await.unwrap();
        store.close().await;
    }
}

async fn postgres_figures() {
    let admin = std::env::var("TRELLIS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(mut c) = sqlx::PgConnection::connect(&admin).await else {
        println!("\nPostgreSQL at {admin} unreachable: PostgreSQL figures SKIPPED");
        return;
    };
    let mut dbs = Vec::new();
    let mut make = async |c: &mut sqlx::PgConnection| {
        let name = format!("trellis_bench_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut *c)
            .await
            .unwrap();
        let mut u = url::Url::parse(&admin).unwrap();
        u.set_path(&name);
        dbs.push(name);
        u.to_string()
    };
    let raw_url = make(&mut c).await;
    let raw = raw_pg(&raw_url).await;
    println!(
        "\n{:<58} {:>10.0} saves/s",
        "raw PostgreSQL baseline (16 connections, 1 save/commit)", raw
    );
    let mut raw_conn = sqlx::PgConnection::connect(&raw_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE heads (chain INT PRIMARY KEY, seq BIGINT); INSERT INTO heads SELECT g, 0 FROM generate_series(0, {}) g",
        WRITERS - 1
    )))
    .execute(&mut raw_conn)
    .await
    .unwrap();
    raw_conn.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pgbench = pgbench(&raw_url, dir.path());
    match pgbench {
        Some([free, one, many]) => {
            println!(
                "{:<58} {:>10.0} saves/s",
                "raw PostgreSQL, pgbench (16 clients, prepared)", free
            );
            println!(
                "{:<58} {:>10.0} saves/s",
                "  pgbench, each save also moving the one chain head", one
            );
            println!(
                "{:<58} {:>10.0} saves/s",
                "  pgbench, each save also moving one of 16 chain heads", many
            );
        }
        None => println!("pgbench not installed (or it failed): its baseline SKIPPED"),
    }
    for studies in [1, WRITERS] {
        let url = make(&mut c).await;
        let store = Store::open(&DatabaseUrl::Postgres(url), &StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (rate, p50, p99) = through_store(&store, studies).await;
        let stats = store.write_stats();
        println!(
            "{:<58} {:>10.0} saves/s  ({:.1}x raw; p50 {p50:.1} ms, p99 {p99:.1} ms)",
            format!(
                "Trellis store on PostgreSQL, {studies} stud{}",
                if studies == 1 { "y (one chain)" } else { "ies" }
            ),
            rate,
            rate / raw
        );
        if let Some(p) = pgbench {
            println!(
                "{:<58} {:>10.1}x pgbench without chain heads, {:.1}x pgbench with {}",
                "  against pgbench",
                rate / p[0],
                rate / if studies == 1 { p[1] } else { p[2] },
                if studies == 1 { "one head" } else { "16 heads" }
            );
        }
        print_writer(&stats);
        store.verify_audit(None).await.unwrap();
        store.close().await;
    }
    for d in dbs {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {d} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await;
    }
}
