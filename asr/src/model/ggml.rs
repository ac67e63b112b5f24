//! Writer (and a small reader) for whisper.cpp's ggml model format.
//!
//! Layout, as read by `whisper_model_load`:
//! - magic `0x67676d6c`, then 11 `i32` hyper-parameters ([`Hparams`]);
//! - mel filters: `i32 n_mel, i32 n_fft`, then `n_mel * n_fft` f32;
//! - vocabulary: `i32 n`, then per token `i32 len` and its raw bytes;
//! - tensors until EOF: `i32 n_dims, i32 name_len, i32 type`, the dims
//!   innermost first, the name, then the data.
//!
//! Every value is little-endian.

use std::io::{self, Read, Seek, Write};
use std::path::Path;

use super::ct2::{Ct2Model, DType, Variable};
use super::{ModelError, Quantize};

/// `"ggml"` read as a little-endian u32.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// ggml tensor type ids.
pub const GGML_TYPE_F32: i32 = 0;
pub const GGML_TYPE_F16: i32 = 1;
pub const GGML_TYPE_Q8_0: i32 = 8;
/// File types (`ggml_ftype`).
pub const FTYPE_MOSTLY_F16: i32 = 1;
pub const FTYPE_MOSTLY_Q8_0: i32 = 7;
/// whisper.cpp's quantize tool stores `ftype + GGML_QNT_VERSION * 1000`.
pub const GGML_QNT_VERSION: i32 = 2;
pub const GGML_QNT_VERSION_FACTOR: i32 = 1000;
/// Values per q8_0 block; a block is one f16 scale plus 32 i8.
pub const QK8_0: usize = 32;

/// Sample rate and FFT size whisper uses for its log-mel front end.
pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;

/// A ggml tensor element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q8_0,
}

impl TensorType {
    pub fn id(self) -> i32 {
        match self {
            TensorType::F32 => GGML_TYPE_F32,
            TensorType::F16 => GGML_TYPE_F16,
            TensorType::Q8_0 => GGML_TYPE_Q8_0,
        }
    }

    pub fn from_id(id: i32) -> Option<TensorType> {
        match id {
            GGML_TYPE_F32 => Some(TensorType::F32),
            GGML_TYPE_F16 => Some(TensorType::F16),
            GGML_TYPE_Q8_0 => Some(TensorType::Q8_0),
            _ => None,
        }
    }

    /// Bytes taken by `n` elements (`n` must be a multiple of 32 for q8_0).
    pub fn data_size(self, n: u64) -> u64 {
        match self {
            TensorType::F32 => n * 4,
            TensorType::F16 => n * 2,
            TensorType::Q8_0 => n / QK8_0 as u64 * (2 + QK8_0 as u64),
        }
    }
}

/// whisper.cpp's hyper-parameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl Hparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Hparams {
        Hparams {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }

    /// whisper.cpp's rule: 51865 or more tokens means multilingual.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// The id of `<|endoftext|>` that whisper.cpp assumes.
    pub fn eot_id(&self) -> usize {
        50256 + usize::from(self.is_multilingual())
    }
}

// ---------------------------------------------------------------------------
// Mel filter bank

