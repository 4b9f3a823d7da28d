//! `transaction` and `run-transactions`: ordering, conflicts, aborts, inevitable prints.

mod common;
use common::{error, fails, run, run_with};

/// Runs `src` with 1 and 2 threads several times; each run must succeed; returns outputs.
fn outputs(src: &str, rounds: usize) -> Vec<String> {
    let mut all = Vec::new();
    for threads in [1, 2] {
        for _ in 0..rounds {
            let (out, err) = run_with(src, threads);
            assert_eq!(err, None, "failed with {threads} threads:\n{src}\n{out}");
            all.push(out);
        }
    }
    all
}

#[test]
fn queued_calls_run_after_the_main_program() {
    assert_eq!(
        run("(defun f (n) (print n)) (transaction f (+ 40 2)) (print (quote hello))"),
        "'hello'\n42\n"
    );
    assert_eq!(
        run("(defun f (x) (if (< x 20) (transaction f (+ x 1)) (print x))) (print (f 0))"),
        "None\n20\n"
    );
    // Arguments are evaluated when the call is queued.
    assert_eq!(
        run("(setq x 1) (defun f (v) (print v x)) (transaction f x) (setq x 2)"),
        "1 2\n"
    );
    assert_eq!(run("(defun f () 1) (print (transaction f))"), "None\n");
}

#[test]
fn one_thread_runs_newest_first_depth_first() {
    let (out, err) = run_with(
        "(defun f (n) (print n)) (transaction f 1) (transaction f 2) (transaction f 3)",
        1,
    );
    assert_eq!((out.as_str(), err), ("3\n2\n1\n", None));
    let (out, err) = run_with(
        "(defun f (tag n) (print tag n) (if (< n 2) (transaction f tag (+ n 1))))
         (transaction f 1 0) (transaction f 2 0)",
        1,
    );
    assert_eq!(
        (out.as_str(), err),
        ("2 0\n2 1\n2 2\n1 0\n1 1\n1 2\n", None)
    );
}

#[test]
fn chains_that_fork() {
    let src = "(defun g (n)
                 (if (>= n 12)
                     (print n)
                   (transaction g (+ n 1))
                   (transaction g (+ n 2))))
               (g 0)";
    for out in outputs(src, 2) {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 377);
        assert_eq!(lines.iter().filter(|l| **l == "12").count(), 233);
        assert_eq!(lines.iter().filter(|l| **l == "13").count(), 144);
    }
}

#[test]
fn conflicting_increments_from_two_chains_give_exact_totals() {
    // Two chains of 300 steps each increment one container and one list item; every step
    // conflicts with the other chain's. Each step queues the next, so an aborted attempt
    // whose queued call survived would run extra steps and overshoot.
    let src = "(setq c (container 0))
               (setq l (list 0))
               (setq steps (container 0))
               (defun step (n)
                 (set c (+ (get c) 1))
                 (set l 0 (+ (get l 0) 1))
                 (set steps (+ (get steps) 1))
                 (if (< n 300) (transaction step (+ n 1))))
               (transaction step 1)
               (transaction step 1)
               (run-transactions)
               (print (get c) (get l 0) (get steps))";
    for out in outputs(src, 3) {
        assert_eq!(out, "600 600 600\n");
    }
}

#[test]
fn the_last_step_sees_the_full_count() {
    let src = "(setq c (container 0))
               (defun g (thread n)
                 (set c (+ (get c) 1))
                 (if (> (get c) 200)
                     (print (quote overflow) (get c))
                   (if (< n 100)
                       (transaction f thread (+ n 1))
                     (if (< (get c) 200)
                         (print (quote not-enough))
                       (print (quote ok))))))
               (defun f (thread n) (g thread n))
               (transaction f (quote t1) 1)
               (transaction f (quote t2) 1)";
    for out in outputs(src, 3) {
        assert_eq!(out, "'not-enough'\n'ok'\n");
    }
}

#[test]
fn an_aborted_attempt_leaves_no_frame_changes() {
    // Each step rewrites its own argument in its frame; a retried attempt must see the
    // frame as it was queued, never the aborted attempt's change.
    let src = "(setq lst (list 0))
               (defun g (thread n)
                 (set lst 0 (+ (get lst 0) 1))
                 (if (< n 150) (transaction f thread (+ n 1))))
               (defun f (thread n)
                 (setq m n n -1)
                 (if (== m -1)
                     (print (quote frame-has-been-modified))
                   (g thread m)))
               (transaction f (quote t1) 1)
               (transaction f (quote t2) 1)
               (run-transactions)
               (print (get lst 0))";
    for out in outputs(src, 3) {
        assert_eq!(out, "300\n");
    }
}

