fn main() {
    eprintln!("ctdbd: not yet implemented");
    std::process::exit(1);
}
