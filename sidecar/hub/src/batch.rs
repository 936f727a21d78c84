//! JSON-RPC batches, answered side by side.
//!
//! A sidecar sends the grants and releases its agents are waiting on at the same moment as one batch (one
//! WebSocket frame each way instead of one per call). jsonrpsee answers a batch's calls one after another;
//! here they run together, so each joins its project's next decision (one etcd Txn for all of them) instead
//! of waiting for the one before it to be written.

use std::future::Future;

use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::core::server::{BatchResponseBuilder, MethodResponse};
use jsonrpsee::types::Request;

/// The most bytes one batch's answer may take (jsonrpsee's own limit for any answer).
const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;

/// The RPC middleware that runs a batch's calls side by side; single calls pass through untouched.
#[derive(Clone)]
pub(crate) struct SideBySide<S>(pub(crate) S);

impl<S> RpcServiceT for SideBySide<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.0.call(request)
    }

    fn notification<'a>(&self, notification: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.0.notification(notification)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let service = self.0.clone();
        async move {
            let entries = batch.into_iter().map(|entry| {
                let service = service.clone();
                async move {
                    match entry {
                        Ok(BatchEntry::Call(request)) => Some(service.call(request).await),
                        Ok(BatchEntry::Notification(notification)) => {
                            service.notification(notification).await;
                            None
                        }
                        Err(invalid) => {
                            let (error, id) = invalid.into_parts();
                            Some(MethodResponse::error(id, error))
                        }
                    }
                }
            });
            let answered = futures::future::join_all(entries).await;
            let notified_only = !answered.is_empty() && answered.iter().all(Option::is_none);
            if notified_only {
                return MethodResponse::notification();
            }
            let mut answers = BatchResponseBuilder::new_with_limit(MAX_ANSWER_BYTES);
            for answer in answered.into_iter().flatten() {
                if let Err(too_big) = answers.append(answer) {
                    return too_big;
                }
            }
            MethodResponse::from_batch(answers.finish())
        }
    }
}
