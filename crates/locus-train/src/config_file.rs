//! Config files: one loader for every config type (the run config, the lab config).
//!
//! A config is a TOML file plus command-line overrides (`--set section.key=value`, the value in
//! TOML syntax or a bare word). Loading parses the file alone first, so that its own mistakes
//! (syntax, unknown keys, wrong types) are reported with the file, line and key; then applies
//! the overrides and parses again, naming the overrides in any error; then checks the type's
//! rules ([`ConfigFile::validate`]). A config that loads is one a run will not reject later.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Result, TrainError};

/// A config type that [`load_config`] reads: serde with unknown fields denied, and rules
/// checked in one place.
pub trait ConfigFile: DeserializeOwned {
    /// How many dotted parts an override's key needs at least: 2 for `section.key` (a run
    /// config), 1 where top-level keys are settable (the lab's `seeds=[1]`).
    const MIN_OVERRIDE_DEPTH: usize;

    /// Checks the rules a parsed config must satisfy, naming field, value and rule.
    ///
    /// # Errors
    /// [`TrainError::Config`] for the first rule broken.
    fn validate(&self) -> Result<()>;
}

/// Loads the config file `path`, applies `overrides` and validates the result.
///
/// # Errors
/// An unreadable file, TOML syntax errors, unknown keys and wrong types (naming the file and,
/// for the file's own mistakes, the line), malformed overrides or overrides naming unknown keys
/// (naming the overrides), and the rules of [`ConfigFile::validate`].
pub fn load_config<C: ConfigFile>(path: &Path, overrides: &[String]) -> Result<C> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let in_file = |e: toml::de::Error| TrainError::Config(format!("{}: {e}", path.display()));
    toml::from_str::<C>(&text).map_err(in_file)?;
    let mut table: toml::Table = toml::from_str(&text).map_err(in_file)?;
    for item in overrides {
        apply_override(&mut table, item, C::MIN_OVERRIDE_DEPTH)?;
    }
    let config = C::deserialize(toml::Value::Table(table)).map_err(|e| {
        TrainError::Config(format!("{} with --set {}: {e}", path.display(), overrides.join(" --set ")))
    })?;
    config.validate()?;
    Ok(config)
}

/// Parses a config from TOML text (no file, no overrides) and validates it.
///
/// # Errors
/// TOML errors and unknown keys, and the rules of [`ConfigFile::validate`].
pub fn parse_config<C: ConfigFile>(text: &str) -> Result<C> {
    let config: C = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
    config.validate()?;
    Ok(config)
}

/// Sets `key=value` in `table`, the key dotted (`train.max_steps`, at least `min_depth` parts);
/// the value is read as TOML (`3`, `true`, `"x"`, `[0.9, 0.98]`) or else taken as a bare
/// string (`post`).
fn apply_override(table: &mut toml::Table, item: &str, min_depth: usize) -> Result<()> {
    let bad = |why: &str| TrainError::Config(format!("--set {item}: {why} (expected section.key=value)"));
    let (key, raw) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.len() < min_depth || path.iter().any(|part| part.is_empty()) {
        return Err(bad("the key needs a section, like train.max_steps"));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let (last, parents) = path.split_last().ok_or_else(|| bad("empty key"))?;
    let mut node = table;
    for part in parents {
        let entry = node.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| bad(&format!("{part} is not a section")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// A two-level config with one rule, standing in for any config type.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(default)]
        top: u32,
        section: Section,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        steps: u32,
        #[serde(default)]
        name: String,
    }

    impl ConfigFile for Example {
        const MIN_OVERRIDE_DEPTH: usize = 2;

        fn validate(&self) -> Result<()> {
            if self.section.steps == 0 {
                return Err(TrainError::Config("section.steps (0) must be at least 1".into()));
            }
            Ok(())
        }
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn overrides_take_toml_values_or_bare_words() {
        let (_dir, path) = write("[section]\nsteps = 3\n");
        let overrides = ["section.steps=7".to_string(), "section.name = post".to_string()];
        let config: Example = load_config(&path, &overrides).unwrap();
        assert_eq!(config, Example { top: 0, section: Section { steps: 7, name: "post".into() } });
    }

    #[test]
    fn mistakes_in_the_file_name_file_line_and_key() {
        let (_dir, path) = write("[section]\nsteps = 3\nstepz = 4\n");
        let err = load_config::<Example>(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("example.toml") && err.contains("line 3") && err.contains("stepz"), "{err}");
    }

    #[test]
    fn mistakes_in_overrides_name_the_override() {
        let (_dir, path) = write("[section]\nsteps = 3\n");
        let err = load_config::<Example>(&path, &["section.stepz=4".into()]).unwrap_err().to_string();
        assert!(err.contains("with --set section.stepz=4") && err.contains("stepz"), "{err}");
        let err = load_config::<Example>(&path, &["top=4".into()]).unwrap_err().to_string();
        assert!(err.contains("--set top=4: the key needs a section"), "{err}");
        let err = load_config::<Example>(&path, &["section.steps".into()]).unwrap_err().to_string();
        assert!(err.contains("--set section.steps: no '='"), "{err}");
        let err = load_config::<Example>(&path, &["section.steps.x=1".into()]).unwrap_err().to_string();
        assert!(err.contains("steps is not a section"), "{err}");
    }

    #[test]
    fn rules_are_checked_after_overrides() {
        let (_dir, path) = write("[section]\nsteps = 3\n");
        let err = load_config::<Example>(&path, &["section.steps=0".into()]).unwrap_err().to_string();
        assert!(err.contains("section.steps (0) must be at least 1"), "{err}");
        assert!(parse_config::<Example>("[section]\nsteps = 0\n").is_err());
        assert_eq!(parse_config::<Example>("top = 2\n[section]\nsteps = 1\n").unwrap().top, 2);
    }
}
