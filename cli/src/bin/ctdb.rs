fn main() {
    eprintln!("ctdb: not yet implemented");
    std::process::exit(1);
}
