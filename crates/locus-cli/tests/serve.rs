//! `locus serve` against a running server on the loopback interface: translations in input
//! order and equal to `locus translate`'s (alone or batched with concurrent requests of other
//! options), the health, metrics and page routes, every bad request's status code, a full queue
//! (503 with Retry-After), a timeout (504), and SIGTERM finishing the requests in flight before
//! exiting 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{data_overrides, locus, stderr, tiny_config, train_args, write_corpus};
use serde_json::{json, Value};

/// A tiny checkpoint trained once for every test in this file.
fn checkpoint() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_corpus(dir.path());
        let config = tiny_config().display().to_string();
        let mut overrides = data_overrides(dir.path());
        overrides.push("train.max_steps=10".into());
        let out = locus(&train_args(&config, &overrides));
        assert!(out.status.success(), "train failed: {}", stderr(&out));
        let best = dir.path().join("run/best");
        (dir, best)
    })
    .1
}

/// A running `locus serve` on a free loopback port; killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let checkpoint = checkpoint().display().to_string();
        let mut args = vec!["serve", "--device", "cpu", "--port", "0", "--checkpoint", &checkpoint];
        args.extend(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
            .args(&args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting locus serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("locus serve exited before listening").unwrap();
            if let Some(address) = line.strip_prefix("locus serve: listening on http://") {
                break address.to_owned();
            }
        };
        // Keep reading stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, address }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Status and body of a request (`body` as JSON text for a POST).
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value, Option<String>) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = match body {
            Some(body) => agent.post(&self.url(path)).header("content-type", "application/json").send(body),
            None if method == "GET" => agent.get(&self.url(path)).call(),
            None => panic!("{method} needs a body here"),
        }
        .unwrap();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let text = response.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (response.status().as_u16(), value, retry_after)
    }

    fn translate(&self, body: &Value) -> (u16, Value) {
        let (status, value, _) = self.call("POST", "/translate", Some(&body.to_string()));
        (status, value)
    }

    /// The raw response (status line first) to `request`, sent as it is.
    fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // The server may answer and close before reading all of a huge body.
        let _ = stream.write_all(request);
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text, _) = self.call("GET", "/metrics", None);
        let text = text.as_str().unwrap().to_owned();
        let line = text.lines().find(|l| l.starts_with(name) && !l.starts_with('#'));
        line.map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `locus translate` on `lines` with `extra` options, one output line per input line.
