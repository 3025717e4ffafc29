//! What holds a gateway's port, as the exposure kind reports it (`/api/status`, the page, the doctor), and where
//! that gateway's logs are: on the host, or `docker logs` of the container publishing the port.

use probes::exposure::{self, Endpoint};
use probes::Label;
use serde::{Deserialize, Serialize};

/// What holds a gateway's port, and where that gateway's logs are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// `host_process`, `container_port`, `nat`, `closed` or `unknown`.
    pub kind: String,
    /// For people: the process, its pid and user, the publisher and the container's address.
    pub described: String,
    /// The holding process's pid and name.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Its command name.
    #[serde(default)]
    pub name: Option<String>,
    /// Who it runs as.
    #[serde(default)]
    pub user: Option<String>,
    /// A container port's publisher: `docker-proxy`, `dockerd`, `docker-desktop`, `rootless`.
    #[serde(default)]
    pub publisher: Option<String>,
    /// The container's address, when the publisher says it.
    #[serde(default)]
    pub container_address: Option<String>,
    /// The containers the Docker Engine says publish the port (`docker_socket` set).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Why the Docker Engine could not say, when it was asked and could not.
    #[serde(default)]
    pub docker_error: Option<String>,
    /// Where that gateway's logs are.
    pub logs: String,
}

impl EndpointStatus {
    /// The endpoint of `found` on `port`, with its logs' place.
    pub fn of(found: &exposure::Exposure, port: u16) -> EndpointStatus {
        let endpoint = found.endpoint();
        let process = match &endpoint {
            Endpoint::HostProcess(process) | Endpoint::ContainerPort { process, .. } => Some(process),
            _ => None,
        };
        let (containers, docker_error) = match &found.containers {
            Some(Ok(containers)) => (containers.iter().map(|c| c.name.clone()).collect(), None),
            Some(Err(why)) => (Vec::new(), Some(why.clone())),
            None => (Vec::new(), None),
        };
        let (publisher, container_address) = match &endpoint {
            Endpoint::ContainerPort { publisher, container, .. } => {
                (Some(publisher.label().to_owned()), container.map(|c| c.to_string()))
            }
            _ => (None, None),
        };
        EndpointStatus {
            kind: endpoint.label().to_owned(),
            described: endpoint.describe(),
            pid: process.map(|p| p.pid),
            name: process.map(|p| p.name.clone()),
            user: process.map(|p| p.user.clone()),
            logs: logs_of(&endpoint, &containers, port),
            publisher,
            container_address,
            containers,
            docker_error,
        }
    }
}

/// Where the logs of the gateway behind `endpoint` are: the host's files for a host process, `docker logs` (by
/// name when the Docker Engine named the container) for a container port or a NAT rule.
pub fn logs_of(endpoint: &Endpoint, containers: &[String], port: u16) -> String {
    let by_name = |tool: &str| {
        if containers.is_empty() {
            format!("{tool} logs CONTAINER, the container publishing port {port} ({tool} ps --filter publish={port})")
        } else {
            containers.iter().map(|name| format!("{tool} logs {name}")).collect::<Vec<_>>().join("; ")
        }
    };
    match endpoint {
        Endpoint::HostProcess(process) => format!(
            "the gateway runs on the host ({} pid {}): its logs are /tmp/openclaw/*.jsonl and ~/.openclaw/logs of {}",
            process.name, process.pid, process.user
        ),
        Endpoint::ContainerPort { publisher: exposure::endpoint::Publisher::Rootless, .. } => by_name("podman"),
        Endpoint::ContainerPort { .. } => {
            format!("the gateway runs in a container: {} (not ~/.openclaw/logs on the host)", by_name("docker"))
        }
        Endpoint::Nat => format!(
            "a NAT rule publishes the port, so the gateway runs in a container or another host: {} (nerdctl logs \
             under containerd)",
            by_name("docker")
        ),
        Endpoint::Closed | Endpoint::Unknown(_) => "no gateway holds the port that the exporter can name".to_owned(),
    }
}
