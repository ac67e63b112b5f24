//! Reader for CTranslate2 model directories (faster-whisper's format).
//!
//! `model.bin` (binary version 6) is laid out as:
//! `u32 version; str spec; u32 spec_revision; u32 n_vars;` then per variable
//! `str name; u8 rank; u32 dims[rank]; u8 dtype; u32 num_bytes; bytes`, then
//! `u32 n_aliases` and per alias `str alias; str target`. A `str` is a `u16`
//! length (counting a trailing NUL) followed by the bytes.
//!
//! The reader only indexes the file (names, shapes, data offsets); tensor data
//! is read on demand, in chunks, so a model is never held in memory. A model
//! may also be split into `model.bin.part1`, `model.bin.part2`, ... which are
//! read as their concatenation.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ModelError;

/// The only `model.bin` binary version this reader understands.
pub const SUPPORTED_BINARY_VERSION: u32 = 6;

/// Element type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }
}

/// One variable of `model.bin`: its shape, type and where its data lies.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Offset of the data from the start of the (joined) file.
    pub offset: u64,
    pub num_bytes: u64,
}

impl Variable {
    pub fn num_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Several files read as one (split `model.bin.partN`), or just one file.
pub struct SplitFile {
    parts: Vec<(File, u64)>,
    pos: u64,
    total: u64,
}

impl SplitFile {
    pub fn open(paths: &[PathBuf]) -> Result<SplitFile, ModelError> {
        let mut parts = Vec::with_capacity(paths.len());
        let mut total = 0u64;
        for p in paths {
            let f = File::open(p).map_err(|e| ModelError::io(p, "cannot open", e))?;
            let len = f
                .metadata()
                .map_err(|e| ModelError::io(p, "cannot stat", e))?
                .len();
            total += len;
            parts.push((f, len));
        }
        Ok(SplitFile {
            parts,
            pos: 0,
            total,
        })
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Read for SplitFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut start = 0u64;
        for (file, len) in &mut self.parts {
            if self.pos < start + *len {
                let local = self.pos - start;
                file.seek(SeekFrom::Start(local))?;
                let want = ((*len - local) as usize).min(buf.len());
                let n = file.read(&mut buf[..want])?;
                self.pos += n as u64;
                return Ok(n);
            }
            start += *len;
        }
        Ok(0)
    }
}

impl Seek for SplitFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before start of file",
            )),
        }
    }
}

/// Finds the model file(s) in a CTranslate2 directory: `model.bin`, or
/// `model.bin.part1..N` (which must be numbered without gaps).
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| ModelError::io(dir, "cannot open CTranslate2 model directory", e))?;
    if !meta.is_dir() {
        return Err(ModelError::invalid(
            dir,
            "not a directory (expected a CTranslate2 model directory)",
        ));
    }
    let single = dir.join("model.bin");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, "cannot list directory", e))?;
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(dir, "cannot list directory", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("model.bin.part") {
            if let Ok(n) = n.parse::<u32>() {
                if n >= 1 {
                    numbers.push(n);
                }
            }
        }
    }
    if numbers.is_empty() {
        return Err(ModelError::io(
            &single,
            "cannot open",
            io::Error::new(
                io::ErrorKind::NotFound,
                "no model.bin (nor model.bin.part1, model.bin.part2, ...) in this directory",
            ),
        ));
    }
    numbers.sort_unstable();
    let max = numbers[numbers.len() - 1];
    for n in 1..=max {
        if numbers.binary_search(&n).is_err() {
            return Err(ModelError::MissingPart {
                path: dir.join(format!("model.bin.part{n}")),
                detail: format!("found parts {numbers:?} of a split model.bin"),
            });
        }
    }
    Ok((1..=max)
        .map(|n| dir.join(format!("model.bin.part{n}")))
        .collect())
}

/// An indexed CTranslate2 `model.bin`.
pub struct Ct2Model<R> {
    source: R,
    label: PathBuf,
    split_note: Option<String>,
    len: u64,
    pub binary_version: u32,
    pub spec: String,
    pub spec_revision: u32,
    vars: Vec<Variable>,
    index: HashMap<String, usize>,
    aliases: HashMap<String, String>,
}

impl Ct2Model<SplitFile> {
    /// Opens `model.bin` (or its split parts) in a CTranslate2 model directory.
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let files = model_files(dir)?;
        let source = SplitFile::open(&files)?;
        let len = source.len();
        let (label, note) = if files.len() == 1 {
            (files[0].clone(), None)
        } else {
            (
                dir.join(format!("model.bin.part{{1..{}}}", files.len())),
                Some(format!(
                    " (split model: read parts 1 to {}; a later part may be missing)",
                    files.len()
                )),
            )
        };
        let mut m = Ct2Model::from_reader(source, len, label)?;
        m.split_note = note;
        Ok(m)
    }
}

