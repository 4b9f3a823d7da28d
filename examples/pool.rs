//! The natural worker pool: threads take jobs from one shared queue until it is empty, each
//! job in its own iteration of an `#[stm::in_transactions]` loop. Written two ways:
//!
//! * `--queue tqueue` (default): the jobs are in a `TQueue`, whose pops from different
//!   threads do not conflict (each thread takes from lanes of its own);
//! * `--queue cursor`: the jobs are numbered and the queue is one shared cursor, the way a
//!   first version is usually written: every two jobs running at once conflict on it.
//!
//! It runs the pool with 1 and with 2 (or `--threads`) workers, `--repeat` times each,
//! interleaved, and prints the median time and spread of each, the speed-up, and the
//! *overlap* of the multi-thread runs: the threads' CPU time against wall time × threads (on
//! a VM two threads may take turns instead of running together; a speed-up counts only with
//! its overlap).
//!
//! ```text
//! cargo run --release --example pool                      # TQueue, 1 and 2 workers
//! cargo run --release --example pool -- --queue cursor    # one shared cursor
//! ```

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use stm::{Gc, Root, TQueue};
use stm_examples::{compute, report, Common};
use stm_runtime as stm;
use stm_runtime::thread_cpu_time;

#[derive(Parser, Debug)]
#[command(about = "The natural worker pool: one shared queue, jobs in transactions")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Jobs per run.
    #[arg(long, default_value_t = 4_000)]
    jobs: u64,
    /// Rounds of arithmetic per job (30,000: about 45 us here).
    #[arg(long, default_value_t = 30_000)]
    work: u64,
    /// How the jobs are queued.
    #[arg(long, value_enum, default_value_t = QueueKind::Tqueue)]
    queue: QueueKind,
    /// Runs of each thread count (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum QueueKind {
    /// A `TQueue` (pops do not conflict).
    Tqueue,
    /// One shared cursor over numbered jobs.
    Cursor,
}

#[stm::object]
struct Pool {
    jobs: TQueue<u64>,
    next: u64,
    end: u64,
}

#[stm::object]
struct Tally {
    jobs: u64,
    id_sum: u64,
    result_sum: u64,
}

#[stm::transactional]
fn new_pool(jobs: u64, kind: QueueKind) -> Root<Pool> {
    let q = TQueue::new(stm::tx!());
    if kind == QueueKind::Tqueue {
        for j in 0..jobs {
            q.push(j);
        }
    }
    let pool = Gc::new(Pool {
        jobs: q,
        next: 0,
        end: jobs,
    });
    stm::tx!().root(pool)
}

#[stm::transactional]
fn new_tally() -> Root<Tally> {
    stm::tx!().root(Gc::new(Tally {
        jobs: 0,
        id_sum: 0,
        result_sum: 0,
    }))
}

#[stm::transactional]
fn take(pool: &Root<Pool>, kind: QueueKind) -> Option<u64> {
    let p = pool.get(stm::tx!());
    match kind {
        QueueKind::Tqueue => p.jobs.pop(),
        QueueKind::Cursor => {
            if p.next == p.end {
                return None;
            }
            p.next += 1;
            Some(p.next - 1)
        }
    }
}

#[stm::transactional]
fn record(tally: &Root<Tally>, job: u64, result: u64) {
    let t = tally.get(stm::tx!());
    t.jobs += 1;
    t.id_sum += job;
    t.result_sum = t.result_sum.wrapping_add(result);
}

#[stm::transactional]
fn totals(tally: &Root<Tally>) -> (u64, u64, u64) {
    let t = tally.get(stm::tx!());
    (t.jobs, t.id_sum, t.result_sum)
}

/// One worker: takes jobs until the queue is empty, one loop iteration per job; the
/// back-edge is a break point.
#[stm::in_transactions]
fn worker(pool: &Root<Pool>, tally: &Root<Tally>, kind: QueueKind, rounds: u64) {
    while let Some(job) = take(pool, kind) {
        let result = compute(job, rounds);
        record(tally, job, result);
    }
}

/// What one run measured.
struct Run {
    wall: Duration,
    /// The workers' CPU time, summed.
    cpu: Duration,
    /// Jobs, sum of job ids, sum of results, over all workers.
    sums: (u64, u64, u64),
    /// Jobs each worker did.
    per_worker: Vec<u64>,
}

