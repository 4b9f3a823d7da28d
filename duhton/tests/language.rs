//! The language: reader, values, print formats, every builtin, frames and scoping.

mod common;
use common::{error, fails, run};

#[test]
fn print_formats() {
    assert_eq!(
        run("(print 42 -7 None (quote hello))"),
        "42 -7 None 'hello'\n"
    );
    assert_eq!(run("(print (quote (1 2 3)))"), "( 1 2 3 )\n");
    assert_eq!(run("(print (cons 1 2))"), "( 1 . 2 )\n");
    assert_eq!(run("(print (cons 1 (cons 2 3)))"), "( 1 2 . 3 )\n");
    assert_eq!(
        run("(print (cons 1 (cons (quote (2 3)) (cons None (cons 4 None)))))"),
        "( 1 ( 2 3 ) None 4 )\n"
    );
    assert_eq!(run("(print (list))"), "[]\n");
    assert_eq!(run("(print (list 10 50))"), "[ 10 50 ]\n");
    assert_eq!(
        run("(print (list (list) (list 1) (cons 1 2)))"),
        "[ [] [ 1 ] ( 1 . 2 ) ]\n"
    );
    assert_eq!(run("(print (container))"), "<container None>\n");
    assert_eq!(
        run("(print (container (container 3)))"),
        "<container <container 3>>\n"
    );
    assert_eq!(run("(print)"), "\n");
    assert_eq!(run("(print 1 2 3)"), "1 2 3\n");
    assert_eq!(run("(print (quote ()))"), "None\n");
}

#[test]
fn reader_rules() {
    // `;` starts a comment only where a token would begin.
    assert_eq!(
        run("(setq x;y 5) ; a comment (print 1)\n(print x;y)"),
        "5\n"
    );
    // strtol base 0: hex, octal, signs; the rest are symbols.
    assert_eq!(
        run("(print -5 +7 0x10 010 0X1F -0x10)"),
        "-5 7 16 8 31 -16\n"
    );
    assert_eq!(
        run("(print (quote (08 1.5 - . \"hi\" 'a)))"),
        "( '08' '1.5' '-' '.' '\"hi\"' ''a' )\n"
    );
    // 32-bit wrapping of big literals.
    assert_eq!(
        run("(print 2147483648 4294967297 99999999999999999999)"),
        "-2147483648 1 -1\n"
    );
    // `(a . b)` is a three-element list, `()` is None.
    assert_eq!(run("(print (quote (a . b)))"), "( 'a' '.' 'b' )\n");
    assert_eq!(run("(print (type ()) (pair? ()))"), "'NoneType' 0\n");
    // Whitespace of every kind separates tokens.
    assert_eq!(run("(print\t1\r\n2\x0b3\x0c4)"), "1 2 3 4\n");
}

#[test]
fn unbalanced_input() {
    assert_eq!(error("(print 1"), "more '(' than ')'");
    assert_eq!(error("(print 1))"), "more ')' than '('");
    assert_eq!(error(")"), "more ')' than '('");
    // Nothing runs when the input does not parse.
    assert_eq!(fails("(print 1) (").0, "");
}

#[test]
fn evaluation_and_truthiness() {
    assert_eq!(
        run("(print (list 1 2) (container 1))"),
        "[ 1 2 ] <container 1>\n"
    );
    assert_eq!(
        run("(print (if None 1 2) (if 0 1 2) (if 3 1 2) (if (list) 1 2) (if (list 0) 1 2))"),
        "2 2 1 2 1\n"
    );
    assert_eq!(
        run("(print (if (quote s) 1 2) (if (cons 1 2) 1 2) (if (container) 1 2))"),
        "1 1 1\n"
    );
    assert_eq!(run("(print None (type None))"), "None 'NoneType'\n");
}

#[test]
fn arithmetic() {
    assert_eq!(
        run("(print (+) (+ 1) (+ 1 2 3) (*) (* 2 3 4))"),
        "0 1 6 1 24\n"
    );
    assert_eq!(run("(print (-) (- 5) (- 10 1 2))"), "0 5 7\n");
    assert_eq!(
        run("(print (/) (/ 7) (/ 7 2) (/ -7 2) (/ 7 -2) (/ 100 5 2))"),
        "0 7 3 -3 -3 10\n"
    );
    assert_eq!(
        run("(print (%) (% 7) (% 7 3) (% -7 3) (% 7 -3) (% 100 30 7))"),
        "0 7 1 -1 1 3\n"
    );
    assert_eq!(run("(print (^) (^ 5) (^ 5 3) (^ 1 2 4))"), "0 5 6 7\n");
    assert_eq!(
        run("(print (<< 1) (<< 1 4) (<< 1 2 3) (>> 256 4) (>> -16 2))"),
        "1 16 32 16 -4\n"
    );
    // 32-bit wrapping.
    assert_eq!(
        run("(print (+ 2147483647 1) (* 65536 65536) (- -2147483648 1) (/ -2147483648 -1) (% -2147483648 -1))"),
        "-2147483648 0 2147483647 -2147483648 0\n"
    );
    assert_eq!(error("(/ 1 0)"), "/: division by zero");
    assert_eq!(error("(% 1 0)"), "%: division by zero");
    assert_eq!(error("(<<)"), "<<: expected at least one argument");
    assert_eq!(error("(>>)"), ">>: expected at least one argument");
    assert_eq!(
        error("(+ 1 (list))"),
        "DuInt_AsInt: expected 'int' argument, got 'list'"
    );
    assert_eq!(
        error("(- None)"),
        "DuInt_AsInt: expected 'int' argument, got 'NoneType'"
    );
}