/// Counting buffered reader used while indexing.
struct Parser<'a, R: Read + Seek> {
    r: BufReader<&'a mut R>,
    pos: u64,
    len: u64,
    label: &'a Path,
}

impl<R: Read + Seek> Parser<'_, R> {
    fn truncated(&self, what: &str) -> ModelError {
        ModelError::invalid(
            self.label,
            format!(
                "truncated model.bin: file ends at byte {} while reading {what}",
                self.len
            ),
        )
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<Vec<u8>, ModelError> {
        if self.pos + n as u64 > self.len {
            return Err(self.truncated(what));
        }
        let mut buf = vec![0u8; n];
        self.r.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.truncated(what)
            } else {
                ModelError::io(self.label, "cannot read", e)
            }
        })?;
        self.pos += n as u64;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        let v = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let n = self.u16(what)? as usize;
        if n == 0 {
            return Err(ModelError::invalid(
                self.label,
                format!(
                    "corrupt model.bin: zero-length string for {what} at byte {}",
                    self.pos - 2
                ),
            ));
        }
        let mut b = self.bytes(n, what)?;
        if b.pop() != Some(0) {
            return Err(ModelError::invalid(
                self.label,
                format!("corrupt model.bin: {what} is not NUL-terminated"),
            ));
        }
        String::from_utf8(b).map_err(|_| {
            ModelError::invalid(
                self.label,
                format!("corrupt model.bin: {what} is not UTF-8"),
            )
        })
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ModelError> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(ModelError::invalid(
                self.label,
                format!(
                    "truncated model.bin: {what} needs {n} bytes at offset {} but the file has only {} bytes",
                    self.pos, self.len
                ),
            ));
        }
        let d = i64::try_from(n).map_err(|_| self.truncated(what))?;
        self.r
            .seek_relative(d)
            .map_err(|e| ModelError::io(self.label, "cannot seek in", e))?;
        self.pos += n;
        Ok(())
    }
}

impl<R: Read + Seek> Ct2Model<R> {
    /// Indexes a `model.bin` read from `source`, which holds `len` bytes.
    /// `label` names the file in error messages.
    pub fn from_reader(mut source: R, len: u64, label: PathBuf) -> Result<Self, ModelError> {
        source
            .seek(SeekFrom::Start(0))
            .map_err(|e| ModelError::io(&label, "cannot seek in", e))?;
        let mut p = Parser {
            r: BufReader::with_capacity(64 * 1024, &mut source),
            pos: 0,
            len,
            label: &label,
        };
        let binary_version = p.u32("the binary version")?;
        if binary_version != SUPPORTED_BINARY_VERSION {
            return Err(ModelError::Unsupported {
                path: label.clone(),
                reason: format!(
                    "CTranslate2 model.bin binary version {binary_version} is not supported \
                     (only version {SUPPORTED_BINARY_VERSION}, written by CTranslate2 3.x/4.x); \
                     re-convert the model with a current ct2-transformers-converter"
                ),
            });
        }
        let spec = p.string("the model spec name")?;
        if spec != "WhisperSpec" {
            return Err(ModelError::Unsupported {
                path: label.clone(),
                reason: format!(
                    "model spec is {spec:?}, not \"WhisperSpec\": this is not a Whisper model"
                ),
            });
        }
        let spec_revision = p.u32("the spec revision")?;
        let n_vars = p.u32("the variable count")?;
        let mut vars = Vec::new();
        let mut index = HashMap::new();
        for i in 0..n_vars {
            let name = p.string(&format!("the name of variable {i}"))?;
            let rank = p.u8(&format!("the rank of {name}"))?;
            let mut dims = Vec::with_capacity(rank as usize);
            for _ in 0..rank {
                dims.push(u64::from(p.u32(&format!("the shape of {name}"))?));
            }
            let type_id = p.u8(&format!("the type of {name}"))?;
            let dtype = DType::from_id(type_id).ok_or_else(|| {
                ModelError::invalid(
                    &label,
                    format!("corrupt model.bin: variable {name} has unknown type id {type_id}"),
                )
            })?;
            let num_bytes = u64::from(p.u32(&format!("the size of {name}"))?);
            let expected = dims
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(num_bytes) {
                return Err(ModelError::invalid(
                    &label,
                    format!(
                        "corrupt model.bin: variable {name} has shape {dims:?} of {} but {num_bytes} bytes",
                        dtype.name()
                    ),
                ));
            }
            let offset = p.pos;
            p.skip(num_bytes, &format!("the data of {name}"))?;
            if index.insert(name.clone(), vars.len()).is_some() {
                return Err(ModelError::invalid(
                    &label,
                    format!("corrupt model.bin: variable {name} appears twice"),
                ));
            }
            vars.push(Variable {
                name,
                dims,
                dtype,
                offset,
                num_bytes,
            });
        }
        let n_aliases = p.u32("the alias count")?;
        let mut aliases = HashMap::new();
        for i in 0..n_aliases {
            let alias = p.string(&format!("alias {i}"))?;
            let target = p.string(&format!("the target of alias {alias}"))?;
            aliases.insert(alias, target);
        }
        drop(p);
        Ok(Ct2Model {
            source,
            label,
            split_note: None,
            len,
            binary_version,
            spec,
            spec_revision,
            vars,
            index,
            aliases,
        })
    }