fn hz_to_mel_slaney(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz_slaney(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Mel filter bank, bit-identical to
/// `librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)` (Slaney scale,
/// `norm="slaney"`, float32): `n_mels` rows of `1 + n_fft / 2` values.
///
/// The arithmetic follows librosa and numpy step by step: `np.linspace` for
/// the mel points, `np.fft.rfftfreq` for the bin frequencies, triangle
/// weights stored as f32, then multiplied in place by the f64 area norm.
pub fn mel_filters(sr: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = 1 + n_fft / 2;
    // np.fft.rfftfreq(n_fft, d=1/sr): i * (1 / (n_fft * (1 / sr)))
    let val = 1.0 / (n_fft as f64 * (1.0 / f64::from(sr)));
    let fftfreqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * val).collect();

    // np.linspace(min_mel, max_mel, n_mels + 2), endpoint included
    let n_pts = n_mels + 2;
    let min_mel = hz_to_mel_slaney(0.0);
    let max_mel = hz_to_mel_slaney(f64::from(sr) / 2.0);
    let step = (max_mel - min_mel) / (n_pts - 1) as f64;
    let mels: Vec<f64> = (0..n_pts)
        .map(|i| {
            if i == n_pts - 1 {
                max_mel
            } else {
                i as f64 * step + min_mel
            }
        })
        .collect();
    let mel_f: Vec<f64> = mels.iter().map(|&m| mel_to_hz_slaney(m)).collect();
    let fdiff: Vec<f64> = mel_f.windows(2).map(|w| w[1] - w[0]).collect();

    let mut weights = vec![0f32; n_mels * n_bins];
    for i in 0..n_mels {
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (j, &f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[i] - f) / fdiff[i];
            let upper = (mel_f[i + 2] - f) / fdiff[i + 1];
            // np.maximum(0, np.minimum(lower, upper)). A zero comes out as
            // +0.0: the reference files (and whisper.cpp's own test models)
            // have +0.0 at [0][0], where numpy 2.x's SIMD maximum keeps the
            // -0.0 of `lower`; that sign is the only difference.
            let m = if upper < lower { upper } else { lower };
            let w = if m > 0.0 { m } else { 0.0 };
            let w32 = w as f32;
            weights[i * n_bins + j] = (f64::from(w32) * enorm) as f32;
        }
    }
    weights
}

// ---------------------------------------------------------------------------
// Vocabulary

/// GPT-2's `bytes_to_unicode`: the printable character that stands for
/// each byte in byte-level BPE tokens.
pub fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            256 + n - 1
        };
        // every value is below 0x200, so always a valid char
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

/// The inverse map, indexed by code point (all are below 0x144).
fn unicode_to_bytes_table() -> Vec<Option<u8>> {
    let fwd = bytes_to_unicode();
    let mut inv = vec![None; 0x200];
    for (b, c) in fwd.iter().enumerate() {
        inv[*c as usize] = Some(b as u8);
    }
    inv
}

/// Maps a byte-level BPE token back to its raw bytes. `None` if it contains
/// a character outside the byte alphabet.
pub fn token_to_bytes(token: &str) -> Option<Vec<u8>> {
    let inv = unicode_to_bytes_table();
    decode_with(&inv, token)
}

fn decode_with(inv: &[Option<u8>], token: &str) -> Option<Vec<u8>> {
    token
        .chars()
        .map(|c| inv.get(c as usize).copied().flatten())
        .collect()
}

