//! Writes the tiny random-weight models to a folder, for
//! `tests/fixtures/tiny/make_reference.py` to run llama.cpp on:
//! `cargo run -p hearth-tests --bin make-tiny-models -- DIR`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/tiny-models".into());
    std::fs::create_dir_all(&dir)?;
    for arch in hearth_tests::tiny::ARCHS {
        let path = format!("{dir}/tiny-{arch}.gguf");
        std::fs::write(&path, hearth_tests::tiny::tiny_model(arch))?;
        println!("{path}");
    }
    let prompt = format!("{:?}", hearth_tests::tiny::tiny_prompt());
    std::fs::write(format!("{dir}/prompt.json"), &prompt)?;
    println!("prompt: {prompt}");
    Ok(())
}