    /// The file name used in error messages.
    pub fn label(&self) -> &Path {
        &self.label
    }

    /// Total size of the model file(s) in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    pub fn variables(&self) -> &[Variable] {
        &self.vars
    }

    /// Looks a variable up by name, following aliases.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        let mut name = name;
        for _ in 0..8 {
            if let Some(&i) = self.index.get(name) {
                return Some(&self.vars[i]);
            }
            name = self.aliases.get(name)?;
        }
        None
    }

    /// Like [`get`](Self::get) but a missing variable is an error.
    pub fn require(&self, name: &str) -> Result<&Variable, ModelError> {
        self.get(name).ok_or_else(|| {
            ModelError::invalid(
                &self.label,
                format!("variable {name} is missing from model.bin"),
            )
        })
    }

    /// Error for a variable of unexpected shape.
    pub fn bad_shape(&self, var: &Variable, expected: &[u64]) -> ModelError {
        ModelError::invalid(
            &self.label,
            format!(
                "variable {} has shape {:?}, expected {expected:?}",
                var.name, var.dims
            ),
        )
    }

    /// Reads an integer scalar such as `encoder/num_heads`.
    pub fn scalar_int(&mut self, name: &str) -> Result<i64, ModelError> {
        let var = self.require(name)?.clone();
        if var.num_elements() != 1 || var.dims.len() > 1 {
            return Err(self.bad_shape(&var, &[]));
        }
        let mut b = [0u8; 4];
        let n = var.dtype.size() as usize;
        self.read_at(var.offset, &mut b[..n])?;
        Ok(match var.dtype {
            DType::I8 => i64::from(b[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            DType::I32 => i64::from(i32::from_le_bytes(b)),
            DType::F32 => {
                let f = f32::from_le_bytes(b);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(ModelError::invalid(
                        &self.label,
                        format!("scalar {name} = {f} is not an integer"),
                    ));
                }
                f as i64
            }
            DType::F16 | DType::BF16 => {
                return Err(ModelError::invalid(
                    &self.label,
                    format!("scalar {name} has unexpected type {}", var.dtype.name()),
                ))
            }
        })
    }

    /// Reads `buf.len()` bytes at absolute offset `offset`.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ModelError> {
        if offset + buf.len() as u64 > self.len {
            return Err(ModelError::invalid(
                &self.label,
                format!(
                    "truncated model.bin: read past the end of the file at {offset}{}",
                    self.split_note.as_deref().unwrap_or("")
                ),
            ));
        }
        self.source
            .seek(SeekFrom::Start(offset))
            .map_err(|e| ModelError::io(&self.label, "cannot seek in", e))?;
        self.source.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ModelError::invalid(
                    &self.label,
                    format!(
                        "model.bin shrank while being read (ends before byte {})",
                        offset + buf.len() as u64
                    ),
                )
            } else {
                ModelError::io(&self.label, "cannot read", e)
            }
        })
    }

    /// Reads `n` elements starting at element `start` of `var`, converted to
    /// f32, into `out` (which is cleared first).
    pub fn read_f32(
        &mut self,
        var: &Variable,
        start: u64,
        n: usize,
        raw: &mut Vec<u8>,
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        self.read_raw(var, start, n, raw)?;
        out.clear();
        match var.dtype {
            DType::F32 => out.extend(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            DType::F16 => out.extend(
                raw.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            DType::BF16 => out.extend(
                raw.chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            DType::I8 | DType::I16 | DType::I32 => return Err(self.not_float(var)),
        }
        Ok(())
    }

    /// Reads the raw bytes of `n` elements of `var` starting at element `start`.
    pub fn read_raw(
        &mut self,
        var: &Variable,
        start: u64,
        n: usize,
        raw: &mut Vec<u8>,
    ) -> Result<(), ModelError> {
        let es = var.dtype.size();
        let end = start.checked_add(n as u64);
        if end.is_none_or(|e| e > var.num_elements()) {
            return Err(ModelError::invalid(
                &self.label,
                format!(
                    "internal: read of elements {start}+{n} outside variable {}",
                    var.name
                ),
            ));
        }
        raw.resize(n * es as usize, 0);
        self.read_at(var.offset + start * es, raw)
    }

    /// The error for a tensor that should hold floats but holds integers.
    pub fn not_float(&self, var: &Variable) -> ModelError {
        if matches!(var.dtype, DType::I8 | DType::I16) {
            ModelError::Unsupported {
                path: self.label.clone(),
                reason: format!(
                    "quantized CT2 models are not supported; use a float16 model \
                     (variable {} is {})",
                    var.name,
                    var.dtype.name()
                ),
            }
        } else {
            ModelError::invalid(
                &self.label,
                format!(
                    "variable {} has type {}, expected a floating-point type",
                    var.name,
                    var.dtype.name()
                ),
            )
        }
    }
}

/// Reads a CTranslate2 vocabulary: `vocabulary.txt` (one token per line,
/// split on `\n` only) or `vocabulary.json` (a JSON array of strings).
/// Returns the tokens and the file they came from.
pub fn read_vocabulary(dir: &Path) -> Result<(Vec<String>, PathBuf), ModelError> {
    let txt = dir.join("vocabulary.txt");
    let json = dir.join("vocabulary.json");
    if txt.is_file() {
        let bytes = std::fs::read(&txt).map_err(|e| ModelError::io(&txt, "cannot read", e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| ModelError::invalid(&txt, format!("not valid UTF-8: {e}")))?;
        let mut tokens: Vec<String> = text.split('\n').map(str::to_owned).collect();
        // A final newline ends the last line; it does not start another token.
        if text.ends_with('\n') {
            tokens.pop();
        }
        Ok((tokens, txt))
    } else if json.is_file() {
        let bytes = std::fs::read(&json).map_err(|e| ModelError::io(&json, "cannot read", e))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ModelError::invalid(&json, format!("not valid JSON: {e}")))?;
        let serde_json::Value::Array(items) = value else {
            return Err(ModelError::invalid(
                &json,
                "expected a JSON array of strings",
            ));
        };
        let mut tokens = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                serde_json::Value::String(s) => tokens.push(s),
                serde_json::Value::Null => tokens.push(String::new()),
                other => {
                    return Err(ModelError::invalid(
                        &json,
                        format!("token {i} is {other}, expected a string"),
                    ))
                }
            }
        }
        Ok((tokens, json))
    } else {
        Err(ModelError::io(
            &txt,
            "cannot open",
            io::Error::new(
                io::ErrorKind::NotFound,
                "neither vocabulary.txt nor vocabulary.json exists in the model directory",
            ),
        ))
    }
}

