//! A scripted remote-write receiver: answers each request as the test's script says (a status, headers, a body
//! size limit, a delay), decodes every body it is sent (snappy + protobuf, its own message definitions: a test
//! oracle shares no code with the sender) and, when it accepts one, forwards it to a real receiver behind it.
//!
//! Remote write 2.0: Debian's receivers read 1.0 only (Prometheus 2.42 and VictoriaMetrics 1.79 take a 2.0 body
//! as an empty 1.0 request and answer 204). By default the receiver forwards every body as it came, so the store
//! behind answers as it would; [`ScriptedReceiver::speak_v2`] makes it a 2.0 receiver in front of a 1.0 store:
//! it reads a 2.0 request (its own message definitions), forwards its series as 1.0 (native histograms in 1.0's
//! `histograms` field), and answers the store's verdict with the 2.0 written-headers.
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

    /// `prometheus.TimeSeries`; a native histogram sample is carried as its bytes (1.0's and 2.0's
    /// `Histogram` share their field numbers).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(bytes = "vec", repeated, tag = "4")]
        pub histograms: Vec<Vec<u8>>,
    }

    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct V2Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<V2TimeSeries>,
    }

    /// `io.prometheus.write.v2.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct V2TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(bytes = "vec", repeated, tag = "3")]
        pub histograms: Vec<Vec<u8>>,
    }

    impl V2Request {
        /// The same series as a 1.0 request (None when a reference points past the symbols).
        pub fn to_v1(&self) -> Option<WriteRequest> {
            let symbol = |at: u32| self.symbols.get(at as usize).cloned();
            let mut timeseries = Vec::new();
            for series in &self.timeseries {
                let mut labels = Vec::new();
                for pair in series.labels_refs.chunks(2) {
                    labels.push(Label { name: symbol(pair[0])?, value: symbol(*pair.get(1)?)? });
                }
                timeseries.push(TimeSeries {
                    labels,
                    samples: series.samples.clone(),
                    histograms: series.histograms.clone(),
                });
            }
            Some(WriteRequest { timeseries })
        }
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
    /// The rounds in the body as the receiver reads it: (sequence number, timestamp ms), in body order (none in
    /// a 2.0 body unless it reads 2.0).
    pub rounds: Vec<(u64, i64)>,
    /// The body's size.
    pub body_len: usize,
    /// Whether it was a 2.0 request (its `Content-Type`).
    pub v2: bool,
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
    /// Read 2.0 requests (see the module documentation); `drop_histograms`: forward them without their native
    /// histograms and say so in the written-headers (a 2.0 receiver that stores none).
    v2: Option<V2Receiver>,
    answered: Vec<Answered>,
}

/// How the receiver reads 2.0.
#[derive(Debug, Clone, Copy)]
struct V2Receiver {
    drop_histograms: bool,
    /// Answer 415 to every 2.0 request instead (a receiver that says it reads no 2.0).
    refuse: bool,
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

    /// Read 2.0 requests as a 2.0 receiver does, in front of the 1.0 store; `drop_histograms`: store no native
    /// histograms and count none written.
    pub fn speak_v2(&self, drop_histograms: bool) {
        self.state.lock().unwrap().v2 = Some(V2Receiver { drop_histograms, refuse: false });
    }

    /// Answer every 2.0 request 415 Unsupported Media Type (and forward 1.0 ones).
    pub fn refuse_v2(&self) {
        self.state.lock().unwrap().v2 = Some(V2Receiver { drop_histograms: false, refuse: true });
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

/// The body as a 1.0 request: itself, or a 2.0 request read back (None when it does not decode).
fn request_of(body: &[u8], v2: bool) -> Option<prompb::WriteRequest> {
    use prost::Message;
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    if v2 {
        prompb::V2Request::decode(raw.as_slice()).ok()?.to_v1()
    } else {
        prompb::WriteRequest::decode(raw.as_slice()).ok()
    }
}

/// The rounds (sequence number, timestamp) a remote-write body carries (`v2`: a 2.0 request's).
pub fn rounds_of(body: &[u8], v2: bool) -> Vec<(u64, i64)> {
    let Some(request) = request_of(body, v2) else { return Vec::new() };
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
        let v2 = request.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("content-type")
                && String::from_utf8_lossy(h.value).contains("io.prometheus.write.v2.Request")
        });
        let (status, mut headers, delay, answer_body, reads_v2) = {
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
            (answer.0, answer.1, state.delay, answer_body, state.v2)
        };
        thread::sleep(delay);
        let mut answer_body = answer_body;
        let status = match (status, upstream, reads_v2.filter(|_| v2)) {
            (0, _, Some(reader)) if reader.refuse => 415,
            (0, Some(url), Some(reader)) => {
                let (status, text, written) = forward_v2(url, &body, reader.drop_histograms);
                if let Some((samples, histograms)) = written {
                    headers.push(("X-Prometheus-Remote-Write-Samples-Written".into(), samples.to_string()));
                    headers.push(("X-Prometheus-Remote-Write-Histograms-Written".into(), histograms.to_string()));
                    headers.push(("X-Prometheus-Remote-Write-Exemplars-Written".into(), "0".into()));
                }
                answer_body = (text, 0);
                status
            }
            (0, Some(url), None) => {
                let (status, text) = forward(url, &body);
                answer_body = (text, 0);
                status
            }
            (0, None, _) => 204,
            (status, _, _) => status,
        };
        state.lock().unwrap().answered.push(Answered {
            status,
            // A 2.0 body to a receiver that reads only 1.0 carries nothing it reads (as the store behind sees it).
            rounds: rounds_of(&body, v2 && reads_v2.is_some()),
            body_len: body.len(),
            v2,
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

/// A 2.0 body read and forwarded as 1.0 (`drop_histograms`: without its native histograms): the store's status,
/// its answer's text, and on success what was written (samples, histograms).
fn forward_v2(url: &str, body: &[u8], drop_histograms: bool) -> (u16, String, Option<(usize, usize)>) {
    use prost::Message;
    let Some(mut request) = request_of(body, true) else { return (400, "not a 2.0 request".into(), None) };
    if drop_histograms {
        request.timeseries.retain(|series| series.histograms.is_empty());
    }
    let samples = request.timeseries.iter().map(|s| s.samples.len()).sum();
    let histograms = request.timeseries.iter().map(|s| s.histograms.len()).sum();
    let v1 = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap();
    let (status, text) = forward(url, &v1);
    let written = (status / 100 == 2).then_some((samples, histograms));
    (status, text, written)
}

/// POST an accepted 1.0 body to the receiver behind: its status (503 when it cannot be reached) and the start
/// of its answer.
fn forward(url: &str, body: &[u8]) -> (u16, String) {
    let response = ureq::post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .config()
        .http_status_as_error(false)
        .build()
        .send(body);
    match response {
        Ok(response) if response.status().is_success() => (204, String::new()),
        Ok(mut response) => {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            (response.status().as_u16(), text.chars().take(200).collect())
        }
        Err(_) => (503, String::new()),
    }
}
