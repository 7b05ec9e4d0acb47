//! Turning a panic while a request is handled into that request's error. A
//! panic that unwinds out of a connection's task drops the connection (for
//! Grafana's gRPC connection, every request on it); caught here, only the
//! request that hit it fails.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::promql::engine::panic_message;

/// Runs `fut`, giving `Err` with the panic's message if polling it panics.
pub async fn catch_panic<T>(fut: impl Future<Output = T>) -> Result<T, String> {
    CatchPanic(Box::pin(fut)).await
}

struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future is not polled again after a panic: its state is never reused.
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_a_value_passes_through() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let r = catch_panic(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("boom at {}", 3);
            }
            1
        })
        .await;
        assert_eq!(r, Err("boom at 3".to_string()));
    }
}