/// Builder of small synthetic CTranslate2 Whisper models, for tests (here
/// and in dependent crates). Not part of the supported API.
#[doc(hidden)]
pub mod synthetic {
    use std::path::Path;

    use super::DType;

    /// Shape of a synthetic model.
    #[derive(Debug, Clone)]
    pub struct Params {
        pub d: u32,
        pub heads: u32,
        pub n_mels: u32,
        pub n_audio_ctx: u32,
        pub n_text_ctx: u32,
        pub enc_layers: u32,
        pub dec_layers: u32,
        pub multilingual: bool,
        /// Type of the weight matrices (vectors stay float16).
        pub weight_dtype: DType,
    }

    impl Default for Params {
        fn default() -> Params {
            Params {
                d: 4,
                heads: 2,
                n_mels: 80,
                n_audio_ctx: 6,
                n_text_ctx: 5,
                enc_layers: 1,
                dec_layers: 1,
                multilingual: false,
                weight_dtype: DType::F16,
            }
        }
    }

    impl Params {
        pub fn n_vocab(&self) -> u32 {
            51864 + u32::from(self.multilingual)
        }
    }

    #[derive(Debug, Clone)]
    pub struct Var {
        pub name: String,
        pub dims: Vec<u32>,
        pub dtype: u8,
        pub data: Vec<u8>,
    }

    /// A model.bin in the making.
    #[derive(Debug, Clone)]
    pub struct Model {
        pub version: u32,
        pub spec: String,
        pub revision: u32,
        pub vars: Vec<Var>,
        pub aliases: Vec<(String, String)>,
    }

    fn dtype_id(t: DType) -> u8 {
        match t {
            DType::F32 => 0,
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 => 3,
            DType::F16 => 4,
            DType::BF16 => 5,
        }
    }

    /// The value of element `i` of the variable numbered `k`: distinct
    /// enough that a misplaced row is noticed.
    pub fn value(k: usize, i: usize) -> f32 {
        let h = (k as u64 * 7919 + i as u64 * 2_654_435_761) % 4001;
        h as f32 / 2000.0 - 1.0
    }

