//! Perplexity of Gemma 3 270M on the GPL-3 text (`/usr/share/common-licenses/GPL-3`,
//! shipped with Debian) with llama-perplexity's protocol, against llama.cpp.
//!
//! llama.cpp gives PPL = 13.9062 over all 14 chunks (shared/golden/README.md);
//! an exact f32 implementation gives 13.829 (0.56% lower), so Hearth must land
//! within 1.5% of llama.cpp. Hearth's release build gave 13.8994 over all 14.
//!
//! The full run is too long for a CI test on two shared cores: in the test
//! profile the 14 chunks took 229 s (246 s with the KLD rerun) at a quiet
//! moment and 30-45 s per chunk (7-10 minutes) under load, so by default the
//! test evaluates the first `FIRST_CHUNKS` chunks and holds them to the
//! same 1.5% of what llama-perplexity (`-c 512 -b 512 --chunks 2`, the
//! README's build, llama.cpp 0c1e570) gives on those chunks: 13.8935
//! (Hearth: 13.9112). Set `HEARTH_PPL_FULL=1` to run all 14 chunks against
//! 13.9062.

use std::path::Path;

use hearth::backend::cpu::Cpu;
use hearth::backend::KvType;
use hearth::model::Model;
use hearth::perplexity::{
    self as ppl, KlMode, KlReader, KlWriter, PerplexityConfig, PerplexityError,
};
use hearth::tokenizer::Tokenizer;

const GPL3: &str = "/usr/share/common-licenses/GPL-3";
/// llama-perplexity -c 512 -b 512 over the whole file (14 chunks).
const LLAMA_CPP_FULL: f64 = 13.9062;
/// Chunks the default test evaluates.
const FIRST_CHUNKS: usize = 2;
/// llama-perplexity -c 512 -b 512 --chunks 2 on the same file.
const LLAMA_CPP_FIRST_CHUNKS: f64 = 13.8935;
/// Allowed relative distance from llama.cpp.
const TOLERANCE: f64 = 0.015;

fn setup() -> Option<(Model<Cpu>, Tokenizer, String)> {
    let path = hearth_tests::model_path()?;
    if !Path::new(GPL3).is_file() {
        eprintln!("SKIPPED: {GPL3} not found (Debian's common-licenses)");
        return None;
    }
    let model = Model::load(&path, Cpu::new()).unwrap();
    let tok = Tokenizer::from_gguf(&model.file).unwrap();
    let text = std::fs::read_to_string(GPL3).unwrap();
    Some((model, tok, text))
}

fn config() -> PerplexityConfig {
    PerplexityConfig {
        n_ctx: 512,
        n_batch: 512,
        kv_type: KvType::F16,
    }
}

#[test]
fn gpl3_perplexity_is_within_1_5_percent_of_llama_cpp_and_kld_of_a_rerun_is_zero() {
    let Some((model, tok, text)) = setup() else {
        return;
    };
    let full = std::env::var_os("HEARTH_PPL_FULL").is_some_and(|v| v == "1");
    let tokens = tok.encode(&text, true, false).unwrap();
    let bos = tok.bos().filter(|_| tok.add_bos());
    let all = ppl::chunks(&tokens, 512, bos, None).unwrap();
    assert_eq!(
        all.len(),
        14,
        "llama-perplexity evaluates 14 chunks of this file"
    );
    let (n, reference) = if full {
        (all.len(), LLAMA_CPP_FULL)
    } else {
        (FIRST_CHUNKS, LLAMA_CPP_FIRST_CHUNKS)
    };
    let chunks = &all[..n];

    // Save the run as a KL-divergence base while computing its perplexity.
    let base_path = std::env::temp_dir().join(format!("hearth-test-kl-{}.bin", std::process::id()));
    let file = std::fs::File::create(&base_path).unwrap();
    let mut writer = KlWriter::new(
        Box::new(std::io::BufWriter::new(file)),
        model.hparams.n_vocab,
        512,
        ppl::DEFAULT_TOP_K,
        chunks,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let mut running = Vec::new();
    let r = ppl::run(&model, chunks, &config(), KlMode::Save(&mut writer), |p| {
        running.push(p.running_ppl)
    })
    .unwrap();
    writer.finish().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let value = r.nll.ppl();
    eprintln!(
        "{n} chunks in {secs:.1} s: PPL = {value:.4} +/- {:.5} (llama.cpp {reference}); running {running:.4?}",
        r.nll.ppl_error().unwrap()
    );
    assert_eq!(r.nll.count, n * 255);
    let rel = (value - reference).abs() / reference;
    assert!(
        rel <= TOLERANCE,
        "PPL {value:.4} is {:.2}% from llama.cpp's {reference}",
        100.0 * rel
    );

    // Re-running the first chunk against the saved base: KLD 0, same top-1 everywhere.
    let reader = KlReader::new(Box::new(std::io::BufReader::new(
        std::fs::File::open(&base_path).unwrap(),
    )));
    let mut reader = reader.unwrap();
    let again = ppl::run(
        &model,
        &chunks[..1],
        &config(),
        KlMode::Compare(&mut reader),
        |_| {},
    )
    .unwrap();
    std::fs::remove_file(&base_path).unwrap();
    let kl = again.kl.unwrap();
    assert_eq!(kl.count(), 255);
    assert!(kl.kld().0.abs() < 1e-9, "KLD of a rerun is {}", kl.kld().0);
    assert_eq!(kl.same_top().0, 1.0);
    assert!((again.nll.ppl() - running[0]).abs() < 1e-9 * running[0]);
}

#[test]
fn a_text_shorter_than_one_chunk_is_a_typed_error() {
    let Some((_, tok, _)) = setup() else { return };
    let tokens = tok
        .encode(
            "The GNU General Public License is a free, copyleft license.",
            true,
            false,
        )
        .unwrap();
    let bos = tok.bos().filter(|_| tok.add_bos());
    match ppl::chunks(&tokens, 512, bos, None) {
        Err(PerplexityError::TooFewTokens {
            n_tokens,
            n_ctx: 512,
        }) => assert_eq!(n_tokens, tokens.len()),
        other => panic!("expected TooFewTokens, got {other:?}"),
    }
}

#[test]
fn a_base_file_from_another_text_is_refused() {
    let Some((model, _, _)) = setup() else { return };
    // A base header for one chunk of other ids, with no records.
    let other = vec![(0..512u32).collect::<Vec<_>>()];
    let mut bytes = Vec::new();
    {
        let path =
            std::env::temp_dir().join(format!("hearth-test-kl-other-{}.bin", std::process::id()));
        let w = KlWriter::new(
            Box::new(std::fs::File::create(&path).unwrap()),
            model.hparams.n_vocab,
            512,
            8,
            &other,
        )
        .unwrap();
        w.finish().unwrap();
        bytes.extend(std::fs::read(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
    }
    let mut reader = KlReader::new(Box::new(std::io::Cursor::new(bytes))).unwrap();
    let mine = vec![(1..513u32).collect::<Vec<_>>()];
    let err = ppl::run(
        &model,
        &mine,
        &config(),
        KlMode::Compare(&mut reader),
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, PerplexityError::BaseFile(ref m) if m.contains("other tokens")),
        "{err}"
    );
}
