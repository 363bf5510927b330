//! Running one supervised child: its context future is polled inside
//! `catch_unwind`, so a panicking handler becomes a reported failure instead
//! of a dead task and a lost mailbox.
//!
//! Each child has a [`ChildCell`] shared (single-threaded, `Rc<RefCell<_>>`)
//! between the task that polls it and the supervisor that commands it. The
//! cell owns the actor's `ContextFut` (actor + context + mailbox) and one
//! address, so the mailbox stays open across restarts whoever else holds or
//! drops addresses. The task takes the future out of the cell only while it
//! polls it; the supervisor runs in another task of the same thread, so it
//! never sees the cell in that state.

use super::{ChildState, ChildTag};
use crate::types::NodeId;
use actix::dev::ContextFut;
use actix::prelude::*;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};

/// The mailbox and address of a child that is not started yet. Create slots
/// first, hand their addresses to the components that need them, then start
/// each child into its slot with
/// [`SupervisorBuilder::start_child`](super::SupervisorBuilder::start_child).
/// Messages sent to the address before the start wait in the mailbox.
pub struct ChildSlot<A>
where
    A: Actor<Context = Context<A>>,
{
    ctx: Context<A>,
}

impl<A> ChildSlot<A>
where
    A: Actor<Context = Context<A>>,
{
    /// A fresh mailbox (default actix capacity).
    pub fn new() -> Self {
        Self {
            ctx: Context::new(),
        }
    }

    /// The address the child will have. It stays valid across restarts and
    /// disconnects only when the node stops.
    pub fn address(&self) -> Addr<A> {
        self.ctx.address()
    }

    /// The child's context before it starts (for example to set the mailbox
    /// capacity or to build the actor with `ctx`-dependent state).
    pub fn context_mut(&mut self) -> &mut Context<A> {
        &mut self.ctx
    }

    pub(crate) fn into_context(self) -> Context<A> {
        self.ctx
    }
}

impl<A> Default for ChildSlot<A>
where
    A: Actor<Context = Context<A>>,
{
    fn default() -> Self {
        Self::new()
    }
}

/// Why a child stopped running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChildFailure {
    /// A handler, `started()`, `stopping()`, `stopped()` or `restarting()`
    /// panicked with this message.
    Panicked(String),
    /// The actor stopped itself (its context future completed).
    Stopped,
}

/// A child's report to its supervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct ChildFailed {
    /// Start-order position of the child.
    pub index: usize,
    /// Which incarnation failed (see [`ChildControl::incarnation`]).
    pub incarnation: u64,
    /// What happened.
    pub failure: ChildFailure,
    /// When (virtual time).
    pub at: tokio::time::Instant,
}

/// What the supervisor can do with a child of any actor type.
pub(crate) trait ChildControl {
    /// Restart the child on its next poll (clears its timers and spawned
    /// futures, calls `restarting()`, then `started()`); bumps the incarnation.
    fn request_restart(&self);
    /// Stop the child now: the actor and its mailbox are dropped, every address
    /// disconnects. Returns the panic message if `stopping()`/`stopped()`
    /// panicked on the way out. Idempotent.
    fn stop(&self) -> Option<String>;
    /// Where the child is in its life.
    fn state(&self) -> ChildState;
    /// Counts restart requests; a failure report from an older incarnation is
    /// stale (the child was already restarted since).
    fn incarnation(&self) -> u64;
}

struct ChildCell<A>
where
    A: Actor<Context = Context<A>>,
{
    /// The running actor; `None` while the task polls it or after a stop.
    /// Boxed: the task takes it out and puts it back on every poll, which
    /// then moves one pointer instead of the whole actor and its context.
    fut: Option<Box<ContextFut<A, Context<A>>>>,
    /// Keeps the mailbox connected, so `ContextFut::restart` always succeeds
    /// and the actor does not stop just because nobody else holds it.
    addr: Option<Addr<A>>,
    state: ChildState,
    restart_requested: bool,
    incarnation: u64,
    waker: Option<Waker>,
}

struct ChildHandle<A>
where
    A: Actor<Context = Context<A>>,
{
    cell: Rc<RefCell<ChildCell<A>>>,
    tag: ChildTag,
}

