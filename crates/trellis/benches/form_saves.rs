//! Form saves end to end over HTTP: 32 concurrent clients save a 20-item case report
//! form with 10 edit checks through `PUT /api/v1/.../forms/{form}` on keep-alive
//! connections, against `trellis serve` (a separate process), on SQLite and, when a
//! server answers, on PostgreSQL. Every save changes all 20 values (so it carries a reason
//! and writes 20 audit entries), runs every check on the server, and is durable before it
//! is acknowledged. Prints saves per second and latency percentiles; the issue's target
//! is 2,000 saves/s with p99 under 100 ms on each database.
//!
//! `cargo bench -p trellis --bench form_saves` (`BENCH_SECONDS`, default 10).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Conn, ScratchPg, Server, bench_seconds, report_clients, stop_and_report};

const CLIENTS: usize = 32;
const STUDY: &str = "BENCH-FORM";
/// The form instance every client saves (one subject each), as one URL path segment.
const FORM: &str = "SE.VISIT%5B1%5D%2FF.BENCH%5B1%5D";

/// 20 items: a date, ten integers, five decimals, two texts, two coded; 10 range checks
/// (hard and soft limits, cross-item expressions, a date against today).
fn study_odm() -> String {
    let mut refs = String::new();
    let mut defs = String::new();
    let check = |comparator: Option<&str>, soft_hard: &str, body: &str, msg: &str| {
        let comparator = comparator.map_or(String::new(), |c| format!(" Comparator=\"{c}\""));
        format!(
            "<RangeCheck{comparator} SoftHard=\"{soft_hard}\">{body}<ErrorMessage><TranslatedText xml:lang=\"en\">{msg}</TranslatedText></ErrorMessage></RangeCheck>"
        )
    };
    let range = |comparator: &str, soft_hard: &str, v: &str, msg: &str| {
        check(
            Some(comparator),
            soft_hard,
            &format!("<CheckValue>{v}</CheckValue>"),
            msg,
        )
    };
    let expr = |soft_hard: &str, e: &str, msg: &str| {
        check(
            None,
            soft_hard,
            &format!("<FormalExpression Context=\"Trellis\">{e}</FormalExpression>"),
            msg,
        )
    };
    let mut item = |oid: &str, ty: &str, extra: &str, checks: &[String]| {
        let n = refs.matches("<ItemRef").count() + 1;
        refs.push_str(&format!(
            "<ItemRef ItemOID=\"{oid}\" OrderNumber=\"{n}\" Mandatory=\"Yes\"/>\n"
        ));
        defs.push_str(&format!(
            "<ItemDef OID=\"{oid}\" Name=\"{name}\" DataType=\"{ty}\"{extra}><Question><TranslatedText xml:lang=\"en\">{name}</TranslatedText></Question>{}{}</ItemDef>\n",
            if ty == "text" && oid.starts_with("I.C") { "<CodeListRef CodeListOID=\"CL.NY\"/>" } else { "" },
            checks.concat(),
            name = oid.trim_start_matches("I."),
        ));
    };
    item(
        "I.VISDAT",
        "date",
        "",
        &[expr(
            "Hard",
            "{I.VISDAT} &lt;= today()",
            "Visit date is in the future",
        )],
    );
    for i in 1..=10 {
        let checks = match i {
            1 => vec![
                range("GE", "Hard", "0", "N01 must be at least 0"),
                range("LE", "Hard", "500", "N01 must be at most 500"),
            ],
            2 => vec![range("GE", "Soft", "0", "N02 below 0: confirm")],
            3 => vec![range("LE", "Soft", "1000", "N03 above 1000: confirm")],
            4 => vec![expr(
                "Soft",
                "{I.N04} &lt; {I.N05}",
                "N04 must be below N05",
            )],
            6 => vec![expr(
                "Soft",
                "{I.N06} &gt;= 0 and {I.N07} &gt;= 0",
                "N06 and N07 must not be negative",
            )],
            _ => vec![],
        };
        item(&format!("I.N{i:02}"), "integer", " Length=\"4\"", &checks);
    }
    for i in 1..=5 {
        let checks = match i {
            1 => vec![range("GE", "Hard", "0", "F01 must be at least 0")],
            2 => vec![range("LE", "Soft", "100", "F02 above 100: confirm")],
            3 => vec![expr(
                "Soft",
                "{I.F03} + {I.F04} &lt; 1000",
                "F03 + F04 too large",
            )],
            _ => vec![],
        };
        item(
            &format!("I.F{i:02}"),
            "float",
            " Length=\"6\" SignificantDigits=\"1\"",
            &checks,
        );
    }
    item("I.T01", "text", " Length=\"40\"", &[]);
    item("I.T02", "text", " Length=\"40\"", &[]);
    item("I.C01", "text", " Length=\"1\"", &[]);
    item("I.C02", "text", " Length=\"1\"", &[]);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Snapshot" FileOID="bench" CreationDateTime="2026-01-01T00:00:00Z" ODMVersion="1.3.2">
<Study OID="{STUDY}"><GlobalVariables><StudyName>{STUDY}</StudyName><StudyDescription>Form-save benchmark</StudyDescription><ProtocolName>{STUDY}</ProtocolName></GlobalVariables>
<MetaDataVersion OID="MDV.1" Name="v1">
<Protocol><StudyEventRef StudyEventOID="SE.VISIT" OrderNumber="1" Mandatory="Yes"/></Protocol>
<StudyEventDef OID="SE.VISIT" Name="Visit" Repeating="No" Type="Scheduled"><FormRef FormOID="F.BENCH" OrderNumber="1" Mandatory="Yes"/></StudyEventDef>
<FormDef OID="F.BENCH" Name="Bench form" Repeating="No"><ItemGroupRef ItemGroupOID="IG.BENCH" Mandatory="Yes"/></FormDef>
<ItemGroupDef OID="IG.BENCH" Name="Bench" Repeating="No">
{refs}</ItemGroupDef>
{defs}<CodeList OID="CL.NY" Name="No Yes" DataType="text"><CodeListItem CodedValue="N"><Decode><TranslatedText xml:lang="en">No</TranslatedText></Decode></CodeListItem><CodeListItem CodedValue="Y"><Decode><TranslatedText xml:lang="en">Yes</TranslatedText></Decode></CodeListItem></CodeList>
</MetaDataVersion></Study></ODM>
"#
    )
}

