use sqlx::Connection as _;
use trellis_store::{DatabaseUrl, Store, StoreOptions};

pub struct TestDb {
    pub store: Store,
    pub url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    pub fn name(&self) -> &'static str {
        self.store.backend_name()
    }

    /// Runs raw SQL outside the store, as someone with direct database access would.
    pub async fn raw(&self, sql: &str) {
        match &self.url {
            DatabaseUrl::Sqlite(p) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display()))
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            DatabaseUrl::Postgres(u) => {
                let mut c = sqlx::PgConnection::connect(u).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// Like `raw`, but returns the error text instead of panicking.
    pub async fn try_raw(&self, sql: &str) -> Result<(), String> {
        let r = match &self.url {
            DatabaseUrl::Sqlite(p) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display()))
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .map(|_| ())
            }
            DatabaseUrl::Postgres(u) => {
                let mut c = sqlx::PgConnection::connect(u).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .map(|_| ())
            }
        };
        r.map_err(|e| e.to_string())
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((admin, db)) = self.pg_admin
            && let Ok(mut c) = sqlx::PgConnection::connect(&admin).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("TRELLIS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("t.db"));
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
    TestDb {
        store,
        url,
        _dir: Some(dir),
        pg_admin: None,
    }
}

pub async fn postgres() -> Option<TestDb> {
    let admin = pg_admin_url();
    let mut c = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("TRELLIS_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!("TRELLIS_REQUIRE_PG=1 but PostgreSQL at {admin} is unreachable: {e}");
            }
            eprintln!(
                "\n*** SKIPPED: PostgreSQL half of the storage contract: {admin} unreachable ({e}). Set TRELLIS_TEST_PG_URL. ***\n"
            );
            return None;
        }
    };
    let db = format!("trellis_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut c)
        .await
        .unwrap();
    let mut u = url::Url::parse(&admin).unwrap();
    u.set_path(&db);
    let url = DatabaseUrl::Postgres(u.to_string());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    Some(TestDb {
        store,
        url,
        _dir: None,
        pg_admin: Some((admin, db)),
    })
}

/// Every backend available here.
pub async fn backends() -> Vec<TestDb> {
    let mut v = vec![sqlite().await];
    if let Some(pg) = postgres().await {
        v.push(pg);
    }
    v
}

/// Runs `body` against each backend, naming the backend on failure.
#[macro_export]
macro_rules! on_each_backend {
    (|$db:ident| $body:block) => {
        for $db in $crate::harness::backends().await {
            eprintln!("-- backend: {}", $db.name());
            $body
            $db.cleanup().await;
        }
    };
}
