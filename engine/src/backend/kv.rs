//! The KV cache's host-side bookkeeping, written once for every backend:
//! which ring slot a position lives in, how much of each ring has been
//! written, how long each sequence is, and the checks a batch must pass
//! before its keys and values are stored. A backend owns only the storage
//! (host vectors, device buffers) and the kernels; [`KvBook`] tells it where
//! each row goes and how many slots its queries attend over.
//!
//! Layout, per sequence and layer: a ring of [`CacheSpec::capacity`] rows
//! of keys and values. Position `p` lives in slot `p % capacity`, and each
//! slot records its position (in the backend's storage). A global layer's
//! ring holds the whole context (slot = position); a sliding-window layer's
//! holds its window plus one batch, so a long context costs memory only in
//! the global layers.
//!
//! Why stale slots are never wrongly visible: a query at `q` sees positions
//! `q - window < p <= q` (or all `p <= q`). Every such `p` was written by the
//! sequence's current history, after anything older in that slot, and a
//! later overwrite of that slot would be a position above `q + window - 1`
//! (hidden as the future), which spans of at most `n_batch` tokens (checked
//! here) guarantee. Leftovers of a truncated history sit at positions above
//! `q`, hidden as the future too, until the new history overwrites them;
//! [`KvBook::clear_seq`] forgets them outright.

use super::{AttentionParams, CacheSpec};
use crate::batch::{Batch, SeqSpan};
use crate::error::{Error, Result};

/// `(rows, cols)` of attention's three inputs, as the backend holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShapes {
    pub q: (usize, usize),
    pub k: (usize, usize),
    pub v: (usize, usize),
}

/// One span of a batch as one layer's attention sees it: where its rows go
/// in the ring, and how many slots its queries attend over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanKv {
    pub seq: usize,
    /// Rows `start..start + len` of the batch ...
    pub start: usize,
    pub len: usize,
    /// ... at positions `pos0..pos0 + len`.
    pub pos0: usize,
    /// Rows of the layer's ring.
    pub capacity: usize,
    /// The queries attend over slots `0..n_kv` (after this span's store).
    pub n_kv: usize,
}

impl SpanKv {
    /// The ring slot of position `pos`.
    pub fn slot(&self, pos: usize) -> usize {
        pos % self.capacity
    }

    /// `(batch row, slot, position)` of each row, in batch order: stored in
    /// this order, a later row wins a slot (a ring never holds fewer rows
    /// than one span, so this does not happen in a checked span).
    pub fn rows(&self) -> impl ExactSizeIterator<Item = (usize, usize, usize)> + '_ {
        (0..self.len).map(move |i| {
            let pos = self.pos0 + i;
            (self.start + i, self.slot(pos), pos)
        })
    }
}

/// What a KV cache knows on the host. See the module docs.
#[derive(Clone, Debug)]
pub struct KvBook {
    spec: CacheSpec,
    /// `[seq][layer]`: slots written since the sequence was last cleared
    /// (a prefix of the ring).
    written: Vec<Vec<usize>>,
    /// Filled positions per sequence (committed).
    len: Vec<usize>,
}

fn check_width(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(
            "attention",
            format!("{what}: width {got} does not match {want}"),
        ))
    }
}

fn check_rows(what: &str, got: usize, batch: usize) -> Result<()> {
    if got == batch {
        Ok(())
    } else {
        Err(Error::Batch(format!(
            "attention {what}: {got} rows for a batch of {batch} tokens"
        )))
    }
}

impl KvBook {
    /// Bookkeeping for an empty cache of `spec`; fails if a layer's ring
    /// (`capacity * kv_dim` values) overflows `usize`.
    pub fn new(spec: &CacheSpec) -> Result<KvBook> {
        for layer in 0..spec.n_layer {
            if spec.capacity(layer).checked_mul(spec.kv_dim).is_none() {
                return Err(Error::Cache("its size overflows".into()));
            }
        }
        if spec.windows.len() > spec.n_layer {
            return Err(Error::Cache(format!(
                "{} layer windows for {} layers",
                spec.windows.len(),
                spec.n_layer
            )));
        }
        Ok(KvBook {
            spec: spec.clone(),
            written: vec![vec![0; spec.n_layer]; spec.n_seq],
            len: vec![0; spec.n_seq],
        })
    }

    pub fn spec(&self) -> &CacheSpec {
        &self.spec
    }

    /// Rows of the ring of `layer` (per sequence).
    pub fn capacity(&self, layer: usize) -> usize {
        self.spec.capacity(layer)
    }

