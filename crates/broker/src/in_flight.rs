//! The broker-wide budget of produce bytes in flight: encoded record batches queued for
//! appending or being appended, across every partition.
//!
//! A produce request takes its batches' bytes from the budget before they are queued and
//! gives each batch's bytes back once that append is done, whatever its outcome (a
//! [`Permit`] travels with the batch and returns its bytes when dropped). A request that does
//! not fit waits in one broker-wide first-come, first-served line; requests are admitted in
//! submit order, and admitting a request queues its batches there and then, so every
//! partition still appends in submit order. A request still waiting when `produce_wait` runs
//! out is refused with [`BrokerError::Overloaded`] and nothing of it is queued; one larger
//! than the whole budget is refused at once ([`BrokerError::ProduceTooLarge`]).
//!
//! Bytes a waiting request holds are its own, not the budget's: the front end decoded them
//! and keeps them until the request is admitted or refused. The front ends await
//! [`crate::PendingProduce::admitted`] before reading their client's next produce request, so
//! each produce stream or Kafka connection holds at most one such request.
//!
//! Lock discipline: the state mutex is held while admitting (which pushes onto partition
//! queues), never while anything that could return bytes is dropped: refused jobs and the
//! partitions of admitted requests are dropped after the mutex is released, because dropping
//! a [`Permit`] takes the mutex.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;

use crate::BrokerError;
use crate::append_queue::{AppendDone, AppendJob};
use crate::topic::Partition;

/// Gauge of the bytes taken from the budget.
const IN_FLIGHT_GAUGE: &str = "sluice_inflight_bytes";
/// Gauge of the produce requests waiting for room in the budget.
const WAITING_GAUGE: &str = "sluice_produce_waiting_requests";
/// Counter of produce requests refused because they waited out `produce_wait`.
const OVERLOADED_COUNTER: &str = "sluice_produce_overloaded_total";

/// One partition's batch (or batches) of a produce request.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) partition: Arc<Partition>,
    pub(crate) bytes: BytesMut,
    /// Whether a batch of it names an idempotent producer, for its writer to check.
    pub(crate) idempotent: bool,
}

/// The budget, shared by every partition of the broker.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// `max_in_flight_bytes`.
    limit: usize,
    /// `produce_wait`.
    wait: Duration,
    state: Mutex<State>,
}

/// Invariant: `used <= limit`; `waiting` is empty unless its front does not fit.
#[derive(Debug, Default)]
struct State {
    /// Bytes held by permits.
    used: usize,
    next_ticket: u64,
    /// Requests that did not fit, in submit order.
    waiting: VecDeque<Waiter>,
    /// Set at shutdown: nothing more is admitted.
    closed: bool,
}

/// A request waiting for room.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    bytes: usize,
    batches: Vec<Batch>,
    /// Gets the appends once the request is admitted.
    admitted: oneshot::Sender<Vec<AppendDone>>,
}

/// Bytes taken from the budget for one queued batch; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Arc<InFlight>,
    bytes: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Where a submitted request stands.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Admitted: its batches are queued, one append each, in the order given.
    Queued(Vec<AppendDone>),
    /// Waiting for room, until `deadline`.
    Waiting {
        ticket: u64,
        bytes: usize,
        deadline: Instant,
        admitted: oneshot::Receiver<Vec<AppendDone>>,
    },
}

/// What must be dropped only once the state mutex is released.
type Leftovers = Vec<Box<dyn Send>>;

impl InFlight {
    /// A budget of `limit` bytes where requests wait at most `wait` for room.
    pub(crate) fn new(limit: usize, wait: Duration) -> Arc<InFlight> {
        metrics::gauge!(IN_FLIGHT_GAUGE).set(0.0);
        Arc::new(InFlight {
            limit,
            wait,
            state: Mutex::new(State::default()),
        })
    }

    /// Bytes currently taken from the budget.
    pub(crate) fn used(&self) -> usize {
        self.state.lock().used
    }