#[test]
fn list_length_under_contention() {
    let src = "(setq lst (list))
               (defun f ()
                 (setq n (len lst))
                 (if (< n 100) (transaction f) (print (quote done)))
                 (append lst n)
                 (assert (== (len lst) (+ n 1))))
               (transaction f)
               (transaction f)";
    for out in outputs(src, 3) {
        assert_eq!(out, "'done'\n'done'\n");
    }
    let src = "(setq lst (list))
               (while (< (len lst) 100) (append lst (len lst)))
               (defun f ()
                 (if (== (len lst) 0)
                     (print (quote done))
                   (assert (== (pop lst) (len lst)))
                   (transaction f)))
               (transaction f)
               (transaction f)";
    for out in outputs(src, 3) {
        assert_eq!(out, "'done'\n'done'\n");
    }
}

#[test]
fn prints_are_never_duplicated() {
    // 200 transactions that all conflict on one counter, each printing its number: every
    // number appears exactly once, and lines never interleave.
    let src = "(setq c (container 0))
               (defun f (i)
                 (set c (+ (get c) 1))
                 (print (quote line) i (get c)))
               (setq i 0)
               (while (< i 200) (transaction f i) (setq i (+ i 1)))";
    for out in outputs(src, 2) {
        let mut seen = vec![0; 200];
        let mut counts = Vec::new();
        for line in out.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "malformed line {line:?}");
            assert_eq!(parts[0], "'line'");
            seen[parts[1].parse::<usize>().unwrap()] += 1;
            counts.push(parts[2].parse::<usize>().unwrap());
        }
        assert!(seen.iter().all(|&n| n == 1), "{out}");
        counts.sort();
        assert_eq!(counts, (1..=200).collect::<Vec<_>>());
    }
}

#[test]
fn run_transactions_in_the_main_program() {
    let src = "(setq c (container 0))
               (defun inc () (set c (+ (get c) 1)))
               (transaction inc)
               (run-transactions)
               (print (get c))
               (setq i 0)
               (while (< i 4)
                 (transaction inc)
                 (transaction inc)
                 (run-transactions)
                 (print (get c))
                 (setq i (+ i 1)))
               (if (== (get c) 9)
                   (progn (transaction inc) (run-transactions) (print (quote then) (get c)))
                 (print (quote wrong)))
               (progn (transaction inc) (run-transactions) (print (get c)))
               (defun nested () (transaction inc) (transaction inc) (run-transactions) (get c))
               (print (nested))";
    assert_eq!(run(src), "1\n3\n5\n7\n9\n'then' 10\n11\n13\n");
    assert_eq!(run("(print (run-transactions))"), "None\n");
}

#[test]
fn run_transactions_inside_a_queued_call_is_an_error() {
    // Only the main program can commit its transaction and wait for the queued ones; a
    // queued call cannot (it would stop being one transaction), and running them inline
    // would silently lose their parallelism, so it is an error with a message.
    let src = "(defun leaf (n) (print (quote leaf) n))
               (defun f () (transaction leaf 1) (transaction leaf 2) (run-transactions) (print (quote after)))
               (transaction f)";
    let (out, msg) = fails(src);
    assert_eq!(out, "");
    assert!(
        msg.starts_with("run-transactions: not possible inside a transaction queued"),
        "{msg}"
    );
}

#[test]
fn transaction_errors() {
    assert_eq!(
        error("(transaction)"),
        "transaction: expected at least one argument"
    );
    assert_eq!(
        error("(run-transactions 1)"),
        "run-transactions: expected no argument"
    );
    assert_eq!(
        error("(transaction print 1)"),
        "symbol refers to a macro: 'print'"
    );
    assert_eq!(
        error("(transaction nope)"),
        "symbol not defined as a function: 'nope'"
    );
    // Arity is checked when the call is queued, before anything runs.
    let (out, msg) = fails("(defun f (a) a) (transaction f) (print 1)");
    assert_eq!(
        (out.as_str(), msg.as_str()),
        ("", "call to 'f': not enough arguments")
    );
    // An error inside a queued transaction ends the program.
    let (out, msg) = fails("(defun f () (print 1) (car 1)) (print 0) (transaction f)");
    assert_eq!(out, "0\n1\n");
    assert_eq!(msg, "DuCons_Car: expected 'cons' argument, got 'int'");
}

