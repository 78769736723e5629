//! Load a GGUF model and stream a greedy continuation of a prompt: the
//! library's whole generation loop in one screen.
//!
//! `cargo run --release -p hearth --example generate -- MODEL.gguf "The capital of France is" [TOKENS]`

use std::io::Write;

use hearth::backend::{cpu::Cpu, KvType};
use hearth::generate::Generator;
use hearth::model::Model;
use hearth::sampler::SamplerConfig;
use hearth::session::Session;
use hearth::tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(prompt)) = (args.next(), args.next()) else {
        return Err("usage: generate MODEL.gguf PROMPT [TOKENS]".into());
    };
    let max_tokens: usize = args.next().map_or(Ok(32), |n| n.parse())?;

    let model = Model::load(&path, Cpu::new())?;
    let tok = Tokenizer::from_gguf(&model.file)?;
    let ids = tok.encode(&prompt, true, true)?;
    let mut session = Session::new(&model, ids.len() + max_tokens, KvType::F16)?;
    let mut gen = Generator::new(
        &tok,
        SamplerConfig::greedy(),
        Some(max_tokens),
        Vec::<String>::new(),
        &ids,
    )?;

    // Prefill the prompt, then feed back one sampled token per step.
    let mut logits = session.set_prompt(&ids, |_, _| {})?.to_vec();
    print!("{prompt}");
    loop {
        let t = gen.step(&logits)?;
        print!("{}", t.text);
        std::io::stdout().flush()?;
        if t.stop.is_some() || session.tokens().len() >= session.n_ctx() {
            println!("{}", gen.finish());
            return Ok(());
        }
        logits = session.feed(&[t.id], false, |_, _| {})?.to_vec();
    }
}
