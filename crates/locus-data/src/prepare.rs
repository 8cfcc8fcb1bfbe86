//! `locus prepare`: parallel corpora of any size tokenized once into a prepared dataset
//! ([`crate::prepared`]), in bounded memory.
//!
//! 1. Every input file is checked to exist before any work.
//! 2. One streaming pass over the training corpora checks them (aligned, valid UTF-8: errors
//!    name the file and line), counts their pairs and, unless a tokenizer is given, draws a
//!    seeded reservoir sample of `data.tokenizer_sample` lines to train the tokenizer on (all
//!    pairs when there are fewer, fed as `locus train` always fed them: sources, then targets).
//! 3. A second pass reads chunks of pairs on a reader thread while the tokenizer encodes the
//!    previous chunk on every core; pairs with an empty side, and those the length filters
//!    drop, are counted per corpus; the rest go to the shards.
//! 4. The validation corpus is encoded and filtered by the length filter alone.
//!
//! Everything is written into a temporary sibling of the output directory and renamed at the
//! end, so an interrupted or failed preparation leaves no dataset at all; running it again
//! starts clean (the temporary directories of dead processes are swept away first).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::{Instant, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::atomic_dir::{sweep_abandoned, write_dir_atomically, write_synced};
use crate::config::{CorpusPaths, DataConfig};
use crate::corpus::{is_blank, PairReader, ParallelCorpus};
use crate::error::{DataError, Result};
use crate::filter::filter_pairs;
use crate::prepared::manifest::{
    CorpusStats, DropCounts, FileEntry, FilterSettings, Manifest, SplitIndex, TokenizerOrigin, FORMAT,
    FORMAT_VERSION, MANIFEST,
};
use crate::prepared::shard::{ShardWriter, TokenWidth, WrittenFiles};
use crate::prepared::TOKENIZER;
use crate::tokenizer::{BatchEncoder, SubwordTokenizer};

/// Pairs read and encoded together: enough for every core to have work, few enough that the
/// chunk in flight and the one being read take a few megabytes.
const CHUNK_PAIRS: usize = 16_384;

/// The validation corpus's text files inside a prepared dataset.
const VALID_TEXT: [&str; 2] = ["valid.src.txt", "valid.tgt.txt"];

/// What [`prepare`] is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PrepareProgress<'a> {
    /// Checking and counting a training corpus (and sampling it for the tokenizer).
    Scanning {
        /// The corpus.
        corpus: &'a CorpusPaths,
    },
    /// The tokenizer is ready.
    Tokenizer {
        /// Its vocabulary size.
        vocab_size: usize,
        /// Whether it was trained here (else given).
        trained: bool,
    },
    /// Training pairs encoded so far, of all.
    Encoded {
        /// Pairs done.
        done: usize,
        /// Pairs in every training corpus.
        total: usize,
    },
}

/// How [`prepare`] runs, apart from the config.
pub struct PrepareOptions<'a> {
    /// Encode with this tokenizer (e.g. a checkpoint's) instead of `data.tokenizer_file` or one
    /// trained on the sample.
    pub tokenizer: Option<&'a SubwordTokenizer>,
    /// Receives the progress.
    pub progress: &'a dyn Fn(PrepareProgress),
}

