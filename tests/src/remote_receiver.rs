//! A scripted remote-write receiver: answers each request as the test's script says (a status, headers, a body
//! size limit, a delay), decodes every body it is sent (snappy + protobuf, its own message definitions: a test
//! oracle shares no code with the sender) and, when it accepts one, forwards it to a real receiver behind it.
//!
//! The exporter puts the round's queue sequence number in every round
//! (`openclaw_exporter_remote_write_round_sequence`), so the receiver knows exactly which rounds each request
//! carried.

use super::*;

/// The series carrying each round's sequence number.
pub const ROUND_SEQUENCE: &str = "openclaw_exporter_remote_write_round_sequence";

mod prompb {
    //! `prompb/remote.proto` and `types.proto`, as far as a receiver reads them.

    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `prometheus.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `prometheus.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// One step of a script: answer `count` requests with `status` and `headers`; 0 means accept (204, and
/// forward to the receiver behind, if any).
#[derive(Debug, Clone)]
pub struct Step {
    /// The status to answer, or 0 to accept.
    pub status: u16,
    /// Extra answer headers (`Retry-After`, `Location`).
    pub headers: Vec<(String, String)>,
    /// How many requests this step answers.
    pub count: usize,
    /// The answer's body: this text, then this many filler bytes (streamed, never held whole).
    pub body: (String, usize),
}

impl Step {
    /// Answer `count` requests with `status`.
    pub fn status(status: u16, count: usize) -> Step {
        Step { status, headers: Vec::new(), count, body: (String::new(), 0) }
    }

    /// The same answering with `text` and then `filler` bytes of `x` as its body.
    pub fn with_body(mut self, text: &str, filler: usize) -> Step {
        self.body = (text.to_owned(), filler);
        self
    }

    /// The same with a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Step {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// One request the receiver answered.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The status it answered.
    pub status: u16,
    /// The rounds in the body: (sequence number, timestamp ms), in body order.
    pub rounds: Vec<(u64, i64)>,
    /// The body's size.
    pub body_len: usize,
    /// When it answered.
    pub at: Instant,
}

#[derive(Default)]
struct State {
    script: std::collections::VecDeque<Step>,
    /// Bodies over this many bytes are answered 413.
    max_body: Option<usize>,
    /// Every n-th request (counted from 1) is answered 503, when the script is empty.
    fail_every: Option<usize>,
    /// Each answer waits this long first.
    delay: Duration,
    answered: Vec<Answered>,
}

/// The receiver; see the module documentation.
pub struct ScriptedReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ScriptedReceiver {
    /// Listen on a free loopback port; accepted bodies are forwarded to `upstream` (a remote-write URL).
    pub fn start(upstream: Option<String>) -> ScriptedReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let upstream = upstream.clone();
                thread::spawn(move || serve(stream, &state, upstream.as_deref()));
            }
        });
        ScriptedReceiver { addr, state }
    }

    /// The remote-write URL.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Replace the script (an empty one accepts everything).
    pub fn script(&self, steps: Vec<Step>) {
        self.state.lock().unwrap().script = steps.into();
    }

    /// Answer bodies over `limit` bytes with 413 (None: no limit).
    pub fn limit_body(&self, limit: Option<usize>) {
        self.state.lock().unwrap().max_body = limit;
    }

    /// Answer every `n`-th request 503 while the script is empty (None: never).
    pub fn fail_every(&self, n: Option<usize>) {
        self.state.lock().unwrap().fail_every = n;
    }

    /// Wait `delay` before each answer.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Every request answered so far.
    pub fn answered(&self) -> Vec<Answered> {
        self.state.lock().unwrap().answered.clone()
    }

    /// How many requests were answered `status`.
    pub fn count(&self, status: u16) -> usize {
        self.state.lock().unwrap().answered.iter().filter(|a| a.status == status).count()
    }

    /// Wait until `condition` holds of the answered requests, or panic naming `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&[Answered]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(&self.state.lock().unwrap().answered) {
                return;
            }
            let statuses: Vec<u16> = self.answered().iter().map(|a| a.status).collect();
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {what}; answered {statuses:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The rounds (sequence number, timestamp) a remote-write body carries.
pub fn rounds_of(body: &[u8]) -> Vec<(u64, i64)> {
    use prost::Message;
    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(body) else { return Vec::new() };
    let Ok(request) = prompb::WriteRequest::decode(raw.as_slice()) else { return Vec::new() };
    request
        .timeseries
        .iter()
        .filter(|series| series.labels.iter().any(|l| l.name == "__name__" && l.value == ROUND_SEQUENCE))
        .flat_map(|series| series.samples.iter().map(|s| (s.value as u64, s.timestamp)))
        .collect()
}

fn serve(stream: TcpStream, state: &Mutex<State>, upstream: Option<&str>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let end = line == "\r\n";
            head.extend_from_slice(line.as_bytes());
            if end {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if request.parse(&head).is_err() {
            return;
        }
        let length = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, headers, delay, answer_body) = {
            let mut state = state.lock().unwrap();
            let seen = state.answered.len() + 1;
            let mut answer = (0, Vec::new());
            let mut answer_body = (String::new(), 0);
            if let Some(step) = state.script.front_mut() {
                answer = (step.status, step.headers.clone());
                answer_body = step.body.clone();
                step.count -= 1;
                if step.count == 0 {
                    state.script.pop_front();
                }
            } else if state.fail_every.is_some_and(|n| seen.is_multiple_of(n)) {
                answer = (503, Vec::new());
            }
            if answer.0 == 0 && state.max_body.is_some_and(|limit| body.len() > limit) {
                answer = (413, Vec::new());
            }
            (answer.0, answer.1, state.delay, answer_body)
        };
        thread::sleep(delay);
        let status = match (status, upstream) {
            (0, Some(url)) => forward(url, &body),
            (0, None) => 204,
            (status, _) => status,
        };
        state.lock().unwrap().answered.push(Answered {
            status,
            rounds: rounds_of(&body),
            body_len: body.len(),
            at: Instant::now(),
        });
        let (text, filler) = answer_body;
        let mut answer = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\n", text.len() + filler);
        for (name, value) in &headers {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str("\r\n");
        answer.push_str(&text);
        use std::io::Write;
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![b'x'; 1 << 20];
        let mut left = filler;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                // The client stopped reading (as it should, past what it keeps).
                return;
            }
            left -= n;
        }
    }
}

/// POST an accepted body to the receiver behind; its status (503 when it cannot be reached).
fn forward(url: &str, body: &[u8]) -> u16 {
    let response = ureq::post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .config()
        .http_status_as_error(false)
        .build()
        .send(body);
    match response {
        Ok(response) if response.status().is_success() => 204,
        Ok(response) => response.status().as_u16(),
        Err(_) => 503,
    }
}
