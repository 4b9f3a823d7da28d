//! Conflict reports name the user's lines: the generated writes are `#[track_caller]` down to
//! the runtime's write barrier.

use stm::Gc;
use stm_runtime as stm;

#[stm::object]
struct Counter {
    hits: u64,
}

#[stm::transactional]
fn hit(c: Gc<Counter>, twice: bool) {
    if twice {
        let d = std::convert::identity(c); // a binding of unknown type: tag dispatch
        d.hits += 1; // WRITE
    } else {
        c.hits += 1; // WRITE
    }
}

#[stm::transactional]
fn new_counter(tx: &stm::Tx) -> Gc<Counter> {
    let _ = tx;
    Gc::new(Counter { hits: 0 })
}

#[stm::transactional]
fn hits(c: Gc<Counter>) -> u64 {
    c.hits
}

#[test]
fn conflict_sites_are_user_lines() {
    let rt = stm::Stm::builder()
        .segments(4)
        .heap_size(16 << 20)
        .conflict_reports(true)
        .build()
        .expect("runtime");
    let root = rt.atomically(|tx| tx.root(new_counter(tx)));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..500 {
                    rt.atomically(|tx| hit(root.get(tx), i % 2 == 0)); // ATOMICALLY
                }
            });
        }
    });
    assert_eq!(rt.atomically(|tx| hits(root.get(tx))), 2000);
    let lines = |mark: &str| -> Vec<u32> {
        include_str!("reports.rs")
            .lines()
            .enumerate()
            .filter(|(_, l)| l.ends_with(mark))
            .map(|(i, _)| i as u32 + 1)
            .collect()
    };
    let (writes, starts) = (lines("// WRITE"), lines("// ATOMICALLY"));
    for site in rt.conflict_report().sites {
        // The winner's side is where it wrote; the loser's is its first write, or else where
        // its transaction started.
        if let Some(w) = site.other_side {
            assert!(
                writes.contains(&w.line),
                "{w:?} is not a write line {writes:?}"
            );
        }
        if let Some(l) = site.this_side {
            assert!(
                writes.contains(&l.line) || starts.contains(&l.line),
                "{l:?} is neither a write nor a start line"
            );
        }
    }
}