/// One run with `threads` workers.
fn run(args: &Args, threads: usize) -> Run {
    let pool = new_pool(args.jobs, args.queue);
    let tallies: Vec<Root<Tally>> = (0..threads).map(|_| new_tally()).collect();
    let start = Instant::now();
    let cpu: Duration = std::thread::scope(|s| {
        let handles: Vec<_> = tallies
            .iter()
            .map(|tally| {
                let pool = &pool;
                s.spawn(move || {
                    stm::set_thread_budget(stm::START_BUDGET);
                    let cpu = thread_cpu_time();
                    worker(pool, tally, args.queue, args.work);
                    thread_cpu_time() - cpu
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let wall = start.elapsed();
    let mut sums = (0u64, 0u64, 0u64);
    let mut per_worker = Vec::new();
    for t in &tallies {
        let (j, ids, results) = totals(t);
        per_worker.push(j);
        sums.0 += j;
        sums.1 += ids;
        sums.2 = sums.2.wrapping_add(results);
    }
    Run {
        wall,
        cpu,
        sums,
        per_worker,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let threads = args.common.threads().max(2);
    let stm = stm::Stm::builder()
        .segments(args.common.segments.unwrap_or(threads))
        .heap_size(256 << 20)
        .build_global()
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
    println!(
        "pool: {} jobs of {} rounds, queue: {:?}, 1 and {threads} workers, {} runs each",
        args.jobs, args.work, args.queue, args.repeat
    );
    let t0 = Instant::now();
    let want = (0..args.jobs).fold(0u64, |a, j| a.wrapping_add(compute(j, args.work)));
    let sequential = t0.elapsed();
    let want = (args.jobs, args.jobs * (args.jobs - 1) / 2, want);
    let before = stm.stats();
    let (mut one, mut many, mut overlap) = (Vec::new(), Vec::new(), Vec::new());
    let mut shares: Vec<Vec<u64>> = Vec::new();
    let mut check = Ok(String::new());
    for _ in 0..args.repeat.max(1) {
        for n in [1, threads] {
            let Run {
                wall,
                cpu,
                sums,
                per_worker,
            } = run(&args, n);
            if n > 1 {
                shares.push(per_worker);
            }
            if sums != want {
                check = Err(format!("{n} workers: totals {sums:?}, expected {want:?}"));
            }
            if n == 1 {
                one.push(wall.as_secs_f64());
            } else {
                many.push(wall.as_secs_f64());
                overlap.push(cpu.as_secs_f64() / (wall.as_secs_f64() * n as f64));
            }
        }
    }
    let stats = stm.stats() - before;
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{:.1}-{:.1} ms", lo * 1e3, hi * 1e3)
    };
    let (m1, mn) = (median(one.clone()), median(many.clone()));
    println!(
        "pool: sequential {:.1} ms; 1 worker median {:.1} ms ({}); {threads} workers median \
         {:.1} ms ({}); speed-up {:.2}x; overlap of the {threads}-worker runs: median {:.0}% \
         (min {:.0}%)",
        sequential.as_secs_f64() * 1e3,
        m1 * 1e3,
        spread(&one),
        mn * 1e3,
        spread(&many),
        m1 / mn,
        median(overlap.clone()) * 100.0,
        overlap.iter().copied().fold(f64::INFINITY, f64::min) * 100.0,
    );
    // How the jobs were shared: a worker that keeps losing conflicts does few of them.
    let shares: Vec<String> = shares
        .iter()
        .map(|w| {
            let w: Vec<String> = w.iter().map(u64::to_string).collect();
            w.join("/")
        })
        .collect();
    println!(
        "pool: jobs per worker in each {threads}-worker run: {}",
        shares.join(", ")
    );
    if mn < 0.1 {
        println!("pool: runs under 100 ms give no verdict; raise --jobs or --work");
    }
    if let Ok(msg) = &mut check {
        *msg = format!("every run did each of the {} jobs once", args.jobs);
    }
    let runs = (one.len() + many.len()) as u64;
    report("pool", check, runs * args.jobs, t0.elapsed(), stats);
}