    /// Values of keys (or of values) one sequence holds for `layer`:
    /// `capacity * kv_dim`, checked in [`new`](Self::new).
    pub fn ring_values(&self, layer: usize) -> usize {
        self.capacity(layer) * self.spec.kv_dim
    }

    /// Filled (committed) positions of sequence `seq`; 0 outside the cache.
    pub fn seq_len(&self, seq: usize) -> usize {
        self.len.get(seq).copied().unwrap_or(0)
    }

    /// Slots of `layer`'s ring written for `seq` since it was last cleared.
    pub fn written(&self, seq: usize, layer: usize) -> usize {
        self.written
            .get(seq)
            .and_then(|w| w.get(layer))
            .copied()
            .unwrap_or(0)
    }

    fn windowed(&self, layer: usize) -> Option<usize> {
        self.spec.windows.get(layer).copied().flatten()
    }

    /// Checks that `span` can be stored: its sequence is in the cache, it
    /// continues (or rewrites) what is filled, it fits the context, and on a
    /// ring it is no longer than one batch.
    fn check_span(&self, s: &SeqSpan, ring: bool) -> Result<()> {
        let filled = *self.len.get(s.seq).ok_or_else(|| {
            Error::Batch(format!(
                "sequence {} is not in the cache (it holds {})",
                s.seq, self.spec.n_seq
            ))
        })?;
        if s.pos0 > filled {
            return Err(Error::Batch(format!(
                "sequence {} continues at position {} but holds only {filled}",
                s.seq, s.pos0
            )));
        }
        let end = s.pos0.saturating_add(s.len);
        if end > self.spec.n_ctx {
            return Err(Error::ContextOverflow {
                seq: s.seq,
                needed: end,
                n_ctx: self.spec.n_ctx,
            });
        }
        if ring && s.len > self.spec.n_batch {
            return Err(Error::Batch(format!(
                "{} tokens of sequence {} in one batch; this cache takes at most {}",
                s.len, s.seq, self.spec.n_batch
            )));
        }
        Ok(())
    }

    /// Checks attention over `layer` for `batch` (every span and operand,
    /// before anything changes), then returns the spans in batch order,
    /// each counted as written when the iterator yields it: the backend
    /// stores the span's rows at [`SpanKv::rows`] and attends over
    /// `n_kv` slots.
    ///
    /// Checks: the layer is in the cache; `q` is `batch.len()` rows of
    /// `n_head * head_dim`, `k` and `v` are `batch.len()` rows of `kv_dim`,
    /// which is `n_head_kv * head_dim`; `n_head_kv` divides `n_head`; a
    /// sliding-window layer's attention window is at most the cache's (the
    /// ring holds no more); and every span passes the span checks.
    pub fn store<'a>(
        &'a mut self,
        layer: usize,
        batch: &'a Batch,
        shapes: &AttentionShapes,
        p: &AttentionParams,
    ) -> Result<Stores<'a>> {
        let spec = &self.spec;
        if layer >= spec.n_layer {
            return Err(Error::Cache(format!(
                "layer {layer} is not in the cache (it holds {})",
                spec.n_layer
            )));
        }
        check_width("keys", shapes.k.1, spec.kv_dim)?;
        check_width("values", shapes.v.1, spec.kv_dim)?;
        check_width("queries", shapes.q.1, p.n_head * p.head_dim)?;
        check_width("key heads", p.n_head_kv * p.head_dim, spec.kv_dim)?;
        check_rows("queries", shapes.q.0, batch.len())?;
        check_rows("keys", shapes.k.0, batch.len())?;
        check_rows("values", shapes.v.0, batch.len())?;
        if p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
            return Err(Error::shape(
                "attention",
                format!("{} query heads over {} KV heads", p.n_head, p.n_head_kv),
            ));
        }
        let window = self.windowed(layer);
        if let Some(w) = window {
            if p.window.is_none_or(|pw| pw > w) {
                return Err(Error::Cache(format!(
                    "attention window {:?} on layer {layer}, whose cache keeps a window of {w}",
                    p.window
                )));
            }
        }
        for s in batch.spans() {
            self.check_span(s, window.is_some())?;
        }
        let capacity = self.spec.capacity(layer);
        // A global layer sees exactly the positions below the span's end; a
        // ring relies on the window and the causal mask.
        let ring = window.is_some() || capacity != self.spec.n_ctx;
        Ok(Stores {
            book: self,
            layer,
            capacity,
            ring,
            spans: batch.spans().iter(),
        })
    }

    /// Marks the batch's positions as filled (after all layers): each span's
    /// sequence then holds `pos0 + len` positions. Refuses (changing
    /// nothing) a span that fails the span checks.
    pub fn commit(&mut self, batch: &Batch) -> Result<()> {
        for s in batch.spans() {
            self.check_span(s, false)?;
        }
        for s in batch.spans() {
            self.len[s.seq] = s.pos0 + s.len;
        }
        Ok(())
    }

    /// Empties sequence `seq`: it holds no positions and no written slots.
    pub fn clear_seq(&mut self, seq: usize) -> Result<()> {
        let len = self
            .len
            .get_mut(seq)
            .ok_or_else(|| Error::Batch(format!("sequence {seq} is not in the cache")))?;
        *len = 0;
        self.written[seq].iter_mut().for_each(|w| *w = 0);
        Ok(())
    }
}

