//! Work done in rounds by an actor of the node's tree: the alert outbox,
//! the event webhooks, the retention keeper. One round per message, the
//! next scheduled when it ends, so a slow round never stacks up; a stop
//! lets the round in progress finish.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

/// What a [`Periodic`] actor does each round.
pub trait Round: Send + Sync + 'static {
    /// Between the end of one round and the start of the next.
    fn every(&self) -> Duration;
    fn round(&self) -> impl Future<Output = ()> + Send;
}

/// The actor running `R`'s rounds, the first at once.
pub struct Periodic<R>(PhantomData<fn() -> R>);

impl<R> Periodic<R> {
    pub fn new() -> Self {
        Periodic(PhantomData)
    }
}

impl<R> Default for Periodic<R> {
    fn default() -> Self {
        Periodic::new()
    }
}

impl<R> Clone for Periodic<R> {
    fn clone(&self) -> Self {
        Periodic::new()
    }
}

/// Time for the next round.
pub struct Next;

impl<R: Round> Actor for Periodic<R> {
    type Msg = Next;
    type State = Arc<R>;
    type Arguments = Arc<R>;

    async fn pre_start(&self, myself: ActorRef<Next>, args: Arc<R>) -> Result<Arc<R>, ActorProcessingErr> {
        myself.cast(Next)?;
        Ok(args)
    }

    async fn handle(&self, myself: ActorRef<Next>, _: Next, state: &mut Arc<R>) -> Result<(), ActorProcessingErr> {
        state.round().await;
        myself.send_after(state.every(), || Next);
        Ok(())
    }
}
