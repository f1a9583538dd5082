use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use tower::ServiceExt as _;
use trellis_domain::{Role, UtcMicros};
use trellis_server::demo::DemoCredentials;
use trellis_server::{AppState, ServerConfig};
use trellis_store::{DatabaseUrl, SessionRow, Store, StoreOptions, Study, Subject};

pub struct TestApp {
    pub store: Store,
    pub router: Router,
    pub creds: DemoCredentials,
    pub study: Study,
    pub subjects: Vec<Subject>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(ServerConfig::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("t.db"));
        // Tests need no power-loss durability; NORMAL keeps the suite fast.
        let store = Store::open(
            &url,
            &StoreOptions {
                create: true,
                sqlite_synchronous_full: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let creds = trellis_server::demo::seed(&store).await.unwrap().unwrap();
        Self::admin_password_changed(&store).await;
        let study = store.studies().await.unwrap().remove(0);
        let subjects = store.subjects(study.id).await.unwrap();
        let router = trellis_server::app(AppState::new(store.clone(), config).unwrap());
        Self {
            store,
            router,
            creds,
            study,
            subjects,
            _dir: dir,
        }
    }

    /// The demo administrator must change the one-time password first; most tests start after that.
    async fn admin_password_changed(store: &Store) {
        let admin = store.user_by_name("admin").await.unwrap().unwrap();
        store
            .write(trellis_store::WriteRequest::new(
                trellis_store::Actor::system(),
                vec![trellis_store::Mutation::SetPassword {
                    user: admin.id,
                    password_hash: admin.password_hash,
                    must_change: false,
                }],
            ))
            .await
            .unwrap();
    }

    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(req).await.unwrap()
    }

    /// A fresh session for `username`; returns (cookie header value, csrf token).
    pub async fn session(&self, username: &str) -> (String, String) {
        let user = self.store.user_by_name(username).await.unwrap().unwrap();
        let token = trellis_server::auth::random_token();
        let csrf = trellis_server::auth::random_token();
        let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
        self.store
            .create_session(&SessionRow {
                token_hash: trellis_server::auth::token_hash(&token),
                user: user.id,
                csrf_token: csrf.clone(),
                created_at: now,
                last_seen_at: now,
                absolute_expires_at: now.plus_seconds(3600),
            })
            .await
            .unwrap();
        (format!("trellis_session={token}"), csrf)
    }

    pub fn username_for(&self, role: Role) -> String {
        if role == Role::Administrator {
            return "admin".into();
        }
        self.creds
            .role_users
            .iter()
            .find(|(_, r)| *r == role)
            .unwrap()
            .0
            .clone()
    }
}

pub async fn body_text(r: Response<Body>) -> String {
    String::from_utf8(
        axum::body::to_bytes(r.into_body(), 10 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

pub async fn body_json(r: Response<Body>) -> serde_json::Value {
    serde_json::from_str(&body_text(r).await).unwrap()
}

pub fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

pub fn json(method: &str, path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub fn form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// One request (JSON body unless a GET); returns the status and the body as JSON (or as a
/// JSON string when it is not JSON).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    cookie: &str,
    body: &str,
) -> (axum::http::StatusCode, serde_json::Value) {
    let r = if method == "GET" {
        app.send(get(path, cookie)).await
    } else {
        app.send(json(method, path, cookie, body)).await
    };
    let status = r.status();
    let text = body_text(r).await;
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, v)
}
