//! The completion of a buffer mapping as a future: wgpu reports it through a callback, which
//! natively fires inside the device poll that waits for it, and in a browser on a later turn
//! of the page's event loop (a blocking wait there would never see it).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Shared by the mapping's callback, which completes it, and the reader, which awaits it.
#[derive(Clone, Default)]
pub(super) struct Mapping(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    result: Option<Result<(), String>>,
    waker: Option<Waker>,
}

impl Mapping {
    /// Called by the map callback: records the outcome and wakes the reader.
    pub(super) fn complete(&self, result: Result<(), String>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.result = Some(result);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl Future for Mapping {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