/// Prepares the corpora `config` names into the new directory `out`; see the
/// [module documentation](self). Returns the manifest written.
///
/// # Errors
///
/// [`DataError::Config`] for settings that break a rule or name no corpus; [`DataError::Io`]
/// naming an input file that is missing, before any work; [`DataError::LineCountMismatch`],
/// [`DataError::InvalidUtf8`] naming the file and line; tokenizer errors; and
/// [`DataError::Write`] if `out` exists (and is not an empty directory) or cannot be written.
/// On any error nothing is left at `out`.
pub fn prepare(config: &DataConfig, out: &Path, options: PrepareOptions) -> Result<Manifest> {
    let started = Instant::now();
    config.validate()?;
    config.check_inputs()?;
    for path in config.input_files() {
        std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    }
    let source_key = source_key(config)?;
    let corpora = config.train_corpora();
    let train_tokenizer = options.tokenizer.is_none() && config.tokenizer_file.is_none();
    let sample_pairs = (config.tokenizer_sample / 2).max(1);
    let mut scan =
        Scan { lines: Vec::new(), sample: Reservoir::new(sample_pairs, config.tokenizer_sample_seed) };
    for corpus in &corpora {
        (options.progress)(PrepareProgress::Scanning { corpus });
        scan.corpus(corpus, train_tokenizer)?;
    }
    let (tokenizer, origin) = match (options.tokenizer, &config.tokenizer_file) {
        (Some(tokenizer), _) => (tokenizer.clone(), TokenizerOrigin::Given { path: None }),
        (None, Some(path)) => {
            (SubwordTokenizer::load(path)?, TokenizerOrigin::Given { path: Some(path.clone()) })
        }
        (None, None) => {
            let sample = scan.sample.into_sorted();
            let texts = sample.iter().map(|(src, _)| src).chain(sample.iter().map(|(_, tgt)| tgt));
            let tokenizer = SubwordTokenizer::train(config.tokenizer, config.vocab_size, texts)?;
            let origin = TokenizerOrigin::Trained {
                model: config.tokenizer,
                vocab_size: config.vocab_size,
                sample_lines: 2 * sample.len(),
                sample_seed: config.tokenizer_sample_seed,
            };
            (tokenizer, origin)
        }
    };
    (options.progress)(PrepareProgress::Tokenizer {
        vocab_size: tokenizer.vocab_size(),
        trained: train_tokenizer,
    });

    let total_pairs: usize = scan.lines.iter().sum();
    sweep_abandoned(out)?;
    let mut manifest = None;
    write_dir_atomically(
        out,
        || Ok(()),
        |dir| {
            let width = TokenWidth::for_vocab(tokenizer.vocab_size());
            let mut files = BTreeMap::new();
            tokenizer.save(&dir.join(TOKENIZER))?;
            files.insert(TOKENIZER.to_owned(), FileEntry::of(&dir.join(TOKENIZER))?);

            let mut train = ShardWriter::new(dir, "train", width, config.shard_pairs);
            let mut pass = EncodePass {
                config,
                encoder: BatchEncoder::new(&tokenizer),
                writer: &mut train,
                done: 0,
                total_pairs,
            };
            let mut stats = Vec::with_capacity(corpora.len());
            for (corpus, &lines) in corpora.iter().zip(&scan.lines) {
                stats.push(pass.corpus(corpus, lines, options.progress)?);
            }
            let (train_index, train_files) = train.finish()?;
            files.extend(train_files);

            let (valid, valid_split, valid_files) = prepare_valid(config, &tokenizer, dir, width)?;
            files.extend(valid_files);

            let written = Manifest {
                format: FORMAT.to_owned(),
                format_version: FORMAT_VERSION,
                token_bytes: width.bytes(),
                vocab_size: tokenizer.vocab_size(),
                tokenizer_fingerprint: tokenizer.fingerprint(),
                tokenizer_origin: origin,
                filter: FilterSettings::of(config),
                source_key,
                corpora: stats,
                valid,
                train: train_index,
                valid_split,
                valid_text: VALID_TEXT.map(str::to_owned),
                files,
                seconds: started.elapsed().as_secs_f64(),
            };
            write_synced(&dir.join(MANIFEST), written.to_json()?.as_bytes())?;
            manifest = Some(written);
            Ok::<(), DataError>(())
        },
    )?;
    manifest
        .ok_or_else(|| DataError::Prepared { path: out.join(MANIFEST), message: "was not written".into() })
}

