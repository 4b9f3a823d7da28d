//! A compute-heavy parallel job with rare sharing: the Mandelbrot set, one transaction per
//! image row run by a `TransactionQueue`. Rows are independent and land in different cards of
//! one shared `TVec`, so transactions almost never conflict and throughput should grow
//! nearly linearly with threads.
//!
//! ```text
//! cargo run --release --example mandelbrot -- --threads 2
//! ```

use std::time::Instant;

use clap::Parser;
use stm::{GcVec, Stm, TransactionQueue};
use stm_examples::{report, Common};
use stm_runtime as stm;

#[derive(Parser, Debug)]
#[command(about = "Mandelbrot rows as parallel transactions")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Image width (a multiple of 32 keeps rows in separate cards).
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Image height: one transaction per row.
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Iterations per pixel at most.
    #[arg(long, default_value_t = 500)]
    iterations: u32,
}

/// Escape time of the point `(x, y)` of the image.
fn pixel(x: usize, y: usize, args: &Args) -> u32 {
    let cx = -2.0 + 2.6 * x as f64 / args.width as f64;
    let cy = -1.3 + 2.6 * y as f64 / args.height as f64;
    let (mut zx, mut zy, mut i) = (0.0f64, 0.0f64, 0);
    while i < args.iterations && zx * zx + zy * zy <= 4.0 {
        let t = zx * zx - zy * zy + cx;
        zy = 2.0 * zx * zy + cy;
        zx = t;
        i += 1;
    }
    i
}

fn main() {
    let args = Args::parse();
    if args.width == 0 || args.height == 0 {
        eprintln!("error: --width and --height must be positive");
        std::process::exit(2);
    }
    let threads = args.common.threads();
    let stm = Stm::builder()
        .segments(args.common.segments.unwrap_or(threads))
        .heap_size(64 << 20)
        .build()
        .expect("runtime");
    let pixels = args.width * args.height;
    let image = stm.atomically(|tx| {
        let v = GcVec::<u32>::new(tx);
        for _ in 0..pixels {
            v.push(0);
        }
        tx.root(v.as_gc())
    });
    println!(
        "mandelbrot: {threads} threads, {}x{} pixels, {} iterations at most",
        args.width, args.height, args.iterations
    );
    let queue = TransactionQueue::new(&stm);
    for y in 0..args.height {
        let (image, args) = (&image, &args);
        queue.add(move |tx, _| {
            // The work happens inside the transaction, as an interpreter's would.
            let row: Vec<u32> = (0..args.width).map(|x| pixel(x, y, args)).collect();
            let v = GcVec::<u32>::from_root(tx, image);
            for (x, p) in row.into_iter().enumerate() {
                v.set(y * args.width + x, p);
            }
        });
    }
    let start = Instant::now();
    let run = queue.run(threads);
    let elapsed = start.elapsed();
    let got: u64 = stm.atomically(|tx| {
        let v = GcVec::<u32>::from_root(tx, &image);
        (0..pixels).map(|i| u64::from(v.get(i))).sum()
    });
    let want: u64 = (0..args.height)
        .flat_map(|y| (0..args.width).map(move |x| (x, y)))
        .map(|(x, y)| u64::from(pixel(x, y, &args)))
        .sum();
    let check = if got == want {
        Ok(format!(
            "sum of escape times {got} equals the sequential computation"
        ))
    } else {
        Err(format!("sum of escape times {got}, sequential {want}"))
    };
    report("mandelbrot", check, run.tasks, elapsed, run.stats);
}