#[test]
fn comparisons_and_logic() {
    assert_eq!(
        run("(print (< 1 2) (<= 2 2) (== 1 2) (!= 1 2) (> 1 2) (>= 3 2))"),
        "1 1 0 1 0 1\n"
    );
    assert_eq!(error("(< 1)"), "comparison: expected two arguments");
    assert_eq!(error("(== 1 2 3)"), "comparison: expected two arguments");
    assert_eq!(
        error("(< 1 (quote a))"),
        "DuInt_AsInt: expected 'int' argument, got 'symbol'"
    );
    assert_eq!(
        run("(print (&&) (||) (&& 1 2) (&& 1 0) (|| 0 0) (|| 0 5))"),
        "1 0 1 0 0 1\n"
    );
    // Short-circuit: the later forms do not run.
    assert_eq!(run("(&& 0 (print 1)) (|| 1 (print 2)) (print 3)"), "3\n");
    assert_eq!(
        run("(print (not 0) (not 1) (not None) (not (list)) (not (list 1)))"),
        "1 0 1 1 0\n"
    );
    assert_eq!(error("(not)"), "not: expected one argument");
}

#[test]
fn types_and_quote() {
    assert_eq!(
        run("(print (type 1) (type None) (type (quote x)) (type (cons 1 2)) (type (list)) (type (container)))"),
        "'int' 'NoneType' 'symbol' 'cons' 'list' 'container'\n"
    );
    assert_eq!(error("(type)"), "type: expected one argument");
    assert_eq!(error("(quote)"), "quote: expected one argument");
    assert_eq!(error("(quote a b)"), "quote: expected one argument");
}

#[test]
fn lists() {
    assert_eq!(
        run("(setq l (list 1 2 3)) (print (len l) (get l 0) (get l 2))"),
        "3 1 3\n"
    );
    assert_eq!(
        run("(setq l (list 1 2)) (print (set l 1 9) l)"),
        "None [ 1 9 ]\n"
    );
    assert_eq!(
        run("(setq l (list)) (print (append l 1) (append l 2))"),
        "[ 1 2 ] [ 1 2 ]\n"
    );
    assert_eq!(
        run("(setq l (list 1 2 3 4)) (print (pop l) l (pop l 0) l (pop l 1) l)"),
        "4 [ 2 ] 1 [ 2 ] 3 [ 2 ]\n"
    );
    // Many items: the item tree grows several levels.
    assert_eq!(
        run(
            "(setq l (list)) (setq i 0) (while (< i 1000) (append l (* i i)) (setq i (+ i 1)))
             (print (len l) (get l 0) (get l 7) (get l 8) (get l 63) (get l 64) (get l 999))
             (set l 513 -1) (print (get l 513) (pop l 100) (get l 100) (len l))"
        ),
        "1000 0 49 64 3969 4096 998001\n-1 10000 10201 999\n"
    );
    assert_eq!(
        run("(print (list None (quote a) (list)))"),
        "[ None 'a' [] ]\n"
    );
    // Small lists keep their items inline and move them to a tree at the third item.
    assert_eq!(
        run(
            "(setq l (list 1 (quote b))) (print (pop l 0) (len l) (get l 0)) (print (pop l) l)
             (append l None) (append l 2) (append l (list 3)) (print l (pop l 0) (get l 1))
             (set l 0 9) (print l (pop l) (pop l) l)"
        ),
        "1 1 'b'\n'b' []\n[ 2 [ 3 ] ] None [ 3 ]\n[] [ 3 ] 9 []\n"
    );
    assert_eq!(
        run("(setq l (list 1 2)) (set l 1 (container 7)) (set l 0 None) (print l (len l))"),
        "[ None <container 7> ] 2\n"
    );
    assert_eq!(error("(get (list 1) 1)"), "list_get: index out of range");
    assert_eq!(error("(get (list 1) -1)"), "list_get: index out of range");
    assert_eq!(error("(set (list 1) 1 0)"), "list_set: index out of range");
    assert_eq!(error("(set (list 1) -1 0)"), "list_set: index out of range");
    assert_eq!(error("(pop (list 1) 1)"), "list_pop: index out of range");
    assert_eq!(error("(pop (list 1) -1)"), "list_pop: index out of range");
    assert_eq!(error("(pop (list))"), "pop: empty list");
    assert_eq!(error("(pop)"), "pop: expected at least one argument");
    assert_eq!(
        error("(pop (list 1) 0 0)"),
        "pop: expected at most two arguments"
    );
    assert_eq!(
        error("(pop 5)"),
        "DuList_Size: expected 'list' argument, got 'int'"
    );
    assert_eq!(
        error("(pop 5 0)"),
        "DuList_Pop: expected 'list' argument, got 'int'"
    );
    assert_eq!(
        error("(append 5 1)"),
        "DuList_Append: expected 'list' argument, got 'int'"
    );
    assert_eq!(error("(append (list))"), "append: expected two arguments");
    assert_eq!(error("(get)"), "get: expected at least one argument");
    assert_eq!(
        error("(get (list 1))"),
        "get with a list: expected two arguments"
    );
    assert_eq!(
        error("(get (list 1) 0 0)"),
        "get with a list: expected two arguments"
    );
    assert_eq!(error("(get 5)"), "get: bad argument type 'int'");
    assert_eq!(
        error("(set (list 1))"),
        "set: expected at least two arguments"
    );
    assert_eq!(
        error("(set (list 1) 0)"),
        "set with a list: expected three arguments"
    );
    assert_eq!(error("(set None 0)"), "set: bad argument type 'NoneType'");
    assert_eq!(
        error("(get (list 1) None)"),
        "DuInt_AsInt: expected 'int' argument, got 'NoneType'"
    );
}

