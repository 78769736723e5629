//! A `hearth serve` child process on 127.0.0.1 and a minimal HTTP/1.1
//! client over `std::net`, for the server tests (no client library: the
//! tests need to send broken bytes and drop connections mid-response).

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub key: Option<String>,
    log: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Server {
    /// Starts `hearth serve MODEL --port 0 ARGS` and waits until /health is
    /// 200; `None` (skip) without the model.
    pub fn start(args: &[&str]) -> Option<Server> {
        Server::start_with_env(args, &[])
    }

    /// [`start`](Self::start) with these environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Option<Server> {
        let model = hearth_tests::model_path()?;
        Some(Server::spawn(&model, args, env))
    }

    /// Like [`start`](Self::start), serving the model file at `model`.
    pub fn start_with(model: &std::path::Path, args: &[&str]) -> Server {
        Server::spawn(model, args, &[])
    }

    fn spawn(model: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("serve")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearth serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the server printed its address");
            if let Some(a) = line.strip_prefix("hearth: listening on http://") {
                break a.to_string();
            }
        };
        let key = args
            .iter()
            .position(|&a| a == "--api-key")
            .map(|i| args[i + 1].to_string());
        let s = Server {
            child,
            addr,
            key,
            log: std::sync::Mutex::new(rx),
        };
        let t0 = Instant::now();
        loop {
            if s.get("/health").status == 200 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "model load timed out"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn auth(&self) -> Vec<(String, String)> {
        self.key
            .iter()
            .map(|k| ("Authorization".to_string(), format!("Bearer {k}")))
            .collect()
    }

    pub fn get(&self, path: &str) -> Resp {
        let h = self.auth();
        request(&self.addr, "GET", path, &h, b"").expect("GET")
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.post_raw(path, body.to_string().as_bytes())
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        let h = self.auth();
        request(&self.addr, "POST", path, &h, body).expect("POST")
    }

    /// A metric's value from /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} in {text}"))
    }

    /// Waits (up to `secs`) until `cond` holds.
    pub fn wait_for(&self, secs: u64, what: &str, mut cond: impl FnMut(&Server) -> bool) {
        let t0 = Instant::now();
        while !cond(self) {
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lines the server printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.text()))
    }
    /// The `data:` payloads of a server-sent event stream.
    pub fn sse(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
    /// Asserts an OpenAI-shaped error with this status; returns its message.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
        e["message"].as_str().unwrap().to_string()
    }
}

pub fn request_head(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    len: usize,
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One request on a fresh connection; the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut msg = request_head(addr, method, path, headers, body.len()).into_bytes();
    msg.extend_from_slice(body);
    // A server may answer (413) and close before reading the whole body.
    let _ = s.write_all(&msg);
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body (as much as is complete).
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// Opens a streaming request and reads until `n` SSE `data:` events have
/// arrived; returns the open connection (drop it to disconnect).
pub fn open_stream(server: &Server, path: &str, body: &Value, n: usize) -> TcpStream {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.to_string();
    let h = server.auth();
    let mut msg = request_head(&server.addr, "POST", path, &h, body.len()).into_bytes();
    msg.extend_from_slice(body.as_bytes());
    s.write_all(&msg).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&got).matches("data: ").count() < n {
        let k = s.read(&mut buf).unwrap();
        assert!(
            k > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..k]);
    }
    s
}

/// The text of a streamed chat or text completion, and its finish reason.
pub fn stream_text(events: &[String]) -> (String, Option<String>) {
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let mut text = String::new();
    let mut finish = None;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        for c in v["choices"].as_array().unwrap() {
            if let Some(t) = c["delta"]["content"].as_str().or(c["text"].as_str()) {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (text, finish)
}

pub fn chat_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}