/// The JSON body of a save: value set `flip` (0 or 1; every item differs between the two,
/// and every check holds in both).
fn save_body(flip: usize, first: bool) -> String {
    let mut values = vec![format!(
        "\"IG.BENCH[1]/I.VISDAT\": \"2026-01-{:02}\"",
        10 + flip
    )];
    for i in 1..=10 {
        values.push(format!(
            "\"IG.BENCH[1]/I.N{i:02}\": \"{}\"",
            10 * (flip + 1) + i
        ));
    }
    for i in 1..=5 {
        values.push(format!(
            "\"IG.BENCH[1]/I.F{i:02}\": \"{}.5\"",
            10 * (flip + 1) + i
        ));
    }
    for i in 1..=2 {
        values.push(format!(
            "\"IG.BENCH[1]/I.T0{i}\": \"{}\"",
            ["alpha", "beta"][flip]
        ));
        values.push(format!("\"IG.BENCH[1]/I.C0{i}\": \"{}\"", ["Y", "N"][flip]));
    }
    let reason = if first {
        String::new()
    } else {
        ", \"reason\": \"Corrected against source\"".into()
    };
    format!("{{\"values\": {{{}}}{reason}}}", values.join(", "))
}

async fn run(database_url: &str, secs: Duration) {
    let server = Server::start(database_url);
    std::fs::write(server.path("bench.xml"), study_odm()).unwrap();
    server.run(&[
        "study",
        "import-odm",
        "bench.xml",
        "--study",
        STUDY,
        "--sponsor",
        "Acme Therapeutics",
    ]);
    server.run(&[
        "study",
        "add-site",
        "--study",
        STUDY,
        "--code",
        "B-01",
        "--name",
        "Bench site",
        "--country",
        "DE",
        "--time-zone",
        "Europe/Berlin",
    ]);
    server.run(&[
        "user",
        "grant",
        "coordinator",
        "site_coordinator",
        "--study",
        STUDY,
        "--site",
        "B-01",
    ]);
    let token = server
        .run(&["user", "token", "coordinator", "--name", "bench"])
        .trim()
        .to_owned();
    let port = server.port;
    let mut c = Conn::open(port).await;
    let studies = c.get_json("/api/v1/studies", &token).await;
    let study = studies["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == STUDY)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sites = c
        .get_json(&format!("/api/v1/studies/{study}/sites"), &token)
        .await;
    let site = sites["sites"][0]["id"].as_str().unwrap().to_owned();
    let mut subjects = Vec::new();
    for k in 0..CLIENTS {
        let (status, body) = c
            .send(
                "POST",
                &format!("/api/v1/studies/{study}/subjects"),
                &token,
                &format!("{{\"site\": \"{site}\", \"screening_number\": \"B-01-{k:03}\"}}"),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        subjects.push(v["id"].as_str().unwrap().to_owned());
    }

    println!(
        "form saves over HTTP on {}: {CLIENTS} clients, keep-alive, 20 items and 10 edit checks per save, all 20 values changed (+20 audit entries, durable), {}s",
        database_url.split(':').next().unwrap_or("?"),
        secs.as_secs()
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for subject in subjects {
        let (token, path) = (
            token.clone(),
            format!("/api/v1/studies/{study}/subjects/{subject}/forms/{FORM}"),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port).await;
            // Initial entry (no reason needed) is not timed: the loop measures changes.
            let (status, text) = c.send("PUT", &path, &token, &save_body(0, true)).await;
            assert_eq!(status, 200, "{text}");
            let mut lat = Vec::new();
            let mut n = 1;
            while start.elapsed() < secs {
                let body = save_body(n % 2, false);
                let t0 = Instant::now();
                let (status, text) = c.send("PUT", &path, &token, &body).await;
                lat.push(t0.elapsed());
                assert_eq!(status, 200, "{text}");
                assert!(text.contains("\"audit_entries\":20"), "{text}");
                n += 1;
            }
            lat
        }));
    }
    report_clients(tasks, start, "; target 2,000/s, p99 < 100 ms").await;
    stop_and_report(server);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let secs = bench_seconds();
    run("sqlite://data/trellis.db", secs).await;
    if let Some(pg) = ScratchPg::create("form_saves").await {
        run(&pg.url, secs).await;
        pg.drop().await;
    }
}