/// The spans of one checked attention call; see [`KvBook::store`].
pub struct Stores<'a> {
    book: &'a mut KvBook,
    layer: usize,
    capacity: usize,
    ring: bool,
    spans: std::slice::Iter<'a, SeqSpan>,
}

impl Iterator for Stores<'_> {
    type Item = SpanKv;

    fn next(&mut self) -> Option<SpanKv> {
        let s = self.spans.next()?;
        let end = s.pos0 + s.len;
        let written = &mut self.book.written[s.seq][self.layer];
        *written = (*written).max(end.min(self.capacity));
        Some(SpanKv {
            seq: s.seq,
            start: s.start,
            len: s.len,
            pos0: s.pos0,
            capacity: self.capacity,
            n_kv: if self.ring { *written } else { end },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for Stores<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KvType;
    use crate::batch::Logits;

    /// Layer 0 global, layer 1 a window of 4; batches of at most 3.
    fn book(n_seq: usize) -> KvBook {
        KvBook::new(&CacheSpec {
            n_layer: 2,
            n_seq,
            n_ctx: 20,
            kv_dim: 8,
            kv_type: KvType::F32,
            windows: vec![None, Some(4)],
            n_batch: 3,
        })
        .unwrap()
    }

    fn params(layer: usize) -> AttentionParams {
        let mut p = AttentionParams::new(4, 2, 4);
        p.window = (layer == 1).then_some(4);
        p
    }

    fn shapes(n: usize) -> AttentionShapes {
        AttentionShapes {
            q: (n, 16),
            k: (n, 8),
            v: (n, 8),
        }
    }

    fn batch(spans: &[(usize, usize, usize)]) -> Batch {
        let mut b = Batch::new();
        for &(seq, pos0, len) in spans {
            b.push(seq, pos0, &vec![1; len], Logits::None).unwrap();
        }
        b
    }

    /// Stores `batch` in every layer and commits it; the spans of each layer.
    fn step(k: &mut KvBook, b: &Batch) -> Vec<Vec<SpanKv>> {
        let spans = (0..2)
            .map(|layer| {
                k.store(layer, b, &shapes(b.len()), &params(layer))
                    .unwrap()
                    .collect()
            })
            .collect();
        k.commit(b).unwrap();
        spans
    }

    #[test]
    fn a_windowed_ring_wraps_and_a_global_layer_does_not() {
        let mut k = book(1);
        assert_eq!((k.capacity(0), k.capacity(1)), (20, 7));
        assert_eq!((k.ring_values(0), k.ring_values(1)), (160, 56));
        let mut pos = 0;
        for (i, len) in [3, 3, 1, 3].into_iter().enumerate() {
            let s = step(&mut k, &batch(&[(0, pos, len)]));
            pos += len;
            assert_eq!(k.seq_len(0), pos);
            // Global: slot = position, the queries see positions below the end.
            assert_eq!(s[0][0].n_kv, pos);
            assert!(s[0][0].rows().all(|(_, slot, p)| slot == p));
            // Ring: 7 slots, filled after the third batch.
            assert_eq!(s[1][0].n_kv, pos.min(7), "batch {i}");
            assert_eq!(k.written(0, 1), pos.min(7));
        }
        // Positions 7, 8, 9 of the last batch wrapped into slots 0, 1, 2.
        let last = batch(&[(0, 7, 3)]);
        let rows: Vec<_> = k
            .store(1, &last, &shapes(3), &params(1))
            .unwrap()
            .next()
            .unwrap()
            .rows()
            .collect();
        assert_eq!(rows, [(0, 0, 7), (1, 1, 8), (2, 2, 9)]);
    }

    #[test]
    fn spans_of_several_sequences_keep_their_own_counts() {
        let mut k = book(3);
        let s = step(&mut k, &batch(&[(2, 0, 3), (0, 0, 1)]));
        assert_eq!(s[1].len(), 2);
        assert_eq!((s[1][0].seq, s[1][0].start, s[1][0].n_kv), (2, 0, 3));
        assert_eq!((s[1][1].seq, s[1][1].start, s[1][1].n_kv), (0, 3, 1));
        assert_eq!((k.seq_len(0), k.seq_len(1), k.seq_len(2)), (1, 0, 3));
        assert_eq!(k.seq_len(9), 0);
    }

    #[test]
    fn a_rewritten_history_keeps_the_ring_and_a_cleared_one_does_not() {
        let mut k = book(1);
        step(&mut k, &batch(&[(0, 0, 3)]));
        step(&mut k, &batch(&[(0, 3, 3)]));
        // Cut back to 2 positions: the ring keeps its 6 written slots (the
        // leftovers are the future of the new queries), the global layer
        // sees only what is below the new end.
        let s = step(&mut k, &batch(&[(0, 2, 1)]));
        assert_eq!((s[0][0].n_kv, s[1][0].n_kv), (3, 6));
        assert_eq!(k.seq_len(0), 3);
        k.clear_seq(0).unwrap();
        assert_eq!((k.seq_len(0), k.written(0, 1)), (0, 0));
        let s = step(&mut k, &batch(&[(0, 0, 2)]));
        assert_eq!((s[0][0].n_kv, s[1][0].n_kv), (2, 2));
        assert!(k.clear_seq(1).is_err());
    }

    #[test]
    fn bad_spans_and_operands_are_refused_before_anything_changes() {
        let mut k = book(2);
        step(&mut k, &batch(&[(0, 0, 3)]));
        let before = (k.written.clone(), k.len.clone());
        let ok = batch(&[(0, 3, 2)]);
        let cases: Vec<(&str, Batch, AttentionShapes, usize, AttentionParams)> = vec![
            ("gap", batch(&[(0, 4, 1)]), shapes(1), 0, params(0)),
            ("no seq", batch(&[(5, 0, 1)]), shapes(1), 0, params(0)),
            ("overflow", batch(&[(1, 0, 21)]), shapes(21), 0, params(0)),
            // Valid first span, bad second: nothing may be counted.
            (
                "longer than a batch on a ring",
                batch(&[(1, 0, 1), (0, 3, 4)]),
                shapes(5),
                1,
                params(1),
            ),
            ("layer", ok.clone(), shapes(2), 2, params(0)),
            (
                "q rows",
                ok.clone(),
                AttentionShapes {
                    q: (3, 16),
                    ..shapes(2)
                },
                0,
                params(0),
            ),
            (
                "k rows",
                ok.clone(),
                AttentionShapes {
                    k: (1, 8),
                    ..shapes(2)
                },
                0,
                params(0),
            ),
            (
                "v width",
                ok.clone(),
                AttentionShapes {
                    v: (2, 4),
                    ..shapes(2)
                },
                0,
                params(0),
            ),
            (
                "q width",
                ok.clone(),
                AttentionShapes {
                    q: (2, 12),
                    ..shapes(2)
                },
                0,
                params(0),
            ),
            (
                "kv heads",
                ok.clone(),
                shapes(2),
                0,
                AttentionParams::new(3, 2, 4),
            ),
            (
                "kv heads x head dim != kv dim",
                ok.clone(),
                shapes(2),
                0,
                AttentionParams::new(4, 1, 4),
            ),
            ("no window on a ring", ok.clone(), shapes(2), 1, params(0)),
            (
                "a wider window than the ring",
                ok.clone(),
                shapes(2),
                1,
                AttentionParams {
                    window: Some(5),
                    ..params(1)
                },
            ),
        ];
        for (what, b, sh, layer, p) in cases {
            assert!(k.store(layer, &b, &sh, &p).is_err(), "{what}");
            assert_eq!((&k.written, &k.len), (&before.0, &before.1), "{what}");
        }
        for b in [
            batch(&[(0, 4, 1)]),
            batch(&[(1, 0, 1), (0, 19, 2)]),
            batch(&[(2, 0, 1)]),
        ] {
            assert!(k.commit(&b).is_err(), "{:?}", b.spans());
            assert_eq!(k.len, before.1);
        }
        assert!(matches!(
            k.store(0, &batch(&[(1, 0, 21)]), &shapes(21), &params(0))
                .err(),
            Some(Error::ContextOverflow { needed: 21, .. })
        ));
        // A global layer takes a span longer than a batch.
        assert!(k
            .store(0, &batch(&[(1, 0, 5)]), &shapes(5), &params(0))
            .is_ok());
    }

    #[test]
    fn a_spec_whose_ring_overflows_is_refused() {
        let mut spec = book(1).spec().clone();
        spec.kv_dim = usize::MAX / 2;
        assert!(KvBook::new(&spec).is_err());
    }
}
