//! Prints what `#[transactional]` / `#[object]` make of a file's items:
//! `cargo run -p stm-transform --example show -- path/to/file.rs`.

fn main() {
    let path = std::env::args().nth(1).expect("usage: show FILE.rs");
    let src = std::fs::read_to_string(&path).expect("readable file");
    print!("{}", stm_transform::expand_file(&src).expect("a Rust file"));
}