    /// Takes room for `batches` and queues them, or puts the request in line for room.
    pub(crate) fn admit(self: &Arc<Self>, batches: Vec<Batch>) -> Result<Admission, BrokerError> {
        let bytes = batches.iter().map(|b| b.bytes.len()).sum::<usize>();
        if bytes > self.limit {
            return Err(BrokerError::ProduceTooLarge {
                size: bytes,
                limit: self.limit,
            });
        }
        let mut leftovers = Leftovers::new();
        let mut st = self.state.lock();
        if st.closed {
            return Err(BrokerError::ShuttingDown);
        }
        if st.waiting.is_empty() && st.used + bytes <= self.limit {
            let appends = self.queue(&mut st, bytes, batches, &mut leftovers);
            return Ok(Admission::Queued(appends));
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let (admitted, receiver) = oneshot::channel();
        st.waiting.push_back(Waiter {
            ticket,
            bytes,
            batches,
            admitted,
        });
        metrics::gauge!(WAITING_GAUGE).set(st.waiting.len() as f64);
        Ok(Admission::Waiting {
            ticket,
            bytes,
            deadline: Instant::now() + self.wait,
            admitted: receiver,
        })
    }

    /// Waits until a request in line is admitted, or refuses it once its deadline passes.
    pub(crate) async fn admitted(
        self: &Arc<Self>,
        admission: Admission,
    ) -> Result<Vec<AppendDone>, BrokerError> {
        let (ticket, bytes, deadline, mut admitted) = match admission {
            Admission::Queued(appends) => return Ok(appends),
            Admission::Waiting {
                ticket,
                bytes,
                deadline,
                admitted,
            } => (ticket, bytes, deadline, admitted),
        };
        if let Ok(result) = tokio::time::timeout_at(deadline.into(), &mut admitted).await {
            // A dropped sender means shutdown took the request out of line.
            return result.map_err(|_| BrokerError::ShuttingDown);
        }
        if self.leave(ticket) {
            metrics::counter!(OVERLOADED_COUNTER).increment(1);
            return Err(BrokerError::Overloaded {
                size: bytes,
                limit: self.limit,
                waited: self.wait,
            });
        }
        // Admitted just as time ran out: it is queued, so it is not refused.
        admitted.await.map_err(|_| BrokerError::ShuttingDown)
    }

    /// Refuses everything still in line ([`BrokerError::ShuttingDown`]) and all later
    /// requests.
    pub(crate) fn close(&self) {
        let mut leftovers = Leftovers::new();
        let mut st = self.state.lock();
        st.closed = true;
        leftovers.extend(
            st.waiting
                .drain(..)
                .map(|waiter| Box::new(waiter) as Box<dyn Send>),
        );
        metrics::gauge!(WAITING_GAUGE).set(0.0);
    }

    /// Takes `ticket` out of line; `false` when it is no longer there (admitted).
    fn leave(self: &Arc<Self>, ticket: u64) -> bool {
        let mut leftovers = Leftovers::new();
        let mut st = self.state.lock();
        let Some(at) = st.waiting.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        if let Some(waiter) = st.waiting.remove(at) {
            leftovers.push(Box::new(waiter));
        }
        metrics::gauge!(WAITING_GAUGE).set(st.waiting.len() as f64);
        // Those behind it may fit now.
        self.admit_waiting(&mut st, &mut leftovers);
        true
    }

    /// Gives back the bytes of a finished append and admits whoever now fits.
    fn release(self: &Arc<Self>, bytes: usize) {
        let mut leftovers = Leftovers::new();
        let mut st = self.state.lock();
        st.used = st.used.saturating_sub(bytes);
        metrics::gauge!(IN_FLIGHT_GAUGE).set(st.used as f64);
        self.admit_waiting(&mut st, &mut leftovers);
    }

    /// Admits requests from the front of the line while they fit.
    fn admit_waiting(self: &Arc<Self>, st: &mut MutexGuard<'_, State>, leftovers: &mut Leftovers) {
        while let Some(front) = st.waiting.front() {
            if st.closed || st.used + front.bytes > self.limit {
                break;
            }
            let Some(waiter) = st.waiting.pop_front() else {
                break;
            };
            let appends = self.queue(st, waiter.bytes, waiter.batches, leftovers);
            // A producer that went away still has its records appended.
            if let Err(appends) = waiter.admitted.send(appends) {
                leftovers.push(Box::new(appends));
            }
        }
        metrics::gauge!(WAITING_GAUGE).set(st.waiting.len() as f64);
    }

    /// Takes `bytes` and queues `batches`, each with a permit for its own bytes.
    fn queue(
        self: &Arc<Self>,
        st: &mut State,
        bytes: usize,
        batches: Vec<Batch>,
        leftovers: &mut Leftovers,
    ) -> Vec<AppendDone> {
        st.used += bytes;
        metrics::gauge!(IN_FLIGHT_GAUGE).set(st.used as f64);
        let mut appends = Vec::with_capacity(batches.len());
        for Batch {
            partition,
            bytes,
            idempotent,
        } in batches
        {
            let (reply, done) = oneshot::channel();
            let permit = Permit {
                budget: Arc::clone(self),
                bytes: bytes.len(),
            };
            if let Err(refused) = partition.enqueue(AppendJob {
                batch: bytes,
                idempotent,
                reply,
                permit,
            }) {
                leftovers.push(Box::new(refused));
            }
            leftovers.push(Box::new(partition));
            appends.push(done);
        }
        appends
    }
}
