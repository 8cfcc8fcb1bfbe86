//! Reading line-oriented text files and sentence-aligned parallel corpora.
//!
//! Files are plain UTF-8 text, or gzip-compressed text when the file name
//! ends in `.gz`. Lines are split on `'\n'`; a trailing `'\r'` is stripped
//! (so Windows line endings are fine), a final newline does not produce an
//! extra empty line, and a UTF-8 byte-order mark at the start of the file is
//! dropped. Each line is checked for valid UTF-8 separately, so an error
//! names the exact 1-based line; a [lossy](LineReader::lossy) reader replaces
//! invalid bytes with U+FFFD instead.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &str = "\u{feff}";

/// Bytes read from a file (or its decompressed stream) at a time.
const READ_BUFFER: usize = 1 << 20;

/// Reads every line of `path`, rejecting empty (or whitespace-only) lines.
///
/// Use this for training data, where every line must hold a sentence; use
/// [`read_lines_allow_empty`] for text to translate.
///
/// # Errors
///
/// [`DataError::Io`] if the file cannot be read or decompressed,
/// [`DataError::InvalidUtf8`] or [`DataError::EmptyLine`] naming the file and
/// the first offending 1-based line.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let lines = read_lines_allow_empty(path)?;
    match first_blank_line(&lines) {
        Some(line) => Err(DataError::EmptyLine { path: path.to_path_buf(), line }),
        None => Ok(lines),
    }
}

/// Reads every line of `path`, keeping empty lines (as empty strings).
///
/// # Errors
///
/// [`DataError::Io`] if the file cannot be read or decompressed,
/// [`DataError::InvalidUtf8`] naming the file and the first bad 1-based line.
pub fn read_lines_allow_empty(path: &Path) -> Result<Vec<String>> {
    let mut reader = LineReader::open(path)?;
    let mut lines = Vec::new();
    while let Some(line) = reader.next_line()? {
        lines.push(line.to_owned());
    }
    Ok(lines)
}

/// Whether `path` names a gzip-compressed file (its extension is `gz`).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "gz")
}

/// The bytes of `path`, buffered, decompressed if its name ends in `.gz`.
///
/// # Errors
///
/// [`DataError::Io`] if the file cannot be opened.
pub fn open_decompressed(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(if is_gzip(path) {
        Box::new(BufReader::with_capacity(READ_BUFFER, MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, file))
    })
}

/// The lines of one file, read one at a time with a fixed-size buffer: what streams a corpus
/// of any size through bounded memory. See the [module documentation](self) for what a line is.
pub struct LineReader {
    path: PathBuf,
    inner: Box<dyn BufRead + Send>,
    /// The 1-based number of the line last returned (0 before the first).
    line: usize,
    buffer: Vec<u8>,
    /// The line last read, checked and without its ending.
    text: String,
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    lossy: bool,
    /// Whether the line last read had invalid UTF-8 (replaced, as the reader is lossy).
    replaced: bool,
}

impl LineReader {
    /// Opens `path`, decompressing it if its name ends in `.gz`.
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] if the file cannot be opened.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::from_reader(path, open_decompressed(path)?))
    }

    /// Reads the lines of standard input, named `<stdin>` in errors. Each line is returned as
    /// soon as its end arrives.
    pub fn stdin() -> Self {
        Self::from_reader(Path::new("<stdin>"), Box::new(BufReader::new(std::io::stdin())))
    }

    /// Reads the lines of `inner`, naming `path` in errors.
    pub fn from_reader(path: &Path, inner: Box<dyn BufRead + Send>) -> Self {
        let (buffer, text) = (Vec::new(), String::new());
        Self { path: path.to_path_buf(), inner, line: 0, buffer, text, lossy: false, replaced: false }
    }

    /// With `lossy`, bytes that are not UTF-8 are replaced with U+FFFD (as
    /// [`String::from_utf8_lossy`]) instead of being an error;
    /// [`replaced_invalid_utf8`](Self::replaced_invalid_utf8) tells which lines had them.
    pub fn lossy(mut self, lossy: bool) -> Self {
        self.lossy = lossy;
        self
    }

    /// Whether the line last read had bytes that are not UTF-8, replaced with U+FFFD (only a
    /// [`lossy`](Self::lossy) reader returns such a line).
    pub fn replaced_invalid_utf8(&self) -> bool {
        self.replaced
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 1-based number of the line last returned: the lines read so far.
    pub fn lines_read(&self) -> usize {
        self.line
    }

    /// The next line, without its line ending, or `None` at the end of the file.
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] if the file cannot be read or decompressed, and unless the reader is
    /// [`lossy`](Self::lossy), [`DataError::InvalidUtf8`] naming the file and the line.
    pub fn next_line(&mut self) -> Result<Option<&str>> {
        Ok(if self.advance()? { Some(self.current()) } else { None })
    }

    /// Reads the next line into [`current`](Self::current); `false` at the end of the file.
    ///
    /// # Errors
    ///
    /// As [`next_line`](Self::next_line).
    pub fn advance(&mut self) -> Result<bool> {
        self.buffer.clear();
        let read =
            self.inner.read_until(b'\n', &mut self.buffer).map_err(|e| DataError::io(&self.path, e))?;
        if read == 0 {
            return Ok(false);
        }
        self.line += 1;
        let raw = self.buffer.strip_suffix(b"\n").unwrap_or(&self.buffer);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = match std::str::from_utf8(raw) {
            Ok(text) => {
                self.replaced = false;
                std::borrow::Cow::Borrowed(text)
            }
            Err(_) if self.lossy => {
                self.replaced = true;
                String::from_utf8_lossy(raw)
            }
            Err(_) => return Err(DataError::InvalidUtf8 { path: self.path.clone(), line: self.line }),
        };
        let text = if self.line == 1 { text.strip_prefix(BOM).unwrap_or(&text) } else { &text };
        self.text.clear();
        self.text.push_str(text);
        Ok(true)
    }

    /// The line [`advance`](Self::advance) read last.
    pub fn current(&self) -> &str {
        &self.text
    }

    /// Reads the rest of the file, returning the total number of lines.
    ///
    /// # Errors
    ///
    /// As [`next_line`](Self::next_line).
    pub fn count_to_end(&mut self) -> Result<usize> {
        while self.advance()? {}
        Ok(self.line)
    }
}

