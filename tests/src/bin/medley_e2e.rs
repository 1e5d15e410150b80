fn main() -> std::process::ExitCode {
    medley_cli::main()
}