#[test]
fn length() {
    assert_eq!(run("(print (len (list)) (len (list 1 2)))"), "0 2\n");
    assert_eq!(error("(len 5)"), "object of type 'int' has no length");
    assert_eq!(
        error("(len (cons 1 2))"),
        "object of type 'cons' has no length"
    );
    assert_eq!(
        error("(len (container))"),
        "object of type 'container' has no length"
    );
    assert_eq!(error("(len)"), "len: expected one argument");
}

#[test]
fn containers() {
    assert_eq!(
        run("(setq c (container 1)) (print (get c)) (print (set c (list 2))) (print c (get c))"),
        "1\nNone\n<container [ 2 ]> [ 2 ]\n"
    );
    assert_eq!(error("(container 1 2)"), "container: expected one argument");
    assert_eq!(
        error("(get (container) 0)"),
        "get with a container: expected one argument"
    );
    assert_eq!(
        error("(set (container) 1 2)"),
        "set with a container: expected two arguments"
    );
}

#[test]
fn conses() {
    assert_eq!(
        run("(setq p (cons 1 (quote (2 3)))) (print (car p) (cdr p) (pair? p) (pair? 1) (pair? (list)))"),
        "1 ( 2 3 ) 1 0 0\n"
    );
    assert_eq!(
        error("(car 1)"),
        "DuCons_Car: expected 'cons' argument, got 'int'"
    );
    assert_eq!(
        error("(cdr None)"),
        "DuCons_Cdr: expected 'cons' argument, got 'NoneType'"
    );
    assert_eq!(error("(car)"), "car: expected one argument");
    assert_eq!(error("(cdr 1 2)"), "cdr: expected one argument");
    assert_eq!(error("(cons 1)"), "cons: expected two arguments");
    assert_eq!(error("(pair?)"), "pair?: expected one argument");
}

#[test]
fn progn_setq_if_while() {
    assert_eq!(run("(print (progn) (progn 1 2 3))"), "None 3\n");
    assert_eq!(run("(print (setq a 1 b (+ a 1)) a b)"), "2 1 2\n");
    assert_eq!(run("(print (setq))"), "None\n");
    assert_eq!(error("(setq a 1 b)"), "setq: number of arguments is odd");
    assert_eq!(
        error("(setq 1 2)"),
        "DuSymbol_Id: expected 'symbol' argument, got 'int'"
    );
    assert_eq!(
        run("(print (if 1 (print 1) (print 2) (print 3)))"),
        "1\nNone\n"
    );
    assert_eq!(run("(print (if 0 (print 1) (print 2) 3))"), "2\n3\n");
    assert_eq!(run("(print (if 0 1))"), "None\n");
    assert_eq!(error("(if 1)"), "if: expected at least two arguments");
    assert_eq!(
        run("(setq i 0) (print (while (< i 3) (print i) (setq i (+ i 1))))"),
        "0\n1\n2\nNone\n"
    );
    assert_eq!(error("(while)"), "while: expected at least one argument");
}

