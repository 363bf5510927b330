//! [`LocalNetwork`]: the in-process network of a real-time cluster (the
//! engine outside simulations, the benchmark). It forwards every envelope to
//! the destination's registered inbox at once: no delay, no faults, no
//! tracing. The deterministic simulation uses
//! [`SimNetwork`](consensus_actors::sim::SimNetwork) instead.

use actix::prelude::*;
use consensus_actors::transport::{DeregisterNode, Envelope, RegisterNode, Wire};
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;

/// A zero-delay router between the nodes of one process.
pub struct LocalNetwork<M: Wire> {
    inboxes: BTreeMap<NodeId, Recipient<Envelope<M>>>,
    delivered: u64,
    dropped: u64,
}

impl<M: Wire> Default for LocalNetwork<M> {
    fn default() -> Self {
        Self {
            inboxes: BTreeMap::new(),
            delivered: 0,
            dropped: 0,
        }
    }
}

impl<M: Wire> LocalNetwork<M> {
    /// A network with no node registered.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<M: Wire> Actor for LocalNetwork<M> {
    type Context = Context<Self>;
}

impl<M: Wire> Handler<Envelope<M>> for LocalNetwork<M> {
    type Result = ();

    fn handle(&mut self, env: Envelope<M>, _ctx: &mut Context<Self>) {
        match self.inboxes.get(&env.to) {
            Some(inbox) => {
                self.delivered += 1;
                inbox.do_send(env);
            }
            None => self.dropped += 1,
        }
    }
}

impl<M: Wire> Handler<RegisterNode<M>> for LocalNetwork<M> {
    type Result = ();

    fn handle(&mut self, msg: RegisterNode<M>, _ctx: &mut Context<Self>) {
        self.inboxes.insert(msg.node, msg.inbox);
    }
}

impl<M: Wire> Handler<DeregisterNode> for LocalNetwork<M> {
    type Result = ();

    fn handle(&mut self, msg: DeregisterNode, _ctx: &mut Context<Self>) {
        self.inboxes.remove(&msg.node);
    }
}

/// Asks a [`LocalNetwork`] how many envelopes it delivered and dropped.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "(u64, u64)")]
pub struct GetLocalStats;

impl<M: Wire> Handler<GetLocalStats> for LocalNetwork<M> {
    type Result = MessageResult<GetLocalStats>;

    fn handle(&mut self, _msg: GetLocalStats, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult((self.delivered, self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::transport::Transport;
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Sink(Rc<RefCell<Vec<(NodeId, String)>>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Envelope<String>> for Sink {
        type Result = ();
        fn handle(&mut self, env: Envelope<String>, _: &mut Context<Self>) {
            self.0.borrow_mut().push((env.from, env.msg));
        }
    }

    #[test]
    fn routes_to_registered_inboxes_and_drops_the_rest() {
        actix::System::new().block_on(async {
            let net = LocalNetwork::<String>::new().start();
            let got = Rc::new(RefCell::new(Vec::new()));
            let sink = Sink(got.clone()).start();
            net.send(RegisterNode {
                node: NodeId(2),
                inbox: sink.recipient(),
            })
            .await
            .unwrap();
            let t = Transport::new(NodeId(1), net.clone().recipient());
            t.send(NodeId(2), "hello".to_string());
            t.send(NodeId(3), "nobody".to_string());
            net.send(DeregisterNode { node: NodeId(2) }).await.unwrap();
            t.send(NodeId(2), "late".to_string());
            let (delivered, dropped) = net.send(GetLocalStats).await.unwrap();
            assert_eq!((delivered, dropped), (1, 2));
            tokio::task::yield_now().await;
            assert_eq!(*got.borrow(), vec![(NodeId(1), "hello".to_string())]);
        });
    }
}
