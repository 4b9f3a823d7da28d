//! The bank: random transfers among accounts in the shared heap, run by several threads.
//! The total is conserved and no balance goes negative, whatever the interleaving.
//!
//! ```text
//! cargo run --release --example bank -- --threads 2               # low contention
//! cargo run --release --example bank -- --threads 2 --accounts 16 # high contention
//! STM_CONFLICT_REPORT=1 cargo run --release --example bank -- --accounts 16   # + report
//! ```

use std::time::Instant;

use clap::Parser;
use stm::{Gc, Root};
use stm_examples::{report, Common, Rng};
use stm_runtime as stm;

#[derive(Parser, Debug)]
#[command(about = "Random transfers among accounts, in parallel transactions")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Number of accounts (16 = high contention, 10000 = low).
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Transfers per thread.
    #[arg(long, default_value_t = 500_000)]
    transfers: u64,
}

const INITIAL: i64 = 1_000;

/// An account in the shared heap.
#[stm::object]
struct Account {
    balance: i64,
    owner: u32,
}

/// Moves `amount` from one account to another if the source can pay; returns whether it did.
/// Runs inside the caller's transaction (the macro inserts the barriers).
#[stm::transactional]
fn transfer(from: Gc<Account>, to: Gc<Account>, amount: i64) -> bool {
    if from.balance < amount {
        return false;
    }
    from.balance -= amount;
    to.balance += amount;
    true
}

#[stm::transactional]
fn open(tx: &stm::Tx, owner: u32) -> Root<Account> {
    let a = Gc::new(Account {
        balance: INITIAL,
        owner,
    });
    tx.root(a)
}

#[stm::transactional]
fn balance(a: Gc<Account>) -> i64 {
    a.balance
}

fn main() {
    let args = Args::parse();
    if args.accounts < 2 {
        eprintln!("error: --accounts must be at least 2");
        std::process::exit(2);
    }
    let threads = args.common.threads();
    let stm = args.common.stm(64 + args.accounts / 1024);
    let accounts: Vec<Root<Account>> =
        stm.atomically(|tx| (0..args.accounts).map(|i| open(tx, i as u32)).collect());
    println!(
        "bank: {threads} threads, {} accounts, {} transfers per thread",
        args.accounts, args.transfers
    );
    let start = Instant::now();
    let moved: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stm, accounts) = (&stm, &accounts);
                s.spawn(move || {
                    let mut rng = Rng::new(t as u64 + 1);
                    let mut moved = 0;
                    for _ in 0..args.transfers {
                        let a = rng.below(accounts.len() as u64) as usize;
                        let mut b = rng.below(accounts.len() as u64 - 1) as usize;
                        if b >= a {
                            b += 1;
                        }
                        let amount = rng.below(100) as i64;
                        moved += u64::from(stm.atomically(|tx| {
                            transfer(accounts[a].get(tx), accounts[b].get(tx), amount)
                        }));
                    }
                    moved
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let elapsed = start.elapsed();
    let balances: Vec<i64> =
        stm.atomically(|tx| accounts.iter().map(|a| balance(a.get(tx))).collect());
    let total: i64 = balances.iter().sum();
    let expected = INITIAL * args.accounts as i64;
    let check = if total != expected {
        Err(format!("total is {total}, expected {expected}"))
    } else if let Some(neg) = balances.iter().find(|&&b| b < 0) {
        Err(format!("a balance went negative: {neg}"))
    } else {
        Ok(format!(
            "total {total} conserved, no negative balance, {moved} transfers moved money"
        ))
    };
    report(
        "bank",
        check,
        threads as u64 * args.transfers,
        elapsed,
        stm.stats(),
    );
}