impl<A> ChildControl for ChildHandle<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    fn request_restart(&self) {
        let waker = {
            let mut cell = self.cell.borrow_mut();
            if cell.state == ChildState::Stopped {
                return;
            }
            cell.restart_requested = true;
            cell.incarnation += 1;
            cell.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn stop(&self) -> Option<String> {
        let (fut, addr, waker) = {
            let mut cell = self.cell.borrow_mut();
            cell.state = ChildState::Stopped;
            cell.restart_requested = false;
            (cell.fut.take(), cell.addr.take(), cell.waker.take())
        };
        drop(addr);
        // Dropping a live ContextFut runs the actor's stopping()/stopped().
        let reason = fut.and_then(|f| {
            with_current_child(&self.tag, || guarded(move || drop(f)))
                .err()
                .map(panic_reason)
        });
        if let Some(w) = waker {
            w.wake();
        }
        reason
    }

    fn state(&self) -> ChildState {
        self.cell.borrow().state
    }

    fn incarnation(&self) -> u64 {
        self.cell.borrow().incarnation
    }
}

/// The task that polls one child.
struct ChildTask<A>
where
    A: Actor<Context = Context<A>>,
{
    cell: Rc<RefCell<ChildCell<A>>>,
    index: usize,
    tag: ChildTag,
    report: Recipient<ChildFailed>,
}

impl<A> Future for ChildTask<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let (mut fut, restart, incarnation) = {
            let mut cell = this.cell.borrow_mut();
            let Some(fut) = cell.fut.take() else {
                // Stopped by the supervisor.
                debug_assert_eq!(cell.state, ChildState::Stopped);
                cell.waker = None;
                return Poll::Ready(());
            };
            match &cell.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => cell.waker = Some(cx.waker().clone()),
            }
            let restart = std::mem::take(&mut cell.restart_requested);
            if !restart && cell.state == ChildState::AwaitingRestart {
                // Failed: leave queued messages in the mailbox until the
                // supervisor decides.
                cell.fut = Some(fut);
                return Poll::Pending;
            }
            cell.state = ChildState::Running;
            (fut, restart, cell.incarnation)
        };

        let outcome = with_current_child(&this.tag, || {
            guarded(|| {
                if restart {
                    let restarted = fut.restart();
                    // The cell holds an address, so the mailbox is connected.
                    debug_assert!(restarted, "restart of a child with a closed mailbox");
                }
                Pin::new(&mut *fut).poll(cx)
            })
        });
        let failure = match outcome {
            Ok(Poll::Pending) => None,
            Ok(Poll::Ready(())) => Some(ChildFailure::Stopped),
            Err(payload) => Some(ChildFailure::Panicked(panic_reason(payload))),
        };

        let mut cell = this.cell.borrow_mut();
        debug_assert!(cell.fut.is_none());
        if cell.state == ChildState::Stopped {
            // Cannot happen on one thread (the supervisor does not run while
            // we poll), but if it did: honour the stop.
            drop(cell);
            let _ = guarded(move || drop(fut));
            return Poll::Ready(());
        }
        cell.fut = Some(fut);
        if let Some(failure) = failure {
            cell.state = ChildState::AwaitingRestart;
            drop(cell);
            tracing::debug!(
                node = %this.tag.node,
                component = %this.tag.name,
                ?failure,
                "supervised child failed"
            );
            this.report.do_send(ChildFailed {
                index: this.index,
                incarnation,
                failure,
                at: tokio::time::Instant::now(),
            });
        }
        Poll::Pending
    }
}

/// Starts `actor` in `ctx` as child `index`, reporting failures to `report`.
/// Spawns on the current thread (the caller's actix/tokio local set).
pub(crate) fn spawn_child<A>(
    ctx: ChildSlot<A>,
    actor: A,
    index: usize,
    tag: ChildTag,
    report: Recipient<ChildFailed>,
) -> Box<dyn ChildControl>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    let ctx = ctx.into_context();
    let addr = ctx.address();
    let fut = Box::new(ctx.into_future(actor));
    let cell = Rc::new(RefCell::new(ChildCell {
        fut: Some(fut),
        addr: Some(addr),
        state: ChildState::Running,
        restart_requested: false,
        incarnation: 0,
        waker: None,
    }));
    actix_rt::spawn(ChildTask {
        cell: Rc::clone(&cell),
        index,
        tag: tag.clone(),
        report,
    });
    Box::new(ChildHandle { cell, tag })
}

thread_local! {
    /// True while supervised code runs under `catch_unwind` on this thread.
    static IN_SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// The child being polled, for the panic hook's log line.
    static CURRENT_CHILD: RefCell<Option<ChildTag>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into `Err(payload)`.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    let prev = IN_SUPERVISED.with(|s| s.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_SUPERVISED.with(|s| s.set(prev));
    r
}

fn with_current_child<R>(tag: &ChildTag, f: impl FnOnce() -> R) -> R {
    let prev = CURRENT_CHILD.with(|c| c.replace(Some(tag.clone())));
    let r = f();
    CURRENT_CHILD.with(|c| *c.borrow_mut() = prev);
    r
}

/// The message of a panic payload.
pub(crate) fn panic_reason(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Installs (once per process) a panic hook that logs panics of supervised
/// components through `tracing` (at `warn`, with node, component and
/// location) instead of printing them to stderr; every other panic still goes
/// to the hook that was installed before. Opt-in: library code never calls
/// it; simulations and test suites may.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SUPERVISED.with(Cell::get) {
                let message = if let Some(s) = info.payload().downcast_ref::<&'static str>() {
                    (*s).to_owned()
                } else if let Some(s) = info.payload().downcast_ref::<String>() {
                    s.clone()
                } else {
                    "panic with a non-string payload".to_owned()
                };
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let (node, component) = CURRENT_CHILD.with(|c| match &*c.borrow() {
                    Some(tag) => (Some(tag.node), tag.name.to_string()),
                    None => (None, String::new()),
                });
                tracing::warn!(
                    node = node.map(NodeId::get),
                    component = %component,
                    %location,
                    %message,
                    "supervised component panicked"
                );
            } else {
                previous(info);
            }
        }));
    });
}
