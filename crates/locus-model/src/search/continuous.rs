//! Continuous batching for greedy search (iteration-level scheduling, Yu et al. 2022, "Orca",
//! OSDI, <https://www.usenix.org/conference/osdi22/presentation/yu>): sentences join a running
//! batch between two decoding steps and leave it as they end, so that a server's batch stays
//! full while requests come and go, and each request is answered as soon as its own sentences
//! end, not when the longest sentence of its batch does.
//!
//! A [`RunningBatch`] decodes exactly as [`greedy_decode_to`](super::greedy::greedy_decode_to)
//! does, sentence by sentence: a joining sentence starts from its BOS at its own position 0,
//! attends to its own positions only ([`DecoderCache::join`]), and its tokens and
//! log-probabilities are those it gets decoded alone, up to the rounding of batched products.
//!
//! Joining and leaving copy the cache (the rows kept, or the rows added), so both are done
//! for several rows at once: an ended sentence's row is decoded on, unread, until ended rows
//! are a quarter of the batch or sentences join, as [`greedy_decode_to`] narrows its batch.
//!
//! [`greedy_decode_to`]: super::greedy::greedy_decode_to

use candle_core::Tensor;

use super::top_k::most_probable;
use super::{phases, Hypothesis};
use crate::decoder::DecoderCache;
use crate::error::Result;
use crate::transformer::{Memory, Seq2Seq};

/// A sentence for a [`RunningBatch`]: who asked for it and its output length limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission<Id> {
    /// The caller's name for the sentence, handed back with its hypothesis.
    pub id: Id,
    /// Its output stops after this many tokens (EOS excluded) if it has not ended.
    pub max_len: usize,
    /// EOS is not allowed before this many tokens.
    pub min_len: usize,
}

/// A sentence that ended, with its hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished<Id> {
    /// The id it was admitted with.
    pub id: Id,
    /// Its output: the tokens up to EOS or its length limit; the log-probability sums the
    /// chosen tokens', EOS's included.
    pub hypothesis: Hypothesis,
}

/// One row of the batch: its sentence's limits and output so far.
#[derive(Debug)]
struct Row<Id> {
    admission: Admission<Id>,
    /// The token fed at the next step: BOS, then the last one chosen.
    next_input: u32,
    /// Steps decoded: the position of the next input.
    steps: usize,
    hypothesis: Hypothesis,
    /// Whether the sentence has ended (the row is decoded on until the batch is narrowed).
    ended: bool,
}

/// A batch of sentences decoded greedily, one step at a time, that sentences may join and
/// leave between steps.
pub struct RunningBatch<'a, Id> {
    model: &'a Seq2Seq,
    /// The encoder output and the key/value cache of the rows; `None` while there are none.
    decoding: Option<(Memory, DecoderCache)>,
    rows: Vec<Row<Id>>,
}

impl<'a, Id: Copy> RunningBatch<'a, Id> {
    /// An empty batch decoding with `model`.
    pub fn new(model: &'a Seq2Seq) -> Self {
        Self { model, decoding: None, rows: Vec::new() }
    }

    /// Sentences still decoding.
    pub fn len(&self) -> usize {
        self.rows.iter().filter(|row| !row.ended).count()
    }

    /// Whether no sentence is decoding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every sentence, ended or not (after an error, say): the batch is empty.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.decoding = None;
    }

    /// Encodes the sentences of `src` and adds them to the batch: they decode from the next
    /// [`step`](Self::step) on. Rows of ended sentences leave the batch in the same copy.
    /// A sentence whose `max_len` is 0 ends at once, with an empty hypothesis; those are
    /// returned.
    ///
    /// # Shapes
    /// `src`: `(sentences.len(), src_len)` `u32` ids, right-padded, each row ending in EOS.
    pub fn admit(&mut self, src: &Tensor, sentences: &[Admission<Id>]) -> Result<Vec<Finished<Id>>> {
        let joining = phases::encoding(|| self.model.encode(src, None))?.detach();
        self.drop_ended_rows()?;
        match &mut self.decoding {
            Some((memory, cache)) => self.model.join(memory, cache, &joining)?,
            None => self.decoding = Some((joining, self.model.new_cache())),
        }
        let bos = self.model.tokens().bos;
        self.rows.extend(sentences.iter().map(|&admission| Row {
            admission,
            next_input: bos,
            steps: 0,
            hypothesis: Hypothesis::default(),
            ended: admission.max_len == 0,
        }));
        Ok(sentences
            .iter()
            .filter(|admission| admission.max_len == 0)
            .map(|admission| Finished { id: admission.id, hypothesis: Hypothesis::default() })
            .collect())
    }

    /// Decodes one step of every row and returns the sentences that ended at it. Once ended
    /// sentences are a quarter of the rows, their rows leave the batch.
    pub fn step(&mut self) -> Result<Vec<Finished<Id>>> {
        // An ended row decoded past its sentence's limit could be past a `learned` position
        // table's end.
        if self.rows.iter().any(|row| row.ended && row.steps > row.admission.max_len) {
            self.drop_ended_rows()?;
        }
        let Some((memory, cache)) = &mut self.decoding else {
            return Ok(Vec::new());
        };
        let device = memory.hidden.device().clone();
        let inputs: Vec<u32> = self.rows.iter().map(|row| row.next_input).collect();
        let inputs = Tensor::from_vec(inputs, (self.rows.len(), 1), &device)?;
        let logits = phases::decoder_step(|| self.model.decode_step(&inputs, memory, cache))?;
        let eos = self.model.tokens().eos;
        let rows = &self.rows;
        let (next, chosen) =
            most_probable(&logits, eos, |r| rows[r].hypothesis.tokens.len() < rows[r].admission.min_len)?;
        let mut finished = Vec::new();
        for ((row, token), log_prob) in self.rows.iter_mut().zip(next).zip(chosen) {
            row.next_input = token;
            row.steps += 1;
            if row.ended {
                continue;
            }
            row.hypothesis.log_prob += log_prob as f64;
            if token != eos {
                row.hypothesis.tokens.push(token);
            }
            if token == eos || row.hypothesis.tokens.len() >= row.admission.max_len {
                row.ended = true;
                let mut hypothesis = std::mem::take(&mut row.hypothesis);
                hypothesis.score = hypothesis.log_prob;
                finished.push(Finished { id: row.admission.id, hypothesis });
            }
        }
        let ended = self.rows.iter().filter(|row| row.ended).count();
        if 4 * ended >= self.rows.len() {
            self.drop_ended_rows()?;
        }
        Ok(finished)
    }

    /// Narrows the memory and the cache to the rows still decoding.
    fn drop_ended_rows(&mut self) -> Result<()> {
        let keep: Vec<u32> = (0..self.rows.len() as u32).filter(|&r| !self.rows[r as usize].ended).collect();
        if keep.len() == self.rows.len() {
            return Ok(());
        }
        self.rows.retain(|row| !row.ended);
        match (&mut self.decoding, keep.is_empty()) {
            (_, true) => self.decoding = None,
            (Some((memory, cache)), false) => self.model.select_rows(memory, cache, &keep)?,
            (None, false) => {}
        }
        Ok(())
    }
}
