//! `cargo bench`: the CPU speed benchmark with PyTorch / ONNX Runtime anchors side by side.
fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (python, reference) = cineseg::bench::default_anchor_paths(root);
    let opts = cineseg::bench::BenchOptions {
        python,
        reference,
        ..Default::default()
    };
    match cineseg::bench::run(&opts) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