    fn encode(t: DType, vals: impl Iterator<Item = f32>) -> Vec<u8> {
        let mut out = Vec::new();
        for v in vals {
            match t {
                DType::F32 => out.extend(v.to_le_bytes()),
                DType::F16 => out.extend(half::f16::from_f32(v).to_le_bytes()),
                DType::BF16 => out.extend(half::bf16::from_f32(v).to_le_bytes()),
                DType::I8 => out.push((v * 100.0) as i8 as u8),
                DType::I16 => out.extend(((v * 1000.0) as i16).to_le_bytes()),
                DType::I32 => out.extend(((v * 1000.0) as i32).to_le_bytes()),
            }
        }
        out
    }

    impl Model {
        /// A WhisperSpec model with the variables faster-whisper models have.
        pub fn whisper(p: &Params) -> Model {
            let mut shapes: Vec<(String, Vec<u32>, bool)> = Vec::new();
            let mut add = |name: String, dims: Vec<u32>| {
                let matrix = dims.len() >= 2;
                shapes.push((name, dims, matrix));
            };
            let d = p.d;
            let norm = |add: &mut dyn FnMut(String, Vec<u32>), pre: &str| {
                add(format!("{pre}/gamma"), vec![d]);
                add(format!("{pre}/beta"), vec![d]);
            };
            let linear = |add: &mut dyn FnMut(String, Vec<u32>), pre: &str, r: u32, c: u32| {
                add(format!("{pre}/weight"), vec![r, c]);
                add(format!("{pre}/bias"), vec![r]);
            };
            add("encoder/conv1/weight".into(), vec![d, p.n_mels, 3]);
            add("encoder/conv1/bias".into(), vec![d]);
            add("encoder/conv2/weight".into(), vec![d, d, 3]);
            add("encoder/conv2/bias".into(), vec![d]);
            add(
                "encoder/position_encodings/encodings".into(),
                vec![p.n_audio_ctx, d],
            );
            for l in 0..p.enc_layers {
                let s = format!("encoder/layer_{l}");
                norm(&mut add, &format!("{s}/self_attention/layer_norm"));
                linear(&mut add, &format!("{s}/self_attention/linear_0"), 3 * d, d);
                linear(&mut add, &format!("{s}/self_attention/linear_1"), d, d);
                norm(&mut add, &format!("{s}/ffn/layer_norm"));
                linear(&mut add, &format!("{s}/ffn/linear_0"), 4 * d, d);
                linear(&mut add, &format!("{s}/ffn/linear_1"), d, 4 * d);
            }
            norm(&mut add, "encoder/layer_norm");
            add("decoder/embeddings/weight".into(), vec![p.n_vocab(), d]);
            add(
                "decoder/position_encodings/encodings".into(),
                vec![p.n_text_ctx, d],
            );
            for l in 0..p.dec_layers {
                let s = format!("decoder/layer_{l}");
                norm(&mut add, &format!("{s}/self_attention/layer_norm"));
                linear(&mut add, &format!("{s}/self_attention/linear_0"), 3 * d, d);
                linear(&mut add, &format!("{s}/self_attention/linear_1"), d, d);
                norm(&mut add, &format!("{s}/attention/layer_norm"));
                linear(&mut add, &format!("{s}/attention/linear_0"), d, d);
                linear(&mut add, &format!("{s}/attention/linear_1"), 2 * d, d);
                linear(&mut add, &format!("{s}/attention/linear_2"), d, d);
                norm(&mut add, &format!("{s}/ffn/layer_norm"));
                linear(&mut add, &format!("{s}/ffn/linear_0"), 4 * d, d);
                linear(&mut add, &format!("{s}/ffn/linear_1"), d, 4 * d);
            }
            norm(&mut add, "decoder/layer_norm");

            let mut vars: Vec<Var> = shapes
                .into_iter()
                .enumerate()
                .map(|(k, (name, dims, matrix))| {
                    let n: u32 = dims.iter().product();
                    // CT2 keeps a zero slot for the (absent) key biases
                    let key_bias = |i: usize| {
                        (name.ends_with("self_attention/linear_0/bias")
                            && (d as usize..2 * d as usize).contains(&i))
                            || (name.ends_with("/attention/linear_1/bias") && i < d as usize)
                    };
                    let vals = (0..n as usize).map(|i| if key_bias(i) { 0.0 } else { value(k, i) });
                    let t = if matrix { p.weight_dtype } else { DType::F16 };
                    Var {
                        data: encode(t, vals),
                        name,
                        dims,
                        dtype: dtype_id(t),
                    }
                })
                .collect();
            let scalar = |name: &str, dtype: u8, data: Vec<u8>| Var {
                name: name.into(),
                dims: vec![],
                dtype,
                data,
            };
            let heads = (p.heads as i16).to_le_bytes().to_vec();
            vars.push(scalar("encoder/num_heads", 2, heads.clone()));
            vars.push(scalar("decoder/num_heads", 2, heads));
            vars.push(scalar("decoder/activation", 1, vec![3]));
            vars.push(scalar("decoder/alibi", 1, vec![0]));
            vars.push(scalar("decoder/alignment_layer", 2, vec![0xff, 0xff]));
            vars.sort_by(|a, b| a.name.cmp(&b.name));
            Model {
                version: 6,
                spec: "WhisperSpec".into(),
                revision: 3,
                vars,
                aliases: vec![(
                    "decoder/projection/weight".into(),
                    "decoder/embeddings/weight".into(),
                )],
            }
        }