/// A hash of everything that shapes a prepared dataset: the layout version, each input file's
/// path, size and modification time, and the tokenizer, filter and shard settings. A dataset
/// whose manifest has the same key can be reused as it is.
///
/// # Errors
///
/// [`DataError::Io`] naming an input file whose metadata cannot be read.
pub fn source_key(config: &DataConfig) -> Result<String> {
    #[derive(Serialize)]
    struct Key<'a> {
        format_version: u32,
        files: Vec<(&'a Path, u64, u128)>,
        tokenizer: (crate::tokenizer::SubwordModel, usize, usize, u64),
        filter: FilterSettings,
        shard_pairs: usize,
    }
    let files = config
        .input_files()
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
            let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            Ok((path, meta.len(), modified.map_or(0, |d| d.as_nanos())))
        })
        .collect::<Result<Vec<_>>>()?;
    let key = Key {
        format_version: FORMAT_VERSION,
        files,
        tokenizer: (
            config.tokenizer,
            config.vocab_size,
            config.tokenizer_sample,
            config.tokenizer_sample_seed,
        ),
        filter: FilterSettings::of(config),
        shard_pairs: config.shard_pairs,
    };
    let json = serde_json::to_string(&key)
        .map_err(|e| DataError::config("data", format!("cannot be hashed: {e}")))?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(json.as_bytes())))
}

/// The first pass: pair counts per corpus and the tokenizer's sample.
struct Scan {
    lines: Vec<usize>,
    sample: Reservoir,
}

impl Scan {
    /// Reads `corpus` through, checking it, counting its pairs and sampling it if `sample`.
    fn corpus(&mut self, corpus: &CorpusPaths, sample: bool) -> Result<()> {
        let mut reader = PairReader::open(&corpus.src, &corpus.tgt)?;
        while let Some((src, tgt)) = reader.next_pair()? {
            if sample && !is_blank(src) && !is_blank(tgt) {
                self.sample.offer(src, tgt);
            }
        }
        self.lines.push(reader.pairs_read());
        Ok(())
    }
}

/// A uniform sample of at most `capacity` pairs from a stream of unknown length (Vitter's
/// algorithm R), seeded: the same stream and seed give the same sample.
struct Reservoir {
    capacity: usize,
    seen: u64,
    rng: ChaCha8Rng,
    /// `(position in the stream, source, target)`.
    kept: Vec<(u64, String, String)>,
}

impl Reservoir {
    fn new(capacity: usize, seed: u64) -> Self {
        Self { capacity, seen: 0, rng: ChaCha8Rng::seed_from_u64(seed), kept: Vec::new() }
    }

    fn offer(&mut self, src: &str, tgt: &str) {
        let position = self.seen;
        self.seen += 1;
        if self.kept.len() < self.capacity {
            self.kept.push((position, src.to_owned(), tgt.to_owned()));
        } else {
            let slot = self.rng.random_range(0..=position);
            if let Some(entry) = usize::try_from(slot).ok().and_then(|slot| self.kept.get_mut(slot)) {
                *entry = (position, src.to_owned(), tgt.to_owned());
            }
        }
    }

    /// The sample in stream order.
    fn into_sorted(mut self) -> Vec<(String, String)> {
        self.kept.sort_unstable_by_key(|&(position, _, _)| position);
        self.kept.into_iter().map(|(_, src, tgt)| (src, tgt)).collect()
    }
}

/// One chunk of pairs read ahead of the encoder.
type Chunk = Vec<(String, String)>;

/// The second pass: encodes, filters and writes the training corpora.
struct EncodePass<'a> {
    config: &'a DataConfig,
    encoder: BatchEncoder<'a>,
    writer: &'a mut ShardWriter,
    done: usize,
    total_pairs: usize,
}

