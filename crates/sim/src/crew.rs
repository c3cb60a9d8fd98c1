//! Helper threads that wait for the next step's work by spinning.
//!
//! The simulator hands work to its threads once per step: every 8 ms of
//! simulated time (decision 0017), up to a few milliseconds of wall time.
//! A thread pool that puts idle workers to sleep (rayon) pays a futex
//! wake-up for each hand-over, and on a virtual machine waking a halted
//! vCPU costs tens of microseconds: about 15 % of a 30k-peer run. A crew
//! member spins while work is likely to come soon and sleeps only after
//! [`SPIN_LIMIT`] without any (decision 0012).

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper spins without work before it parks: longer than the
/// serial part of a step, short enough not to hold a core through a
/// stretch of steps too small to share out.
const SPIN_LIMIT: Duration = Duration::from_millis(2);

type Job = Box<dyn FnOnce() + Send + 'static>;
type Panic = Box<dyn Any + Send + 'static>;

/// What the caller and one helper share.
#[derive(Default)]
struct Mailbox {
    /// Generation of the last job posted; the helper runs a job when this
    /// moves past what it has seen.
    posted: AtomicU64,
    /// Generation of the last job finished.
    done: AtomicU64,
    /// Set by the helper before it parks, so that a post unparks it.
    sleeping: AtomicBool,
    stop: AtomicBool,
    job: Mutex<Option<Job>>,
    panic: Mutex<Option<Panic>>,
}

struct Helper {
    mailbox: Arc<Mailbox>,
    thread: JoinHandle<()>,
}

/// `helpers` threads besides the caller's, for running a few closures at
/// once that may borrow from the caller's stack, like `std::thread::scope`
/// without a thread spawned per call.
pub(crate) struct Crew {
    helpers: Vec<Helper>,
    generation: u64,
}

impl Crew {
    /// Starts the helpers. Fails only when the system cannot spawn a thread.
    pub(crate) fn new(helpers: usize) -> std::io::Result<Crew> {
        let mut crew = Crew {
            helpers: Vec::with_capacity(helpers),
            generation: 0,
        };
        for i in 0..helpers {
            let mailbox = Arc::new(Mailbox::default());
            let theirs = Arc::clone(&mailbox);
            let thread = std::thread::Builder::new()
                .name(format!("sim-crew-{i}"))
                .spawn(move || serve(&theirs))?;
            crew.helpers.push(Helper { mailbox, thread });
        }
        Ok(crew)
    }

    /// Runs every job, the first on the calling thread and the others on
    /// the helpers, and returns their results in order. At most one more
    /// job than there are helpers. A panic in any job is raised here once
    /// all of them have finished.
    pub(crate) fn run<'a, R: Send + 'a>(&mut self, jobs: Vec<Box<dyn FnOnce() -> R + Send + 'a>>) -> Vec<R> {
        assert!(jobs.len() <= self.helpers.len() + 1, "more jobs than threads");
        let mut jobs = jobs.into_iter();
        let Some(first) = jobs.next() else {
            return Vec::new();
        };
        let mut results: Vec<Option<R>> = Vec::new();
        results.resize_with(jobs.len(), || None);
        self.generation += 1;
        let generation = self.generation;
        let posted = results.len();
        for ((job, result), helper) in jobs.zip(results.iter_mut()).zip(&self.helpers) {
            let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || *result = Some(job()));
            // SAFETY: the job borrows `results` and whatever the caller's
            // closure borrows. Nothing below returns or unwinds before
            // every posted job has finished (`wait` on each), so no job
            // outlives what it borrows: the guarantee `std::thread::scope`
            // gives, kept by hand.
            let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
            helper.post(job, generation);
        }
        let mine = catch_unwind(AssertUnwindSafe(first));
        let mut panic = None;
        for helper in &self.helpers[..posted] {
            if let Some(p) = helper.wait(generation) {
                panic.get_or_insert(p);
            }
        }
        let mine = match mine {
            Ok(r) => r,
            Err(p) => resume_unwind(p),
        };
        if let Some(p) = panic {
            resume_unwind(p);
        }
        std::iter::once(mine)
            .chain(results.into_iter().map(|r| r.expect("a finished job left its result")))
            .collect()
    }
}

impl Helper {
    fn post(&self, job: Job, generation: u64) {
        let m = &self.mailbox;
        *m.job.lock().unwrap_or_else(PoisonError::into_inner) = Some(job);
        // SeqCst pairs with the helper's `sleeping` store then `posted`
        // load: either it sees this job, or this sees it asleep.
        m.posted.store(generation, Ordering::SeqCst);
        if m.sleeping.load(Ordering::SeqCst) {
            self.thread.thread().unpark();
        }
    }