/// Converts the CT2 vocabulary to whisper.cpp's: tokens below
/// `<|endoftext|>` (whose id must be `eot`), as raw bytes. Multilingual id
/// 50256 is an empty string and stays an empty token.
pub fn vocabulary_bytes(
    tokens: &[String],
    eot: usize,
    path: &Path,
) -> Result<Vec<Vec<u8>>, ModelError> {
    let found = tokens.iter().position(|t| t == "<|endoftext|>");
    if found != Some(eot) {
        return Err(ModelError::invalid(
            path,
            match found {
                Some(i) => format!(
                    "<|endoftext|> is token {i}, but whisper.cpp expects it at {eot} \
                     for this model's embedding size"
                ),
                None => "no <|endoftext|> token".to_owned(),
            },
        ));
    }
    let inv = unicode_to_bytes_table();
    tokens[..eot]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            decode_with(&inv, t).ok_or_else(|| {
                ModelError::invalid(
                    path,
                    format!("token {i} ({t:?}) is not a byte-level BPE token"),
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// CT2 -> ggml tensor mapping

/// One ggml tensor to write: which rows of which CT2 variable, and how.
#[derive(Debug, Clone)]
pub struct TensorPlan {
    pub name: String,
    pub source: Variable,
    /// First element of the source used (for fused q/k/v rows).
    pub start: u64,
    /// ggml dims, innermost first.
    pub dims: Vec<u64>,
    pub ttype: TensorType,
}

impl TensorPlan {
    pub fn num_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

struct Planner<'a, R> {
    model: &'a Ct2Model<R>,
    quantize: Quantize,
    out: Vec<TensorPlan>,
}

impl<R: Read + Seek> Planner<'_, R> {
    fn var(&self, name: &str, shape: &[u64]) -> Result<Variable, ModelError> {
        let v = self.model.require(name)?;
        if v.dims != shape {
            return Err(self.model.bad_shape(v, shape));
        }
        if !v.dtype.is_float() {
            return Err(self.model.not_float(v));
        }
        Ok(v.clone())
    }

    fn push(&mut self, name: String, source: &Variable, start: u64, dims: Vec<u64>, t: TensorType) {
        self.out.push(TensorPlan {
            name,
            source: source.clone(),
            start,
            dims,
            ttype: t,
        });
    }

    /// Type of a 2-D weight matrix.
    /// (q8_0 widths are checked to be multiples of 32 up front.)
    fn wtype(&self) -> TensorType {
        match self.quantize {
            Quantize::Q8_0 => TensorType::Q8_0,
            Quantize::F16 => TensorType::F16,
        }
    }

    /// A 1-D f32 tensor (bias or norm).
    fn vector(&mut self, name: String, src: &str, len: u64) -> Result<(), ModelError> {
        let v = self.var(src, &[len])?;
        self.push(name, &v, 0, vec![len], TensorType::F32);
        Ok(())
    }

    fn norm(&mut self, prefix: &str, src: &str, d: u64) -> Result<(), ModelError> {
        self.vector(format!("{prefix}.weight"), &format!("{src}/gamma"), d)?;
        self.vector(format!("{prefix}.bias"), &format!("{src}/beta"), d)
    }

    /// A linear layer `[rows, cols]` -> ggml weight (and bias if present).
    fn linear(&mut self, prefix: &str, src: &str, rows: u64, cols: u64) -> Result<(), ModelError> {
        let w = self.var(&format!("{src}/weight"), &[rows, cols])?;
        let t = self.wtype();
        self.push(format!("{prefix}.weight"), &w, 0, vec![cols, rows], t);
        self.vector(format!("{prefix}.bias"), &format!("{src}/bias"), rows)
    }

    /// A fused linear layer of `parts.len()` stacked `[d, cols]` blocks.
    /// Each entry of `parts` names the target and whether it keeps a bias.
    fn fused(
        &mut self,
        src: &str,
        d: u64,
        cols: u64,
        parts: &[(&str, bool)],
    ) -> Result<(), ModelError> {
        let n = parts.len() as u64;
        let w = self.var(&format!("{src}/weight"), &[n * d, cols])?;
        let b = self.var(&format!("{src}/bias"), &[n * d])?;
        let t = self.wtype();
        for (k, (prefix, has_bias)) in parts.iter().enumerate() {
            let k = k as u64;
            self.push(
                format!("{prefix}.weight"),
                &w,
                k * d * cols,
                vec![cols, d],
                t,
            );
            if *has_bias {
                self.push(
                    format!("{prefix}.bias"),
                    &b,
                    k * d,
                    vec![d],
                    TensorType::F32,
                );
            }
        }
        Ok(())
    }

    /// Self-attention block (fused q,k,v then out), shared by both stacks.
    fn self_attention(&mut self, p: &str, src: &str, d: u64) -> Result<(), ModelError> {
        self.norm(
            &format!("{p}.attn_ln"),
            &format!("{src}/self_attention/layer_norm"),
            d,
        )?;
        self.fused(
            &format!("{src}/self_attention/linear_0"),
            d,
            d,
            &[
                (&format!("{p}.attn.query"), true),
                (&format!("{p}.attn.key"), false),
                (&format!("{p}.attn.value"), true),
            ],
        )?;
        self.linear(
            &format!("{p}.attn.out"),
            &format!("{src}/self_attention/linear_1"),
            d,
            d,
        )
    }

    fn mlp(&mut self, p: &str, src: &str, d: u64) -> Result<(), ModelError> {
        self.norm(&format!("{p}.mlp_ln"), &format!("{src}/ffn/layer_norm"), d)?;
        self.linear(
            &format!("{p}.mlp.0"),
            &format!("{src}/ffn/linear_0"),
            4 * d,
            d,
        )?;
        self.linear(
            &format!("{p}.mlp.2"),
            &format!("{src}/ffn/linear_1"),
            d,
            4 * d,
        )
    }
}

fn count_layers<R: Read + Seek>(model: &Ct2Model<R>, stack: &str) -> Result<u64, ModelError> {
    let prefix = format!("{stack}/layer_");
    let mut max: Option<u64> = None;
    for v in model.variables() {
        if let Some(rest) = v.name.strip_prefix(&prefix) {
            if let Some(n) = rest.split('/').next().and_then(|n| n.parse::<u64>().ok()) {
                max = Some(max.map_or(n, |m| m.max(n)));
            }
        }
    }
    match max {
        Some(m) => Ok(m + 1),
        None => Err(ModelError::invalid(
            model.label(),
            format!("no {stack} layers (variables {prefix}N/...) in model.bin"),
        )),
    }
}

fn dim_i32(model_path: &Path, what: &str, v: u64) -> Result<i32, ModelError> {
    i32::try_from(v)
        .ok()
        .filter(|&x| x > 0)
        .ok_or_else(|| ModelError::invalid(model_path, format!("{what} = {v} is out of range")))
}

/// Derives the hyper-parameters and the full list of tensors, in
/// whisper.cpp's order, checking every shape before anything is written.
pub fn plan<R: Read + Seek>(
    model: &mut Ct2Model<R>,
    quantize: Quantize,
) -> Result<(Hparams, Vec<TensorPlan>), ModelError> {
    let label = model.label().to_path_buf();
    let n_audio_head = model.scalar_int("encoder/num_heads")?;
    let n_text_head = model.scalar_int("decoder/num_heads")?;

    let conv1 = model.require("encoder/conv1/weight")?;
    if conv1.dims.len() != 3 || conv1.dims[2] != 3 {
        return Err(model.bad_shape(conv1, &[0, 0, 3]));
    }
    let (d_a, n_mels) = (conv1.dims[0], conv1.dims[1]);
    let pe_a = model.require("encoder/position_encodings/encodings")?;
    if pe_a.dims.len() != 2 || pe_a.dims[1] != d_a {
        return Err(model.bad_shape(pe_a, &[0, d_a]));
    }
    let n_audio_ctx = pe_a.dims[0];
    let emb = model.require("decoder/embeddings/weight")?;
    if emb.dims.len() != 2 {
        return Err(model.bad_shape(emb, &[0, 0]));
    }
    let (n_vocab, d_t) = (emb.dims[0], emb.dims[1]);
    let pe_t = model.require("decoder/position_encodings/encodings")?;
    if pe_t.dims.len() != 2 || pe_t.dims[1] != d_t {
        return Err(model.bad_shape(pe_t, &[0, d_t]));
    }
    let n_text_ctx = pe_t.dims[0];
    let n_audio_layer = count_layers(model, "encoder")?;
    let n_text_layer = count_layers(model, "decoder")?;

    for (what, heads, d) in [
        ("encoder", n_audio_head, d_a),
        ("decoder", n_text_head, d_t),
    ] {
        if heads <= 0 || d % heads as u64 != 0 {
            return Err(ModelError::invalid(
                &label,
                format!("{what}/num_heads = {heads} does not divide the model width {d}"),
            ));
        }
    }

    if quantize == Quantize::Q8_0 && (d_a % QK8_0 as u64 != 0 || d_t % QK8_0 as u64 != 0) {
        return Err(ModelError::Unsupported {
            path: label,
            reason: format!(
                "q8_0 needs model widths that are multiples of {QK8_0} (got {d_a} and {d_t})"
            ),
        });
    }
    let ftype = match quantize {
        Quantize::F16 => FTYPE_MOSTLY_F16,
        Quantize::Q8_0 => GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR + FTYPE_MOSTLY_Q8_0,
    };
    let hp = Hparams {
        n_vocab: dim_i32(&label, "n_vocab", n_vocab)?,
        n_audio_ctx: dim_i32(&label, "n_audio_ctx", n_audio_ctx)?,
        n_audio_state: dim_i32(&label, "n_audio_state", d_a)?,
        n_audio_head: dim_i32(&label, "encoder/num_heads", n_audio_head as u64)?,
        n_audio_layer: dim_i32(&label, "n_audio_layer", n_audio_layer)?,
        n_text_ctx: dim_i32(&label, "n_text_ctx", n_text_ctx)?,
        n_text_state: dim_i32(&label, "n_text_state", d_t)?,
        n_text_head: dim_i32(&label, "decoder/num_heads", n_text_head as u64)?,
        n_text_layer: dim_i32(&label, "n_text_layer", n_text_layer)?,
        n_mels: dim_i32(&label, "n_mels", n_mels)?,
        ftype,
    };

    let mut p = Planner {
        model,
        quantize,
        out: Vec::new(),
    };
    let d = d_a;
    let pe = p.var("encoder/position_encodings/encodings", &[n_audio_ctx, d])?;
    p.push(
        "encoder.positional_embedding".into(),
        &pe,
        0,
        vec![d, n_audio_ctx],
        TensorType::F32,
    );
    for (k, c_in) in [(1, n_mels), (2, d)] {
        let w = p.var(&format!("encoder/conv{k}/weight"), &[d, c_in, 3])?;
        p.push(
            format!("encoder.conv{k}.weight"),
            &w,
            0,
            vec![3, c_in, d],
            TensorType::F16,
        );
        let b = p.var(&format!("encoder/conv{k}/bias"), &[d])?;
        p.push(
            format!("encoder.conv{k}.bias"),
            &b,
            0,
            vec![1, d],
            TensorType::F32,
        );
    }
    for l in 0..n_audio_layer {
        let (pre, src) = (format!("encoder.blocks.{l}"), format!("encoder/layer_{l}"));
        p.self_attention(&pre, &src, d)?;
        p.mlp(&pre, &src, d)?;
    }
    p.norm("encoder.ln_post", "encoder/layer_norm", d)?;

    let d = d_t;
    let pe = p.var("decoder/position_encodings/encodings", &[n_text_ctx, d])?;
    p.push(
        "decoder.positional_embedding".into(),
        &pe,
        0,
        vec![d, n_text_ctx],
        TensorType::F32,
    );
    let emb = p.var("decoder/embeddings/weight", &[n_vocab, d])?;
    let t = p.wtype();
    p.push(
        "decoder.token_embedding.weight".into(),
        &emb,
        0,
        vec![d, n_vocab],
        t,
    );
    for l in 0..n_text_layer {
        let (pre, src) = (format!("decoder.blocks.{l}"), format!("decoder/layer_{l}"));
        p.self_attention(&pre, &src, d)?;
        p.norm(
            &format!("{pre}.cross_attn_ln"),
            &format!("{src}/attention/layer_norm"),
            d,
        )?;
        p.linear(
            &format!("{pre}.cross_attn.query"),
            &format!("{src}/attention/linear_0"),
            d,
            d,
        )?;
        p.fused(
            &format!("{src}/attention/linear_1"),
            d,
            d_a,
            &[
                (&format!("{pre}.cross_attn.key"), false),
                (&format!("{pre}.cross_attn.value"), true),
            ],
        )?;
        p.linear(
            &format!("{pre}.cross_attn.out"),
            &format!("{src}/attention/linear_2"),
            d,
            d,
        )?;
        p.mlp(&pre, &src, d)?;
    }
    p.norm("decoder.ln", "decoder/layer_norm", d)?;
    Ok((hp, p.out))
}

// ---------------------------------------------------------------------------
// Writing

fn put_i32<W: Write>(w: &mut W, v: i32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

/// Writes magic, hyper-parameters, mel filters and vocabulary.
pub fn write_preamble<W: Write>(
    w: &mut W,
    hp: &Hparams,
    filters: &[f32],
    n_fft_bins: usize,
    vocab: &[Vec<u8>],
) -> io::Result<()> {
    w.write_all(&GGML_MAGIC.to_le_bytes())?;
    for v in hp.to_array() {
        put_i32(w, v)?;
    }
    put_i32(w, hp.n_mels)?;
    put_i32(w, n_fft_bins as i32)?;
    let mut buf = Vec::with_capacity(filters.len() * 4);
    for f in filters {
        buf.extend_from_slice(&f.to_le_bytes());
    }
    w.write_all(&buf)?;
    put_i32(w, vocab.len() as i32)?;
    for t in vocab {
        put_i32(w, t.len() as i32)?;
        w.write_all(t)?;
    }
    Ok(())
}

/// Quantizes 32 values to a q8_0 block exactly as ggml's
/// `quantize_row_q8_0_ref` does.
pub fn quantize_block_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// Writes one tensor (header and data), streaming the data in chunks.
pub fn write_tensor<W: Write, R: Read + Seek>(
    w: &mut W,
    out_path: &Path,
    model: &mut Ct2Model<R>,
    t: &TensorPlan,
) -> Result<u64, ModelError> {
    let io_err = |e| ModelError::io(out_path, "cannot write", e);
    put_i32(w, t.dims.len() as i32).map_err(io_err)?;
    put_i32(w, t.name.len() as i32).map_err(io_err)?;
    put_i32(w, t.ttype.id()).map_err(io_err)?;
    for &d in &t.dims {
        put_i32(w, d as i32).map_err(io_err)?;
    }
    w.write_all(t.name.as_bytes()).map_err(io_err)?;

    const CHUNK: u64 = 1 << 18; // elements; a multiple of QK8_0
    let total = t.num_elements();
    let mut raw = Vec::new();
    let mut vals = Vec::new();
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(CHUNK) as usize;
        let at = t.start + done;
        out.clear();
        match (t.ttype, t.source.dtype) {
            (TensorType::F16, DType::F16) | (TensorType::F32, DType::F32) => {
                model.read_raw(&t.source, at, n, &mut raw)?;
                std::mem::swap(&mut out, &mut raw);
            }
            (TensorType::F16, _) => {
                model.read_f32(&t.source, at, n, &mut raw, &mut vals)?;
                out.extend(
                    vals.iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
                );
            }
            (TensorType::F32, _) => {
                model.read_f32(&t.source, at, n, &mut raw, &mut vals)?;
                out.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
            }
            (TensorType::Q8_0, _) => {
                model.read_f32(&t.source, at, n, &mut raw, &mut vals)?;
                for block in vals.chunks_exact(QK8_0) {
                    quantize_block_q8_0(block, &mut out);
                }
            }
        }
        w.write_all(&out).map_err(io_err)?;
        done += n as u64;
    }
    Ok(t.ttype.data_size(total))
}

/// What [`convert`] wrote.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub hparams: Hparams,
    pub n_tensors: usize,
    pub n_vocab_written: usize,
    pub tensor_bytes: u64,
}

/// Writes the whole ggml file for `model` and its vocabulary `tokens`
/// (read from `vocab_path`) to `w`. Every shape is checked before the first
/// byte is written. `out_path` names the output in error messages.
pub fn convert<R: Read + Seek, W: Write>(
    model: &mut Ct2Model<R>,
    tokens: &[String],
    vocab_path: &Path,
    quantize: Quantize,
    w: &mut W,
    out_path: &Path,
) -> Result<ConvertSummary, ModelError> {
    let (hp, tensors) = plan(model, quantize)?;
    let vocab = vocabulary_bytes(tokens, hp.eot_id(), vocab_path)?;
    let filters = mel_filters(SAMPLE_RATE, N_FFT, hp.n_mels as usize);
    write_preamble(w, &hp, &filters, 1 + N_FFT / 2, &vocab)
        .map_err(|e| ModelError::io(out_path, "cannot write", e))?;
    let mut tensor_bytes = 0;
    for t in &tensors {
        tensor_bytes += write_tensor(w, out_path, model, t)?;
    }
    Ok(ConvertSummary {
        hparams: hp,
        n_tensors: tensors.len(),
        n_vocab_written: vocab.len(),
        tensor_bytes,
    })
}

// ---------------------------------------------------------------------------
// Reading back (for inspection and tests)

/// A tensor found in a ggml file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dims, innermost first.
    pub dims: Vec<u64>,
    pub ttype: TensorType,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    pub size: u64,
}

/// The structure of a whisper.cpp ggml model file.
#[derive(Debug, Clone)]
pub struct GgmlInfo {
    pub hparams: Hparams,
    pub n_mel: usize,
    pub n_fft_bins: usize,
    pub filters: Vec<f32>,
    pub vocab: Vec<Vec<u8>>,
    pub tensors: Vec<TensorInfo>,
    pub file_len: u64,
}

/// Parses a ggml model file's structure (tensor data is skipped). Any
/// malformation, including truncation, is an error.
pub fn read_info(path: &Path) -> Result<GgmlInfo, ModelError> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, "cannot open", e))?;
    let len = file
        .metadata()
        .map_err(|e| ModelError::io(path, "cannot stat", e))?
        .len();
    let mut r = io::BufReader::new(file);
    let mut pos = 0u64;
    let bad = |what: String| ModelError::invalid(path, format!("not a valid ggml model: {what}"));
    let take = |r: &mut io::BufReader<std::fs::File>, n: u64, pos: &mut u64, what: &str| {
        if *pos + n > len {
            return Err(bad(format!("truncated while reading {what}")));
        }
        let mut b = vec![0u8; n as usize];
        r.read_exact(&mut b)
            .map_err(|e| ModelError::io(path, "cannot read", e))?;
        *pos += n;
        Ok(b)
    };
    let i32s = |b: &[u8]| -> Vec<i32> {
        b.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let head = take(&mut r, 48, &mut pos, "the header")?;
    if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) != GGML_MAGIC {
        return Err(bad("bad magic".into()));
    }
    let mut a = [0i32; 11];
    a.copy_from_slice(&i32s(&head[4..]));
    let hparams = Hparams::from_array(a);
    let mel = i32s(&take(&mut r, 8, &mut pos, "the mel shape")?);
    let (n_mel, n_fft_bins) = (mel[0].max(0) as usize, mel[1].max(0) as usize);
    let fb = take(
        &mut r,
        n_mel as u64 * n_fft_bins as u64 * 4, // both below 2^31
        &mut pos,
        "the mel filters",
    )?;
    let filters = fb
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n_vocab = i32s(&take(&mut r, 4, &mut pos, "the vocabulary size")?)[0];
    let mut vocab = Vec::new();
    for _ in 0..n_vocab.max(0) {
        let n = i32s(&take(&mut r, 4, &mut pos, "a token length")?)[0];
        if n < 0 {
            return Err(bad("negative token length".into()));
        }
        vocab.push(take(&mut r, n as u64, &mut pos, "a token")?);
    }
    let mut tensors = Vec::new();
    while pos < len {
        let h = i32s(&take(&mut r, 12, &mut pos, "a tensor header")?);
        let (n_dims, name_len, ttype) = (h[0], h[1], h[2]);
        if !(1..=4).contains(&n_dims) || !(0..=4096).contains(&name_len) {
            return Err(bad(format!("bad tensor header {h:?} at {}", pos - 12)));
        }
        let ttype = TensorType::from_id(ttype)
            .ok_or_else(|| bad(format!("unknown tensor type {ttype}")))?;
        let dims: Vec<u64> = i32s(&take(&mut r, 4 * n_dims as u64, &mut pos, "tensor dims")?)
            .into_iter()
            .map(|d| d.max(0) as u64)
            .collect();
        let name = String::from_utf8(take(&mut r, name_len as u64, &mut pos, "a tensor name")?)
            .map_err(|_| bad("tensor name is not UTF-8".into()))?;
        let n = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= len)
            .ok_or_else(|| bad(format!("tensor {name} has impossible dims {dims:?}")))?;
        if ttype == TensorType::Q8_0 && !dims[0].is_multiple_of(QK8_0 as u64) {
            return Err(bad(format!("q8_0 tensor {name} has rows of {}", dims[0])));
        }
        let size = ttype.data_size(n);
        if pos + size > len {
            return Err(bad(format!("truncated in the data of {name}")));
        }
        r.seek_relative(size as i64)
            .map_err(|e| ModelError::io(path, "cannot seek in", e))?;
        tensors.push(TensorInfo {
            name,
            dims,
            ttype,
            offset: pos,
            size,
        });
        pos += size;
    }
    Ok(GgmlInfo {
        hparams,
        n_mel,
        n_fft_bins,
        filters,
        vocab,
        tensors,
        file_len: len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_round_trip() {
        let fwd = bytes_to_unicode();
        // distinct characters
        let mut seen: Vec<char> = fwd.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        // well-known points of GPT-2's table
        assert_eq!(fwd[b' ' as usize], 'Ġ');
        assert_eq!(fwd[b'\n' as usize], 'Ċ');
        assert_eq!(fwd[b'A' as usize], 'A');
        assert_eq!(fwd[0], 'Ā');
        assert_eq!(fwd[0xAD], 'Ń');
        let all: Vec<u8> = (0..=255u8).collect();
        let s: String = all.iter().map(|&b| fwd[b as usize]).collect();
        assert_eq!(token_to_bytes(&s).as_deref(), Some(&all[..]));
        assert_eq!(token_to_bytes("Ġhello").as_deref(), Some(&b" hello"[..]));
        // "ä½ł" is the first half of the UTF-8 of U+4F60 (你)
        assert_eq!(
            token_to_bytes("ä½ł").as_deref(),
            Some(&[0xE4u8, 0xBD, 0xA0][..])
        );
        assert_eq!(token_to_bytes("\u{4F60}"), None);
        assert_eq!(token_to_bytes(""), Some(vec![]));
    }

    /// Bit patterns produced by
    /// `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)` (librosa 0.11,
    /// numpy 2.4), except [0][0], which is +0.0 as in the reference files
    /// (numpy 2.4 gives -0.0 there).
    #[test]
    fn mel_filters_match_librosa() {
        let f = mel_filters(SAMPLE_RATE, N_FFT, 80);
        assert_eq!(f.len(), 80 * 201);
        let at = |i: usize, j: usize| f[i * 201 + j].to_bits();
        assert_eq!(at(0, 0), 0); // +0.0, not numpy 2.4's -0.0
        assert!(f.iter().all(|v| v.is_sign_positive()));
        assert_eq!(at(0, 1), 0x3ccb_aca4);
        assert_eq!(at(0, 2), 0);
        assert_eq!(at(1, 2), 0x3cbb_5d95);
        assert_eq!(at(79, 190), 0x3b12_47ab);
        assert_eq!(at(79, 200), 0);
        assert_eq!(f.iter().filter(|v| **v != 0.0).count(), 391);
        // sha256 of the whole float32 array as numpy writes it, after
        // `w[w == 0] = 0.0`
        use sha2::Digest;
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        let digest = sha2::Sha256::digest(&bytes);
        assert_eq!(
            super::super::hex(&digest),
            "85818f156f7e189453901a515e4726d270d307f976e161cf9403e8caab405498"
        );
    }

    #[test]
    fn mel_filters_128_match_librosa() {
        use sha2::Digest;
        let f = mel_filters(SAMPLE_RATE, N_FFT, 128);
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            super::super::hex(&sha2::Sha256::digest(&bytes)),
            "e399c2d72d2f7375e503c296d8453cefcc0c1e47a9c1a0a09e0d70f59c820f20"
        );
    }

    #[test]
    fn q8_0_block() {
        let mut x = [0f32; 32];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as f32 - 10.0) * 0.5;
        }
        let mut out = Vec::new();
        quantize_block_q8_0(&x, &mut out);
        assert_eq!(out.len(), 34);
        let d = half::f16::from_le_bytes([out[0], out[1]]).to_f32();
        assert!((d - 10.5 / 127.0).abs() < 1e-4);
        assert_eq!(out[2 + 31] as i8, 127);
        assert_eq!(out[2 + 10] as i8, 0);
        assert_eq!(out[2] as i8, -60); // -5.0 / (10.5/127) = -60.47..
        let mut z = Vec::new();
        quantize_block_q8_0(&[0.0; 32], &mut z);
        assert_eq!(z, vec![0u8; 34]);
    }
}