/// The two sides of a parallel corpus read in step, one pair at a time.
pub struct PairReader {
    src: LineReader,
    tgt: LineReader,
}

impl PairReader {
    /// Opens both sides.
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] if either file cannot be opened.
    pub fn open(src: &Path, tgt: &Path) -> Result<Self> {
        Ok(Self { src: LineReader::open(src)?, tgt: LineReader::open(tgt)? })
    }

    /// The next `(source, target)` pair, or `None` when both sides end together.
    ///
    /// # Errors
    ///
    /// Those of [`LineReader::next_line`], and [`DataError::LineCountMismatch`] with both
    /// files' line counts when one side ends before the other (the longer one is read to its
    /// end to count it).
    pub fn next_pair(&mut self) -> Result<Option<(&str, &str)>> {
        let src = self.src.advance()?;
        let tgt = self.tgt.advance()?;
        match (src, tgt) {
            (true, true) => Ok(Some((self.src.current(), self.tgt.current()))),
            (false, false) => Ok(None),
            (src, _) => {
                let (src_lines, tgt_lines) = if src {
                    (self.src.count_to_end()?, self.tgt.lines_read())
                } else {
                    (self.src.lines_read(), self.tgt.count_to_end()?)
                };
                Err(DataError::LineCountMismatch {
                    src_path: self.src.path().to_path_buf(),
                    src_lines,
                    tgt_path: self.tgt.path().to_path_buf(),
                    tgt_lines,
                })
            }
        }
    }

    /// The pairs read so far.
    pub fn pairs_read(&self) -> usize {
        self.src.lines_read()
    }
}

/// Whether a line holds no text (is empty or whitespace only).
pub(crate) fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// The 1-based number of the first empty or whitespace-only line, if any.
fn first_blank_line(lines: &[String]) -> Option<usize> {
    lines.iter().position(|line| is_blank(line)).map(|i| i + 1)
}

/// A sentence-aligned parallel corpus: line `i` of `src` translates to line
/// `i` of `tgt`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParallelCorpus {
    /// Source-language sentences.
    pub src: Vec<String>,
    /// Target-language sentences, aligned with `src`.
    pub tgt: Vec<String>,
}

impl ParallelCorpus {
    /// Reads a parallel corpus from two line-aligned files (plain or `.gz`).
    ///
    /// # Errors
    ///
    /// Besides the errors of [`read_lines_allow_empty`]:
    /// [`DataError::LineCountMismatch`] naming both files and both counts if
    /// they differ, and otherwise [`DataError::EmptyLine`] naming the file and
    /// line of the first empty (or whitespace-only) line on either side.
    pub fn read(src_path: &Path, tgt_path: &Path) -> Result<Self> {
        let mut reader = PairReader::open(src_path, tgt_path)?;
        let mut corpus = ParallelCorpus::default();
        let mut first_blank = None;
        while let Some((src, tgt)) = reader.next_pair()? {
            if first_blank.is_none() {
                let line = corpus.len() + 1;
                let sides = [(src_path, src), (tgt_path, tgt)];
                first_blank =
                    sides.into_iter().find(|(_, text)| is_blank(text)).map(|(path, _)| (path, line));
            }
            corpus.src.push(src.to_owned());
            corpus.tgt.push(tgt.to_owned());
        }
        // A misaligned corpus is reported before its blank lines (the reader fails first).
        match first_blank {
            Some((path, line)) => Err(DataError::EmptyLine { path: path.to_path_buf(), line }),
            None => Ok(corpus),
        }
    }

