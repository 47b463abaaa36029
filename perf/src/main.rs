fn main() {
    eprintln!("ctdb-perf: not yet implemented");
    std::process::exit(1);
}