        pub fn var_mut(&mut self, name: &str) -> Option<&mut Var> {
            self.vars.iter_mut().find(|v| v.name == name)
        }

        pub fn remove(&mut self, name: &str) {
            self.vars.retain(|v| v.name != name);
        }

        /// Serializes to the model.bin format.
        pub fn to_bytes(&self) -> Vec<u8> {
            fn string(out: &mut Vec<u8>, s: &str) {
                out.extend(((s.len() + 1) as u16).to_le_bytes());
                out.extend(s.as_bytes());
                out.push(0);
            }
            let mut out = Vec::new();
            out.extend(self.version.to_le_bytes());
            string(&mut out, &self.spec);
            out.extend(self.revision.to_le_bytes());
            out.extend((self.vars.len() as u32).to_le_bytes());
            for v in &self.vars {
                string(&mut out, &v.name);
                out.push(v.dims.len() as u8);
                for d in &v.dims {
                    out.extend(d.to_le_bytes());
                }
                out.push(v.dtype);
                out.extend((v.data.len() as u32).to_le_bytes());
                out.extend(&v.data);
            }
            out.extend((self.aliases.len() as u32).to_le_bytes());
            for (a, t) in &self.aliases {
                string(&mut out, a);
                string(&mut out, t);
            }
            out
        }