fn offline(lines: &[&str], extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (checkpoint, input) = (checkpoint().display().to_string(), input.display().to_string());
    let mut args = vec!["translate", "--device", "cpu", "--checkpoint", &checkpoint, "--input", &input];
    args.extend(extra);
    let out = locus(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

const LINES: [&str; 4] =
    ["ein hund läuft über die wiese", "", "zwei kinder", "die wiese ball spielen kinder"];

#[test]
fn translations_match_locus_translate_alone_and_batched() {
    let server = Server::start(&["--max-wait-ms", "20"]);
    assert_eq!(server.call("GET", "/health", None).0, 200);
    let (status, page, _) = server.call("GET", "/", None);
    assert!(status == 200 && page.as_str().unwrap().contains("/translate"));

    let greedy = offline(&LINES, &[]);
    let beam = offline(&LINES, &["--beam", "3"]);
    let (status, answer) = server.translate(&json!({ "text": LINES, "scores": true }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["translations"], json!(greedy));
    assert_eq!(answer["scores"].as_array().unwrap().len(), LINES.len());
    let (status, answer) = server.translate(&json!({ "text": LINES, "beam": 3, "nbest": 2 }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["translations"], json!(beam));
    assert_eq!(answer["nbest"][0].as_array().unwrap().len(), 2);
    assert_eq!(answer["nbest"][0][0]["translation"], answer["translations"][0]);

    // Concurrent requests, one sentence each, greedy and beam mixed, arriving a few
    // milliseconds apart, so that greedy ones join a batch being decoded: each gets its own
    // answer, the one it gets alone.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (server, greedy, beam) = (&server, &greedy, &beam);
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(3 * i as u64));
                    let line = i % LINES.len();
                    let (body, expected) = match i % 3 {
                        2 => (json!({ "text": [LINES[line]], "beam": 3 }), &beam[line]),
                        _ => (json!({ "text": [LINES[line]] }), &greedy[line]),
                    };
                    let (status, answer) = server.translate(&body);
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(answer["translations"], json!([expected]));
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    });
    assert_eq!(server.metric("locus_serve_requests_total{code=\"200\"}"), 18.0);
    assert_eq!(server.metric("locus_serve_sentences_total"), 24.0);
    assert!(server.metric("locus_serve_batch_sentences_count") >= 1.0);
}

#[test]
fn bad_requests_get_their_status_codes() {
    let server =
        Server::start(&["--max-sentences", "3", "--max-sentence-chars", "50", "--max-body-bytes", "2000"]);
    let bad = |body: &str, status: u16, says: &str| {
        let (got, answer, _) = server.call("POST", "/translate", Some(body));
        assert_eq!(got, status, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "{body}: {error}");
    };
    bad("{\"text\": [", 400, "malformed JSON");
    bad("{}", 400, "missing field `text`");
    bad(r#"{"text": "ein hund"}"#, 400, "field `text`");
    bad(r#"{"text": ["ein", 3]}"#, 400, "field `text[1]`");
    bad(r#"{"text": ["ein"], "beam": "four"}"#, 400, "field `beam`");
    bad(r#"{"text": ["ein"], "beem": 4}"#, 400, "unknown field `beem`");
    bad(r#"{"text": ["ein"], "beam": 64}"#, 400, "--max-beam");
    bad(r#"{"text": ["a", "b", "c", "d"]}"#, 413, "--max-sentences");
    bad(&json!({ "text": ["hund ".repeat(20)] }).to_string(), 413, "--max-sentence-chars");
    bad(&json!({ "text": ["a", "a", "a"], "pad": "x".repeat(3000) }).to_string(), 413, "--max-body-bytes");

    let not_utf8 = b"{\"text\": [\"ein \xff hund\"]}";
    let mut request = format!(
        "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        not_utf8.len()
    )
    .into_bytes();
    request.extend(not_utf8);
    let response = server.raw(&request);
    assert!(response.starts_with("HTTP/1.1 400") && response.contains("not UTF-8"), "{response}");
    // A huge body announced up front is refused without reading it all.
    let huge =
        "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{";
    let response = server.raw(huge.as_bytes());
    assert!(response.starts_with("HTTP/1.1 413"), "{response:?}");
    assert_eq!(server.call("GET", "/nowhere", None).0, 404);

    // None of it touched the server's ability to answer.
    let (status, answer) = server.translate(&json!({ "text": ["ein hund"] }));
    assert_eq!(status, 200, "{answer}");
    assert!(server.metric("locus_serve_errors_total{code=\"400\"}") >= 7.0);
}

#[test]
fn a_full_queue_answers_503_and_a_slow_answer_504() {
    // The first request waits 3 s for company in a queue of 2 sentences and times out at 1 s.
    let server = Server::start(&[
        "--max-queue",
        "2",
        "--max-sentences",
        "2",
        "--max-wait-ms",
        "3000",
        "--timeout-ms",
        "1000",
    ]);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| server.translate(&json!({ "text": ["ein hund", "zwei kinder"] })));
        let started = Instant::now();
        while server.metric("locus_serve_queue_sentences") < 2.0 {
            assert!(started.elapsed() < Duration::from_secs(20), "the first request never queued");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (status, answer, retry_after) = server.call("POST", "/translate", Some(r#"{"text": ["ein"]}"#));
        assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{answer}");
        let (status, answer) = first.join().unwrap();
        assert_eq!(status, 504, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("--timeout-ms"));
    });
}

#[test]
fn sigterm_finishes_the_requests_in_flight_and_exits_0() {
    // Requests wait 1.5 s in the queue: SIGTERM comes while all of them are in flight.
    let mut server = Server::start(&["--max-wait-ms", "1500"]);
    let expected = offline(&LINES, &[]);
    std::thread::scope(|scope| {
        let clients: Vec<_> =
            (0..6).map(|_| scope.spawn(|| server.translate(&json!({ "text": LINES })))).collect();
        let started = Instant::now();
        while server.metric("locus_serve_queue_sentences") < (6 * LINES.len()) as f64 {
            assert!(started.elapsed() < Duration::from_secs(20), "the requests never queued");
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        for client in clients {
            let (status, answer) = client.join().unwrap();
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["translations"], json!(expected));
        }
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "locus serve did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(&server.address).is_err(), "still accepting after SIGTERM");
}