#[test]
fn functions_and_frames() {
    assert_eq!(
        run("(print (defun add (a b) (+ a b))) (print (add 2 3))"),
        "None\n5\n"
    );
    assert_eq!(run("(defun f ()) (print (f))"), "None\n");
    // setq inside a function binds in the callee frame only.
    assert_eq!(
        run("(setq x 1) (defun f () (setq x 2) x) (print (f) x)"),
        "2 1\n"
    );
    // Globals are visible from functions; arguments are evaluated in the caller's frame.
    assert_eq!(
        run("(setq g 10) (defun f (a) (+ a g)) (defun h (g) (f g)) (print (h 5))"),
        "15\n"
    );
    // No closures: only the current frame and the global one.
    assert_eq!(
        error("(defun f (a) (g)) (defun g () a) (f 1)"),
        "symbol not defined as a variable: 'a'"
    );
    // A local defun is local.
    assert_eq!(
        run("(defun outer () (defun inner () 7) (inner)) (print (outer) (defined? inner))"),
        "7 0\n"
    );
    assert_eq!(
        error("(defun outer () (defun inner () 7)) (outer) (inner)"),
        "symbol not defined as a function: 'inner'"
    );
    // A local entry holding only a value hides the global function.
    assert_eq!(
        error("(defun f () 1) (defun g (f) (f)) (g 5)"),
        "symbol not defined as a function: 'f'"
    );
    // A user function wins over a builtin of the same name.
    assert_eq!(run("(defun len (x) 99) (print (len (list)))"), "99\n");
    // Recursion.
    assert_eq!(
        run("(defun fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2))))) (print (fib 15))"),
        "610\n"
    );
    assert_eq!(
        error("(defun f (a b) a) (f 1)"),
        "call to 'f': not enough arguments"
    );
    assert_eq!(
        error("(defun f (a) a) (f 1 2)"),
        "call to 'f': too many arguments"
    );
    assert_eq!(error("(defun f)"), "defun: expected at least two arguments");
    assert_eq!(
        error("(defun 1 ())"),
        "DuSymbol_Id: expected 'symbol' argument, got 'int'"
    );
    assert_eq!(
        error("(undefined 1)"),
        "symbol not defined as a function: 'undefined'"
    );
    assert_eq!(error("(print y)"), "symbol not defined as a variable: 'y'");
    let (out, msg) = fails("(1 2)");
    assert_eq!(
        (out.as_str(), msg.as_str()),
        ("_DuFrame_EvalCall: 1\n", "expected a symbol to execute")
    );
    let (out, msg) = fails("((quote f))");
    assert_eq!(out, "_DuFrame_EvalCall: ( 'quote' 'f' )\n");
    assert_eq!(msg, "expected a symbol to execute");
}

#[test]
fn defined_and_assert() {
    assert_eq!(
        run("(setq a 1) (defun f (b) (print (defined? a) (defined? b) (defined? c) (defined? f))) (f 1)"),
        "1 1 0 0\n"
    );
    assert_eq!(run("(print (defined? None))"), "1\n");
    assert_eq!(error("(defined?)"), "defined?: expected one argument");
    assert_eq!(
        error("(defined? 1)"),
        "DuSymbol_Id: expected 'symbol' argument, got 'int'"
    );
    assert_eq!(run("(print (assert 1))"), "None\n");
    let (out, msg) = fails("(print 1) (assert (== 1 2))");
    assert_eq!(out, "1\nassert failed: ( '==' 1 2 )\n");
    assert_eq!(msg, "assert failed");
    assert_eq!(
        error("(assert None)"),
        "DuInt_AsInt: expected 'int' argument, got 'NoneType'"
    );
    assert_eq!(error("(assert)"), "assert: expected one argument");
}

#[test]
fn time_and_sleep() {
    assert_eq!(
        run("(setq t (time 1 2)) (print (type t) (>= t 0))"),
        "'int' 1\n"
    );
    assert_eq!(run("(print (sleepms 1))"), "None\n");
    assert_eq!(error("(sleepms)"), "sleepms: expected one argument");
}

#[test]
fn deep_recursion_is_an_error() {
    assert_eq!(
        error("(defun f (n) (+ 1 (f n))) (f 1)"),
        "maximum recursion depth exceeded"
    );
    // Also inside a queued transaction (a worker thread with a smaller stack).
    assert_eq!(
        error("(defun f (n) (+ 1 (f n))) (transaction f 1)"),
        "maximum recursion depth exceeded"
    );
    // Printing a container that holds itself.
    assert_eq!(
        error("(setq c (container)) (set c c) (print c)"),
        "maximum recursion depth exceeded"
    );
    // Deeply nested input reads fine and fails cleanly when evaluated.
    let deep = format!("{}{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(!error(&deep).is_empty());
}
