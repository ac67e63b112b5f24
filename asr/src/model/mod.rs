//! Placeholder until the importer lands.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Other(String),
}
pub struct ImportReport {
    pub sha256: String,
}
pub fn import(_ct2: &Path, _out: &Path) -> Result<ImportReport, ModelError> {
    Err(ModelError::Other("todo".into()))
}
pub fn fetch(_name: &str, _cache: &Path) -> Result<PathBuf, ModelError> {
    Err(ModelError::Other("todo".into()))
}
pub fn default_cache_dir() -> PathBuf {
    PathBuf::from("/tmp")
}
pub fn resolve(name_or_path: &str) -> Result<PathBuf, ModelError> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let c = PathBuf::from(format!("/tmp/ggml-{name_or_path}.bin"));
    if c.is_file() {
        return Ok(c);
    }
    Err(ModelError::Other(format!("no model {name_or_path}")))
}
