//! PostgreSQL backend: a connection pool; chain heads are locked with
//! `SELECT ... FOR UPDATE` so each study's chain grows one entry at a time.

use std::time::Duration;

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

crate::backend::backend_impl!(
    sqlx::Postgres,
    sqlx::PgConnection,
    begin = "BEGIN",
    lock_suffix = " FOR UPDATE"
);
crate::backend::bulk_postgres!();

pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "edc",
        include_str!("../migrations/postgres/0002_edc.sql"),
    ),
    (
        3,
        "sdv",
        include_str!("../migrations/postgres/0003_sdv.sql"),
    ),
];

pub(crate) async fn open(url: &str, max_connections: u32) -> Result<Pool> {
    // sqlx keeps statements prepared per connection, and after five runs PostgreSQL may
    // settle on a generic plan. The one statement where a generic plan went wrong (a hash
    // join over a full scan of item_values for the write path's key lookups, planned while
    // the table was small) reads each key through a LATERAL subquery that cannot be pulled
    // up, so it is an index lookup per key in any plan; everything else keeps its generic
    // plan instead of being planned again on every run (forcing custom plans cost about a
    // fifth of form-save throughput in planner work).
    let options = PgConnectOptions::from_str(url)?;
    first_connection(&options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Connects once before the pool is built. A pool that cannot connect reports only that it
/// timed out, after its 30-second acquire timeout; this says why (connection refused, no
/// such role or database, wrong password) at once. A refused connection, or a server that
/// answers that it is starting up (SQLSTATE 57P03), is tried again for up to
/// [`SERVER_START_GRACE`].
async fn first_connection(options: &PgConnectOptions) -> Result<()> {
    use sqlx::Connection as _;
    let give_up = std::time::Instant::now() + SERVER_START_GRACE;
    loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect_with(options),
        )
        .await
        {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) if starting(&e) && std::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "PostgreSQL at {}:{} did not answer within 10 s",
                        options.get_host(),
                        options.get_port()
                    ),
                ))
                .into());
            }
        }
    }
}

const SERVER_START_GRACE: Duration = Duration::from_secs(3);

/// A connection error that may clear up by itself while the server starts.
fn starting(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}
