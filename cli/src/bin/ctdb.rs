//! `ctdb` binary entry point; see the library's `tool` module.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = ctdb_cli::tool::main_with_args(&args);
    std::process::exit(code);
}
