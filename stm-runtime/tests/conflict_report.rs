//! Conflict reports name the kind of conflict, the object's type and the source lines of
//! both sides.

use std::sync::atomic::{AtomicBool, Ordering};

use stm_runtime::{ConflictKind, Root, Stm};

fn runtime(report: bool) -> Stm {
    Stm::builder()
        .segments(2)
        .heap_size(1 << 20)
        .conflict_reports(report)
        .build()
        .unwrap()
}

fn wait(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
}

/// A's first attempt runs `a_body`, then lets B commit `b_body`, then tries to commit.
fn lose_once(
    stm: &Stm,
    a_body: impl Fn(&stm_runtime::Tx) + Sync,
    b_body: impl Fn(&stm_runtime::Tx) + Sync,
) -> u32 {
    let (a_ran, b_done) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            let mut attempts = 0;
            stm.atomically(|tx| {
                attempts += 1;
                a_body(tx);
                if attempts == 1 {
                    a_ran.store(true, Ordering::Release);
                    wait(&b_done);
                }
            });
            attempts
        });
        s.spawn(|| {
            wait(&a_ran);
            stm.atomically(&b_body);
            b_done.store(true, Ordering::Release);
        });
        a.join().unwrap()
    })
}

#[test]
fn a_write_write_conflict_names_both_writes() {
    if !stm_runtime::BARRIERS {
        return; // GIL mode: B cannot run while A holds the lock, and nothing conflicts.
    }
    let stm = runtime(true);
    let x: Root<u64> = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let line_a = line!() + 1;
    let a = |tx: &stm_runtime::Tx| x.get(tx).update(|v| *v += 1);
    let line_b = line!() + 1;
    let b = |tx: &stm_runtime::Tx| x.get(tx).update(|v| *v += 10);
    assert_eq!(lose_once(&stm, a, b), 2, "A lost once and ran again");
    assert_eq!(stm.atomically(|tx| x.get(tx).get()), 11);
    let report = stm.conflict_report();
    assert_eq!(report.sites.len(), 1, "{report}");
    let site = &report.sites[0];
    assert_eq!(site.kind, ConflictKind::WriteWrite);
    assert_eq!(site.object_type, Some("u64"));
    assert_eq!(site.count, 1);
    let (this, other) = (site.this_side.unwrap(), site.other_side.unwrap());
    assert!(this.file.ends_with("conflict_report.rs"), "{this}");
    assert_eq!((this.line, other.line), (line_a, line_b), "{report}");
    let text = report.to_string();
    assert!(text.contains("write-write on u64"), "{text}");
    assert!(
        text.contains(&format!("conflict_report.rs:{line_a}")),
        "{text}"
    );
}

#[test]
fn a_read_write_conflict_names_the_writer_and_the_readers_transaction() {
    if !stm_runtime::BARRIERS {
        return;
    }
    let stm = runtime(true);
    let (x, y) = stm.atomically(|tx| (tx.root(tx.alloc(0u64)), tx.root(tx.alloc(0i32))));
    let a = |tx: &stm_runtime::Tx| {
        let v = x.get(tx).get();
        y.get(tx).set(v as i32);
    };
    let line_b = line!() + 1;
    let b = |tx: &stm_runtime::Tx| x.get(tx).set(5);
    assert_eq!(lose_once(&stm, a, b), 2);
    let report = stm.conflict_report();
    let site = &report.sites[0];
    assert_eq!(site.kind, ConflictKind::ReadWrite, "{report}");
    assert_eq!(site.other_side.unwrap().line, line_b);
    // The reader's side is where its transaction was started (inside `lose_once`).
    assert!(site.this_side.unwrap().file.ends_with("conflict_report.rs"));
    assert_eq!(stm.atomically(|tx| y.get(tx).get()), 5);
}

#[test]
fn nothing_is_recorded_when_reporting_is_off() {
    if !stm_runtime::BARRIERS {
        return;
    }
    let stm = runtime(false);
    let x = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let a = |tx: &stm_runtime::Tx| x.get(tx).update(|v| *v += 1);
    assert_eq!(lose_once(&stm, a, a), 2);
    assert!(stm.conflict_report().sites.is_empty());
    assert_eq!(stm.stats().aborts_write_write, 1);
    // Turned on later, it records from then on.
    stm.set_conflict_reports(true);
    assert_eq!(lose_once(&stm, a, a), 2);
    assert_eq!(stm.conflict_report().count(), 1);
    stm.clear_conflict_report();
    assert_eq!(stm.conflict_report().count(), 0);
}

#[test]
fn transactions_between_break_points_are_reported_apart() {
    use std::ops::ControlFlow;
    if !stm_runtime::BARRIERS {
        return; // Under the GIL, B could not commit while A's transaction waits for it.
    }
    let stm = runtime(true);
    let cell: Root<u64> = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let (a_read, b_done) = (AtomicBool::new(false), AtomicBool::new(false));
    let before = stm.stats();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Three steps, one transaction (the budget is larger): the first attempt reads the
            // cell, lets B commit a write to it, and so loses at its commit.
            stm.run_in_transactions(0u32, |tx, n| {
                let c = cell.get(tx);
                let v = c.get();
                if !a_read.swap(true, Ordering::AcqRel) {
                    wait(&b_done);
                }
                c.set(v + 1);
                *n += 1;
                if *n == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        });
        s.spawn(|| {
            wait(&a_read);
            stm.atomically(|tx| cell.get(tx).update(|v| *v += 100));
            b_done.store(true, Ordering::Release);
        });
    });
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 103);
    let d = stm.stats() - before;
    assert!(d.break_aborts >= 1, "{d}");
    let report = stm.conflict_report();
    assert!(
        report.sites.iter().any(|s| s.between_breaks),
        "no row for the series: {report}"
    );
    assert!(report.to_string().contains("(between break points)"));
}

/// Transactions that become inevitable are named with the line that asked for it, and the
/// report gives the time lost as a share of the CPU time transactions ran.
#[test]
fn becoming_inevitable_is_reported_with_its_site_and_times_have_a_total() {
    let stm = runtime(true);
    let c = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    for _ in 0..3 {
        stm.atomically(|tx| {
            tx.become_inevitable(); // the reported line
            c.get(tx).set(1);
        });
    }
    let line = line!() - 4;
    let r = stm.conflict_report();
    let row = r
        .sites
        .iter()
        .find(|s| s.kind == ConflictKind::BecameInevitable)
        .expect("a row for the inevitable transactions");
    assert_eq!(row.count, 3);
    assert_eq!(row.this_side.map(|s| s.line), Some(line));
    assert!(r.transaction_time > std::time::Duration::ZERO);
    let text = r.to_string();
    assert!(text.contains("3x became inevitable at"), "{text}");
    assert!(text.contains("of thread CPU time"), "{text}");
}

/// The global runtime is never dropped, and `process::exit` runs no destructors: with
/// `STM_CONFLICT_REPORT=1` its report is printed at exit anyway. (The test runs itself as a
/// child process that exits that way.)
#[test]
fn the_global_runtime_prints_its_report_at_exit() {
    if std::env::var_os("STM_REPORT_CHILD").is_some() {
        stm_runtime::atomically(|tx| tx.become_inevitable());
        std::process::exit(0);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_global_runtime_prints_its_report_at_exit",
            "--nocapture",
        ])
        .env("STM_REPORT_CHILD", "1")
        .env("STM_CONFLICT_REPORT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("STM conflict report"), "{err}");
    assert!(err.contains("became inevitable at"), "{err}");
}
