//! T threads doing random transfers among M accounts: the total is conserved and no balance
//! goes negative. Runs in STM mode and, with `--features stm-runtime/gil`, in GIL mode.

mod common;

use common::{stm, Rng};
use stm_runtime::{Root, Stm};

const INITIAL: i64 = 1_000;

fn open_accounts(stm: &Stm, m: usize) -> Vec<Root<i64>> {
    stm.atomically(|tx| (0..m).map(|_| tx.root(tx.alloc(INITIAL))).collect())
}

fn balances(stm: &Stm, accounts: &[Root<i64>]) -> Vec<i64> {
    stm.atomically(|tx| accounts.iter().map(|a| a.get(tx).get()).collect())
}

/// Runs `per_thread` random transfers on each of `threads` threads; returns how many moved
/// money.
fn run_bank(stm: &Stm, accounts: &[Root<i64>], threads: usize, per_thread: usize) -> u64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng::new(t as u64 + 1);
                    let mut done = 0u64;
                    for _ in 0..per_thread {
                        let from = rng.below(accounts.len() as u64) as usize;
                        let to = rng.below(accounts.len() as u64) as usize;
                        let amount = rng.below(300) as i64;
                        let moved = stm.atomically(|tx| {
                            let (f, t) = (accounts[from].get(tx), accounts[to].get(tx));
                            let fb = f.get();
                            if fb < amount || from == to {
                                return false;
                            }
                            f.set(fb - amount);
                            t.set(t.get() + amount);
                            true
                        });
                        done += u64::from(moved);
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn check(stm: &Stm, accounts: &[Root<i64>]) {
    let b = balances(stm, accounts);
    assert_eq!(
        b.iter().sum::<i64>(),
        INITIAL * accounts.len() as i64,
        "total not conserved"
    );
    assert!(b.iter().all(|&x| x >= 0), "negative balance in {b:?}");
}

#[test]
fn high_contention_total_is_conserved() {
    let stm = stm(2);
    let accounts = open_accounts(&stm, 4);
    let moved = run_bank(&stm, &accounts, 4, 3_000);
    check(&stm, &accounts);
    let s = stm.stats();
    assert!(moved > 0);
    // Every transfer transaction plus the two setup/check transactions committed.
    assert_eq!(s.commits, 4 * 3_000 + 2);
}

#[test]
fn low_contention_total_is_conserved() {
    let stm = stm(2);
    let accounts = open_accounts(&stm, 1_000);
    run_bank(&stm, &accounts, 2, 5_000);
    check(&stm, &accounts);
}

#[test]
fn more_threads_than_segments_wait_and_finish() {
    let stm = stm(1);
    let accounts = open_accounts(&stm, 8);
    run_bank(&stm, &accounts, 6, 500);
    check(&stm, &accounts);
}
