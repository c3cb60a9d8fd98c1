fn main() {
    let args: Vec<String> = std::env::args().collect();
    let peers: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let dur: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut cfg = sim::SimConfig::new(peers, dur);
    if let Some(c) = args.get(3).and_then(|s| s.parse().ok()) {
        cfg.churn_median_s = Some(c);
    }
    let sim = sim::Simulation::new(cfg).unwrap();
    let t0 = std::time::Instant::now();
    let r = sim.run(&mut |d, _| {
        if std::env::var("PROGRESS").is_ok() {
            eprintln!("sim {:.0}s wall {:.1}s", d as f64 / 1000.0, t0.elapsed().as_secs_f64())
        }
    });
    let mut r2 = r.clone();
    r2.series = Default::default();
    let s = format!("{:?}", r2);
    println!("{}", s.split(", latencies").next().unwrap_or(&s));
}