    /// Number of sentence pairs.
    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// Whether the corpus holds no sentence pairs.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    /// Iterates over the `(source, target)` sentence pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.src.iter().zip(&self.tgt).map(|(s, t)| (s.as_str(), t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn write_plain(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn write_gz(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut enc = GzEncoder::new(File::create(&path).unwrap(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
        path
    }

    #[test]
    fn plain_and_gzip_give_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text = "Ein Mann läuft.\r\nZwei Hunde spielen.\nÇa va ?\n".as_bytes();
        let plain = read_lines(&write_plain(dir.path(), "a.txt", text)).unwrap();
        let gz = read_lines(&write_gz(dir.path(), "a.txt.gz", text)).unwrap();
        let expected = vec!["Ein Mann läuft.", "Zwei Hunde spielen.", "Ça va ?"];
        assert_eq!(plain, expected);
        assert_eq!(gz, expected);
    }

    /// The lines of `bytes` as [`LineReader`] reads them, or the line that is not UTF-8.
    fn split_lines(bytes: &'static [u8]) -> std::result::Result<Vec<String>, usize> {
        let mut reader = LineReader::from_reader(Path::new("x"), Box::new(bytes));
        let mut lines = Vec::new();
        loop {
            match reader.next_line() {
                Ok(Some(line)) => lines.push(line.to_owned()),
                Ok(None) => return Ok(lines),
                Err(DataError::InvalidUtf8 { line, .. }) => return Err(line),
                Err(other) => panic!("{other}"),
            }
        }
    }

    #[test]
    fn no_phantom_line_and_last_line_without_newline() {
        assert_eq!(split_lines(b"a\nb\n").unwrap(), vec!["a", "b"]);
        assert_eq!(split_lines(b"a\nb").unwrap(), vec!["a", "b"]);
        assert_eq!(split_lines(b"").unwrap(), Vec::<String>::new());
        assert_eq!(split_lines(b"\n").unwrap(), vec![""]);
        assert_eq!(split_lines(b"a\n\nb\n").unwrap(), vec!["a", "", "b"]);
        assert_eq!(split_lines("\u{feff}x\r\n".as_bytes()).unwrap(), vec!["x"]);
    }

    #[test]
    fn invalid_utf8_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_gz(dir.path(), "bad.de.gz", b"gut\nauch gut\nschlecht \xff\n");
        let err = read_lines_allow_empty(&path).unwrap_err();
        assert!(matches!(err, DataError::InvalidUtf8 { line: 3, .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("{}:3: invalid UTF-8", path.display()));
    }

    #[test]
    fn a_lossy_reader_replaces_invalid_utf8_and_says_where() {
        let bytes: &'static [u8] = b"gut\nschlecht \xff\xfe!\nauch gut\n";
        let mut reader = LineReader::from_reader(Path::new("x"), Box::new(bytes)).lossy(true);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            lines.push((line.to_owned(), reader.replaced_invalid_utf8()));
        }
        let expected = [("gut", false), ("schlecht \u{fffd}\u{fffd}!", true), ("auch gut", false)];
        assert_eq!(lines, expected.map(|(line, replaced)| (line.to_owned(), replaced)));
    }

    #[test]
    fn read_lines_rejects_blank_lines_but_allow_empty_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_plain(dir.path(), "in.en", b"one\n  \nthree\n");
        assert_eq!(read_lines_allow_empty(&path).unwrap(), vec!["one", "  ", "three"]);
        let err = read_lines(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:2: empty line (parallel corpora must have text on every line)", path.display())
        );
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = read_lines(Path::new("/definitely/not/here.gz")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert_eq!(err.to_string(), "reading /definitely/not/here.gz");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn corrupt_gzip_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_plain(dir.path(), "fake.gz", b"this is not gzip\n");
        let err = read_lines(&path).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    }

    #[test]
    fn parallel_corpus_reads_aligned_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_gz(dir.path(), "train.de.gz", "Hallo Welt.\nGuten Morgen.\n".as_bytes());
        let tgt = write_plain(dir.path(), "train.en", b"Hello world.\nGood morning.\n");
        let corpus = ParallelCorpus::read(&src, &tgt).unwrap();
        assert_eq!(corpus.len(), 2);
        assert!(!corpus.is_empty());
        let pairs: Vec<_> = corpus.pairs().collect();
        assert_eq!(pairs[1], ("Guten Morgen.", "Good morning."));
    }

    #[test]
    fn line_count_mismatch_names_both_files_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_plain(dir.path(), "train.de", b"a\nb\nc\n");
        let tgt = write_plain(dir.path(), "train.en", b"a\nb\n");
        let err = ParallelCorpus::read(&src, &tgt).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{} has 3 lines", src.display())), "{msg}");
        assert!(msg.contains(&format!("{} has 2 lines", tgt.display())), "{msg}");
    }

    #[test]
    fn empty_line_names_the_side_and_the_earliest_line() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_plain(dir.path(), "s.de", b"a\nb\nc\n\n");
        let tgt = write_plain(dir.path(), "t.en", b"a\n\nc\nd\n");
        let err = ParallelCorpus::read(&src, &tgt).unwrap_err();
        match err {
            DataError::EmptyLine { path, line } => {
                assert_eq!(path, tgt);
                assert_eq!(line, 2);
            }
            other => panic!("expected EmptyLine, got {other:?}"),
        }
    }
}
