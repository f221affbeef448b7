//! Scenario files: loading, validation with precise messages, and the run's timeline.

mod model;
pub mod timeline;
mod validate;

pub use model::*;
pub use validate::validate;

use std::path::{Path, PathBuf};

/// A scenario file that cannot be used, with the file, the field and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read the scenario file: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}: field `{field}`: {message}")]
    Field { file: PathBuf, field: String, message: String },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
}

/// Read, parse and validate a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { file: path.to_path_buf(), source })?;
    parse(path, &text)
}

/// Parse and validate scenario text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let de = toml::Deserializer::new(text);
    let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let message = one_line(inner.message());
        if field.is_empty() || field == "." {
            ScenarioError::Syntax { file: path.to_path_buf(), message }
        } else {
            ScenarioError::Field { file: path.to_path_buf(), field, message: hint(&message) }
        }
    })?;
    validate(&scenario).map_err(|(field, message)| ScenarioError::Field { file: path.to_path_buf(), field, message })?;
    Ok(scenario)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Add the fix to serde's messages where it is not obvious.
fn hint(message: &str) -> String {
    if message.starts_with("unknown variant") && message.contains("redis-streams") {
        format!("{message} (unknown backend type)")
    } else if message.starts_with("unknown field") {
        format!("{message}; remove it or fix its spelling")
    } else {
        message.to_string()
    }
}
