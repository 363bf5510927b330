//! The GradientConsensus component on its own: a supervised child of a
//! training tier, its ordering layer a single in-process state machine. It
//! orders what it is given, serves what its replica applied, and after a
//! panic is restarted by its supervisor and rebuilds what it serves from
//! the replicated state.
#![forbid(unsafe_code)]

use consensus_actors::kv::StateMachine;
use consensus_actors::supervision::SupervisorBuilder;
use consensus_actors::types::NodeId;
use model_agreement::gradient_consensus::{GradientOutput, Round, TrainingConfig};
use model_agreement::replica::{
    components, CloseRound, GradientConsensusSlot, GradientContext, InjectPanic, Ordering,
    PullModel, SubmitGradient,
};
use model_agreement::{Aggregator, GradientConsensus};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[test]
fn the_component_serves_its_replica_and_rebuilds_after_a_restart() {
    actix::System::new().block_on(async {
        let config = TrainingConfig {
            initial: vec![0.0, 0.0],
            learning_rate: 1.0,
            aggregator: Aggregator::Mean,
            f: 0,
            workers: vec![NodeId(1), NodeId(2)],
            synchronous: true,
            evict_after: None,
        };
        let sm: Rc<RefCell<Option<GradientConsensus>>> = Rc::new(RefCell::new(None));
        let (s1, s2) = (Rc::clone(&sm), Rc::clone(&sm));
        let ordering = Ordering::new(
            move |cmd| {
                let out = s1.borrow_mut().as_mut().expect("built").apply(&cmd);
                Box::pin(async move { Ok(out) })
            },
            move |query| {
                let answer = query(s2.borrow().as_ref().expect("built"));
                Box::pin(async move { Ok(answer) })
            },
        );
        let ctx = GradientContext {
            id: NodeId(1),
            config: config.clone(),
            ordering,
        };
        let mut tree = SupervisorBuilder::new(NodeId(1));
        let handles = GradientConsensusSlot::default()
            .build(&ctx)
            .start(&mut tree, components::GRADIENT_CONSENSUS)
            .expect("one child");
        *sm.borrow_mut() =
            Some(GradientConsensus::new(config).with_publisher(handles.applied.clone()));
        let _supervisor = tree.start();
        let pull = |at_least| PullModel {
            at_least,
            within: Duration::from_millis(50),
        };
        let initial = handles.pull.send(pull(0)).await.unwrap().expect("initial");
        assert_eq!((initial.version.number, initial.round), (0, Round(0)));
        for (w, g) in [(1, [1.0f32, 2.0]), (2, [3.0, 2.0])] {
            let out = handles
                .submit
                .send(SubmitGradient {
                    round: Round(0),
                    worker: NodeId(w),
                    gradient: g.to_vec(),
                })
                .await
                .unwrap();
            assert_eq!(out, Ok(GradientOutput::Accepted));
        }
        let closed = handles
            .close
            .send(CloseRound { round: Round(0) })
            .await
            .unwrap();
        assert!(matches!(closed, Ok(GradientOutput::Closed(_))));
        let v1 = handles.pull.send(pull(1)).await.unwrap().expect("served");
        assert_eq!(v1.params.as_slice(), &[-2.0, -2.0]);
        assert_eq!(v1.version.number, 1);
        // A pull for a version not applied yet waits, then gets what there is.
        let later = handles.pull.send(pull(2)).await.unwrap().expect("served");
        assert_eq!(later.version.number, 1);
        // Panic: the message being handled is lost, the supervisor restarts
        // the component, which rebuilds from the replicated state.
        handles.panic.send(InjectPanic).await.unwrap();
        assert!(handles.pull.send(pull(0)).await.is_err());
        let rebuilt = handles.pull.send(pull(1)).await.unwrap().expect("rebuilt");
        assert_eq!(rebuilt, v1);
    });
}
