//! The Docker Engine API, read only and opt-in (`[[gateway]] docker_socket`): which containers publish the
//! gateway's port, so the exposure kind and the doctor can name the container (and say `docker logs NAME`)
//! instead of only its address. One request, `GET /containers/json` with the `publish` filter, over the
//! engine's Unix socket; the answer is another process's and is bounded and checked like any other: names and
//! images keep only the characters Docker itself allows, so nothing else reaches a page or a log line.

use std::path::Path;
use std::time::Duration;

/// The largest answer read (a host publishing one port has one or two containers: a few KiB).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A container that publishes the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// Its id, the 12 characters `docker ps` shows.
    pub id: String,
    /// Its image, as Docker reports it.
    pub image: String,
}

/// The containers publishing `port`, asked of the engine at `socket` within `timeout`; why not, for the
/// status and the doctor.
pub async fn publishing(socket: &Path, port: u16, timeout: Duration) -> Result<Vec<Container>, String> {
    match tokio::time::timeout(timeout, ask(socket, port)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("the Docker Engine at {} did not answer within {timeout:?}", socket.display())),
    }
}

#[cfg(unix)]
async fn ask(socket: &Path, port: u16) -> Result<Vec<Container>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|err| format!("cannot connect to the Docker Engine at {}: {err}", socket.display()))?;
    // filters={"publish":["PORT"]}, URL-encoded. HTTP/1.0: the engine closes after one answer, never chunked.
    let request = format!(
        "GET /containers/json?filters=%7B%22publish%22%3A%5B%22{port}%22%5D%7D HTTP/1.0\r\nHost: docker\r\nUser-Agent: {}\r\n\r\n",
        crate::http::USER_AGENT
    );
    stream.write_all(request.as_bytes()).await.map_err(|err| format!("the Docker Engine: {err}"))?;
    let mut answer = Vec::with_capacity(4096);
    (&mut stream)
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut answer)
        .await
        .map_err(|err| format!("the Docker Engine: {err}"))?;
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(format!("the Docker Engine's answer is larger than {MAX_ANSWER_BYTES} bytes"));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let body = match response.parse(&answer) {
        Ok(httparse::Status::Complete(head)) => &answer[head..],
        _ => return Err("the Docker Engine's answer is not HTTP".into()),
    };
    match response.code {
        Some(200) => containers(body),
        Some(code) => Err(format!("the Docker Engine answered HTTP {code}")),
        None => Err("the Docker Engine's answer has no status".into()),
    }
}

#[cfg(not(unix))]
async fn ask(socket: &Path, _port: u16) -> Result<Vec<Container>, String> {
    Err(format!("the Docker Engine is read over a Unix socket, which {} is not on this system", socket.display()))
}

/// The containers in a `/containers/json` body: each one's first name, short id and image, each kept to the
/// characters Docker allows in it (a name `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; an image adds `/:@`), 128 at most.
/// An entry without a usable name is skipped.
pub fn containers(body: &[u8]) -> Result<Vec<Container>, String> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| "the Docker Engine's answer is not a list of containers")?;
    let clean = |value: Option<&serde_json::Value>, extra: &str| -> String {
        let text = value.and_then(serde_json::Value::as_str).unwrap_or_default();
        let text = text.strip_prefix('/').unwrap_or(text);
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c) || extra.contains(c);
        if text.is_empty() || text.len() > 128 || !text.chars().all(allowed) {
            String::new()
        } else {
            text.to_owned()
        }
    };
    Ok(entries
        .iter()
        .filter_map(|entry| {
            let name = clean(entry.get("Names").and_then(|names| names.get(0)), "");
            let id: String = clean(entry.get("Id"), "").chars().take(12).collect();
            let image = clean(entry.get("Image"), "/:@");
            (!name.is_empty()).then_some(Container { name, id, image })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_images_are_read_and_kept_to_what_docker_allows() {
        let body = br#"[
            {"Id": "4f3c2b1a0e9d8c7b6a5f", "Names": ["/openclaw-gateway"], "Image": "ghcr.io/openclaw/gateway:2026.9"},
            {"Id": "x", "Names": ["/<script>alert(1)</script>"], "Image": "evil"},
            {"Id": "y", "Names": [], "Image": "none"}
        ]"#;
        let found = containers(body).unwrap();
        assert_eq!(
            found,
            vec![Container {
                name: "openclaw-gateway".into(),
                id: "4f3c2b1a0e9d".into(),
                image: "ghcr.io/openclaw/gateway:2026.9".into()
            }]
        );
        assert!(containers(b"{\"message\": \"no\"}").is_err());
        assert!(containers(b"not json").is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_engine_is_asked_with_the_publish_filter_over_its_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let engine = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let read = stream.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..read]).into_owned();
            let body = r#"[{"Id": "abcdef0123456789", "Names": ["/gw"], "Image": "node:22"}]"#;
            let answer = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
            stream.write_all(answer.as_bytes()).await.unwrap();
            request
        });
        let found = publishing(&path, 18789, Duration::from_secs(5)).await.unwrap();
        assert_eq!(found[0].name, "gw");
        let request = engine.await.unwrap();
        assert!(
            request.starts_with("GET /containers/json?filters=%7B%22publish%22%3A%5B%2218789%22%5D%7D "),
            "{request}"
        );
        let missing = publishing(&dir.path().join("none.sock"), 1, Duration::from_secs(1)).await.unwrap_err();
        assert!(missing.contains("none.sock"), "{missing}");
    }
}
