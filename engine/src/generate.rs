//! One generation step, written once for every caller: sample a token from
//! a row of logits, check the stop conditions, decode its text for
//! streaming. `hearth run`/`hearth chat` and the server's scheduler both
//! drive a [`Generator`], so they stop, hold back and flush text the same
//! way and fail the same way on a bad token.
//!
//! ```no_run
//! use hearth::backend::{cpu::Cpu, KvType};
//! use hearth::generate::Generator;
//! use hearth::model::Model;
//! use hearth::sampler::SamplerConfig;
//! use hearth::session::Session;
//! use hearth::tokenizer::Tokenizer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Model::load("model.gguf", Cpu::new())?;
//! let tok = Tokenizer::from_gguf(&model.file)?;
//! let prompt = tok.encode("The capital of France is", true, true)?;
//! let mut session = Session::new(&model, 512, KvType::F16)?;
//! let mut logits = session.set_prompt(&prompt, |_, _| {})?.to_vec();
//! let mut gen = Generator::new(&tok, SamplerConfig::greedy(), Some(16), Vec::<String>::new(), &prompt)?;
//! loop {
//!     let t = gen.step(&logits)?;
//!     print!("{}", t.text);
//!     if t.stop.is_some() || session.tokens().len() >= session.n_ctx() {
//!         print!("{}", gen.finish());
//!         break;
//!     }
//!     logits = session.feed(&[t.id], false, |_, _| {})?.to_vec();
//! }
//! # Ok(())
//! # }
//! ```

use crate::constraint::{Constraint, ConstraintError, MASKED_LOGIT};
use crate::sampler::{argmax, Sampler, SamplerConfig, SamplerError, StopCriteria, StopReason};
use crate::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};

/// Why a generation step failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    /// Text to show now (text that may start a stop string is held back;
    /// an end-of-generation token shows none of its own).
    pub text: String,
    /// Set when generation ends with this token.
    pub stop: Option<StopReason>,
}

/// Sampler, stop criteria and streaming decoder of one generation.
#[derive(Debug)]
pub struct Generator<'t> {
    tok: &'t Tokenizer,
    sampler: Sampler,
    stop: StopCriteria,
    decoder: StreamDecoder<'t>,
    /// The grammar the output must follow, and the masked copy of each
    /// step's logits.
    constraint: Option<Constraint>,
    masked: Vec<f32>,
}

impl<'t> Generator<'t> {
    /// A generation after `prompt` (the penalties see it, as in llama.cpp),
    /// ending at `max_tokens`, an end-of-generation token of `tok`, or one
    /// of `stop` strings. Control tokens are rendered as text.
    pub fn new<S: Into<String>>(
        tok: &'t Tokenizer,
        sampling: SamplerConfig,
        max_tokens: Option<usize>,
        stop: impl IntoIterator<Item = S>,
        prompt: &[u32],
    ) -> Result<Self, GenerateError> {
        let mut sampler = Sampler::new(sampling)?;
        for &t in prompt {
            sampler.accept(t);
        }
        Ok(Generator {
            tok,
            sampler,
            stop: StopCriteria::new(max_tokens, tok.eog_ids().iter().copied(), stop)?,
            decoder: tok.stream_decoder(),
            constraint: None,
            masked: Vec::new(),
        })
    }

    /// Control tokens (other than end-of-generation ones) produce no text,
    /// as the server shows them.
    pub fn without_special_text(mut self) -> Self {
        self.decoder = self.tok.stream_decoder_with(false);
        self
    }

    /// The output must follow `constraint`: each step samples only among
    /// the tokens it allows (an end-of-generation token once the output is
    /// complete), and fails with [`ConstraintError::Unsatisfiable`] when it
    /// allows none.
    pub fn with_constraint(mut self, constraint: Constraint) -> Self {
        self.constraint = Some(constraint);
        self
    }

    /// Samples the next token from `logits` (one row of `n_vocab`).
    pub fn step(&mut self, logits: &[f32]) -> Result<Token, GenerateError> {
        let id = match &mut self.constraint {
            None => self.sampler.sample(logits)?,
            Some(c) => {
                self.masked.clear();
                self.masked.extend_from_slice(logits);
                c.mask_logits(&mut self.masked)?;
                let mut id = self.sampler.sample(&self.masked)?;
                // The masked tokens have probability 0; this only guards
                // against a draw landing on the edge of a zero weight.
                if self.masked.get(id as usize) == Some(&MASKED_LOGIT) {
                    id = argmax(&self.masked)?;
                }
                // The end token needs no advancing: generation stops there.
                if !self.tok.is_eog(id) {
                    c.accept(id)?;
                }
                id
            }
        };
        self.sampler.accept(id);
        let piece = if self.tok.is_eog(id) {
            String::new()
        } else {
            self.decoder.push(id)?
        };
        let step = self.stop.step(id, &piece);
        let mut text = step.emit;
        match step.stop {
            // What follows a stop string is never shown.
            Some(StopReason::StopString(_)) | None => {}
            Some(StopReason::EndOfGeneration(_)) | Some(StopReason::MaxTokens) => {
                text.push_str(&self.decoder.finish());
            }
        }
        Ok(Token {
            id,
            text,
            stop: step.stop,
        })
    }

    /// Ends generation for another reason (the context is full): the text
    /// still held back.
    pub fn finish(&mut self) -> String {
        let mut text = self.stop.finish();
        text.push_str(&self.decoder.finish());
        text
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.stop.generated()
    }
}
