//! Worker threads pulling jobs from a shared queue object, in PyPy-STM's style: plain
//! `std::thread` threads, no lock, and no transaction written by hand.
//!
//! `worker` is `#[stm::in_transactions]`: its loop runs as a series of transactions, one
//! iteration (take a job, compute it, record the result) atomic, with a break point at the
//! loop's back-edge where the runtime commits once the thread has done its budget of
//! iterations. The queue is one shared object holding a lane of jobs per worker: a worker takes
//! from the front of its own lane, and when that is empty steals the back half of the fullest
//! other lane, so workers conflict only while stealing, near the end.
//!
//! ```text
//! cargo run --release --example workers -- --threads 2
//! cargo run --release --example workers --features stm-runtime/gil -- --threads 2
//! ```

use std::time::Instant;

use clap::Parser;
use stm::{Gc, GcVec, Root, TVec};
use stm_examples::{compute, report, Common};
use stm_runtime as stm;

#[derive(Parser, Debug)]
#[command(about = "Worker threads pulling jobs from a shared queue, with break points")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Jobs in the queue.
    #[arg(long, default_value_t = 4_000)]
    jobs: u64,
    /// Rounds of arithmetic per job (its length).
    #[arg(long, default_value_t = 20_000)]
    work: u64,
}

/// The jobs `next..end` of one worker's lane: the owner takes from the front; a worker whose
/// lane is empty steals the back half.
#[stm::object]
struct Lane {
    next: u64,
    end: u64,
}

/// The shared queue: a lane per worker (every slot is `Some`).
#[stm::object]
struct Queue {
    lanes: TVec<Option<Gc<Lane>>>,
}

/// What one worker recorded: jobs done, steals, the sum of their ids and of their results.
#[stm::object]
struct Tally {
    jobs: u64,
    steals: u64,
    id_sum: u64,
    result_sum: u64,
}

/// A queue holding `jobs` jobs, dealt in contiguous runs to `workers` lanes.
#[stm::transactional]
fn new_queue(jobs: u64, workers: u64) -> Root<Queue> {
    let tx = stm::tx!();
    let lanes = GcVec::<Option<stm::GcRef<Lane>>>::new(tx);
    for w in 0..workers {
        lanes.push(Some(Gc::new(Lane {
            next: jobs * w / workers,
            end: jobs * (w + 1) / workers,
        })));
    }
    tx.root(Gc::new(Queue { lanes }))
}

#[stm::transactional]
fn new_tally() -> Root<Tally> {
    stm::tx!().root(Gc::new(Tally {
        jobs: 0,
        steals: 0,
        id_sum: 0,
        result_sum: 0,
    }))
}

/// Takes a job: the next one of lane `me`; when that lane is empty, it first steals the back
/// half of the fullest other lane into it. Returns the job and whether it was stolen; `None`
/// once every lane is empty.
#[stm::transactional]
fn take_job(queue: &Root<Queue>, me: usize) -> Option<(u64, bool)> {
    let lanes = queue.get(stm::tx!()).lanes;
    let own = lanes.get(me)?;
    let mut stolen = false;
    if own.next == own.end {
        let mut victim = None;
        let mut most = 0;
        for k in 0..lanes.len() {
            let Some(lane) = lanes.get(k) else { continue };
            if lane.end - lane.next > most {
                most = lane.end - lane.next;
                victim = Some(lane);
            }
        }
        let lane = victim?;
        let half = most.div_ceil(2);
        own.next = lane.end - half;
        own.end = lane.end;
        lane.end -= half;
        stolen = true;
    }
    let job = own.next;
    own.next += 1;
    Some((job, stolen))
}

#[stm::transactional]
fn record(tally: &Root<Tally>, job: u64, result: u64, stolen: bool) {
    let t = tally.get(stm::tx!());
    t.jobs += 1;
    t.steals += u64::from(stolen);
    t.id_sum += job;
    t.result_sum = t.result_sum.wrapping_add(result);
}

#[stm::transactional]
fn totals(tally: &Root<Tally>) -> (u64, u64, u64, u64) {
    let t = tally.get(stm::tx!());
    (t.jobs, t.steals, t.id_sum, t.result_sum)
}

/// One worker: takes jobs until the queue is empty. The loop's back-edge is a break point;
/// `done` is carried across break points (restored if a transaction aborts).
#[stm::in_transactions]
fn worker(queue: &Root<Queue>, tally: &Root<Tally>, me: usize, rounds: u64) -> u64 {
    let mut done = 0u64;
    while let Some((job, stolen)) = take_job(queue, me) {
        let result = compute(job, rounds);
        record(tally, job, result, stolen);
        done += 1;
    }
    done
}

fn main() {
    let args = Args::parse();
    let workers = args.common.threads();
    let segments = args.common.segments.unwrap_or(workers);
    // The global runtime, which `#[transactional]` and `#[in_transactions]` functions use.
    let stm = stm::Stm::builder()
        .segments(segments)
        .heap_size(64 << 20)
        .build_global()
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
    println!(
        "workers: {workers} threads, {} jobs of {} rounds",
        args.jobs, args.work
    );
    let queue = new_queue(args.jobs, workers as u64);
    let tallies: Vec<Root<Tally>> = (0..workers).map(|_| new_tally()).collect();
    let before = stm.stats();
    let start = Instant::now();
    let done: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = tallies
            .iter()
            .enumerate()
            .map(|(me, tally)| {
                let queue = &queue;
                s.spawn(move || worker(queue, tally, me, args.work))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let stats = stm.stats() - before;

    let (mut jobs, mut id_sum, mut result_sum) = (0u64, 0u64, 0u64);
    for (me, tally) in tallies.iter().enumerate() {
        let (j, steals, ids, results) = totals(tally);
        println!(
            "workers: worker {me}: {j} jobs, {steals} steals of half a lane, {} counted in its \
             carried local",
            done[me]
        );
        jobs += j;
        id_sum += ids;
        result_sum = result_sum.wrapping_add(results);
    }
    let sequential = Instant::now();
    let want_results = (0..args.jobs).fold(0u64, |a, j| a.wrapping_add(compute(j, args.work)));
    println!(
        "workers: the same jobs computed sequentially, without the STM: {:.3} s",
        sequential.elapsed().as_secs_f64()
    );
    let want_ids = args.jobs * args.jobs.saturating_sub(1) / 2;
    let check = if jobs != args.jobs || done.iter().sum::<u64>() != args.jobs {
        Err(format!(
            "{jobs} jobs recorded, {} counted by the workers; expected {}",
            done.iter().sum::<u64>(),
            args.jobs
        ))
    } else if id_sum != want_ids || result_sum != want_results {
        Err(format!(
            "job ids sum to {id_sum} (expected {want_ids}), results to {result_sum} (expected \
             {want_results}): a job was lost or done twice"
        ))
    } else {
        Ok(format!(
            "{jobs} jobs each done once, results equal the sequential run; {} transactions \
             cut at break points",
            stats.break_commits
        ))
    };
    report("workers", check, args.jobs, elapsed, stats);
}
