//! The embedded store's writer as a child of the node supervisor. The
//! writer is a blocking loop on a thread of the blocking pool; this actor
//! starts it and fails when it dies, so the supervisor starts it again.
//! Requests that arrive meanwhile wait in the store's channel: none is lost;
//! only the batch being committed when it died fails (`451 4.3.0`).

use std::sync::Arc;

use ferry_store::embedded::StoreWriter;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::session::panic_message;

#[derive(Clone)]
pub struct Writer;

pub enum WriterMsg {
    /// The writer loop ended: a panic (Some), or the store closed (None).
    Ended(Option<String>),
}

impl Actor for Writer {
    type Msg = WriterMsg;
    type State = ();
    type Arguments = Arc<StoreWriter>;

    async fn pre_start(&self, myself: ActorRef<WriterMsg>, writer: Arc<StoreWriter>) -> Result<(), ActorProcessingErr> {
        let running = tokio::task::spawn_blocking(move || writer.run());
        tokio::spawn(async move {
            let panicked = running.await.err().map(|e| match e.try_into_panic() {
                Ok(panic) => panic_message(panic.as_ref()),
                Err(e) => e.to_string(),
            });
            let _ = myself.cast(WriterMsg::Ended(panicked));
        });
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<WriterMsg>, msg: WriterMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            WriterMsg::Ended(Some(panic)) => Err(format!("the store writer died: {panic}").into()),
            WriterMsg::Ended(None) => {
                myself.stop(Some("store closed".into()));
                Ok(())
            }
        }
    }
}