#[test]
fn aborted_attempts_leave_no_queued_calls_and_no_frame_changes() {
    // Two chains of 10 steps. Each step first queues the next step and overwrites its own
    // argument in its frame, then reads the counter, sleeps (so that the two chains' steps
    // overlap and one of them must abort), and writes it. A retried step must see its
    // frame as queued, and the queued next step of an aborted attempt must vanish: the
    // totals are exact only if both hold.
    let src = "(setq c (container 0))
               (setq steps (container 0))
               (defun step (n)
                 (if (== n -1) (print (quote frame-has-been-modified)))
                 (if (< n 10) (transaction step (+ n 1)))
                 (setq m n n -1)
                 (setq v (get c))
                 (sleepms 2)
                 (set c (+ v 1))
                 (set steps (+ (get steps) 1)))
               (transaction step 1)
               (transaction step 1)
               (run-transactions)
               (print (get c) (get steps))";
    for threads in [1, 2] {
        let buf = duhton::SharedBuf::default();
        let opts = duhton::Options {
            threads,
            heap_size: 64 << 20,
        };
        let interp = duhton::Interp::new(opts, Box::new(buf.clone())).unwrap();
        interp.run_source(src.as_bytes()).unwrap();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "20 20\n");
        if threads == 2 && stm_runtime::BARRIERS {
            assert!(
                interp.stm().stats().aborts() > 0,
                "the steps were expected to conflict: {}",
                interp.stm().stats()
            );
        }
    }
}

#[test]
fn run_transactions_in_a_function_called_as_a_statement_commits() {
    // `main` is called as a statement and has `run-transactions` in its body: the driver
    // runs its body statement by statement, so each `run-transactions` commits and the
    // queued calls run as transactions of their own (counted in the commits).
    let src = "(setq c (container 0))
               (defun inc () (set c (+ (get c) 1)))
               (defun main (n)
                 (setq i 0)
                 (while (< i n)
                   (transaction inc)
                   (transaction inc)
                   (if (== i 1) (run-transactions) (run-transactions))
                   (print i (get c))
                   (setq i (+ i 1)))
                 i)
               (main 3)
               (print (get c))";
    for threads in [1, 2] {
        let buf = duhton::SharedBuf::default();
        let opts = duhton::Options {
            threads,
            heap_size: 64 << 20,
        };
        let interp = duhton::Interp::new(opts, Box::new(buf.clone())).unwrap();
        let before = interp.stm().stats().commits;
        interp.run_source(src.as_bytes()).unwrap();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "0 2\n1 4\n2 6\n6\n");
        assert!(interp.stm().stats().commits - before >= 6);
    }
    assert_eq!(
        common::error("(defun f () (run-transactions) (f)) (f)"),
        "maximum recursion depth exceeded"
    );
}

#[test]
fn run_transactions_works_in_every_position() {
    // `inc` is queued, then `(rt)` commits, runs it and gives back the counter: each use
    // below sits in a different position (expression, argument, condition, recursion).
    let src = "(setq c (container 0))
               (defun inc () (set c (+ (get c) 1)))
               (defun rt () (transaction inc) (run-transactions) (get c))
               (defun id (x) x)
               (defun pair (a b) (list a b))
               (print (rt))
               (setq x (+ 10 (rt)))
               (print x)
               (print (pair (rt) (rt)) (id (rt)))
               (print (&& (rt) (|| 0 (rt))))
               (setq n 0)
               (while (< (rt) 12) (setq n (+ n 1)))
               (print n (get c))
               (if (rt) (print (quote yes) (rt)) (print (quote no)))
               (defun down (k) (if (== k 0) (rt) (+ 1 (down (- k 1)))))
               (print (down 5))
               (defun loop (k) (setq i 0) (while (< i k) (down 1) (setq i (+ i 1))) i)
               (print (loop 3) (get c))
               (print (setq y (rt)) y)
               (defun take (v) (set c (+ (get c) v)))
               (transaction take (rt))
               (run-transactions)
               (print (get c))";
    assert_eq!(
        run(src),
        "1\n12\n[ 3 4 ] 5\n1\n4 12\n'yes' 14\n20\n3 18\n19 19\n40\n"
    );
}

#[test]
fn run_transactions_deep_in_a_recursion_commits_and_runs_in_parallel() {
    // The shape of the original's nqueens: the `run-transactions` is in a function called
    // from a loop inside a recursion. Every queued call must run as a transaction of its
    // own (counted in the commits), not inside the main program's transaction.
    let src = "(setq total (container 0))
               (defun work (k) (set total (+ (get total) k)))
               (defun solve (depth)
                 (if (== depth 2)
                     (progn
                       (setq j 0)
                       (while (< j 5) (transaction work j) (setq j (+ j 1)))
                       (run-transactions))
                   (progn
                     (setq i 0)
                     (while (< i 3)
                       (solve (+ depth 1))
                       (setq i (+ i 1))))))
               (solve 0)
               (print (get total))";
    for threads in [1, 2] {
        let buf = duhton::SharedBuf::default();
        let opts = duhton::Options {
            threads,
            heap_size: 64 << 20,
        };
        let interp = duhton::Interp::new(opts, Box::new(buf.clone())).unwrap();
        let before = interp.stm().stats().commits;
        interp.run_source(src.as_bytes()).unwrap();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "90\n");
        // 9 rounds of 5 queued calls, each its own commit, plus the main program's.
        assert!(interp.stm().stats().commits - before >= 45 + 9);
    }
}