        /// Writes `model.bin`, `vocabulary.txt` and `config.json` to `dir`.
        pub fn write_dir(&self, dir: &Path, multilingual: bool) -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("model.bin"), self.to_bytes())?;
            let mut text = vocabulary(multilingual).join("\n");
            text.push('\n');
            std::fs::write(dir.join("vocabulary.txt"), text)?;
            std::fs::write(dir.join("config.json"), "{}\n")
        }
    }

    /// A vocabulary shaped like Whisper's: the 256 byte tokens, filler BPE
    /// tokens (some of them partial UTF-8), `<|endoftext|>` at 50256
    /// (50257 after an empty token for multilingual), then special tokens.
    pub fn vocabulary(multilingual: bool) -> Vec<String> {
        let chars = crate::model::ggml::bytes_to_unicode();
        let mut v: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        let mut i = 0usize;
        while v.len() < 50256 {
            let a = chars[b'a' as usize + i % 26];
            let b = chars[0x80 + (i / 26) % 64];
            v.push(format!("{}{a}{b}", chars[b' ' as usize]));
            i += 1;
        }
        if multilingual {
            v.push(String::new());
        }
        v.push("<|endoftext|>".into());
        let n_vocab = 51864 + usize::from(multilingual);
        let mut k = 0;
        while v.len() < n_vocab {
            v.push(format!("<|special{k}|>"));
            k += 1;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::synthetic::{Model, Params};
    use super::*;
    use crate::model::{ggml, Quantize};

    fn parse(bytes: &[u8]) -> Result<Ct2Model<Cursor<&[u8]>>, ModelError> {
        Ct2Model::from_reader(Cursor::new(bytes), bytes.len() as u64, "model.bin".into())
    }

    /// Full conversion in memory: index, plan, write.
    fn convert(bytes: &[u8], quantize: Quantize) -> Result<Vec<u8>, ModelError> {
        let mut m = parse(bytes)?;
        let vocab = synthetic::vocabulary(false);
        let mut out = Vec::new();
        ggml::convert(
            &mut m,
            &vocab,
            Path::new("vocabulary.txt"),
            quantize,
            &mut out,
            Path::new("out.bin"),
        )?;
        Ok(out)
    }

    #[test]
    fn indexes_synthetic_model() {
        let bytes = Model::whisper(&Params::default()).to_bytes();
        let mut m = parse(&bytes).unwrap();
        assert_eq!(m.binary_version, 6);
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.spec_revision, 3);
        assert_eq!(m.scalar_int("encoder/num_heads").unwrap(), 2);
        assert_eq!(m.scalar_int("decoder/alignment_layer").unwrap(), -1);
        let emb = m.get("decoder/projection/weight").unwrap();
        assert_eq!(emb.name, "decoder/embeddings/weight");
        assert_eq!(emb.dims, vec![51864, 4]);
        assert_eq!(emb.dtype, DType::F16);
        let conv = m.require("encoder/conv1/weight").unwrap().clone();
        let (mut raw, mut vals) = (Vec::new(), Vec::new());
        m.read_f32(&conv, 5, 3, &mut raw, &mut vals).unwrap();
        assert_eq!(vals.len(), 3);
        assert!(m
            .require("nope")
            .unwrap_err()
            .to_string()
            .contains("nope is missing"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = Model::whisper(&Params::default()).to_bytes();
        assert!(convert(&bytes, Quantize::F16).is_ok());
        for len in 0..bytes.len() {
            match parse(&bytes[..len]) {
                Err(ModelError::Invalid { reason, .. }) => {
                    assert!(reason.contains("truncated"), "at {len}: {reason}")
                }
                Err(e) => panic!("at {len}: unexpected error {e}"),
                Ok(_) => panic!("a model.bin cut at {len} of {} parsed", bytes.len()),
            }
        }
    }

    #[test]
    fn corrupt_header_bytes_never_panic() {
        let bytes = Model::whisper(&Params::default()).to_bytes();
        // the variable headers before the big embedding, and the tail
        let head = 3000.min(bytes.len());
        let positions = (0..head).chain(bytes.len() - 200..bytes.len());
        for pos in positions {
            for v in [0x00u8, 0xff] {
                let mut b = bytes.clone();
                b[pos] = v;
                // indexing and planning read every header and scalar
                if let Ok(mut m) = parse(&b) {
                    let _ = ggml::plan(&mut m, Quantize::F16);
                }
            }
        }
    }

    #[test]
    fn huge_size_field_is_rejected_without_allocating() {
        let bytes = Model::whisper(&Params::default()).to_bytes();
        // the first variable's num_bytes: version(4) + spec(2+12) + rev(4) + n(4)
        let first = &Model::whisper(&Params::default()).vars[0];
        let at = 26 + 2 + first.name.len() + 1 + 1 + 4 * first.dims.len() + 1;
        assert_eq!(
            u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize,
            first.data.len()
        );
        let mut b = bytes.clone();
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = parse(&b).err().unwrap().to_string();
        assert!(e.contains("bytes"), "{e}");
        // a consistent but huge shape
        let mut m = Model::whisper(&Params::default());
        let v = m.var_mut("encoder/conv1/bias").unwrap();
        v.dims = vec![u32::MAX, u32::MAX];
        let e = parse(&m.to_bytes()).err().unwrap().to_string();
        assert!(e.contains("encoder/conv1/bias"), "{e}");
    }

    #[test]
    fn rejects_quantized_weights() {
        for t in [DType::I8, DType::I16] {
            let p = Params {
                weight_dtype: t,
                ..Params::default()
            };
            let e = convert(&Model::whisper(&p).to_bytes(), Quantize::F16).unwrap_err();
            assert!(matches!(e, ModelError::Unsupported { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains("quantized CT2 models are not supported; use a float16 model"),
                "{e}"
            );
        }
    }

    #[test]
    fn accepts_f32_and_bf16_weights() {
        let f16 = convert(
            &Model::whisper(&Params::default()).to_bytes(),
            Quantize::F16,
        )
        .unwrap();
        for t in [DType::F32, DType::BF16] {
            let p = Params {
                weight_dtype: t,
                ..Params::default()
            };
            let out = convert(&Model::whisper(&p).to_bytes(), Quantize::F16).unwrap();
            assert_eq!(out.len(), f16.len());
        }
        // f32 values that are exact in f16 give the same file
        let p = Params {
            weight_dtype: DType::F32,
            ..Params::default()
        };
        let mut m = Model::whisper(&p);
        for v in &mut m.vars {
            if v.dtype == 0 {
                for c in v.data.chunks_exact_mut(4) {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let y = half::f16::from_f32(x).to_f32();
                    c.copy_from_slice(&y.to_le_bytes());
                }
            }
        }
        assert!(convert(&m.to_bytes(), Quantize::F16).unwrap() == f16);
    }

    #[test]
    fn rejects_other_specs_and_versions() {
        let mut m = Model::whisper(&Params::default());
        m.spec = "TransformerSpec".into();
        let e = parse(&m.to_bytes()).err().unwrap();
        assert!(matches!(e, ModelError::Unsupported { .. }));
        assert!(e.to_string().contains("not a Whisper model"), "{e}");
        let mut m = Model::whisper(&Params::default());
        m.version = 5;
        let e = parse(&m.to_bytes()).err().unwrap();
        assert!(e.to_string().contains("binary version 5"), "{e}");
    }

    #[test]
    fn missing_variables_and_bad_shapes_are_named() {
        let base = Model::whisper(&Params::default());
        for name in [
            "encoder/num_heads",
            "encoder/layer_0/ffn/linear_1/bias",
            "decoder/layer_0/attention/linear_1/weight",
            "decoder/layer_norm/gamma",
            "decoder/embeddings/weight",
        ] {
            let mut m = base.clone();
            m.remove(name);
            let e = convert(&m.to_bytes(), Quantize::F16)
                .unwrap_err()
                .to_string();
            assert!(e.contains(name) && e.contains("missing"), "{e}");
        }
        let mut m = base.clone();
        let v = m
            .var_mut("encoder/layer_0/self_attention/linear_0/weight")
            .unwrap();
        v.dims = vec![4, 12];
        let e = convert(&m.to_bytes(), Quantize::F16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linear_0/weight has shape [4, 12], expected [12, 4]"),
            "{e}"
        );
        // a gap in the layers
        let p = Params {
            enc_layers: 3,
            ..Params::default()
        };
        let mut m = Model::whisper(&p);
        m.vars.retain(|v| !v.name.starts_with("encoder/layer_1/"));
        let e = convert(&m.to_bytes(), Quantize::F16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("encoder/layer_1/") && e.contains("missing"),
            "{e}"
        );
        // heads that do not divide the width
        let mut m = base.clone();
        m.var_mut("decoder/num_heads").unwrap().data = 3i16.to_le_bytes().to_vec();
        let e = convert(&m.to_bytes(), Quantize::F16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("decoder/num_heads = 3"), "{e}");
    }

    #[test]
    fn split_parts_are_joined_and_gaps_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = Model::whisper(&Params::default()).to_bytes();
        let (a, rest) = bytes.split_at(1000);
        let (b, c) = rest.split_at(rest.len() / 2);
        std::fs::write(dir.path().join("model.bin.part1"), a).unwrap();
        std::fs::write(dir.path().join("model.bin.part2"), b).unwrap();
        std::fs::write(dir.path().join("model.bin.part3"), c).unwrap();
        let mut m = Ct2Model::open_dir(dir.path()).unwrap();
        assert_eq!(m.file_len(), bytes.len() as u64);
        let emb = m.require("decoder/embeddings/weight").unwrap().clone();
        let mut raw = Vec::new();
        m.read_raw(&emb, 0, emb.num_elements() as usize, &mut raw)
            .unwrap();
        let at = emb.offset as usize;
        assert!(raw == bytes[at..at + raw.len()]);

        // a gap
        std::fs::remove_file(dir.path().join("model.bin.part2")).unwrap();
        let e = Ct2Model::open_dir(dir.path()).err().unwrap();
        assert!(matches!(e, ModelError::MissingPart { .. }), "{e}");
        assert!(e.to_string().contains("model.bin.part2"), "{e}");
        // a missing last part shows as truncation
        std::fs::remove_file(dir.path().join("model.bin.part3")).unwrap();
        let e = Ct2Model::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Ct2Model::open_dir(&dir.path().join("absent"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("absent"), "{e}");
        let e = Ct2Model::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("model.bin"), "{e}");
        let e = read_vocabulary(dir.path()).unwrap_err().to_string();
        assert!(e.contains("vocabulary"), "{e}");
    }

    #[test]
    fn vocabulary_formats() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vocabulary.txt"), "a\n\nb\n").unwrap();
        let (t, p) = read_vocabulary(dir.path()).unwrap();
        assert_eq!(t, vec!["a", "", "b"]);
        assert!(p.ends_with("vocabulary.txt"));
        // only \n splits: a \r stays part of the token
        std::fs::write(dir.path().join("vocabulary.txt"), "a\r\nb\u{2028}c").unwrap();
        let (t, _) = read_vocabulary(dir.path()).unwrap();
        assert_eq!(t, vec!["a\r", "b\u{2028}c"]);
        std::fs::remove_file(dir.path().join("vocabulary.txt")).unwrap();
        std::fs::write(dir.path().join("vocabulary.json"), r#"["a", "", "Ġb"]"#).unwrap();
        let (t, p) = read_vocabulary(dir.path()).unwrap();
        assert_eq!(t, vec!["a", "", "Ġb"]);
        assert!(p.ends_with("vocabulary.json"));
        std::fs::write(dir.path().join("vocabulary.json"), r#"{"a": 1}"#).unwrap();
        let e = read_vocabulary(dir.path()).unwrap_err().to_string();
        assert!(e.contains("vocabulary.json") && e.contains("array"), "{e}");
    }
}