impl EncodePass<'_> {
    /// Encodes `corpus` (of `lines` pairs) into the writer; returns its counts.
    fn corpus(
        &mut self,
        corpus: &CorpusPaths,
        lines: usize,
        progress: &dyn Fn(PrepareProgress),
    ) -> Result<CorpusStats> {
        let mut stats = CorpusStats {
            src: corpus.src.clone(),
            tgt: corpus.tgt.clone(),
            lines,
            pairs: 0,
            src_tokens: 0,
            tgt_tokens: 0,
            dropped: DropCounts::default(),
        };
        std::thread::scope(|scope| {
            let (sender, chunks) = sync_channel::<Result<Chunk>>(2);
            scope.spawn(move || {
                let mut reader = match PairReader::open(&corpus.src, &corpus.tgt) {
                    Ok(reader) => reader,
                    Err(e) => {
                        let _ = sender.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut chunk = Chunk::with_capacity(CHUNK_PAIRS);
                    let ended = loop {
                        match reader.next_pair() {
                            Ok(Some((src, tgt))) => chunk.push((src.to_owned(), tgt.to_owned())),
                            Ok(None) => break Ok(true),
                            Err(e) => break Err(e),
                        }
                        if chunk.len() == CHUNK_PAIRS {
                            break Ok(false);
                        }
                    };
                    let (last, message) = match ended {
                        Ok(ended) => (ended, Ok(chunk)),
                        Err(e) => (true, Err(e)),
                    };
                    // A closed channel means the encoder failed: stop reading.
                    if sender.send(message).is_err() || last {
                        return;
                    }
                }
            });
            for chunk in chunks {
                self.chunk(&chunk?, &mut stats)?;
                progress(PrepareProgress::Encoded { done: self.done, total: self.total_pairs });
            }
            Ok::<(), DataError>(())
        })?;
        Ok(stats)
    }

    /// Encodes one chunk and writes the pairs the filters keep.
    fn chunk(&mut self, chunk: &[(String, String)], stats: &mut CorpusStats) -> Result<()> {
        self.done += chunk.len();
        let texts: Vec<&(String, String)> =
            chunk.iter().filter(|(src, tgt)| !is_blank(src) && !is_blank(tgt)).collect();
        stats.dropped.empty += chunk.len() - texts.len();
        let src = self.encoder.encode(&texts.iter().map(|(src, _)| src).collect::<Vec<_>>())?;
        let tgt = self.encoder.encode(&texts.iter().map(|(_, tgt)| tgt).collect::<Vec<_>>())?;
        for (src, tgt) in src.iter().zip(&tgt) {
            match self.config.train_drop(src.len(), tgt.len()) {
                Some(reason) => stats.dropped.count(reason),
                None => {
                    self.writer.push(src, tgt)?;
                    stats.pairs += 1;
                    stats.src_tokens += src.len() as u64;
                    stats.tgt_tokens += tgt.len() as u64;
                }
            }
        }
        Ok(())
    }
}

/// Encodes the validation corpus into the `valid` split (the pairs the length filter keeps)
/// and copies its text; returns its counts, index and file entries.
fn prepare_valid(
    config: &DataConfig,
    tokenizer: &SubwordTokenizer,
    dir: &Path,
    width: TokenWidth,
) -> Result<(CorpusStats, SplitIndex, WrittenFiles)> {
    let paths = config.valid_corpus().ok_or_else(|| DataError::config("data.valid_src", "is not set"))?;
    let corpus = ParallelCorpus::read(&paths.src, &paths.tgt)?;
    let (pairs, report) = filter_pairs(tokenizer.encode_corpus(&corpus)?, &config.length_filter());
    let mut writer = ShardWriter::new(dir, "valid", width, usize::MAX);
    for pair in &pairs {
        writer.push(&pair.src, &pair.tgt)?;
    }
    let (index, mut files) = writer.finish()?;
    for (name, lines) in VALID_TEXT.iter().zip([&corpus.src, &corpus.tgt]) {
        let path = dir.join(name);
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        write_synced(&path, text.as_bytes())?;
        files.push(((*name).to_owned(), FileEntry::of(&path)?));
    }
    let dropped = DropCounts {
        too_short: report.too_short,
        too_long: report.too_long,
        bad_ratio: report.bad_ratio,
        ..DropCounts::default()
    };
    let stats = CorpusStats {
        src: paths.src,
        tgt: paths.tgt,
        lines: corpus.len(),
        pairs: pairs.len(),
        src_tokens: pairs.iter().map(|p| p.src.len() as u64).sum(),
        tgt_tokens: pairs.iter().map(|p| p.tgt.len() as u64).sum(),
        dropped,
    };
    Ok((stats, index, files))
}
