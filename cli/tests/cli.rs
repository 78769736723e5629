//! The `hearth` command end to end: exit codes and messages on bad input,
//! and the real model's output through the whole stack (tokenizer, forward
//! pass, sampler) against llama.cpp's reference.

use std::process::Command;

fn hearth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
}

/// Runs `cmd`, asserts it exits 0 (printing its stderr if not).
fn succeeds(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn golden_line(n: usize) -> Option<serde_json::Value> {
    let golden = hearth_tests::golden_dir()?;
    let text = std::fs::read_to_string(golden.join("gemma-3-270m-q4_k_m/reference.jsonl")).unwrap();
    Some(serde_json::from_str(text.lines().nth(n).unwrap()).unwrap())
}

#[test]
fn bad_files_give_one_line_and_exit_code_1() {
    let dir = std::env::temp_dir().join(format!("hearth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("empty.gguf", b"", "truncated"),
        ("text.gguf", b"hello world, not a model", "not a GGUF file"),
        (
            "v1.gguf",
            b"GGUF\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            "version 1",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        for cmd in [&["info"][..], &["run", "-p", "hi"][..]] {
            let out = hearth().args(cmd).arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name} {cmd:?}: {err}");
            assert!(
                err.contains(expect) && err.starts_with("hearth: error:"),
                "{name}: {err}"
            );
            assert!(
                !err.contains("panicked") && !err.contains("backtrace"),
                "{name}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
        }
    }
    let out = hearth()
        .args(["info", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn tokenize_prints_llama_cpp_ids_for_a_vocab_only_file() {
    let Some(golden) = hearth_tests::golden_dir() else {
        return;
    };
    let vocab = golden.join("vocab/ggml-vocab-llama-bpe.gguf");
    let inp = std::fs::read_to_string(golden.join("vocab/ggml-vocab-llama-bpe.gguf.inp")).unwrap();
    let out_lines =
        std::fs::read_to_string(golden.join("vocab/ggml-vocab-llama-bpe.gguf.out")).unwrap();
    let case = inp.split("\n__ggml_vocab_test__\n").nth(10).unwrap();
    let file = std::env::temp_dir().join(format!("hearth-tok-{}.txt", std::process::id()));
    std::fs::write(&file, case).unwrap();
    let out = succeeds(
        hearth()
            .arg("tokenize")
            .arg(&vocab)
            .arg("-f")
            .arg(&file)
            .arg("--no-bos"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        out_lines.lines().nth(10).unwrap().trim()
    );
}

#[test]
fn logits_and_greedy_run_match_llama_cpp_on_gemma() {
    let (Some(model), Some(reference)) = (hearth_tests::model_path(), golden_line(0)) else {
        return;
    };
    let prompt = reference["prompt"].as_str().unwrap();

    let file = std::env::temp_dir().join(format!("hearth-prompts-{}.txt", std::process::id()));
    std::fs::write(&file, format!("{prompt}\n")).unwrap();
    let out = succeeds(
        hearth()
            .arg("logits")
            .arg(&model)
            .arg("--prompt-file")
            .arg(&file)
            .args(["-n", "8", "-t", "2"]),
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        ["prompt", "tokens", "top_logits", "greedy", "greedy_text"],
        "the reference file's layout"
    );
    assert_eq!(line["tokens"], reference["tokens"]);
    let top1 = |v: &serde_json::Value, pos: usize| v["top_logits"][pos][0][0].as_u64().unwrap();
    assert_eq!(top1(&line, 5), top1(&reference, 5));

    // `run` greedy: "The capital of France is" continues as llama.cpp's does
    // (this prompt's greedy path has no near-ties in its first tokens).
    let out = succeeds(
        hearth()
            .arg("run")
            .arg(&model)
            .args(["-p", prompt, "-n", "8", "--temp", "0", "-t", "2"]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let want = reference["greedy_text"].as_str().unwrap();
    let want_prefix: String = want.split_inclusive(' ').take(6).collect();
    assert!(
        text.starts_with(want_prefix.trim_end()),
        "got {text:?}, llama.cpp {want:?}"
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("prompt 6 tokens") && summary.contains("generated 8 tokens"),
        "{summary}"
    );
}

/// `hearth tap` on each real model, compared by `scripts/compare-tap.py`
/// with what llama.cpp's `llama-eval-callback` printed for the same prompt
/// (`fixtures/tap`, see its README): no tensor diverges. The same dump with
/// one tensor's values flipped in sign must be reported at that tensor.
#[test]
fn tap_matches_llama_eval_callback() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("scripts/compare-tap.py");
    let cases = [
        (
            hearth_tests::model_path(),
            "gemma-3-270m-q4_k_m",
            "0,5,17",
            "Qcur-5",
        ),
        (
            hearth_tests::smollm2_path(),
            "smollm2-135m-instruct-q4_1",
            "0,29",
            "ffn_norm-29",
        ),
    ];
    for (model, name, layers, broken) in cases {
        let Some(model) = model else { continue };
        let fixture = root.join(format!("cli/tests/fixtures/tap/{name}.txt"));
        let dir = std::env::temp_dir().join(format!("hearth-tap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dump = dir.join(format!("{name}.txt"));
        succeeds(
            hearth()
                .arg("tap")
                .arg(&model)
                .args(["-p", "The capital of France is", "--layers", layers, "-o"])
                .arg(&dump),
        );

        let compare = |dump: &std::path::Path| {
            let out = Command::new("python3")
                .arg(&script)
                .arg(&fixture)
                .arg(dump)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (code, report) = compare(&dump);
        assert_eq!(code, Some(0), "{name}:\n{report}");
        assert!(report.contains("no divergence"), "{report}");
        assert!(!report.contains("shapes do not match"), "{report}");

        // Flip the sign of every value of one tensor.
        let text = std::fs::read_to_string(&dump).unwrap();
        let mut flipped = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("hearth_tap:") {
                inside = line.contains(&format!(" {broken} = "));
            } else if inside && line.trim_start().starts_with('[') && line.contains('.') {
                let body = line
                    .trim_start()
                    .trim_start_matches('[')
                    .trim_end()
                    .trim_end_matches(',');
                let body = body.trim_end_matches(']');
                let vals: Vec<String> = body
                    .split(',')
                    .map(|v| match v.trim().parse::<f32>() {
                        Ok(x) => format!("{:12.4}", -x),
                        Err(_) => v.to_string(),
                    })
                    .collect();
                flipped += &format!("            [{}  ],\n", vals.join(","));
                continue;
            }
            flipped += line;
            flipped += "\n";
        }
        let bad = dir.join(format!("{name}-flipped.txt"));
        std::fs::write(&bad, flipped).unwrap();
        let (code, report) = compare(&bad);
        assert_eq!(code, Some(1), "{name}:\n{report}");
        assert!(
            report.contains(&format!("first divergence: {broken} ")),
            "{name}: expected {broken} to be reported:\n{report}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Issue 17: `tokenize` had no `-p`, and invalid UTF-8 said only "not UTF-8
/// text" without where.
#[test]
fn tokenize_takes_p_and_names_the_offset_of_invalid_utf8() {
    let Some(golden) = hearth_tests::golden_dir() else {
        return;
    };
    let vocab = golden.join("vocab/ggml-vocab-llama-bpe.gguf");
    let dir = std::env::temp_dir().join(format!("hearth-tok-p-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("ok.txt");
    std::fs::write(&text, "Hello world, again").unwrap();
    let from_file = succeeds(hearth().arg("tokenize").arg(&vocab).arg("-f").arg(&text));
    let from_arg = succeeds(
        hearth()
            .arg("tokenize")
            .arg(&vocab)
            .args(["-p", "Hello world, again"]),
    );
    assert!(!from_file.stdout.is_empty());
    assert_eq!(from_file.stdout, from_arg.stdout);

    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"abc\xffdef").unwrap();
    let out = hearth()
        .arg("tokenize")
        .arg(&vocab)
        .arg("-f")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid byte at offset 3"), "{err}");
}

/// Issue 17: an empty prompt loaded the model and generated from BOS alone.
#[test]
fn an_empty_prompt_says_so_before_loading_anything() {
    let out = hearth()
        .args(["run", "/nonexistent/model.gguf", "-p", ""])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the prompt is empty"), "{err}");
}

/// Issue 17: `hearth run ... | head` ended with "hearth: error: Broken pipe"
/// and exit code 1; a reader that has had enough is not a failure.
#[test]
fn a_closed_stdout_ends_run_quietly() {
    use std::io::Read;
    let Some(model) = hearth_tests::model_path() else {
        return;
    };
    let mut child = hearth()
        .arg("run")
        .arg(&model)
        .args([
            "-p",
            "Once upon a time",
            "-n",
            "200",
            "--temp",
            "0",
            "-t",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("error"), "{err}");
}
