//! A batch for one forward pass: tokens of one or more sequences, each run
//! of tokens at consecutive positions, and which rows need logits.

use crate::error::{Error, Result};

/// Which of a sequence's tokens need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (a prompt chunk whose last token is not the end of the prompt).
    None,
    /// Only the last token (generation).
    Last,
    /// Every token (perplexity, `hearth logits`).
    All,
}

/// One sequence's tokens in a batch: rows `start..start + len` of the
/// batch, at positions `pos0..pos0 + len` of sequence `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSpan {
    pub seq: usize,
    pub start: usize,
    pub len: usize,
    pub pos0: usize,
}

/// Tokens of several sequences, evaluated together in one forward pass.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    tokens: Vec<u32>,
    positions: Vec<i32>,
    spans: Vec<SeqSpan>,
    logit_rows: Vec<usize>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.spans.clear();
        self.logit_rows.clear();
    }

    /// Adds `tokens` of sequence `seq`, the first at position `pos0`.
    pub fn push(&mut self, seq: usize, pos0: usize, tokens: &[u32], logits: Logits) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::Batch(format!("sequence {seq}: no tokens")));
        }
        if self.spans.iter().any(|s| s.seq == seq) {
            return Err(Error::Batch(format!(
                "sequence {seq} appears twice in one batch"
            )));
        }
        let end = pos0
            .checked_add(tokens.len())
            .filter(|&e| e <= i32::MAX as usize);
        if end.is_none() {
            return Err(Error::Batch(format!("sequence {seq}: positions overflow")));
        }
        let start = self.tokens.len();
        self.spans.push(SeqSpan {
            seq,
            start,
            len: tokens.len(),
            pos0,
        });
        self.tokens.extend_from_slice(tokens);
        self.positions
            .extend((pos0..pos0 + tokens.len()).map(|p| p as i32));
        match logits {
            Logits::None => {}
            Logits::Last => self.logit_rows.push(start + tokens.len() - 1),
            Logits::All => self.logit_rows.extend(start..start + tokens.len()),
        }
        Ok(())
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    pub fn positions(&self) -> &[i32] {
        &self.positions
    }
    pub fn spans(&self) -> &[SeqSpan] {
        &self.spans
    }
    /// Rows of the batch whose logits are computed, in batch order; the
    /// forward pass returns one logits row for each.
    pub fn logit_rows(&self) -> &[usize] {
        &self.logit_rows
    }
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
