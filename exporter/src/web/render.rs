//! The recorder rendered for the web (`/metrics`, `/api/status`, the page): on the web's blocking pool, one
//! render at a time, and coalesced: every request that asks for the same body while one is being made (or
//! waits its turn) gets that one, so a thousand scrapes at once cost one render (issue 38: four clients
//! pipelining 16 scrapes each queued 64 renders, and the scraper's waited behind them all). A body may then
//! be as old as one render takes, which is what any scrape sees anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, Semaphore};

use crate::record::Recorder;

/// A render's outcome, shared by every request that waited for it.
pub type Rendered = Result<Bytes, RenderFailed>;

/// Why a render gave no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFailed {
    /// The render panicked (a bug; the request gets a 500).
    Panicked,
}

/// The renders in flight, by what they make, behind the one render permit.
pub struct Renders {
    permit: Semaphore,
    inflight: Mutex<HashMap<String, broadcast::Sender<Rendered>>>,
}

impl Renders {
    /// No render in flight; one at a time.
    pub fn new() -> Arc<Renders> {
        Arc::new(Renders { permit: Semaphore::new(1), inflight: Mutex::default() })
    }

    /// The body `key` names: the one being made when there is one, else a new render of `make` (on the blocking
    /// pool, after the renders ahead of it). The render runs to its end even when every request waiting for
    /// it is gone, so a client that disconnects cannot leave the others waiting.
    pub async fn render(
        self: &Arc<Self>,
        key: String,
        recorder: &Arc<Recorder>,
        make: impl FnOnce(&Recorder) -> Vec<u8> + Send + 'static,
    ) -> Rendered {
        let mut waiting = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&key) {
                Some(sender) => sender.subscribe(),
                None => {
                    let (sender, receiver) = broadcast::channel(1);
                    inflight.insert(key.clone(), sender.clone());
                    let (renders, recorder) = (self.clone(), recorder.clone());
                    tokio::spawn(async move {
                        let rendered = match renders.permit.acquire().await {
                            Ok(_permit) => tokio::task::spawn_blocking(move || make(&recorder))
                                .await
                                .map(Bytes::from)
                                .map_err(|_| RenderFailed::Panicked),
                            // The permit is never closed.
                            Err(_) => Err(RenderFailed::Panicked),
                        };
                        // Out of the map before the answer goes: a request arriving now starts a fresh render.
                        lock(&renders.inflight).remove(&key);
                        let _ = sender.send(rendered);
                    });
                    receiver
                }
            }
        };
        waiting.recv().await.unwrap_or(Err(RenderFailed::Panicked))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn requests_waiting_for_the_same_body_share_one_render() {
        let renders = Renders::new();
        let recorder = Arc::new(Recorder::new());
        let made = Arc::new(AtomicUsize::new(0));
        // The first render holds the permit until released, so the others queue behind it.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = {
            let (renders, recorder) = (renders.clone(), recorder.clone());
            tokio::spawn(async move {
                renders
                    .render("slow".into(), &recorder, move |_| {
                        let _ = hold.recv();
                        "slow".into()
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let (renders, recorder, made) = (renders.clone(), recorder.clone(), made.clone());
            waiters.push(tokio::spawn(async move {
                renders
                    .render("metrics".into(), &recorder, move |_| {
                        made.fetch_add(1, Ordering::SeqCst);
                        "body".into()
                    })
                    .await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(Bytes::from("slow")));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(Bytes::from("body")));
        }
        assert_eq!(made.load(Ordering::SeqCst), 1, "ten requests, one render");
        // Once answered, the next request renders afresh.
        let made_again = made.clone();
        let again = renders
            .render("metrics".into(), &recorder, move |_| {
                made_again.fetch_add(1, Ordering::SeqCst);
                "fresh".into()
            })
            .await;
        assert_eq!(again, Ok(Bytes::from("fresh")));
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }
}