    /// Waits until the job of `generation` is done; its panic, if any.
    fn wait(&self, generation: u64) -> Option<Panic> {
        let m = &self.mailbox;
        let mut spins = 0u32;
        while m.done.load(Ordering::Acquire) != generation {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                // The helper may have lost its core to another process.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        m.panic.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        for h in &self.helpers {
            h.mailbox.stop.store(true, Ordering::SeqCst);
            h.thread.thread().unpark();
        }
        for h in self.helpers.drain(..) {
            // A helper catches its jobs' panics, so it ends cleanly.
            let _ = h.thread.join();
        }
    }
}

/// A helper's loop: spin for the next job, park when none comes for a while.
fn serve(m: &Mailbox) {
    let mut seen = 0;
    loop {
        let mut idle_since: Option<Instant> = None;
        let mut spins = 0u32;
        let generation = loop {
            let g = m.posted.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            if m.stop.load(Ordering::Relaxed) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(256) {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < SPIN_LIMIT {
                continue;
            }
            m.sleeping.store(true, Ordering::SeqCst);
            if m.posted.load(Ordering::SeqCst) == seen && !m.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            m.sleeping.store(false, Ordering::SeqCst);
            idle_since = None;
        };
        seen = generation;
        let job = m.job.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| job.map(|job| job()))) {
            *m.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(p);
        }
        m.done.store(generation, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed<'a, R: Send + 'a>(f: impl FnOnce() -> R + Send + 'a) -> Box<dyn FnOnce() -> R + Send + 'a> {
        Box::new(f)
    }

    #[test]
    fn jobs_borrow_from_the_caller_and_results_come_back_in_order() {
        let mut crew = Crew::new(2).unwrap();
        let mut data = vec![0u64; 30];
        for round in 1..=200u64 {
            let (a, rest) = data.split_at_mut(10);
            let (b, c) = rest.split_at_mut(10);
            let jobs = vec![
                boxed(|| {
                    a.iter_mut().for_each(|x| *x += round);
                    1
                }),
                boxed(|| {
                    b.iter_mut().for_each(|x| *x += 2 * round);
                    2
                }),
                boxed(|| {
                    c.iter_mut().for_each(|x| *x += 3 * round);
                    3
                }),
            ];
            assert_eq!(crew.run(jobs), vec![1, 2, 3]);
        }
        let total: u64 = (1..=200).sum();
        assert!(data[..10].iter().all(|&x| x == total));
        assert!(data[10..20].iter().all(|&x| x == 2 * total));
        assert!(data[20..].iter().all(|&x| x == 3 * total));
    }

    #[test]
    fn fewer_jobs_than_threads_and_a_sleeping_helper_still_run() {
        let mut crew = Crew::new(2).unwrap();
        assert_eq!(crew.run(vec![boxed(|| 7)]), vec![7]);
        // Long enough for the helpers to park.
        std::thread::sleep(SPIN_LIMIT * 3);
        assert_eq!(crew.run(vec![boxed(|| 1), boxed(|| 2)]), vec![1, 2]);
        assert!(crew.run(Vec::<Box<dyn FnOnce() -> u8 + Send>>::new()).is_empty());
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_after_every_job_finished() {
        let mut crew = Crew::new(1).unwrap();
        let finished = AtomicBool::new(false);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            crew.run(vec![
                boxed(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    finished.store(true, Ordering::SeqCst);
                }),
                boxed(|| panic!("helper job failed")),
            ])
        }));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"helper job failed"));
        assert!(finished.load(Ordering::SeqCst));
        // The crew still works afterwards.
        assert_eq!(crew.run(vec![boxed(|| 1), boxed(|| 2)]), vec![1, 2]);
    }

    #[test]
    fn the_callers_panic_waits_for_the_helpers_jobs_which_borrow_its_stack() {
        let mut crew = Crew::new(1).unwrap();
        let mut written = 0u32;
        let caught = catch_unwind(AssertUnwindSafe(|| {
            crew.run(vec![
                boxed(|| panic!("caller job failed")),
                boxed(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    written = 1;
                }),
            ])
        }));
        assert!(caught.is_err());
        // Unwinding waited for the helper, which was done with `written`.
        assert_eq!(written, 1);
    }
}
